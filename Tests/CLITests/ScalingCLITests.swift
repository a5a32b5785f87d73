import Foundation
import Testing

/// `lmtrain scaling`: a table for a preset, JSON that parses, and one line for every bad value.
struct ScalingCLITests {
    @Test func tableAndJSONForAPreset() throws {
        let folder = scratch("scaling")
        let table = try lmtrain(["scaling", "--preset", "e8", "--bandwidth", "10,25", "--ranks", "1,4,64"], in: folder)
        #expect(table.status == 0, "\(table.stderr)")
        #expect(table.stdout.hasPrefix("e8: 41.23M parameters"))
        #expect(table.stdout.contains("10 Gbit/s") && table.stdout.contains("25 Gbit/s") && !table.stdout.contains("100 Gbit/s"))
        #expect(table.stdout.contains("    64 "))

        let json = try lmtrain(["scaling", "--preset", "e8", "--json", "--node-gflops", "50", "--latency-us", "0"], in: folder)
        #expect(json.status == 0, "\(json.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as! [String: Any]
        let model = object["model"] as! [String: Any]
        #expect(model["parameters"] as? Int == 41_234_721)
        #expect(model["node_flops_per_second"] as? Double == 5e10)
        let columns = object["columns"] as! [[String: Any]]
        #expect(columns.map { $0["gigabits_per_second"] as? Double } == [10, 25, 100])
        #expect((columns[0]["steps"] as! [Any]).count == 7)
    }

    @Test func badValuesAreOneLine() throws {
        let folder = scratch("scaling-bad")
        let cases: [([String], [String])] = [
            (["--node-gflops", "0"], ["--node-gflops", "> 0"]),
            (["--node-gflops", "nan"], ["--node-gflops", "finite"]),
            (["--latency-us", "-1"], ["--latency-us", ">= 0"]),
            (["--bandwidth", "10,fast"], ["--bandwidth", "'fast'"]),
            (["--bandwidth", "-10"], ["--bandwidth", "> 0"]),
            (["--bandwidth", "10,,25"], ["--bandwidth", "single commas"]),
            (["--ranks", "0,2"], ["--ranks", "at least 1"]),
            (["--ranks", "1.5"], ["--ranks", "whole numbers"]),
            (["--ranks", "4611686018427387904"], ["--ranks", "too large"]),
            (["--preset", "nosuch"], ["unknown preset"]),
            (["--d-model", "0"], ["--d-model", "at least 1"]),
        ]
        for (arguments, fragments) in cases {
            try expectOneLineError(["scaling"] + arguments, fragments, in: folder)
        }
    }
}
