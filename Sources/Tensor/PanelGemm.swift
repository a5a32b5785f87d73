// A matrix product for the attention products of one (head, stream), written in Swift SIMD:
// content and position scores Q K^T, (q + v) (W_R R)^T and dO V^T (t x s outputs from a
// head's 64 columns), and P V, P^T dO, dRaw^T (q + u), dRaw K (outputs a head's 64 columns
// wide, summed over s or t); also the σ-MoE expert products (a few hundred rows by 64 columns,
// or over 64 terms), which measured faster here than in OpenBLAS (Docs/performance.md).
//
// Why not OpenBLAS there: at those shapes OpenBLAS copies ("packs") the whole t x s block of
// A before it multiplies it by 64 columns, and zeroes C before every product with beta 0; in
// the bench step's profile its packing and zeroing in these products took about a third of
// their time. This kernel reads A where it lies (any row and depth stride, so A^T costs
// nothing), copies only a block of B's rows that fits the L1 cache (transposing it when B is
// stored as keys), writes C once per block (beta 0 without a zeroing pass), and skips what
// causal attention never uses: the terms where A holds the masked future's zeros (`PanelZeros`)
// and the scores of keys and distances a query cannot see (`PanelOutputs`), a quarter of each
// product when memory and segment are equally long.
//
// Every sum runs over the depth in order, one fused multiply-add per term, in blocks of
// `panelDepthBlock` terms added to C in order: so the value of an entry depends only on its
// row of A and column of B, never on the shape of the call, the tile it fell in or the threads
// (skipped terms are exact zeros).

/// Terms of the depth copied and summed per block: 128 rows of a 64-column panel are 32 KiB,
/// which stays in the L1 data cache while every row tile of C reads it.
private let panelDepthBlock = 128

/// Where A is known to be zero, so a tile of rows can skip those terms of its sums: the
/// masked future of causal attention. Skipped terms are exact zeros, so a sum's value is the
/// same as over the whole depth.
public enum PanelZeros: Sendable, Equatable {
    /// No known zeros.
    case none
    /// `A(i, p) = 0` for `p > i + offset` (probabilities P, rows = queries, depth = keys).
    case after(offset: Int)
    /// `A(i, p) = 0` for `p < i - offset` (P^T, rows = keys, depth = queries).
    case before(offset: Int)

    /// The same zeros for the rows from `rows` on.
    func shifted(byRows rows: Int) -> Self {
        switch self {
        case .none: return .none
        case .after(let offset): return .after(offset: offset + rows)
        case .before(let offset): return .before(offset: offset - rows)
        }
    }

    /// The depth range a tile of rows `first ..< first + rows` must sum over.
    @inline(__always)
    func depthRange(first: Int, rows: Int, depth k: Int) -> Range<Int> {
        switch self {
        case .none: return 0..<k
        case .after(let offset): return 0..<max(0, min(k, first + rows + offset))
        case .before(let offset): return min(k, max(0, first - offset))..<k
        }
    }
}

/// Which entries of C a caller reads; the others may be left as they were. A row that needs
/// none of a column block skips it.
public enum PanelOutputs: Sendable, Equatable {
    case all
    /// Only `C(i, j)` with `j <= i + offset`: the scores a causal query can see (keys in order).
    case upTo(offset: Int)
    /// Only `C(i, j)` with `j >= offset - i`: the position scores a causal query can see
    /// (distances in reverse order, so that query i's last column is its distance 0).
    case from(offset: Int)

    /// The first row that needs any of the columns `columns`.
    @inline(__always)
    func firstRow(forColumns columns: Range<Int>, rows m: Int) -> Int {
        switch self {
        case .all: return 0
        case .upTo(let offset): return min(m, max(0, columns.lowerBound - offset))
        case .from(let offset): return min(m, max(0, offset - (columns.upperBound - 1)))
        }
    }
}

/// `C = A B + beta C` (`beta` 0 or 1) where `A(i, p) = a[i * rowStride + p * depthStride]` is
/// `m x k` (row-major: `rowStride = lda, depthStride = 1`; stored transposed: `rowStride = 1,
/// depthStride = lda`), B is `k x n`, row-major with row stride `ldb` or, with `transposeB`,
/// stored as `n x k` (the keys of a head, for scores), and C row-major with `ldc`. `n` must be
/// a multiple of 16 (`panelGemmSupports`). `zeros` says where A is zero, `outputs` which
/// entries of C are needed.
public func panelGemm(
    m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, rowStride: Int, depthStride: Int,
    b: UnsafePointer<Float>, ldb: Int, transposeB: Bool = false,
    beta: Float,
    c: UnsafeMutablePointer<Float>, ldc: Int,
    zeros: PanelZeros = .none, outputs: PanelOutputs = .all
) {
    precondition(panelGemmSupports(columns: n), "panelGemm needs a multiple of 16 columns, got \(n)")
    precondition(beta == 0 || beta == 1, "panelGemm takes beta 0 or 1")
    if m == 0 || n == 0 { return }
    // The packed panel (32 KiB) lives on the stack: a step allocates nothing. A profiler's
    // stack copy must be larger than it to see the callers (Scripts/bench/step_profile.py).
    withUnsafeTemporaryAllocation(of: Float.self, capacity: panelDepthBlock * 64) { buffer in
        panelProduct(
            m: m, n: n, k: k, a: a, rowStride: rowStride, depthStride: depthStride, b: b, ldb: ldb,
            transposeB: transposeB, beta: beta, c: c, ldc: ldc, zeros: zeros, outputs: outputs,
            packed: buffer.baseAddress!)
    }
}

/// `panelGemm` with its packing buffer (`panelDepthBlock x 64` floats).
private func panelProduct(
    m: Int, n: Int, k: Int, a: UnsafePointer<Float>, rowStride: Int, depthStride: Int,
    b: UnsafePointer<Float>, ldb: Int, transposeB: Bool, beta: Float,
    c: UnsafeMutablePointer<Float>, ldc: Int, zeros: PanelZeros, outputs: PanelOutputs,
    packed: UnsafeMutablePointer<Float>
) {
    var column = 0
    while column < n {
        let width = n - column >= 64 ? 64 : (n - column >= 32 ? 32 : 16)
        let firstRow = outputs.firstRow(forColumns: column..<(column + width), rows: m)
        let operands = PanelOperands(
            m: m - firstRow, k: k, a: a + firstRow * rowStride, rowStride: rowStride, depthStride: depthStride,
            zeros: zeros.shifted(byRows: firstRow), panel: packed, beta: beta, c: c + firstRow * ldc + column, ldc: ldc)
        // A tile with nothing to sum (k = 0, or all of its A zero) still owes C its beta.
        var start = 0
        repeat {
            let depth = min(panelDepthBlock, k - start)
            if transposeB {
                for block in stride(from: 0, to: width, by: 16) {
                    packTransposed(b + (column + block) * ldb + start, ldb: ldb, depth: depth,
                                   into: packed + block, rowStride: width)
                }
            } else {
                // Vector copies in line: a library call per 64-float row costs more than the copy.
                for p in 0..<depth {
                    let source = b + (start + p) * ldb + column, row = packed + p * width
                    for w in stride(from: 0, to: width, by: 16) { store16(load16(source + w), row + w) }
                }
            }
            switch width {
            case 64: operands.sumBlock(start..<(start + depth), vectors: 4, rows: 6)
            case 32: operands.sumBlock(start..<(start + depth), vectors: 2, rows: 12)
            default: operands.sumBlock(start..<(start + depth), vectors: 1, rows: 12)
            }
            start += depth
        } while start < k
        column += width
    }
}

/// `destination[p * rowStride + j] = source[j * ldb + p]` for 16 columns `j` of B stored as
/// keys and `depth` rows `p`: blocks of 16 x 16 transposed in registers, the rest one entry at
/// a time (a strided scalar copy of the whole panel took a tenth of the attention products).
@inline(__always)
private func packTransposed(
    _ source: UnsafePointer<Float>, ldb: Int, depth: Int, into destination: UnsafeMutablePointer<Float>, rowStride: Int
) {
    var p = 0
    while p + 16 <= depth {
        var block = SquareBlock16()
        block.withVectors { rows in
            for j in 0..<16 { rows[j] = load16(source + j * ldb + p) }
        }
        // Each round moves entry (r, c) to (8 (c mod 2) + r / 2, 8 (r mod 2) + c / 2): both
        // indices rotate right by one bit, trading their lowest bits; after four, (c, r).
        for _ in 0..<4 { block.interleaveEvenAndOdd() }
        block.withVectors { columns in
            for q in 0..<16 { store16(columns[q], destination + (p + q) * rowStride) }
        }
        p += 16
    }
    while p < depth {
        let row = destination + p * rowStride
        for j in 0..<16 { row[j] = source[j * ldb + p] }
        p += 1
    }
}

/// 16 rows of 16 floats held as vectors (in registers once inlined).
private struct SquareBlock16 {
    typealias V = SIMD16<Float>
    var v: (V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V) = (
        V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V())

    @inline(__always)
    mutating func withVectors(_ body: (UnsafeMutablePointer<V>) -> Void) {
        withUnsafeMutableBytes(of: &v) { body($0.baseAddress!.assumingMemoryBound(to: V.self)) }
    }

    /// Row i becomes the even entries of rows 2i and 2i + 1, row i + 8 their odd entries.
    @inline(__always)
    mutating func interleaveEvenAndOdd() {
        var next = SquareBlock16()
        withVectors { rows in
            next.withVectors { out in
                for i in 0..<8 {
                    out[i] = V(lowHalf: rows[2 * i].evenHalf, highHalf: rows[2 * i + 1].evenHalf)
                    out[i + 8] = V(lowHalf: rows[2 * i].oddHalf, highHalf: rows[2 * i + 1].oddHalf)
                }
            }
        }
        self = next
    }
}

/// Whether `panelOrBLASGemm` uses the panel kernel: in a native build (Package.swift) on a CPU
/// with AVX-512, whose 32 vector registers hold a tile's 24 SIMD16 accumulators. With AVX2's
/// 16 registers (or the portable build's SSE2) the same tiles would spill to memory, so
/// those machines keep OpenBLAS for these products.
public let panelKernelRuns: Bool = {
    #if LMTRAIN_NATIVE_CPU
    return OpenBLASKernel.CPUFeatures.current.avx512
    #else
    return false
    #endif
}()

/// Whether `panelGemm` takes a panel of `columns` columns.
@inlinable
public func panelGemmSupports(columns: Int) -> Bool { columns % 16 == 0 }

/// One column block of a `panelGemm` call, whose panel holds B's rows of the current depth block.
private struct PanelOperands {
    let m: Int, k: Int
    let a: UnsafePointer<Float>, rowStride: Int, depthStride: Int
    let zeros: PanelZeros
    let panel: UnsafePointer<Float>
    let beta: Float
    let c: UnsafeMutablePointer<Float>, ldc: Int

    /// Adds the terms of depths `block` to every row: tiles of `rows` rows, then single rows.
    /// A tile's first block (the one holding the start of its depth range, or block 0 when the
    /// range is empty) applies `beta`; later blocks add to C.
    @inline(__always)
    func sumBlock(_ block: Range<Int>, vectors: Int, rows: Int) {
        var i = 0
        while i < m {
            let tileRows = i + rows <= m ? rows : 1
            let range = zeros.depthRange(first: i, rows: tileRows, depth: k)
            let first = range.isEmpty ? 0 : range.lowerBound
            let opensTile = block.contains(first) || (block.lowerBound == 0 && block.isEmpty)
            let terms = range.clamped(to: block)
            if opensTile || !terms.isEmpty {
                panelTileKernel(rows: tileRows, vectors: vectors)(
                    terms.count, a + i * rowStride + terms.lowerBound * depthStride, rowStride, depthStride,
                    panel + (terms.lowerBound - block.lowerBound) * 16 * vectors, opensTile ? beta : 1,
                    c + i * ldc, ldc)
            }
            i += tileRows
        }
    }
}

private typealias PanelTileKernel = (
    _ depth: Int, _ a: UnsafePointer<Float>, _ rowStride: Int, _ depthStride: Int,
    _ b: UnsafePointer<Float>, _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) -> Void

/// One compiled function per tile shape: the compiler unrolls a tile's loops (and keeps its
/// accumulators in registers) only where the shape is a constant of a function of its own.
private func panelTileKernel(rows: Int, vectors: Int) -> PanelTileKernel {
    switch (rows, vectors) {
    case (6, 4): return { panelTile(rows: 6, vectors: 4, depth: $0, a: $1, rowStride: $2, depthStride: $3, b: $4, beta: $5, c: $6, ldc: $7) }
    case (12, 2): return { panelTile(rows: 12, vectors: 2, depth: $0, a: $1, rowStride: $2, depthStride: $3, b: $4, beta: $5, c: $6, ldc: $7) }
    case (12, 1): return { panelTile(rows: 12, vectors: 1, depth: $0, a: $1, rowStride: $2, depthStride: $3, b: $4, beta: $5, c: $6, ldc: $7) }
    case (1, 4): return { panelTile(rows: 1, vectors: 4, depth: $0, a: $1, rowStride: $2, depthStride: $3, b: $4, beta: $5, c: $6, ldc: $7) }
    case (1, 2): return { panelTile(rows: 1, vectors: 2, depth: $0, a: $1, rowStride: $2, depthStride: $3, b: $4, beta: $5, c: $6, ldc: $7) }
    case (1, 1): return { panelTile(rows: 1, vectors: 1, depth: $0, a: $1, rowStride: $2, depthStride: $3, b: $4, beta: $5, c: $6, ldc: $7) }
    default: preconditionFailure("no panel tile of \(rows) x \(vectors)")
    }
}

/// Room for up to 24 SIMD16 accumulators: a tile of `rows x vectors` with constant bounds, which
/// the compiler keeps in registers (checked in the generated code: no memory traffic for them).
private struct PanelAccumulators {
    typealias V = SIMD16<Float>
    var v: (V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V) = (
        V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(),
        V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V())
}

/// One tile: `rows` rows of C by `16 * vectors` columns, over `depth` terms of the packed panel
/// (row p at `b + p * 16 * vectors`). `rows * vectors <= 24`.
@inline(__always)
private func panelTile(
    rows: Int, vectors: Int, depth: Int,
    a: UnsafePointer<Float>, rowStride: Int, depthStride: Int,
    b: UnsafePointer<Float>, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    var accumulators = PanelAccumulators()
    withUnsafeMutableBytes(of: &accumulators) { raw in
        let acc = raw.baseAddress!.assumingMemoryBound(to: SIMD16<Float>.self)
        for index in 0..<(rows * vectors) { acc[index] = SIMD16() }
        var aColumn = a, bRow = b
        for _ in 0..<depth {
            var panel = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>())
            withUnsafeMutableBytes(of: &panel) { panelRaw in
                let row = panelRaw.baseAddress!.assumingMemoryBound(to: SIMD16<Float>.self)
                for w in 0..<vectors { row[w] = load16(bRow + 16 &* w) }
                for r in 0..<rows {
                    let x = SIMD16<Float>(repeating: aColumn[r &* rowStride])
                    for w in 0..<vectors { acc[r &* vectors &+ w].addProduct(x, row[w]) }
                }
            }
            aColumn += depthStride
            bRow += 16 &* vectors
        }
        for r in 0..<rows {
            for w in 0..<vectors {
                let out = c + (r &* ldc &+ 16 &* w)
                let sum = acc[r &* vectors &+ w]
                store16(beta == 0 ? sum : load16(out) + sum, out)
            }
        }
    }
}

/// `panelGemm` when it runs here (`panelKernelRuns`) and takes `n` columns, else `gemm`
/// (OpenBLAS). Arguments as `gemm`'s, with `beta` 0 or 1; `zeros` (where op(A) is known to be
/// zero) and `outputs` (which entries of C are read) let `panelGemm` skip work; `gemm`
/// computes everything.
@inlinable
public func panelOrBLASGemm(
    transposeA: Bool = false, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, transposeB: Bool = false,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, zeros: PanelZeros = .none, outputs: PanelOutputs = .all
) {
    if panelKernelRuns && panelGemmSupports(columns: n) {
        panelGemm(m: m, n: n, k: k, a: a, rowStride: transposeA ? 1 : lda, depthStride: transposeA ? lda : 1,
                  b: b, ldb: ldb, transposeB: transposeB, beta: beta, c: c, ldc: ldc, zeros: zeros, outputs: outputs)
    } else {
        gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
             beta: beta, c: c, ldc: ldc)
    }
}
