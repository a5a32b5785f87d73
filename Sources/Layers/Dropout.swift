import Tensor

// Inverted dropout: in training each element is kept with probability 1 - p and scaled by
// 1 / (1 - p); at evaluation (or p = 0) it is the identity. Applied in place.

/// Dropout with a saved mask for the backward pass.
public final class Dropout {
    public let rate: Float
    private let mask = FloatBuffer()
    private var active = false

    public init(rate: Float) {
        precondition(rate >= 0 && rate < 1, "dropout rate must be in [0, 1)")
        self.rate = rate
    }

    /// The mask of `count` elements, when the pass draws masks.
    public func declareBuffers(count: Int, for pass: PassShape, in plan: inout BufferPlan) {
        if pass.dropout && rate > 0 { plan.declare(mask, "dropout mask", count: count) }
    }

    /// x *= mask, drawing a new mask from `context.rng` in training.
    public func forward(_ x: UnsafeMutablePointer<Float>, count: Int, context: inout ForwardContext) {
        active = context.dropoutActive && rate > 0
        guard active else { return }
        let m = mask.reserved(count)
        Dropout.fillMask(m, count: count, rate: rate, rng: &context.rng)
        multiplyInPlace(x, m, count: count)
    }

    /// dx = dy * mask, in place.
    public func backward(_ dy: UnsafeMutablePointer<Float>, count: Int) {
        guard active else { return }
        multiplyInPlace(dy, mask.pointer, count: count)
    }

    /// mask[i] = 1/(1-p) with probability 1-p, else 0; two 24-bit uniforms per 64-bit draw.
    public static func fillMask(
        _ m: UnsafeMutablePointer<Float>, count: Int, rate: Float, rng: inout RandomGenerator
    ) {
        let keep = 1 / (1 - rate)
        // u < rate drops; compare in integer space: u24 < rate * 2^24.
        let threshold = UInt64((Double(rate) * 16_777_216).rounded())
        var i = 0
        while i + 2 <= count {
            let bits = rng.next()
            m[i] = (bits >> 40) < threshold ? 0 : keep
            m[i + 1] = ((bits >> 8) & 0xFF_FFFF) < threshold ? 0 : keep
            i += 2
        }
        if i < count {
            m[i] = (rng.next() >> 40) < threshold ? 0 : keep
        }
    }
}
