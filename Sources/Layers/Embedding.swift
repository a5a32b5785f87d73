import Tensor

// Token embedding. Legend: R rows (tokens), V vocabulary, C width.
//   y[r] = E[token[r]], E: [V, C]; Xavier-uniform init, no sqrt(C) scaling (Docs/model.md).

/// Looks up one row of the table per token.
public final class Embedding {
    public let vocabularySize: Int
    public let width: Int
    public let table: ParameterView

    /// Registers `weight` [V, C] under `scope`.
    public init(_ scope: ParameterScope, vocabularySize: Int, width: Int) {
        self.vocabularySize = vocabularySize
        self.width = width
        table = scope.tensor("weight", shape: [vocabularySize, width])
    }

    /// `torch.nn.init.xavier_uniform_` on a `[V, C]` weight: U(+-sqrt(6 / (V + C))).
    public func initialize(_ arena: ParameterArena, _ context: inout InitializationContext) {
        let bound = (6.0 / Double(vocabularySize + width)).squareRoot()
        Initializer.uniform(
            arena.value(table), count: vocabularySize * width, bound: bound, rng: &context.rng)
    }

    /// tokens: [R] ids in 0..<V -> y: [R, C].
    public func forward(
        _ tokens: UnsafePointer<Int32>, rows: Int, output y: UnsafeMutablePointer<Float>,
        arena: ParameterArena
    ) {
        let e = arena.value(table)
        for r in 0..<rows {
            let id = Int(tokens[r])
            precondition(id >= 0 && id < vocabularySize, "token id \(id) outside the vocabulary")
            (y + r * width).update(from: e + id * width, count: width)
        }
    }

    /// dE[token[r]] += dy[r], in row order (deterministic), each gradient group into its copy.
    public func backward(
        _ tokens: UnsafePointer<Int32>, dOutput dy: UnsafePointer<Float>, rows: Int,
        arena: ParameterArena
    ) {
        for group in 0..<arena.gradientGroups {
            let g = arena.gradient(table, group: group)
            for r in arena.rows(ofGroup: group, in: rows) {
                addInPlace(g + Int(tokens[r]) * width, dy + r * width, count: width)
            }
        }
    }
}
