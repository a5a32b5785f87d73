import Heaps

// The sparse path's selection: per token and head, the k best sums s1[a] + s2[b] of the two
// halves' sub-key scores (n each), from the m = min(k, n) best of each half.
//   per half   top-m of s1 and of s2, sorted best first, ties to the lower sub-key index
//   sums       candidate (i, j) = s1[first[i]] + s2[second[j]] has position i*m + j;
//              top-k of the candidates, ties to the lower position
//
// A candidate is dominated by every (i', j') <= (i, j), so it can only be in the top k when
// (i + 1)(j + 1) <= k: only those ~k ln k of the m^2 sums are formed, with exactly the result
// of forming all of them (`naiveProductKeyTopK`, which forms them all, is the tested reference).
// Each top-k is a bounded binary heap in preallocated scratch: nothing is allocated per token.

extension ProductKeyMemory {
    /// Per-chunk scratch of `selectTopSums`.
    struct TopSumScratch {
        let first: UnsafeMutablePointer<Int32>  // [m] sub-keys of half 1, best first
        let second: UnsafeMutablePointer<Int32>  // [m]
        let rows: UnsafeMutablePointer<Int32>  // [candidates] i of each candidate
        let columns: UnsafeMutablePointer<Int32>  // [candidates] j of each candidate
        let best: UnsafeMutablePointer<Int32>  // [k] chosen candidates, best first
        let scores: UnsafeMutablePointer<Float>  // [candidates]

        init(
            indices: UnsafeMutablePointer<Int32>, kept m: Int, candidates: Int, knn k: Int,
            scores: UnsafeMutablePointer<Float>
        ) {
            first = indices
            second = indices + m
            rows = indices + 2 * m
            columns = indices + 2 * m + candidates
            best = indices + 2 * m + 2 * candidates
            self.scores = scores
        }
    }

    /// The k best sums s1[a] + s2[b] over the m best a and the m best b, best first: value
    /// rows a*n + b into `indices`, sums into `scores`. Ties: lower sub-key index within a half,
    /// lower candidate position i*m + j among sums (see the file header).
    static func selectTopSums(
        first s1: UnsafePointer<Float>, second s2: UnsafePointer<Float>, keys n: Int, kept m: Int,
        knn k: Int, scratch: TopSumScratch, indices: UnsafeMutablePointer<Int32>,
        scores: UnsafeMutablePointer<Float>
    ) {
        BinaryHeap.selectBest(0..<Int32(n), into: .init(start: scratch.first, count: m)) { a, b in
            s1[Int(a)] > s1[Int(b)] || (s1[Int(a)] == s1[Int(b)] && a < b)
        }
        BinaryHeap.selectBest(0..<Int32(n), into: .init(start: scratch.second, count: m)) { a, b in
            s2[Int(a)] > s2[Int(b)] || (s2[Int(a)] == s2[Int(b)] && a < b)
        }
        // Only candidates not dominated by k others; enumerated in position order, so the
        // candidate number orders ties as the position does.
        var count = 0
        let sums = scratch.scores
        for i in 0..<m {
            let columns = min(m, k / (i + 1))
            if columns == 0 { break }
            let base = s1[Int(scratch.first[i])]
            for j in 0..<columns {
                sums[count] = base + s2[Int(scratch.second[j])]
                scratch.rows[count] = Int32(i)
                scratch.columns[count] = Int32(j)
                count += 1
            }
        }
        assert(count >= k, "fewer candidates than knn: validate() should have refused this config")
        BinaryHeap.selectBest(0..<Int32(count), into: .init(start: scratch.best, count: k)) { a, b in
            sums[Int(a)] > sums[Int(b)] || (sums[Int(a)] == sums[Int(b)] && a < b)
        }
        for slot in 0..<k {
            let c = Int(scratch.best[slot])
            let a = scratch.first[Int(scratch.rows[c])], b = scratch.second[Int(scratch.columns[c])]
            indices[slot] = a * Int32(n) + b
            scores[slot] = sums[c]
        }
    }
}

/// The sparse path's per-head selection on one token (`ProductKeyMemory.selectTopSums`), with
/// its own scratch: value rows a*n + b and scores s1[a] + s2[b] of the knn best sums, best first.
/// For tests; `n` is the length of both halves.
public func productKeyTopK(
    firstHalf: [Float], secondHalf: [Float], knn: Int
) -> (indices: [Int], scores: [Float]) {
    let n = firstHalf.count
    precondition(secondHalf.count == n && knn >= 1 && knn <= n * n)
    let m = min(knn, n)
    var candidates = 0
    for i in 0..<m { candidates += min(m, knn / (i + 1)) }
    var ints = [Int32](repeating: 0, count: 2 * m + 2 * candidates + knn)
    var floats = [Float](repeating: 0, count: candidates)
    var indices = [Int32](repeating: 0, count: knn)
    var scores = [Float](repeating: 0, count: knn)
    ints.withUnsafeMutableBufferPointer { i in
        floats.withUnsafeMutableBufferPointer { f in
            let scratch = ProductKeyMemory.TopSumScratch(
                indices: i.baseAddress!, kept: m, candidates: candidates, knn: knn, scores: f.baseAddress!)
            ProductKeyMemory.selectTopSums(
                first: firstHalf, second: secondHalf, keys: n, kept: m, knn: knn, scratch: scratch,
                indices: &indices, scores: &scores)
        }
    }
    return (indices.map(Int.init), scores)
}

/// Reference for `productKeyTopK`: full sorts and all m^2 candidate sums, the same tie rules.
public func naiveProductKeyTopK(
    firstHalf: [Float], secondHalf: [Float], knn: Int
) -> (indices: [Int], scores: [Float]) {
    let n = firstHalf.count, m = min(knn, n)
    func best(_ s: [Float]) -> [Int] {
        Array((0..<n).sorted { s[$0] > s[$1] || (s[$0] == s[$1] && $0 < $1) }.prefix(m))
    }
    let first = best(firstHalf), second = best(secondHalf)
    var candidates: [(position: Int, index: Int, score: Float)] = []
    for i in 0..<m {
        for j in 0..<m {
            candidates.append((i * m + j, first[i] * n + second[j], firstHalf[first[i]] + secondHalf[second[j]]))
        }
    }
    candidates.sort { $0.score > $1.score || ($0.score == $1.score && $0.position < $1.position) }
    let chosen = candidates.prefix(knn)
    return (chosen.map(\.index), chosen.map(\.score))
}