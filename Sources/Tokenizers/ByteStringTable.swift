// An insertion-ordered hash set of byte strings with dense indices.
//
// Used for vocabulary look-ups (word → id, piece → id), the BPE word cache and the trainer's
// word counts. Keys are looked up straight from UTF-8 buffers, so no String is created per
// word: creating Strings made word look-ups several times slower than the hashing itself.

/// Maps byte strings to dense indices `0..<count` in insertion order.
struct ByteStringTable: Sendable, Equatable {
    /// All keys back to back.
    private(set) var keyBytes: [UInt8] = []
    /// `keyStarts[i]..<keyStarts[i + 1]` is key i in `keyBytes`.
    private(set) var keyStarts: [Int] = [0]
    /// Open addressing: each slot holds an index + 1, or 0 when empty.
    private var slots: [Int32]
    private var hashes: [UInt32] = []

    init(minimumCapacity: Int = 16) {
        var capacity = 16
        while capacity < minimumCapacity * 2 { capacity <<= 1 }
        slots = [Int32](repeating: 0, count: capacity)
    }

    var count: Int { keyStarts.count - 1 }

    /// Key `index` as bytes.
    func key(at index: Int) -> ArraySlice<UInt8> {
        keyBytes[keyStarts[index]..<keyStarts[index + 1]]
    }

    /// Key `index` decoded as UTF-8 (the keys are valid UTF-8 wherever this is called).
    func string(at index: Int) -> String {
        String(decoding: key(at: index), as: UTF8.self)
    }

    /// 64-bit multiplicative hash over 8-byte words; short keys (most words) take one or two
    /// multiplies instead of FNV's one per byte.
    @inline(__always)
    static func hash(_ key: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(truncatingIfNeeded: key.count)
        guard let base = key.baseAddress else { return h }
        var i = 0
        let count = key.count
        while i + 8 <= count {
            let word = UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self)
            h = (h ^ word) &* 0xFF51_AFD7_ED55_8CCD
            h ^= h >> 29
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < count {
            tail |= UInt64(base[i]) << shift
            shift += 8
            i += 1
        }
        h = (h ^ tail) &* 0xC4CE_B9FE_1A85_EC53
        h ^= h >> 32
        return h
    }

    /// Compares `count` bytes; inline for the short keys that words and pieces are (a libc
    /// memcmp call cost more than the comparison).
    @inline(__always)
    private static func equal(
        _ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>?, _ count: Int
    ) -> Bool {
        guard count > 0, let b else { return true }
        var i = 0
        while i + 8 <= count {
            if UnsafeRawPointer(a + i).loadUnaligned(as: UInt64.self)
                != UnsafeRawPointer(b + i).loadUnaligned(as: UInt64.self)
            {
                return false
            }
            i += 8
        }
        while i < count {
            if a[i] != b[i] { return false }
            i += 1
        }
        return true
    }

    /// The index of `key`, or nil.
    @inline(__always)
    func index(of key: UnsafeBufferPointer<UInt8>) -> Int? {
        let h = Self.hash(key)
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: h) & mask
        let tag = UInt32(truncatingIfNeeded: h >> 32)
        return slots.withUnsafeBufferPointer { slots in
            keyBytes.withUnsafeBufferPointer { bytes in
                while true {
                    let entry = Int(slots[slot])
                    if entry == 0 { return nil }
                    let index = entry - 1
                    if hashes[index] == tag {
                        let start = keyStarts[index]
                        let length = keyStarts[index + 1] - start
                        if length == key.count
                            && Self.equal(bytes.baseAddress! + start, key.baseAddress, length)
                        {
                            return index
                        }
                    }
                    slot = (slot + 1) & mask
                }
            }
        }
    }

    func index(of key: [UInt8]) -> Int? {
        key.withUnsafeBufferPointer { index(of: $0) }
    }

    func index(of key: String) -> Int? {
        var copy = key
        return copy.withUTF8 { index(of: $0) }
    }

    /// Inserts `key` unless present; returns its index and whether it was new.
    @discardableResult
    mutating func insert(_ key: UnsafeBufferPointer<UInt8>) -> (index: Int, inserted: Bool) {
        if let existing = index(of: key) { return (existing, false) }
        if (count + 1) * 2 > slots.count { grow() }
        let h = Self.hash(key)
        keyBytes.append(contentsOf: key)
        keyStarts.append(keyBytes.count)
        hashes.append(UInt32(truncatingIfNeeded: h >> 32))
        place(index: count - 1, hash: h)
        return (count - 1, true)
    }

    @discardableResult
    mutating func insert(_ key: [UInt8]) -> (index: Int, inserted: Bool) {
        key.withUnsafeBufferPointer { insert($0) }
    }

    @discardableResult
    mutating func insert(_ key: String) -> (index: Int, inserted: Bool) {
        var copy = key
        return copy.withUTF8 { insert($0) }
    }

    private mutating func place(index: Int, hash: UInt64) {
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while slots[slot] != 0 { slot = (slot + 1) & mask }
        slots[slot] = Int32(index + 1)
    }

    private mutating func grow() {
        slots = [Int32](repeating: 0, count: slots.count * 2)
        for index in 0..<count {
            let h = keyBytes.withUnsafeBufferPointer {
                Self.hash(
                    UnsafeBufferPointer(rebasing: $0[keyStarts[index]..<keyStarts[index + 1]]))
            }
            place(index: index, hash: h)
        }
    }

    static func == (a: ByteStringTable, b: ByteStringTable) -> Bool {
        a.keyBytes == b.keyBytes && a.keyStarts == b.keyStarts
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// FNV-1a 64-bit hash, used for vocabulary fingerprints (no CryptoKit on Linux; a fingerprint
/// only has to tell vocabularies apart, not resist attackers).
struct FNV1a64 {
    private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325

    mutating func add<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        for byte in bytes {
            value ^= UInt64(byte)
            value = value &* 0x0000_0100_0000_01B3
        }
    }

    mutating func add(_ string: String) { add(string.utf8) }

    /// Adds a value with a terminator so that ("ab", "c") and ("a", "bc") hash differently.
    mutating func addField(_ string: String) {
        add(string.utf8)
        add([0xFF])  // 0xFF never occurs in UTF-8
    }

    mutating func add(_ integer: UInt32) {
        withUnsafeBytes(of: integer.littleEndian) { add($0) }
    }

    var hex: String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
