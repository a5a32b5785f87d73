import Foundation

/// xoshiro256** seeded through SplitMix64: fast, with a 256-bit state that checkpoints save so
/// that a resumed run draws exactly the numbers an uninterrupted one would.
public struct RandomGenerator: Sendable, Codable, Equatable {
    @usableFromInline var s0: UInt64
    @usableFromInline var s1: UInt64
    @usableFromInline var s2: UInt64
    @usableFromInline var s3: UInt64

    public init(seed: UInt64) {
        var s = seed
        var words: [UInt64] = []
        for _ in 0..<4 {
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            words.append(z ^ (z >> 31))
        }
        (s0, s1, s2, s3) = (words[0], words[1], words[2], words[3])
    }

    public init(state: [UInt64]) {
        precondition(state.count == 4, "xoshiro256** needs 4 state words")
        (s0, s1, s2, s3) = (state[0], state[1], state[2], state[3])
    }

    /// The four state words, as checkpoints store them.
    public var state: [UInt64] { [s0, s1, s2, s3] }

    public init(from decoder: any Decoder) throws {
        self.init(state: try [UInt64](from: decoder))
    }

    public func encode(to encoder: any Encoder) throws { try state.encode(to: encoder) }

    @inlinable
    public mutating func next() -> UInt64 {
        let result = rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
        return result
    }

    @inlinable func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform in [0, 1) with 24 random bits.
    @inlinable public mutating func uniform() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform in [0, 1) with 53 random bits.
    @inlinable public mutating func uniformDouble() -> Double {
        Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// Standard normal by the Box-Muller transform.
    public mutating func normal() -> Double {
        var u1 = uniformDouble()
        while u1 <= 0 { u1 = uniformDouble() }
        let u2 = uniformDouble()
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
    }

    /// An integer uniform in `0..<bound`.
    public mutating func integer(below bound: Int) -> Int {
        precondition(bound > 0)
        return Int(next() % UInt64(bound))
    }
}

/// Initialisers used by the layers (Docs/model.md, Docs/feedforward.md).
public enum Initializer {
    /// N(0, std^2).
    public static func normal(
        _ x: UnsafeMutablePointer<Float>, count: Int, std: Double, mean: Double = 0,
        rng: inout RandomGenerator
    ) {
        for i in 0..<count { x[i] = Float(mean + std * rng.normal()) }
    }

    /// U(-bound, bound).
    public static func uniform(
        _ x: UnsafeMutablePointer<Float>, count: Int, bound: Double, rng: inout RandomGenerator
    ) {
        for i in 0..<count { x[i] = Float((2 * rng.uniformDouble() - 1) * bound) }
    }

    /// Standard normal truncated to [-2, 2] (rejection), then rescaled so that the tensor's
    /// sample standard deviation (unbiased, as `torch.std`) is exactly `std`: the official
    /// `reset_prenorm_params`.
    public static func truncatedNormalExactStd(
        _ x: UnsafeMutablePointer<Float>, count: Int, std: Double, rng: inout RandomGenerator
    ) {
        for i in 0..<count {
            var z = rng.normal()
            while z < -2 || z > 2 { z = rng.normal() }
            x[i] = Float(z)
        }
        let sampleStd = standardDeviation(x, count: count)
        let factor = Float(std / sampleStd)
        for i in 0..<count { x[i] *= factor }
    }

    /// Unbiased sample standard deviation, as `torch.Tensor.std()`.
    public static func standardDeviation(_ x: UnsafePointer<Float>, count: Int) -> Double {
        precondition(count > 1)
        var mean = 0.0
        for i in 0..<count { mean += Double(x[i]) }
        mean /= Double(count)
        var sum = 0.0
        for i in 0..<count {
            let d = Double(x[i]) - mean
            sum += d * d
        }
        return (sum / Double(count - 1)).squareRoot()
    }
}
