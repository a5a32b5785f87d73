import Foundation

/// Every number of a config with its key path as config.json spells it (`model.d_model`,
/// `model.feed_forward.regularization`), collected by encoding the config through a recording
/// encoder. Generic over every model kind and feedforward variant: a check written over these
/// fields covers a field that a new config adds without being told about it.
public struct ConfigField: Sendable, Equatable {
    public enum Value: Sendable, Equatable {
        case integer(Int)
        case unsigned(UInt64)
        case real(Double)
    }

    /// Keys joined by dots; array elements as their index (`data.split.1`).
    public var path: String
    public var value: Value

    /// The numbers of `value` in encoding order (strings, booleans and nulls are left out).
    public static func all(of value: some Encodable) -> [ConfigField] {
        let recorder = FieldRecorder(codingPath: [])
        // The recorder itself never throws; an `encode(to:)` of the config could only rethrow.
        try? value.encode(to: recorder)
        return recorder.storage.fields
    }
}

/// Shared by the recorder's containers (they are values; the list is one).
private final class FieldStorage {
    var fields: [ConfigField] = []
}

private struct FieldRecorder: Encoder {
    var codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    var storage = FieldStorage()

    init(codingPath: [any CodingKey], storage: FieldStorage = FieldStorage()) {
        self.codingPath = codingPath
        self.storage = storage
    }

    func record(_ value: ConfigField.Value, at path: [any CodingKey]) {
        storage.fields.append(ConfigField(path: path.map(\.stringValue).joined(separator: "."), value: value))
    }

    /// Records a number; anything else is encoded through a nested recorder.
    func encodeAny<T: Encodable>(_ value: T, at path: [any CodingKey]) throws {
        switch value {
        case let v as Double: record(.real(v), at: path)
        case let v as Float: record(.real(Double(v)), at: path)
        case let v as Int: record(.integer(v), at: path)
        case let v as Int32: record(.integer(Int(v)), at: path)
        case let v as UInt64: record(.unsigned(v), at: path)
        case let v as UInt32: record(.unsigned(UInt64(v)), at: path)
        case is String, is Bool: break
        default: try value.encode(to: FieldRecorder(codingPath: path, storage: storage))
        }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(KeyedRecorder<Key>(recorder: self))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer { UnkeyedRecorder(recorder: self) }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleRecorder(recorder: self) }
}

private struct IndexKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(_ index: Int) { stringValue = "\(index)"; intValue = index }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { self.init(intValue) }
}

private struct KeyedRecorder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let recorder: FieldRecorder
    var codingPath: [any CodingKey] { recorder.codingPath }

    mutating func encodeNil(forKey key: Key) throws {}
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try recorder.encodeAny(value, at: codingPath + [key])
    }
    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type, forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        FieldRecorder(codingPath: codingPath + [key], storage: recorder.storage).container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        UnkeyedRecorder(recorder: FieldRecorder(codingPath: codingPath + [key], storage: recorder.storage))
    }
    mutating func superEncoder() -> any Encoder { recorder }
    mutating func superEncoder(forKey key: Key) -> any Encoder {
        FieldRecorder(codingPath: codingPath + [key], storage: recorder.storage)
    }
}

private struct UnkeyedRecorder: UnkeyedEncodingContainer {
    let recorder: FieldRecorder
    var count = 0
    var codingPath: [any CodingKey] { recorder.codingPath }

    private mutating func nextPath() -> [any CodingKey] {
        defer { count += 1 }
        return codingPath + [IndexKey(count)]
    }

    mutating func encodeNil() throws { count += 1 }
    mutating func encode<T: Encodable>(_ value: T) throws { try recorder.encodeAny(value, at: nextPath()) }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        FieldRecorder(codingPath: nextPath(), storage: recorder.storage).container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        UnkeyedRecorder(recorder: FieldRecorder(codingPath: nextPath(), storage: recorder.storage))
    }
    mutating func superEncoder() -> any Encoder { FieldRecorder(codingPath: nextPath(), storage: recorder.storage) }
}

private struct SingleRecorder: SingleValueEncodingContainer {
    let recorder: FieldRecorder
    var codingPath: [any CodingKey] { recorder.codingPath }

    mutating func encodeNil() throws {}
    mutating func encode<T: Encodable>(_ value: T) throws { try recorder.encodeAny(value, at: codingPath) }
}
