import Configuration
import Datasets
import Foundation
import Layers
import Tensor

#if canImport(Glibc)
import Glibc
#endif

/// `report.json` of a finished run: the config, the final evaluation of every split, the
/// training throughput, the peak memory and the selection statistics of the sparse blocks
/// (read back by `lmtrain compare`).
public struct RunReport: Codable, Sendable {
    public let config: RunConfig
    public let parameters: Int
    public let steps: Int
    public let results: [EvaluationResult]
    public let checkpoint: String?
    /// Training positions per second over the optimiser steps this process ran (a resumed
    /// run: its last part).
    public let trainingTokensPerSecond: Double
    /// Wall-clock seconds of training over every session of the run (evaluations included).
    public let trainingSeconds: Double?
    /// Peak resident set size of the process (getrusage).
    public let peakResidentBytes: Int
    public let usage: [Usage]
    /// The OpenBLAS kernel the run computed with and why (absent in reports of older builds).
    public var openBLAS: OpenBLASKernel.Status?

    /// Expert (or value-row) usage of one layer over the run's training steps.
    public struct Usage: Codable, Sendable {
        public let layer: Int, unit: String, relativePerplexity: Double, deadFraction: Double, usedFraction: Double, counts: [Int]

        public init(layer: Int, _ usage: UsageCounts) {
            self.layer = layer
            unit = usage.unit
            relativePerplexity = usage.relativePerplexity
            deadFraction = usage.deadFraction
            usedFraction = usage.usedFraction
            counts = usage.counts
        }

        enum CodingKeys: String, CodingKey {
            case layer, unit, counts
            case relativePerplexity = "relative_perplexity", deadFraction = "dead_fraction", usedFraction = "used_fraction"
        }
    }

    enum CodingKeys: String, CodingKey {
        case config, parameters, steps, results, checkpoint, usage
        case trainingTokensPerSecond = "training_tokens_per_second", peakResidentBytes = "peak_resident_bytes"
        case trainingSeconds = "training_seconds"
        case openBLAS = "openblas"
    }

    /// The result of `split`, if evaluated.
    public func result(_ split: String) -> EvaluationResult? { results.first { $0.split == split } }

    /// Writes the report as pretty JSON, atomically.
    public func write(to url: URL) throws { try writeJSON(self, to: url) }

    /// Reads a run's `report.json`.
    public static func read(_ url: URL) throws -> RunReport {
        try JSONDecoder().decode(RunReport.self, from: Data(contentsOf: url))
    }

    /// Peak resident set size of this process in bytes (Linux reports ru_maxrss in KiB).
    public static func peakResidentBytes() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Int(usage.ru_maxrss) * 1024
    }
}

/// Writes `value` as pretty JSON with sorted keys to `url`, atomically.
public func writeJSON<T: Encodable>(_ value: T, to url: URL) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try AtomicFile.write(try encoder.encode(value), to: url)
}
