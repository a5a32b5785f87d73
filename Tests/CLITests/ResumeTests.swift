import Foundation
import Testing
import TestSupport

#if DEBUG
let isReleaseBuild = false
#else
let isReleaseBuild = true
#endif

/// Train lines of a metrics log: step -> the loss exactly as written (shortest round-trip
/// decimal of the Double, so equal strings mean equal bits).
func trainLosses(_ run: URL) throws -> [Int: String] {
    let text = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
    var losses: [Int: String] = [:]
    for line in text.split(separator: "\n") where line.contains("\"type\":\"train\"") {
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        let step = object["step"] as! Int
        let field = line.split(separator: ",").first { $0.hasPrefix("\"loss\":") }!
        losses[step] = String(field.dropFirst("\"loss\":".count))
    }
    return losses
}

@Suite(.serialized) struct QuickstartResumeTests {
    /// The acceptance test: `lmtrain train --preset quickstart --steps 400` resumed from
    /// its step-200 checkpoint prints the same losses, bit for bit, as the uninterrupted run.
    @Test(.enabled(if: isReleaseBuild, "400 quickstart steps need a release build: run Scripts/test"))
    func quickstartResumedAtStep200MatchesUninterruptedRun() throws {
        let folder = scratch("resume")
        let common = ["train", "--preset", "quickstart", "--steps", "400", "--log-every", "1", "--threads", "2"]
        let straight = folder.appendingPathComponent("straight"), split = folder.appendingPathComponent("split")
        let a = try lmtrain(common + ["--run-dir", straight.path], in: packageRoot)
        #expect(a.status == 0, "\(a.stderr)")
        let b = try lmtrain(common + ["--run-dir", split.path, "--stop-at", "200"], in: packageRoot)
        #expect(b.status == 0, "\(b.stderr)")
        #expect(b.stdout.contains("stopped at step 200"))
        let c = try lmtrain(["train", "--resume", split.path, "--threads", "2"], in: packageRoot)
        #expect(c.status == 0, "\(c.stderr)")
        #expect(c.stdout.contains("at step 200"))

        let expected = try trainLosses(straight), resumed = try trainLosses(split)
        #expect(expected.count == 400)
        #expect(resumed.count == 400)
        for step in 1...400 { #expect(resumed[step] == expected[step], "step \(step)") }
        // The printed lines agree too, and so do the final evaluations.
        let printed = { (s: String) in s.split(separator: "\n").filter { $0.hasPrefix("step") && $0.contains("| loss") }.map { $0.split(separator: "|").prefix(3).joined(separator: "|") } }
        #expect(printed(a.stdout).suffix(200) == printed(c.stdout).suffix(200))
        let report = { (run: URL) in try (JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("report.json"))) as! [String: Any])["results"] as! [[String: Any]] }
        #expect(try report(straight).map { $0["loss"] as! Double } == report(split).map { $0["loss"] as! Double })
    }
}
