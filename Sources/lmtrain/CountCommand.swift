import ArgumentParser
import Foundation
import Models
import Configuration
import Training

struct Count: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a configuration's parameter count by component.")

    @OptionGroup var options: ConfigOptions

    func run() throws {
        let config = try options.resolve()
        let model = try TransformerXL(config: config.model)
        var groups: [(String, Int)] = []
        for view in model.layout.views {
            let parts = view.name.split(separator: ".")
            let group = parts[0] == "layers" ? String(parts[2]) : String(parts[0])
            if let i = groups.firstIndex(where: { $0.0 == group }) { groups[i].1 += view.count } else { groups.append((group, view.count)) }
        }
        print("\(options.preset): \(config.model.layers) layers, d_model \(config.model.modelWidth), \(config.model.heads) x \(config.model.resolvedHeadSize) heads, ffn \(config.model.feedForward.kind), vocabulary \(config.model.vocabularySize)")
        for (group, count) in groups {
            print("  \(group.padding(toLength: 18, withPad: " ", startingAt: 0)) \(String(format: "%12d", count))")
        }
        print("  \("total".padding(toLength: 18, withPad: " ", startingAt: 0)) \(String(format: "%12d", model.parameterCount)) (\(String(format: "%.2f", Double(model.parameterCount) / 1e6))M)")
    }
}
