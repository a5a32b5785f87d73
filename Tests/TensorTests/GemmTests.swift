import Testing
import Tensor
import TestSupport

@Suite(.serialized) struct GemmTests {
    /// Every transpose combination with leading dimensions wider than the matrices, against
    /// the naive triple loop.
    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func gemmMatchesNaiveLoop(transposeA: Bool, transposeB: Bool) {
        let (m, n, k) = (7, 5, 9)
        let lda = (transposeA ? m : k) + 3, ldb = (transposeB ? k : n) + 2, ldc = n + 4
        let a = randomArray((transposeA ? k : m) * lda, seed: 1)
        let b = randomArray((transposeB ? n : k) * ldb, seed: 2)
        let c0 = randomArray(m * ldc, seed: 3)
        for beta: Float in [0, 1, 0.5] {
            var fast = c0, slow = c0
            gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: 0.7,
                 a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: &fast, ldc: ldc)
            naiveGemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: 0.7,
                      a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: &slow, ldc: ldc)
            for i in 0..<(m * ldc) { #expect(abs(fast[i] - slow[i]) < 1e-4, "index \(i) beta \(beta)") }
        }
    }

    @Test func emptyInnerDimensionScalesC() {
        var c: [Float] = [1, 2, 3, 4]
        let a: [Float] = [0], b: [Float] = [0]
        gemm(m: 2, n: 2, k: 0, a: a, lda: 1, b: b, ldb: 2, beta: 0.5, c: &c, ldc: 2)
        #expect(c == [0.5, 1, 1.5, 2])
    }

    @Test func columnSumsThroughBlasMatchLoop() {
        let (rows, columns, stride) = (37, 6, 9)
        let x = randomArray(rows * stride, seed: 8)
        var fast = [Float](repeating: 1, count: columns)
        addColumnSums(&fast, of: x, rows: rows, columns: columns, rowStride: stride)
        for j in 0..<columns {
            var expected: Float = 1
            for r in 0..<rows { expected += x[r * stride + j] }
            #expect(abs(fast[j] - expected) < 1e-4)
        }
    }

    /// The panel kernel against the naive loop: row-major and transposed A and B, panels of 64,
    /// 32 and 16 columns and their sums (112 = 64 + 32 + 16), rows that fill whole tiles and
    /// rows left over (the 6-row and 12-row tiles, then single rows), depths within one block
    /// and across several (`panelDepthBlock` is 128), leading dimensions wider than the
    /// matrices, beta 0 (C's old values ignored, NaN included) and 1.
    @Test(arguments: [(13, 64, 300), (24, 32, 7), (5, 16, 129), (19, 112, 256), (1, 48, 1)])
    func panelGemmMatchesNaiveLoop(m: Int, n: Int, k: Int) {
        for (transposeA, transposeB) in [(false, false), (true, false), (false, true), (true, true)] {
            let lda = (transposeA ? m : k) + 3, ldb = (transposeB ? k : n) + 5, ldc = n + 2
            let a = randomArray((transposeA ? k : m) * lda, seed: 11)
            let b = randomArray((transposeB ? n : k) * ldb, seed: 12)
            var c0 = randomArray(m * ldc, seed: 13)
            for beta: Float in [0, 1] {
                if beta == 0 { c0[0] = .nan }
                var fast = c0, slow = c0
                panelGemm(m: m, n: n, k: k, a: a, rowStride: transposeA ? 1 : lda, depthStride: transposeA ? lda : 1,
                          b: b, ldb: ldb, transposeB: transposeB, beta: beta, c: &fast, ldc: ldc)
                if beta == 0 { c0[0] = 0; slow[0] = 0 }
                naiveGemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda,
                          b: b, ldb: ldb, beta: beta, c: &slow, ldc: ldc)
                for row in 0..<m {
                    for column in 0..<ldc {
                        let index = row * ldc + column
                        if column < n {
                            #expect(abs(fast[index] - slow[index]) < 1e-4 * Float(k).squareRoot(),
                                    "row \(row) column \(column) transpose \(transposeA), \(transposeB) beta \(beta)")
                        } else {
                            #expect(fast[index] == c0[index], "padding \(row), \(column) written")
                        }
                    }
                }
            }
        }
    }

    /// With `outputs: .upTo(offset:)` every entry a causal query reads (`j <= i + offset`) is
    /// the product's, and with `.from(offset:)` every entry `j >= offset - i` (position scores in
    /// reverse distance); rows that read none of a column block are skipped there.
    @Test(arguments: [
        PanelOutputs.upTo(offset: 0), .upTo(offset: 7), .upTo(offset: -20), .upTo(offset: 100),
        .from(offset: 39), .from(offset: 0), .from(offset: 100), .from(offset: 250), .from(offset: -3),
    ])
    func panelGemmComputesTheOutputsACausalQueryReads(outputs: PanelOutputs) {
        let (m, n, k) = (40, 160, 24)
        let a = randomArray(m * k, seed: 51), b = randomArray(n * k, seed: 52)
        var fast = [Float](repeating: .nan, count: m * n), slow = fast
        panelGemm(m: m, n: n, k: k, a: a, rowStride: k, depthStride: 1, b: b, ldb: k, transposeB: true,
                  beta: 0, c: &fast, ldc: n, outputs: outputs)
        naiveGemm(transposeB: true, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, beta: 0, c: &slow, ldc: n)
        func needed(_ i: Int, _ j: Int) -> Bool {
            switch outputs {
            case .all: return true
            case .upTo(let offset): return j <= i + offset
            case .from(let offset): return j >= offset - i
            }
        }
        var skipped = 0
        for i in 0..<m {
            for j in 0..<n {
                if needed(i, j) {
                    #expect(abs(fast[i * n + j] - slow[i * n + j]) < 1e-4, "\(i), \(j), \(outputs)")
                } else if fast[i * n + j].isNaN {
                    skipped += 1
                }
            }
        }
        // Rows before a column block's first reader leave it alone: blocks of 64, 64 and 32.
        let expected = [(0, 64), (64, 64), (128, 32)].reduce(0) { total, block in
            let (first, width) = block
            let rows: Int
            switch outputs {
            case .all: rows = 0
            case .upTo(let offset): rows = first - offset
            case .from(let offset): rows = offset - (first + width - 1)
            }
            return total + min(m, max(0, rows)) * width
        }
        #expect(skipped == expected, "skipped \(skipped) of \(outputs)")
    }

    /// An entry's bits depend only on its row of A and column of B, never on the call's shape:
    /// a row computed alone, or inside a larger block at another offset, is the same.
    @Test func panelGemmRowIsIndependentOfTheTile() {
        let (m, n, k) = (29, 64, 200)
        let a = randomArray(m * k, seed: 21), b = randomArray(k * n, seed: 22)
        var whole = [Float](repeating: 0, count: m * n)
        panelGemm(m: m, n: n, k: k, a: a, rowStride: k, depthStride: 1, b: b, ldb: n, beta: 0, c: &whole, ldc: n)
        for row in [0, 5, 6, 17, 28] {
            var single = [Float](repeating: 0, count: n)
            a.withUnsafeBufferPointer { ap in
                panelGemm(m: 1, n: n, k: k, a: ap.baseAddress! + row * k, rowStride: k, depthStride: 1,
                          b: b, ldb: n, beta: 0, c: &single, ldc: n)
            }
            #expect(Array(whole[(row * n)..<((row + 1) * n)]) == single, "row \(row)")
        }
    }

    /// Panels of other widths go to `gemm` (as every panel does where the kernel does not run).
    @Test func panelOrBLASGemmTakesOtherWidthsThroughBLAS() {
        #expect(panelGemmSupports(columns: 64) && panelGemmSupports(columns: 32) && !panelGemmSupports(columns: 41))
        let (m, n, k) = (9, 41, 33)
        let a = randomArray(m * k, seed: 31), b = randomArray(k * n, seed: 32)
        var fast = [Float](repeating: 0, count: m * n), slow = fast
        panelOrBLASGemm(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, beta: 0, c: &fast, ldc: n)
        naiveGemm(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, beta: 0, c: &slow, ldc: n)
        for i in 0..<fast.count { #expect(abs(fast[i] - slow[i]) < 1e-4) }
    }

    /// Skipping the known zeros of A (the masked future) gives the product of the whole A:
    /// zeros after the diagonal (P V, with memory, and with rows whose A is all zero) and before
    /// it (P^T dO), tiles that start past a depth block, C's old values ignored with beta 0.
    @Test(arguments: [
        (PanelZeros.after(offset: 7), 30, 300), (.after(offset: 0), 13, 13), (.after(offset: -5), 20, 40),
        (.before(offset: 7), 300, 30), (.before(offset: 140), 290, 150), (.before(offset: 0), 13, 13),
    ])
    func panelGemmSkipsTheZerosOfA(zeros: PanelZeros, m: Int, k: Int) {
        let n = 64, ldc = n
        var a = randomArray(m * k, seed: 41)
        for i in 0..<m {
            for p in 0..<k {
                let zero: Bool
                switch zeros {
                case .after(let offset): zero = p > i + offset
                case .before(let offset): zero = p < i - offset
                case .none: zero = false
                }
                if zero { a[i * k + p] = 0 }
            }
        }
        let b = randomArray(k * n, seed: 42)
        for beta: Float in [0, 1] {
            var fast = randomArray(m * ldc, seed: 43)
            var slow = fast
            if beta == 0 { fast = fast.map { _ in .nan } }
            panelGemm(m: m, n: n, k: k, a: a, rowStride: k, depthStride: 1, b: b, ldb: n, beta: beta,
                      c: &fast, ldc: ldc, zeros: zeros)
            naiveGemm(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, beta: beta, c: &slow, ldc: ldc)
            for index in 0..<(m * ldc) {
                #expect(abs(fast[index] - slow[index]) < 1e-4 * Float(k).squareRoot(), "\(zeros) index \(index) beta \(beta)")
            }
        }
    }
}
