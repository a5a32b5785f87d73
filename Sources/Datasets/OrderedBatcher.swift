/// Transformer-XL ordered batching (Docs/model.md "Data"): the token stream is cut into `batch`
/// contiguous streams; chunk `p` holds positions [p*T, p*T + T] of every stream (T inputs and
/// the T shifted targets), so consecutive chunks continue each other and the model's memory
/// stays coherent. Tokens beyond `batch * streamLength` (fewer than `batch`) are not used.
public struct OrderedBatcher: Sendable {
    public let tokens: TokenSequence
    public let batch: Int
    public let segmentLength: Int
    /// Tokens per stream.
    public let streamLength: Int

    public init(tokens: TokenSequence, batch: Int, segmentLength: Int) {
        precondition(batch > 0 && segmentLength > 0)
        self.tokens = tokens
        self.batch = batch
        self.segmentLength = segmentLength
        streamLength = tokens.count / batch
    }

    /// Chunks of exactly T inputs per epoch (training uses only these).
    public var fullChunks: Int { max(0, (streamLength - 1) / segmentLength) }

    /// Chunks including a final shorter one (evaluation scores every predictable token).
    public var allChunks: Int { max(0, (streamLength - 1 + segmentLength - 1) / segmentLength) }

    /// Number of inputs in chunk `index` (T except possibly the last of `allChunks`).
    public func length(ofChunk index: Int) -> Int {
        min(segmentLength, streamLength - 1 - index * segmentLength)
    }

    /// Writes chunk `index` as inputs [B, L] and targets [B, L] (L = `length(ofChunk:)`).
    public func chunk(
        _ index: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>
    ) {
        let length = length(ofChunk: index)
        precondition(length > 0, "chunk \(index) is past the end of the streams")
        for stream in 0..<batch {
            let start = stream * streamLength + index * segmentLength
            tokens.copy(from: start, length: length, into: inputs + stream * length)
            tokens.copy(from: start + 1, length: length, into: targets + stream * length)
        }
    }
}
