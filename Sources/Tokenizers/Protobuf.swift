// A hand-written reader and writer for the protocol-buffer wire format, enough for
// SentencePiece's `ModelProto` (proto2): varints, 32/64-bit fixed values, length-delimited
// fields and (for skipping only) groups.
//
// Wire format: each field is a key varint `(number << 3) | wireType` followed by its payload:
//   0 varint · 1 fixed64 (little-endian) · 2 length varint + bytes · 3/4 group start/end ·
//   5 fixed32 (little-endian; a `float` is its IEEE bits).
// A message is kept one level deep as its fields in wire order, so fields this code does not
// know survive a load/save round trip untouched; nested messages are parsed on demand.

/// What is wrong with bytes that are not a valid protocol-buffer message.
public struct ProtobufError: Error, Equatable, CustomStringConvertible {
    /// What is wrong, e.g. "truncated varint".
    public var reason: String
    /// Byte offset in the outermost message (the file) where the problem was found.
    public var offset: Int?

    public init(reason: String, offset: Int?) {
        self.reason = reason
        self.offset = offset
    }

    public var description: String { offset.map { "\(reason) at byte \($0)" } ?? reason }
}

/// One field as it appears on the wire.
public struct ProtobufField: Equatable, Sendable {
    /// The payload, by wire type.
    public enum Value: Equatable, Sendable {
        case varint(UInt64)
        case fixed64(UInt64)
        case lengthDelimited([UInt8])
        /// The raw bytes between a group's start and end keys (deprecated wire types 3/4).
        case group([UInt8])
        case fixed32(UInt32)
    }

    /// The field number (1 ... 2^29 - 1).
    public var number: Int
    /// The payload.
    public var value: Value

    public init(number: Int, value: Value) {
        self.number = number
        self.value = value
    }
}

/// A message as its list of fields (repeated fields appear once per element). Two messages
/// are equal when they serialise to the same bytes.
public struct ProtobufMessage: Equatable, Sendable {
    public var fields: [ProtobufField]
    /// For parsed messages: where each field's payload starts in the outermost message, so
    /// that errors found later (in nested messages, wrong wire types) can name a byte.
    var payloadOffsets: [Int] = []

    public init(fields: [ProtobufField] = []) {
        self.fields = fields
    }

    /// Parses one message. `offsetBase` is the position of `bytes` in the outermost message,
    /// so that errors in nested messages report file offsets.
    public init(serialized bytes: ArraySlice<UInt8>, offsetBase: Int = 0) throws(ProtobufError) {
        var reader = ProtobufReader(bytes: bytes, offsetBase: offsetBase)
        var fields: [ProtobufField] = []
        var offsets: [Int] = []
        while let field = try reader.readField() {
            fields.append(field)
            offsets.append(reader.lastPayloadOffset)
        }
        self.fields = fields
        payloadOffsets = offsets
    }

    /// The file offset of field `index`'s payload, when known.
    func payloadOffset(_ index: Int) -> Int? {
        payloadOffsets.indices.contains(index) ? payloadOffsets[index] : nil
    }

    public init(serialized bytes: [UInt8]) throws(ProtobufError) {
        try self.init(serialized: bytes[...])
    }

    /// Serialises the fields ordered by field number (stable, so repeated fields keep their
    /// order), which is the order protobuf's own serialisers write.
    public func serialized() -> [UInt8] {
        var writer = ProtobufWriter()
        for field in canonicalFields { writer.write(field) }
        return writer.bytes
    }

    var canonicalFields: [ProtobufField] {
        fields.enumerated().sorted { a, b in
            a.element.number != b.element.number
                ? a.element.number < b.element.number : a.offset < b.offset
        }.map(\.element)
    }

    /// Messages are equal when they serialise to the same bytes.
    public static func == (a: ProtobufMessage, b: ProtobufMessage) -> Bool {
        a.canonicalFields == b.canonicalFields
    }

    // MARK: Typed access. Getters return the last occurrence (proto semantics for a
    // non-repeated field); setters replace every occurrence, nil removes the field.

    func last(_ number: Int) -> ProtobufField.Value? {
        fields.last { $0.number == number }?.value
    }

    /// Whether field `number` is present (proto2 presence).
    public func has(_ number: Int) -> Bool { fields.contains { $0.number == number } }

    func varint(_ number: Int) -> UInt64? {
        if case .varint(let v) = last(number) { return v }
        return nil
    }

    func int32(_ number: Int) -> Int32? { varint(number).map { Int32(truncatingIfNeeded: $0) } }
    func bool(_ number: Int) -> Bool? { varint(number).map { $0 != 0 } }

    func float(_ number: Int) -> Float? {
        if case .fixed32(let bits) = last(number) { return Float(bitPattern: bits) }
        return nil
    }

    func bytes(_ number: Int) -> [UInt8]? {
        if case .lengthDelimited(let b) = last(number) { return b }
        return nil
    }

    func string(_ number: Int) -> String? {
        bytes(number).map { String(decoding: $0, as: UTF8.self) }
    }

    func strings(_ number: Int) -> [String] {
        fields.compactMap { field in
            guard field.number == number, case .lengthDelimited(let b) = field.value else {
                return nil
            }
            return String(decoding: b, as: UTF8.self)
        }
    }

    mutating func set(_ number: Int, _ value: ProtobufField.Value?) {
        fields.removeAll { $0.number == number }
        if let value { fields.append(ProtobufField(number: number, value: value)) }
    }

    mutating func set(_ number: Int, int32 value: Int32?) {
        // Negative int32 values are sign-extended to 64 bits on the wire (10-byte varints).
        set(number, value.map { .varint(UInt64(bitPattern: Int64($0))) })
    }

    mutating func set(_ number: Int, bool value: Bool?) {
        set(number, value.map { .varint($0 ? 1 : 0) })
    }
    mutating func set(_ number: Int, uint64 value: UInt64?) {
        set(number, value.map { .varint($0) })
    }
    mutating func set(_ number: Int, float value: Float?) {
        set(number, value.map { .fixed32($0.bitPattern) })
    }
    mutating func set(_ number: Int, bytes value: [UInt8]?) {
        set(number, value.map { .lengthDelimited($0) })
    }
    mutating func set(_ number: Int, string value: String?) {
        set(number, bytes: value.map { Array($0.utf8) })
    }

    mutating func set(_ number: Int, strings values: [String]) {
        fields.removeAll { $0.number == number }
        for value in values {
            fields.append(ProtobufField(number: number, value: .lengthDelimited(Array(value.utf8))))
        }
    }

    /// The kinds of value a schema expects for a field number.
    enum Kind {
        case varint, fixed32, lengthDelimited
    }

    /// Checks that the fields named in `schema` have the expected wire types and, for
    /// strings, hold UTF-8; `context` names the message in the error.
    func validate(_ schema: [Int: (name: String, kind: Kind, isString: Bool)], context: String)
        throws(ProtobufError)
    {
        for (index, field) in fields.enumerated() {
            guard let entry = schema[field.number] else { continue }
            let ok: Bool
            switch (entry.kind, field.value) {
            case (.varint, .varint), (.fixed32, .fixed32): ok = true
            case (.lengthDelimited, .lengthDelimited(let b)):
                if entry.isString
                    && b.withUnsafeBufferPointer({ UTF8Validation.firstInvalidOffset($0) }) != nil
                {
                    throw ProtobufError(
                        reason: "\(context).\(entry.name) is not valid UTF-8",
                        offset: payloadOffset(index))
                }
                ok = true
            default: ok = false
            }
            if !ok {
                throw ProtobufError(
                    reason:
                        "\(context).\(entry.name) (field \(field.number)) has the wrong wire type",
                    offset: payloadOffset(index))
            }
        }
    }
}

/// Reads fields from a byte slice; every read is bounds-checked and reports the offset.
struct ProtobufReader {
    let bytes: ArraySlice<UInt8>
    let offsetBase: Int
    var position: Int
    /// File offset where the payload of the field last read starts.
    var lastPayloadOffset = 0

    init(bytes: ArraySlice<UInt8>, offsetBase: Int) {
        self.bytes = bytes
        self.offsetBase = offsetBase
        position = bytes.startIndex
    }

    private func error(_ reason: String) -> ProtobufError {
        ProtobufError(reason: reason, offset: offsetBase + position - bytes.startIndex)
    }

    mutating func readVarint() throws(ProtobufError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        let start = position
        while true {
            guard position < bytes.endIndex else {
                position = start
                throw error("truncated varint")
            }
            let byte = bytes[position]
            position += 1
            if shift == 63 && byte > 1 {
                position = start
                throw error("varint longer than 64 bits")
            }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    private mutating func readFixed(_ count: Int) throws(ProtobufError) -> UInt64 {
        guard bytes.endIndex - position >= count else {
            throw error("truncated \(count * 8)-bit value")
        }
        var value: UInt64 = 0
        for k in 0..<count { value |= UInt64(bytes[position + k]) << (8 * UInt64(k)) }
        position += count
        return value
    }

    /// The next field, or nil at the end of the message.
    mutating func readField() throws(ProtobufError) -> ProtobufField? {
        guard position < bytes.endIndex else { return nil }
        let keyStart = position
        let key = try readVarint()
        let number = Int(truncatingIfNeeded: key >> 3)
        guard number >= 1 && number <= 0x1FFF_FFFF else {
            position = keyStart
            throw error("invalid field number \(key >> 3)")
        }
        lastPayloadOffset = offsetBase + position - bytes.startIndex
        switch key & 7 {
        case 0:
            return ProtobufField(number: number, value: .varint(try readVarint()))
        case 1:
            return ProtobufField(number: number, value: .fixed64(try readFixed(8)))
        case 2:
            let lengthStart = position
            let length = try readVarint()
            guard length <= UInt64(bytes.endIndex - position) else {
                position = lengthStart
                throw error(
                    "field \(number) claims \(length) bytes but only \(bytes.endIndex - position) remain"
                )
            }
            lastPayloadOffset = offsetBase + position - bytes.startIndex
            let payload = Array(bytes[position..<position + Int(length)])
            position += Int(length)
            return ProtobufField(number: number, value: .lengthDelimited(payload))
        case 3:
            let start = position
            try skipGroup(number: number)
            // The payload excludes the end-group key that skipGroup consumed.
            let endKeyLength = ProtobufWriter.varintLength(UInt64(number << 3 | 4))
            return ProtobufField(
                number: number, value: .group(Array(bytes[start..<position - endKeyLength])))
        case 5:
            return ProtobufField(number: number, value: .fixed32(UInt32(try readFixed(4))))
        default:
            position = keyStart
            throw error("field \(number) has unsupported wire type \(key & 7)")
        }
    }

    /// Skips fields up to and including the end-group key for `number`.
    private mutating func skipGroup(number: Int) throws(ProtobufError) {
        while true {
            guard position < bytes.endIndex else { throw error("group \(number) is not closed") }
            let keyStart = position
            let key = try readVarint()
            if key & 7 == 4 {
                guard Int(key >> 3) == number else {
                    position = keyStart
                    throw error("group \(number) closed by the end of group \(key >> 3)")
                }
                return
            }
            position = keyStart
            _ = try readField()
        }
    }
}

/// Appends fields in wire format.
struct ProtobufWriter {
    var bytes: [UInt8] = []

    static func varintLength(_ value: UInt64) -> Int {
        var v = value
        var n = 1
        while v >= 0x80 {
            v >>= 7
            n += 1
        }
        return n
    }

    mutating func writeVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    private mutating func writeKey(_ number: Int, _ wireType: UInt64) {
        writeVarint(UInt64(number) << 3 | wireType)
    }

    private mutating func writeFixed(_ value: UInt64, count: Int) {
        for k in 0..<count { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(k)))) }
    }

    mutating func write(_ field: ProtobufField) {
        switch field.value {
        case .varint(let v):
            writeKey(field.number, 0)
            writeVarint(v)
        case .fixed64(let v):
            writeKey(field.number, 1)
            writeFixed(v, count: 8)
        case .lengthDelimited(let payload):
            writeKey(field.number, 2)
            writeVarint(UInt64(payload.count))
            bytes.append(contentsOf: payload)
        case .group(let payload):
            writeKey(field.number, 3)
            bytes.append(contentsOf: payload)
            writeKey(field.number, 4)
        case .fixed32(let v):
            writeKey(field.number, 5)
            writeFixed(UInt64(v), count: 4)
        }
    }
}
