import Accounting
import Configuration
import Foundation
import Testing

/// The data-parallel cost model: hand-computed cases, no communication on one rank, falling
/// efficiency, the break-even search against a plain scan, and the paper presets' inputs taken
/// from the accountant.
struct ScalingModelTests {
    /// P = 1e6, F = 1e6 FLOPs per token, T = 1000 tokens, R = 1 GFLOP/s.
    static func small(latencySeconds: Double) -> ScalingModel {
        ScalingModel(
            parameters: 1_000_000, forwardFLOPsPerToken: 1e6, tokensPerStep: 1000, nodeFLOPsPerSecond: 1e9,
            latencySeconds: latencySeconds)
    }

    static func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) <= 1e-12 * max(abs(a), abs(b)) }

    @Test func handComputedFourRanksAtTenGigabits() {
        let model = Self.small(latencySeconds: 0)
        // 2 (N-1)/N · 4P bytes · 8 bits / B = 2 · 3/4 · 4e6 · 8 / 1e10 s.
        let allReduce = 2.0 * 3 / 4 * 4e6 * 8 / 1e10
        #expect(Self.close(allReduce, 4.8e-3))
        #expect(Self.close(model.allReduceSeconds(ranks: 4, gigabitsPerSecond: 10), allReduce))
        // 3 F T / (N R) = 3 · 1e6 · 1000 / (4 · 1e9) = 0.75 s.
        #expect(Self.close(model.computeSeconds(ranks: 4), 0.75))
        let step = model.step(ranks: 4, gigabitsPerSecond: 10)
        #expect(Self.close(step.seconds, 0.75 + 4.8e-3))
        let efficiency: Double = 3 / (4 * (0.75 + 4.8e-3))
        #expect(Self.close(step.efficiency, efficiency))
        // Perfect overlap hides the whole all-reduce behind 0.75 s of compute.
        #expect(step.overlappedSeconds == 0.75 && Self.close(step.overlappedEfficiency, 1))

        // The latency adds 2 (N-1) messages: 6 x 5 µs.
        let latent = Self.small(latencySeconds: 5e-6)
        #expect(Self.close(latent.allReduceSeconds(ranks: 4, gigabitsPerSecond: 10), 4.8e-3 + 6 * 5e-6))
        // 64 ranks at 100 Gbit/s: 2 · 63/64 · 32e6 / 1e11 + 126 · 5 µs.
        let transfer: Double = 2 * 63.0 / 64 * 32e6 / 1e11
        #expect(Self.close(latent.allReduceSeconds(ranks: 64, gigabitsPerSecond: 100), transfer + 126 * 5e-6))
    }

    @Test func oneRankCommunicatesNothing() {
        let model = Self.small(latencySeconds: 1e-3)
        for bandwidth in [0.001, 10, 1e6] {
            #expect(model.allReduceSeconds(ranks: 1, gigabitsPerSecond: bandwidth) == 0)
            let step = model.step(ranks: 1, gigabitsPerSecond: bandwidth)
            #expect(step.seconds == model.computeSeconds(ranks: 1) && step.seconds == 3)
            #expect(step.efficiency == 1 && step.overlappedEfficiency == 1)
        }
    }

    /// E(N) falls strictly from N = 2 on, without and with overlap; faster links keep more.
    @Test func efficiencyFallsWithRanks() {
        for latency in [0, 10e-6] {
            let model = Self.small(latencySeconds: latency)
            for bandwidth in [1.0, 10, 100] {
                let steps = (1...300).map { model.step(ranks: $0, gigabitsPerSecond: bandwidth) }
                for (a, b) in zip(steps, steps.dropFirst()) {
                    #expect(b.efficiency < a.efficiency, "N = \(b.ranks), \(bandwidth) Gbit/s")
                    #expect(b.overlappedEfficiency <= a.overlappedEfficiency * (1 + 1e-12))
                    #expect(b.overlappedEfficiency >= b.efficiency)
                }
            }
            #expect(model.step(ranks: 16, gigabitsPerSecond: 10).efficiency < model.step(ranks: 16, gigabitsPerSecond: 100).efficiency)
        }
    }

    /// Without latency E(N) < 1/2 exactly when (N − 1) · 64P/B > t_c(1), and with perfect
    /// overlap when (N − 1) · 64P/B > 2 t_c(1). Here 64P/B = 1 ms and t_c(1) = 100.3 ms.
    @Test func breakEvenByHand() {
        let model = ScalingModel(
            parameters: 1_000_000, forwardFLOPsPerToken: 100_300, tokensPerStep: 1000, nodeFLOPsPerSecond: 3e9,
            latencySeconds: 0)
        #expect(Self.close(model.computeSeconds(ranks: 1), 0.1003))
        #expect(model.breakEvenRanks(gigabitsPerSecond: 64) == 102)
        #expect(model.step(ranks: 101, gigabitsPerSecond: 64).efficiency >= 0.5)
        #expect(model.step(ranks: 102, gigabitsPerSecond: 64).efficiency < 0.5)
        #expect(model.breakEvenRanks(gigabitsPerSecond: 64, overlapped: true) == 202)
    }

    /// The doubling and bisection find what a plain scan finds, with latency.
    @Test func breakEvenSearchMatchesAScan() {
        for (latency, bandwidth) in [(10e-6, 10.0), (1e-4, 25), (5e-6, 100), (1e-3, 1)] {
            let model = Self.small(latencySeconds: latency)
            for overlapped in [false, true] {
                let scanned = (1...1_000_000).first { ranks in
                    let step = model.step(ranks: ranks, gigabitsPerSecond: bandwidth)
                    return (overlapped ? step.overlappedEfficiency : step.efficiency) < 0.5
                }
                #expect(scanned != nil)
                #expect(model.breakEvenRanks(gigabitsPerSecond: bandwidth, overlapped: overlapped) == scanned)
            }
        }
    }

    /// P, F and T of the paper presets are the accountant's: P the counted total (wt-b: the
    /// paper's 262.48M), the gradient one copy of the accountant's gradient memory (which holds
    /// one per gradient group), 3F its training FLOPs.
    @Test(arguments: [("wt-s", 64 * 256), ("wt-b", 64 * 512), ("e8", 32 * 512), ("wt-b-moe", 64 * 512)])
    func presetInputsAreTheAccountants(name: String, tokens: Int) throws {
        let config = Preset(name: name)!.config
        let account = try Accountant.account(config)
        let model = ScalingModel(account, config: config, nodeFLOPsPerSecond: 1e11, latencySeconds: 1e-5)
        #expect(model.parameters == account.parameters.total)
        let copies = config.training.gradientGroups(batch: config.training.batchSize)
        #expect(copies == 2 && model.gradientBytes * Double(copies) == Double(account.memory.gradients))
        #expect(model.tokensPerStep == tokens)
        #expect(ScalingModel.trainingToForward * model.forwardFLOPsPerToken == account.flops.trainingPerToken)
        #expect(Self.close(model.computeSeconds(ranks: 8), account.flops.trainingPerToken * Double(tokens) / 8e11))
        if name == "wt-b" { #expect((Double(model.parameters) / 1e4).rounded() / 100 == 262.48) }
    }

    /// The table has a row per rank count and a column per bandwidth, and the break-even line.
    @Test func tableRowsColumnsAndBreakEven() throws {
        let config = Preset(name: "e8")!.config
        let model = ScalingModel(try Accountant.account(config), config: config, nodeFLOPsPerSecond: 1e11, latencySeconds: 1e-5)
        let table = ScalingTable(model, ranks: ScalingModel.defaultRanks, gigabitsPerSecond: [10, 25, 100])
        #expect(table.columns.map(\.gigabitsPerSecond) == [10, 25, 100])
        #expect(table.columns.allSatisfy { $0.steps.map(\.ranks) == [1, 2, 4, 8, 16, 32, 64] })
        #expect(table.columns[0].breakEvenRanks == model.breakEvenRanks(gigabitsPerSecond: 10))
        let text = table.render(config: config, name: "e8")
        let rows = text.split(separator: "\n").filter { line in
            ScalingModel.defaultRanks.contains { line.hasPrefix(String(repeating: " ", count: 6 - "\($0)".count) + "\($0) ") }
        }
        #expect(rows.count == 7)
        #expect(text.contains("10 Gbit/s") && text.contains("100 Gbit/s") && text.contains("100.0%"))
        #expect(text.contains("10 Gbit/s: N >= \(table.columns[0].breakEvenRanks!)"))
        let decoded = try JSONDecoder().decode(ScalingTable.self, from: JSONEncoder().encode(table))
        #expect(decoded == table)
    }
}
