import Configuration
import Datasets
import Foundation
import Layers
import Models
import Tensor

/// Loss of a model on one split, with the metric its token unit calls for.
public struct EvaluationResult: Sendable, Codable, Equatable {
    public var split: String
    /// Predicted tokens scored.
    public var tokens: Int
    /// Mean cross-entropy in nats per token.
    public var loss: Double
    public var unit: TokenUnit
    public var batchSize: Int
    public var memorySegments: Int
    /// Word-level perplexity, when the split's word count is known (WikiText token caches):
    /// exp(loss x tokens of the split / words of the split), words being whitespace tokens
    /// plus one `<eos>` per line as Transformer-XL counts them. The few tokens the ordered
    /// batches leave unscored (the first of each stream, the remainder past batch x stream
    /// length) count at the mean loss of the scored ones.
    public var wordPerplexity: Double?

    /// Bits per character, for byte corpora.
    public var bitsPerCharacter: Double? { unit == .bytes ? loss / Foundation.log(2.0) : nil }
    /// Perplexity per token, for token corpora.
    public var perplexity: Double? { unit == .tokens ? Foundation.exp(loss) : nil }

    /// "bpc 1.234" or "ppl 56.78", then "| word ppl 123.45" when known.
    public var metricText: String {
        let words = wordPerplexity.map { String(format: " | word ppl %.2f", $0) } ?? ""
        if let bpc = bitsPerCharacter { return String(format: "bpc %.4f", bpc) + words }
        return String(format: "ppl %.2f", perplexity ?? .nan) + words
    }

    enum CodingKeys: String, CodingKey {
        case split, tokens, loss, unit, batchSize = "batch_size", memorySegments = "memory_segments"
        case bitsPerCharacter = "bpc", perplexity, wordPerplexity = "word_perplexity"
    }

    public init(
        split: String, tokens: Int, loss: Double, unit: TokenUnit, batchSize: Int, memorySegments: Int,
        wordPerplexity: Double? = nil
    ) {
        self.split = split
        self.tokens = tokens
        self.loss = loss
        self.unit = unit
        self.batchSize = batchSize
        self.memorySegments = memorySegments
        self.wordPerplexity = wordPerplexity
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        split = try c.decode(String.self, forKey: .split)
        tokens = try c.decode(Int.self, forKey: .tokens)
        loss = try c.decode(Double.self, forKey: .loss)
        unit = try c.decode(TokenUnit.self, forKey: .unit)
        batchSize = try c.decode(Int.self, forKey: .batchSize)
        memorySegments = try c.decode(Int.self, forKey: .memorySegments)
        wordPerplexity = try c.decodeIfPresent(Double.self, forKey: .wordPerplexity)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(split, forKey: .split)
        try c.encode(tokens, forKey: .tokens)
        try c.encode(loss, forKey: .loss)
        try c.encode(unit, forKey: .unit)
        try c.encode(batchSize, forKey: .batchSize)
        try c.encode(memorySegments, forKey: .memorySegments)
        try c.encodeIfPresent(bitsPerCharacter, forKey: .bitsPerCharacter)
        try c.encodeIfPresent(perplexity, forKey: .perplexity)
        try c.encodeIfPresent(wordPerplexity, forKey: .wordPerplexity)
    }
}

/// The evaluation protocol: ordered batches of `batchSize` streams, segments of T, a memory
/// of `memorySegments` x T rows that starts empty and fills up (1, 2, ... segments), no
/// dropout, every predictable token scored once (the last segment may be shorter).
public enum Evaluator {
    public static func evaluate(
        model: TransformerXL, tokens: TokenSequence, split: String, unit: TokenUnit,
        batchSize: Int, segmentLength: Int, memorySegments: Int, maximumChunks: Int? = nil,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> EvaluationResult {
        let batcher = OrderedBatcher(tokens: tokens, batch: batchSize, segmentLength: segmentLength)
        guard batcher.allChunks > 0 else {
            throw DataError("the \(split) split has \(tokens.count) tokens, too few for evaluation batch \(batchSize) (needs at least \(2 * batchSize)): lower --eval-batch-size")
        }
        let memory = model.makeMemory(batch: batchSize, capacity: memorySegments * segmentLength)
        let chunks = min(batcher.allChunks, maximumChunks ?? .max)
        let inputs = Buffer<Int32>(count: batchSize * segmentLength)
        let targets = Buffer<Int32>(count: batchSize * segmentLength)
        var context = ForwardContext(training: false, rng: RandomGenerator(seed: 0))
        var lossSum = 0.0
        var count = 0
        for index in 0..<chunks {
            let length = batcher.length(ofChunk: index)
            batcher.chunk(index, inputs: inputs.pointer, targets: targets.pointer)
            let shape = TokenShape(batch: batchSize, length: length)
            let (ce, _) = model.forward(inputs: inputs.pointer, targets: targets.pointer, shape: shape, memory: memory, context: &context)
            model.advance(memory)
            lossSum += ce
            count += shape.rows
            progress?(index + 1, chunks)
        }
        let loss = lossSum / Double(count)
        return EvaluationResult(
            split: split, tokens: count, loss: loss, unit: unit,
            batchSize: batchSize, memorySegments: memorySegments,
            wordPerplexity: tokens.wordCount.map { wordPerplexity(meanLoss: loss, tokens: tokens.count, words: $0) })
    }

    /// exp(total loss / words), the total estimated as `meanLoss` x every token of the split
    /// (scored or not).
    public static func wordPerplexity(meanLoss: Double, tokens: Int, words: Int) -> Double {
        Foundation.exp(meanLoss * Double(tokens) / Double(max(1, words)))
    }
}
