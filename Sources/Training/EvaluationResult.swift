import Foundation

/// One measure of an evaluation: bits per character, perplexity, accuracy...
public struct Metric: Sendable, Equatable, Codable {
    /// The key in metrics.jsonl and report.json (`bpc`, `perplexity`, `word_perplexity`).
    public var name: String
    public var value: Double
    /// How it is shown: "bpc", "ppl", "word ppl".
    public var label: String
    /// Decimals shown.
    public var decimals: Int

    public init(name: String, value: Double, label: String, decimals: Int) {
        self.name = name
        self.value = value
        self.label = label
        self.decimals = decimals
    }

    /// "bpc 1.2345".
    public var text: String { "\(label) " + String(format: "%.\(decimals)f", value) }
}

/// The loss of a model on one split, with the measures its task reports.
public struct EvaluationResult: Sendable, Equatable {
    public var split: String
    /// Positions scored.
    public var tokens: Int
    /// Mean cross-entropy in nats per scored position.
    public var loss: Double
    /// The task's measures, the headline one first.
    public var metrics: [Metric]
    /// The protocol's settings, e.g. `batch_size` and `memory_segments`.
    public var settings: [String: Int]

    public init(split: String, tokens: Int, loss: Double, metrics: [Metric], settings: [String: Int] = [:]) {
        self.split = split
        self.tokens = tokens
        self.loss = loss
        self.metrics = metrics
        self.settings = settings
    }

    /// The measure named `name`, if the task reports it.
    public func metric(_ name: String) -> Double? { metrics.first { $0.name == name }?.value }

    /// Bits per character (byte corpora).
    public var bitsPerCharacter: Double? { metric("bpc") }
    /// Perplexity per token (token corpora).
    public var perplexity: Double? { metric("perplexity") }
    /// Word-level perplexity (WikiText).
    public var wordPerplexity: Double? { metric("word_perplexity") }

    /// "bpc 1.2345" or "ppl 56.78 | word ppl 123.45".
    public var metricText: String { metrics.map(\.text).joined(separator: " | ") }

    /// Fields of a metrics.jsonl record: loss, positions, every measure by name.
    public var logFields: [(String, Any)] {
        [("split", split), ("loss", loss), ("tokens", tokens)] + metrics.map { ($0.name, $0.value) }
    }
}

extension EvaluationResult: Codable {
    /// Flat keys for reading (`split`, `tokens`, `loss`, each setting, each measure by name) and
    /// the measures in full under `metrics`.
    private struct Key: CodingKey {
        let stringValue: String
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    private static let fixed: Set<String> = ["split", "tokens", "loss", "metrics"]

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        split = try c.decode(String.self, forKey: Key("split"))
        tokens = try c.decode(Int.self, forKey: Key("tokens"))
        loss = try c.decode(Double.self, forKey: Key("loss"))
        metrics = try c.decode([Metric].self, forKey: Key("metrics"))
        let measured = Set(metrics.map(\.name))
        settings = [:]
        for key in c.allKeys where !Self.fixed.contains(key.stringValue) && !measured.contains(key.stringValue) {
            if let value = try? c.decode(Int.self, forKey: key) { settings[key.stringValue] = value }
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(split, forKey: Key("split"))
        try c.encode(tokens, forKey: Key("tokens"))
        try c.encode(loss, forKey: Key("loss"))
        for (name, value) in settings { try c.encode(value, forKey: Key(name)) }
        for metric in metrics { try c.encode(metric.value, forKey: Key(metric.name)) }
        try c.encode(metrics, forKey: Key("metrics"))
    }
}
