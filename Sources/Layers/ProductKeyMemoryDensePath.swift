import Tensor

// The dense path of the product-key memory: the official code's `forward_dense`, taken when
// every half has at most knn sub-keys (`no_knn`). Legend as in ProductKeyMemory.swift.
//   score[r, a*n + b] = sum_h (s1_h[a] + s2_h[b])                  [R, N]
//   y = act(score) V, act over all N scores of a token (softmax, or ReLU)   [R, d]
//   backward   dact = dy V^T, dV += act^T dy (two GEMMs); dscore through act;
//              ds1_h[a] = sum_b dscore[a*n + b], ds2_h[b] = sum_a dscore[a*n + b] for every h
//
// It sums the heads' scores *before* the activation, so it is a different function from the
// sparse path even when the sparse path prunes nothing; the two agree only with one head and
// k = N (then both activate the same N scores of one head).

extension ProductKeyMemory {
    /// The summed half scores and the activations over all N values (and their gradient).
    func declareDenseBuffers(rows: Int, training: Bool, in plan: inout BufferPlan) {
        plan.declare(summedHalfScores, "PKM summed half scores", count: rows * 2 * config.keysPerHalf)
        plan.declare(activations, "PKM activations", count: rows * valueCount)
        if training { plan.declare(dActivations, "PKM activation gradient", count: rows * valueCount) }
    }

    /// score[r, a*n + b] = sum_h s1_h[a] + sum_h s2_h[b]; act in place; y = act V.
    func forwardDense(
        rows: Int, output y: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        let h = config.heads, n = config.keysPerHalf, nn = valueCount
        let activation = config.activation
        let hs = SendablePointer(halfScores.pointer)
        let summed = SendablePointer(summedHalfScores.reserved(rows * 2 * n))
        let act = SendablePointer(activations.reserved(rows * nn))
        parallelChunks(rows, minimumChunk: max(1, 16_384 / nn)) { range in
            for r in range {
                let s = summed.mutable + r * 2 * n
                for p in 0..<2 {
                    let out = s + p * n
                    let first = hs.pointer + r * 2 * h * n + p * h * n
                    out.update(from: first, count: n)
                    for head in 1..<max(1, h) { addInPlace(out, first + head * n, count: n) }
                }
                let row = act.mutable + r * nn
                for a in 0..<n {
                    let s1 = s[a], line = row + a * n
                    for b in 0..<n { line[b] = s1 + s[n + b] }
                }
                switch activation {
                case .relu: for i in 0..<nn { row[i] = max(row[i], 0) }
                case .softmax, .softmaxPerHead: softmaxInPlace(row, count: nn)  // (validate: not per head)
                }
            }
        }
        gemmInRowGroups(
            arena.gradientGroups, m: rows, n: width, k: nn, a: act.pointer, lda: nn, b: arena.value(values), ldb: width,
            beta: 0, c: y, ldc: width)
        // Usage: each worker counts a range of value rows (columns of act) over all tokens.
        let totals = SendablePointer(usageTotals)
        parallelChunks(nn, minimumChunk: 1024) { range in
            for r in 0..<rows {
                let row = act.pointer + r * nn
                for j in range { totals.mutable[j] &+= row[j] != 0 ? 1 : 0 }
            }
        }
    }

    /// From dL/dy to dL/d(half scores) [R, 2, H, n] and dV (dense: two GEMMs).
    func backwardDense(
        dOutput dy: UnsafePointer<Float>, rows: Int, dHalfScores dHalf: UnsafeMutablePointer<Float>,
        arena: ParameterArena
    ) {
        let h = config.heads, n = config.keysPerHalf, nn = valueCount, d = width
        let act = SendablePointer(activations.pointer)
        let da = SendablePointer(dActivations.reserved(rows * nn))
        gemmInRowGroups(
            arena.gradientGroups, transposeB: true, m: rows, n: nn, k: d, a: dy, lda: d, b: arena.value(values), ldb: d,
            beta: 0, c: da.mutable, ldc: nn)
        gemmOverRowGroups(
            arena.gradientGroups, m: nn, n: d, rows: rows, a: act.pointer, lda: nn, b: dy, ldb: d,
            gradient: { arena.gradient(values, group: $0) }, ldc: d)
        let activation = config.activation
        let dh = SendablePointer(dHalf)
        parallelChunks(rows, minimumChunk: max(1, 16_384 / nn)) { range in
            for r in range {
                let g = da.mutable + r * nn, p = act.pointer + r * nn
                switch activation {
                case .relu:
                    for i in 0..<nn { g[i] = p[i] > 0 ? g[i] : 0 }
                case .softmax, .softmaxPerHead:
                    let inner = dot(p, g, count: nn)
                    for i in 0..<nn { g[i] = p[i] * (g[i] - inner) }
                }
                // d score / d s1[a] sums over b, d score / d s2[b] over a; every head gets both.
                let row = dh.mutable + r * 2 * h * n
                let d1 = row, d2 = row + h * n
                for a in 0..<n { d1[a] = sum(g + a * n, count: n) }
                d2.update(from: g, count: n)
                for a in 1..<max(1, n) { addInPlace(d2, g + a * n, count: n) }
                for head in 1..<max(1, h) {
                    (d1 + head * n).update(from: d1, count: n)
                    (d2 + head * n).update(from: d2, count: n)
                }
            }
        }
    }

}
