// SentencePiece's `precompiled_charsmap`: character rewrite rules compiled into one blob
//
//   <trie size in bytes: UInt32 LE> <double-array units: UInt32 LE each> <pool>
//
// The trie maps the UTF-8 bytes of a source sequence to an offset in the pool, where the
// replacement is stored NUL-terminated. The normaliser rewrites the longest matching source
// at each position (normalizer.cc, NormalizePrefix).

/// Compiled character rewrite rules, readable and writable in sentencepiece's format.
public struct PrecompiledCharsMap: Sendable, Equatable {
    let trie: DoubleArray
    /// NUL-terminated replacement strings.
    let pool: [UInt8]

    /// Parses a blob from a model's `normalizer_spec.precompiled_charsmap`.
    public init(blob: [UInt8]) throws(ProtobufError) {
        guard blob.count > 4 else {
            throw ProtobufError(
                reason: "precompiled_charsmap is only \(blob.count) bytes", offset: nil)
        }
        let trieSize = Int(
            UInt32(blob[0]) | UInt32(blob[1]) << 8 | UInt32(blob[2]) << 16 | UInt32(blob[3]) << 24)
        guard trieSize <= blob.count - 4 else {
            throw ProtobufError(
                reason:
                    "precompiled_charsmap claims a \(trieSize)-byte trie but holds \(blob.count - 4) bytes",
                offset: nil)
        }
        var units = [UInt32](repeating: 0, count: trieSize / 4)
        for i in 0..<units.count {
            let p = 4 + 4 * i
            units[i] =
                UInt32(blob[p]) | UInt32(blob[p + 1]) << 8 | UInt32(blob[p + 2]) << 16 | UInt32(
                    blob[p + 3]) << 24
        }
        trie = DoubleArray(units: units)
        pool = Array(blob[(4 + trieSize)...])
    }

    /// Compiles rules (source → replacement, both UTF-8; an empty replacement deletes) the way
    /// sentencepiece's `Builder::CompileCharsMap` does: distinct replacements are pooled, the
    /// sources go into a double array whose values point into the pool.
    public init(rules: [[UInt8]: [UInt8]]) throws {
        var poolOffsets: [[UInt8]: Int32] = [:]
        var pool: [UInt8] = []
        for replacement in Set(rules.values).sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            poolOffsets[replacement] = Int32(pool.count)
            pool.append(contentsOf: replacement)
            pool.append(0)
        }
        let keys = rules.keys.sorted { $0.lexicographicallyPrecedes($1) }
        let units: [UInt32]
        do {
            units = try DoubleArrayBuilder.build(
                keys: keys, values: keys.map { poolOffsets[rules[$0]!]! })
        } catch {
            throw TokenizerError.trainingFailed(
                reason: "cannot compile the character map: \(error)")
        }
        trie = DoubleArray(units: units)
        self.pool = pool
        // sentencepiece's normaliser reads at most 32 prefix matches per position.
        for key in keys {
            var matches = 0
            key.withUnsafeBufferPointer { key in
                trie.forEachPrefix(of: key, from: 0, maxResults: .max) { _, _ in matches += 1 }
            }
            if matches >= 32 {
                throw TokenizerError.trainingFailed(
                    reason: "character map has \(matches) rules sharing one prefix")
            }
        }
    }

    /// The blob as stored in a model file.
    public var blob: [UInt8] {
        var blob: [UInt8] = []
        blob.reserveCapacity(4 + trie.units.count * 4 + pool.count)
        for value in [UInt32(trie.units.count * 4)] + trie.units {
            blob.append(contentsOf: [
                UInt8(value & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value >> 16 & 0xFF),
                UInt8(value >> 24),
            ])
        }
        blob.append(contentsOf: pool)
        return blob
    }

    /// The replacement stored at a pool offset (up to its NUL), or nil if out of range.
    func replacement(at offset: Int) -> ArraySlice<UInt8>? {
        guard offset >= 0 && offset < pool.count else { return nil }
        let end = pool[offset...].firstIndex(of: 0) ?? pool.count
        return pool[offset..<end]
    }

    /// All rules, source → replacement (sentencepiece's `DecompileCharsMap`).
    public func rules() -> [[UInt8]: [UInt8]] {
        var rules: [[UInt8]: [UInt8]] = [:]
        for (key, value) in trie.allEntries() {
            rules[key] = Array(replacement(at: value) ?? [])
        }
        return rules
    }
}
