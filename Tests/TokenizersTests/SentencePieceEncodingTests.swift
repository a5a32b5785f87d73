// lmtrain's SentencePiece encoding and decoding against what Python sentencepiece recorded
// for the fixture models, the fast encoder against the naive one, and round trips.

import Foundation
import Testing

@testable import Tokenizers

@Suite struct SentencePieceEncodingTests {
    @Test(arguments: Fixtures.pythonModels)
    func idsMatchPythonSentencePiece(model name: String) throws {
        let tokenizer = try SentencePieceBPE(contentsOf: Fixtures.url(name))
        let fixture = try Fixtures.cases()
        let expected = try #require(fixture.models[name]).cases
        #expect(expected.count == fixture.lines.count)
        for (line, recorded) in zip(fixture.lines, expected) {
            let ids = try tokenizer.encode(line)
            #expect(ids == recorded.ids, "\(name): \(line.debugDescription)")
            // Pieces too (Python merges a run of unknown characters into one <unk> piece).
            if !tokenizer.byteFallback {
                let pieces = ids.map { tokenizer.token(for: $0)! }
                let expectedPieces = zip(recorded.pieces, recorded.ids).map {
                    $1 == tokenizer.unknownID ? "<unk>" : $0
                }
                #expect(pieces == expectedPieces, "\(name): \(line.debugDescription)")
            }
        }
    }

    /// Pieces of type UNUSED are merged through and then split back into the pair that
    /// formed them; Python encoded with the same pieces marked (see the fixture script).
    @Test func unusedPiecesAreSplitLikePythonSentencePiece() throws {
        var model = try SentencePieceModelProto(serialized: Fixtures.data("python-bpe-1000.model"))
        for i in model.pieces.indices
        where i % 3 == 0 && model.pieces[i].type == .normal
            && model.pieces[i].piece.unicodeScalars.count > 1
        {
            model.pieces[i].type = .unused
            model.pieces[i].hasType = true
        }
        let tokenizer = try SentencePieceBPE(model: model)
        #expect(tokenizer.hasUnusedPieces && !tokenizer.wordsAreIndependent)
        let fixture = try Fixtures.cases()
        let expected = try #require(fixture.models["python-bpe-1000.model:unused"]).cases
        for (line, recorded) in zip(fixture.lines, expected) {
            let ids = try tokenizer.encode(line)
            #expect(ids == recorded.ids, "\(line.debugDescription)")
            #expect(ids.allSatisfy { model.pieces[Int($0)].type != .unused })
            #expect(tokenizer.encodeNaive(line) == ids, "\(line.debugDescription)")
        }
    }

    @Test(arguments: Fixtures.pythonModels)
    func decodingMatchesPythonSentencePiece(model name: String) throws {
        let tokenizer = try SentencePieceBPE(contentsOf: Fixtures.url(name))
        let fixture = try Fixtures.cases()
        for (line, recorded) in zip(fixture.lines, try #require(fixture.models[name]).cases) {
            #expect(
                tokenizer.decode(recorded.ids) == recorded.decoded, "\(name): \(line.debugDescription)")
        }
    }

    /// The normalised text is what Python's pieces concatenate to.
    @Test(arguments: Fixtures.pythonModels)
    func normalisationMatchesPythonSentencePiece(model name: String) throws {
        let tokenizer = try SentencePieceBPE(contentsOf: Fixtures.url(name))
        guard !tokenizer.byteFallback else { return }  // byte pieces do not spell the text
        let fixture = try Fixtures.cases()
        for (line, recorded) in zip(fixture.lines, try #require(fixture.models[name]).cases) {
            #expect(
                tokenizer.normalize(line) == recorded.pieces.joined(),
                "\(name): \(line.debugDescription)")
        }
    }

    @Test func fixtureLinesExerciseTheInterestingPaths() throws {
        let fixture = try Fixtures.cases()
        let nmt = try #require(fixture.models["python-bpe-1000.model"]).cases
        let unknown = Int32(0)
        // Some lines contain unknown characters, merged into one <unk> per run.
        #expect(nmt.contains { $0.ids.contains(unknown) })
        #expect(
            nmt.allSatisfy { recorded in
                zip(recorded.ids, recorded.ids.dropFirst()).allSatisfy {
                    !($0 == unknown && $1 == unknown)
                }
            })
        // The byte-fallback model produced byte pieces; the identity model has pieces with
        // inner spaces, so it takes the whole-line path.
        let bytes = try #require(fixture.models["python-bpe-nfkc-bytes.model"]).cases
        #expect(bytes.contains { $0.pieces.contains { $0.hasPrefix("<0x") } })
        let identity = try SentencePieceBPE(contentsOf: Fixtures.url("python-bpe-identity.model"))
        #expect(!identity.wordsAreIndependent)
        #expect(
            try SentencePieceBPE(contentsOf: Fixtures.url("python-bpe-1000.model"))
                .wordsAreIndependent)
    }

    /// The cached word-by-word encoder and the heap-based merger against the plain O(n²)
    /// whole-line reference, on the fixture lines and (when present) WikiText-2 raw text.
    @Test(arguments: Fixtures.pythonModels)
    func fastEncoderAgreesWithNaiveEncoder(model name: String) throws {
        let tokenizer = try SentencePieceBPE(contentsOf: Fixtures.url(name))
        var lines = try Fixtures.cases().lines
        if SharedData.isAvailable {
            // Real text, cut to 400 characters to keep the O(n²) reference quick in debug builds.
            lines += try SharedData.lines("wikitext-2-raw/wiki.test.raw", first: 300).map {
                String($0.prefix(400))
            }
        }
        let reference = lines.map { tokenizer.encodeNaive($0) }
        var encoder = tokenizer.makeLineEncoder()
        for pass in 0..<2 {  // the second pass runs from the word cache
            for (line, expected) in zip(lines, reference) {
                var ids: [Int32] = []
                var copy = line
                try copy.withUTF8 { try encoder.encode(utf8Line: $0, appendingTo: &ids) }
                #expect(ids == expected, "pass \(pass): \(line.debugDescription)")
            }
        }
    }

    /// decode(encode(x)) gives back the normalised text (sentencepiece's documented change:
    /// NFKC and whitespace collapsed), for every line of WikiText-2 raw test.
    @Test(.enabled(if: SharedData.isAvailable, "needs ../shared/data"))
    func decodeInvertsEncodeOnWikiTextRaw() throws {
        let tokenizer = try SentencePieceBPE(
            contentsOf: Fixtures.url("python-bpe-nfkc-bytes.model"))
        let reference = try SentencePieceBPE(contentsOf: Fixtures.url("python-bpe-1000.model"))
        let text = try String(
            contentsOf: SharedData.url("wikitext-2-raw/wiki.test.raw"), encoding: .utf8)
        var checked = 0
        var linesWithUnknown = 0
        // U+2581 → space at the scalar level (a space symbol before a combining mark is one
        // Character, which String replacement would not see), then drop the dummy prefix.
        func detokenized(_ normalized: String) -> String {
            var scalars = String.UnicodeScalarView()
            for scalar in normalized.unicodeScalars {
                scalars.append(scalar == "\u{2581}" ? " " : scalar)
            }
            let text = String(scalars)
            return text.hasPrefix(" ") ? String(text.unicodeScalars.dropFirst()) : text
        }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {  // LF only
            let line = String(line)
            // Byte fallback: every character survives, so decoding gives the normalised text
            // (this model keeps extra spaces: remove_extra_whitespaces=false).
            #expect(
                tokenizer.decode(try tokenizer.encode(line))
                    == detokenized(tokenizer.normalize(line)), "\(line.debugDescription)")
            // Without byte fallback: the same, except where characters were unknown.
            let ids = try reference.encode(line)
            if ids.contains(reference.unknownID) {
                linesWithUnknown += 1
            } else {
                #expect(
                    reference.decode(ids) == detokenized(reference.normalize(line)),
                    "\(line.debugDescription)")
            }
            checked += 1
        }
        #expect(checked == 4359)  // 4,358 lines and the empty string after the final LF
        #expect(checked - linesWithUnknown > 3000)
    }

    @Test func invalidUTF8IsAnErrorWithItsOffset() throws {
        let tokenizer = try SentencePieceBPE(contentsOf: Fixtures.url("python-bpe-1000.model"))
        let bad: [[UInt8]: Int] = [
            Array("abc".utf8) + [0xFF]: 3,
            Array("é".utf8) + [0xC3]: 2,  // truncated sequence at the end
            [0x61, 0xE0, 0x80, 0x80]: 1,  // overlong
            [0xED, 0xA0, 0x80]: 0,  // UTF-16 surrogate
            [0xF4, 0x90, 0x80, 0x80]: 0,  // above U+10FFFF
        ]
        for (bytes, offset) in bad {
            #expect(throws: TokenizerError.invalidUTF8(file: nil, line: nil, byteOffset: offset)) {
                try tokenizer.encode(utf8Line: bytes)
            }
        }
        #expect(try tokenizer.encode(utf8Line: Array("héllo".utf8)) == tokenizer.encode("héllo"))
        let message = "\(TokenizerError.invalidUTF8(file: "x.txt", line: 12, byteOffset: 3))"
        #expect(
            message
                == "invalid UTF-8 in x.txt at line 12, byte 3 of the line: re-encode the text as UTF-8"
        )
    }

    @Test func encodingAFileMatchesEncodingItsLines() throws {
        let tokenizer = try SentencePieceBPE(contentsOf: Fixtures.url("python-bpe-1000.model"))
        let lines = try Fixtures.cases().lines.filter { !$0.contains("\r") && !$0.contains("\n") }
        let folder = try TemporaryFolder()
        let file = folder.file("lines.txt")
        try (lines.joined(separator: "\n") + "\n").write(
            to: file, atomically: true, encoding: .utf8)
        let perLine = try lines.flatMap { try tokenizer.encode($0) }
        for threads in [1, 2, 3] {
            let corpus = try tokenizer.encodeLines(ofFile: file, threadCount: threads)
            #expect(corpus.ids == perLine)
            #expect(corpus.lineCount == lines.count)
        }
        #expect(try tokenizer.encodeLines(lines).ids == perLine)
        // Bad bytes in line 3 of a file are reported with the file and the line.
        try Data(Array("one\ntwo\nth".utf8) + [0xFE] + Array("ree\n".utf8)).write(to: file)
        #expect(throws: TokenizerError.invalidUTF8(file: file.path, line: 3, byteOffset: 2)) {
            try tokenizer.encodeLines(ofFile: file, threadCount: 2)
        }
    }

    @Test func unknownPieceRunsBecomeOneUnknown() throws {
        let tokenizer = try SentencePieceBPE(contentsOf: Fixtures.url("python-bpe-1000.model"))
        // Three CJK characters the model lacks: one <unk> after the space piece.
        #expect(try tokenizer.encode("漢字漢") == [tokenizer.id(forPiece: "▁"), tokenizer.unknownID])
        #expect(tokenizer.decode([tokenizer.unknownID]) == " \u{2047} ")
        // Control pieces decode to nothing; out-of-range ids to the unknown surface.
        #expect(tokenizer.decode([1, 2]) == "")
        #expect(tokenizer.decode([5000]) == " \u{2047} ")
    }

    @Test func fingerprintTracksTheVocabulary() throws {
        let model = try SentencePieceModelProto(
            serialized: Fixtures.data("python-bpe-identity.model"))
        let base = try SentencePieceBPE(model: model)
        #expect(base.vocabularyFingerprint.count == 16)
        #expect(
            try SentencePieceBPE(model: model).vocabularyFingerprint == base.vocabularyFingerprint)
        var rescored = model
        rescored.pieces[20].score -= 0.5
        #expect(
            try SentencePieceBPE(model: rescored).vocabularyFingerprint
                != base.vocabularyFingerprint)
        var renormalised = model
        renormalised.normalizerSpec.addDummyPrefix = true
        #expect(
            try SentencePieceBPE(model: renormalised).vocabularyFingerprint
                != base.vocabularyFingerprint)
        let other = try SentencePieceBPE(contentsOf: Fixtures.url("python-bpe-1000.model"))
        #expect(other.vocabularyFingerprint != base.vocabularyFingerprint)
        #expect(other.vocabularySize == 1000)
        #expect(other.displayName.contains("1000"))
    }
}
