// UTF-8 validation, line splitting and chunked reading.

import Foundation
import Testing

@testable import Tokenizers

@Suite struct TextLinesTests {
    /// The validator agrees with the standard library's decoder on random byte strings
    /// biased towards the tricky lead and continuation bytes.
    @Test func validatorAgreesWithTheStandardLibrary() {
        var generator = SplitMix64(seed: 42)
        let interesting: [UInt8] = [
            0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1,
            0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF,
        ]
        var invalid = 0
        for _ in 0..<20_000 {
            let length = Int(generator.next() % 12)
            let bytes = (0..<length).map { _ in
                interesting[Int(generator.next() % UInt64(interesting.count))]
            }
            let offset = bytes.withUnsafeBufferPointer { UTF8Validation.firstInvalidOffset($0) }
            let valid = String(validating: bytes, as: UTF8.self) != nil
            #expect((offset == nil) == valid, "\(bytes)")
            if let offset {
                invalid += 1
                // Everything before the reported offset is valid on its own.
                #expect(
                    String(validating: bytes[..<offset], as: UTF8.self) != nil,
                    "\(bytes) at \(offset)")
            }
        }
        #expect(invalid > 1000)
        // Long ASCII runs take the eight-bytes-at-a-time path; the error after them is found.
        let long =
            Array(repeating: UInt8(0x61), count: 100) + [0xC3, 0xA9]
            + Array(repeating: 0x62, count: 17) + [0x80]
        #expect(long.withUnsafeBufferPointer { UTF8Validation.firstInvalidOffset($0) } == 119)
    }

    @Test func linesAreSplitAtLineFeeds() {
        func lines(_ text: String) -> [String] {
            var result: [String] = []
            var copy = text
            copy.withUTF8 {
                TextLines.forEachLine(in: $0) { _, line in
                    result.append(String(decoding: line, as: UTF8.self))
                }
            }
            return result
        }
        #expect(lines("a\nb\n") == ["a", "b"])
        #expect(lines("a\nb") == ["a", "b"])
        #expect(lines("\n\n") == ["", ""])
        #expect(lines("a\r\nb\r\n") == ["a", "b"])
        #expect(lines("a\rb\n") == ["a\rb"])
        #expect(lines("") == [])
    }

    @Test func partsForThreadsNeverCutALine() {
        var generator = SplitMix64(seed: 3)
        for _ in 0..<200 {
            let bytes = (0..<Int(generator.next() % 300)).map { _ in
                generator.next() % 5 == 0 ? UInt8(0x0A) : 0x61
            }
            for parts in [1, 2, 3, 8] {
                let ranges = bytes.withUnsafeBufferPointer {
                    TextLines.splitAtLineBoundaries($0, parts: parts)
                }
                #expect(ranges.flatMap { bytes[$0] } == bytes)
                #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
                #expect(ranges.dropLast().allSatisfy { !$0.isEmpty && bytes[$0.upperBound - 1] == 0x0A })
                #expect(ranges.count <= parts)
            }
        }
    }

    @Test func chunksEndOnLineBoundaries() throws {
        let folder = try TemporaryFolder()
        let file = folder.file("text.txt")
        var text = ""
        for i in 0..<500 { text += String(repeating: "x", count: i % 23) + "\(i)\n" }
        text += "last line without a line feed"
        try text.write(to: file, atomically: true, encoding: .utf8)
        var lines: [String] = []
        var chunks = 0
        // A tiny chunk size forces lines across chunk ends and buffer growth.
        try TextLines.forEachChunk(ofFile: file, chunkSize: 16) { chunk in
            chunks += 1
            if chunks < 3 { #expect(chunk.last == 0x0A) }
            TextLines.forEachLine(in: chunk) { _, line in
                lines.append(String(decoding: line, as: UTF8.self))
            }
        }
        #expect(
            lines == text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init))
        #expect(chunks > 10)
        #expect(throws: TokenizerError.self) {
            try TextLines.forEachChunk(ofFile: folder.file("missing.txt")) { _ in }
        }
    }
}
