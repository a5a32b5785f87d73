import Accounting
import ArgumentParser
import Configuration
import Datasets
import Foundation
import Training

struct Results: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the results document from finished comparisons (what Scripts/reproduce does at its end).",
        discussion: """
            Example: lmtrain results --comparison runs/reproduce/wikitext --comparison runs/reproduce/bytes --output Docs/results.md
            Each comparison's report.json gives its table; the paper's claims (σ-MoE matches
            or beats dense, sigmoid beats softmax selection, σ-MoE beats Switch and S-BASE,
            improved PKM beats the original, top-K matches dense) are checked against the
            test metric's 95% interval over seeds. Nothing in the document is typed by hand.
            """)

    @Option(help: "A finished `lmtrain compare` folder (repeat for several).") var comparison: [String] = []
    @Option(help: "The document to write.") var output: String = "Docs/results.md"
    @Option(name: .customLong("command"), help: "The command that produced the comparisons (quoted in the document).")
    var producingCommand: String = "Scripts/reproduce"
    @Option(help: "The commit that writes the document.") var commit: String = "unknown"
    @Option(help: "The commits the comparisons' runs trained at, comma-separated (default: --commit).")
    var trainedAt: String?
    @Option(help: "Wall-clock seconds the producing command took.") var wallSeconds: Double?

    func run() throws {
        guard !comparison.isEmpty else { throw ValidationError("--comparison: give at least one finished comparison folder") }
        let sections = try comparison.map(Self.section)
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd"
        formatter.timeZone = TimeZone(identifier: "UTC")
        let document = ResultsDocument(
            sections: sections, command: producingCommand, commit: commit,
            trainedAt: (trainedAt ?? commit).split(separator: ",").map(String.init), machine: ResultsDocument.thisMachine,
            wallSeconds: wallSeconds, date: formatter.string(from: Date()))
        try AtomicFile.write(Data(document.markdown.utf8), to: URL(fileURLWithPath: output))
        print("wrote \(output)")
    }

    static func section(_ path: String) throws -> ResultsDocument.Section {
        let folder = URL(fileURLWithPath: path)
        let reportFile = folder.appendingPathComponent("report.json")
        guard FileManager.default.fileExists(atPath: reportFile.path) else {
            throw ValidationError("--comparison \(path): no report.json (the comparison has not finished: run its command again)")
        }
        let report = try JSONDecoder().decode(ComparisonReport.self, from: Data(contentsOf: reportFile))
        guard let size = Preset.Size(rawValue: report.preset), let paper = size.paperCounterpart else {
            throw ValidationError("--comparison \(path): preset \(report.preset) is not a CPU size of a paper model (use wt-cpu, bytes-cpu or quickstart)")
        }
        // The runs' own schedule (flags such as --steps may have changed the preset's).
        let configs = folder.appendingPathComponent("configs")
        guard let first = try FileManager.default.contentsOfDirectory(atPath: configs.path).filter({ $0.hasSuffix(".json") }).sorted().first else {
            throw ValidationError("--comparison \(path): configs/ holds no run config")
        }
        let config = try JSONDecoder().decode(RunConfig.self, from: Data(contentsOf: configs.appendingPathComponent(first)))
        let paperConfig = Preset(size: paper).config
        func tokens(_ t: TrainingConfig) -> Int { t.steps * t.batchSize * t.segmentLength }
        let title = report.unit == .bytes ? "Bytes (`\(size.rawValue)`)" : "WikiText-2, 8000-piece BPE (`\(size.rawValue)`)"
        return ResultsDocument.Section(
            title: title, report: report, folder: path, paperSize: paper.rawValue.uppercased(),
            paperParameters: try Accountant.account(paperConfig).parameters.total,
            paperTrainingTokens: tokens(paperConfig.training), trainingTokens: tokens(config.training))
    }
}
