import Configuration
import Datasets
import Foundation
import Models
import Tensor

/// Checkpoints as safetensors files (Docs/checkpoint-format.md): every parameter under its
/// model name and the model's non-trained state; for training checkpoints also the optimiser
/// state per parameter (`optimizer.exp_avg.NAME`, `optimizer.exp_avg_sq.NAME`), the state the
/// model carries between segments (the Transformer-XL memory, `memory.layers.L` [B, M, d]) and
/// the dropout generator state (`rng.state`, U64 [4]); the resolved config and the counters in
/// the header metadata.
public enum Checkpoint {
    public static let format = "lmtrain-checkpoint-1"

    /// The training state beside the parameters.
    public struct TrainingState {
        public var step: Int
        public var optimizer: any Optimizer
        public var state: (any CarriedState)?
        public var rng: RandomGenerator
        /// The best periodic evaluation's score so far (tasks that select a best checkpoint).
        public var bestScore: Double?
        /// The task was solved: the run is over.
        public var solved: Bool
        /// Wall-clock seconds of training so far, over every session.
        public var elapsedSeconds: Double

        public init(
            step: Int, optimizer: any Optimizer, state: (any CarriedState)?, rng: RandomGenerator,
            bestScore: Double? = nil, solved: Bool = false, elapsedSeconds: Double = 0
        ) {
            self.elapsedSeconds = elapsedSeconds
            self.step = step
            self.optimizer = optimizer
            self.state = state
            self.rng = rng
            self.bestScore = bestScore
            self.solved = solved
        }
    }

    /// Writes a checkpoint atomically.
    public static func save(
        model: any SequenceModel, config: RunConfig, dataFingerprint: String,
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
        // Tensors copied out of the model and its state.
        var copies = model.persistentState.sorted { $0.key < $1.key }.map {
            NamedTensor(name: $0.key, shape: [$0.value.count], values: $0.value)
        }
        var metadata: [String: String] = [
            "format": format,
            "config": String(decoding: ConfigResolution.compactJSON(config), as: UTF8.self),
            "data_fingerprint": dataFingerprint,
            "vocabulary": vocabulary,
            "parameters": String(model.layout.count),
        ]
        var rngState: [UInt64] = []
        if let training {
            metadata["step"] = String(training.step)
            metadata["optimizer_step"] = String(training.optimizer.stepCount)
            if let best = training.bestScore { metadata["best_score"] = "\(best)" }
            if training.solved { metadata["solved"] = "true" }
            metadata["elapsed_seconds"] = "\(training.elapsedSeconds)"
            for (prefix, values) in training.optimizer.stateArrays {
                for view in model.layout.views {
                    entries.append(.init(name: "\(prefix).\(view.name)", dtype: .f32, shape: view.shape, bytes: floats(values + view.offset, view.count)))
                }
            }
            copies += training.state?.checkpointTensors() ?? []
            rngState = training.rng.state
        }
        // Stable storage for the copied tensors until the file is written.
        let buffers = copies.map { tensor in
            let buffer = FloatBuffer(count: tensor.values.count)
            buffer.pointer.update(from: tensor.values, count: tensor.values.count)
            entries.append(.init(name: tensor.name, dtype: .f32, shape: tensor.shape, bytes: floats(buffer.pointer, tensor.values.count)))
            return buffer
        }
        try withExtendedLifetime(buffers) {
            try rngState.withUnsafeBytes { rngBytes in
                if training != nil {
                    entries.append(.init(name: "rng.state", dtype: .u64, shape: [4], bytes: rngBytes))
                }
                try SafeTensors.write(entries, metadata: metadata, to: url)
            }
        }
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
        /// The best periodic evaluation's score when the checkpoint was written.
        public var bestScore: Double? { file.metadata["best_score"].flatMap(Double.init) }
        /// The run had solved its task.
        public var solved: Bool { file.metadata["solved"] == "true" }
        /// Wall-clock seconds of training before the checkpoint (0 for older checkpoints).
        public var elapsedSeconds: Double { file.metadata["elapsed_seconds"].flatMap(Double.init) ?? 0 }
        /// A one-line note for checkpoints written before tensors carried checksums (their
        /// data cannot be verified); nil when every tensor was checked.
        public var checksumNote: String? {
            file.hasChecksums ? nil : "note: \(url.path) carries no checksums (written by an earlier lmtrain): its data cannot be verified"
        }

        /// Builds the model of the saved config and loads its parameters.
        public func makeModel() throws -> any SequenceModel {
            let model = try config.model.makeModel()
            try loadParameters(into: model)
            return model
        }

        /// Copies every parameter, checking names and shapes against the model's layout, and
        /// the model's non-trained state.
        public func loadParameters(into model: any SequenceModel) throws {
            for view in model.layout.views {
                guard file.tensors[view.name] != nil else {
                    throw DataError("\(url.path): has no tensor \(view.name): it is a checkpoint of another model config")
                }
                try file.read(view.name, dtype: .f32, shape: view.shape, into: model.arena.value(view))
                try requireFinite(model.arena.value(view), count: view.count, tensor: view.name)
            }
            do {
                try model.loadPersistentState { name in
                    file.tensors[name] == nil ? nil : try file.array(name, dtype: .f32, as: Float.self)
                }
            } catch let error as DataError {
                throw error
            } catch {
                throw DataError("\(url.path): \(error)")
            }
        }

        /// Throws for a tensor with a NaN or infinite value: such weights would make every
        /// loss NaN (and the results unwritable as JSON), so they are named at load instead.
        private func requireFinite(_ values: UnsafePointer<Float>, count: Int, tensor: String) throws {
            guard let index = (0..<count).first(where: { !values[$0].isFinite }) else { return }
            throw DataError("\(url.path): tensor \(tensor) holds \(values[index]) at index \(index): the checkpoint is damaged or its run diverged; use an earlier checkpoint")
        }

        /// Restores parameters, optimiser state, carried state and generator for `--resume`; a
        /// rank of a data-parallel job (`shard`) restores its own streams of the saved state.
        public func restoreTraining(
            model: any SequenceModel, optimizer: any Optimizer, state: (any CarriedState)?,
            shard: StreamShard? = nil
        ) throws -> (step: Int, rng: RandomGenerator) {
            guard isTrainingCheckpoint, let step, let optimizerStep = file.metadata["optimizer_step"].flatMap(Int.init) else {
                throw DataError("\(url.path): holds weights only (no optimiser state); it cannot be resumed")
            }
            try loadParameters(into: model)
            for (prefix, values) in optimizer.stateArrays {
                for view in model.layout.views {
                    try file.read("\(prefix).\(view.name)", dtype: .f32, shape: view.shape, into: values + view.offset)
                    try requireFinite(values + view.offset, count: view.count, tensor: "\(prefix).\(view.name)")
                }
            }
            optimizer.stepCount = optimizerStep
            do {
                try state?.restore { name in
                    guard let info = file.tensors[name] else { return nil }
                    let saved = NamedTensor(name: name, shape: info.shape, values: try file.array(name, dtype: .f32, as: Float.self))
                    // A rank of a data-parallel job takes its own streams of the whole batch's state.
                    return shard.map { saved.streams($0) } ?? saved
                }
            } catch let error as DataError {
                throw error
            } catch {
                throw DataError("\(url.path): \(error)")
            }
            let rngState = try file.array("rng.state", dtype: .u64, as: UInt64.self)
            guard rngState.count == 4 else { throw DataError("\(url.path): rng.state must hold 4 words") }
            return (step, RandomGenerator(state: rngState))
        }
    }

    /// Reads and checks the checkpoint at `url` (header, tensor checksums, config).
    public static func load(_ url: URL) throws -> Loaded {
        try open(SafeTensors.File(url: url))
    }

    /// The checkpoint held by a safetensors file already read.
    public static func open(_ file: SafeTensors.File) throws -> Loaded {
        let url = file.url
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
