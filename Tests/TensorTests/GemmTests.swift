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

    @Test func batchedGemmMatchesLoopOfProducts() {
        Threads.configure(2)
        defer { Threads.configure(1) }
        let (count, m, n, k) = (6, 4, 3, 5)
        let a = randomArray(count * m * k, seed: 4), b = randomArray(count * k * n, seed: 5)
        var batched = [Float](repeating: 0, count: count * m * n)
        var single = batched
        batchedGemm(count: count, m: m, n: n, k: k, a: a, lda: k, strideA: m * k,
                    b: b, ldb: n, strideB: k * n, beta: 0, c: &batched, ldc: n, strideC: m * n)
        for i in 0..<count {
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    single.withUnsafeMutableBufferPointer { cp in
                        naiveGemm(m: m, n: n, k: k, a: ap.baseAddress! + i * m * k, lda: k,
                                  b: bp.baseAddress! + i * k * n, ldb: n, beta: 0,
                                  c: cp.baseAddress! + i * m * n, ldc: n)
                    }
                }
            }
        }
        for i in 0..<batched.count { #expect(abs(batched[i] - single[i]) < 1e-4) }
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
}
