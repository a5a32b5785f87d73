import Accounting
import Configuration
import Datasets
import Foundation
import Tokenizers
import Training

/// The readers of files lmtrain takes from users, each as a function of a file's bytes. A
/// thrown error is a correct answer to a bad file; a trap or a crash is a finding.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// Checkpoints and step dumps (`SafeTensors.File`, then `Checkpoint.load`'s config).
    case safetensors
    /// ZIP archives of the corpora: the directory, then every member inflated and checked.
    case zip
    /// SentencePiece `.model` protobufs: parsed, loaded as a tokenizer, used on a line.
    case sentencepiece
    /// Token caches: the header, then the file against it (length, ids' checksum).
    case tokenCache = "token-cache"
    /// `--config` JSON: resolved over a preset, then accounted; and decoded as a whole
    /// config.json.
    case config

    /// Feeds `bytes` to the reader. Readers that take a path read them from `scratch`.
    public func run(_ bytes: [UInt8], scratch: URL) {
        switch self {
        case .safetensors: Self.safetensors(bytes, scratch)
        case .zip: Self.zip(bytes, scratch)
        case .sentencepiece: Self.sentencepiece(bytes)
        case .tokenCache: Self.tokenCache(bytes, scratch)
        case .config: Self.config(bytes, scratch)
        }
    }

    static func write(_ bytes: [UInt8], _ url: URL) -> Bool {
        (try? Data(bytes).write(to: url)) != nil
    }

    static func safetensors(_ bytes: [UInt8], _ url: URL) {
        guard write(bytes, url), let file = try? SafeTensors.File(url: url) else { return }
        for (name, tensor) in file.tensors where elements(tensor.shape) <= 1 << 20 {
            switch tensor.dtype {
            case .f32: _ = try? file.array(name, dtype: .f32, as: Float.self)
            case .f64: _ = try? file.array(name, dtype: .f64, as: Double.self)
            case .i32: _ = try? file.array(name, dtype: .i32, as: Int32.self)
            case .i64: _ = try? file.array(name, dtype: .i64, as: Int64.self)
            case .u64: _ = try? file.array(name, dtype: .u64, as: UInt64.self)
            case .u8: _ = try? file.array(name, dtype: .u8, as: UInt8.self)
            }
        }
        _ = try? Checkpoint.load(url)
    }

    /// Elements of `shape`, Int.max when the product overflows (the harness must not trap).
    static func elements(_ shape: [Int]) -> Int {
        shape.reduce(1) { product, size in
            let (result, overflow) = product.multipliedReportingOverflow(by: size)
            return overflow || size < 0 ? .max : result
        }
    }

    static func zip(_ bytes: [UInt8], _ url: URL) {
        guard write(bytes, url), let archive = try? ZipArchive(url: url) else { return }
        for member in archive.members.prefix(8) {
            _ = try? archive.stream(member, chunkSize: 4096) { _ in }
        }
    }

    /// A line with spaces, letters outside ASCII and a character NFKC changes.
    static let sampleLine = Array(" The café’s ﬁrst naïve 日本 line,  2 @,@ 000 ".utf8)

    static func sentencepiece(_ bytes: [UInt8]) {
        guard let proto = try? SentencePieceModelProto(serialized: bytes),
            let tokenizer = try? SentencePieceBPE(model: proto)
        else { return }
        var encoder = tokenizer.makeLineEncoder()
        var ids: [Int32] = []
        _ = sampleLine.withUnsafeBufferPointer { try? encoder.encode(utf8Line: $0, appendingTo: &ids) }
        _ = tokenizer.decode(ids)
    }

    static func tokenCache(_ bytes: [UInt8], _ url: URL) {
        guard write(TokenCacheSeal.seal(bytes), url), let opened = try? TokenCache.check(url) else { return }
        var sum = 0
        for i in 0..<min(opened.tokens.count, 1 << 16) { sum &+= Int(opened.tokens[i]) }
        _ = sum
    }

    static func config(_ bytes: [UInt8], _ url: URL) {
        guard write(bytes, url) else { return }
        if let (config, _) = try? ConfigResolution.resolve(preset: Preset.quickstart.config, configFile: url) {
            _ = try? Accountant.account(config)
        }
        if let object = try? ConfigResolution.readObject(url),
            let config = try? ConfigResolution.decode(object, source: url.path), (try? config.validate()) != nil,
            config.data.task == nil
        {
            _ = try? Accountant.account(config)
        }
    }
}
