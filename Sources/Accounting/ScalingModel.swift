import Configuration
import Foundation

/// What one optimiser step of data-parallel training would take on N ranks, predicted from a
/// config's account (no tensors). The global batch is fixed and split over the ranks; each rank
/// runs forward and backward on its share, the ranks sum their fp32 gradients with a ring
/// all-reduce, and every rank takes the same optimiser step, so the run computes what one
/// process would.
///
///     compute      t_c(N) = 3 · F · T / (N · R)
///     all-reduce   t_a(N) = 2 · (N − 1)/N · 4P · 8 / B  +  2 · (N − 1) · α        t_a(1) = 0
///     step         t(N)   = t_c(N) + t_a(N)                 (all-reduce after backward)
///                  t_o(N) = max(t_c(N), t_a(N))             (perfect overlap: a bound)
///     efficiency   E(N)   = t(1) / (N · t(N))
///
/// F: forward matrix-product FLOPs per token (the accountant's; a training step is 3 x
/// forward), T: tokens per step (batch x segment), R: sustained FLOP/s of one node, P:
/// parameters, B: link bandwidth in bit/s, α: latency per message. The ring sends 2 (N − 1)
/// messages of 4P / N bytes from every rank (reduce-scatter, then all-gather).
public struct ScalingModel: Sendable, Codable, Equatable {
    /// P: every parameter's gradient is all-reduced (σ-MoE: all experts', not only the K used).
    public var parameters: Int
    /// F.
    public var forwardFLOPsPerToken: Double
    /// T: the global batch of one step.
    public var tokensPerStep: Int
    /// R.
    public var nodeFLOPsPerSecond: Double
    /// α.
    public var latencySeconds: Double

    /// Forward + backward per forward (backward computes the gradients of the inputs and of the
    /// weights: two products per forward product).
    public static let trainingToForward = 3.0
    /// Gradients are all-reduced in fp32.
    public static let bytesPerGradient = 4
    /// About what `lmtrain bench` measures as model FLOP/s of a training step on 2 threads of
    /// the development machines (Docs/performance.md); replace it with the node's own figure.
    public static let defaultNodeGFLOPS = 100.0
    /// A round MPI small-message latency between RDMA fabrics (about 1-2 µs) and TCP over
    /// Ethernet (tens of µs); at these gradient sizes the term is negligible.
    public static let defaultLatencyMicroseconds = 10.0
    public static let defaultBandwidthsGbps = [10.0, 25.0, 100.0]
    public static let defaultRanks = [1, 2, 4, 8, 16, 32, 64]
    /// Efficiency under which a rank count no longer pays: half the ranks' time is lost.
    public static let breakEvenEfficiency = 0.5
    /// The search for the break-even rank count gives up beyond this many ranks.
    public static let largestSearchedRanks = 1 << 40

    public init(
        parameters: Int, forwardFLOPsPerToken: Double, tokensPerStep: Int, nodeFLOPsPerSecond: Double,
        latencySeconds: Double
    ) {
        self.parameters = parameters
        self.forwardFLOPsPerToken = forwardFLOPsPerToken
        self.tokensPerStep = tokensPerStep
        self.nodeFLOPsPerSecond = nodeFLOPsPerSecond
        self.latencySeconds = latencySeconds
    }

    /// The model of `config` from its account: P and F as counted, T of the accountant's
    /// training pass (batch x segment; a formal-language batch padded to its longest string).
    public init(_ account: Account, config: RunConfig, nodeFLOPsPerSecond: Double, latencySeconds: Double) {
        self.init(
            parameters: account.parameters.total, forwardFLOPsPerToken: account.flops.forwardPerToken,
            tokensPerStep: Accountant.trainingPass(config).tokens.rows, nodeFLOPsPerSecond: nodeFLOPsPerSecond,
            latencySeconds: latencySeconds)
    }

    enum CodingKeys: String, CodingKey {
        case parameters
        case forwardFLOPsPerToken = "forward_flops_per_token", tokensPerStep = "tokens_per_step"
        case nodeFLOPsPerSecond = "node_flops_per_second", latencySeconds = "latency_seconds"
    }

    /// 4P.
    public var gradientBytes: Double { Double(Self.bytesPerGradient) * Double(parameters) }

    /// t_c(N).
    public func computeSeconds(ranks: Int) -> Double {
        Self.trainingToForward * forwardFLOPsPerToken * Double(tokensPerStep) / (Double(ranks) * nodeFLOPsPerSecond)
    }

    /// t_a(N) of a ring all-reduce over links of `gigabitsPerSecond`.
    public func allReduceSeconds(ranks: Int, gigabitsPerSecond: Double) -> Double {
        guard ranks > 1 else { return 0 }
        let n = Double(ranks)
        let transfer = 2 * (n - 1) / n * gradientBytes * 8 / (gigabitsPerSecond * 1e9)
        return transfer + 2 * (n - 1) * latencySeconds
    }

    /// The prediction for one rank count and bandwidth.
    public struct Step: Sendable, Codable, Equatable {
        public var ranks: Int
        public var computeSeconds: Double
        public var allReduceSeconds: Double
        /// t(N): the all-reduce after backward.
        public var seconds: Double
        /// t_o(N): the all-reduce hidden behind compute as far as it can be.
        public var overlappedSeconds: Double
        /// E(N) = t(1) / (N · t(N)).
        public var efficiency: Double
        /// t(1) / (N · t_o(N)).
        public var overlappedEfficiency: Double

        enum CodingKeys: String, CodingKey {
            case ranks, seconds, efficiency
            case computeSeconds = "compute_seconds", allReduceSeconds = "all_reduce_seconds"
            case overlappedSeconds = "overlapped_seconds", overlappedEfficiency = "overlapped_efficiency"
        }
    }

    public func step(ranks: Int, gigabitsPerSecond: Double) -> Step {
        let compute = computeSeconds(ranks: ranks)
        let allReduce = allReduceSeconds(ranks: ranks, gigabitsPerSecond: gigabitsPerSecond)
        let single = computeSeconds(ranks: 1)
        let serial = compute + allReduce, overlapped = max(compute, allReduce)
        return Step(
            ranks: ranks, computeSeconds: compute, allReduceSeconds: allReduce, seconds: serial,
            overlappedSeconds: overlapped, efficiency: single / (Double(ranks) * serial),
            overlappedEfficiency: single / (Double(ranks) * overlapped))
    }

    /// The fewest ranks whose efficiency is under ``breakEvenEfficiency`` (nil beyond
    /// ``largestSearchedRanks``). Both efficiencies fall with N (N · t(N) = t_c(1) + N · t_a(N),
    /// and N · t_a(N) grows), so a doubling search and a bisection find it.
    public func breakEvenRanks(gigabitsPerSecond: Double, overlapped: Bool = false) -> Int? {
        func pays(_ ranks: Int) -> Bool {
            let step = step(ranks: ranks, gigabitsPerSecond: gigabitsPerSecond)
            return (overlapped ? step.overlappedEfficiency : step.efficiency) >= Self.breakEvenEfficiency
        }
        var high = 1
        while pays(high) {
            guard high < Self.largestSearchedRanks else { return nil }
            high *= 2
        }
        // pays(low) holds, pays(high) does not.
        var low = high / 2
        while high - low > 1 {
            let middle = low + (high - low) / 2
            if pays(middle) { low = middle } else { high = middle }
        }
        return high
    }
}

/// The predictions of a ``ScalingModel`` for rank counts (rows) and bandwidths (columns), and
/// its rendering for `lmtrain scaling`.
public struct ScalingTable: Sendable, Codable, Equatable {
    public struct Column: Sendable, Codable, Equatable {
        public var gigabitsPerSecond: Double
        public var steps: [ScalingModel.Step]
        /// The fewest ranks with efficiency under 50%, without and with overlap.
        public var breakEvenRanks: Int?
        public var overlappedBreakEvenRanks: Int?

        enum CodingKeys: String, CodingKey {
            case steps
            case gigabitsPerSecond = "gigabits_per_second", breakEvenRanks = "break_even_ranks"
            case overlappedBreakEvenRanks = "overlapped_break_even_ranks"
        }
    }

    public var model: ScalingModel
    public var columns: [Column]

    public init(_ model: ScalingModel, ranks: [Int], gigabitsPerSecond bandwidths: [Double]) {
        self.model = model
        columns = bandwidths.map { bandwidth in
            Column(
                gigabitsPerSecond: bandwidth, steps: ranks.map { model.step(ranks: $0, gigabitsPerSecond: bandwidth) },
                breakEvenRanks: model.breakEvenRanks(gigabitsPerSecond: bandwidth),
                overlappedBreakEvenRanks: model.breakEvenRanks(gigabitsPerSecond: bandwidth, overlapped: true))
        }
    }

    /// Four significant digits at most: "515.4 s", "8.053 s", "971.9 ms", "12.50 ms", "40.0 µs".
    public static func duration(_ seconds: Double) -> String {
        switch seconds {
        case 1000...: String(format: "%.0f s", seconds)
        case 100...: String(format: "%.1f s", seconds)
        case 10...: String(format: "%.2f s", seconds)
        case 1...: String(format: "%.3f s", seconds)
        case 0.1...: String(format: "%.1f ms", seconds * 1e3)
        case 1e-3...: String(format: "%.2f ms", seconds * 1e3)
        default: String(format: "%.1f µs", seconds * 1e6)
        }
    }

    /// "1.05 GB", "164.9 MB", "327.6 kB" (decimal, like link bandwidths).
    public static func decimalBytes(_ bytes: Double) -> String {
        switch bytes {
        case 1e9...: String(format: "%.2f GB", bytes / 1e9)
        case 1e6...: String(format: "%.1f MB", bytes / 1e6)
        default: String(format: "%.1f kB", bytes / 1e3)
        }
    }

    /// "10", "2.5".
    static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }

    /// The table of `lmtrain scaling` for `config`, called `name`.
    public func render(config: RunConfig, name: String) -> String {
        let m = model, pass = Accountant.trainingPass(config).tokens
        var lines: [String] = []
        lines.append("\(name): \(AccountTable.amount(Double(m.parameters))) parameters, all-reduced as \(Self.decimalBytes(m.gradientBytes)) of fp32 gradients per step")
        lines.append(
            "compute: 3 x \(AccountTable.amount(m.forwardFLOPsPerToken)) forward FLOPs per token x \(m.tokensPerStep) tokens per step (batch \(pass.batch) x \(pass.length)) at \(Self.number(m.nodeFLOPsPerSecond / 1e9)) GFLOP/s per node = \(Self.duration(m.computeSeconds(ranks: 1))) on one node")
        lines.append(
            "ring all-reduce with \(Self.number(m.latencySeconds * 1e6)) µs per message; step = compute + all-reduce (no overlap); efficiency = t(1) / (N t(N))")
        lines.append("")
        let rankWidth = 6, computeWidth = 11, stepWidth = 10, efficiencyWidth = 8
        let columnWidth = stepWidth + efficiencyWidth
        var header = "".padding(toLength: rankWidth, withPad: " ", startingAt: 0) + "compute".leftPadded(computeWidth)
        var subheader = "ranks".leftPadded(rankWidth) + "per rank".leftPadded(computeWidth)
        for column in columns {
            header += ("\(Self.number(column.gigabitsPerSecond)) Gbit/s").leftPadded(columnWidth)
            subheader += "step".leftPadded(stepWidth) + "effic.".leftPadded(efficiencyWidth)
        }
        lines.append(header)
        lines.append(subheader)
        for (row, first) in (columns.first?.steps ?? []).enumerated() {
            var line = "\(first.ranks)".leftPadded(rankWidth) + Self.duration(first.computeSeconds).leftPadded(computeWidth)
            for column in columns {
                let step = column.steps[row]
                line += Self.duration(step.seconds).leftPadded(stepWidth)
                line += String(format: "%.1f%%", 100 * step.efficiency).leftPadded(efficiencyWidth)
            }
            lines.append(line)
        }
        lines.append("")
        lines.append("efficiency under 50% (half of every rank's time lost) at:")
        func ranks(_ count: Int?) -> String { count.map { "N >= \($0)" } ?? "no N up to 2^40" }
        for column in columns {
            lines.append(
                "  \(Self.number(column.gigabitsPerSecond)) Gbit/s: \(ranks(column.breakEvenRanks)) (with perfect overlap of all-reduce and compute: \(ranks(column.overlappedBreakEvenRanks)))")
        }
        // A rank trains whole streams (each carries its own memory), so N stops at the batch.
        let counts = columns.flatMap { column -> [Int] in
            column.steps.map(\.ranks) + [column.breakEvenRanks ?? .max, column.overlappedBreakEvenRanks ?? .max]
        }
        if counts.contains(where: { $0 > pass.batch }) {
            lines.append(
                "note: the batch has \(pass.batch) streams, and a rank trains whole streams: N above \(pass.batch) is the formulas' extrapolation, not a run")
        }
        return lines.joined(separator: "\n")
    }
}
