import Accounting
import Configuration
import Foundation

/// Refuses a run whose predicted peak memory (the accountant's, as `lmtrain count` prints it)
/// exceeds what this process may use, before anything is allocated: an allocation that does not
/// fit ends the process with a trap, not an error it could report.
public enum MemoryAdmission {
    /// Memory this process may use, and where that figure came from.
    public struct Available: Sendable, Equatable {
        public var bytes: Int
        public var source: String
        public init(bytes: Int, source: String) {
            self.bytes = bytes
            self.source = source
        }
    }

    /// Test hook: a byte count that replaces what the system reports.
    public static let assumedVariable = "LMTRAIN_ASSUME_AVAILABLE_MEMORY"

    /// The smaller of the cgroup's memory limit (v2 `memory.max`, else v1
    /// `memory.limit_in_bytes`) and the kernel's `MemAvailable`; `LMTRAIN_ASSUME_AVAILABLE_MEMORY`
    /// overrides both. Nil when nothing can be read (the check is then skipped).
    public static func available(
        environment: [String: String] = ProcessInfo.processInfo.environment, fileSystemRoot: String = "/"
    ) throws -> Available? {
        if let assumed = environment[assumedVariable] {
            guard let bytes = Int(assumed), bytes > 0 else {
                throw TrainingError(description: "\(assumedVariable)=\(assumed) must be a positive number of bytes")
            }
            return Available(bytes: bytes, source: assumedVariable)
        }
        func read(_ path: String) -> String? { try? String(contentsOfFile: fileSystemRoot + path, encoding: .utf8) }
        var candidates: [Available] = []
        if let text = read("proc/meminfo"), let bytes = memAvailable(meminfo: text) {
            candidates.append(Available(bytes: bytes, source: "MemAvailable in /proc/meminfo"))
        }
        for path in ["sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory/memory.limit_in_bytes"] {
            if let text = read(path), let bytes = cgroupLimit(text) {
                candidates.append(Available(bytes: bytes, source: "the cgroup limit /\(path)"))
                break
            }
        }
        return candidates.min { $0.bytes < $1.bytes }
    }

    /// `MemAvailable` of `/proc/meminfo` in bytes.
    static func memAvailable(meminfo: String) -> Int? {
        for line in meminfo.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let fields = line.split(separator: " ")
            guard fields.count >= 2, let kilobytes = Int(fields[1]) else { return nil }
            return kilobytes * 1024
        }
        return nil
    }

    /// A cgroup limit file's value; nil for no limit (`max`, or v1's page-rounded `Int.max`).
    static func cgroupLimit(_ text: String) -> Int? {
        guard let bytes = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), bytes < 1 << 60 else { return nil }
        return bytes
    }

    /// Throws one line with the prediction, what is available and what to reduce when
    /// `config`'s predicted training peak exceeds `available`.
    public static func check(_ config: RunConfig, available: Available?) throws {
        guard let available else { return }
        let peak = try Accountant.account(config).memory.peakTraining
        guard peak > available.bytes else { return }
        let reduce = config.data.task == nil
            ? "--batch-size, --segment-length, --memory-length, --d-model or --layers"
            : "--batch-size, --d-model or --layers"
        throw TrainingError(description: "this run needs about \(gibibytes(peak)) at its peak (predicted as lmtrain count does) but only \(gibibytes(available.bytes)) is available (\(available.source)): lower \(reduce), or pass --force to try anyway")
    }

    /// "1.25 GiB", or "310.0 MiB" below a GiB.
    static func gibibytes(_ bytes: Int) -> String {
        bytes >= 1 << 30
            ? String(format: "%.2f GiB", Double(bytes) / Double(1 << 30))
            : String(format: "%.1f MiB", Double(bytes) / Double(1 << 20))
    }
}
