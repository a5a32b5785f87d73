import Accounting
import ArgumentParser
import Configuration
import Foundation
import Models

struct Count: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Parameters, FLOPs per token and memory of a configuration (nothing is allocated).")

    @OptionGroup var options: ConfigOptions
    @Flag(help: "Print the account as JSON.") var json = false

    func run() throws {
        let (config, note) = try options.resolveWithNote()
        let account = try Accountant.account(config)
        if let note, !json { print(note) }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(account), as: UTF8.self))
        } else {
            print(AccountTable.render(account, config: config, name: options.preset))
        }
    }
}
