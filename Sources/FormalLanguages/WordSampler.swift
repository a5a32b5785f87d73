import Tensor

/// Draws single strings the way the benchmark's generators do, as input alphabet indices.
/// Every random choice comes from one seeded `RandomGenerator`, so a seed fixes the strings on
/// every machine.
struct WordSampler {
    var random: RandomGenerator

    /// Rule probabilities of the bracket grammar S -> (S) | S S | empty.
    static let wrapProbability = 0.5
    static let splitProbability = 0.25

    init(seed: UInt64) { random = RandomGenerator(seed: seed) }

    mutating func integer(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + random.integer(below: range.count)
    }

    /// Parity: 0 and 1 each with probability `p`, stop with 1 - 2p, at most `maxLength` symbols.
    mutating func bits(p: Double, maxLength: Int) -> [UInt8] {
        var word: [UInt8] = []
        while word.count < maxLength {
            let u = random.uniformDouble()
            if u < p {
                word.append(0)
            } else if u < 2 * p {
                word.append(1)
            } else {
                break
            }
        }
        return word
    }

    /// `unit` repeated floor(u / unit.count) times, u uniform in `window` (may fall short of it).
    mutating func repetition(of unit: [UInt8], window: ClosedRange<Int>) -> [UInt8] {
        let copies = integer(in: window) / unit.count
        return Array([[UInt8]](repeating: unit, count: copies).joined())
    }

    /// A word of the bracket grammar with `pairs` bracket types (open 2j, close 2j + 1) and at
    /// most `maxLength` symbols. As in the original, any partial sample longer than `maxLength`
    /// collapses to the empty string, and no rule is tried once `maxLength` symbols are open.
    mutating func brackets(pairs: Int, maxLength: Int) -> [UInt8] {
        var word: [UInt8] = []
        expand(pairs: pairs, openSymbols: 0, maxLength: maxLength, into: &word)
        return word
    }

    private mutating func expand(pairs: Int, openSymbols: Int, maxLength: Int, into word: inout [UInt8]) {
        if openSymbols >= maxLength { return }
        let start = word.count
        let u = random.uniformDouble()
        if u < Self.wrapProbability {
            let pair = UInt8(pairs == 1 ? 0 : random.integer(below: pairs))
            word.append(2 * pair)
            expand(pairs: pairs, openSymbols: openSymbols + 2, maxLength: maxLength, into: &word)
            word.append(2 * pair + 1)
        } else if u < Self.wrapProbability + Self.splitProbability {
            expand(pairs: pairs, openSymbols: openSymbols, maxLength: maxLength, into: &word)
            expand(pairs: pairs, openSymbols: openSymbols, maxLength: maxLength, into: &word)
        }
        if word.count - start > maxLength { word.removeSubrange(start...) }
    }

    /// Reset Dyck-1: a uniformly cut prefix of one Dyck-1 word, the reset symbol 1 (index 2),
    /// then a whole second word; each word has at most `maxLength` symbols, so the string has
    /// up to 2 maxLength + 1.
    mutating func resetBrackets(maxLength: Int) -> [UInt8] {
        let first = brackets(pairs: 1, maxLength: maxLength)
        let second = brackets(pairs: 1, maxLength: maxLength)
        let cut = integer(in: 0...first.count)
        return Array(first[..<cut]) + [2] + second
    }

    /// aⁿbⁿ (cⁿ) with `letters` letters.
    static func counterWord(letters: Int, n: Int) -> [UInt8] {
        (0..<letters).flatMap { [UInt8](repeating: UInt8($0), count: n) }
    }
}
