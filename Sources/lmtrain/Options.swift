import ArgumentParser
import Configuration
import Datasets
import Foundation
import Layers
import Models
import Tensor
import Training

/// The flags that build a run config: a preset, an optional JSON file, then single fields.
/// Public so that tests parse and resolve them in-process.
public struct ConfigOptions: ParsableArguments {
    public init() {}

    @Option(help: "Starting configuration: a size (\(Preset.sizeNames)), optionally with a variant suffix (\(Preset.Variant.allCases.filter { $0 != .dense }.map { "-" + $0.rawValue }.joined(separator: ", "))), or a formal-language TASK-MODEL (parity-srwm, dyck-1-lstm; lmtrain formal).")
    public var preset: String = "quickstart"

    @Option(help: "JSON file whose fields override the preset (same keys as config.json).")
    public var config: String?

    @Option(help: "Training data: kjv (default), enwik8, wikitext-103, wikitext-103-raw, wikitext-2, wikitext-2-raw (found in Data/ as the official .zip or its folder), or a path to a text file, folder or .zip; for a formal-language preset, a folder of the benchmark's .src/.tgt files (default: generated).")
    var data: String?

    @Option(help: "Train,valid,test fractions for plain text files, e.g. 0.9,0.05,0.05.")
    var split: String?

    @Option(help: "Tokenizer: bytes (the default), words (Transformer-XL words + <eos>), or bpe:N (SentencePiece BPE with N pieces trained on the train split). Token data is cached in Data/cache/ (see lmtrain prepare).")
    var tokenizer: TokenizerArgument?

    @Option(name: .customLong("d-model"), parsing: .unconditional, help: "Model width.") var dModel: Int?
    @Option(parsing: .unconditional, help: "Number of layers.") var layers: Int?
    @Option(parsing: .unconditional, help: "Attention heads.") var heads: Int?
    @Option(parsing: .unconditional, help: "Size of each head (default d_model / heads).") var headSize: Int?
    @Option(parsing: .unconditional, help: "Dropout rate.") var dropout: Float?
    @Option(parsing: .unconditional, help: "Feedforward width as a multiple of d_model (formal-language models).") var ffFactor: Int?
    @Option(parsing: .unconditional, help: "Embedding width E of the LSTM and e-LSTM.") var embSize: Int?
    @Option(parsing: .unconditional, help: "Seed of the formal-language data generator (the data, not the model).") var generatorSeed: UInt64?
    @OptionGroup public var feedForward: FeedForwardFlags

    @Option(parsing: .unconditional, help: "Optimiser steps.") var steps: Int?
    @Option(parsing: .unconditional, help: "Epochs: the run lasts this many passes over the training data (replaces --steps).") var epochs: Int?
    @Option(parsing: .unconditional, help: "Streams per batch (B).") var batchSize: Int?
    @Option(parsing: .unconditional, help: "Tokens per segment (T).") var segmentLength: Int?
    @Option(parsing: .unconditional, help: "Memory rows per stream in training (M).") var memoryLength: Int?
    @Option(help: "Optimiser: adamw (decoupled weight decay; the default) or adam (L2 weight decay).")
    var optimizer: OptimizerKind?
    @Option(help: "Learning rate after the warmup: cosine (decays to 0; the default) or constant.")
    var schedule: ScheduleKind?
    @Option(parsing: .unconditional, help: "Learning rate.") var lr: Double?
    @Option(parsing: .unconditional, help: "Linear warmup steps.") var warmup: Int?
    @Option(parsing: .unconditional, help: "Gradient-norm clipping threshold (0: off).") var clip: Double?
    @Option(parsing: .unconditional, help: "Groups of streams whose gradients are summed apart, then pairwise: mpirun -np N with N dividing them gives one process's gradients exactly (default 2).") var gradientGroups: Int?
    @Option(parsing: .unconditional, help: "Weight decay (decoupled for adamw, L2 for adam).") var weightDecay: Double?
    @Option(parsing: .unconditional, help: "Adam β1.") var adamBeta1: Double?
    @Option(parsing: .unconditional, help: "Adam β2.") var adamBeta2: Double?
    @Option(parsing: .unconditional, help: "Adam ε.") var adamEpsilon: Double?
    @Option(parsing: .unconditional, help: "Random seed (initialisation and dropout).") var seed: UInt64?
    @Option(parsing: .unconditional, help: "Steps between metric lines.") var logEvery: Int?
    @Option(parsing: .unconditional, help: "Steps between validations (0: at the end only).") var evalEvery: Int?
    @Option(parsing: .unconditional, help: "Segments of the valid split per periodic validation (0: all).") var evalBatches: Int?
    @Option(parsing: .unconditional, help: "Steps between checkpoints (0: at the end only).") var checkpointEvery: Int?
    @Option(parsing: .unconditional, help: "Checkpoints kept in the run directory.") var keepCheckpoints: Int?
    @Option(parsing: .unconditional, help: "Evaluation batch size.") var evalBatchSize: Int?
    @Option(parsing: .unconditional, help: "Evaluation memory in segments.") var evalMemory: Int?

    /// True when any field-changing flag is given (not allowed with --resume).
    var changesConfig: Bool { !overrides().isEmpty || config != nil || !feedForward.change.isEmpty }

    /// The flag values as a partial config object.
    func overrides() -> ConfigResolution.Object {
        var model: ConfigResolution.Object = [:], training: ConfigResolution.Object = [:]
        var evaluation: ConfigResolution.Object = [:], data: ConfigResolution.Object = [:]
        if let dModel { model["d_model"] = dModel }
        if let layers { model["layers"] = layers }
        if let heads { model["heads"] = heads }
        if let headSize { model["head_size"] = headSize }
        if let dropout { model["dropout"] = Double(dropout) }
        if let ffFactor { model["ff_factor"] = ffFactor }
        if let embSize { model["embedding_size"] = embSize }
        if let steps { training["steps"] = steps }
        if let epochs { training["epochs"] = epochs }
        if let batchSize { training["batch_size"] = batchSize }
        if let segmentLength { training["segment_length"] = segmentLength }
        if let memoryLength { training["memory_length"] = memoryLength }
        if let optimizer { training["optimizer"] = optimizer.rawValue }
        if let schedule { training["schedule"] = schedule.rawValue }
        if let lr { training["learning_rate"] = lr }
        if let warmup { training["warmup_steps"] = warmup }
        if let clip { training["gradient_clip"] = clip }
        if let gradientGroups { training["gradient_groups"] = gradientGroups }
        if let weightDecay { training["weight_decay"] = weightDecay }
        if let adamBeta1 { training["adam_beta1"] = adamBeta1 }
        if let adamBeta2 { training["adam_beta2"] = adamBeta2 }
        if let adamEpsilon { training["adam_epsilon"] = adamEpsilon }
        if let seed { training["seed"] = seed }
        if let logEvery { training["log_interval"] = logEvery }
        if let evalEvery { training["validation_interval"] = evalEvery }
        if let evalBatches { training["validation_batches"] = evalBatches }
        if let checkpointEvery { training["checkpoint_interval"] = checkpointEvery }
        if let keepCheckpoints { training["keep_checkpoints"] = keepCheckpoints }
        if let evalBatchSize { evaluation["batch_size"] = evalBatchSize }
        if let evalMemory { evaluation["memory_segments"] = evalMemory }
        if let source = self.data { data["source"] = source }
        if let split { data["split"] = split.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) ?? .nan } }
        if let tokenizer { data["tokenizer"] = tokenizer.choice.description }
        if let generatorSeed { data["generator_seed"] = generatorSeed }
        var object: ConfigResolution.Object = [:]
        if !model.isEmpty { object["model"] = model }
        if !training.isEmpty { object["training"] = training }
        if !evaluation.isEmpty { object["evaluation"] = evaluation }
        if !data.isEmpty { object["data"] = data }
        return object
    }

    /// Preset, then `--config`, then flags.
    public func resolve() throws -> RunConfig { try resolveWithNote().config }

    /// The config and, when a sparse block's size was matched, the line saying so.
    public func resolveWithNote() throws -> (config: RunConfig, note: String?) {
        guard let preset = Presets.config(named: preset) else {
            throw ValidationError("unknown preset '\(preset)': use one of \(Presets.allNames.joined(separator: ", "))")
        }
        if let split, split.split(separator: ",").count != 3 || split.split(separator: ",").contains(where: { Double($0.trimmingCharacters(in: .whitespaces)) == nil }) {
            throw ValidationError("--split '\(split)' must be three fractions train,valid,test such as 0.9,0.05,0.05")
        }
        do {
            return try ConfigResolution.resolve(
                preset: preset, configFile: config.map { URL(fileURLWithPath: $0) },
                overrides: overrides(), feedForward: feedForward.change)
        } catch let error as FeedForwardOptionError {
            throw ValidationError(feedForward.message(for: error))
        }
    }
}

/// `--ffn`, the feedforward block's options and `--match`. The flag names live here; what each
/// option means and which variants take it, in the variants' configs (Docs/feedforward.md).
public struct FeedForwardFlags: ParsableArguments {
    public init() {}

    @Option(help: "Feedforward block (moe is σ-MoE; Docs/feedforward.md).")
    var ffn: FeedForwardKindArgument?
    @Option(name: .customLong("d-ff"), parsing: .unconditional, help: "Hidden size of the dense or top-K block.") var dFF: Int?
    @Option(parsing: .unconditional, help: "Hidden units kept per token (topk).") var topk: Int?
    @Option(parsing: .unconditional, help: "Experts (moe, switch, sbase).") var experts: Int?
    @Option(parsing: .unconditional, help: "Expert size G (default: matched to the parameters of the block it replaces).") var expertSize: Int?
    @Option(parsing: .unconditional, help: "Experts per token K (moe, sbase).") var k: Int?
    @Option(parsing: .unconditional, help: "Expert dropout δ (moe, sbase).") var expertDropout: Float?
    @Option(parsing: .unconditional, help: "Entropy regulariser γ (moe, sbase).") var moeReg: Double?
    @Option(help: "σ-MoE selection.") var selection: MixtureOfExperts.Selection?
    @Option(parsing: .unconditional, help: "Switch balancing-loss γ.") var balance: Double?
    @Option(parsing: .unconditional, help: "PKM heads.") var pkmHeads: Int?
    @Option(parsing: .unconditional, help: "PKM sub-keys per half n (n^2 values; default: matched to the replaced block's parameters).") var pkmKeys: Int?
    @Option(parsing: .unconditional, help: "PKM top-k per head.") var pkmKnn: Int?
    @Option(help: "PKM activation.") var pkmActivation: ProductKeyMemory.Activation?
    @Option(help: "PKM query: identity (official σ-MoE code) or mlp-bn (XLM).") var pkmQuery: ProductKeyMemory.Query?
    @Option(help: "PKM path: auto (dense when n <= knn, like the official code), sparse, dense.") var pkmPath: ProductKeyMemory.Path?
    @Option(help: "PKM value init: default N(0, (2/L)/d) or dense N(0, (2/L)/n^2) (the paper's +init).") var pkmValueInit: ProductKeyMemory.ValueInit?
    @Option(help: "auto: a sparse block without its size gets the size matching the block it replaces; none: fixed defaults.")
    var match: MatchMode = .auto

    /// Whether a changed block's free size is matched to the block it replaces.
    enum MatchMode: String, CaseIterable, ExpressibleByArgument {
        case auto, none
    }

    /// The flag of each option.
    static func flag(_ option: FeedForwardOption) -> String {
        switch option {
        case .hiddenSize: "--d-ff"
        case .topK: "--topk"
        case .experts: "--experts"
        case .expertSize: "--expert-size"
        case .k: "--k"
        case .expertDropout: "--expert-dropout"
        case .regularization: "--moe-reg"
        case .selection: "--selection"
        case .balance: "--balance"
        case .pkmHeads: "--pkm-heads"
        case .pkmKeys: "--pkm-keys"
        case .pkmKnn: "--pkm-knn"
        case .pkmActivation: "--pkm-activation"
        case .pkmQuery: "--pkm-query"
        case .pkmPath: "--pkm-path"
        case .pkmValueInit: "--pkm-value-init"
        }
    }

    var options: FeedForwardOptions {
        var o = FeedForwardOptions()
        o.hiddenSize = dFF
        o.topK = topk
        o.experts = experts
        o.expertSize = expertSize
        o.k = k
        o.expertDropout = expertDropout
        o.regularization = moeReg
        o.selection = selection
        o.balance = balance
        o.pkmHeads = pkmHeads
        o.pkmKeys = pkmKeys
        o.pkmKnn = pkmKnn
        o.pkmActivation = pkmActivation
        o.pkmQuery = pkmQuery
        o.pkmPath = pkmPath
        o.pkmValueInit = pkmValueInit
        return o
    }

    /// What the flags ask of the config's feedforward block.
    public var change: ConfigResolution.FeedForwardChange {
        .init(kind: ffn?.variant, options: options, matching: match == .auto)
    }

    /// "--experts applies to --ffn moe|switch|sbase, not dense".
    func message(for error: FeedForwardOptionError) -> String {
        "\(Self.flag(error.option)) applies to --ffn \(error.acceptingKinds.joined(separator: "|")), not \(error.kind)"
    }
}

/// `--ffn`: a registered feedforward variant.
struct FeedForwardKindArgument: ExpressibleByArgument {
    let variant: any FeedForwardVariant.Type

    init?(argument: String) {
        guard let variant = FeedForwardConfig.variant(kind: argument) else { return nil }
        self.variant = variant
    }

    static var allValueStrings: [String] { FeedForwardConfig.kinds }
}

/// `--tokenizer`: bytes, words or bpe:N.
struct TokenizerArgument: ExpressibleByArgument {
    let choice: TokenizerChoice

    init?(argument: String) {
        guard let choice = try? TokenizerChoice(argument) else { return nil }
        self.choice = choice
    }

    static var allValueStrings: [String] { ["bytes", "words", "bpe:N"] }
}

extension MixtureOfExperts.Selection: ExpressibleByArgument {}
extension ProductKeyMemory.Activation: ExpressibleByArgument {}
extension ProductKeyMemory.Query: ExpressibleByArgument {}
extension ProductKeyMemory.Path: ExpressibleByArgument {}
extension ProductKeyMemory.ValueInit: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {}
extension ScheduleKind: ExpressibleByArgument {}

/// `--threads`: compute threads shared by OpenBLAS and lmtrain's parallel loops.
struct ThreadOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Compute threads (0: all cores, shared evenly by the ranks of an mpirun job on this node; more than the cores are not granted). OpenBLAS and lmtrain share them.")
    var threads: Int = 0

    func validate() throws {
        guard threads >= 0 else { throw ValidationError("--threads must be >= 0 (got \(threads))") }
    }

    /// Sets the thread count; more threads than cores would only contend, so asking for more
    /// gets the cores, and a line says so. Under mpirun the default divides the cores among the
    /// ranks on this node (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE): ranks that each took every
    /// core would spin against each other.
    func apply() throws {
        try validate()
        let cores = Threads.onlineCores
        if threads > cores { print("--threads \(threads) is more than the \(cores) cores here: using \(cores)") }
        let localRanks = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1
        Threads.configure(threads == 0 ? max(1, cores / max(1, localRanks)) : min(threads, cores))
    }
}
