// A SentencePiece BPE model: loads and saves genuine `.model` files and encodes exactly as
// Python `sentencepiece` does (`encode_as_ids(line)`):
//
//   1. normalise (SentencePieceNormalizer: charsmap, whitespace rules, U+2581 for spaces);
//   2. split into characters, user-defined symbols kept whole and frozen;
//   3. BPE (bpe_model.cc): repeatedly merge the adjacent pair whose concatenation is a
//      vocabulary piece (normal, user-defined or unused) with the highest score, the leftmost
//      on ties; pieces of type UNUSED are split back into the pair that formed them;
//   4. id of each piece (control/unknown/byte names first, then the vocabulary, else <unk>);
//      with byte_fallback an unknown piece becomes its UTF-8 bytes' <0xXX> pieces, without
//      it consecutive unknown pieces become one <unk> (sentencepiece_processor.cc).
//
// Fast path: when no piece contains U+2581 after its first character, no pair can merge
// across a space symbol, so each word (a space symbol up to the next one) is encoded on its
// own and cached. This is decided from the vocabulary itself, not from trainer_spec; it also
// needs spaces escaped as U+2581, whitespace as a prefix and no UNUSED pieces (whose
// re-splitting depends on the whole line). `encodeNaive` is the plain whole-line version the
// tests compare it with.

import Foundation
import Heaps

/// A SentencePiece-compatible BPE tokenizer.
public struct SentencePieceBPE: Tokenizer {
    /// The model as loaded (or trained); saving writes it back unchanged.
    public let model: SentencePieceModelProto
    let normalizer: SentencePieceNormalizer
    /// Normal, user-defined and unused pieces (sentencepiece's `pieces_`): BPE merge targets.
    let mergeable: ByteStringTable
    let mergeableIDs: [Int32]
    /// Control, unknown and byte pieces (`reserved_id_map_`), looked up first.
    let reserved: ByteStringTable
    let reservedIDs: [Int32]
    let scores: [Float]
    let types: [SentencePieceModelProto.PieceType]
    /// Id of the unknown piece.
    public let unknownID: Int32
    let byteFallback: Bool
    /// `<0xXX>` piece id for each byte value (byte fallback only).
    let byteIDs: [Int32]
    let hasUnusedPieces: Bool
    /// Whether words between space symbols can be encoded separately (see file comment).
    let wordsAreIndependent: Bool
    let unknownSurface: String
    let denormalizer: SentencePieceNormalizer?

    /// Loads and checks a model the way sentencepiece's loader does.
    public init(model: SentencePieceModelProto) throws {
        try self.init(model: model, source: "SentencePiece model")
    }

    /// Loads a `.model` file.
    public init(contentsOf url: URL) throws {
        try self.init(model: SentencePieceModelProto(contentsOf: url), source: url.path)
    }

    init(model: SentencePieceModelProto, source: String) throws {
        func fail(_ reason: String) -> TokenizerError {
            .malformedModel(file: source, reason: reason)
        }
        let modelType = model.trainerSpec.modelType ?? .unigram
        guard modelType == .bpe else {
            throw fail("model_type is \(modelType) but lmtrain reads BPE models only")
        }
        let spec = model.trainerSpec
        var mergeable = ByteStringTable(minimumCapacity: model.pieces.count)
        var mergeableIDs: [Int32] = []
        var reserved = ByteStringTable()
        var reservedIDs: [Int32] = []
        var unknownID: Int32 = -1
        var userDefined: [String] = []
        var byteIDs = [Int32](repeating: -1, count: 256)
        let byteFallback = spec.byteFallback ?? false
        for (index, piece) in model.pieces.enumerated() {
            let id = Int32(index)
            guard !piece.piece.isEmpty else { throw fail("pieces[\(index)] is empty") }
            switch piece.type {
            case .normal, .userDefined, .unused:
                guard mergeable.insert(piece.piece).inserted else {
                    throw fail("piece \(piece.piece) is defined twice")
                }
                mergeableIDs.append(id)
            case .unknown, .control, .byte:
                guard reserved.insert(piece.piece).inserted else {
                    throw fail("piece \(piece.piece) is defined twice")
                }
                reservedIDs.append(id)
            }
            if piece.type == .userDefined { userDefined.append(piece.piece) }
            if piece.type == .unknown {
                guard unknownID < 0 else { throw fail("more than one unknown piece") }
                unknownID = id
            }
            if piece.type == .byte {
                guard byteFallback else {
                    throw fail(
                        "byte piece \(piece.piece) found although trainer_spec.byte_fallback is false"
                    )
                }
                guard let value = Self.byteValue(ofPiece: piece.piece) else {
                    throw fail("invalid byte piece \(piece.piece)")
                }
                byteIDs[Int(value)] = id
            }
        }
        guard unknownID >= 0 else { throw fail("no piece has type UNKNOWN") }
        if byteFallback && byteIDs.contains(-1) {
            throw fail("byte_fallback is true but the 256 <0xXX> pieces are not all present")
        }
        let treatWhitespaceAsSuffix = spec.treatWhitespaceAsSuffix ?? false
        do {
            normalizer = try SentencePieceNormalizer(
                spec: model.normalizerSpec, treatWhitespaceAsSuffix: treatWhitespaceAsSuffix,
                userDefinedSymbols: userDefined)
            if let denormalizerSpec = model.denormalizerSpec,
                let blob = denormalizerSpec.precompiledCharsMap,
                !blob.isEmpty
            {
                denormalizer = try SentencePieceNormalizer(
                    spec: denormalizerSpec, treatWhitespaceAsSuffix: false, userDefinedSymbols: [])
            } else {
                denormalizer = nil
            }
        } catch {
            throw fail(error.reason)
        }

        self.model = model
        self.mergeable = mergeable
        self.mergeableIDs = mergeableIDs
        self.reserved = reserved
        self.reservedIDs = reservedIDs
        scores = model.pieces.map(\.score)
        types = model.pieces.map(\.type)
        self.unknownID = unknownID
        self.byteFallback = byteFallback
        self.byteIDs = byteFallback ? byteIDs : []
        hasUnusedPieces = model.pieces.contains { $0.type == .unused }
        let space = SentencePieceNormalizer.spaceSymbol
        let spaceInside = model.pieces.contains { piece in
            guard piece.type == .normal || piece.type == .userDefined || piece.type == .unused
            else { return false }
            let bytes = Array(piece.piece.utf8)
            return bytes.count > 3
                && (1...(bytes.count - 3)).contains { bytes[$0..<$0 + 3].elementsEqual(space) }
        }
        wordsAreIndependent =
            !spaceInside && !hasUnusedPieces && !treatWhitespaceAsSuffix
            && normalizer.escapeWhitespaces
        unknownSurface = spec.unknownSurface ?? " \u{2047} "
    }

    /// Writes the model as a `.model` file, atomically.
    public func save(to url: URL) throws {
        try model.write(to: url)
    }

    static func byteValue(ofPiece piece: String) -> UInt8? {
        let bytes = Array(piece.utf8)
        guard bytes.count == 6, bytes[0...2].elementsEqual("<0x".utf8),
            bytes[5] == UInt8(ascii: ">")
        else { return nil }
        return UInt8(String(decoding: bytes[3...4], as: UTF8.self), radix: 16).flatMap {
            // sentencepiece writes upper-case hex ("<0x0A>") and only accepts that form.
            String(format: "<0x%02X>", $0) == piece ? $0 : nil
        }
    }

    // MARK: Tokenizer

    public var vocabularySize: Int { model.pieces.count }

    public var displayName: String {
        "sentencepiece-bpe, \(model.pieces.count) pieces, normalizer \(model.normalizerSpec.name ?? "none")"
    }

    public var vocabularyFingerprint: String {
        var hash = FNV1a64()
        hash.addField("SentencePieceBPE")
        for piece in model.pieces {
            hash.addField(piece.piece)
            hash.add(UInt32(bitPattern: piece.type.rawValue))
            hash.add(piece.score.bitPattern)
        }
        hash.add(model.normalizerSpec.message.serialized())
        hash.add([0xFF])
        if let denormalizer = model.denormalizerSpec { hash.add(denormalizer.message.serialized()) }
        hash.add([0xFF])
        let spec = model.trainerSpec
        hash.addField(
            "\(spec.treatWhitespaceAsSuffix ?? false) \(spec.byteFallback ?? false) \(unknownSurface)"
        )
        return hash.hex
    }

    public func token(for id: Int32) -> String? {
        model.pieces.indices.contains(Int(id)) ? model.pieces[Int(id)].piece : nil
    }

    /// The id of a piece as sentencepiece's `piece_to_id` gives it (unknown id when absent).
    public func id(forPiece piece: String) -> Int32 {
        if let index = reserved.index(of: piece) { return reservedIDs[index] }
        if let index = mergeable.index(of: piece) { return mergeableIDs[index] }
        return unknownID
    }

    /// The normalised form of a line: what the pieces of its encoding concatenate to.
    public func normalize(_ line: String) -> String {
        String(decoding: normalizer.normalize(line), as: UTF8.self)
    }

    public func makeLineEncoder() -> Encoder { Encoder(tokenizer: self) }

    // MARK: Decoding

    /// Decodes as sentencepiece's `decode(ids)`: control pieces vanish, `<unk>` prints as the
    /// unknown surface (" ⁇ " by default), byte pieces are reassembled into UTF-8 (invalid
    /// bytes become U+FFFD), U+2581 becomes a space and the leading dummy-prefix space is
    /// dropped. Ids out of range (where sentencepiece would raise) print as the unknown surface.
    public func decode(_ ids: [Int32]) -> String {
        var text: [UInt8] = []
        var pendingBytes: [UInt8] = []
        var expectLeadingSpace = true
        var leadingSpaceSeen = false
        let addDummyPrefix = normalizer.addDummyPrefix
        let removeExtraWhitespaces = normalizer.removeExtraWhitespaces
        let space = SentencePieceNormalizer.spaceSymbol

        func flushBytes() {
            var i = 0
            while i < pendingBytes.count {
                let length = Self.validCharacterLength(pendingBytes, at: i)
                if length == 0 {
                    text.append(contentsOf: [0xEF, 0xBF, 0xBD])  // U+FFFD for one invalid byte
                    i += 1
                } else {
                    text.append(contentsOf: pendingBytes[i..<i + length])
                    i += length
                }
            }
            pendingBytes.removeAll()
        }

        for id in ids {
            guard model.pieces.indices.contains(Int(id)) else {
                flushBytes()
                if leadingSpaceSeen || !text.isEmpty { expectLeadingSpace = false }
                text.append(contentsOf: unknownSurface.utf8)
                leadingSpaceSeen = false
                continue
            }
            let type = types[Int(id)]
            if type == .byte {
                pendingBytes.append(Self.byteValue(ofPiece: model.pieces[Int(id)].piece)!)
                continue
            }
            flushBytes()
            if leadingSpaceSeen || !text.isEmpty { expectLeadingSpace = false }
            switch type {
            case .control:
                leadingSpaceSeen = false
            case .unknown:
                text.append(contentsOf: unknownSurface.utf8)
                leadingSpaceSeen = false
            default:
                var piece = Array(model.pieces[Int(id)].piece.utf8)[...]
                var hasLeadingSpace = false
                if expectLeadingSpace && (addDummyPrefix || removeExtraWhitespaces) {
                    if piece.starts(with: space) {
                        piece = piece.dropFirst(3)
                        hasLeadingSpace = true
                    }
                    // With remove_extra_whitespaces every leading space symbol is dropped.
                    if removeExtraWhitespaces { hasLeadingSpace = false }
                }
                var k = piece.startIndex
                while k < piece.endIndex {
                    if piece[k...].starts(with: space) {
                        text.append(0x20)
                        k += 3
                    } else {
                        text.append(piece[k])
                        k += 1
                    }
                }
                leadingSpaceSeen = hasLeadingSpace
            }
        }
        flushBytes()
        if let denormalizer {
            var output: [UInt8] = []
            text.withUnsafeBufferPointer { denormalizer.normalize($0, into: &output) }
            text = output
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Length of the well-formed UTF-8 character at `i`, or 0 if it is ill-formed.
    static func validCharacterLength(_ bytes: [UInt8], at i: Int) -> Int {
        let length = utf8CharacterLength(bytes[i])
        guard bytes[i] < 0x80 || bytes[i] >= 0xC2, i + length <= bytes.count, bytes[i] <= 0xF4
        else { return 0 }
        return bytes[i..<i + length].withContiguousStorageIfAvailable {
            UTF8Validation.firstInvalidOffset($0) == nil ? length : 0
        } ?? 0
    }
}

extension SentencePieceBPE {
    /// Encodes lines for one thread, with a cache of encoded words when the model allows it.
    public struct Encoder: TokenizerLineEncoder {
        let tokenizer: SentencePieceBPE
        var normalized: [UInt8] = []
        var merger = BPEMerger()
        // Starts small: `Tokenizer.encode(_:)` makes a fresh encoder for every line.
        var cache = ByteStringTable(minimumCapacity: 64)
        var cacheStarts: [Int32] = [0]
        var cacheIDs: [Int32] = []
        /// The cache stops growing at this many words, which bounds its memory.
        public var cacheCapacity = 1 << 20
        /// Words longer than this are encoded without caching (they rarely repeat).
        static let longestCachedWord = 64

        public mutating func encode(
            utf8Line line: UnsafeBufferPointer<UInt8>, appendingTo ids: inout [Int32]
        )
            throws
        {
            try UTF8Validation.validate(line)
            normalized.removeAll(keepingCapacity: true)
            tokenizer.normalizer.normalize(line, into: &normalized)
            let first = ids.count
            if tokenizer.wordsAreIndependent {
                encodeWordByWord(appendingTo: &ids)
            } else {
                normalized.withUnsafeBufferPointer {
                    merger.encode($0, tokenizer: tokenizer, appendingTo: &ids)
                }
            }
            tokenizer.mergeUnknownRuns(&ids, from: first)
        }

        private mutating func encodeWordByWord(appendingTo ids: inout [Int32]) {
            normalized.withUnsafeBufferPointer { text in
                var start = 0
                let n = text.count
                while start < n {
                    // A word is a space symbol (E2 96 81, or the line start) up to the next
                    // space symbol. 0xE2 is always a lead byte, so a byte scan is safe.
                    var end = start + 1
                    while end < n
                        && !(text[end] == 0xE2 && end + 2 < n && text[end + 1] == 0x96
                            && text[end + 2] == 0x81)
                    {
                        end += 1
                    }
                    let word = UnsafeBufferPointer(rebasing: text[start..<end])
                    if let index = cache.index(of: word) {
                        for k in Int(cacheStarts[index])..<Int(cacheStarts[index + 1]) {
                            ids.append(cacheIDs[k])
                        }
                    } else {
                        let before = ids.count
                        merger.encode(word, tokenizer: tokenizer, appendingTo: &ids)
                        if word.count <= Self.longestCachedWord && cache.count < cacheCapacity {
                            cache.insert(word)
                            cacheIDs.append(contentsOf: ids[before...])
                            cacheStarts.append(Int32(cacheIDs.count))
                        }
                    }
                    start = end
                }
            }
        }
    }

    /// sentencepiece merges each run of consecutive unknown pieces into one (without byte
    /// fallback), so `encode_as_ids` has one <unk> per run.
    func mergeUnknownRuns(_ ids: inout [Int32], from first: Int) {
        guard !byteFallback, ids.count - first > 1 else { return }
        var write = first + 1
        for read in (first + 1)..<ids.count {
            if ids[read] == unknownID && ids[write - 1] == unknownID { continue }
            ids[write] = ids[read]
            write += 1
        }
        ids.removeLast(ids.count - write)
    }

    /// Appends the id(s) of a final piece (sentencepiece's PieceToId, then byte fallback).
    @inline(__always)
    func appendPiece(_ piece: UnsafeBufferPointer<UInt8>, to ids: inout [Int32]) {
        let id: Int32
        if let index = reserved.index(of: piece) {
            id = reservedIDs[index]
        } else if let index = mergeable.index(of: piece) {
            id = mergeableIDs[index]
        } else {
            id = unknownID
        }
        if id == unknownID && byteFallback {
            for byte in piece { ids.append(byteIDs[Int(byte)]) }
        } else {
            ids.append(id)
        }
    }

    /// The reference encoder: the same steps on the whole line with a plain linear search for
    /// the best pair at every merge (O(n²)) and no cache. Pieces of type UNUSED are re-split
    /// into the pair that formed them at merge time.
    public func encodeNaive(_ line: String) -> [Int32] {
        let text = normalizer.normalize(line)
        var symbols: [(bytes: [UInt8], frozen: Bool)] = []
        text.withUnsafeBufferPointer { text in
            var i = 0
            while i < text.count {
                let user = normalizer.userDefined.match(text, at: i)
                let length = user > 0 ? user : min(utf8CharacterLength(text[i]), text.count - i)
                symbols.append((Array(text[i..<i + length]), user > 0))
                i += length
            }
        }
        // score[i]: the score of merging symbols i and i+1, nil when that is no piece.
        func pairScore(_ i: Int) -> Float? {
            guard !symbols[i].frozen && !symbols[i + 1].frozen,
                let index = mergeable.index(of: symbols[i].bytes + symbols[i + 1].bytes)
            else { return nil }
            return scores[Int(mergeableIDs[index])]
        }
        var score: [Float?] = (0..<max(0, symbols.count - 1)).map(pairScore)
        var splits: [[UInt8]: ([UInt8], [UInt8])] = [:]
        while true {
            // The best pair: highest score, leftmost on ties.
            var best: Int?
            for i in score.indices {
                if let s = score[i], best == nil || s > score[best!]! { best = i }
            }
            guard let i = best else { break }
            let merged = symbols[i].bytes + symbols[i + 1].bytes
            splits[merged] = (symbols[i].bytes, symbols[i + 1].bytes)
            symbols[i].bytes = merged
            symbols.remove(at: i + 1)
            score.remove(at: i)
            if i > 0 { score[i - 1] = pairScore(i - 1) }
            if i < score.count { score[i] = pairScore(i) }
        }
        var ids: [Int32] = []
        func emit(_ piece: [UInt8]) {
            if let index = mergeable.index(of: piece), types[Int(mergeableIDs[index])] == .unused,
                reserved.index(of: piece) == nil, let (left, right) = splits[piece]
            {
                emit(left)
                emit(right)
                return
            }
            piece.withUnsafeBufferPointer { appendPiece($0, to: &ids) }
        }
        for symbol in symbols { emit(symbol.bytes) }
        mergeUnknownRuns(&ids, from: 0)
        return ids
    }
}

/// BPE on one normalised text (a word or a line), with scratch space reused between calls;
/// a transcription of bpe_model.cc's agenda algorithm.
struct BPEMerger {
    private var starts: [Int32] = []
    private var lengths: [Int32] = []
    private var previous: [Int32] = []
    private var next: [Int32] = []
    private var frozen: [Bool] = []
    private var heap = BinaryHeap<Candidate>()
    /// For pieces of type UNUSED: the left part's byte length when the pair was queued
    /// (the last queued pair wins, as with sentencepiece's rev_merge map).
    private var unusedSplits: [Int32: Int32] = [:]

    struct Candidate {
        var score: Float
        var left: Int32
        var right: Int32
        var size: Int32
    }

    /// sentencepiece's agenda order: higher score first, then the leftmost pair.
    @inline(__always)
    private static func precedes(_ a: Candidate, _ b: Candidate) -> Bool {
        a.score > b.score || (a.score == b.score && a.left < b.left)
    }

    mutating func encode(
        _ text: UnsafeBufferPointer<UInt8>, tokenizer: SentencePieceBPE,
        appendingTo ids: inout [Int32]
    ) {
        starts.removeAll(keepingCapacity: true)
        lengths.removeAll(keepingCapacity: true)
        previous.removeAll(keepingCapacity: true)
        next.removeAll(keepingCapacity: true)
        frozen.removeAll(keepingCapacity: true)
        heap.removeAll(keepingCapacity: true)
        if tokenizer.hasUnusedPieces { unusedSplits.removeAll(keepingCapacity: true) }

        // Characters, user-defined symbols whole and frozen.
        var i = 0
        let userDefined = tokenizer.normalizer.userDefined
        while i < text.count {
            let user = userDefined.match(text, at: i)
            let length = user > 0 ? user : min(utf8CharacterLength(text[i]), text.count - i)
            previous.append(Int32(starts.count) - 1)
            starts.append(Int32(i))
            lengths.append(Int32(length))
            frozen.append(user > 0)
            i += length
            next.append(i < text.count ? Int32(starts.count) : -1)
        }
        if starts.isEmpty { return }

        for k in 1..<starts.count { addCandidate(Int32(k - 1), Int32(k), text, tokenizer) }

        while let top = heap.pop(by: Self.precedes) {
            let left = Int(top.left)
            let right = Int(top.right)
            // Stale entries: one side was merged away or grew since the pair was queued.
            if lengths[left] == 0 || lengths[right] == 0
                || lengths[left] + lengths[right] != top.size
            {
                continue
            }
            lengths[left] += lengths[right]
            next[left] = next[right]
            if next[right] >= 0 { previous[Int(next[right])] = Int32(left) }
            lengths[right] = 0
            addCandidate(previous[left], Int32(left), text, tokenizer)
            addCandidate(Int32(left), next[left], text, tokenizer)
        }

        var index: Int32 = 0
        while index != -1 {
            let piece = UnsafeBufferPointer(
                rebasing: text[
                    Int(starts[Int(index)])..<Int(starts[Int(index)] + lengths[Int(index)])])
            resegment(piece, tokenizer, &ids)
            index = next[Int(index)]
        }
    }

    @inline(__always)
    private mutating func addCandidate(
        _ left: Int32, _ right: Int32, _ text: UnsafeBufferPointer<UInt8>,
        _ tokenizer: SentencePieceBPE
    ) {
        guard left >= 0, right >= 0, !frozen[Int(left)], !frozen[Int(right)] else { return }
        let start = Int(starts[Int(left)])
        let size = lengths[Int(left)] + lengths[Int(right)]
        let piece = UnsafeBufferPointer(rebasing: text[start..<start + Int(size)])
        guard let index = tokenizer.mergeable.index(of: piece) else { return }
        let id = tokenizer.mergeableIDs[index]
        heap.push(
            Candidate(score: tokenizer.scores[Int(id)], left: left, right: right, size: size),
            by: Self.precedes)
        if tokenizer.hasUnusedPieces && tokenizer.types[Int(id)] == .unused {
            unusedSplits[id] = lengths[Int(left)]
        }
    }

    private func resegment(
        _ piece: UnsafeBufferPointer<UInt8>, _ tokenizer: SentencePieceBPE, _ ids: inout [Int32]
    ) {
        if tokenizer.hasUnusedPieces, tokenizer.reserved.index(of: piece) == nil,
            let index = tokenizer.mergeable.index(of: piece)
        {
            let id = tokenizer.mergeableIDs[index]
            if tokenizer.types[Int(id)] == .unused, let split = unusedSplits[id] {
                resegment(UnsafeBufferPointer(rebasing: piece[0..<Int(split)]), tokenizer, &ids)
                resegment(UnsafeBufferPointer(rebasing: piece[Int(split)...]), tokenizer, &ids)
                return
            }
        }
        tokenizer.appendPiece(piece, to: &ids)
    }
}
