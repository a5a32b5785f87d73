import Foundation
import FormalLanguages
import Testing

func temporaryFolder() -> URL {
    let folder = FileManager.default.temporaryDirectory
        .appendingPathComponent("lmtrain-formal-\(getpid())-\(UUID().uuidString.prefix(8))")
    try! FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return folder
}

let smallSettings = FormalGenerationSettings(trainingSize: 200, evaluationSize: 50)

struct FileTests {
    @Test(arguments: FormalTask.allCases) func writtenFilesReadBackToTheSameDataSet(task: FormalTask) throws {
        let dataset = try task.generate(seed: 3, settings: smallSettings)
        let folder = temporaryFolder()
        try dataset.write(to: folder)
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        #expect(names == ["test_50.src", "test_50.tgt", "train_50.src", "train_50.tgt", "valid_50.src", "valid_50.tgt"])
        #expect(try FormalDataset.read(task, from: folder) == dataset)

        // One sequence per line, symbols separated by single spaces.
        let source = try String(contentsOf: folder.appendingPathComponent("train_50.src"), encoding: .utf8)
        let target = try String(contentsOf: folder.appendingPathComponent("train_50.tgt"), encoding: .utf8)
        #expect(source.split(separator: "\n").first.map(String.init)
            == dataset.inputSymbols(dataset.train.inputs[0]).joined(separator: " "))
        #expect(target.split(separator: "\n").count == dataset.train.count)

        // Vocabulary ids in order of first appearance in the training files.
        #expect(dataset.inputVocabulary == firstAppearances(source))
        #expect(dataset.targetVocabulary == firstAppearances(target))
    }

    func firstAppearances(_ text: String) -> [String] {
        var seen = Set<String>()
        return text.split(whereSeparator: \.isWhitespace).map(String.init).filter { seen.insert($0).inserted }
    }

    @Test func linesSeparatedByTabsOrCRLFAndWithoutAFinalNewlineAreRead() throws {
        let folder = temporaryFolder()
        let files = [
            "train_50.src": "1 0 1\r\n0\t0", "train_50.tgt": "0 0 1\r\n1 1\n",
            "valid_50.src": "1 1\n", "valid_50.tgt": "0 1\n", "test_50.src": "0\n", "test_50.tgt": "1\n",
        ]
        for (name, text) in files {
            try text.write(to: folder.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        let dataset = try FormalDataset.read(.parity, from: folder)
        #expect(dataset.inputVocabulary == ["1", "0"] && dataset.targetVocabulary == ["0", "1"])
        #expect(dataset.train.inputs == [[0, 1, 0], [1, 1]])
        #expect(dataset.train.targets == [[0, 0, 1], [1, 1]])
    }

    /// Writes a small valid parity or counter data set, lets `edit` change one file's lines, and
    /// returns the error message of reading it.
    func readError(
        _ task: FormalTask = .parity, file: String, edit: (inout [String]) -> Void
    ) throws -> String {
        let folder = temporaryFolder()
        try task.generate(seed: 5, settings: smallSettings).write(to: folder)
        let url = folder.appendingPathComponent(file)
        var lines = try String(contentsOf: url, encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast()  // the final newline
        edit(&lines)
        try (lines.map { $0 + "\n" }.joined()).write(to: url, atomically: true, encoding: .utf8)
        do {
            _ = try FormalDataset.read(task, from: folder)
        } catch {
            let message = "\(error)"
            #expect(!message.contains("\n"))
            #expect(message.hasPrefix(folder.path + "/"))
            return String(message.dropFirst(folder.path.count + 1))
        }
        Issue.record("\(file) was accepted")
        return ""
    }

    func replaceSymbol(_ lines: inout [String], line: Int, position: Int, with symbol: String) {
        var symbols = lines[line - 1].split(separator: " ").map(String.init)
        symbols[position - 1] = symbol
        lines[line - 1] = symbols.joined(separator: " ")
    }

    @Test func malformedFilesAreRefusedWithOneLineNamingFileLineAndPosition() throws {
        #expect(try readError(file: "valid_50.tgt") { $0.removeLast() }
            .hasPrefix("valid_50.tgt: line 50, position 1: missing line: valid_50.src has 50 lines, valid_50.tgt 49"))
        #expect(try readError(file: "test_50.src") { $0.append("0 0") }
            .hasPrefix("test_50.tgt: line 51, position 1: missing line"))
        #expect(try readError(file: "train_50.src") { $0[6] = "  " }
            .hasPrefix("train_50.src: line 7, position 1: empty line"))
        #expect(try readError(file: "train_50.tgt") { $0.insert("", at: 0) }
            .hasPrefix("train_50.tgt: line 1, position 1: empty line"))
        #expect(try readError(file: "train_50.src") { replaceSymbol(&$0, line: 3, position: 2, with: "x") }
            .hasPrefix("train_50.src: line 3, position 2: unknown input symbol 'x'; parity reads 0 1"))
        #expect(try readError(file: "valid_50.tgt") { replaceSymbol(&$0, line: 2, position: 1, with: "yes") }
            .hasPrefix("valid_50.tgt: line 2, position 1: unknown target symbol 'yes'"))
        let extraTarget = try readError(file: "train_50.tgt") { $0[3] += " 1" }
        #expect(extraTarget.hasPrefix("train_50.tgt: line 4, position "))
        #expect(extraTarget.contains("targets for"))
        #expect(try readError(file: "train_50.tgt") { $0 = [] }
            .hasPrefix("train_50.tgt: line 1, position 1: missing line"))
    }

    @Test func aTargetThatDisagreesWithItsInputPrefixIsRefusedAtItsPosition() throws {
        let message = try readError(file: "test_50.tgt") { lines in
            var symbols = lines[9].split(separator: " ").map(String.init)
            symbols[3] = symbols[3] == "1" ? "0" : "1"
            lines[9] = symbols.joined(separator: " ")
        }
        #expect(message.hasPrefix("test_50.tgt: line 10, position 4: target '"))
        #expect(message.contains("but the input prefix gives"))
    }

    @Test func anInputOutsideTheLanguageIsRefusedAtItsPosition() throws {
        let message = try readError(.counter2, file: "train_50.src") { lines in
            var symbols = lines[0].split(separator: " ").map(String.init)
            symbols[symbols.count - 1] = "a"
            lines[0] = symbols.joined(separator: " ")
        }
        #expect(message.contains("train_50.src: line 1, position "))
        #expect(message.contains("'a' cannot occur here: inputs are prefixes of a^n b^n"))
    }

    @Test func missingAndEmptyFilesAreOneLine() throws {
        let folder = temporaryFolder()
        #expect { _ = try FormalDataset.read(.dyck1, from: folder) } throws: { error in
            "\(error)" == folder.appendingPathComponent("train_50.src").path
                + ": missing; a task folder holds train_50, valid_50 and test_50, each as .src and .tgt"
        }
        for name in ["train_50.src", "train_50.tgt"] {
            try Data().write(to: folder.appendingPathComponent(name))
        }
        #expect { _ = try FormalDataset.read(.dyck1, from: folder) } throws: { error in
            "\(error)".hasSuffix(
                "train_50.src: line 1, position 1: empty file: every split needs at least one sequence")
        }
    }
}
