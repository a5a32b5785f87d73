import Datasets
import Foundation
import FuzzTargets
import Testing
import TestSupport

/// A few thousand seeded mutations of the seed corpora (Fuzz/corpus/TARGET) through every
/// reader of user files: each must answer with an error or a value, never a trap (which would
/// end this process). The long coverage-guided runs are Docs/reliability.md's.
struct MutationRunTests {
    static let corpus = packageRoot.appendingPathComponent("Fuzz/corpus")
    static let regressions = packageRoot.appendingPathComponent("Fuzz/regressions")

    static func scratch(_ target: FuzzTarget) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("lmtrain-fuzz-test-\(getpid())-\(target.rawValue).bin")
    }

    /// Inputs per target: the readers differ in cost per input (the SentencePiece target builds
    /// a tokenizer from each).
    static let executions: [FuzzTarget: Int] = [
        .safetensors: 3000, .zip: 3000, .sentencepiece: 1000, .tokenCache: 3000, .config: 2000,
    ]

    @Test(arguments: FuzzTarget.allCases.filter { $0 != .safetensors })
    func seededMutationsNeverTrap(target: FuzzTarget) throws {
        try run(target)
    }

    /// The SafeTensors reader once trapped on a header length beyond Int (the first mutated
    /// input with the top bit set); Fuzz/regressions/safetensors keeps that input.
    @Test
    func seededMutationsOfCheckpointsNeverTrap() throws {
        try replay(.safetensors)
        try run(.safetensors)
    }

    func run(_ target: FuzzTarget) throws {
        let seeds = try MutationRun.seeds([Self.corpus.appendingPathComponent(target.rawValue).path])
        #expect(!seeds.isEmpty)
        let count = Self.executions[target]!
        let result = MutationRun(target: target, seeds: seeds, scratch: Self.scratch(target)).run(seed: 11, executions: count)
        #expect(result.executions == count)
    }

    /// Inputs that once trapped (found by the fuzz runs), replayed.
    @Test(arguments: FuzzTarget.allCases.filter { $0 != .safetensors })
    func formerFindingsNoLongerTrap(target: FuzzTarget) throws {
        try replay(target)
    }

    func replay(_ target: FuzzTarget) throws {
        let folder = Self.regressions.appendingPathComponent(target.rawValue)
        guard FileManager.default.fileExists(atPath: folder.path) else { return }
        for input in try MutationRun.seeds([folder.path]) {
            target.run(input, scratch: Self.scratch(target))
        }
    }

    @Test func theMutatorIsDeterministic() {
        var a = Mutator(seed: 5), b = Mutator(seed: 5)
        let seed = Array("{\"model\": {\"d_model\": 64}}".utf8)
        let first = (0..<50).map { _ in a.mutate(seed, other: seed) }
        #expect(first == (0..<50).map { _ in b.mutate(seed, other: seed) })
        #expect(Set(first).count > 40)
    }
}
