/// A padded batch of formal-language sequences: inputs and targets [rows, length], row-major,
/// length = the longest sequence of the batch. Inputs are padded with the input pad id,
/// targets with `ignoredTarget`, which the loss and the accuracy skip. Since every model is
/// causal, padding per batch gives the losses of padding to the longest string of the file.
///
/// `fill` reuses the arrays' storage: once a batch has held the largest batch of a run, filling
/// allocates nothing (as long as no copy of `inputs` or `targets` is kept alive).
public struct FormalBatch: Sendable {
    public static let ignoredTarget: Int32 = -1

    public private(set) var inputs: [Int32] = []
    public private(set) var targets: [Int32] = []
    public private(set) var rows = 0
    public private(set) var length = 0

    public init() {}

    /// Fills the batch with sequences `indices` of `split` of `dataset`, in that order.
    public mutating func fill(from dataset: FormalDataset, split: FormalSplit, indices: some Collection<Int>) {
        let sequences = dataset[split]
        rows = indices.count
        length = indices.reduce(0) { max($0, sequences.inputs[$1].count) }
        inputs.removeAll(keepingCapacity: true)
        targets.removeAll(keepingCapacity: true)
        for index in indices {
            let input = sequences.inputs[index]
            let padding = length - input.count
            inputs.append(contentsOf: input)
            inputs.append(contentsOf: repeatElement(dataset.inputPadID, count: padding))
            targets.append(contentsOf: sequences.targets[index])
            targets.append(contentsOf: repeatElement(Self.ignoredTarget, count: padding))
        }
    }
}
