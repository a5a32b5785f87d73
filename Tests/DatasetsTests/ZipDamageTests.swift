import CZlib
@testable import Datasets
import Foundation
import Testing

/// Damaged deflate data is reported as a damaged member of the archive (named), even when the
/// garbled bytes reach the reader first and fail its own checks (invalid UTF-8, say).
struct ZipDamageTests {
    /// Bytes of a WikiText-like member whose deflate data gets damaged.
    let text = WikiTextFixture.text(WikiTextFixture.lines(count: 3000, seed: 7))

    /// A line consumer that, like the tokenizers, refuses text that is not UTF-8.
    struct NotUTF8: Error {}
    static func requireUTF8(_ chunk: UnsafeBufferPointer<UInt8>) throws {
        if String(validating: chunk, as: UTF8.self) == nil { throw NotUTF8() }
    }

    @Test func damagedDeflateDataNamesArchiveAndMemberNotTheReadersError() throws {
        let folder = WikiTextFixture.folder("damaged")
        let archive = folder.appendingPathComponent("wikitext-2-v1.zip")
        try WikiTextFixture.writeArchive([.train: text, .valid: text, .test: text], to: archive)
        let original = try [UInt8](Data(contentsOf: archive))
        let member = try ZipArchive(url: archive).members[0]
        let dataStart = member.localHeaderOffset + 30 + member.name.utf8.count
        var readerWouldHaveFailed = 0
        // Damage at several places of the member's data: every outcome is the damage message.
        for position in stride(from: dataStart + 50, to: dataStart + member.compressedSize - 8, by: member.compressedSize / 23) {
            var bytes = original
            bytes[position] ^= 0xA5
            let damaged = folder.appendingPathComponent("damaged-\(position).zip")
            try Data(bytes).write(to: damaged)
            let source = try WikiText.open(damaged).split(.train)
            // What the reader alone sees of these bytes (the old behaviour surfaced this).
            var garbled: [UInt8] = []
            var inflateError = false
            do { try source.forEachBlock { garbled += $0 } } catch { inflateError = true }
            if String(validating: garbled, as: UTF8.self) == nil { readerWouldHaveFailed += 1 }
            #expect(inflateError, "damage at \(position) went unnoticed")
            #expect { try source.forEachChunk(chunkSize: 4096) { try Self.requireUTF8($0) } } throws: { error in
                let message = "\(error)"
                return message.contains(damaged.path) && message.contains("member wikitext-2/wiki.train.tokens is damaged")
                    && !message.contains("\n")
            }
        }
        // The test exercises the case it is about: garbled text that a reader would reject.
        #expect(readerWouldHaveFailed > 0)
    }

    @Test func intactMemberRethrowsTheReadersError() throws {
        let url = WikiTextFixture.folder("intact").appendingPathComponent("a.zip")
        try Data(ZipWriter.archive([.init(name: "m.txt", bytes: [0x61, 0xFF, 0x0A], deflate: true)])).write(to: url)
        let archive = try ZipArchive(url: url)
        #expect(throws: NotUTF8.self) {
            try archive.stream(archive.members[0]) { try Self.requireUTF8($0.bindMemory(to: UInt8.self)) }
        }
    }

    @Test func crcMismatchOfAStoredMemberIsADamagedMember() throws {
        let url = WikiTextFixture.folder("crc").appendingPathComponent("a.zip")
        var bytes = ZipWriter.archive([.init(name: "m.txt", bytes: Array("hello\n".utf8), deflate: false)])
        bytes[30 + 5] ^= 0x01  // a byte of the stored data
        try Data(bytes).write(to: url)
        let archive = try ZipArchive(url: url)
        #expect { _ = try archive.read(archive.members[0]) } throws: {
            "\($0)".contains("member m.txt is damaged (CRC-32 mismatch)") && "\($0)".contains(url.path)
        }
    }
}
