import Foundation

/// What one token is, which decides the reported metric.
public enum TokenUnit: String, Sendable, Codable {
    /// Bytes: bits per character (bpc).
    case bytes
    /// Subword or word tokens: perplexity per token.
    case tokens
}

/// A tokenised corpus with its three splits.
public struct Corpus: Sendable {
    /// Human-readable description (source file, vocabulary).
    public let name: String
    public let unit: TokenUnit
    public let vocabularySize: Int
    public let train: TokenSequence
    public let valid: TokenSequence
    public let test: TokenSequence
    /// A fingerprint of the data and vocabulary, stored in checkpoints so that evaluation on
    /// different data is caught.
    public let fingerprint: String
    /// For byte corpora, the byte value of each id.
    public let byteVocabulary: ByteVocabulary?

    public init(
        name: String, unit: TokenUnit, vocabularySize: Int, train: TokenSequence,
        valid: TokenSequence, test: TokenSequence, fingerprint: String,
        byteVocabulary: ByteVocabulary? = nil
    ) {
        self.name = name
        self.unit = unit
        self.vocabularySize = vocabularySize
        self.train = train
        self.valid = valid
        self.test = test
        self.fingerprint = fingerprint
        self.byteVocabulary = byteVocabulary
    }

    public func split(_ split: Split) -> TokenSequence {
        switch split {
        case .train: train
        case .valid: valid
        case .test: test
        }
    }
}

/// The three standard splits.
public enum Split: String, Sendable, Codable, CaseIterable {
    case train, valid, test
}

/// FNV-1a 64-bit, for cheap fingerprints of vocabularies and files (not cryptographic).
public struct FNV1a: Sendable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    public init() {}
    public mutating func add(_ bytes: UnsafeRawBufferPointer) {
        for byte in bytes {
            value ^= UInt64(byte)
            value = value &* 0x0000_0100_0000_01b3
        }
    }
    public mutating func add(_ string: String) {
        var s = string
        s.withUTF8 { add(UnsafeRawBufferPointer($0)) }
    }
    public var hex: String { String(value, radix: 16, uppercase: false).leftPadded(to: 16) }
}

extension String {
    func leftPadded(to length: Int) -> String {
        count >= length ? self : String(repeating: "0", count: length - count) + self
    }
}
