import Configuration
import Foundation
import Layers
import Models

/// What a configuration costs, computed from the config alone (no tensors are allocated):
/// parameters by component, parameters active per token, FLOPs per token, and memory.
public struct Account: Sendable, Codable, Equatable {
    /// Parameter counts by component; `perLayer` repeats for every layer.
    public struct Parameters: Sendable, Codable, Equatable {
        public var embedding: Int
        public var attentionPerLayer: Int
        public var normsPerLayer: Int
        public var feedForwardPerLayer: Int
        public var finalNorm: Int
        public var output: Int
        public var layers: Int
        public var total: Int
        /// Parameters that take part in computing one token's output.
        public var activePerToken: Int
        /// Share of one feedforward block's parameters used for a token at once (σ-MoE: K/N).
        public var feedForwardShareUsed: Double

        enum CodingKeys: String, CodingKey {
            case embedding, layers, total, output
            case attentionPerLayer = "attention_per_layer", normsPerLayer = "norms_per_layer"
            case feedForwardPerLayer = "feedforward_per_layer", finalNorm = "final_norm"
            case activePerToken = "active_per_token", feedForwardShareUsed = "feedforward_share_used"
        }
    }

    /// Matrix-product FLOPs (2 per multiply-add) per token of a training segment with a full
    /// memory; elementwise work (norms, softmax, dropout) is not counted.
    public struct FLOPs: Sendable, Codable, Equatable {
        public var attentionPerLayer: Double
        /// Selected work only: the dense block, or the chosen experts / value rows plus routing.
        public var feedForwardPerLayer: Double
        /// The routing part of `feedForwardPerLayer` (selector product, gates, top-K).
        public var routingPerLayer: Double
        public var output: Double
        public var forwardPerToken: Double
        /// Forward + backward: 3 x forward.
        public var trainingPerToken: Double

        enum CodingKeys: String, CodingKey {
            case output
            case attentionPerLayer = "attention_per_layer", feedForwardPerLayer = "feedforward_per_layer"
            case routingPerLayer = "routing_per_layer", forwardPerToken = "forward_per_token"
            case trainingPerToken = "training_per_token"
        }
    }

    /// Bytes.
    public struct Memory: Sendable, Codable, Equatable {
        public var parameters: Int
        public var gradients: Int
        public var optimizer: Int
        /// Activation and scratch buffers of a training step at the configured batch (sized
        /// for the larger of the training and evaluation shapes, as the buffers only grow).
        public var trainingActivations: Int
        /// Activation buffers of an evaluation pass alone (`lmtrain eval`).
        public var evaluationActivations: Int
        /// The Transformer-XL memory in training (L x B x M x d) and in evaluation.
        public var trainingMemory: Int
        public var evaluationMemory: Int
        /// The process itself: code, OpenBLAS, the runtime, the token ids of the corpus.
        public var runtime: Int
        public var peakTraining: Int
        public var peakEvaluation: Int

        enum CodingKeys: String, CodingKey {
            case parameters, gradients, optimizer, runtime
            case trainingActivations = "training_activations", evaluationActivations = "evaluation_activations"
            case trainingMemory = "training_memory", evaluationMemory = "evaluation_memory"
            case peakTraining = "peak_training", peakEvaluation = "peak_evaluation"
        }
    }

    public var parameters: Parameters
    public var flops: FLOPs
    public var memory: Memory
}

/// Computes `Account`s. The parameter formulas are those of the layers (tests compare them
/// with allocated arenas); the activation inventory mirrors the buffers each layer reserves
/// (tests compare it with the bytes a real step allocates).
public enum Accountant {
    /// Bytes of the process beyond lmtrain's own buffers, measured with `lmtrain train` on the
    /// bench preset: code, Swift runtime, OpenBLAS's packing buffers, allocator slack.
    public static let runtimeBaseline = 40 << 20

    public static func account(_ config: RunConfig, corpusTokens: Int = 0) -> Account {
        let m = config.model
        let d = m.modelWidth, v = m.vocabularySize, layers = m.layers
        let hd = m.heads * m.resolvedHeadSize
        let ff = m.feedForward
        let attention = 5 * hd * d + 2 * hd + 2
        let norms = 4 * d
        let feedForward = ff.parameterCount(modelWidth: d)
        let embedding = v * d, output = v * d + v, finalNorm = 2 * d
        let total = embedding + layers * (attention + norms + feedForward) + finalNorm + output
        let activeFeedForward = ff.activeParameters(modelWidth: d)
        let parameters = Account.Parameters(
            embedding: embedding, attentionPerLayer: attention, normsPerLayer: norms,
            feedForwardPerLayer: feedForward, finalNorm: finalNorm, output: output, layers: layers,
            total: total,
            activePerToken: total - layers * (feedForward - activeFeedForward),
            feedForwardShareUsed: ff.shareUsed(modelWidth: d))

        let t = config.training.segmentLength, b = config.training.batchSize
        let s = config.training.memoryLength + t
        // Per token: q and output projections, keys/values over S/T rows, the position keys
        // for S rows once per step, content and position scores and the value read over S.
        let attentionFLOPs = 2.0 * Double(hd * d) * 2 + 4.0 * Double(hd * d) * Double(s) / Double(t)
            + 2.0 * Double(hd * d) * Double(s) / Double(b * t) + 3 * 2.0 * Double(s * hd)
        let (ffFLOPs, routing) = ff.forwardFLOPs(modelWidth: d)
        let outputFLOPs = 2.0 * Double(d * v)
        let forward = Double(layers) * (attentionFLOPs + ffFLOPs) + outputFLOPs
        let flops = Account.FLOPs(
            attentionPerLayer: attentionFLOPs, feedForwardPerLayer: ffFLOPs, routingPerLayer: routing,
            output: outputFLOPs, forwardPerToken: forward, trainingPerToken: 3 * forward)

        let e = config.evaluation
        let trainingShape = ActivationShape(batch: b, length: t, keys: s, training: true)
        let evaluationShape = ActivationShape(batch: e.batchSize, length: t, keys: e.memorySegments * t + t, training: false)
        let trainingInventory = inventory(m, trainingShape)
        let evaluationInventory = inventory(m, evaluationShape)
        let trainingActivations = zip(trainingInventory, evaluationInventory).reduce(0) { $0 + max($1.0, $1.1) }
        let evaluationActivations = evaluationInventory.reduce(0, +)
        let trainingMemory = 4 * layers * b * config.training.memoryLength * d
        let evaluationMemory = 4 * layers * e.batchSize * e.memorySegments * t * d
        // The corpus: its bytes while loading and one byte per id kept.
        let runtime = runtimeBaseline + 2 * corpusTokens
        let memory = Account.Memory(
            parameters: 4 * total, gradients: 4 * total, optimizer: 8 * total,
            trainingActivations: trainingActivations, evaluationActivations: evaluationActivations,
            trainingMemory: trainingMemory, evaluationMemory: evaluationMemory, runtime: runtime,
            peakTraining: 16 * total + trainingActivations + trainingMemory + evaluationMemory + runtime,
            peakEvaluation: 8 * total + evaluationActivations + evaluationMemory + runtime)
        return Account(parameters: parameters, flops: flops, memory: memory)
    }

    /// Bytes of lmtrain's buffers after one training step of `config` (activations, scratch
    /// and the Transformer-XL memory; not parameters or optimiser state), for checking the
    /// inventory against what a real step allocates.
    public static func trainingStepBufferBytes(_ config: RunConfig) -> Int {
        let shape = ActivationShape(batch: config.training.batchSize, length: config.training.segmentLength,
                                    keys: config.training.memoryLength + config.training.segmentLength, training: true)
        return inventory(config.model, shape).reduce(0, +)
            + 4 * config.model.layers * config.training.batchSize * config.training.memoryLength * config.model.modelWidth
    }

    struct ActivationShape {
        let batch: Int, length: Int, keys: Int, training: Bool
        var rows: Int { batch * length }
    }

    /// Bytes of every buffer the model reserves for one shape, in a fixed order (so two shapes
    /// can be combined buffer by buffer).
    static func inventory(_ m: ModelConfig, _ shape: ActivationShape) -> [Int] {
        let (b, r, s) = (shape.batch, shape.rows, shape.keys)
        let d = m.modelWidth, v = m.vocabularySize, heads = m.heads, hd = m.heads * m.resolvedHeadSize
        let dropout = m.dropout > 0 && shape.training
        var bytes: [Int] = []
        func floats(_ count: Int) { bytes.append(4 * count) }
        // Model level: ids, hidden states, logits and their gradients, dropout masks, loss rows.
        bytes.append(8 * r)
        floats((m.layers + 1) * r * d)
        floats(r * d)  // final hidden
        floats(r * v)  // logits
        floats(r * v)  // dlogits
        floats(r * d)  // dfinal
        floats(2 * r * d)  // dhidden
        floats(dropout ? 2 * r * d : 0)  // embedding and output dropout masks
        bytes.append(12 * r)  // logsumexp (float) and row losses (double)
        for _ in 0..<m.layers {
            floats(2 * b * s * d)  // concat(memory, h) and its LayerNorm
            floats(2 * r * d)  // h2 and LN2(h2)
            floats(2 * b * s + 2 * r + 4 * 16 * d)  // norm statistics and partial gradients
            floats(dropout ? 2 * r * d : 0)  // residual dropout masks
            // Attention: saved for backward, then its own gradients.
            floats(r * d + 2 * r * hd + 2 * b * s * hd + s * d + s * hd)
            floats(heads * r * s + 2 * heads * r + r * hd)
            floats(2 * r * hd + 2 * b * s * hd + s * hd + heads * b + heads * s)
            bytes += m.feedForward.activationBytes(modelWidth: d, shape: (rows: r, batch: b, length: shape.length, training: shape.training, dropout: dropout))
        }
        // Scratch shared by all layers: attention probabilities, score gradients, position
        // scores; block gradients.
        floats(3 * heads * r * s)
        floats(2 * r * d + 2 * b * s * d)
        return bytes
    }
}

extension FeedForwardConfig {
    /// Parameters of one block used for a token.
    public func activeParameters(modelWidth d: Int) -> Int {
        switch self {
        case .dense: parameterCount(modelWidth: d)
        case .sigmaMoE(let c): c.k * 2 * c.expertSize * d + c.experts * d
        case .switchMoE(let c): 2 * c.expertSize * d + c.experts * d
        case .sBase(let c): c.k * 2 * c.expertSize * d + c.experts * d
        case .topK(let c):
            // All of W1 and b1, the K kept hidden units' columns of W2, and b2.
            d * c.hiddenSize + c.hiddenSize + c.k * d + d
        case .productKeyMemory(let c):
            c.usesDensePath
                ? parameterCount(modelWidth: d)
                : parameterCount(modelWidth: d) - (c.valueCount - min(c.valueCount, c.heads * c.knn)) * d
        }
    }

    /// The paper's "% of FFN parameters used at once": K / N for the expert models.
    public func shareUsed(modelWidth d: Int) -> Double {
        switch self {
        case .dense: 1
        case .sigmaMoE(let c): Double(c.k) / Double(c.experts)
        case .switchMoE(let c): 1 / Double(c.experts)
        case .sBase(let c): Double(c.k) / Double(c.experts)
        case .topK, .productKeyMemory:
            Double(activeParameters(modelWidth: d)) / Double(parameterCount(modelWidth: d))
        }
    }

    /// Matrix FLOPs per token of the block (selected work plus routing) and of the routing.
    public func forwardFLOPs(modelWidth d: Int) -> (total: Double, routing: Double) {
        func experts(_ n: Int, _ g: Int, _ k: Int) -> (Double, Double) {
            // Selector product, gate activation over N, K arg-max passes over N.
            let routing = 2.0 * Double(n * d) + Double(n * (k + 1))
            return (routing + Double(k) * 4 * Double(g * d), routing)
        }
        switch self {
        case .dense(let c): return (4.0 * Double(d * c.hiddenSize), 0)
        case .sigmaMoE(let c): return experts(c.experts, c.expertSize, c.k)
        case .switchMoE(let c): return experts(c.experts, c.expertSize, 1)
        case .sBase(let c): return experts(c.experts, c.expertSize, c.k)
        case .topK(let c): return (4.0 * Double(d * c.hiddenSize), 0)
        case .productKeyMemory(let c):
            // Scoring both halves against every sub-key of every head (plus the query network),
            // then reading the value rows: all n^2 on the dense path, H x knn on the sparse one.
            var routing = 2.0 * Double(c.heads * c.keysPerHalf * d)
            if c.query == .mlpBatchNorm { routing += 2.0 * Double(c.heads * d * d) }
            let rows = c.usesDensePath ? c.valueCount : c.heads * c.knn
            return (routing + 2.0 * Double(rows * d), routing)
        }
    }

    /// Bytes of the buffers one block reserves, in a fixed order.
    func activationBytes(modelWidth d: Int, shape: (rows: Int, batch: Int, length: Int, training: Bool, dropout: Bool)) -> [Int] {
        let r = shape.rows
        switch self {
        case .dense(let c):
            // Hidden, its gradient, and the hidden dropout mask.
            return [4 * r * c.hiddenSize, 4 * r * c.hiddenSize, shape.dropout ? 4 * r * c.hiddenSize : 0]
        case .sigmaMoE(let c):
            return Self.expertBytes(d: d, r: r, n: c.experts, g: c.expertSize, k: c.k, sinkhorn: nil)
        case .switchMoE(let c):
            return Self.expertBytes(d: d, r: r, n: c.experts, g: c.expertSize, k: 1, sinkhorn: nil)
        case .sBase(let c):
            return Self.expertBytes(d: d, r: r, n: c.experts, g: c.expertSize, k: c.k, sinkhorn: shape.training ? shape.length : nil)
        case .topK(let c):
            return [4 * r * c.hiddenSize, 4 * r * c.hiddenSize, shape.dropout ? 4 * r * c.hiddenSize : 0]
        case .productKeyMemory(let c):
            let (h, n, nn) = (c.heads, c.keysPerHalf, c.valueCount)
            let f = c.query == .mlpBatchNorm ? h * d : 0
            // Half scores and their gradient; the query network's buffers; usage counts.
            var bytes = [4 * r * 2 * h * n * 2, 4 * (3 * r * f + 5 * f), 8 * nn]
            if c.usesDensePath {
                // Summed half scores, activations over all values and their gradient.
                bytes.append(4 * (r * 2 * n + 2 * r * nn))
            } else {
                // Selected indices, scores, activations, their gradient, the value-gradient sort.
                let entries = r * h * c.knn
                bytes.append(4 * 5 * entries + 4 * (2 * nn + 1))
            }
            return bytes
        }
    }

    static func expertBytes(d: Int, r: Int, n: Int, g: Int, k: Int, sinkhorn length: Int?) -> [Int] {
        let p = r * k, c = max(n, k)
        var bytes = [
            4 * r * n * 3,  // logits, activated, selection scores
            r * n,  // drop mask
            4 * p + 4 * p + p,  // chosen, gates, dropped
            8 * (n + 1) + 8 * n,  // offsets and sort cursor
            4 * p * 2,  // pair position and owner
            4 * p * d * 2 + 4 * p * g * 2 + 4 * p,  // sorted input/output, hidden, gated, gates
            4 * r * c + 8 * c + 8 * r + 4 * c,  // regulariser rows, statistics, weights
            4 * p * d * 2 + 4 * p * g + 4 * p + 4 * r * n,  // backward buffers
        ]
        // S-BASE's Sinkhorn state exists in training only; the entry is kept (as 0) so that
        // training and evaluation inventories line up buffer by buffer.
        bytes.append(length.map { 4 * (n + $0 + max(n, $0)) } ?? 0)
        return bytes
    }
}
