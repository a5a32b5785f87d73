// SentencePiece's `ModelProto` (src/sentencepiece_model.proto, proto2), typed where lmtrain
// uses a field and kept as raw wire fields otherwise, so loading and saving a model never
// loses anything:
//
//   ModelProto    { repeated SentencePiece pieces = 1; TrainerSpec trainer_spec = 2;
//                   NormalizerSpec normalizer_spec = 3; SelfTestData self_test_data = 4;
//                   NormalizerSpec denormalizer_spec = 5; }
//   SentencePiece { string piece = 1; float score = 2; Type type = 3 [default = NORMAL]; }
//
// proto2 fields have presence: an absent field reads as its default but is not written back,
// which is why the typed properties below are optionals.

import Foundation

/// A SentencePiece model file (`.model`): vocabulary, trainer settings and normaliser.
public struct SentencePieceModelProto: Equatable, Sendable {
    /// What a vocabulary entry is (`ModelProto.SentencePiece.Type`).
    public enum PieceType: Int32, Sendable, CaseIterable {
        /// An ordinary piece that BPE may produce.
        case normal = 1
        /// The unknown piece (`<unk>`); exactly one per model.
        case unknown = 2
        /// Control symbols such as `<s>` and `</s>`; never produced from text.
        case control = 3
        /// Symbols matched verbatim in the input before normalisation; never split.
        case userDefined = 4
        /// A piece BPE may pass through but must not emit (re-split into its parts).
        case unused = 5
        /// `<0xXX>` byte pieces for byte fallback.
        case byte = 6
    }

    /// One vocabulary entry; its index in ``SentencePieceModelProto/pieces`` is its id.
    public struct Piece: Equatable, Sendable {
        /// The piece text, with U+2581 for spaces.
        public var piece: String
        /// Its score; for BPE, higher scores merge first (sentencepiece writes -merge index).
        public var score: Float
        /// Its type.
        public var type: PieceType
        /// Presence of score and type on the wire (sentencepiece omits `type` for normal pieces).
        var hasScore: Bool
        var hasType: Bool
        /// Fields other than 1-3, and a type value outside the enum, preserved verbatim.
        var otherFields: [ProtobufField] = []

        /// Makes a piece written as sentencepiece's trainer writes it: score always, type
        /// only when not normal.
        public init(piece: String, score: Float, type: PieceType = .normal) {
            self.piece = piece
            self.score = score
            self.type = type
            hasScore = true
            hasType = type != .normal
        }
    }

    /// The vocabulary in id order.
    public var pieces: [Piece]
    /// Settings the model was trained with (some also steer encoding).
    public var trainerSpec: TrainerSpec
    /// How input text is normalised.
    public var normalizerSpec: NormalizerSpec
    /// Applied to decoded text when present with a charsmap.
    public var denormalizerSpec: NormalizerSpec?
    var hasTrainerSpec: Bool
    var hasNormalizerSpec: Bool
    /// `self_test_data` and fields unknown to this code, preserved verbatim.
    var otherFields: [ProtobufField] = []

    /// Makes a model from its parts.
    public init(
        pieces: [Piece], trainerSpec: TrainerSpec, normalizerSpec: NormalizerSpec,
        denormalizerSpec: NormalizerSpec? = nil
    ) {
        self.pieces = pieces
        self.trainerSpec = trainerSpec
        self.normalizerSpec = normalizerSpec
        self.denormalizerSpec = denormalizerSpec
        hasTrainerSpec = true
        hasNormalizerSpec = true
    }

    /// Parses the bytes of a `.model` file.
    public init(serialized bytes: [UInt8]) throws(ProtobufError) {
        let message = try ProtobufMessage(serialized: bytes)
        var pieces: [Piece] = []
        var trainer: TrainerSpec?
        var normalizer: NormalizerSpec?
        var denormalizer: NormalizerSpec?
        var other: [ProtobufField] = []
        for (index, field) in message.fields.enumerated() {
            let offset = message.payloadOffset(index) ?? 0
            switch (field.number, field.value) {
            case (1, .lengthDelimited(let payload)):
                pieces.append(try Piece(serialized: payload, index: pieces.count, offset: offset))
            case (2, .lengthDelimited(let payload)):
                trainer = TrainerSpec(message: try Self.nested(payload, "trainer_spec", offset))
                try trainer!.message.validate(TrainerSpec.schema, context: "trainer_spec")
            case (3, .lengthDelimited(let payload)):
                normalizer = NormalizerSpec(
                    message: try Self.nested(payload, "normalizer_spec", offset))
                try normalizer!.message.validate(NormalizerSpec.schema, context: "normalizer_spec")
            case (5, .lengthDelimited(let payload)):
                denormalizer = NormalizerSpec(
                    message: try Self.nested(payload, "denormalizer_spec", offset))
                try denormalizer!.message.validate(
                    NormalizerSpec.schema, context: "denormalizer_spec")
            case (1...5, _) where field.number != 4:
                throw ProtobufError(
                    reason: "ModelProto field \(field.number) has the wrong wire type",
                    offset: offset)
            default:
                other.append(field)
            }
        }
        self.pieces = pieces
        trainerSpec = trainer ?? TrainerSpec()
        normalizerSpec = normalizer ?? NormalizerSpec()
        denormalizerSpec = denormalizer
        hasTrainerSpec = trainer != nil
        hasNormalizerSpec = normalizer != nil
        otherFields = other
    }

    private static func nested(_ payload: [UInt8], _ name: String, _ offset: Int)
        throws(ProtobufError) -> ProtobufMessage
    {
        do {
            return try ProtobufMessage(serialized: payload[...], offsetBase: offset)
        } catch {
            throw ProtobufError(reason: "in \(name): \(error.reason)", offset: error.offset)
        }
    }

    /// The `.model` file bytes.
    public func serialized() -> [UInt8] {
        var message = ProtobufMessage()
        for piece in pieces {
            message.fields.append(
                ProtobufField(number: 1, value: .lengthDelimited(piece.serialized())))
        }
        if hasTrainerSpec { message.set(2, bytes: trainerSpec.message.serialized()) }
        if hasNormalizerSpec { message.set(3, bytes: normalizerSpec.message.serialized()) }
        if let denormalizerSpec { message.set(5, bytes: denormalizerSpec.message.serialized()) }
        message.fields.append(contentsOf: otherFields)
        return message.serialized()
    }

    /// Loads a `.model` file; a truncated or malformed file throws one error line naming the
    /// file and the problem.
    public init(contentsOf url: URL) throws {
        let bytes = try readFileBytes(url)
        do {
            try self.init(serialized: bytes)
        } catch {
            throw TokenizerError.malformedModel(file: url.path, reason: error.description)
        }
    }

    /// Writes the `.model` file atomically.
    public func write(to url: URL) throws {
        try writeFileAtomically(serialized(), to: url)
    }
}

extension SentencePieceModelProto.Piece {
    init(serialized payload: [UInt8], index: Int, offset: Int) throws(ProtobufError) {
        let message: ProtobufMessage
        do {
            message = try ProtobufMessage(serialized: payload[...], offsetBase: offset)
        } catch {
            throw ProtobufError(
                reason: "in pieces[\(index)]: \(error.reason)", offset: error.offset)
        }
        var text: String?
        var score: Float?
        var type: SentencePieceModelProto.PieceType?
        var other: [ProtobufField] = []
        for field in message.fields {
            switch (field.number, field.value) {
            case (1, .lengthDelimited(let bytes)):
                guard
                    bytes.withUnsafeBufferPointer({ UTF8Validation.firstInvalidOffset($0) }) == nil
                else {
                    throw ProtobufError(
                        reason: "pieces[\(index)].piece is not valid UTF-8", offset: offset)
                }
                text = String(decoding: bytes, as: UTF8.self)
            case (2, .fixed32(let bits)):
                score = Float(bitPattern: bits)
            case (3, .varint(let raw)):
                // proto2 keeps an enum value it does not know as an unknown field and reads
                // the field as its default (NORMAL); do the same.
                if let known = SentencePieceModelProto.PieceType(
                    rawValue: Int32(truncatingIfNeeded: raw)),
                    Int64(bitPattern: raw) == Int64(known.rawValue)
                {
                    type = known
                } else {
                    other.append(field)
                }
            case (1...3, _):
                throw ProtobufError(
                    reason: "pieces[\(index)] field \(field.number) has the wrong wire type",
                    offset: offset)
            default:
                other.append(field)
            }
        }
        guard let text else {
            throw ProtobufError(reason: "pieces[\(index)] has no piece text", offset: offset)
        }
        self.init(piece: text, score: score ?? 0, type: type ?? .normal)
        hasScore = score != nil
        hasType = type != nil
        otherFields = other
    }

    func serialized() -> [UInt8] {
        var message = ProtobufMessage()
        message.set(1, string: piece)
        if hasScore { message.set(2, float: score) }
        if hasType { message.set(3, int32: type.rawValue) }
        message.fields.append(contentsOf: otherFields)
        return message.serialized()
    }
}

/// `TrainerSpec`: the settings a model was trained with.
public struct TrainerSpec: Equatable, Sendable {
    /// `TrainerSpec.ModelType`.
    public enum ModelType: Int32, Sendable {
        case unigram = 1
        case bpe = 2
        case word = 3
        case char = 4
    }

    var message: ProtobufMessage

    public init() { message = ProtobufMessage() }
    init(message: ProtobufMessage) { self.message = message }

    /// Field numbers, names and wire types from sentencepiece_model.proto, used to reject
    /// files whose known fields have the wrong wire type.
    static let schema: [Int: (name: String, kind: ProtobufMessage.Kind, isString: Bool)] = [
        1: ("input", .lengthDelimited, true), 7: ("input_format", .lengthDelimited, true),
        2: ("model_prefix", .lengthDelimited, true), 3: ("model_type", .varint, false),
        4: ("vocab_size", .varint, false), 5: ("accept_language", .lengthDelimited, true),
        6: ("self_test_sample_size", .varint, false),
        50: ("enable_differential_privacy", .varint, false),
        51: ("differential_privacy_noise_level", .fixed32, false),
        52: ("differential_privacy_clipping_threshold", .varint, false),
        10: ("character_coverage", .fixed32, false), 11: ("input_sentence_size", .varint, false),
        19: ("shuffle_input_sentence", .varint, false),
        12: ("mining_sentence_size", .varint, false),
        13: ("training_sentence_size", .varint, false),
        14: ("seed_sentencepiece_size", .varint, false),
        15: ("shrinking_factor", .fixed32, false), 18: ("max_sentence_length", .varint, false),
        16: ("num_threads", .varint, false), 17: ("num_sub_iterations", .varint, false),
        20: ("max_sentencepiece_length", .varint, false),
        21: ("split_by_unicode_script", .varint, false),
        23: ("split_by_number", .varint, false), 22: ("split_by_whitespace", .varint, false),
        24: ("treat_whitespace_as_suffix", .varint, false),
        26: ("allow_whitespace_only_pieces", .varint, false),
        25: ("split_digits", .varint, false),
        53: ("pretokenization_delimiter", .lengthDelimited, true),
        30: ("control_symbols", .lengthDelimited, true),
        31: ("user_defined_symbols", .lengthDelimited, true),
        36: ("required_chars", .lengthDelimited, true), 35: ("byte_fallback", .varint, false),
        32: ("vocabulary_output_piece_score", .varint, false),
        33: ("hard_vocab_limit", .varint, false),
        34: ("use_all_vocab", .varint, false), 40: ("unk_id", .varint, false),
        41: ("bos_id", .varint, false),
        42: ("eos_id", .varint, false), 43: ("pad_id", .varint, false),
        45: ("unk_piece", .lengthDelimited, true), 46: ("bos_piece", .lengthDelimited, true),
        47: ("eos_piece", .lengthDelimited, true), 48: ("pad_piece", .lengthDelimited, true),
        44: ("unk_surface", .lengthDelimited, true),
        49: ("train_extremely_large_corpus", .varint, false),
        54: ("seed_sentencepieces_file", .lengthDelimited, true),
    ]

    /// `input` (1): training files.
    public var input: [String] {
        get { message.strings(1) }
        set { message.set(1, strings: newValue) }
    }
    /// `model_type` (3); proto default UNIGRAM.
    public var modelType: ModelType? {
        get { message.int32(3).flatMap(ModelType.init(rawValue:)) }
        set { message.set(3, int32: newValue?.rawValue) }
    }
    /// `vocab_size` (4); proto default 8000.
    public var vocabSize: Int32? {
        get { message.int32(4) }
        set { message.set(4, int32: newValue) }
    }
    /// `character_coverage` (10); proto default 0.9995.
    public var characterCoverage: Float? {
        get { message.float(10) }
        set { message.set(10, float: newValue) }
    }
    /// `max_sentence_length` (18), in bytes; proto default 4192.
    public var maxSentenceLength: Int32? {
        get { message.int32(18) }
        set { message.set(18, int32: newValue) }
    }
    /// `max_sentencepiece_length` (20), in characters; proto default 16.
    public var maxSentencePieceLength: Int32? {
        get { message.int32(20) }
        set { message.set(20, int32: newValue) }
    }
    /// `split_by_unicode_script` (21); proto default true.
    public var splitByUnicodeScript: Bool? {
        get { message.bool(21) }
        set { message.set(21, bool: newValue) }
    }
    /// `split_by_whitespace` (22); proto default true.
    public var splitByWhitespace: Bool? {
        get { message.bool(22) }
        set { message.set(22, bool: newValue) }
    }
    /// `split_by_number` (23); proto default true.
    public var splitByNumber: Bool? {
        get { message.bool(23) }
        set { message.set(23, bool: newValue) }
    }
    /// `treat_whitespace_as_suffix` (24); proto default false.
    public var treatWhitespaceAsSuffix: Bool? {
        get { message.bool(24) }
        set { message.set(24, bool: newValue) }
    }
    /// `split_digits` (25); proto default false.
    public var splitDigits: Bool? {
        get { message.bool(25) }
        set { message.set(25, bool: newValue) }
    }
    /// `allow_whitespace_only_pieces` (26); proto default false.
    public var allowWhitespaceOnlyPieces: Bool? {
        get { message.bool(26) }
        set { message.set(26, bool: newValue) }
    }
    /// `control_symbols` (30).
    public var controlSymbols: [String] {
        get { message.strings(30) }
        set { message.set(30, strings: newValue) }
    }
    /// `user_defined_symbols` (31).
    public var userDefinedSymbols: [String] {
        get { message.strings(31) }
        set { message.set(31, strings: newValue) }
    }
    /// `byte_fallback` (35); proto default false.
    public var byteFallback: Bool? {
        get { message.bool(35) }
        set { message.set(35, bool: newValue) }
    }
    /// `unk_surface` (44): what decoding prints for `<unk>`; proto default " \u{2047} ".
    public var unknownSurface: String? {
        get { message.string(44) }
        set { message.set(44, string: newValue) }
    }
    /// `unk_id` (40); proto default 0.
    public var unknownID: Int32? {
        get { message.int32(40) }
        set { message.set(40, int32: newValue) }
    }
    /// `bos_id` (41); proto default 1.
    public var beginningOfSentenceID: Int32? {
        get { message.int32(41) }
        set { message.set(41, int32: newValue) }
    }
    /// `eos_id` (42); proto default 2.
    public var endOfSentenceID: Int32? {
        get { message.int32(42) }
        set { message.set(42, int32: newValue) }
    }
    /// `pad_id` (43); proto default -1 (none).
    public var paddingID: Int32? {
        get { message.int32(43) }
        set { message.set(43, int32: newValue) }
    }
    /// All fields, including those without a typed property.
    public var fields: [ProtobufField] { message.fields }
}

/// `NormalizerSpec`: how text is normalised before encoding.
public struct NormalizerSpec: Equatable, Sendable {
    var message: ProtobufMessage

    public init() { message = ProtobufMessage() }
    init(message: ProtobufMessage) { self.message = message }

    static let schema: [Int: (name: String, kind: ProtobufMessage.Kind, isString: Bool)] = [
        1: ("name", .lengthDelimited, true), 2: ("precompiled_charsmap", .lengthDelimited, false),
        3: ("add_dummy_prefix", .varint, false), 4: ("remove_extra_whitespaces", .varint, false),
        5: ("escape_whitespaces", .varint, false),
        6: ("normalization_rule_tsv", .lengthDelimited, true),
    ]

    /// `name` (1), e.g. "nmt_nfkc" or "identity".
    public var name: String? {
        get { message.string(1) }
        set { message.set(1, string: newValue) }
    }
    /// `precompiled_charsmap` (2): the compiled character rules (see ``PrecompiledCharsMap``).
    public var precompiledCharsMap: [UInt8]? {
        get { message.bytes(2) }
        set { message.set(2, bytes: newValue) }
    }
    /// `add_dummy_prefix` (3); proto default true.
    public var addDummyPrefix: Bool? {
        get { message.bool(3) }
        set { message.set(3, bool: newValue) }
    }
    /// `remove_extra_whitespaces` (4); proto default true.
    public var removeExtraWhitespaces: Bool? {
        get { message.bool(4) }
        set { message.set(4, bool: newValue) }
    }
    /// `escape_whitespaces` (5); proto default true.
    public var escapeWhitespaces: Bool? {
        get { message.bool(5) }
        set { message.set(5, bool: newValue) }
    }
    /// All fields, including those without a typed property.
    public var fields: [ProtobufField] { message.fields }
}
