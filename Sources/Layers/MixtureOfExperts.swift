import Foundation
import Tensor

// Mixture-of-experts feedforward blocks (Docs/feedforward.md): σ-MoE and its
// softmax ablations, Switch, and S-BASE, sharing one sparse implementation.
// Legend: R rows (tokens), d width, N experts, G expert size, K experts per token,
//   P = R * K (token, slot) pairs.
//   z = W3 x                                  selector logits, W3: [N, d], no bias
//   choose K experts from the selection scores (per variant, after expert dropout)
//   y = sum over chosen e of g_e * ReLU(x W1_e) W2_e    W1: [N, d, G], W2: [N, G, d], no biases
// Variants (selection scores -> gates):
//   sigmoid          s = sigmoid(z), dropout sets s to 0, top-K of s, g = s
//   softmax-before   p = softmax(z), dropout sets p to 0, top-K of p, g = p
//   softmax-after    dropout sets z to -inf, top-K of z, g = softmax of the K chosen raw z
//   switch           softmax-before with K = 1
//   sbase            training: r = exp(z + a + b) from 3 official Sinkhorn iterations per
//                    sequence, dropout sets r to -inf, top-K of r; evaluation: top-K of z;
//                    g = sigmoid(z) (no gradient through the routing)
// Auxiliary losses (training only, added to the loss): the entropy regulariser
//   gamma * sum_e pbar_e log pbar_e, log pbar = logsumexp over rows of log_softmax(z) - log R
//   (softmax-after: over the K chosen logits per row, slots in ascending expert order), or
//   Switch's balancing loss (gamma / N) * sum_e f_e P_e.
// CPU kernels: (row, slot) pairs are sorted by expert (a stable counting sort), each expert
// runs one GEMM over its contiguous rows, and results are gathered back per row in slot order;
// the N - K experts a token did not choose cost nothing.

/// Sparse mixture of K of N two-layer ReLU experts per token.
public final class MixtureOfExperts: FeedForwardLayer {
    /// How σ-MoE chooses and gates experts (`--selection`).
    public enum Selection: String, Sendable, Codable, CaseIterable {
        case sigmoid
        case softmaxBeforeTopK = "softmax-before"
        case softmaxAfterTopK = "softmax-after"
    }

    /// σ-MoE (`--ffn moe`) and its selection ablations.
    public struct SigmaConfig: RegularizedExperts {
        public var experts: Int
        public var expertSize: Int
        public var k: Int
        /// δ: probability of zeroing each (token, expert) score before the top-K (training).
        public var expertDropout: Float
        /// γ of the entropy regulariser.
        public var regularization: Double
        public var selection: Selection

        public init(experts: Int, expertSize: Int, k: Int, expertDropout: Float = 0, regularization: Double = 1e-3, selection: Selection = .sigmoid) {
            self.experts = experts
            self.expertSize = expertSize
            self.k = k
            self.expertDropout = expertDropout
            self.regularization = regularization
            self.selection = selection
        }

        enum CodingKeys: String, CodingKey {
            case experts, k, selection, regularization
            case expertSize = "expert_size", expertDropout = "expert_dropout"
        }

        public static let kind = "moe"
        public static let options: Set<FeedForwardOption> = [
            .experts, .expertSize, .k, .expertDropout, .regularization, .selection,
        ]

        static func make(experts: Int, expertSize: Int, k: Int) -> Self {
            SigmaConfig(experts: experts, expertSize: expertSize, k: k)
        }

        public mutating func apply(_ options: FeedForwardOptions) {
            applyExpertOptions(options)
            if let v = options.selection { selection = v }
        }

        public func validate(modelWidth: Int) throws { try validateExpertFields() }

        public func makeLayer(_ scope: ParameterScope, modelWidth: Int, dropout: Float) -> any FeedForwardLayer {
            let gate: Gate = switch selection {
            case .sigmoid: .sigmoid
            case .softmaxBeforeTopK: .softmaxBefore
            case .softmaxAfterTopK: .softmaxAfter
            }
            return MixtureOfExperts(
                scope, width: modelWidth, experts: experts, expertSize: expertSize, k: k,
                expertDropout: expertDropout, gate: gate, regularizer: .entropy(regularization),
                initScale: 1, renormalizeSelector: true, valueFanIn: experts * expertSize)
        }

        public func activeParameters(modelWidth d: Int) -> Int { k * 2 * expertSize * d + experts * d }
        public func shareUsed(modelWidth: Int) -> Double { Double(k) / Double(experts) }
        public func forwardFLOPs(modelWidth d: Int) -> FeedForwardFLOPs {
            expertFLOPs(experts: experts, expertSize: expertSize, k: k, modelWidth: d)
        }

        public var summary: String {
            "σ-MoE \(experts) x \(expertSize), K \(k), \(selection.rawValue), δ \(expertDropout), γ \(regularization)"
        }
    }

    /// Switch Transformer's feedforward block (`--ffn switch`): softmax gate, K = 1, balancing
    /// loss, each expert initialised as its own MLP with variances scaled by `initScale`, no
    /// selector renormalisation.
    public struct SwitchConfig: FeedForwardVariant {
        public var experts: Int
        public var expertSize: Int
        /// γ of the balancing loss (γ / N) Σ f_e P_e.
        public var balance: Double
        /// Multiplies every initial variance (the paper's 0.1).
        public var initScale: Double

        public init(experts: Int, expertSize: Int, balance: Double = 0.01, initScale: Double = 0.1) {
            self.experts = experts
            self.expertSize = expertSize
            self.balance = balance
            self.initScale = initScale
        }

        enum CodingKeys: String, CodingKey {
            case experts, balance
            case expertSize = "expert_size", initScale = "init_scale"
        }

        public static let kind = "switch"
        public static let options: Set<FeedForwardOption> = [.experts, .expertSize, .balance]

        /// 16 experts, the expert size matched to the replaced block.
        public static func replacing(
            _ replaced: ReplacedBlock, options: FeedForwardOptions
        ) throws -> (block: Self, note: String?) {
            let (experts, size, note) = try matchedExperts(replaced, options) { n, g in
                SwitchConfig(experts: n, expertSize: g)
            }
            return (SwitchConfig(experts: experts, expertSize: size), note)
        }

        public mutating func apply(_ options: FeedForwardOptions) {
            if let v = options.experts { experts = v }
            if let v = options.expertSize { expertSize = v }
            if let v = options.balance { balance = v }
        }

        public func validate(modelWidth: Int) throws {
            try validateExperts(experts, expertSize, 1, 0)
            if !(balance >= 0 && balance.isFinite) {
                throw FeedForwardConfigError(description: "balance must be >= 0 (got \(balance))")
            }
            if !(initScale > 0 && initScale.isFinite) {
                throw FeedForwardConfigError(description: "init_scale must be positive (got \(initScale))")
            }
        }

        public func makeLayer(_ scope: ParameterScope, modelWidth: Int, dropout: Float) -> any FeedForwardLayer {
            MixtureOfExperts(
                scope, width: modelWidth, experts: experts, expertSize: expertSize, k: 1,
                expertDropout: 0, gate: .softmaxBefore, regularizer: .switchBalance(balance),
                initScale: initScale, renormalizeSelector: false, valueFanIn: expertSize)
        }

        public func activeParameters(modelWidth d: Int) -> Int { 2 * expertSize * d + experts * d }
        public func shareUsed(modelWidth: Int) -> Double { 1 / Double(experts) }
        public func forwardFLOPs(modelWidth d: Int) -> FeedForwardFLOPs {
            expertFLOPs(experts: experts, expertSize: expertSize, k: 1, modelWidth: d)
        }

        public var summary: String { "Switch \(experts) x \(expertSize)" }
    }

    /// S-BASE (`--ffn sbase`): σ-MoE's init and regulariser with Sinkhorn routing in training,
    /// sigmoid gates.
    public struct SBaseConfig: RegularizedExperts {
        public var experts: Int
        public var expertSize: Int
        public var k: Int
        public var expertDropout: Float
        public var regularization: Double
        public var sinkhornIterations: Int

        public init(experts: Int, expertSize: Int, k: Int, expertDropout: Float = 0, regularization: Double = 1e-3, sinkhornIterations: Int = 3) {
            self.experts = experts
            self.expertSize = expertSize
            self.k = k
            self.expertDropout = expertDropout
            self.regularization = regularization
            self.sinkhornIterations = sinkhornIterations
        }

        enum CodingKeys: String, CodingKey {
            case experts, k, regularization
            case expertSize = "expert_size", expertDropout = "expert_dropout"
            case sinkhornIterations = "sinkhorn_iterations"
        }

        public static let kind = "sbase"
        public static let options: Set<FeedForwardOption> = [
            .experts, .expertSize, .k, .expertDropout, .regularization,
        ]

        static func make(experts: Int, expertSize: Int, k: Int) -> Self {
            SBaseConfig(experts: experts, expertSize: expertSize, k: k)
        }

        public mutating func apply(_ options: FeedForwardOptions) { applyExpertOptions(options) }

        public func validate(modelWidth: Int) throws {
            try validateExpertFields()
            if sinkhornIterations < 1 {
                throw FeedForwardConfigError(description: "sinkhorn_iterations must be at least 1 (got \(sinkhornIterations))")
            }
        }

        public func makeLayer(_ scope: ParameterScope, modelWidth: Int, dropout: Float) -> any FeedForwardLayer {
            MixtureOfExperts(
                scope, width: modelWidth, experts: experts, expertSize: expertSize, k: k,
                expertDropout: expertDropout, gate: .sinkhornSigmoid(iterations: sinkhornIterations),
                regularizer: .entropy(regularization), initScale: 1, renormalizeSelector: true,
                valueFanIn: experts * expertSize)
        }

        public func activeParameters(modelWidth d: Int) -> Int { k * 2 * expertSize * d + experts * d }
        public func shareUsed(modelWidth: Int) -> Double { Double(k) / Double(experts) }
        public func forwardFLOPs(modelWidth d: Int) -> FeedForwardFLOPs {
            expertFLOPs(experts: experts, expertSize: expertSize, k: k, modelWidth: d)
        }

        public var summary: String { "S-BASE \(experts) x \(expertSize), K \(k)" }
    }

    /// σ-MoE and S-BASE: K of N experts per token, expert dropout and the entropy regulariser.
    protocol RegularizedExperts: FeedForwardVariant {
        var experts: Int { get set }
        var expertSize: Int { get set }
        var k: Int { get set }
        var expertDropout: Float { get set }
        var regularization: Double { get set }
        /// The block with the other fields at their defaults.
        static func make(experts: Int, expertSize: Int, k: Int) -> Self
    }

    /// The expert count (given, or 16) and expert size (given, matched to the replaced block,
    /// or the paper's 128 without matching) of an expert block replacing another block.
    static func matchedExperts<T: FeedForwardVariant>(
        _ replaced: ReplacedBlock, _ options: FeedForwardOptions, block: (Int, Int) -> T
    ) throws -> (experts: Int, expertSize: Int, note: String?) {
        let n = options.experts ?? 16
        if let size = options.expertSize { return (n, size, nil) }
        guard replaced.matching else { return (n, 128, nil) }
        guard n >= 1 else { throw FeedForwardConfigError(description: "experts must be at least 1 (got \(n))") }
        let d = replaced.modelWidth
        guard let (size, note) = replaced.closestSize(
            describing: { "expert size \($0) (\(n) experts)" },
            count: { block(n, $0).parameterCount(modelWidth: d) })
        else {
            throw FeedForwardConfigError(
                description: "\(n) experts cannot match the \(replaced.parameterCount) parameters of the block they replace (even expert size 1 has more): use fewer experts or give the expert size")
        }
        return (n, size, note)
    }

    /// Shared checks of the expert variants (`validate` of each).
    static func validateExperts(_ experts: Int, _ size: Int, _ k: Int, _ dropout: Float) throws {
        func fail(_ message: String) throws { throw FeedForwardConfigError(description: message) }
        if experts < 1 { try fail("experts must be at least 1 (got \(experts))") }
        if size < 1 { try fail("expert_size must be at least 1 (got \(size))") }
        if k < 1 || k > experts { try fail("k = \(k) must be between 1 and the number of experts \(experts)") }
        if !(dropout >= 0 && dropout < 1) { try fail("expert_dropout must be in [0, 1) (got \(dropout))") }
    }

    /// Per token: the selector product, the gate activation over N and K arg-max passes over N
    /// (routing), then K experts of two products each.
    static func expertFLOPs(experts n: Int, expertSize g: Int, k: Int, modelWidth d: Int) -> FeedForwardFLOPs {
        let routing = 2.0 * Double(n * d) + Double(n * (k + 1))
        return FeedForwardFLOPs(total: routing + Double(k) * 4 * Double(g * d), routing: routing)
    }

    /// Gate computation of a variant.
    enum Gate: Equatable {
        case sigmoid, softmaxBefore, softmaxAfter
        case sinkhornSigmoid(iterations: Int)
    }

    /// Auxiliary loss of a variant.
    enum Regularizer: Equatable {
        case entropy(Double)
        case switchBalance(Double)
    }

    public let width: Int
    public let experts: Int
    public let expertSize: Int
    public let k: Int
    let expertDropout: Float
    let gate: Gate
    let regularizer: Regularizer
    /// Multiplies every initial variance (Switch: 0.1).
    let initScale: Double
    /// σ-MoE init: selector rows rescaled to equal norm keeping the overall std.
    let renormalizeSelector: Bool
    /// Fan-in of W2's init: N * G like a dense layer of that width, or G (Switch).
    let valueFanIn: Int

    /// W1 [N, d, G], W2 [N, G, d], W3 [N, d] (the official `keys`, `values`, `expert_sel`).
    public let keys: ParameterView
    public let values: ParameterView
    public let selector: ParameterView

    public private(set) var auxiliaryLoss: Double = 0
    private var usageCounts: [Int]

    // Saved by forward for backward.
    private var rows = 0
    private var trainingPass = false
    /// The sorted pairs of expert e in gradient group g at [e * groups + g] (rows ascend in an
    /// expert's block, so each is a contiguous run): every expert product runs per group, so
    /// its rows are computed by the same calls whichever ranks hold the groups.
    private var groupPairs: [Range<Int>] = []
    private let logits = FloatBuffer()  // z [R, N]
    private let activated = FloatBuffer()  // sigmoid(z) or softmax(z) [R, N] (per variant)
    private let chosen = Buffer<Int32>()  // [R, K], ascending expert per row
    private let gates = FloatBuffer()  // [R, K]
    private let dropped = Buffer<UInt8>()  // [R, K]: the chosen expert was dropped (gate held at 0)
    private let expertOffsets = Buffer<Int>()  // [N + 1], pairs of expert e at offsets[e] ..< offsets[e+1]
    private let pairPosition = Buffer<Int32>()  // [R, K] -> position in the sorted order
    private let pairRow = Buffer<Int32>()  // sorted position -> row
    private let sortedInput = FloatBuffer()  // [P, d]
    private let hidden = FloatBuffer()  // ReLU(x W1_e) [P, G]
    private let gatedHidden = FloatBuffer()  // g * hidden [P, G]
    private let sortedOutput = FloatBuffer()  // [P, d]
    private let sortedGates = FloatBuffer()  // [P], the gate of each sorted pair
    private let sortCursor = Buffer<Int>()  // [N]
    private let sinkhornState = FloatBuffer()  // a [N], b [T], one column [max(T, N)]
    private let regularizerWeights = FloatBuffer()  // [C]
    private let scratch = FloatBuffer()  // per-row selection scores [R, N]
    private let dropMask = Buffer<UInt8>()  // [R, N]
    // Regulariser statistics.
    private let columnLogMean = Buffer<Double>()  // log pbar per column
    private let rowLogSumExp = Buffer<Double>()  // logsumexp of each row's regularised logits
    private let regularizerRows = FloatBuffer()  // softmax over the regularised logits [R, C]
    /// Rows the regulariser averages over: this pass's, or the whole batch's over every rank.
    private var regularizedRows = 0
    /// Switch: f_e, the share of the batch's (token, slot) pairs routed to expert e [N].
    private var switchFractions: [Double] = []
    // Backward only.
    private let dSortedOutput = FloatBuffer()
    private let dHidden = FloatBuffer()
    private let dSortedInput = FloatBuffer()
    private let dGates = FloatBuffer()  // [P] in sorted order
    private let dLogits = FloatBuffer()  // [R, N]

    /// Registers `keys` [N, d, G], `values` [N, G, d] and `expert_sel` [N, d] under `scope`.
    init(
        _ scope: ParameterScope, width: Int, experts: Int, expertSize: Int, k: Int,
        expertDropout: Float, gate: Gate, regularizer: Regularizer, initScale: Double,
        renormalizeSelector: Bool, valueFanIn: Int
    ) {
        self.width = width
        self.experts = experts
        self.expertSize = expertSize
        self.k = k
        self.expertDropout = expertDropout
        self.gate = gate
        self.regularizer = regularizer
        self.initScale = initScale
        self.renormalizeSelector = renormalizeSelector
        self.valueFanIn = valueFanIn
        keys = scope.tensor("keys", shape: [experts, width, expertSize])
        values = scope.tensor("values", shape: [experts, expertSize, width])
        selector = scope.tensor("expert_sel", shape: [experts, width])
        usageCounts = [Int](repeating: 0, count: experts)
    }

    /// W1 ~ N(0, s (2/L)/d); W2 ~ N(0, s (2/L)/fanIn); W3 ~ N(0, s (2/L)/d), then for σ-MoE
    /// every row divided by its norm and the matrix rescaled to its previous std.
    public func initialize(_ arena: ParameterArena, _ context: inout InitializationContext) {
        Initializer.normal(
            arena.value(keys), count: keys.count,
            std: context.depthScaledStd(fanIn: width, scale: initScale), rng: &context.rng)
        Initializer.normal(
            arena.value(values), count: values.count,
            std: context.depthScaledStd(fanIn: valueFanIn, scale: initScale), rng: &context.rng)
        let w3 = arena.value(selector)
        Initializer.normal(
            w3, count: selector.count, std: context.depthScaledStd(fanIn: width, scale: initScale),
            rng: &context.rng)
        if renormalizeSelector {
            let before = Initializer.standardDeviation(w3, count: selector.count)
            for e in 0..<experts {
                let row = w3 + e * width
                let norm = sumOfSquaresDouble(row, count: width).squareRoot()
                scale(row, by: Float(1 / norm), count: width)
            }
            let after = Initializer.standardDeviation(w3, count: selector.count)
            scale(w3, by: Float(before / after), count: selector.count)
        }
    }

    public func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        let (r, n, g, d) = (pass.rows, experts, expertSize, width)
        let pairs = r * k
        plan.declare(logits, "σ-MoE selector logits", count: r * n)
        plan.declare(activated, "σ-MoE activated logits", count: r * n)
        plan.declare(scratch, "σ-MoE selection scores", count: r * n)
        plan.declare(dropMask, "σ-MoE expert dropout mask", count: r * n)
        plan.declare(chosen, "σ-MoE chosen experts", count: pairs)
        plan.declare(gates, "σ-MoE gates", count: pairs)
        plan.declare(dropped, "σ-MoE dropped flags", count: pairs)
        plan.declare(expertOffsets, "σ-MoE expert offsets", count: n + 1)
        plan.declare(sortCursor, "σ-MoE sort cursor", count: n)
        plan.declare(pairPosition, "σ-MoE pair positions", count: pairs)
        plan.declare(pairRow, "σ-MoE pair rows", count: pairs)
        plan.declare(sortedInput, "σ-MoE sorted inputs", count: pairs * d)
        plan.declare(sortedGates, "σ-MoE sorted gates", count: pairs)
        plan.declare(hidden, "σ-MoE expert hidden", count: pairs * g)
        plan.declare(gatedHidden, "σ-MoE gated hidden", count: pairs * g)
        plan.declare(sortedOutput, "σ-MoE sorted outputs", count: pairs * d)
        guard pass.training else { return }
        if case .sinkhornSigmoid = gate {
            plan.declare(sinkhornState, "S-BASE Sinkhorn state", count: n + pass.length + max(n, pass.length))
        }
        let c = regularizedColumns
        plan.declare(regularizerRows, "σ-MoE regulariser softmax", count: r * c)
        plan.declare(columnLogMean, "σ-MoE regulariser column statistics", count: c)
        plan.declare(rowLogSumExp, "σ-MoE regulariser row statistics", count: r)
        plan.declare(regularizerWeights, "σ-MoE regulariser weights", count: c)
        plan.declare(dSortedOutput, "σ-MoE sorted output gradient", count: pairs * d)
        plan.declare(dHidden, "σ-MoE hidden gradient", count: pairs * g)
        plan.declare(dSortedInput, "σ-MoE sorted input gradient", count: pairs * d)
        plan.declare(dGates, "σ-MoE gate gradient", count: pairs)
        plan.declare(dLogits, "σ-MoE logit gradient", count: r * n)
    }

    public var usage: UsageCounts? { UsageCounts(unit: "expert", counts: usageCounts) }

    public func resetUsage() { usageCounts = [Int](repeating: 0, count: experts) }

    // MARK: Routing

    /// Fills `chosen`, `gates` and `dropped` for every row from the logits.
    private func route(shape: TokenShape, context: inout ForwardContext) {
        let (r, n, kk) = (shape.rows, experts, k)
        let z = logits.pointer
        let act = activated.reserved(r * n)
        let scores = scratch.reserved(r * n)
        let choice = chosen.reserved(r * kk), g = gates.reserved(r * kk), drop = dropped.reserved(r * kk)
        let useDropout = context.dropoutActive && expertDropout > 0
        let mask = dropMask.reserved(r * n)
        if useDropout {
            // Expert dropout: each (token, expert) score independently with probability δ, from
            // each stream's own generator (`Dropout.fillStreamMasks`).
            let threshold = UInt64((Double(expertDropout) * 16_777_216).rounded())
            Dropout.fillStreamMasks(mask, count: r * n, streams: shape.batch, context: &context) { block, count, rng in
                for i in 0..<count { block[i] = (rng.next() >> 40) < threshold ? 1 : 0 }
            }
        } else {
            mask.update(repeating: 0, count: r * n)
        }

        // Selection scores per variant; dropped entries get `droppedValue`.
        var droppedValue: Float = 0
        switch gate {
        case .sigmoid:
            for i in 0..<(r * n) { act[i] = 1 / (1 + Foundation.exp(-z[i])) }
            scores.update(from: act, count: r * n)
        case .softmaxBefore:
            act.update(from: z, count: r * n)
            for row in 0..<r { softmaxInPlace(act + row * n, count: n) }
            scores.update(from: act, count: r * n)
        case .softmaxAfter:
            scores.update(from: z, count: r * n)
            droppedValue = -.infinity
        case .sinkhornSigmoid(let iterations):
            for i in 0..<(r * n) { act[i] = 1 / (1 + Foundation.exp(-z[i])) }
            if context.training {
                let state = sinkhornState.reserved(n + shape.length + max(n, shape.length))
                for sequence in 0..<shape.batch {
                    Self.sinkhorn(
                        z + sequence * shape.length * n, tokens: shape.length, experts: n,
                        iterations: iterations, state: state, into: scores + sequence * shape.length * n)
                }
                droppedValue = -.infinity
            } else {
                // Evaluation: plain top-K of z (the official code's softmax keeps the order).
                scores.update(from: z, count: r * n)
            }
        }
        for i in 0..<(r * n) where mask[i] != 0 { scores[i] = droppedValue }

        for row in 0..<r {
            let s = scores + row * n
            let picks = choice + row * kk
            // K passes of an arg-max; ties go to the lower expert index.
            for slot in 0..<kk {
                var best = -1
                var bestValue = -Float.infinity
                for e in 0..<n {
                    var taken = false
                    for previous in 0..<slot where picks[previous] == Int32(e) { taken = true }
                    if taken { continue }
                    if best < 0 || s[e] > bestValue {
                        best = e
                        bestValue = s[e]
                    }
                }
                picks[slot] = Int32(best)
            }
            // Slots in ascending expert order: the regulariser of softmax-after and the dropped
            // flags read the slots in this order.
            for i in 1..<max(1, kk) {
                var j = i
                while j > 0 && picks[j - 1] > picks[j] {
                    (picks[j - 1], picks[j]) = (picks[j], picks[j - 1])
                    j -= 1
                }
            }
            let gateRow = g + row * kk
            for slot in 0..<kk {
                let e = Int(picks[slot])
                let isDropped = mask[row * n + e] != 0
                drop[row * kk + slot] = isDropped ? 1 : 0
                switch gate {
                case .sigmoid, .softmaxBefore:
                    gateRow[slot] = isDropped ? 0 : act[row * n + e]
                case .sinkhornSigmoid:
                    gateRow[slot] = act[row * n + e]
                case .softmaxAfter:
                    gateRow[slot] = z[row * n + e]
                }
            }
            if gate == .softmaxAfter { softmaxInPlace(gateRow, count: kk) }
        }
    }

    /// The official S-BASE iteration on one sequence's [T, N] logits: a = 0, b = 0, then
    /// `iterations` times { b = log T - logsumexp_e(z - a); a = log N - logsumexp_t(z - b) },
    /// then r = exp(z + a + b). (Not a textbook Sinkhorn; reproduced exactly.)
    /// `state` holds at least n + t + max(n, t) floats of scratch.
    static func sinkhorn(
        _ z: UnsafePointer<Float>, tokens t: Int, experts n: Int, iterations: Int,
        state: UnsafeMutablePointer<Float>, into r: UnsafeMutablePointer<Float>
    ) {
        let a = state, b = state + n, column = state + n + t
        a.update(repeating: 0, count: n)
        b.update(repeating: 0, count: t)
        let logT = Float(Foundation.log(Double(t))), logN = Float(Foundation.log(Double(n)))
        for _ in 0..<iterations {
            for i in 0..<t {
                for e in 0..<n { column[e] = z[i * n + e] - a[e] }
                b[i] = logT - logSumExp(column, count: n)
            }
            for e in 0..<n {
                for i in 0..<t { column[i] = z[i * n + e] - b[i] }
                a[e] = logN - logSumExp(column, count: t)
            }
        }
        for i in 0..<t {
            for e in 0..<n { r[i * n + e] = Foundation.exp(z[i * n + e] + a[e] + b[i]) }
        }
    }

    static func logSumExp(_ x: UnsafePointer<Float>, count: Int) -> Float {
        var m = -Float.infinity
        for i in 0..<count { m = max(m, x[i]) }
        if m == -.infinity { return m }
        var total: Float = 0
        for i in 0..<count { total += Foundation.exp(x[i] - m) }
        return m + Foundation.log(total)
    }

    /// `groupPairs` of a pass over `r` rows in `groups` gradient groups (see ParameterArena).
    private func splitPairsByGroup(rows r: Int, groups: Int) {
        let offsets = expertOffsets.pointer, owner = pairRow.pointer
        groupPairs.removeAll(keepingCapacity: true)
        for e in 0..<experts {
            var first = offsets[e]
            for group in 0..<groups {
                let end = (r * (group + 1) / groups)
                var last = first
                while last < offsets[e + 1] && Int(owner[last]) < end { last += 1 }
                groupPairs.append(first..<last)
                first = last
            }
        }
    }

    /// Counting sort of the (row, slot) pairs by expert; stable, so the order is deterministic.
    private func sortPairs(rows r: Int) {
        let (n, kk) = (experts, k)
        let offsets = expertOffsets.reserved(n + 1)
        offsets.update(repeating: 0, count: n + 1)
        let choice = chosen.pointer
        for i in 0..<(r * kk) { offsets[Int(choice[i]) + 1] += 1 }
        for e in 0..<n { offsets[e + 1] += offsets[e] }
        let position = pairPosition.reserved(r * kk), owner = pairRow.reserved(r * kk)
        let cursor = sortCursor.reserved(n)
        for e in 0..<n { cursor[e] = offsets[e] }
        for row in 0..<r {
            for slot in 0..<kk {
                let e = Int(choice[row * kk + slot])
                position[row * kk + slot] = Int32(cursor[e])
                owner[cursor[e]] = Int32(row)
                cursor[e] += 1
            }
        }
    }

    // MARK: Forward

    public func forward(
        _ x: UnsafePointer<Float>, shape: TokenShape, output y: UnsafeMutablePointer<Float>,
        arena: ParameterArena, context: inout ForwardContext
    ) {
        let (r, d, n, g, kk) = (shape.rows, width, experts, expertSize, k)
        let pairs = r * kk
        rows = r
        trainingPass = context.training
        let z = logits.reserved(r * n)
        gemmInRowGroups(arena.gradientGroups, transposeB: true, m: r, n: n, k: d, a: x, lda: d, b: arena.value(selector), ldb: d, beta: 0, c: z, ldc: n)
        route(shape: shape, context: &context)
        sortPairs(rows: r)
        splitPairsByGroup(rows: r, groups: arena.gradientGroups)
        // Usage of this pass: the sort's per-expert counts.
        let start = expertOffsets.pointer
        for e in 0..<n { usageCounts[e] += start[e + 1] - start[e] }

        // Gather inputs in expert order.
        let xs = SendablePointer(sortedInput.reserved(pairs * d))
        let owner = SendablePointer(pairRow.pointer)
        let input = SendablePointer(x)
        parallelChunks(pairs, minimumChunk: 256) { range in
            for j in range {
                (xs.mutable + j * d).update(from: input.pointer + Int(owner.pointer[j]) * d, count: d)
            }
        }
        // Gate of each sorted pair.
        let gateSorted = SendablePointer(sortedGates.reserved(pairs))
        for row in 0..<r {
            for slot in 0..<kk {
                gateSorted.mutable[Int(pairPosition.pointer[row * kk + slot])] = gates.pointer[row * kk + slot]
            }
        }
        let h = SendablePointer(hidden.reserved(pairs * g)), a = SendablePointer(gatedHidden.reserved(pairs * g))
        let ys = SendablePointer(sortedOutput.reserved(pairs * d))
        let w1 = SendablePointer(arena.value(keys)), w2 = SendablePointer(arena.value(values))
        let groups = arena.gradientGroups, parts = groupPairs
        parallelFor(n) { e in
            for part in parts[(e * groups)..<((e + 1) * groups)] where !part.isEmpty {
                let start = part.lowerBound, count = part.count
                let hidden = h.mutable + start * g, gated = a.mutable + start * g
                panelOrBLASGemm(m: count, n: g, k: d, a: xs.pointer + start * d, lda: d, b: w1.pointer + e * d * g, ldb: g, beta: 0, c: hidden, ldc: g)
                for j in 0..<count {
                    let gateValue = gateSorted.pointer[start + j]
                    for c in 0..<g {
                        let v = max(hidden[j * g + c], 0)
                        hidden[j * g + c] = v
                        gated[j * g + c] = gateValue * v
                    }
                }
                panelOrBLASGemm(m: count, n: d, k: g, a: gated, lda: g, b: w2.pointer + e * g * d, ldb: d, beta: 0, c: ys.mutable + start * d, ldc: d)
            }
        }
        // Gather back per row, slots in order: deterministic sums.
        let position = SendablePointer(pairPosition.pointer), out = SendablePointer(y)
        parallelChunks(r, minimumChunk: 64) { range in
            for row in range {
                let target = out.mutable + row * d
                target.update(from: ys.pointer + Int(position.pointer[row * kk]) * d, count: d)
                for slot in 1..<max(1, kk) {
                    addInPlace(target, ys.pointer + Int(position.pointer[row * kk + slot]) * d, count: d)
                }
            }
        }
        auxiliaryLoss = context.training
            ? regularizerForward(rows: r, collective: context.trainingCollective, arena: arena) : 0
    }

    /// The regularised logits of one row: all N (entropy on raw z), or the K chosen raw logits
    /// in slot order (softmax after top-K).
    private var regularizedColumns: Int { gate == .softmaxAfter ? k : experts }

    private func regularizedLogit(row: Int, column: Int) -> Float {
        gate == .softmaxAfter
            ? logits.pointer[row * experts + Int(chosen.pointer[row * k + column])]
            : logits.pointer[row * experts + column]
    }

    /// Computes the auxiliary loss and saves the regularised rows' softmax for its gradient.
    /// Both losses average over the batch's rows: in a data-parallel job (`collective`) their
    /// column statistics are reduced over every rank's rows, so each rank computes the loss of
    /// the whole batch and the gradient of its own rows' share in it. The sums over rows are
    /// taken per gradient group and added pairwise, so that they are the same bits whichever
    /// ranks hold the groups (see ParameterArena).
    private func regularizerForward(rows r: Int, collective: (any Collective)?, arena: ParameterArena) -> Double {
        let c = regularizedColumns
        let p = regularizerRows.reserved(r * c)
        let logMean = columnLogMean.reserved(c)
        for column in 0..<c { logMean[column] = -.infinity }
        let lse = rowLogSumExp.reserved(r)
        for row in 0..<r {
            var m = -Double.infinity
            for column in 0..<c {
                let v = regularizedLogit(row: row, column: column)
                p[row * c + column] = v
                m = max(m, Double(v))
            }
            var total = 0.0
            for column in 0..<c { total += Foundation.exp(Double(p[row * c + column]) - m) }
            lse[row] = m + Foundation.log(total)
            softmaxInPlace(p + row * c, count: c)
        }
        regularizedRows = collective?.sum(r) ?? r
        switch regularizer {
        case .entropy(let gamma):
            // log pbar_e = logsumexp_r(log_softmax(z_r)_e) - log R, with log_softmax computed
            // from the logits (not log of the rounded probabilities), in Double. Across ranks:
            // each group's sum of exp(. - its maximum), rescaled to the overall maximum.
            let groups = arena.gradientGroups
            var maxima = [[Double]](repeating: [Double](repeating: -.infinity, count: c), count: groups)
            var totals = [[Double]](repeating: [Double](repeating: 0, count: c), count: groups)
            for group in 0..<groups {
                let part = arena.rows(ofGroup: group, in: r)
                for column in 0..<c {
                    var m = -Double.infinity
                    for row in part { m = max(m, logSoftmax(row: row, column: column)) }
                    var total = 0.0
                    for row in part { total += Foundation.exp(logSoftmax(row: row, column: column) - m) }
                    (maxima[group][column], totals[group][column]) = (m, total)
                }
            }
            var overall = (0..<c).map { column in maxima.map { $0[column] }.max()! }
            if let collective { overall = collective.maximum(overall) }
            for group in 0..<groups {
                for column in 0..<c where maxima[group][column] > -.infinity {
                    totals[group][column] *= Foundation.exp(maxima[group][column] - overall[column])
                }
            }
            var summed = addPairwise(totals)
            if let collective { summed = collective.sumPairwise(summed) }
            for column in 0..<c {
                logMean[column] = overall[column] + Foundation.log(summed[column]) - Foundation.log(Double(regularizedRows))
            }
            var loss = 0.0
            for column in 0..<c { loss += Foundation.exp(logMean[column]) * logMean[column] }
            return gamma * loss
        case .switchBalance(let gamma):
            // Per expert: its (token, slot) pairs and the sum of its probabilities over rows.
            let offsets = expertOffsets.pointer
            // Counts (exact in any order) and, per gradient group, probability sums.
            var parts = [[Double]](repeating: [Double](repeating: 0, count: 2 * experts), count: arena.gradientGroups)
            for e in 0..<experts { parts[0][e] = Double(offsets[e + 1] - offsets[e]) }
            for group in parts.indices {
                for e in 0..<experts {
                    var sumP = 0.0
                    for row in arena.rows(ofGroup: group, in: r) { sumP += Double(p[row * c + e]) }
                    parts[group][experts + e] = sumP
                }
            }
            var sums = addPairwise(parts)
            if let collective { sums = collective.sumPairwise(sums) }
            let rows = regularizedRows
            switchFractions = (0..<experts).map { sums[$0] / Double(rows * k) }
            var loss = 0.0
            for e in 0..<experts {
                loss += switchFractions[e] * sums[experts + e] / Double(rows)
            }
            return gamma / Double(experts) * loss
        }
    }

    /// log_softmax of row `row`'s regularised logits at `column`, in Double.
    private func logSoftmax(row: Int, column: Int) -> Double {
        Double(regularizedLogit(row: row, column: column)) - rowLogSumExp.pointer[row]
    }

    // MARK: Backward

    public func backward(
        _ x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, shape: TokenShape,
        dInput dx: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        let (r, d, n, g, kk) = (rows, width, experts, expertSize, k)
        let pairs = r * kk
        let owner = SendablePointer(pairRow.pointer), dyS = SendablePointer(dy)
        let dys = SendablePointer(dSortedOutput.reserved(pairs * d))
        parallelChunks(pairs, minimumChunk: 256) { range in
            for j in range {
                (dys.mutable + j * d).update(from: dyS.pointer + Int(owner.pointer[j]) * d, count: d)
            }
        }
        let gs = SendablePointer(sortedGates.pointer)
        let dGate = SendablePointer(dGates.reserved(pairs))
        let dh = SendablePointer(dHidden.reserved(pairs * g)), dxs = SendablePointer(dSortedInput.reserved(pairs * d))
        let h = SendablePointer(hidden.pointer), a = SendablePointer(gatedHidden.pointer)
        let xs = SendablePointer(sortedInput.pointer)
        let w1 = SendablePointer(arena.value(keys)), w2 = SendablePointer(arena.value(values))
        let groups = arena.gradientGroups, parts = groupPairs
        let dw1 = (0..<groups).map { SendablePointer(arena.gradient(keys, group: $0)) }
        let dw2 = (0..<groups).map { SendablePointer(arena.gradient(values, group: $0)) }
        parallelFor(n) { e in
            for group in 0..<groups {
                let part = parts[e * groups + group]
                if part.isEmpty { continue }
                let start = part.lowerBound, count = part.count
                let dyBlock = dys.pointer + start * d, dA = dh.mutable + start * g
                // dA = dY W2_e^T; dW2_e += A^T dY.
                panelOrBLASGemm(m: count, n: g, k: d, a: dyBlock, lda: d, b: w2.pointer + e * g * d, ldb: d, transposeB: true, beta: 0, c: dA, ldc: g)
                panelOrBLASGemm(transposeA: true, m: g, n: d, k: count, a: a.pointer + start * g, lda: g, b: dyBlock, ldb: d, beta: 1, c: dw2[group].mutable + e * g * d, ldc: d)
                for j in 0..<count {
                    let row = dA + j * g, kept = h.pointer + (start + j) * g
                    // d(gate) = dA . ReLU(h); dH = dA * gate where h > 0.
                    dGate.mutable[start + j] = dot(row, kept, count: g)
                    let gateValue = gs.pointer[start + j]
                    for c in 0..<g { row[c] = kept[c] > 0 ? row[c] * gateValue : 0 }
                }
                // dW1_e += X_e^T dH; dX_e = dH W1_e^T.
                panelOrBLASGemm(transposeA: true, m: d, n: g, k: count, a: xs.pointer + start * d, lda: d, b: dA, ldb: g, beta: 1, c: dw1[group].mutable + e * d * g, ldc: g)
                panelOrBLASGemm(m: count, n: d, k: g, a: dA, lda: g, b: w1.pointer + e * d * g, ldb: g, transposeB: true, beta: 0, c: dxs.mutable + start * d, ldc: d)
            }
        }
        // dx += sum over slots, in slot order.
        let position = SendablePointer(pairPosition.pointer), dxOut = SendablePointer(dx)
        parallelChunks(r, minimumChunk: 64) { range in
            for row in range {
                for slot in 0..<kk {
                    addInPlace(dxOut.mutable + row * d, dxs.pointer + Int(position.pointer[row * kk + slot]) * d, count: d)
                }
            }
        }
        // Gradient into the logits: through the chosen gates, then the auxiliary loss.
        let dz = dLogits.reserved(r * n)
        dz.update(repeating: 0, count: r * n)
        gateBackward(dz: dz, sortedGateGradient: dGate.pointer)
        if trainingPass { regularizerBackward(dz: dz) }
        // dW3 += dz^T x; dx += dz W3.
        gemmOverRowGroups(
            groups, m: n, n: d, rows: r, a: dz, lda: n, b: x, ldb: d,
            gradient: { arena.gradient(selector, group: $0) }, ldc: d)
        gemmInRowGroups(arena.gradientGroups, m: r, n: d, k: n, a: dz, lda: n, b: arena.value(selector), ldb: d, beta: 1, c: dx, ldc: d)
    }

    /// dz from d(gate) of each chosen (row, slot); dropped gates are constants.
    private func gateBackward(dz: UnsafeMutablePointer<Float>, sortedGateGradient: UnsafePointer<Float>) {
        let (r, n, kk) = (rows, experts, k)
        let act = activated.pointer, choice = chosen.pointer, g = gates.pointer
        for row in 0..<r {
            let dzRow = dz + row * n
            switch gate {
            case .sigmoid, .sinkhornSigmoid:
                for slot in 0..<kk where dropped.pointer[row * kk + slot] == 0 || gate != .sigmoid {
                    let e = Int(choice[row * kk + slot])
                    let s = act[row * n + e]
                    dzRow[e] += sortedGateGradient[Int(pairPosition.pointer[row * kk + slot])] * s * (1 - s)
                }
            case .softmaxBefore:
                // g_e = p_e for kept chosen e: dz_j = p_j (dg_j [j kept chosen] - sum_e dg_e p_e).
                var inner: Float = 0
                for slot in 0..<kk where dropped.pointer[row * kk + slot] == 0 {
                    let e = Int(choice[row * kk + slot])
                    let dg = sortedGateGradient[Int(pairPosition.pointer[row * kk + slot])]
                    inner += dg * act[row * n + e]
                    dzRow[e] += dg * act[row * n + e]
                }
                for j in 0..<n { dzRow[j] -= act[row * n + j] * inner }
            case .softmaxAfter:
                // g = softmax(z_chosen): dz_chosen = g (dg - sum dg g).
                var inner: Float = 0
                for slot in 0..<kk {
                    inner += sortedGateGradient[Int(pairPosition.pointer[row * kk + slot])] * g[row * kk + slot]
                }
                for slot in 0..<kk {
                    let e = Int(choice[row * kk + slot])
                    let dg = sortedGateGradient[Int(pairPosition.pointer[row * kk + slot])]
                    dzRow[e] += g[row * kk + slot] * (dg - inner)
                }
            }
        }
    }

    /// dz of the auxiliary loss (weight 1 in the total loss). Both losses are linear in the
    /// softmax probabilities p_r of each row with a weight w per column, so
    /// dL/dz_rj = p_rj (w_j - sum_e w_e p_re):
    ///   entropy: w_e = gamma (log pbar_e + 1) / R   (from dL/dlog_softmax_re = w_e p_re)
    ///   Switch:  w_e = gamma f_e / (N R)
    private func regularizerBackward(dz: UnsafeMutablePointer<Float>) {
        let (r, n, kk) = (rows, experts, k)
        let c = regularizedColumns
        let p = regularizerRows.pointer
        let w = regularizerWeights.reserved(c)
        let overallRows = Double(regularizedRows)
        switch regularizer {
        case .entropy(let gamma):
            for column in 0..<c { w[column] = Float(gamma * (columnLogMean.pointer[column] + 1) / overallRows) }
        case .switchBalance(let gamma):
            for e in 0..<n { w[e] = Float(gamma * switchFractions[e] / (Double(n) * overallRows)) }
        }
        for row in 0..<r {
            let probabilities = p + row * c
            let inner = dot(w, probabilities, count: c)
            for column in 0..<c {
                let e = gate == .softmaxAfter ? Int(chosen.pointer[row * kk + column]) : column
                dz[row * n + e] += probabilities[column] * (w[column] - inner)
            }
        }
    }
}

extension MixtureOfExperts.RegularizedExperts {
    /// 16 experts, K = 4, the expert size matched to the replaced block.
    public static func replacing(
        _ replaced: ReplacedBlock, options: FeedForwardOptions
    ) throws -> (block: Self, note: String?) {
        let (experts, size, note) = try MixtureOfExperts.matchedExperts(replaced, options) { n, g in
            make(experts: n, expertSize: g, k: 1)
        }
        return (make(experts: experts, expertSize: size, k: 4), note)
    }

    mutating func applyExpertOptions(_ options: FeedForwardOptions) {
        if let v = options.experts { experts = v }
        if let v = options.expertSize { expertSize = v }
        if let v = options.k { k = v }
        if let v = options.expertDropout { expertDropout = v }
        if let v = options.regularization { regularization = v }
    }

    func validateExpertFields() throws {
        try MixtureOfExperts.validateExperts(experts, expertSize, k, expertDropout)
        if !(regularization >= 0 && regularization.isFinite) {
            throw FeedForwardConfigError(description: "regularization must be >= 0 (got \(regularization))")
        }
    }
}
