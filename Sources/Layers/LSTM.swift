import Tensor

// Multi-layer LSTM with PyTorch `nn.LSTM` semantics (batch-first rows, no dropout between
// layers, no projection).
// Legend: B sequences, T positions, E input width, D hidden width, L layers, R = B T rows;
//   σ the logistic sigmoid, ⊙ the elementwise product.
// Layer l reads x^l (x^0 = the input [R, E], x^l = h^(l-1) [R, D] after), with h_0 = c_0 = 0
// for every sequence:
//   a_t = W_ih x^l_t + b_ih + W_hh h_(t-1) + b_hh        [4D] in the gate order i, f, g, o
//   i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o)
//   c_t = f ⊙ c_(t-1) + i ⊙ g;  h_t = o ⊙ tanh(c_t)
// The output is h^(L-1) [R, D]. W_ih [4D, E or D], W_hh [4D, D], b_ih, b_hh [4D], every tensor
// U(±1/sqrt(D)); tensors `layers.{l}.weight_ih`, `.weight_hh`, `.bias_ih`, `.bias_hh`.
// Forward per layer: the input projections of all positions are one product; then per step
// one product [B, D] x [D, 4D] adds W_hh h_(t-1) for the B sequences at once.
// Backward through time per layer, top layer first, from dh^l [R, D] (dy for the top layer),
// storing the activated gates, c and tanh(c) of every step:
//   dh_t = dh^l_t + W_hh^T da_(t+1)                         (the product per step, rows of B)
//   dc_t = dc from step t+1 + dh_t ⊙ o ⊙ (1 - tanh(c_t)^2);  dc to step t-1 = dc_t ⊙ f
//   da_i = dc_t ⊙ g ⊙ i(1 - i);  da_f = dc_t ⊙ c_(t-1) ⊙ f(1 - f)
//   da_g = dc_t ⊙ i ⊙ (1 - g^2); da_o = dh_t ⊙ tanh(c_t) ⊙ o(1 - o)
//   dW_ih += da^T x^l;  dW_hh += sum_t da_t^T h_(t-1);  db_ih, db_hh += column sums of da
//   dh^(l-1) = da W_ih  (for l = 0: dx += da W_ih)
// Parallel work: elementwise steps split the B rows; the products split themselves; every
// gradient sums in an order that does not depend on the thread count.

/// L-layer LSTM over `[B, T, E]` -> `[B, T, D]`.
public final class LSTM {
    /// The tensors of one layer, PyTorch's `weight_ih_l{l}`, ... under `layers.{l}`.
    public struct LayerParameters: Sendable {
        public let inputWeight: ParameterView  // weight_ih [4D, E or D]
        public let hiddenWeight: ParameterView  // weight_hh [4D, D]
        public let inputBias: ParameterView  // bias_ih [4D]
        public let hiddenBias: ParameterView  // bias_hh [4D]
    }

    public let inputWidth: Int
    public let width: Int
    public let layers: [LayerParameters]
    public var layerCount: Int { layers.count }

    private var saved = TokenShape(batch: 0, length: 0)
    private let gates = FloatBuffer()  // activated i, f, g, o: [L, R, 4D]
    private let cells = FloatBuffer()  // c: [L, R, D]
    private let cellTanh = FloatBuffer()  // tanh(c): [L, R, D]
    private let hidden = FloatBuffer()  // h: [L, R, D]
    // Backward only.
    private let dGates = FloatBuffer()  // da of one layer: [R, 4D]
    private let dHidden = FloatBuffer()  // dh of one layer: [R, D]
    private let dCell = FloatBuffer()  // dc carried between steps: [B, D]

    /// Registers `layers.{l}.weight_ih` [4D, E for l = 0, else D], `layers.{l}.weight_hh`
    /// [4D, D], `layers.{l}.bias_ih` and `layers.{l}.bias_hh` [4D] under `scope`.
    public init(_ scope: ParameterScope, inputWidth: Int, width: Int, layers layerCount: Int) {
        precondition(inputWidth > 0 && width > 0 && layerCount > 0)
        self.inputWidth = inputWidth
        self.width = width
        layers = (0..<layerCount).map { l in
            let layer = scope.child("layers.\(l)")
            return LayerParameters(
                inputWeight: layer.tensor("weight_ih", shape: [4 * width, l == 0 ? inputWidth : width]),
                hiddenWeight: layer.tensor("weight_hh", shape: [4 * width, width]),
                inputBias: layer.tensor("bias_ih", shape: [4 * width]),
                hiddenBias: layer.tensor("bias_hh", shape: [4 * width]))
        }
    }

    /// Every tensor U(±1/sqrt(D)), as PyTorch.
    public func initialize(_ arena: ParameterArena, _ context: inout InitializationContext) {
        let bound = 1 / Double(width).squareRoot()
        for layer in layers {
            for view in [layer.inputWeight, layer.hiddenWeight, layer.inputBias, layer.hiddenBias] {
                Initializer.uniform(arena.value(view), count: view.count, bound: bound, rng: &context.rng)
            }
        }
    }

    /// Gates, cells and hidden states of every layer and step; for a training pass the
    /// gradients of one layer and the ones of the bias column sums.
    public func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        let rows = pass.rows, l = layerCount, d = width
        plan.declare(gates, "LSTM gates", count: l * rows * 4 * d)
        plan.declare(cells, "LSTM cells", count: l * rows * d)
        plan.declare(cellTanh, "LSTM tanh of cells", count: l * rows * d)
        plan.declare(hidden, "LSTM hidden states", count: l * rows * d)
        guard pass.training else { return }
        plan.declare(dGates, "LSTM gate gradients", count: rows * 4 * d)
        plan.declare(dHidden, "LSTM hidden-state gradients", count: rows * d)
        plan.declare(dCell, "LSTM cell-gradient carry", count: pass.batch * d)
        Ones.shared.declare(count: rows, in: &plan)
    }

    /// x: [B, T, E] -> y: [B, T, D] (overwritten, the top layer's h).
    public func forward(
        _ x: UnsafePointer<Float>, shape: TokenShape, output y: UnsafeMutablePointer<Float>,
        arena: ParameterArena
    ) {
        let (b, t, d, rows) = (shape.batch, shape.length, width, shape.rows)
        saved = shape
        guard rows > 0 else { return }
        let gatesP = SendablePointer(gates.reserved(layerCount * rows * 4 * d))
        let cellsP = SendablePointer(cells.reserved(layerCount * rows * d))
        let tanhP = SendablePointer(cellTanh.reserved(layerCount * rows * d))
        let hiddenP = SendablePointer(hidden.reserved(layerCount * rows * d))
        for (l, layer) in layers.enumerated() {
            let input = l == 0 ? x : hiddenP.pointer + (l - 1) * rows * d
            let inputWidth = layer.inputWeight.shape[1]
            let a = gatesP.mutable + l * rows * 4 * d
            let c = cellsP.mutable + l * rows * d, tc = tanhP.mutable + l * rows * d
            let hOut = hiddenP.mutable + l * rows * d
            gemm(transposeB: true, m: rows, n: 4 * d, k: inputWidth, a: input, lda: inputWidth,
                 b: arena.value(layer.inputWeight), ldb: inputWidth, beta: 0, c: a, ldc: 4 * d)
            addRowVector(a, arena.value(layer.inputBias), rows: rows, columns: 4 * d)
            addRowVector(a, arena.value(layer.hiddenBias), rows: rows, columns: 4 * d)
            let aP = SendablePointer(a), cP = SendablePointer(c), tcP = SendablePointer(tc)
            let hP = SendablePointer(hOut)
            for step in 0..<t {
                if step > 0 {
                    // Row stride T: the rows of this step in the B sequences.
                    gemm(transposeB: true, m: b, n: 4 * d, k: d, a: hOut + (step - 1) * d, lda: t * d,
                         b: arena.value(layer.hiddenWeight), ldb: d, beta: 1, c: a + step * 4 * d, ldc: t * 4 * d)
                }
                parallelRows(b, width: d) { item in
                    let row = item * t + step
                    let gate = aP.mutable + row * 4 * d
                    sigmoidInPlace(gate, count: 2 * d)
                    tanhInPlace(gate + 2 * d, count: d)
                    sigmoidInPlace(gate + 3 * d, count: d)
                    let i = gate, f = gate + d, g = gate + 2 * d, o = gate + 3 * d
                    let cell = cP.mutable + row * d, tanhCell = tcP.mutable + row * d
                    if step > 0 {
                        let previous = cP.pointer + (row - 1) * d
                        for j in 0..<d { cell[j] = f[j] * previous[j] + i[j] * g[j] }
                    } else {
                        for j in 0..<d { cell[j] = i[j] * g[j] }
                    }
                    tanhCell.update(from: cell, count: d)
                    tanhInPlace(tanhCell, count: d)
                    let h = hP.mutable + row * d
                    for j in 0..<d { h[j] = o[j] * tanhCell[j] }
                }
            }
        }
        y.update(from: hiddenP.pointer + (layerCount - 1) * rows * d, count: rows * d)
    }

    /// Accumulates every layer's parameter gradients and `dx += dL/dx` ([B, T, E]) after
    /// `forward` of the same x.
    public func backward(
        _ x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, shape: TokenShape,
        dInput dx: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        precondition(shape == saved, "backward needs the shape of the last forward pass")
        let (b, t, d, rows) = (shape.batch, shape.length, width, shape.rows)
        guard rows > 0 else { return }
        let da = dGates.reserved(rows * 4 * d), dh = dHidden.reserved(rows * d)
        let daP = SendablePointer(da), dhP = SendablePointer(dh)
        let carryP = SendablePointer(dCell.reserved(b * d))
        dh.update(from: dy, count: rows * d)
        for l in stride(from: layerCount - 1, through: 0, by: -1) {
            let layer = layers[l]
            let gateP = SendablePointer(gates.pointer + l * rows * 4 * d)
            let cellP = SendablePointer(cells.pointer + l * rows * d)
            let tanhP = SendablePointer(cellTanh.pointer + l * rows * d)
            let hOut = hidden.pointer + l * rows * d
            carryP.mutable.update(repeating: 0, count: b * d)
            for step in stride(from: t - 1, through: 0, by: -1) {
                parallelRows(b, width: d) { item in
                    let row = item * t + step
                    let gate = gateP.pointer + row * 4 * d
                    let i = gate, f = gate + d, g = gate + 2 * d, o = gate + 3 * d
                    let tanhCell = tanhP.pointer + row * d, dhRow = dhP.pointer + row * d
                    let carry = carryP.mutable + item * d, out = daP.mutable + row * 4 * d
                    for j in 0..<d {
                        let dc = carry[j] + dhRow[j] * o[j] * (1 - tanhCell[j] * tanhCell[j])
                        let previous: Float = step > 0 ? cellP.pointer[(row - 1) * d + j] : 0
                        out[j] = dc * g[j] * i[j] * (1 - i[j])
                        out[d + j] = dc * previous * f[j] * (1 - f[j])
                        out[2 * d + j] = dc * i[j] * (1 - g[j] * g[j])
                        out[3 * d + j] = dhRow[j] * tanhCell[j] * o[j] * (1 - o[j])
                        carry[j] = dc * f[j]
                    }
                }
                if step > 0 {
                    gemm(m: b, n: d, k: 4 * d, a: da + step * 4 * d, lda: t * 4 * d,
                         b: arena.value(layer.hiddenWeight), ldb: d, beta: 1, c: dh + (step - 1) * d, ldc: t * d)
                }
            }
            // dW_hh pairs da_t with h_(t-1), per sequence.
            if t > 1 {
                for item in 0..<b {
                    gemm(transposeA: true, m: 4 * d, n: d, k: t - 1, a: da + (item * t + 1) * 4 * d, lda: 4 * d,
                         b: hOut + item * t * d, ldb: d, beta: 1, c: arena.gradient(layer.hiddenWeight), ldc: d)
                }
            }
            let input = l == 0 ? x : UnsafePointer(hidden.pointer + (l - 1) * rows * d)
            let inputWidth = layer.inputWeight.shape[1]
            gemm(transposeA: true, m: 4 * d, n: inputWidth, k: rows, a: da, lda: 4 * d, b: input, ldb: inputWidth,
                 beta: 1, c: arena.gradient(layer.inputWeight), ldc: inputWidth)
            addColumnSums(arena.gradient(layer.inputBias), of: da, rows: rows, columns: 4 * d, rowStride: 4 * d)
            addColumnSums(arena.gradient(layer.hiddenBias), of: da, rows: rows, columns: 4 * d, rowStride: 4 * d)
            // The layer below's dh (overwritten), or dx.
            gemm(m: rows, n: inputWidth, k: 4 * d, a: da, lda: 4 * d, b: arena.value(layer.inputWeight),
                 ldb: inputWidth, beta: l == 0 ? 1 : 0, c: l == 0 ? dx : dh, ldc: inputWidth)
        }
    }
}

/// Runs `body(item)` for the `count` rows of one recurrent step, spread over the workers
/// when the step is large enough to pay for it. Every row is independent, so the result does
/// not depend on the split.
private func parallelRows(_ count: Int, width: Int, _ body: @Sendable (Int) -> Void) {
    let chunks = max(1, min(count, count * width / 4096))
    if chunks == 1 {
        for item in 0..<count { body(item) }
        return
    }
    parallelFor(chunks) { chunk in
        for item in (chunk * count / chunks)..<((chunk + 1) * count / chunks) { body(item) }
    }
}
