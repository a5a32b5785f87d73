import CBLAS

/// The one matrix-product entry point: `C = alpha * op(A) * op(B) + beta * C`, row-major,
/// through OpenBLAS `cblas_sgemm`.
///
/// OpenBLAS itself always runs single-threaded (`Threads`); a large product is split into
/// `Threads.count` blocks of rows of C (or of columns when C has few rows), each computed by
/// one `parallelFor` worker. Idle OpenBLAS worker threads spin in `sched_yield`, which took a
/// fifth of the CPU from lmtrain's own loops when both were used.
///
/// Shapes: `op(A)` is `m x k`, `op(B)` is `k x n`, `C` is `m x n`. `transposeA` means `A` is
/// stored as `k x m` (so `op(A) = A^T`), likewise for `B`. Leading dimensions are the row
/// strides of the matrices as stored (`lda >= k` when not transposed, `>= m` when transposed),
/// which lets callers address one head's columns inside a wider matrix without copying.
/// `beta = 1` accumulates, which is how backward passes add into gradient buffers.
@inlinable
public func gemm(
    transposeA: Bool = false, transposeB: Bool = false,
    m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float,
    c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        // BLAS would only scale C; do it here so no implementation detail leaks through.
        for row in 0..<m {
            let line = c + row * ldc
            if beta == 0 {
                line.update(repeating: 0, count: n)
            } else if beta != 1 {
                for column in 0..<n { line[column] *= beta }
            }
        }
        return
    }
    let workers = Threads.count
    if workers > 1 && !Threads.parallelRegionRunning && m * n * k >= 1 << 21 {
        let a = SendablePointer(a), b = SendablePointer(b), c = SendablePointer(c)
        if m >= n || m >= 64 * workers {
            // Row blocks: op(A) rows and C rows.
            parallelFor(workers) { part in
                let start = part * m / workers, end = (part + 1) * m / workers
                let aBlock = transposeA ? a.pointer + start : a.pointer + start * lda
                sgemmSingleThread(transposeA, transposeB, end - start, n, k, alpha, aBlock, lda, b.pointer, ldb, beta, c.mutable + start * ldc, ldc)
            }
        } else {
            // Column blocks: op(B) columns and C columns.
            parallelFor(workers) { part in
                let start = part * n / workers, end = (part + 1) * n / workers
                let bBlock = transposeB ? b.pointer + start * ldb : b.pointer + start
                sgemmSingleThread(transposeA, transposeB, m, end - start, k, alpha, a.pointer, lda, bBlock, ldb, beta, c.mutable + start, ldc)
            }
        }
        return
    }
    sgemmSingleThread(transposeA, transposeB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

/// `gemm` of a row-wise product (op(A) not transposed) in `groups` calls, one per run of rows
/// `m * g / groups ..< m * (g + 1) / groups`. OpenBLAS may pick its kernel by the size of a
/// product, so a row's bits can depend on how many rows share its call; with the rows of each
/// gradient group in a call of their own (see ParameterArena), a rank holding a group
/// computes it exactly as one process does.
public func gemmInRowGroups(
    _ groups: Int, transposeB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float,
    c: UnsafeMutablePointer<Float>, ldc: Int
) {
    for group in 0..<groups {
        let part = rowsOfGroup(group, of: groups, in: m)
        gemm(
            transposeB: transposeB, m: part.count, n: n, k: k, alpha: alpha, a: a + part.lowerBound * lda, lda: lda,
            b: b, ldb: ldb, beta: beta, c: c + part.lowerBound * ldc, ldc: ldc)
    }
}

/// The weight gradient of a row-wise product, one sum per gradient group: for each group g,
/// `gradient(g) += A_g^T B_g`, where A (`rows x m`) and B (`rows x n`) are row-major with
/// leading dimensions `lda` and `ldb`, and A_g, B_g are group g's rows (`rowsOfGroup`).
public func gemmOverRowGroups(
    _ groups: Int, m: Int, n: Int, rows: Int,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    gradient: (Int) -> UnsafeMutablePointer<Float>, ldc: Int
) {
    for group in 0..<groups {
        let part = rowsOfGroup(group, of: groups, in: rows)
        gemm(
            transposeA: true, m: m, n: n, k: part.count, a: a + part.lowerBound * lda, lda: lda,
            b: b + part.lowerBound * ldb, ldb: ldb, beta: 1, c: gradient(group), ldc: ldc)
    }
}

/// Rows `rows * g / groups ..< rows * (g + 1) / groups`: gradient group g's share of a pass
/// over `rows` stream-major rows (its streams when `groups` divides the streams).
@inlinable
public func rowsOfGroup(_ group: Int, of groups: Int, in rows: Int) -> Range<Int> {
    (rows * group / groups)..<(rows * (group + 1) / groups)
}

@inlinable
func sgemmSingleThread(
    _ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    if m == 0 || n == 0 { return }
    cblas_sgemm(
        CblasRowMajor,
        transposeA ? CblasTrans : CblasNoTrans,
        transposeB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha,
        a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Reference product used only by tests: the plain triple loop over the same arguments.
public func naiveGemm(
    transposeA: Bool = false, transposeB: Bool = false,
    m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float,
    c: UnsafeMutablePointer<Float>, ldc: Int
) {
    for i in 0..<m {
        for j in 0..<n {
            var sum: Double = 0
            for p in 0..<k {
                let x = transposeA ? a[p * lda + i] : a[i * lda + p]
                let y = transposeB ? b[j * ldb + p] : b[p * ldb + j]
                sum += Double(x) * Double(y)
            }
            let old = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
            c[i * ldc + j] = Float(Double(alpha) * sum + old)
        }
    }
}

/// `y = alpha * op(A) x + beta * y` for a row-major `rows x columns` matrix `A`
/// (`transpose` multiplies by `A^T`, so `x` has `rows` entries and `y` has `columns`).
@inlinable
public func gemv(
    transpose: Bool = false, rows: Int, columns: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int, x: UnsafePointer<Float>, beta: Float,
    y: UnsafeMutablePointer<Float>
) {
    if rows == 0 || columns == 0 { return }
    cblas_sgemv(
        CblasRowMajor, transpose ? CblasTrans : CblasNoTrans, Int32(rows), Int32(columns),
        alpha, a, Int32(lda), x, 1, beta, y, 1)
}

/// Column sums through BLAS: `out += sum over rows of x[r, :]` (`out` has `columns` entries).
/// `ones` must hold at least `rows` ones (see `Ones`).
@inlinable
public func addColumnSums(
    _ out: UnsafeMutablePointer<Float>, of x: UnsafePointer<Float>, rows: Int, columns: Int,
    rowStride: Int
) {
    let ones = Ones.shared.pointer(count: rows)
    gemv(
        transpose: true, rows: rows, columns: columns, a: x, lda: rowStride, x: ones, beta: 1,
        y: out)
}

/// A growing vector of ones shared by column-sum products. Used from the driving thread only.
/// Layers that sum columns of `rows` rows declare it in their `BufferPlan`, so it grows
/// before a pass, never inside one.
public final class Ones: @unchecked Sendable {
    public static let shared = Ones()
    private let buffer = FloatBuffer()
    private var filled = 0

    /// At least `count` ones.
    public func pointer(count: Int) -> UnsafePointer<Float> {
        if count > filled {
            let p = buffer.reserve(count)
            p.initialize(repeating: 1, count: count)
            filled = count
        }
        return UnsafePointer(buffer.pointer)
    }

    /// Declares `count` ones for a pass.
    public func declare(count: Int, in plan: inout BufferPlan) {
        plan.declare(
            ObjectIdentifier(self), "ones for column sums", bytes: 4 * count,
            reserve: { [self] bytes in _ = pointer(count: bytes / 4) })
    }
}
