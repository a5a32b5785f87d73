import Datasets
import FormalLanguages
import Layers
import Models

/// The formal-language runs: one model on one task with that task's budget, named
/// `TASK-MODEL` (`parity-srwm`, `dyck-1-lstm`). Every model gets the same budget on a task:
/// the same width, depth, batch, learning rate and epochs (Docs/formal-languages.md says how
/// they were chosen).
public struct FormalPreset: Sendable, Equatable, CustomStringConvertible {
    /// The seven models of the experiments.
    public enum Model: String, CaseIterable, Sendable {
        case linearTransformer = "lt"
        case deltaNet = "deltanet"
        case recurrentDeltaNet = "rdn"
        case selfReferential = "srwm"
        case transformer
        case lstm
        case elstm

        /// The fast-weight mixer of the four fast-weight models.
        var mixer: FastWeightTransformer.Config.Mixer? {
            switch self {
            case .linearTransformer: .linearTransformer
            case .deltaNet: .deltaNet
            case .recurrentDeltaNet: .recurrentDeltaNet
            case .selfReferential: .selfReferential
            case .transformer, .lstm, .elstm: nil
            }
        }
    }

    public let task: FormalTask
    public let model: Model

    public init(task: FormalTask, model: Model) {
        self.task = task
        self.model = model
    }

    /// Parses `TASK-MODEL`.
    public init?(name: String) {
        for model in Model.allCases {
            let suffix = "-" + model.rawValue
            if name.hasSuffix(suffix), let task = FormalTask(name: String(name.dropLast(suffix.count))) {
                self.init(task: task, model: model)
                return
            }
        }
        return nil
    }

    public var description: String { "\(task.rawValue)-\(model.rawValue)" }

    public static var allNames: [String] {
        FormalTask.allCases.flatMap { task in Model.allCases.map { FormalPreset(task: task, model: $0).description } }
    }

    /// The budget of every model on a task.
    public struct Budget: Sendable, Equatable {
        public var layers: Int
        public var modelWidth: Int
        public var heads: Int
        public var feedForwardFactor: Int
        /// E of the LSTM and e-LSTM embeddings.
        public var embeddingSize: Int
        public var batchSize: Int
        public var learningRate: Double
        public var epochs: Int
    }

    /// The task's budget (Docs/formal-languages.md, "Configurations"): one size for every
    /// task, small enough for a 2-core machine; the learning rate from a sweep over 1e-3 and
    /// 3e-4 (1e-3 was as good or better on every task); an epoch cap that lets the whole grid
    /// run in hours on 2 cores, longer for parity, whose strings are short and whose result
    /// the experiments are about.
    public static func budget(_ task: FormalTask) -> Budget {
        Budget(
            layers: 2, modelWidth: 64, heads: 4, feedForwardFactor: 4, embeddingSize: 64, batchSize: 32,
            learningRate: 1e-3, epochs: task == .parity ? 10 : 5)
    }

    public var config: RunConfig {
        let b = Self.budget(task)
        let model: ModelConfig
        if let mixer = self.model.mixer {
            model = ModelConfig(FastWeightTransformer.Config(
                mixer: mixer, modelWidth: b.modelWidth, layers: b.layers, heads: b.heads,
                feedForwardFactor: b.feedForwardFactor))
        } else {
            switch self.model {
            case .transformer:
                model = ModelConfig(SoftmaxTransformer.Config(
                    modelWidth: b.modelWidth, layers: b.layers, heads: b.heads, feedForwardFactor: b.feedForwardFactor))
            case .lstm:
                model = ModelConfig(RecurrentNetwork.Config(cell: .lstm, embeddingSize: b.embeddingSize, modelWidth: b.modelWidth, layers: b.layers))
            default:
                model = ModelConfig(RecurrentNetwork.Config(cell: .elstm, embeddingSize: b.embeddingSize, modelWidth: b.modelWidth))
            }
        }
        // The paper's protocol: Adam (0.9, 0.995), eps 1e-9, a constant rate, no weight decay,
        // no clipping, no dropout; evaluation after every 50 batches and at epoch ends. A
        // checkpoint every epoch of the generated data (10000 strings), so that an interrupted
        // run (a sweep's cell) resumes where it was.
        var training = TrainingConfig(
            steps: 1, batchSize: b.batchSize, segmentLength: 1, memoryLength: 0, optimizer: .adam,
            schedule: .constant, learningRate: b.learningRate, gradientClip: 0, adamBeta1: 0.9,
            adamBeta2: 0.995, adamEpsilon: 1e-9, seed: 1, logInterval: 50, validationInterval: 50,
            checkpointInterval: (FormalGenerationSettings.paper.trainingSize + b.batchSize - 1) / b.batchSize,
            keepCheckpoints: 1)
        training.epochs = b.epochs
        // The task's alphabets plus the pad symbol and class; the data set them exactly when
        // the run starts (a file may use fewer symbols).
        var sized = model
        sized.vocabularySize = task.targetAlphabet.count + 1
        sized.inputVocabularySize = task.inputAlphabet.count + 1
        return RunConfig(
            model: sized, training: training, evaluation: EvaluationConfig(batchSize: 256, memorySegments: 0),
            data: DataConfig(task: task.rawValue))
    }
}

/// Every named starting configuration: the language-model presets (`Preset`) and the
/// formal-language ones (`FormalPreset`).
public enum Presets {
    /// The config of preset `name`, nil when there is none.
    public static func config(named name: String) -> RunConfig? {
        Preset(name: name)?.config ?? FormalPreset(name: name)?.config
    }

    /// Every preset name.
    public static var allNames: [String] { Preset.allNames + FormalPreset.allNames }
}
