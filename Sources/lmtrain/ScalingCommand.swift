import Accounting
import ArgumentParser
import Configuration
import Foundation

struct Scaling: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Predicted data-parallel step time and efficiency on N ranks (a cost model; nothing runs).",
        discussion: """
            The global batch is split over N ranks; each runs forward and backward on its
            share, then the fp32 gradients are summed with a ring all-reduce:
              compute     t_c(N) = 3 F T / (N R)
              all-reduce  t_a(N) = 2 (N-1)/N 4P 8 / B + 2 (N-1) L      (0 for N = 1)
              step        t(N)   = t_c(N) + t_a(N)
              efficiency  E(N)   = t(1) / (N t(N))
            F: forward FLOPs per token (lmtrain count), T: tokens per step, R:
            --node-gflops, P: parameters, B: --bandwidth, L: --latency-us. Give
            --node-gflops the model GFLOP/s that `lmtrain bench` prints on the node.
            See Docs/distributed.md.
            """)

    @OptionGroup var options: ConfigOptions
    @Option(
        name: .customLong("node-gflops"), parsing: .unconditional,
        help: "Sustained GFLOP/s of one node's training step (R; lmtrain bench prints it as model GFLOP/s).")
    var nodeGFLOPS: Double = ScalingModel.defaultNodeGFLOPS
    @Option(parsing: .unconditional, help: "Link bandwidths in Gbit/s, comma-separated: a pair of columns each.")
    var bandwidth: String = ScalingModel.defaultBandwidthsGbps.map { String(Int($0)) }.joined(separator: ",")
    @Option(name: .customLong("latency-us"), parsing: .unconditional, help: "Latency of one all-reduce message in µs.")
    var latencyMicroseconds: Double = ScalingModel.defaultLatencyMicroseconds
    @Option(parsing: .unconditional, help: "Rank counts N of the rows, comma-separated.")
    var ranks: String = ScalingModel.defaultRanks.map(String.init).joined(separator: ",")
    @Flag(help: "Print the predictions as JSON.") var json = false

    func validate() throws {
        try check(nodeGFLOPS, "--node-gflops", finite(atLeast: 0, positive: true))
        try check(latencyMicroseconds, "--latency-us", finite(atLeast: 0))
        _ = try bandwidths()
        _ = try rankCounts()
    }

    /// `--bandwidth` in Gbit/s.
    func bandwidths() throws -> [Double] {
        try list(bandwidth, flag: "--bandwidth", example: "10,25,100").map { item in
            guard let value = Double(item) else {
                throw ValidationError("--bandwidth must be Gbit/s separated by commas, such as 10,25,100 (got '\(item)')")
            }
            try check(value, "--bandwidth", finite(atLeast: 0, positive: true))
            return value
        }
    }

    /// `--ranks`.
    func rankCounts() throws -> [Int] {
        try list(ranks, flag: "--ranks", example: "1,2,4,8").map { item in
            guard let value = Int(item) else {
                throw ValidationError("--ranks must be whole numbers separated by commas, such as 1,2,4,8 (got '\(item)')")
            }
            try check(value, "--ranks", atLeast(1))
            try checkUpperBound(value, "--ranks", ConfigLimits.largestSize)
            return value
        }
    }

    /// The items of a comma-separated flag, trimmed; an empty one is refused.
    func list(_ text: String, flag: String, example: String) throws -> [String] {
        let items = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard !items.contains(where: \.isEmpty) else {
            throw ValidationError("\(flag) must be values separated by single commas, such as \(example) (got '\(text)')")
        }
        return items
    }

    func run() throws {
        let (config, note) = try options.resolveWithNote()
        let account = try Accountant.account(config)
        let model = ScalingModel(
            account, config: config, nodeFLOPsPerSecond: nodeGFLOPS * 1e9, latencySeconds: latencyMicroseconds * 1e-6)
        let table = ScalingTable(model, ranks: try rankCounts(), gigabitsPerSecond: try bandwidths())
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(table), as: UTF8.self))
        } else {
            if let note { print(note) }
            print(table.render(config: config, name: options.preset))
        }
    }
}
