// SentencePiece's text normaliser (normalizer.cc), byte for byte:
//
// At each position the longest user-defined symbol is copied unchanged; otherwise the
// longest charsmap rule is applied; otherwise one UTF-8 character is copied. Around that:
//   remove_extra_whitespaces: drop leading pieces that normalise to exactly " ", drop the
//       leading spaces of a piece that follows a piece ending in a space, drop trailing
//       space symbols at the end;
//   add_dummy_prefix: prepend a space symbol (append it when whitespace is a suffix);
//   escape_whitespaces: write U+2581 ("▁", bytes E2 96 81) for every space.
// Input is validated UTF-8 here (sentencepiece would turn each invalid byte into U+FFFD;
// lmtrain refuses such input instead).

/// Longest-match lookup of user-defined symbols (sentencepiece's PrefixMatcher).
struct PrefixMatcher: Sendable, Equatable {
    /// Symbols by first byte, longest first.
    private var symbolsByFirstByte: [[[UInt8]]] = Array(repeating: [], count: 256)
    private(set) var isEmpty = true

    init(symbols: [String]) {
        for symbol in Set(symbols) where !symbol.isEmpty {
            let bytes = Array(symbol.utf8)
            symbolsByFirstByte[Int(bytes[0])].append(bytes)
            isEmpty = false
        }
        for i in 0..<256 { symbolsByFirstByte[i].sort { $0.count > $1.count } }
    }

    func startsSymbol(_ byte: UInt8) -> Bool { !symbolsByFirstByte[Int(byte)].isEmpty }

    /// Length of the longest symbol starting at `i`, or 0.
    @inline(__always)
    func match(_ text: UnsafeBufferPointer<UInt8>, at i: Int) -> Int {
        if isEmpty { return 0 }
        for symbol in symbolsByFirstByte[Int(text[i])] where symbol.count <= text.count - i {
            var equal = true
            for k in 1..<symbol.count where text[i + k] != symbol[k] {
                equal = false
                break
            }
            if equal { return symbol.count }
        }
        return 0
    }
}

/// Byte length of the UTF-8 character whose lead byte is `byte` (sentencepiece's OneCharLen).
@inline(__always)
func utf8CharacterLength(_ byte: UInt8) -> Int {
    if byte < 0x80 { return 1 }
    if byte < 0xE0 { return 2 }
    if byte < 0xF0 { return 3 }
    return 4
}

/// Normalises text exactly as sentencepiece's Normalizer does for a given NormalizerSpec.
struct SentencePieceNormalizer: Sendable {
    let charsMap: PrecompiledCharsMap?
    let userDefined: PrefixMatcher
    let addDummyPrefix: Bool
    let removeExtraWhitespaces: Bool
    let escapeWhitespaces: Bool
    let treatWhitespaceAsSuffix: Bool
    /// For an ASCII byte b followed by an ASCII byte or the end of the text: true when the
    /// longest match can only be b's own rule (no user-defined symbol starts with b and no
    /// rule has b followed by an ASCII byte), so the trie search is skipped for most text.
    private let asciiIsSimple: [Bool]
    /// The replacement for ASCII byte b alone is
    /// `asciiReplacementBytes[asciiReplacementStarts[b]..<asciiReplacementStarts[b + 1]]`.
    private let asciiReplacementBytes: [UInt8]
    private let asciiReplacementStarts: [Int]
    /// True for ASCII bytes that map to themselves (so the input byte can be passed on).
    private let asciiIsIdentity: [Bool]

    static let spaceSymbol: [UInt8] = [0xE2, 0x96, 0x81]

    init(spec: NormalizerSpec, treatWhitespaceAsSuffix: Bool, userDefinedSymbols: [String])
        throws(ProtobufError)
    {
        if let blob = spec.precompiledCharsMap, !blob.isEmpty {
            charsMap = try PrecompiledCharsMap(blob: blob)
        } else {
            charsMap = nil
        }
        userDefined = PrefixMatcher(symbols: userDefinedSymbols)
        addDummyPrefix = spec.addDummyPrefix ?? true
        removeExtraWhitespaces = spec.removeExtraWhitespaces ?? true
        escapeWhitespaces = spec.escapeWhitespaces ?? true
        self.treatWhitespaceAsSuffix = treatWhitespaceAsSuffix

        var simple = [Bool](repeating: true, count: 128)
        var replacement = (0..<128).map { [UInt8($0)] }
        if let charsMap {
            for b in 0..<128 {
                guard let node = charsMap.trie.node(for: [UInt8(b)]) else { continue }
                if let value = charsMap.trie.value(at: node) {
                    replacement[b] = Array(charsMap.replacement(at: value) ?? [])
                }
                if charsMap.trie.childLabels(of: node).contains(where: { $0 < 0x80 }) {
                    simple[b] = false
                }
            }
        }
        for b in 0..<128 where userDefined.startsSymbol(UInt8(b)) { simple[b] = false }
        asciiIsSimple = simple
        asciiReplacementBytes = replacement.flatMap { $0 }
        asciiReplacementStarts = replacement.reduce(into: [0]) { $0.append($0.last! + $1.count) }
        asciiIsIdentity = (0..<128).map { replacement[$0] == [UInt8($0)] }
    }

    /// Appends the normalised form of `input` (valid UTF-8) to `output`.
    func normalize(_ input: UnsafeBufferPointer<UInt8>, into output: inout [UInt8]) {
        let n = input.count
        var i = 0
        output.reserveCapacity(output.count + n * 3 / 2 + 8)
        let outputStart = output.count

        // The normalised piece at i is either input[start..<start+length] or a pool string;
        // `normalizePrefix` reports it as a buffer valid until the next call.
        let pool = charsMap?.pool ?? []
        pool.withUnsafeBufferPointer { pool in
            asciiReplacementBytes.withUnsafeBufferPointer { asciiBytes in
                @inline(__always)
                func normalizePrefix(_ i: Int) -> (piece: UnsafeBufferPointer<UInt8>, consumed: Int)
                {
                    let byte = input[i]
                    if byte < 0x80 && asciiIsSimple[Int(byte)]
                        && (i + 1 == n || input[i + 1] < 0x80)
                    {
                        if asciiIsIdentity[Int(byte)] {
                            return (UnsafeBufferPointer(rebasing: input[i..<i + 1]), 1)
                        }
                        let range =
                            asciiReplacementStarts[
                                Int(byte)]..<asciiReplacementStarts[Int(byte) + 1]
                        return (UnsafeBufferPointer(rebasing: asciiBytes[range]), 1)
                    }
                    let userLength = userDefined.match(input, at: i)
                    if userLength > 0 {
                        return (
                            UnsafeBufferPointer(rebasing: input[i..<i + userLength]), userLength
                        )
                    }
                    var longestLength = 0
                    var longestValue = 0
                    charsMap?.trie.forEachPrefix(of: input, from: i) { length, value in
                        if longestLength == 0 || length > longestLength {
                            longestLength = length
                            longestValue = value
                        }
                    }
                    if longestLength > 0 {
                        var end = longestValue
                        while end < pool.count && pool[end] != 0 { end += 1 }
                        let start = min(longestValue, pool.count)
                        return (
                            UnsafeBufferPointer(rebasing: pool[start..<max(start, end)]),
                            longestLength
                        )
                    }
                    let length = min(utf8CharacterLength(byte), n - i)
                    return (UnsafeBufferPointer(rebasing: input[i..<i + length]), length)
                }

                if removeExtraWhitespaces {
                    while i < n {
                        let (piece, consumed) = normalizePrefix(i)
                        if !(piece.count == 1 && piece[0] == 0x20) { break }
                        i += consumed
                    }
                }
                if i == n { return }

                @inline(__always)
                func appendSpace() {
                    if escapeWhitespaces {
                        output.append(0xE2)
                        output.append(0x96)
                        output.append(0x81)
                    } else {
                        output.append(0x20)
                    }
                }
                if !treatWhitespaceAsSuffix && addDummyPrefix { appendSpace() }

                var isPreviousSpace = removeExtraWhitespaces
                while i < n {
                    // Fast lane for the common case, with the same effect as the general step
                    // below: an ASCII byte that maps to itself, followed by ASCII or the end.
                    let byte = input[i]
                    if byte < 0x80 && asciiIsSimple[Int(byte)] && asciiIsIdentity[Int(byte)]
                        && (i + 1 == n || input[i + 1] < 0x80)
                    {
                        if byte == 0x20 {
                            if !isPreviousSpace {
                                appendSpace()
                                isPreviousSpace = removeExtraWhitespaces
                            }
                        } else {
                            output.append(byte)
                            isPreviousSpace = false
                        }
                        i += 1
                        continue
                    }
                    let (piece, consumed) = normalizePrefix(i)
                    var start = 0
                    if isPreviousSpace {
                        while start < piece.count && piece[start] == 0x20 { start += 1 }
                    }
                    if start < piece.count {
                        for k in start..<piece.count {
                            if piece[k] == 0x20 {
                                appendSpace()
                            } else {
                                output.append(piece[k])
                            }
                        }
                        isPreviousSpace = piece[piece.count - 1] == 0x20
                    }
                    i += consumed
                    if !removeExtraWhitespaces { isPreviousSpace = false }
                }

                if removeExtraWhitespaces {
                    let space: [UInt8] = escapeWhitespaces ? Self.spaceSymbol : [0x20]
                    while output.count - outputStart >= space.count
                        && output[(output.count - space.count)...].elementsEqual(space)
                    {
                        output.removeLast(space.count)
                    }
                }
                if treatWhitespaceAsSuffix && addDummyPrefix { appendSpace() }
            }
        }
    }

    /// Convenience for tests and decoding: the normalised bytes of a string.
    func normalize(_ text: String) -> [UInt8] {
        var output: [UInt8] = []
        var copy = text
        copy.withUTF8 { normalize($0, into: &output) }
        return output
    }
}
