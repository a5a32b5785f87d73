import Configuration
import Datasets
import Foundation
import Layers
import Models
import Tensor

/// `lmtrain step`: one forward and backward pass of a checkpoint's model with dropout off and
/// no carried state (an empty memory), on token ids from a safetensors file, dumping the loss, the logits and
/// every parameter gradient (Docs/verification.md).
public enum StepDump {
    /// The result of one verification step.
    public struct Result {
        public let loss: Double
        public let batch: Int
        public let length: Int
    }

    /// Reads the tokens from `tokensURL` (see `tokens(in:model:)`), runs the step and writes
    /// `dumpURL` with `loss` (F32 scalar), `logits` (F32 [B, T, V]) and the gradient of each
    /// parameter under the parameter's own name.
    @discardableResult
    public static func run(checkpoint: Checkpoint.Loaded, tokensURL: URL, dumpURL: URL) throws -> Result {
        let model = try checkpoint.makeModel()
        // Formal-language models score a pad class, the last, which marks unscored positions.
        let padClass = checkpoint.config.data.task == nil ? nil : model.outputClasses - 1
        let (inputs, targets, b, t) = try tokens(
            in: tokensURL, model: model, inputClasses: checkpoint.config.model.inputVocabularySize, padClass: padClass)
        let v = model.outputClasses
        let shape = TokenShape(batch: b, length: t)
        var context = ForwardContext(training: true, dropout: false, rng: RandomGenerator(seed: 0))
        model.arena.zeroGradients()
        let loss = inputs.withUnsafeBufferPointer { i in
            targets.withUnsafeBufferPointer { t in
                model.forward(
                    TokenBatch(shape: shape, inputs: i.baseAddress!, targets: t.baseAddress!), state: nil,
                    context: &context)
            }
        }.objective
        model.backward()
        var lossValue = Float(loss)
        try withUnsafeBytes(of: &lossValue) { lossBytes in
            var entries: [SafeTensors.Entry] = [
                .init(name: "loss", dtype: .f32, shape: [], bytes: lossBytes),
                .init(name: "logits", dtype: .f32, shape: [b, t, v], bytes: UnsafeRawBufferPointer(start: model.logits, count: shape.rows * v * 4)),
            ]
            for view in model.layout.views {
                entries.append(.init(name: view.name, dtype: .f32, shape: view.shape, bytes: UnsafeRawBufferPointer(start: model.arena.gradient(view), count: view.count * 4)))
            }
            try SafeTensors.write(entries, metadata: ["format": "lmtrain-step-dump-1", "checkpoint": checkpoint.url.lastPathComponent, "loss": "\(loss)"], to: dumpURL)
        }
        return Result(loss: loss, batch: b, length: t)
    }

    /// A language model's `tokens` (int32 [B, T+1]: inputs are columns 0 ..< T, targets
    /// columns 1 ..< T+1), or a per-position classifier's `inputs` and `targets` (int32 [B, T]
    /// each; for formal-language models the pad id is the vocabulary size: the input pad is
    /// embedded like any symbol, a target equal to `padClass` is not scored).
    static func tokens(
        in url: URL, model: any SequenceModel, inputClasses: Int, padClass: Int?
    ) throws -> (inputs: [Int32], targets: [Int32], batch: Int, length: Int) {
        let file = try SafeTensors.File(url: url)
        let v = model.outputClasses
        func matrix(_ name: String, columnsAtLeast: Int) throws -> (ids: [Int32], rows: Int, columns: Int) {
            guard let tensor = file.tensors[name] else { throw DataError("\(url.path): has no tensor named \(name)") }
            guard tensor.dtype == .i32, tensor.shape.count == 2, tensor.shape[0] >= 1, tensor.shape[1] >= columnsAtLeast else {
                throw DataError("\(url.path): \(name) must be int32 of shape [B, T\(columnsAtLeast == 2 ? "+1" : "")] with T >= 1 (got \(tensor.dtype.rawValue) \(tensor.shape))")
            }
            return (try file.array(name, dtype: .i32, as: Int32.self), tensor.shape[0], tensor.shape[1])
        }
        func check(_ ids: [Int32], _ name: String, below limit: Int) throws {
            if let bad = ids.first(where: { $0 < 0 || Int($0) >= limit }) {
                throw DataError("\(url.path): \(name) id \(bad) is outside the model's ids 0..<\(limit)")
            }
        }
        if file.tensors["tokens"] == nil && file.tensors["inputs"] != nil {
            let (inputs, b, t) = try matrix("inputs", columnsAtLeast: 1)
            let (targets, tb, tt) = try matrix("targets", columnsAtLeast: 1)
            guard tb == b && tt == t else {
                throw DataError("\(url.path): targets has shape [\(tb), \(tt)], inputs [\(b), \(t)]: give both [B, T]")
            }
            try check(inputs, "input", below: inputClasses)
            try check(targets, "target", below: v)
            return (inputs, targets.map { Int($0) == padClass ? SoftmaxCrossEntropy.ignoredTarget : $0 }, b, t)
        }
        guard file.tensors["tokens"] != nil else {
            throw DataError("\(url.path): has no tensor named tokens (int32 [B, T+1]) nor inputs and targets (int32 [B, T])")
        }
        let (ids, b, columns) = try matrix("tokens", columnsAtLeast: 2)
        try check(ids, "token", below: v)
        let t = columns - 1
        var inputs = [Int32](), targets = [Int32]()
        for row in 0..<b {
            inputs += ids[(row * columns)..<(row * columns + t)]
            targets += ids[(row * columns + 1)..<(row * columns + columns)]
        }
        return (inputs, targets, b, t)
    }
}
