// The BPE trainer: a hand-checked merge sequence, sentencepiece's conventions, the
// "too many pieces" error, and the lmtrain-trained fixture model checked against Python.

import Foundation
import Testing

@testable import Tokenizers

@Suite struct BPETrainerTests {
    /// Sennrich et al.'s example. Normalised words and counts: ▁low 5, ▁lower 2, ▁newest 6,
    /// ▁widest 3. Worked by hand (ties: shorter piece, then smaller UTF-8; "▁" is E2 96 81 so
    /// it sorts after ASCII):
    ///   1 es (e,s 9 = s,t 9; "es" < "st")   2 est (9)
    ///   3 lo (▁l, lo, ow all 7; "lo" < "ow" < "▁l")   4 low (low = ▁lo in length; "low" < "▁lo")
    ///   5 ▁low (7)   6 ew (▁n, ne, ew 6; "ew" smallest)   7 ▁n (2 chars beats new, ewest)
    ///   8 ▁new   9 ▁newest   10 id (▁w, wi, id 3)   11 ▁w   12 ▁wid   13 ▁widest
    ///   14 er (2; shorter than ▁lowe)   15 ▁lower — then no pair is left.
    /// Characters by count (ties by code point): e 17, w 16, ▁ 16, s 9, t 9, l 7, o 7, n 6,
    /// d 3, i 3, r 2. Python sentencepiece gives this same vocabulary.
    static let sennrich = [
        "low low low low low", "lower lower", "newest newest newest newest newest newest",
        "widest widest widest",
    ]
    static let sennrichMerges = [
        "es", "est", "lo", "low", "▁low", "ew", "▁n", "▁new", "▁newest", "id", "▁w", "▁wid",
        "▁widest", "er", "▁lower",
    ]
    static let sennrichCharacters = ["e", "w", "▁", "s", "t", "l", "o", "n", "d", "i", "r"]

    @Test func handCheckedMergeOrder() throws {
        let tokenizer = try SentencePieceBPE.train(
            lines: Self.sennrich, vocabularySize: 29, normalization: .identity)
        let pieces = tokenizer.model.pieces
        #expect(
            pieces.map(\.piece) == ["<unk>", "<s>", "</s>"] + Self.sennrichMerges
                + Self.sennrichCharacters)
        #expect(
            pieces[0].type == .unknown && pieces[1].type == .control && pieces[2].type == .control)
        #expect(pieces[3...].allSatisfy { $0.type == .normal })
        #expect(pieces[0..<3].allSatisfy { $0.score == 0 })
        // Score = -index over merges then characters; the first is -0.0 as sentencepiece writes it.
        #expect(pieces[3...].enumerated().allSatisfy { $0.element.score == -Float($0.offset) })
        #expect(pieces[3].score.sign == .minus)
        // "lowest": es, est, lo, low, then ▁ + low → ▁low; "lowest" is not a piece.
        #expect(
            try tokenizer.encode("lowest").map { tokenizer.token(for: $0)! } == ["▁low", "est"])
    }

    @Test func fewerPiecesStopEarlierInTheSameOrder() throws {
        let tokenizer = try SentencePieceBPE.train(
            lines: Self.sennrich, vocabularySize: 19, normalization: .identity)
        #expect(
            tokenizer.model.pieces.map(\.piece) == ["<unk>", "<s>", "</s>"]
                + Self.sennrichMerges.prefix(5) + Self.sennrichCharacters)
    }

    @Test func morePiecesThanTheCorpusSupportsIsAnError() throws {
        #expect(throws: TokenizerError.self) {
            try SentencePieceBPE.train(
                lines: Self.sennrich, vocabularySize: 30, normalization: .identity)
        }
        do {
            _ = try SentencePieceBPE.train(
                lines: Self.sennrich, vocabularySize: 30, normalization: .identity)
        } catch {
            #expect("\(error)".contains("more than this corpus supports"))
            #expect("\(error)".contains("at most 29 pieces"))
        }
        // 3 meta pieces + 11 characters do not fit in 13.
        #expect(throws: TokenizerError.self) {
            try SentencePieceBPE.train(
                lines: Self.sennrich, vocabularySize: 13, normalization: .identity)
        }
        #expect(throws: TokenizerError.self) {
            try SentencePieceBPE.train(
                lines: [String](), vocabularySize: 100, normalization: .identity)
        }
    }

    @Test func splitDigitsKeepsDigitsAlone() throws {
        let lines = Array(repeating: "2024 1999 year 2024 x2 2x", count: 20)
        // All 16 merges this text allows; none involves a digit.
        let split = try SentencePieceBPE.train(
            lines: lines, vocabularySize: 19, normalization: .identity)
        for piece in split.model.pieces where piece.piece.unicodeScalars.count > 1 {
            let hasDigit = piece.piece.contains { $0.isNumber }
            #expect(!hasDigit, "\(piece.piece)")
        }
        // Without split_digits the digits merge into numbers (same script rules otherwise).
        var options = SentencePieceBPE.TrainingOptions(
            vocabularySize: 27, splitDigits: false, normalization: .identity)
        options.splitByNumber = true
        var trainer = try SentencePieceBPE.Trainer(options: options)
        for line in lines { trainer.add(line[...]) }
        let merged = try trainer.makeTokenizer()
        #expect(merged.model.pieces.contains { $0.piece == "▁2024" })
        #expect(merged.model.pieces.contains { $0.piece == "▁1999" })
        // Digits are Common script, letters Latin: "x2" never becomes a piece.
        #expect(
            !merged.model.pieces.contains { $0.piece.contains("x2") || $0.piece.contains("2x") })
    }

    @Test func piecesFollowSentencePieceConventions() throws {
        var lines: [String] = []
        for i in 0..<300 {
            lines.append(
                "the quick brown fox jumps over the lazy dog number \(i) , Καλημέρα κόσμε ; naïve café"
            )
        }
        lines.append("supercalifragilisticexpialidocious supercalifragilisticexpialidocious")
        let tokenizer = try SentencePieceBPE.train(
            lines: lines, vocabularySize: 120, normalization: .identity)
        let pieces = tokenizer.model.pieces
        #expect(pieces.count == 120)
        for piece in pieces[3...] {
            let scalars = Array(piece.piece.unicodeScalars)
            #expect(scalars.count <= 16, "\(piece.piece) is longer than 16 characters")
            // U+2581 only as the first character.
            #expect(!scalars.dropFirst().contains("\u{2581}"), "\(piece.piece)")
            let hasGreek = scalars.contains { (0x370...0x3FF).contains($0.value) }
            let hasLatin = scalars.contains { $0.properties.isAlphabetic && $0.value < 0x250 }
            #expect(!(hasGreek && hasLatin), "\(piece.piece) mixes scripts")
            let hasPunctuation = scalars.contains { ",;".unicodeScalars.contains($0) }
            #expect(
                !(hasPunctuation && (hasGreek || hasLatin)),
                "\(piece.piece) mixes Common and a script")
        }
        // Merged pieces first, then single characters.
        let isSingle = pieces[3...].map { $0.piece.unicodeScalars.count == 1 }
        let firstSingle = try #require(isSingle.firstIndex(of: true))
        #expect(isSingle[firstSingle...].allSatisfy { $0 })
        #expect(isSingle[..<firstSingle].allSatisfy { !$0 })
        #expect(firstSingle > 0)
    }

    @Test func metaPiecesInTheTextDoNotBecomePieces() throws {
        let lines = Array(repeating: "a <unk> b <s> c </s> d", count: 50)
        let tokenizer = try SentencePieceBPE.train(
            lines: lines, vocabularySize: 12, normalization: .identity)
        for piece in tokenizer.model.pieces[3...] {
            #expect(!piece.piece.contains("<") && !piece.piece.contains(">"), "\(piece.piece)")
        }
    }

    @Test func rareCharactersAreLeftOutByCoverage() throws {
        // ▁ 4001, a 4000, b 4000, z 1 of 12,002 characters: 12,001 / 12,002 = 0.99992 is
        // covered before z, so z is not a piece and encodes as <unk>. Merges: "ab", "▁ab".
        let lines = Array(repeating: "ab ab ab ab", count: 1000) + ["z"]
        let tokenizer = try SentencePieceBPE.train(
            lines: lines, vocabularySize: 8, normalization: .identity)
        #expect(
            tokenizer.model.pieces.map(\.piece) == [
                "<unk>", "<s>", "</s>", "ab", "▁ab", "▁", "a", "b",
            ])
        #expect(try tokenizer.encode("z") == [tokenizer.id(forPiece: "▁"), tokenizer.unknownID])
        #expect(throws: TokenizerError.self) {
            try SentencePieceBPE.train(lines: lines, vocabularySize: 9, normalization: .identity)
        }
    }

    @Test func trainingFromFileMatchesTrainingFromLines() throws {
        let folder = try TemporaryFolder()
        let file = folder.file("corpus.txt")
        var text = ""
        for i in 0..<2000 {
            text += "line \(i % 37) of the corpus with words w\(i % 11) and more\n"
        }
        try text.write(to: file, atomically: true, encoding: .utf8)
        let options = SentencePieceBPE.TrainingOptions(vocabularySize: 58, normalization: .identity)
        let fromFile = try SentencePieceBPE.train(
            corpusFile: file, options: options, threadCount: 2)
        let fromLines = try SentencePieceBPE.train(
            lines: text.split(separator: "\n"), vocabularySize: 58, normalization: .identity)
        #expect(fromFile.model.pieces == fromLines.model.pieces)
        #expect(fromFile.model.trainerSpec.input == [file.path])
    }

    @Test func invalidUTF8InTheCorpusNamesLineAndByte() throws {
        let folder = try TemporaryFolder()
        let file = folder.file("bad.txt")
        var bytes = Array("good line\nsecond line\nthird ".utf8)
        bytes += [0xC3, 0x28]  // a lead byte without its continuation
        bytes += Array(" line\n".utf8)
        try Data(bytes).write(to: file)
        var trainer = try SentencePieceBPE.Trainer(
            options: .init(vocabularySize: 10, normalization: .identity))
        #expect(throws: TokenizerError.invalidUTF8(file: file.path, line: 3, byteOffset: 6)) {
            try trainer.add(contentsOf: file)
        }
    }

    /// The lmtrain-trained fixture model: Python sentencepiece loaded it and recorded its ids
    /// for every test line (Scripts/fixtures/make-sentencepiece-fixtures.py --lmtrain-model).
    @Test func lmtrainModelEncodesLikePythonSentencePiece() throws {
        let tokenizer = try SentencePieceBPE(contentsOf: Fixtures.url("lmtrain-bpe-1000.model"))
        let expected = try Fixtures.lmtrainCases()
        #expect(tokenizer.model.normalizerSpec.name == "nmt_nfkc")
        #expect(!(tokenizer.model.normalizerSpec.precompiledCharsMap ?? []).isEmpty)
        for (line, recorded) in zip(expected.lines, expected.cases) {
            let ids = try tokenizer.encode(line)
            #expect(ids == recorded.ids, "\(line.debugDescription)")
            #expect(tokenizer.decode(ids) == recorded.decoded, "\(line.debugDescription)")
        }
    }

    /// Training on the fixture corpus reproduces the committed lmtrain model bit for bit.
    @Test(.enabled(if: SharedData.isAvailable, "needs ../shared/data"))
    func retrainingReproducesTheFixtureModel() throws {
        let trained = try SentencePieceBPE.train(
            lines: SharedData.fixtureCorpus(), vocabularySize: 1000)
        let committed = try SentencePieceModelProto(
            serialized: Fixtures.data("lmtrain-bpe-1000.model"))
        #expect(trained.model.pieces == committed.pieces)
        #expect(trained.model.trainerSpec == committed.trainerSpec)
        // The charsmap comes from the toolchain's Unicode data; a newer toolchain may change
        // it, and then the fixtures must be regenerated (see the fixture script).
        #expect(
            trained.model.normalizerSpec == committed.normalizerSpec,
            "nmt_nfkc charsmap differs from the fixture: regenerate the fixtures")
        #expect(trained.model.serialized() == committed.serialized())
    }

    /// Rewrites Fixtures/lmtrain-bpe-1000.model; run with LMTRAIN_REGENERATE_FIXTURES=1.
    @Test(
        .enabled(
            if: ProcessInfo.processInfo.environment["LMTRAIN_REGENERATE_FIXTURES"] == "1",
            "regenerates fixtures"),
        .enabled(if: SharedData.isAvailable, "needs ../shared/data"))
    func regenerateLmtrainModel() throws {
        let trained = try SentencePieceBPE.train(
            lines: SharedData.fixtureCorpus(), vocabularySize: 1000)
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/lmtrain-bpe-1000.model")
        try trained.save(to: source)
    }
}
