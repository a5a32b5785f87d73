/// Seeded structure-blind mutations of a file's bytes, the kinds libFuzzer's mutator uses most:
/// bit flips, byte and integer overwrites with boundary values, deletions, insertions,
/// duplications, truncation, splices with another seed, and number rewrites for text formats.
/// The same seed gives the same sequence of inputs on every machine.
public struct Mutator {
    /// SplitMix64: tiny, fast, fully determined by its seed.
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in 0..<n (n > 0).
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }

    /// Boundary values that size and offset fields get wrong.
    static let interesting: [UInt64] = [
        0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x1_0000, 0x7FFF_FFFF, 0x8000_0000,
        0xFFFF_FFFF, 0x1_0000_0000, 0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, .max,
    ]

    /// Numbers that text formats get wrong.
    static let numbers = ["-1", "0", "0.5", "64.5", "1e999", "-1e999", "1e30", "4611686018427387904", "16777217", "nan", "null", "\"x\"", "[]", "{}"]

    /// One to four mutations of `input`; `other` is a second seed to splice with. The result
    /// is at most `maximumLength` bytes.
    public mutating func mutate(_ input: [UInt8], other: [UInt8], maximumLength: Int = 1 << 20) -> [UInt8] {
        var bytes = input
        for _ in 0..<(1 + below(4)) {
            mutateOnce(&bytes, other: other)
        }
        return bytes.count > maximumLength ? Array(bytes.prefix(maximumLength)) : bytes
    }

    mutating func mutateOnce(_ bytes: inout [UInt8], other: [UInt8]) {
        if bytes.isEmpty {
            bytes = [UInt8(truncatingIfNeeded: next())]
            return
        }
        let at = below(bytes.count)
        switch below(10) {
        case 0:
            bytes[at] ^= 1 << UInt8(below(8))
        case 1:
            bytes[at] = UInt8(truncatingIfNeeded: next())
        case 2:
            // A boundary integer, little-endian, 1 to 8 bytes wide.
            let value = Self.interesting[below(Self.interesting.count)] &+ UInt64(below(3)) &- 1
            let width = [1, 2, 4, 8][below(4)]
            for i in 0..<min(width, bytes.count - at) { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        case 3:
            bytes.removeSubrange(at..<min(bytes.count, at + 1 + below(64)))
        case 4:
            bytes.insert(contentsOf: (0..<(1 + below(16))).map { _ in UInt8(truncatingIfNeeded: next()) }, at: at)
        case 5:
            let end = min(bytes.count, at + 1 + below(256))
            bytes.insert(contentsOf: Array(bytes[at..<end]), at: below(bytes.count))
        case 6:
            bytes.removeSubrange(below(bytes.count + 1)...)
            if bytes.isEmpty { bytes = [0] }
        case 7:
            guard !other.isEmpty else { return }
            let cut = below(other.count)
            bytes = Array(bytes.prefix(at)) + Array(other[cut...])
        case 8:
            // A run of digits (or any byte) replaced by an awkward number: JSON and headers.
            var start = at, end = at
            while start > 0, Self.isNumberByte(bytes[start - 1]) { start -= 1 }
            while end < bytes.count, Self.isNumberByte(bytes[end]) { end += 1 }
            bytes.replaceSubrange(start..<max(end, start + 1), with: Array(Self.numbers[below(Self.numbers.count)].utf8))
        default:
            // Byte frequency matters for deflate and protobuf varints: flip a high bit.
            bytes[at] ^= 0x80
        }
    }

    static func isNumberByte(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || byte == 0x2E || byte == 0x2D || byte == 0x65 || byte == 0x2B
    }
}
