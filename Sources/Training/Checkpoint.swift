import Configuration
import Datasets
import Foundation
import Models
import Tensor

/// Checkpoints as safetensors files (Docs/checkpoint-format.md): every parameter under its
/// model name; for training checkpoints also the AdamW moments (`optimizer.exp_avg.NAME`,
/// `optimizer.exp_avg_sq.NAME`), the Transformer-XL memory (`memory.layers.L`, [B, M, d]) and
/// the dropout generator state (`rng.state`, U64 [4]); the resolved config and the counters
/// in the header metadata.
public enum Checkpoint {
    public static let format = "lmtrain-checkpoint-1"

    /// The training state beside the parameters.
    public struct TrainingState {
        public var step: Int
        public var optimizer: AdamW
        public var memory: ModelMemory
        public var rng: RandomGenerator
    }

    /// Writes a checkpoint atomically.
    public static func save(
        model: TransformerXL, config: RunConfig, corpusFingerprint: String,
        vocabulary: String, training: TrainingState?, to url: URL
    ) throws {
        let arena = model.arena
        var entries: [SafeTensors.Entry] = []
        func floats(_ p: UnsafePointer<Float>, _ count: Int) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(start: p, count: count * 4)
        }
        for view in model.layout.views {
            entries.append(.init(name: view.name, dtype: .f32, shape: view.shape, bytes: floats(arena.value(view), view.count)))
        }
        // Buffers that must outlive the write (non-trained state, packed memory).
        var keepAlive: [FloatBuffer] = []
        // Non-trained state of the blocks (PKM batch-norm running statistics).
        for block in model.blocks {
            for (name, values) in block.feedForward.state.sorted(by: { $0.key < $1.key }) {
                let copy = FloatBuffer(count: values.count)
                copy.pointer.update(from: values, count: values.count)
                keepAlive.append(copy)
                entries.append(.init(name: name, dtype: .f32, shape: [values.count], bytes: floats(copy.pointer, values.count)))
            }
        }
        var metadata: [String: String] = [
            "format": format,
            "config": String(decoding: ConfigResolution.compactJSON(config), as: UTF8.self),
            "data_fingerprint": corpusFingerprint,
            "vocabulary": vocabulary,
            "parameters": String(model.parameterCount),
        ]
        var rngState: [UInt64] = []
        if let training {
            metadata["step"] = String(training.step)
            metadata["optimizer_step"] = String(training.optimizer.stepCount)
            metadata["memory_length"] = String(training.memory.length)
            for view in model.layout.views {
                entries.append(.init(name: "optimizer.exp_avg.\(view.name)", dtype: .f32, shape: view.shape, bytes: floats(training.optimizer.firstMoment + view.offset, view.count)))
                entries.append(.init(name: "optimizer.exp_avg_sq.\(view.name)", dtype: .f32, shape: view.shape, bytes: floats(training.optimizer.secondMoment + view.offset, view.count)))
            }
            let memory = training.memory
            if memory.length > 0 {
                for layer in 0..<memory.layers {
                    let packed = FloatBuffer(count: memory.batch * memory.length * memory.width)
                    memory.copy(layer: layer, into: packed.pointer)
                    keepAlive.append(packed)
                    entries.append(.init(name: "memory.layers.\(layer)", dtype: .f32, shape: [memory.batch, memory.length, memory.width], bytes: floats(packed.pointer, memory.batch * memory.length * memory.width)))
                }
            }
            rngState = training.rng.state
        }
        try rngState.withUnsafeBytes { rngBytes in
            if training != nil {
                entries.append(.init(name: "rng.state", dtype: .u64, shape: [4], bytes: rngBytes))
            }
            try SafeTensors.write(entries, metadata: metadata, to: url)
        }
        withExtendedLifetime(keepAlive) {}
    }

    /// A checkpoint file opened for reading.
    public struct Loaded {
        public let file: SafeTensors.File
        public let config: RunConfig
        public var url: URL { file.url }
        public var step: Int? { file.metadata["step"].flatMap(Int.init) }
        public var dataFingerprint: String { file.metadata["data_fingerprint"] ?? "" }
        public var vocabulary: String { file.metadata["vocabulary"] ?? "" }
        public var isTrainingCheckpoint: Bool { file.tensors["rng.state"] != nil }

        /// Builds the model of the saved config and loads its parameters.
        public func makeModel() throws -> TransformerXL {
            let model = try TransformerXL(config: config.model)
            try loadParameters(into: model)
            return model
        }

        /// Copies every parameter, checking names and shapes against the model's layout, and
        /// the blocks' non-trained state.
        public func loadParameters(into model: TransformerXL) throws {
            for view in model.layout.views {
                guard file.tensors[view.name] != nil else {
                    throw DataError("\(url.path): has no tensor \(view.name): it is a checkpoint of another model config")
                }
                try file.read(view.name, dtype: .f32, shape: view.shape, into: model.arena.value(view))
            }
            for block in model.blocks {
                let names = block.feedForward.state.keys
                guard !names.isEmpty else { continue }
                var state: [String: [Float]] = [:]
                for name in names { state[name] = try file.array(name, dtype: .f32, as: Float.self) }
                do { try block.feedForward.loadState(state) } catch { throw DataError("\(url.path): \(error)") }
            }
        }

        /// Restores optimiser moments, memory and generator for `--resume`.
        public func restoreTraining(model: TransformerXL, optimizer: AdamW, memory: ModelMemory) throws -> (step: Int, rng: RandomGenerator) {
            guard isTrainingCheckpoint, let step, let optimizerStep = file.metadata["optimizer_step"].flatMap(Int.init),
                let memoryLength = file.metadata["memory_length"].flatMap(Int.init)
            else {
                throw DataError("\(url.path): holds weights only (no optimiser state); it cannot be resumed")
            }
            try loadParameters(into: model)
            for view in model.layout.views {
                try file.read("optimizer.exp_avg.\(view.name)", dtype: .f32, shape: view.shape, into: optimizer.firstMoment + view.offset)
                try file.read("optimizer.exp_avg_sq.\(view.name)", dtype: .f32, shape: view.shape, into: optimizer.secondMoment + view.offset)
            }
            optimizer.stepCount = optimizerStep
            memory.reset()
            if memoryLength > 0 {
                let packed = FloatBuffer(count: memory.batch * memoryLength * memory.width)
                for layer in 0..<memory.layers {
                    try file.read("memory.layers.\(layer)", dtype: .f32, shape: [memory.batch, memoryLength, memory.width], into: packed.pointer)
                    memory.restore(layer: layer, length: memoryLength, from: packed.pointer)
                }
            }
            let state = try file.array("rng.state", dtype: .u64, as: UInt64.self)
            guard state.count == 4 else { throw DataError("\(url.path): rng.state must hold 4 words") }
            return (step, RandomGenerator(state: state))
        }
    }

    public static func load(_ url: URL) throws -> Loaded {
        let file = try SafeTensors.File(url: url)
        guard file.metadata["format"] == format, let json = file.metadata["config"] else {
            throw DataError("\(url.path): not an lmtrain checkpoint (metadata format is \(file.metadata["format"] ?? "missing"))")
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? ConfigResolution.Object else {
            throw DataError("\(url.path): the config in the checkpoint metadata is not valid JSON")
        }
        let config = try ConfigResolution.decode(object, source: url.path)
        return Loaded(file: file, config: config)
    }
}
