// The protocol-buffer wire format and the SentencePiece ModelProto on top of it.

import Foundation
import Testing

@testable import Tokenizers

@Suite struct ProtobufTests {
    @Test func varintsMatchTheWireFormatSpecification() throws {
        // Examples from the protobuf encoding guide: 1 → 01, 150 → 96 01, 300 → AC 02.
        var writer = ProtobufWriter()
        for value: UInt64 in [1, 150, 300] { writer.writeVarint(value) }
        #expect(writer.bytes == [0x01, 0x96, 0x01, 0xAC, 0x02])
        // Field 1 = 150 is the guide's "08 96 01".
        #expect(
            ProtobufMessage(fields: [.init(number: 1, value: .varint(150))]).serialized() == [
                0x08, 0x96, 0x01,
            ])
        // A negative int32 is sign-extended: -1 takes ten bytes.
        var negative = ProtobufMessage()
        negative.set(43, int32: -1)
        #expect(negative.serialized() == [0xD8, 0x02] + Array(repeating: 0xFF, count: 9) + [0x01])
        #expect(try ProtobufMessage(serialized: negative.serialized()).int32(43) == -1)
    }

    @Test func everyWireTypeRoundTrips() throws {
        var message = ProtobufMessage()
        message.set(1, string: "héllo ▁")
        message.set(2, float: -0.0)
        message.set(3, int32: Int32.min)
        message.set(4, uint64: UInt64.max)
        message.set(5, bool: true)
        message.set(6, float: .nan)
        message.fields.append(.init(number: 7, value: .fixed64(0x0102_0304_0506_0708)))
        // The largest field number, and a group holding field 1 = 5.
        message.fields.append(.init(number: 536_870_911, value: .lengthDelimited([0, 255, 1])))
        message.fields.append(.init(number: 9, value: .group([0x08, 0x05])))
        message.set(10, strings: ["a", "", "c"])
        let bytes = message.serialized()
        let parsed = try ProtobufMessage(serialized: bytes)
        #expect(parsed == message)
        #expect(parsed.serialized() == bytes)
        #expect(parsed.string(1) == "héllo ▁")
        #expect(parsed.float(2)!.bitPattern == (-0.0 as Float).bitPattern)
        #expect(parsed.int32(3) == Int32.min)
        #expect(parsed.varint(4) == UInt64.max)
        #expect(parsed.bool(5) == true)
        #expect(parsed.float(6)!.isNaN)
        #expect(parsed.strings(10) == ["a", "", "c"])
        // Serialisation orders fields by number, keeping repeated fields in order.
        #expect(
            parsed.canonicalFields.map(\.number) == [
                1, 2, 3, 4, 5, 6, 7, 9, 10, 10, 10, 536_870_911,
            ])
    }

    @Test(arguments: [
        ([0x08] as [UInt8], "truncated varint"),
        ([0x08, 0x80], "truncated varint"),
        ([0x0A, 0x05, 0x61], "claims 5 bytes"),
        ([0x0D, 0x00, 0x00], "truncated 32-bit"),
        ([0x09, 0x00], "truncated 64-bit"),
        ([0x0B, 0x08, 0x01], "group 1 is not closed"),
        ([0x0F], "unsupported wire type 7"),
        ([0x00], "invalid field number 0"),
        ([0x08] + Array(repeating: 0xFF, count: 9) + [0x7F], "longer than 64 bits"),
    ])
    func malformedBytesAreRejected(bytes: [UInt8], reason: String) {
        do {
            _ = try ProtobufMessage(serialized: bytes)
            Issue.record("accepted \(bytes)")
        } catch {
            #expect(error.reason.contains(reason), "\(error.reason)")
        }
    }

    @Test(arguments: Fixtures.pythonModels)
    func pythonModelsRoundTripByteForByte(model name: String) throws {
        let bytes = try Fixtures.data(name)
        let model = try SentencePieceModelProto(serialized: bytes)
        // Python's protobuf wrote these files; writing fields in number order reproduces them.
        #expect(model.serialized() == bytes)
        let folder = try TemporaryFolder()
        let saved = folder.file("saved.model")
        try SentencePieceBPE(model: model).save(to: saved)
        let reloaded = try SentencePieceModelProto(contentsOf: saved)
        #expect(reloaded == model)
        #expect(try SentencePieceBPE(contentsOf: saved).model == model)
    }

    @Test func pythonModelFieldsReadAsWritten() throws {
        let model = try SentencePieceModelProto(serialized: Fixtures.data("python-bpe-1000.model"))
        #expect(model.pieces.count == 1000)
        #expect(model.pieces[0] == .init(piece: "<unk>", score: 0, type: .unknown))
        #expect(model.pieces[1].piece == "<s>" && model.pieces[1].type == .control)
        #expect(model.pieces[2].piece == "</s>" && model.pieces[2].type == .control)
        #expect(model.pieces[3].score.bitPattern == (-0.0 as Float).bitPattern)
        #expect(model.pieces[999].score == -996)
        #expect(model.trainerSpec.modelType == .bpe)
        #expect(model.trainerSpec.vocabSize == 1000)
        #expect(model.trainerSpec.splitDigits == true)
        #expect(model.trainerSpec.byteFallback == nil)  // absent: proto default false
        #expect(model.normalizerSpec.name == "nmt_nfkc")
        #expect((model.normalizerSpec.precompiledCharsMap ?? []).count > 100_000)
        #expect(model.normalizerSpec.addDummyPrefix == nil)
        let bytes = try SentencePieceModelProto(
            serialized: Fixtures.data("python-bpe-nfkc-bytes.model"))
        #expect(bytes.trainerSpec.byteFallback == true)
        #expect(bytes.trainerSpec.userDefinedSymbols == ["<sep>", "@@"])
        #expect(bytes.normalizerSpec.removeExtraWhitespaces == false)
        #expect(bytes.pieces.filter { $0.type == .byte }.count == 256)
    }

    @Test func unknownFieldsSurviveLoadAndSave() throws {
        var model = try SentencePieceModelProto(
            serialized: Fixtures.data("python-bpe-identity.model"))
        // A field this code does not know, at the top level, in a piece and in the trainer spec.
        var bytes = model.serialized()
        bytes += [0xC2, 0x0C, 0x03] + Array("new".utf8)  // field 200, length-delimited
        let extended = try SentencePieceModelProto(serialized: bytes)
        #expect(extended.serialized() == bytes)
        #expect(extended != model)
        model.trainerSpec.message.fields.append(.init(number: 99, value: .varint(7)))
        let reread = try SentencePieceModelProto(serialized: model.serialized())
        #expect(reread.trainerSpec.fields.contains { $0.number == 99 && $0.value == .varint(7) })
        // Still a working tokenizer.
        #expect(
            try SentencePieceBPE(model: extended).encode("hello")
                == SentencePieceBPE(model: model).encode("hello"))
    }

    @Test func truncatedModelFileGivesOneClearError() throws {
        let bytes = try Fixtures.data("python-bpe-1000.model")
        let folder = try TemporaryFolder()
        for length in [1, 7, bytes.count / 2, bytes.count - 1] {
            let file = folder.file("truncated-\(length).model")
            try Data(bytes[0..<length]).write(to: file)
            do {
                _ = try SentencePieceBPE(contentsOf: file)
                Issue.record("a model truncated to \(length) bytes loaded")
            } catch let error as TokenizerError {
                let message = "\(error)"
                #expect(
                    message.hasPrefix("\(file.path): not a valid SentencePiece model: "),
                    "\(message)")
                #expect(!message.contains("\n"))
                #expect(message.contains("truncated") || message.contains("claims"), "\(message)")
            }
        }
    }

    @Test func errorsInNestedMessagesNameTheFileOffset() throws {
        let first = SentencePieceModelProto.Piece(piece: "<unk>", score: 0, type: .unknown).serialized()
        let second: [UInt8] = [0x0A, 0x02, 0xC3, 0x28]  // piece text that is not UTF-8
        let bytes = [0x0A, UInt8(first.count)] + first + [0x0A, UInt8(second.count)] + second
        #expect(throws: ProtobufError(reason: "pieces[1].piece is not valid UTF-8", offset: first.count + 4)) {
            try SentencePieceModelProto(serialized: bytes)
        }
        // A truncated varint inside the second piece: its offset within the whole file.
        let truncated = [0x0A, UInt8(first.count)] + first + [0x0A, 0x02, 0x10, 0x80]
        #expect(throws: ProtobufError(reason: "in pieces[1]: truncated varint", offset: first.count + 5)) {
            try SentencePieceModelProto(serialized: truncated)
        }
    }

    @Test func semanticallyBrokenModelsAreRejected() throws {
        let good = try SentencePieceModelProto(
            serialized: Fixtures.data("python-bpe-identity.model"))
        var noUnknown = good
        noUnknown.pieces[0].type = .normal
        #expect(throws: TokenizerError.self) { try SentencePieceBPE(model: noUnknown) }
        var duplicate = good
        duplicate.pieces[10].piece = duplicate.pieces[11].piece
        #expect(throws: TokenizerError.self) { try SentencePieceBPE(model: duplicate) }
        var unigram = good
        unigram.trainerSpec.modelType = .unigram
        #expect(throws: TokenizerError.self) { try SentencePieceBPE(model: unigram) }
        var byteWithoutFallback = good
        byteWithoutFallback.pieces[5] = .init(piece: "<0x41>", score: 0, type: .byte)
        #expect(throws: TokenizerError.self) { try SentencePieceBPE(model: byteWithoutFallback) }
        // A wrong wire type for a known field is a format error, not a silent default.
        var wrongType = ProtobufMessage(fields: [.init(number: 4, value: .lengthDelimited([1]))])
        wrongType.set(3, int32: 2)
        let bytes = ProtobufMessage(fields: [
            .init(number: 2, value: .lengthDelimited(wrongType.serialized()))
        ]).serialized()
        #expect(throws: ProtobufError.self) { try SentencePieceModelProto(serialized: bytes) }
    }
}
