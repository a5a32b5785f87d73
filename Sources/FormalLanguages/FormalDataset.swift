/// The three splits of a formal-language data set.
public enum FormalSplit: String, CaseIterable, Sendable, Codable {
    /// The training strings.
    case train
    /// Evaluation in the training window ("valid" in the paper's logs).
    case bin0
    /// Evaluation on longer strings ("valid2", kept in the test files).
    case bin1
}

/// The sequences of one split as ids of the data set's vocabularies; `targets[k]` has one id per
/// symbol of `inputs[k]`.
public struct FormalSequences: Sendable, Equatable {
    public let inputs: [[Int32]]
    public let targets: [[Int32]]

    public var count: Int { inputs.count }
    public var longest: Int { inputs.lazy.map(\.count).max() ?? 0 }
}

/// A formal-language data set: three splits and the two vocabularies.
///
/// Vocabulary ids follow the order in which symbols first appear in the training files
/// (inputs in the .src file, targets in the .tgt file, line by line), then in the Bin0 and
/// Bin1 files for any symbol the training files lack; only symbols that occur get an id. These
/// are the model's ids as they are: a model reads V_in = `inputVocabulary.count` + 1 input ids,
/// the last (`inputPadID`) being padding, and scores V_out = `targetVocabulary.count` + 1
/// classes, the last (`targetPadID`) being the padding class that no target uses.
public struct FormalDataset: Sendable, Equatable {
    public let task: FormalTask
    public let inputVocabulary: [String]
    public let targetVocabulary: [String]
    public let train: FormalSequences
    public let bin0: FormalSequences
    public let bin1: FormalSequences

    public subscript(split: FormalSplit) -> FormalSequences {
        switch split {
        case .train: train
        case .bin0: bin0
        case .bin1: bin1
        }
    }

    /// The padding input id, one past the input symbols.
    public var inputPadID: Int32 { Int32(inputVocabulary.count) }
    /// The padding class, one past the target symbols.
    public var targetPadID: Int32 { Int32(targetVocabulary.count) }
    /// V_in: input ids a model embeds, padding included.
    public var inputClassCount: Int { inputVocabulary.count + 1 }
    /// V_out: classes a model scores, the padding class included.
    public var targetClassCount: Int { targetVocabulary.count + 1 }

    /// The input symbols of a sequence of input ids.
    public func inputSymbols(_ ids: [Int32]) -> [String] { ids.map { inputVocabulary[Int($0)] } }

    /// The target symbols of a sequence of target ids.
    public func targetSymbols(_ ids: [Int32]) -> [String] { ids.map { targetVocabulary[Int($0)] } }

    /// The data set of input strings given as alphabet indices, each in the task's language
    /// domain (generated or checked); targets follow from the inputs.
    init(task: FormalTask, train: [[UInt8]], bin0: [[UInt8]], bin1: [[UInt8]]) {
        self.task = task
        let splits = [train, bin0, bin1].map { words in
            words.map { word in
                // The generators and the file checker only pass strings with targets.
                guard let targets = try? task.targetIndices(of: word) else {
                    preconditionFailure("\(task.rawValue): a string outside the language reached the data set")
                }
                return (word, targets)
            }
        }
        var inputIDs = FirstAppearanceIDs(alphabetSize: task.inputAlphabet.count)
        var targetIDs = FirstAppearanceIDs(alphabetSize: task.targetAlphabet.count)
        for split in splits {
            for (word, targets) in split {
                inputIDs.register(word)
                targetIDs.register(targets)
            }
        }
        inputVocabulary = inputIDs.order.map { task.inputAlphabet[Int($0)] }
        targetVocabulary = targetIDs.order.map { task.targetAlphabet[Int($0)] }
        let sequences = splits.map { split in
            FormalSequences(
                inputs: split.map { inputIDs.ids(of: $0.0) }, targets: split.map { targetIDs.ids(of: $0.1) })
        }
        self.train = sequences[0]
        self.bin0 = sequences[1]
        self.bin1 = sequences[2]
    }
}

/// Ids given to alphabet indices in order of first appearance.
private struct FirstAppearanceIDs {
    private var idOfIndex: [Int32]
    private(set) var order: [UInt8] = []

    init(alphabetSize: Int) { idOfIndex = [Int32](repeating: -1, count: alphabetSize) }

    mutating func register(_ indices: [UInt8]) {
        for index in indices where idOfIndex[Int(index)] < 0 {
            idOfIndex[Int(index)] = Int32(order.count)
            order.append(index)
        }
    }

    func ids(of indices: [UInt8]) -> [Int32] { indices.map { idOfIndex[Int($0)] } }
}
