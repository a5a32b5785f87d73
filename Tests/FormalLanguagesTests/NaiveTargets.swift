import FormalLanguages

/// Targets recomputed the slow, obvious way, separately from the library: each position's target
/// comes from its whole prefix, by the task's definition. Every input symbol is one ASCII
/// character, so a prefix is read as bytes.
enum NaiveTargets {
    static func targets(_ task: FormalTask, of input: [String]) -> [String] {
        switch task {
        case .counter2, .counter3:
            return counterTargets(task, of: input)
        default:
            let text = Array(input.joined().utf8)
            precondition(text.count == input.count, "one character per symbol")
            return text.indices.map { target(task, prefix: text[...$0]) }
        }
    }

    private static func target(_ task: FormalTask, prefix: ArraySlice<UInt8>) -> String {
        func count(_ symbol: Character, in symbols: ArraySlice<UInt8>) -> Int {
            let code = symbol.asciiValue!
            var count = 0
            for byte in symbols where byte == code { count += 1 }
            return count
        }
        switch task {
        case .parity:
            return count("1", in: prefix) % 2 == 0 ? "1" : "0"
        case .aaStar:
            // In (aa)* iff made of whole "aa" units.
            return prefix.count % 2 == 0 && count("a", in: prefix) == prefix.count ? "1" : "0"
        case .ababStar:
            let units = Array(String(repeating: "abab", count: prefix.count / 4).utf8)
            return Array(prefix) == units ? "1" : "0"
        case .shuffle2:
            let round = count("(", in: prefix) != count(")", in: prefix)
            let square = count("[", in: prefix) != count("]", in: prefix)
            return (round ? "1" : "0") + (square ? "1" : "0")
        case .dyck1:
            return count("(", in: prefix) > count(")", in: prefix) ? "1" : "0"
        case .resetDyck:
            let reset = Character("1").asciiValue!
            if prefix.last == reset { return "0" }
            let sinceReset = prefix[((prefix.lastIndex(of: reset) ?? prefix.startIndex - 1) + 1)...]
            return count("(", in: sinceReset) > count(")", in: sinceReset) ? "1" : "0"
        case .counter2, .counter3:
            preconditionFailure("counters are computed per word")
        }
    }

    /// The original generator's closed form for a whole word aⁿbⁿ(cⁿ): "a or b" n times, b n - 1
    /// times, (c n times,) then T.
    private static func counterTargets(_ task: FormalTask, of input: [String]) -> [String] {
        let letters = task == .counter2 ? 2 : 3
        let n = input.count / letters
        let aOrB = task == .counter2 ? "c" : "d"
        var targets = [String](repeating: aOrB, count: n) + [String](repeating: "b", count: n - 1)
        if letters == 3 { targets += [String](repeating: "c", count: n) }
        return targets + ["T"]
    }
}
