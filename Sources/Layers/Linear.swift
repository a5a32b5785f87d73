import Tensor

// Fully connected layer. Legend: R rows, I input width, O output width.
//   y = x W^T + b, W: [O, I] (PyTorch layout), b: [O] (optional).

/// A linear map applied to every row of an `[R, I]` matrix.
public final class Linear {
    public let inputWidth: Int
    public let outputWidth: Int
    public let weight: ParameterView
    public let bias: ParameterView?

    /// Registers `weight` and, with `bias`, `bias` under `scope`.
    public init(_ scope: ParameterScope, inputWidth: Int, outputWidth: Int, bias hasBias: Bool) {
        self.inputWidth = inputWidth
        self.outputWidth = outputWidth
        weight = scope.tensor("weight", shape: [outputWidth, inputWidth])
        bias = hasBias ? scope.tensor("bias", shape: [outputWidth]) : nil
    }

    /// PyTorch's default `nn.Linear` initialisation: weight and bias U(±1/sqrt(I)).
    public func initializeUniform(_ arena: ParameterArena, _ context: inout InitializationContext) {
        let bound = 1 / Double(inputWidth).squareRoot()
        Initializer.uniform(arena.value(weight), count: weight.count, bound: bound, rng: &context.rng)
        if let bias { Initializer.uniform(arena.value(bias), count: outputWidth, bound: bound, rng: &context.rng) }
    }

    /// The bias gradient of a training pass over `rows` rows sums columns with `Ones`.
    public func declareBuffers(rows: Int, training: Bool, in plan: inout BufferPlan) {
        if training && bias != nil { Ones.shared.declare(count: rows, in: &plan) }
    }

    /// x: [R, I] -> y: [R, O] (overwritten).
    public func forward(
        _ x: UnsafePointer<Float>, rows: Int, output y: UnsafeMutablePointer<Float>,
        arena: ParameterArena
    ) {
        gemmInRowGroups(
            arena.gradientGroups, transposeB: true, m: rows, n: outputWidth, k: inputWidth,
            a: x, lda: inputWidth, b: arena.value(weight), ldb: inputWidth,
            beta: 0, c: y, ldc: outputWidth)
        if let bias {
            addRowVector(y, arena.value(bias), rows: rows, columns: outputWidth)
        }
    }

    /// Accumulates dW += dy^T x, db += column sums of dy (each gradient group's rows into its
    /// own copy) and, when `dInput` is given,
    /// dx (+)= dy W (`accumulateInput` false overwrites dx).
    public func backward(
        _ x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, rows: Int,
        dInput dx: UnsafeMutablePointer<Float>?, accumulateInput: Bool = true,
        arena: ParameterArena
    ) {
        gemmOverRowGroups(
            arena.gradientGroups, m: outputWidth, n: inputWidth, rows: rows, a: dy, lda: outputWidth,
            b: x, ldb: inputWidth, gradient: { arena.gradient(weight, group: $0) }, ldc: inputWidth)
        if let bias {
            for group in 0..<arena.gradientGroups {
                let part = arena.rows(ofGroup: group, in: rows)
                addColumnSums(
                    arena.gradient(bias, group: group), of: dy + part.lowerBound * outputWidth,
                    rows: part.count, columns: outputWidth, rowStride: outputWidth)
            }
        }
        if let dx {
            gemmInRowGroups(
                arena.gradientGroups, m: rows, n: inputWidth, k: outputWidth,
                a: dy, lda: outputWidth, b: arena.value(weight), ldb: inputWidth,
                beta: accumulateInput ? 1 : 0, c: dx, ldc: inputWidth)
        }
    }
}
