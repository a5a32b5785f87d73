@testable import Datasets
import Foundation
import Testing

/// Counts in a token cache header that pass its checksum but no Int can hold (a crafted file,
/// or one the fuzz target sealed): refused as corrupt, never an arithmetic trap.
struct TokenCacheHeaderTests {
    func header(count: Int) -> [UInt8] {
        TokenCacheHeader(
            width: 4, split: .train, tokenCount: count, vocabularySize: 70_000, vocabularyFingerprint: 1,
            tokenizer: "words", source: SourceIdentity(bytes: 10, crc32: 2), payloadCRC32: 0, lineCount: 1,
            wordCount: 3
        ).encoded()
    }

    /// `bytes` with the 64-bit field at `offset` set and the header checksum made right again.
    func sealed(_ bytes: [UInt8], setting value: UInt64, at offset: Int) -> [UInt8] {
        var bytes = bytes
        for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        let crc = bytes.withUnsafeBytes { CRC32.of(UnsafeRawBufferPointer(rebasing: $0[0..<252])) }
        for i in 0..<4 { bytes[252 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i))) }
        return bytes
    }

    @Test(arguments: [(24, UInt64.max), (24, UInt64(1) << 62), (32, UInt64.max), (48, UInt64(1) << 63), (64, UInt64.max - 1)])
    func countsBeyondIntAreCorrupt(offset: Int, value: UInt64) throws {
        let url = temporaryFile("cache.tokens")
        try Data(sealed(header(count: 0), setting: value, at: offset)).write(to: url)
        #expect { _ = try TokenCache.check(url) } throws: { "\($0)".contains("a count in the header is out of range") }
    }

    @Test func aSoundCacheChecksAndItsIdsRead() throws {
        let url = temporaryFile("good.tokens")
        var bytes = header(count: 2)
        let ids: [UInt8] = [1, 0, 0, 0, 7, 0, 0, 0]
        let payload = ids.withUnsafeBytes { CRC32.of($0) }
        for i in 0..<4 { bytes[60 + i] = UInt8(truncatingIfNeeded: payload >> (8 * UInt32(i))) }
        bytes = sealed(bytes, setting: 2, at: 24)
        try Data(bytes + ids).write(to: url)
        let opened = try TokenCache.check(url)
        #expect(opened.tokens.count == 2 && opened.tokens[1] == 7)
        try Data(bytes + ids.dropLast()).write(to: url)
        #expect { _ = try TokenCache.check(url) } throws: { "\($0)".contains("truncated") }
    }

    /// Ids outside the vocabulary, in a file whose checksums all match (only a crafted file):
    /// corrupt, since they would index past the embedding table.
    @Test func idsOutsideTheVocabularyAreCorrupt() throws {
        let url = temporaryFile("outside.tokens")
        for (ids, position) in [([UInt8]([1, 0, 0, 0, 0x70, 0x11, 0x01, 0]), 1), ([0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0], 0)] {
            var bytes = header(count: 2)
            let payload = ids.withUnsafeBytes { CRC32.of($0) }
            for i in 0..<4 { bytes[60 + i] = UInt8(truncatingIfNeeded: payload >> (8 * UInt32(i))) }
            bytes = sealed(bytes, setting: 2, at: 24)
            try Data(bytes + ids).write(to: url)
            #expect { _ = try TokenCache.check(url) } throws: {
                "\($0)".contains("the id at position \(position) is outside the vocabulary of 70000")
            }
        }
    }
}
