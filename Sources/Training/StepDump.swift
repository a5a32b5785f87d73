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

    /// Reads `tokens` (int32 [B, T+1]) from `tokensURL`, runs the step and writes `dumpURL`
    /// with `loss` (F32 scalar), `logits` (F32 [B, T, V]) and the gradient of each parameter
    /// under the parameter's own name.
    @discardableResult
    public static func run(checkpoint: Checkpoint.Loaded, tokensURL: URL, dumpURL: URL) throws -> Result {
        let model = try checkpoint.makeModel()
        let file = try SafeTensors.File(url: tokensURL)
        guard let tensor = file.tensors["tokens"] else {
            throw DataError("\(tokensURL.path): has no tensor named tokens (int32 [B, T+1])")
        }
        guard tensor.dtype == .i32, tensor.shape.count == 2, tensor.shape[0] >= 1, tensor.shape[1] >= 2 else {
            throw DataError("\(tokensURL.path): tokens must be int32 of shape [B, T+1] with T >= 1 (got \(tensor.dtype.rawValue) \(tensor.shape))")
        }
        let (b, columns) = (tensor.shape[0], tensor.shape[1])
        let t = columns - 1
        let ids = try file.array("tokens", dtype: .i32, as: Int32.self)
        let v = model.outputClasses
        if let bad = ids.first(where: { $0 < 0 || Int($0) >= v }) {
            throw DataError("\(tokensURL.path): token id \(bad) is outside the model's vocabulary 0..<\(v)")
        }
        var inputs = [Int32](), targets = [Int32]()
        for row in 0..<b {
            inputs += ids[(row * columns)..<(row * columns + t)]
            targets += ids[(row * columns + 1)..<(row * columns + columns)]
        }
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
}
