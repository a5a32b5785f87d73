/// Where one named parameter tensor lives inside the flat parameter arena.
public struct ParameterView: Sendable, Hashable, Codable {
    /// Checkpoint name, e.g. `layers.0.attention.query.weight` (Docs/checkpoint-format.md).
    public let name: String
    /// Row-major shape; linear weights are `[out, in]` as in PyTorch.
    public let shape: [Int]
    /// Offset of the first element in the arena, in elements.
    public let offset: Int

    public var count: Int { shape.reduce(1, *) }
}

/// The ordered list of a model's parameter tensors: built once from a config, before any
/// memory exists, so it also counts parameters exactly.
public struct ParameterLayout: Sendable {
    public private(set) var views: [ParameterView] = []
    /// Total number of scalars, the size of each arena.
    public private(set) var count = 0
    private var index: [String: Int] = [:]

    public init() {}

    /// Appends a tensor; names must be unique.
    public mutating func add(_ name: String, shape: [Int]) -> ParameterView {
        precondition(index[name] == nil, "duplicate parameter name \(name)")
        precondition(shape.allSatisfy { $0 > 0 }, "parameter \(name) has an empty shape \(shape)")
        let view = ParameterView(name: name, shape: shape, offset: count)
        index[name] = views.count
        views.append(view)
        count += view.count
        return view
    }

    public func view(named name: String) -> ParameterView? {
        index[name].map { views[$0] }
    }

    /// Scalars of the tensors whose names satisfy `belongs`.
    public func count(where belongs: (String) -> Bool) -> Int {
        views.reduce(0) { $0 + (belongs($1.name) ? $1.count : 0) }
    }
}

/// Where a layer registers its parameter tensors: a name prefix inside a layout being built.
/// A model creates the root scope, hands each layer a child scope (`layers.3.attention`), and
/// the layer names its own tensors (`query.weight`), so checkpoint names follow the model's
/// structure without any layer knowing where it sits.
public struct ParameterScope {
    private final class Builder {
        var layout = ParameterLayout()
    }

    private let builder: Builder
    /// The full name of this scope, "" for the root.
    public let prefix: String

    /// A root scope over an empty layout.
    public init() {
        builder = Builder()
        prefix = ""
    }

    private init(builder: Builder, prefix: String) {
        self.builder = builder
        self.prefix = prefix
    }

    /// The scope `PREFIX.name`.
    public func child(_ name: String) -> ParameterScope {
        ParameterScope(builder: builder, prefix: qualified(name))
    }

    /// Appends the tensor `PREFIX.name` to the layout.
    public func tensor(_ name: String, shape: [Int]) -> ParameterView {
        builder.layout.add(qualified(name), shape: shape)
    }

    /// Everything registered through this scope's tree so far.
    public var layout: ParameterLayout { builder.layout }

    private func qualified(_ name: String) -> String { prefix.isEmpty ? name : "\(prefix).\(name)" }
}

/// One flat allocation for all parameter values and one for their gradients: zeroing,
/// clipping, the update and the checkpoint are single passes over these.
///
/// Gradient groups: a training pass may split its streams (batch rows) into `gradientGroups`
/// contiguous groups and accumulate each group's share of every batch sum in its own copy of
/// the gradients (`gradient(_:group:)`); `sumGradientGroups` then adds the copies in a fixed
/// pairwise order into `gradients`. A data-parallel job whose ranks hold whole groups adds the
/// same numbers in the same order as one process, so its gradients are the same bits (see
/// Docs/distributed.md). Layers that do not split their sums write everything into group 0:
/// the total is the same, only its rounding depends on the split.
public final class ParameterArena: @unchecked Sendable {
    public let layout: ParameterLayout
    public let values: UnsafeMutablePointer<Float>
    /// The gradients; group 0's copy while a pass runs with several groups.
    public let gradients: UnsafeMutablePointer<Float>
    /// The copies of groups 1 ..< gradientGroups.
    private var groupGradients: [UnsafeMutablePointer<Float>] = []
    public var count: Int { layout.count }
    /// Groups of streams whose batch sums are accumulated apart (1: all in `gradients`).
    public var gradientGroups: Int { groupGradients.count + 1 }

    public init(layout: ParameterLayout) {
        self.layout = layout
        values = .allocate(capacity: max(1, layout.count))
        gradients = .allocate(capacity: max(1, layout.count))
        values.initialize(repeating: 0, count: max(1, layout.count))
        gradients.initialize(repeating: 0, count: max(1, layout.count))
    }

    deinit {
        values.deallocate()
        gradients.deallocate()
        for copy in groupGradients { copy.deallocate() }
    }

    @inlinable public func value(_ view: ParameterView) -> UnsafeMutablePointer<Float> {
        values + view.offset
    }

    @inlinable public func gradient(_ view: ParameterView) -> UnsafeMutablePointer<Float> {
        gradients + view.offset
    }

    /// `view`'s gradient in group `group`'s copy.
    public func gradient(_ view: ParameterView, group: Int) -> UnsafeMutablePointer<Float> {
        (group == 0 ? gradients : groupGradients[group - 1]) + view.offset
    }

    /// Allocates (or frees) the copies for `groups` groups, zeroed.
    public func setGradientGroups(_ groups: Int) {
        precondition(groups >= 1, "gradient groups \(groups)")
        while groupGradients.count > groups - 1 { groupGradients.removeLast().deallocate() }
        while groupGradients.count < groups - 1 {
            let copy = UnsafeMutablePointer<Float>.allocate(capacity: max(1, count))
            copy.initialize(repeating: 0, count: max(1, count))
            groupGradients.append(copy)
        }
    }

    /// Rows `rows * g / G ..< rows * (g + 1) / G` of a pass over `rows` stream-major rows
    /// (G = `gradientGroups`): group g's streams when G divides the pass's streams.
    public func rows(ofGroup group: Int, in rows: Int) -> Range<Int> {
        rowsOfGroup(group, of: gradientGroups, in: rows)
    }

    public func zeroGradients() {
        gradients.update(repeating: 0, count: count)
        for copy in groupGradients { copy.update(repeating: 0, count: count) }
    }

    /// gradients = the groups' copies summed pairwise: ((g0 + g1) + (g2 + g3)) + ..., the
    /// order a job whose ranks each hold a power-of-two run of whole groups reproduces; the
    /// other copies are left holding partial sums.
    public func sumGradientGroups() {
        let groups = gradientGroups
        guard groups > 1 else { return }
        let all = [gradients] + groupGradients
        forEachPairwiseAddition(parts: groups) { first, second in
            let target = SendablePointer(all[first]), source = SendablePointer(all[second])
            parallelChunks(count) { range in
                addInPlace(target.mutable + range.lowerBound, source.pointer + range.lowerBound, count: range.count)
            }
        }
    }

    /// Euclidean norm of all gradients together, accumulated in Double.
    public func gradientNorm() -> Double {
        sumOfSquaresDouble(gradients, count: count).squareRoot()
    }
}
