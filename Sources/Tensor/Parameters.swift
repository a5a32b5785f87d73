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
/// memory exists, so it can also be used to count parameters.
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
}

/// One flat allocation for all parameter values and one for their gradients (STYLE.md: zeroing,
/// clipping, the update and the checkpoint are single passes over these).
public final class ParameterArena: @unchecked Sendable {
    public let layout: ParameterLayout
    public let values: UnsafeMutablePointer<Float>
    public let gradients: UnsafeMutablePointer<Float>
    public var count: Int { layout.count }

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
    }

    @inlinable public func value(_ view: ParameterView) -> UnsafeMutablePointer<Float> {
        values + view.offset
    }

    @inlinable public func gradient(_ view: ParameterView) -> UnsafeMutablePointer<Float> {
        gradients + view.offset
    }

    public func zeroGradients() {
        gradients.update(repeating: 0, count: count)
    }

    /// Euclidean norm of all gradients together, accumulated in Double.
    public func gradientNorm() -> Double {
        sumOfSquaresDouble(gradients, count: count).squareRoot()
    }
}
