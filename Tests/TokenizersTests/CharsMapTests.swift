// The darts-clone double array, the precompiled charsmap and lmtrain's own nmt_nfkc rules.

import Foundation
import Testing

@testable import Tokenizers

@Suite struct CharsMapTests {
    /// Every prefix match of the double array agrees with a brute-force search over the keys.
    @Test func doubleArrayFindsExactlyThePrefixKeys() throws {
        var generator = SplitMix64(seed: 7)
        var keys = Set<[UInt8]>()
        let alphabet: [UInt8] = [0x01, 0x61, 0x62, 0x63, 0x7F, 0x80, 0xC3, 0xE2, 0xFF]
        while keys.count < 2000 {
            let length = Int(generator.next() % 6) + 1
            keys.insert(
                (0..<length).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] })
        }
        let sorted = keys.sorted { $0.lexicographicallyPrecedes($1) }
        let values = sorted.indices.map { Int32($0 * 3 + 1) }
        let units = try DoubleArrayBuilder.build(keys: sorted, values: values)
        let trie = DoubleArray(units: units)
        let valueOf = Dictionary(uniqueKeysWithValues: zip(sorted, values))
        for _ in 0..<3000 {
            let length = Int(generator.next() % 9)
            var query = (0..<length).map { _ in
                alphabet[Int(generator.next() % UInt64(alphabet.count))]
            }
            if generator.next() % 4 == 0 {
                query.insert(0, at: Int(generator.next() % UInt64(query.count + 1)))
            }
            var found: [(Int, Int)] = []
            query.withUnsafeBufferPointer {
                trie.forEachPrefix(of: $0, from: 0, maxResults: .max) { found.append(($0, $1)) }
            }
            let expected = (1...max(1, query.count)).compactMap { n -> (Int, Int)? in
                n <= query.count ? valueOf[Array(query[0..<n])].map { (n, Int($0)) } : nil
            }
            #expect(found.map(\.0) == expected.map(\.0), "\(query)")
            #expect(found.map(\.1) == expected.map(\.1), "\(query)")
        }
        // Decompiling gives back every pair.
        let entries = trie.allEntries()
        #expect(entries.count == sorted.count)
        #expect(entries.allSatisfy { valueOf[$0.key] == Int32($0.value) })
        // darts-clone arrays are whole 256-unit blocks and the root has no value.
        #expect(units.count % 256 == 0 && !DoubleArray.hasLeaf(units[0]))
    }

    @Test func sharedSuffixesAreStoredOnce() throws {
        // 200 keys that differ only in the first byte and share a long tail and value: as a
        // DAWG the tail is laid out once, so the array stays small.
        let tail = Array("-the-same-long-suffix".utf8)
        let keys = (0..<200).map { [UInt8(0x20 + $0)] + tail }.sorted {
            $0.lexicographicallyPrecedes($1)
        }
        let units = try DoubleArrayBuilder.build(
            keys: keys, values: Array(repeating: 5, count: keys.count))
        #expect(units.count <= 3 * 256)
        let trie = DoubleArray(units: units)
        #expect(trie.allEntries().count == 200)
    }

    @Test func charsMapBlobRoundTrips() throws {
        let rules: [[UInt8]: [UInt8]] = [
            Array("A".utf8): Array("a".utf8), Array("ﬁ".utf8): Array("fi".utf8),
            Array("e\u{301}".utf8): Array("é".utf8),
            Array("\u{1}".utf8): [], Array("\t".utf8): Array(" ".utf8),
        ]
        let map = try PrecompiledCharsMap(rules: rules)
        #expect(map.rules() == rules)
        let reparsed = try PrecompiledCharsMap(blob: map.blob)
        #expect(reparsed == map)
        #expect(reparsed.rules() == rules)
        #expect(throws: ProtobufError.self) { try PrecompiledCharsMap(blob: [1, 0, 0]) }
        #expect(throws: ProtobufError.self) {
            try PrecompiledCharsMap(blob: [0xFF, 0, 0, 0, 1, 2])
        }
    }

    /// Python's own nmt_nfkc table, decompiled from a Python-trained model, recompiled by
    /// lmtrain's builder: same rules, so lmtrain writes tables sentencepiece reads.
    @Test func pythonCharsMapRecompilesToTheSameRules() throws {
        let model = try SentencePieceModelProto(serialized: Fixtures.data("python-bpe-1000.model"))
        let python = try PrecompiledCharsMap(
            blob: try #require(model.normalizerSpec.precompiledCharsMap))
        let rules = python.rules()
        #expect(rules.count > 200_000)
        #expect(rules[Array("ﬁ".utf8)] == Array("fi".utf8))
        let rebuilt = try PrecompiledCharsMap(rules: rules)
        #expect(rebuilt.rules() == rules)
    }

    /// lmtrain's nmt_nfkc rules against Python sentencepiece's table: every lmtrain rule is
    /// Python's rule, and every rule only Python has starts with a character that this
    /// toolchain's Unicode data does not normalise (characters newer than its Unicode version).
    @Test func lmtrainRulesAgreeWithPythonsTable() throws {
        let model = try SentencePieceModelProto(serialized: Fixtures.data("python-bpe-1000.model"))
        let python = try PrecompiledCharsMap(
            blob: try #require(model.normalizerSpec.precompiledCharsMap)
        ).rules()
        let lmtrain = try PrecompiledCharsMap(blob: try NmtNFKCRules.compiled.get()).rules()
        #expect(lmtrain.count > 200_000)
        var pythonOnly = 0
        for (key, value) in lmtrain {
            #expect(
                python[key] == value,
                "\(String(decoding: key, as: UTF8.self).unicodeScalars.map { $0.value })")
        }
        for (key, _) in python where lmtrain[key] == nil {
            pythonOnly += 1
            let first = String(decoding: key, as: UTF8.self).unicodeScalars.first!
            #expect(
                String(first).precomposedStringWithCompatibilityMapping == String(first),
                "U+\(String(first.value, radix: 16))")
        }
        #expect(pythonOnly < 1000)
    }
}

/// A small deterministic generator for test data.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
