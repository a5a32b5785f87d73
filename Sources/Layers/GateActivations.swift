import Tensor

// Gate nonlinearities of the recurrent layers (LSTM, QuasiLSTM, SRWM), over SIMD16 lanes
// with Tensor's `exp16` (about 1 ulp), in place over a contiguous range:
//   sigmoid(x) = 1 / (1 + exp(-x))
//   tanh(x)    = sign(x) (1 - exp(-2|x|)) / (1 + exp(-2|x|))
// A range that is not a multiple of 16 finishes with one partly filled vector, so every
// element goes through the same arithmetic wherever it sits.

@inline(__always)
func sigmoid16(_ x: SIMD16<Float>) -> SIMD16<Float> {
    let one = SIMD16<Float>(repeating: 1), zero = SIMD16<Float>()
    return one / (one + exp16(zero - x))
}

@inline(__always)
func tanh16(_ x: SIMD16<Float>) -> SIMD16<Float> {
    let one = SIMD16<Float>(repeating: 1), zero = SIMD16<Float>()
    let minusTwo = SIMD16<Float>(repeating: -2)
    let negative = x .< zero
    var magnitude = x
    magnitude.replace(with: zero - x, where: negative)
    let e = exp16(minusTwo * magnitude)
    var result = (one - e) / (one + e)
    result.replace(with: zero - result, where: negative)
    return result
}

/// Applies `f` to `x[0..<count]` in place, 16 lanes at a time.
@inline(__always)
func applyInPlace(
    _ x: UnsafeMutablePointer<Float>, count: Int, _ f: (SIMD16<Float>) -> SIMD16<Float>
) {
    var i = 0
    while i + 16 <= count {
        store16(f(load16(x + i)), x + i)
        i += 16
    }
    if i < count {
        var tail = SIMD16<Float>()
        for lane in 0..<(count - i) { tail[lane] = x[i + lane] }
        let result = f(tail)
        for lane in 0..<(count - i) { x[i + lane] = result[lane] }
    }
}

/// `x = sigmoid(x)` elementwise.
@inline(__always)
func sigmoidInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
    applyInPlace(x, count: count, sigmoid16)
}

/// `x = tanh(x)` elementwise.
@inline(__always)
func tanhInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
    applyInPlace(x, count: count, tanh16)
}
