// Elementwise and reduction kernels over raw Float buffers.
//
// Elementwise loops are written plainly (LLVM vectorises them); reductions use explicit
// SIMD16 accumulators because Swift does not reorder floating-point sums (a plain loop would not
// vectorise), which
// also makes every reduction's summation order fixed and therefore reproducible.

@inlinable @inline(__always)
public func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}

@inlinable @inline(__always)
public func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
}

/// `sum(x)` with SIMD16 partial sums.
@inlinable
public func sum(_ x: UnsafePointer<Float>, count: Int) -> Float {
    var acc = SIMD16<Float>()
    var i = 0
    while i + 16 <= count {
        acc += load16(x + i)
        i += 16
    }
    var total = acc.sum()
    while i < count {
        total += x[i]
        i += 1
    }
    return total
}

/// `sum(a * b)` with SIMD16 partial sums.
@inlinable
public func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
    var acc0 = SIMD16<Float>(), acc1 = SIMD16<Float>()
    var i = 0
    while i + 32 <= count {
        acc0 += load16(a + i) * load16(b + i)
        acc1 += load16(a + i + 16) * load16(b + i + 16)
        i += 32
    }
    if i + 16 <= count {
        acc0 += load16(a + i) * load16(b + i)
        i += 16
    }
    var total = (acc0 + acc1).sum()
    while i < count {
        total += a[i] * b[i]
        i += 1
    }
    return total
}

/// `max(x)`; `-inf` for an empty range.
@inlinable
public func maximum(_ x: UnsafePointer<Float>, count: Int) -> Float {
    var acc = SIMD16<Float>(repeating: -.infinity)
    var i = 0
    while i + 16 <= count {
        // `replace(with:where:)` compiles to a compare and blend; `pointwiseMax` was 10x slower.
        let v = load16(x + i)
        acc.replace(with: v, where: v .> acc)
        i += 16
    }
    var result = acc.max()
    while i < count {
        result = Swift.max(result, x[i])
        i += 1
    }
    return result
}

/// `sum(x^2)` accumulated in Double across SIMD16 Float blocks of 4096 elements.
@inlinable
public func sumOfSquaresDouble(_ x: UnsafePointer<Float>, count: Int) -> Double {
    var total = 0.0
    var start = 0
    while start < count {
        let n = Swift.min(4096, count - start)
        total += Double(dot(x + start, x + start, count: n))
        start += n
    }
    return total
}

/// `y += x`.
@inlinable
public func addInPlace(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { y[i] += x[i] }
}

/// `y += alpha * x`.
@inlinable
public func axpy(
    _ y: UnsafeMutablePointer<Float>, _ alpha: Float, _ x: UnsafePointer<Float>, count: Int
) {
    for i in 0..<count { y[i] += alpha * x[i] }
}

/// `out = a + b`.
@inlinable
public func add(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
    count: Int
) {
    for i in 0..<count { out[i] = a[i] + b[i] }
}

/// `x *= factor`.
@inlinable
public func scale(_ x: UnsafeMutablePointer<Float>, by factor: Float, count: Int) {
    for i in 0..<count { x[i] *= factor }
}

/// `x *= mask` elementwise.
@inlinable
public func multiplyInPlace(
    _ x: UnsafeMutablePointer<Float>, _ mask: UnsafePointer<Float>, count: Int
) {
    for i in 0..<count { x[i] *= mask[i] }
}

/// `y[r, :] += bias` for every row.
@inlinable
public func addRowVector(
    _ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, columns: Int
) {
    let y = SendablePointer(y), bias = SendablePointer(bias)
    parallelChunks(rows, minimumChunk: max(1, 16_384 / max(1, columns))) { range in
        for r in range { addInPlace(y.mutable + r * columns, bias.pointer, count: columns) }
    }
}

// MARK: - Exponential

/// `exp(x)` for 16 lanes: Cody-Waite range reduction to `x = n ln2 + r`, |r| <= ln2/2, and the
/// Cephes degree-6 polynomial for `exp(r)` (about 1 ulp on the tested range). Inputs below
/// -87.3 (including -inf, used for masked scores) give 0, inputs above 88 saturate at exp(88).
/// Tested against `Foundation.exp` (`TensorTests`).
///
/// Written with explicitly typed constants and compare-and-blend: type-inferred
/// `SIMD16(repeating:)` inside expressions and `pointwiseMin/Max` fall back to unspecialised
/// per-lane code (measured 100x slower on these machines).
@inlinable @inline(__always)
public func exp16(_ input: SIMD16<Float>) -> SIMD16<Float> {
    let low = SIMD16<Float>(repeating: -88), high = SIMD16<Float>(repeating: 88)
    var x = input
    x.replace(with: low, where: low .> x)
    x.replace(with: high, where: x .> high)
    // Rounding by adding 1.5 * 2^23: the integer n lands in the low mantissa bits.
    let magic = SIMD16<Float>(repeating: 12_582_912)
    let log2e = SIMD16<Float>(repeating: 1.442_695_04)
    let shifted = x * log2e + magic
    let n = shifted - magic
    let ln2High = SIMD16<Float>(repeating: 0.693_145_751_953_125)
    let ln2Low = SIMD16<Float>(repeating: 1.428_606_765_330_187e-6)
    let r = (x - n * ln2High) - n * ln2Low
    var p = SIMD16<Float>(repeating: 1.987_569_150_0e-4)
    p = p * r + SIMD16<Float>(repeating: 1.398_199_950_7e-3)
    p = p * r + SIMD16<Float>(repeating: 8.333_451_907_3e-3)
    p = p * r + SIMD16<Float>(repeating: 4.166_579_589_4e-2)
    p = p * r + SIMD16<Float>(repeating: 1.666_666_545_9e-1)
    p = p * r + SIMD16<Float>(repeating: 5.000_000_120_1e-1)
    p = p * (r * r) + r + SIMD16<Float>(repeating: 1)
    let integer = unsafeBitCast(shifted, to: SIMD16<Int32>.self)
        &- unsafeBitCast(magic, to: SIMD16<Int32>.self)
    let exponent = (integer &+ SIMD16<Int32>(repeating: 127)) &<< SIMD16<Int32>(repeating: 23)
    let result = p * unsafeBitCast(exponent, to: SIMD16<Float>.self)
    // exp(-87.3) is near the smallest normal float; flush lanes below it to 0 with a bit
    // mask (-inf gives exactly 0). NaN fails every comparison above and here, so it stays NaN
    // and a NaN logit makes the loss NaN instead of vanishing.
    let floor = SIMD16<Float>(repeating: -87.3)
    let flush = unsafeBitCast(input .< floor, to: SIMD16<Int32>.self)
    return unsafeBitCast(unsafeBitCast(result, to: SIMD16<Int32>.self) & ~flush, to: SIMD16<Float>.self)
}

/// Scalar `exp` with the same polynomial as `exp16`, so tails of SIMD loops agree with bodies.
@inlinable @inline(__always)
public func exp1(_ x: Float) -> Float { exp16(SIMD16(repeating: x))[0] }

/// `x[i] = exp(x[i] - shift)` in place; returns the sum of the results.
@inlinable
public func expInPlace(_ x: UnsafeMutablePointer<Float>, count: Int, minus shift: Float) -> Float
{
    let s = SIMD16<Float>(repeating: shift)
    var acc = SIMD16<Float>()
    var i = 0
    while i + 16 <= count {
        let e = exp16(load16(x + i) - s)
        store16(e, x + i)
        acc += e
        i += 16
    }
    var total = acc.sum()
    while i < count {
        let e = exp1(x[i] - shift)
        x[i] = e
        total += e
        i += 1
    }
    return total
}

/// Numerically stable softmax of one row, in place.
@inlinable
public func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
    let m = maximum(x, count: count)
    let total = expInPlace(x, count: count, minus: m)
    scale(x, by: 1 / total, count: count)
}
