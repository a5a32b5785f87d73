/// Why a string has no targets: its symbol at `position` (0-based) cannot occur there.
struct OutsideLanguage: Error {
    let position: Int
    let reason: String
}

extension FormalTask {
    /// The target symbols of `input`, one per position, each from the prefix ending there.
    ///
    /// The rules are total where they only count (parity, (aa)*, Shuffle-2, reset Dyck-1). The
    /// others are defined on prefixes of the language's words only, and refuse the first symbol
    /// that leaves them: (abab)* alternates a and b from a; the counters read aⁱ, then at most
    /// as many b, then (aⁿbⁿcⁿ, once the b match the a) at most as many c; a Dyck-1 ')' needs
    /// an open bracket to close. The error is one line naming the 1-based position.
    public func targets(of input: [String]) throws(FormalDataError) -> [String] {
        var indices: [UInt8] = []
        indices.reserveCapacity(input.count)
        for (position, symbol) in input.enumerated() {
            guard let index = inputIndex(of: symbol) else {
                throw FormalDataError("position \(position + 1): \(unknownInputMessage(symbol))")
            }
            indices.append(index)
        }
        do {
            let alphabet = targetAlphabet
            return try targetIndices(of: indices).map { alphabet[Int($0)] }
        } catch {
            throw FormalDataError("position \(error.position + 1): \(error.reason)")
        }
    }

    func inputIndex(of symbol: String) -> UInt8? {
        inputAlphabet.firstIndex(of: symbol).map { UInt8($0) }
    }

    func unknownInputMessage(_ symbol: String) -> String {
        "unknown input symbol '\(symbol)'; \(rawValue) reads \(inputAlphabet.joined(separator: " "))"
    }

    /// `targets(of:)` on alphabet indices (`inputAlphabet` in, `targetAlphabet` out).
    func targetIndices(of input: [UInt8]) throws(OutsideLanguage) -> [UInt8] {
        var targets: [UInt8] = []
        targets.reserveCapacity(input.count)
        switch self {
        case .parity:
            var ones = 0
            for symbol in input {
                ones += Int(symbol)
                targets.append(ones % 2 == 0 ? 1 : 0)
            }
        case .aaStar:
            for i in input.indices { targets.append((i + 1) % 2 == 0 ? 1 : 0) }
        case .ababStar:
            for (i, symbol) in input.enumerated() {
                let expected = UInt8(i % 2)
                guard symbol == expected else {
                    throw OutsideLanguage(
                        position: i,
                        reason: "expected '\(inputAlphabet[Int(expected)])': inputs are prefixes of (abab)*")
                }
                targets.append((i + 1) % 4 == 0 ? 1 : 0)
            }
        case .counter2, .counter3:
            try appendCounterTargets(of: input, to: &targets)
        case .shuffle2:
            // Opens minus closes per bracket type; the symbol is 2 * round bit + square bit.
            var round = 0
            var square = 0
            for symbol in input {
                switch symbol {
                case 0: round += 1
                case 1: round -= 1
                case 2: square += 1
                default: square -= 1
                }
                targets.append(UInt8((round != 0 ? 2 : 0) + (square != 0 ? 1 : 0)))
            }
        case .dyck1:
            var depth = 0
            for (i, symbol) in input.enumerated() {
                if symbol == 0 {
                    depth += 1
                } else {
                    guard depth > 0 else {
                        throw OutsideLanguage(
                            position: i, reason: "')' closes nothing: inputs are prefixes of Dyck-1 words")
                    }
                    depth -= 1
                }
                targets.append(depth > 0 ? 1 : 0)
            }
        case .resetDyck:
            var depth = 0
            for symbol in input {
                if symbol == 2 {
                    depth = 0
                    targets.append(0)
                } else {
                    depth += symbol == 0 ? 1 : -1
                    targets.append(depth > 0 ? 1 : 0)
                }
            }
        }
        return targets
    }

    /// aⁿbⁿ and aⁿbⁿcⁿ with k = 2 or 3 letters. Target indices: letter b or c is its input
    /// index - 1, "a or b" is k - 1, "T" is k (see `targetAlphabet`).
    private func appendCounterTargets(of input: [UInt8], to targets: inout [UInt8]) throws(OutsideLanguage) {
        let letters = inputAlphabet.count
        var counts = [Int](repeating: 0, count: letters)
        for (i, symbol) in input.enumerated() {
            let letter = Int(symbol)
            let laterLettersAbsent = counts[(letter + 1)...].allSatisfy { $0 == 0 }
            let previousBlockComplete = letter < 2 || counts[letter - 1] == counts[0]
            let roomInBlock = letter == 0 || counts[letter] < counts[0]
            guard laterLettersAbsent && previousBlockComplete && roomInBlock else {
                throw OutsideLanguage(
                    position: i,
                    reason: "'\(inputAlphabet[letter])' cannot occur here: inputs are prefixes of \(title)")
            }
            counts[letter] += 1
            if letter == 0 {
                targets.append(UInt8(letters - 1))
            } else if counts[letter] < counts[0] {
                targets.append(UInt8(letter - 1))
            } else {
                targets.append(UInt8(letter == letters - 1 ? letters : letter))
            }
        }
    }
}
