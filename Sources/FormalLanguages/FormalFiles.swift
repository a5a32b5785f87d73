import Foundation

/// The benchmark's files: per split a .src file of input symbols and a .tgt file of target
/// symbols, one sequence per line, symbols separated by spaces, the target line holding one
/// symbol per input symbol. The names are those the paper's training script reads from a
/// task's folder (its fixed level 50 is part of them): train_50, valid_50 (Bin0) and test_50
/// (Bin1), so a folder of the paper's data can be read as it is.
extension FormalSplit {
    public var fileStem: String {
        switch self {
        case .train: "train_50"
        case .bin0: "valid_50"
        case .bin1: "test_50"
        }
    }

    public var sourceFileName: String { fileStem + ".src" }
    public var targetFileName: String { fileStem + ".tgt" }
}

extension FormalDataset {
    /// Writes the six files into `folder` (created if needed), each atomically: a reader sees
    /// the old file or the new one, never a part.
    public func write(to folder: URL) throws(FormalDataError) {
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw FormalDataError("\(folder.path): cannot create the folder; choose a writable location")
        }
        for split in FormalSplit.allCases {
            let sequences = self[split]
            let source = folder.appendingPathComponent(split.sourceFileName)
            let target = folder.appendingPathComponent(split.targetFileName)
            try Self.writeLines(sequences.inputs, vocabulary: inputVocabulary, to: source)
            try Self.writeLines(sequences.targets, vocabulary: targetVocabulary, to: target)
        }
    }

    private static func writeLines(_ sequences: [[Int32]], vocabulary: [String], to url: URL) throws(FormalDataError) {
        let symbols = vocabulary.map { Array($0.utf8) }
        var bytes: [UInt8] = []
        for sequence in sequences {
            for (position, id) in sequence.enumerated() {
                if position > 0 { bytes.append(UInt8(ascii: " ")) }
                bytes.append(contentsOf: symbols[Int(id)])
            }
            bytes.append(UInt8(ascii: "\n"))
        }
        do {
            // .atomic writes a temporary file next to `url` and renames it over `url`.
            try Data(bytes).write(to: url, options: .atomic)
        } catch {
            throw FormalDataError("\(url.path): cannot write; check that the folder is writable")
        }
    }

    /// Reads and checks the six files of `task` in `folder`. Every target is recomputed from
    /// its input prefix (`FormalTask.targets(of:)`); a file that disagrees or is malformed (a
    /// missing file, unequal line counts of a .src and its .tgt, an empty line or file, a line
    /// whose symbol counts differ from its partner's, an unknown symbol, an input outside the
    /// task's language) is refused with one line naming the file, line and position.
    public static func read(_ task: FormalTask, from folder: URL) throws(FormalDataError) -> FormalDataset {
        let checker = FileChecker(task: task)
        let splits = try FormalSplit.allCases.map { split throws(FormalDataError) in
            try checker.inputs(
                source: folder.appendingPathComponent(split.sourceFileName),
                target: folder.appendingPathComponent(split.targetFileName))
        }
        return FormalDataset(task: task, train: splits[0], bin0: splits[1], bin1: splits[2])
    }
}

/// Checks one .src/.tgt pair against the task's target rule.
private struct FileChecker {
    let task: FormalTask
    let inputIndex: [String: UInt8]
    let targetIndex: [String: UInt8]

    init(task: FormalTask) {
        self.task = task
        inputIndex = Dictionary(uniqueKeysWithValues: task.inputAlphabet.enumerated().map { ($1, UInt8($0)) })
        targetIndex = Dictionary(uniqueKeysWithValues: task.targetAlphabet.enumerated().map { ($1, UInt8($0)) })
    }

    /// The input strings of the pair, as alphabet indices, once every line has checked.
    func inputs(source: URL, target: URL) throws(FormalDataError) -> [[UInt8]] {
        let sourceLines = try lines(of: source)
        let targetLines = try lines(of: target)
        var words: [[UInt8]] = []
        words.reserveCapacity(sourceLines.count)
        for (index, (sourceLine, targetLine)) in zip(sourceLines, targetLines).enumerated() {
            words.append(try check(sourceLine, targetLine, line: index + 1, source: source, target: target))
        }
        if sourceLines.count != targetLines.count {
            let (short, long) = sourceLines.count < targetLines.count ? (source, target) : (target, source)
            let shortCount = min(sourceLines.count, targetLines.count)
            throw .at(
                short, line: shortCount + 1, position: 1,
                "missing line: \(long.lastPathComponent) has \(max(sourceLines.count, targetLines.count)) lines, "
                    + "\(short.lastPathComponent) \(shortCount)")
        }
        if words.isEmpty {
            throw .at(source, line: 1, position: 1, "empty file: every split needs at least one sequence")
        }
        return words
    }

    private func check(
        _ sourceLine: ArraySlice<UInt8>, _ targetLine: ArraySlice<UInt8>, line: Int, source: URL, target: URL
    ) throws(FormalDataError) -> [UInt8] {
        let inputSymbols = symbols(of: sourceLine)
        let targetSymbols = symbols(of: targetLine)
        for (file, symbols) in [(source, inputSymbols), (target, targetSymbols)] where symbols.isEmpty {
            throw .at(file, line: line, position: 1, "empty line: every line holds at least one symbol")
        }
        var word: [UInt8] = []
        word.reserveCapacity(inputSymbols.count)
        for (position, symbol) in inputSymbols.enumerated() {
            guard let index = inputIndex[symbol] else {
                throw .at(source, line: line, position: position + 1, task.unknownInputMessage(shown(symbol)))
            }
            word.append(index)
        }
        if inputSymbols.count != targetSymbols.count {
            throw .at(
                target, line: line, position: min(inputSymbols.count, targetSymbols.count) + 1,
                "\(targetSymbols.count) targets for \(inputSymbols.count) input symbols in \(source.lastPathComponent)")
        }
        let expected: [UInt8]
        do {
            expected = try task.targetIndices(of: word)
        } catch {
            throw .at(source, line: line, position: error.position + 1, error.reason)
        }
        for (position, symbol) in targetSymbols.enumerated() {
            guard let index = targetIndex[symbol] else {
                throw .at(
                    target, line: line, position: position + 1,
                    "unknown target symbol '\(shown(symbol))'; \(task.rawValue) targets are "
                        + task.targetAlphabet.joined(separator: " "))
            }
            if index != expected[position] {
                throw .at(
                    target, line: line, position: position + 1,
                    "target '\(symbol)' but the input prefix gives '\(task.targetAlphabet[Int(expected[position])])'")
            }
        }
        return word
    }

    /// The lines of a file; a final newline ends the last line rather than starting an empty one.
    private func lines(of url: URL) throws(FormalDataError) -> [ArraySlice<UInt8>] {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw FormalDataError(
                "\(url.path): missing; a task folder holds train_50, valid_50 and test_50, each as .src and .tgt")
        }
        let bytes: [UInt8]
        do {
            bytes = [UInt8](try Data(contentsOf: url))
        } catch {
            throw FormalDataError("\(url.path): cannot read; check its permissions")
        }
        var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        if bytes.last == UInt8(ascii: "\n") || bytes.isEmpty { lines.removeLast() }
        return lines
    }

    /// The whitespace-separated symbols of a line.
    private func symbols(of line: ArraySlice<UInt8>) -> [String] {
        line.split(whereSeparator: { $0 == 0x20 || (0x09...0x0D).contains($0) })
            .map { String(decoding: $0, as: UTF8.self) }
    }

    /// A symbol as an error message shows it: at most 20 characters.
    private func shown(_ symbol: String) -> String {
        symbol.count <= 20 ? symbol : symbol.prefix(20) + "..."
    }
}
