import Tensor

// The sparse path of the product-key memory (official σ-MoE code and XLM). Legend as in
// ProductKeyMemory.swift; m = min(k, n) sub-keys kept per half.
//   per head   top-m of s1_h and of s2_h, the best k of their sums (ProductKeySelection.swift)
//              -> (idx_hj = a*n + b, score_hj = s1_h[a] + s2_h[b])            [R, H*k]
//   act        jointly over the H*k scores of a token (softmax | relu), or per head over its k
//              (softmax-per-head, XLM)
//   y          sum_hj act_hj V[idx_hj] (duplicates add up)                    [R, d]
//   backward   dact_hj = dy . V[idx_hj], through act to score_hj, which scatters into
//              ds1_h[a] and ds2_h[b] (the gradient flows through the chosen scores only);
//              dV[idx_hj] += act_hj dy
//
// The value gradient is a scatter by index: (row, slot) entries are counting-sorted by value
// row, and each worker owns a range of value rows, which it accumulates in entry order, so
// only the selected rows are touched and the result never depends on the thread count.

extension ProductKeyMemory {
    /// The selection's scratch per chunk, the selected rows, scores and activations, and for
    /// training their gradient and the value-gradient sort.
    func declareSparseBuffers(rows: Int, training: Bool, in plan: inout BufferPlan) {
        let k = config.knn, entries = rows * config.heads * k, chunks = chunkCount(rows)
        plan.declare(indexScratch, "PKM selection scratch", count: chunks * (2 * keptPerHalf + 2 * candidateCount + k))
        plan.declare(scoreScratch, "PKM selection sums", count: chunks * candidateCount)
        plan.declare(selectedIndex, "PKM selected values", count: entries)
        plan.declare(selectedScore, "PKM selected scores", count: entries)
        plan.declare(activations, "PKM activations", count: entries)
        guard training else { return }
        plan.declare(dActivations, "PKM activation gradient", count: entries)
        plan.declare(valueStart, "PKM value-gradient offsets", count: valueCount + 1)
        plan.declare(valueCursor, "PKM value-gradient cursor", count: valueCount)
        plan.declare(entryOrder, "PKM value-gradient order", count: entries)
    }

    /// Per token and head: the top-k sums of the two halves' best sub-keys; act over the
    /// token's H*k scores; y = sum act V[idx].
    func forwardSparse(
        rows: Int, output y: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        let h = config.heads, n = config.keysPerHalf, k = config.knn, m = keptPerHalf
        let slots = h * k, d = width, candidates = candidateCount
        let activation = config.activation
        let chunks = chunkCount(rows)
        let indexStride = 2 * m + 2 * candidates + k
        let indexScratch = SendablePointer(self.indexScratch.reserved(chunks * indexStride))
        let scoreScratch = SendablePointer(self.scoreScratch.reserved(chunks * candidates))
        let hs = SendablePointer(halfScores.pointer)
        let index = SendablePointer(selectedIndex.reserved(rows * slots))
        let score = SendablePointer(selectedScore.reserved(rows * slots))
        let act = SendablePointer(activations.reserved(rows * slots))
        let v = SendablePointer(arena.value(values))
        let out = SendablePointer(y)
        // Each chunk owns its rows of every output and its own scratch.
        parallelFor(chunks) { chunk in
            let scratch = TopSumScratch(
                indices: indexScratch.mutable + chunk * indexStride, kept: m, candidates: candidates,
                knn: k, scores: scoreScratch.mutable + chunk * candidates)
            for r in (chunk * rows / chunks)..<((chunk + 1) * rows / chunks) {
                let rowIndex = index.mutable + r * slots, rowScore = score.mutable + r * slots
                for head in 0..<h {
                    let s1 = hs.pointer + r * 2 * h * n + head * n
                    ProductKeyMemory.selectTopSums(
                        first: s1, second: s1 + h * n, keys: n, kept: m, knn: k, scratch: scratch,
                        indices: rowIndex + head * k, scores: rowScore + head * k)
                }
                let rowAct = act.mutable + r * slots
                switch activation {
                case .relu:
                    for i in 0..<slots { rowAct[i] = max(rowScore[i], 0) }
                case .softmax:
                    rowAct.update(from: rowScore, count: slots)
                    softmaxInPlace(rowAct, count: slots)
                case .softmaxPerHead:
                    rowAct.update(from: rowScore, count: slots)
                    for head in 0..<h { softmaxInPlace(rowAct + head * k, count: k) }
                }
                let yr = out.mutable + r * d
                yr.update(repeating: 0, count: d)
                for i in 0..<slots where rowAct[i] != 0 {
                    axpy(yr, rowAct[i], v.pointer + Int(rowIndex[i]) * d, count: d)
                }
            }
        }
        let totals = usageTotals, selected = index.pointer
        for i in 0..<(rows * slots) { totals[Int(selected[i])] += 1 }
    }

    /// Sparse: d act = dy . V[idx] per entry, through the activation to the chosen scores, which
    /// scatter into the half scores; dV by a counting sort of the entries by value row.
    func backwardSparse(
        dOutput dy: UnsafePointer<Float>, rows: Int, dHalfScores dHalf: UnsafeMutablePointer<Float>,
        arena: ParameterArena
    ) {
        let h = config.heads, n = config.keysPerHalf, k = config.knn, d = width, nn = valueCount
        let slots = h * k, entries = rows * slots
        let index = SendablePointer(selectedIndex.pointer)
        let act = SendablePointer(activations.pointer)
        let da = SendablePointer(dActivations.reserved(entries))
        let v = SendablePointer(arena.value(values))
        let dyp = SendablePointer(dy)
        let dh = SendablePointer(dHalf)
        let activation = config.activation
        let chunks = chunkCount(rows)
        parallelFor(chunks) { chunk in
            for r in (chunk * rows / chunks)..<((chunk + 1) * rows / chunks) {
                let g = da.mutable + r * slots, p = act.pointer + r * slots
                let rowIndex = index.pointer + r * slots
                let dyr = dyp.pointer + r * d
                for i in 0..<slots { g[i] = dot(dyr, v.pointer + Int(rowIndex[i]) * d, count: d) }
                switch activation {
                case .relu:
                    for i in 0..<slots { g[i] = p[i] > 0 ? g[i] : 0 }
                case .softmax:
                    let inner = dot(p, g, count: slots)
                    for i in 0..<slots { g[i] = p[i] * (g[i] - inner) }
                case .softmaxPerHead:
                    for head in 0..<h {
                        let ph = p + head * k, gh = g + head * k
                        let inner = dot(ph, gh, count: k)
                        for i in 0..<k { gh[i] = ph[i] * (gh[i] - inner) }
                    }
                }
                let row = dh.mutable + r * 2 * h * n
                row.update(repeating: 0, count: 2 * h * n)
                for head in 0..<h {
                    let d1 = row + head * n, d2 = row + (h + head) * n
                    for j in 0..<k {
                        let i = head * k + j, valueRow = Int(rowIndex[i])
                        d1[valueRow / n] += g[i]
                        d2[valueRow % n] += g[i]
                    }
                }
            }
        }
        // Counting sort of the entries by value row (stable: entry order within a row).
        let start = valueStart.reserved(nn + 1), cursor = valueCursor.reserved(nn)
        let order = entryOrder.reserved(entries)
        start.update(repeating: 0, count: nn + 1)
        for e in 0..<entries { start[Int(index.pointer[e]) + 1] += 1 }
        for j in 0..<nn { start[j + 1] += start[j] }
        cursor.update(from: start, count: nn)
        for e in 0..<entries {
            let j = Int(index.pointer[e])
            order[Int(cursor[j])] = Int32(e)
            cursor[j] += 1
        }
        // Workers own ranges of value rows holding about equal numbers of entries.
        let starts = SendablePointer(start), sorted = SendablePointer(order)
        // Entries go to their row's gradient group (rows R g / G ..< R (g + 1) / G, G dividing
        // R), in entry order within a value row, as a rank holding the group adds them.
        let groups = arena.gradientGroups, rowsPerGroup = rows / groups
        precondition(rows % groups == 0, "\(rows) rows in \(groups) gradient groups")
        let dV = (0..<groups).map { SendablePointer(arena.gradient(values, group: $0)) }
        let parts = chunkCount(entries)
        parallelFor(parts) { part in
            func boundary(_ part: Int) -> Int {
                part == parts
                    ? nn
                    : ProductKeyMemory.firstValueRow(starts.pointer, count: nn, reaching: part * entries / parts)
            }
            let low = boundary(part), high = boundary(part + 1)
            for j in low..<high {
                for t in Int(starts.pointer[j])..<Int(starts.pointer[j + 1]) {
                    let e = Int(sorted.pointer[t])
                    let weight = act.pointer[e]
                    let row = e / slots
                    if weight != 0 { axpy(dV[row / rowsPerGroup].mutable + j * d, weight, dyp.pointer + row * d, count: d) }
                }
            }
        }
    }

    /// The smallest j in 0...count with start[j] >= target (start is non-decreasing).
    private static func firstValueRow(
        _ start: UnsafePointer<Int32>, count: Int, reaching target: Int
    ) -> Int {
        var low = 0, high = count
        while low < high {
            let mid = (low + high) / 2
            if Int(start[mid]) < target { low = mid + 1 } else { high = mid }
        }
        return low
    }
}
