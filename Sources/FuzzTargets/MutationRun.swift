import Foundation

/// A deterministic mutation run: mutated seeds fed to a target, for a number of inputs or a
/// time budget. No coverage feedback (that is libFuzzer's part); it runs everywhere.
public struct MutationRun {
    public let target: FuzzTarget
    public let seeds: [[UInt8]]
    public let scratch: URL

    public init(target: FuzzTarget, seeds: [[UInt8]], scratch: URL) {
        precondition(!seeds.isEmpty, "a mutation run needs at least one seed")
        self.target = target
        self.seeds = seeds
        self.scratch = scratch
    }

    public struct Result: Sendable {
        public var executions: Int
        public var seconds: Double
    }

    /// Runs the seeds unchanged, then mutated inputs until `executions` have run or `seconds`
    /// have passed. `willRun` sees every input first (the driver keeps it for a crash report).
    public func run(
        seed: UInt64, executions: Int = .max, seconds: Double = .infinity, willRun: ([UInt8]) -> Void = { _ in }
    ) -> Result {
        var mutator = Mutator(seed: seed)
        let start = Date()
        var done = 0
        for input in seeds where done < executions {
            willRun(input)
            target.run(input, scratch: scratch)
            done += 1
        }
        while done < executions {
            if done % 64 == 0, Date().timeIntervalSince(start) >= seconds { break }
            let input = mutator.mutate(seeds[mutator.below(seeds.count)], other: seeds[mutator.below(seeds.count)])
            willRun(input)
            target.run(input, scratch: scratch)
            done += 1
        }
        return Result(executions: done, seconds: Date().timeIntervalSince(start))
    }

    /// The files of `paths` (folders: their files, sorted), as seeds.
    public static func seeds(_ paths: [String]) throws -> [[UInt8]] {
        var files: [URL] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw FuzzError("\(path): no such file or folder")
            }
            if isDirectory.boolValue {
                let names = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
                files += names.map { URL(fileURLWithPath: path).appendingPathComponent($0) }
            } else {
                files.append(URL(fileURLWithPath: path))
            }
        }
        return try files.map { try [UInt8](Data(contentsOf: $0)) }
    }
}

public struct FuzzError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
