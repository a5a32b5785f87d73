import Accounting
import ArgumentParser
import Configuration
import Foundation
import Training

struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare configurations' parameters, FLOPs and memory; fail when parameters differ.",
        discussion: """
            Each ENTRY is a preset with flags in one argument ("e8 --ffn moe --experts 16"), a
            config file (.json, over the quickstart preset), a run directory, or a checkpoint.
            Exits non-zero when the total parameters of any two entries differ by more than
            the tolerance.
            """)

    @Argument(help: "Configurations to compare; the first is the reference.") var entries: [String]
    @Option(help: "Allowed difference in total parameters, in percent.") var tolerance: Double = 0.5

    func validate() throws {
        guard !entries.isEmpty else { throw ValidationError("give at least one entry to audit") }
        guard tolerance >= 0 else { throw ValidationError("--tolerance must be >= 0 (got \(tolerance))") }
    }

    func run() throws {
        let audit = try Accounting.Audit(try entries.map { try Accounting.Audit.Entry(name: $0, config: try Self.resolve($0)) })
        print(audit.table())
        let spread = 100 * audit.parameterSpread
        if audit.passes(tolerance: tolerance / 100) {
            print(String(format: "parameters within %.2f%% of each other (tolerance %.2f%%): comparable", spread, tolerance))
        } else {
            throw ValidationError(String(format: "total parameters differ by %.2f%%, more than the %.2f%% tolerance: match the sizes (lmtrain matches them when --expert-size / --pkm-keys are left out) or raise --tolerance", spread, tolerance))
        }
    }

    /// A run directory, a checkpoint, a config file, or a preset with flags.
    static func resolve(_ entry: String) throws -> RunConfig {
        var isDirectory: ObjCBool = false
        let url = URL(fileURLWithPath: entry)
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) {
            if isDirectory.boolValue {
                let file = url.appendingPathComponent("config.json")
                guard FileManager.default.fileExists(atPath: file.path) else {
                    throw ValidationError("\(entry): the folder is not a run directory (no config.json)")
                }
                return try ConfigResolution.decode(ConfigResolution.readObject(file), source: file.path)
            }
            if url.pathExtension == "safetensors" { return try loadCheckpoint(url).config }
            if url.pathExtension == "json" {
                return try ConfigOptions.parse(["--config", url.path]).resolve()
            }
        }
        let words = entry.split(separator: " ").map(String.init)
        if words.count == 1, entry.contains("/") || entry.hasSuffix(".json") || entry.hasSuffix(".safetensors") {
            throw ValidationError("\(entry): no such run directory, checkpoint or config file")
        }
        guard let preset = words.first, Preset(name: preset) != nil else {
            throw ValidationError("\(entry): not a preset (\(Preset.sizeNames), with -variant suffixes), run directory, checkpoint or config file")
        }
        return try ConfigOptions.parse(["--preset", preset] + words.dropFirst()).resolve()
    }
}
