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

    /// x *= mask in training. x holds `streams` streams of equal blocks (every layer's
    /// activations are [B, T, ...] row-major); each stream's block draws from its own generator,
    /// seeded by one draw of `context.rng` and the stream's index in the whole batch, so a
    /// stream's mask does not depend on which rank of a data-parallel job runs it.
    public func forward(_ x: UnsafeMutablePointer<Float>, count: Int, streams: Int, context: inout ForwardContext) {
        active = context.dropoutActive && rate > 0
        guard active else { return }
        let m = mask.reserved(count)
        let rate = rate
        let input = SendablePointer(x), start = SendablePointer(m)
        // Each stream's block is applied right after it is drawn, while it is in cache.
        Dropout.fillStreamMasks(m, count: count, streams: streams, context: &context) { block, count, rng in
            Dropout.fillMask(block, count: count, rate: rate, rng: &rng)
            multiplyInPlace(input.mutable + (block - start.mutable), block, count: count)
        }
    }

    /// x *= mask over all cores (elementwise, so the result does not depend on the split).
    static func multiply(_ x: UnsafeMutablePointer<Float>, by mask: UnsafePointer<Float>, count: Int) {
        let x = SendablePointer(x), mask = SendablePointer(mask)
        parallelChunks(count) { range in
            multiplyInPlace(x.mutable + range.lowerBound, mask.pointer + range.lowerBound, count: range.count)
        }
    }

    /// Fills `count` mask entries made of `streams` equal blocks, one per stream, with `fill`
    /// and each stream's generator (`ForwardContext.streamGenerator`); runs with
    /// `sharedDropoutDraws` draw the whole mask from `context.rng` in one go. The streams' blocks
    /// are filled in parallel: each depends only on its own generator.
    public static func fillStreamMasks<T>(
        _ mask: UnsafeMutablePointer<T>, count: Int, streams: Int, context: inout ForwardContext,
        _ fill: @Sendable (UnsafeMutablePointer<T>, Int, inout RandomGenerator) -> Void
    ) {
        if context.sharedDropoutDraws {
            fill(mask, count, &context.rng)
            return
        }
        precondition(streams > 0 && count % streams == 0, "\(count) mask entries do not split into \(streams) streams")
        let block = count / streams
        let base = context.rng.next(), firstStream = context.firstStream
        let mask = SendablePointer(mask)
        parallelFor(streams) { stream in
            var rng = ForwardContext.streamGenerator(base: base, stream: firstStream + stream)
            fill(mask.mutable + stream * block, block, &rng)
        }
    }

    /// dx = dy * mask, in place.
    public func backward(_ dy: UnsafeMutablePointer<Float>, count: Int) {
        guard active else { return }
        Dropout.multiply(dy, by: mask.pointer, count: count)
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
