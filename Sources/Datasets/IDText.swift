// Text to ids and back with a SentencePiece model, in the line format of sentencepiece's
// command-line tools: `spm_encode --output_format=id` writes each input line as one line of
// space-separated ids (an empty line for a line without pieces), `spm_decode
// --input_format=id` reads such lines back into text. `lmtrain tokenize` is this.

import Foundation
import Tensor
import Tokenizers

#if canImport(Glibc)
import Glibc
#endif

/// Encodes text files to id lines and decodes id lines to text with a `.model` file.
public struct IDText: Sendable {
    let model: SentencePieceBPE
    /// The model file, for messages.
    public let modelURL: URL

    /// Loads a SentencePiece BPE model (lmtrain's or one trained by sentencepiece); a missing,
    /// truncated or foreign file gives one error line.
    public init(model url: URL) throws {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw DataError("--model \(url.path): no such file")
        }
        model = try SentencePieceBPE(contentsOf: url)
        modelURL = url
    }

    /// Number of pieces.
    public var vocabularySize: Int { model.vocabularySize }

    /// Where the text or ids come from.
    public enum Input: Sendable {
        /// A text file (read in chunks).
        case file(URL)
        /// Standard input (read in chunks until end of file).
        case standardInput

        var name: String {
            switch self {
            case .file(let url): url.path
            case .standardInput: "standard input"
            }
        }

        func forEachChunk(_ body: (UnsafeBufferPointer<UInt8>) throws -> Void) throws {
            switch self {
            case .file(let url): try TextSource(file: url).forEachChunk(chunkSize: 4 << 20, body)
            case .standardInput: try LineChunks.read(descriptor: STDIN_FILENO, name: name, body)
            }
        }
    }

    /// Writes one line of space-separated ids per input line to `write` (in blocks of about
    /// 1 MB). Lines are encoded on `parts` encoders; the output does not depend on `parts`.
    public func encode(
        input: Input, parts: Int = Threads.count,
        write: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        let engine = LineEncodingEngine(tokenizer: model, parts: max(1, parts), countWords: false, keepLineEnds: true)
        // The buffer lives only for this call.
        try withoutActuallyEscaping(write) { write in
            var output = OutputBuffer(write: write)
            var lines = 0
            try input.forEachChunk { chunk in
                let counted = try engine.encode(chunk, firstLine: lines, source: input.name)
                lines += counted.lines
                try engine.forEachPart { ids, lineEnds in
                    var start = 0
                    for end in lineEnds! {
                        for k in start..<end {
                            if k > start { try output.append(0x20) }
                            try output.append(decimal: ids[k])
                        }
                        try output.append(0x0A)
                        start = end
                    }
                }
            }
            try output.flush()
        }
    }

    /// Reads lines of space-separated ids and writes each line's decoded text and a line feed.
    public func decode(
        input: Input, write: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        try withoutActuallyEscaping(write) { write in
            var output = OutputBuffer(write: write)
            var lines = 0
            var ids: [Int32] = []
            let size = model.vocabularySize
            try input.forEachChunk { chunk in
                try TextLines.forEachLine(in: chunk) { _, line in
                    lines += 1
                    ids.removeAll(keepingCapacity: true)
                    var i = 0
                    while i < line.count {
                        let byte = line[i]
                        if byte == 0x20 || byte == 0x09 {
                            i += 1
                            continue
                        }
                        let start = i
                        var value = 0
                        while i < line.count, line[i] >= 0x30, line[i] <= 0x39, value < Int(Int32.max) {
                            value = value * 10 + Int(line[i] - 0x30)
                            i += 1
                        }
                        let isEnd = i == line.count || line[i] == 0x20 || line[i] == 0x09
                        guard i > start, isEnd else {
                            var end = i
                            while end < line.count && line[end] != 0x20 && line[end] != 0x09 { end += 1 }
                            let token = String(decoding: UnsafeBufferPointer(rebasing: line[start..<end]), as: UTF8.self)
                            throw DataError("\(input.name): line \(lines): '\(token)' is not an id; --decode reads lines of space-separated integer ids")
                        }
                        guard value < size else {
                            throw DataError("\(input.name): line \(lines): id \(value) is outside the vocabulary 0..<\(size) of \(modelURL.path)")
                        }
                        ids.append(Int32(value))
                    }
                    var text = model.decode(ids)
                    try text.withUTF8 { try output.append(contentsOf: UnsafeRawBufferPointer($0)) }
                    try output.append(0x0A)
                }
            }
            try output.flush()
        }
    }
}

/// Collects output bytes and hands them on in blocks of about 1 MB.
struct OutputBuffer {
    private var bytes: [UInt8] = []
    private let write: (UnsafeRawBufferPointer) throws -> Void
    private static let blockSize = 1 << 20

    init(write: @escaping (UnsafeRawBufferPointer) throws -> Void) {
        self.write = write
        bytes.reserveCapacity(Self.blockSize + 64)
    }

    mutating func append(_ byte: UInt8) throws {
        bytes.append(byte)
        if bytes.count >= Self.blockSize { try flush() }
    }

    mutating func append(contentsOf raw: UnsafeRawBufferPointer) throws {
        bytes.append(contentsOf: raw)
        if bytes.count >= Self.blockSize { try flush() }
    }

    /// A non-negative integer in decimal.
    mutating func append(decimal value: Int32) throws {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var v = UInt32(bitPattern: value)
        var n = 0
        withUnsafeMutableBytes(of: &digits) { d in
            repeat {
                d[n] = UInt8(v % 10) + 0x30
                v /= 10
                n += 1
            } while v > 0
            for k in stride(from: n - 1, through: 0, by: -1) { bytes.append(d[k]) }
        }
        if bytes.count >= Self.blockSize { try flush() }
    }

    mutating func flush() throws {
        guard !bytes.isEmpty else { return }
        try bytes.withUnsafeBytes { try write($0) }
        bytes.removeAll(keepingCapacity: true)
    }
}
