// Fuzzing the readers of user files (Docs/reliability.md, "Fuzzing").
//
// Built normally, this is a deterministic mutation runner that needs nothing but the toolchain:
//   lmtrain-fuzz TARGET [--seconds N] [--executions N] [--seed S] CORPUS...
// Built with libFuzzer instead (coverage-guided; TARGET from the environment):
//   swift build -c release --build-path .build-fuzz --product lmtrain-fuzz \
//       -Xswiftc -sanitize=fuzzer -Xswiftc -DFUZZING
//   LMTRAIN_FUZZ_TARGET=zip .build-fuzz/release/lmtrain-fuzz Fuzz/corpus/zip -max_total_time=600

import Foundation
import FuzzTargets

#if canImport(Glibc)
import Glibc
#endif

/// One line on standard error.
func printError(_ line: String) {
    FileHandle.standardError.write(Data("lmtrain-fuzz: \(line)\n".utf8))
}

/// A per-process scratch file for readers that take a path (in memory where /dev/shm exists).
let scratchFile: URL = {
    let folder = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    return URL(fileURLWithPath: folder).appendingPathComponent("lmtrain-fuzz-\(getpid()).bin")
}()

#if FUZZING
/// The target named by LMTRAIN_FUZZ_TARGET, read once.
let environmentTarget: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["LMTRAIN_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
        printError("set LMTRAIN_FUZZ_TARGET to one of \(names)")
        exit(2)
    }
    return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    environmentTarget.run(Array(UnsafeBufferPointer(start: data, count: size)), scratch: scratchFile)
    return 0
}

/// libFuzzer's driver, run from the entry point SwiftPM links an executable with (it renames
/// `main` to `lmtrain_fuzz_main`, so libFuzzer's own `main` is not the one linked).
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@_cdecl("lmtrain_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc, argv = argv
    return runFuzzerDriver(&argc, &argv) { data, size in fuzzOneInput(data, size) }
}
#else
@main
struct LMTrainFuzz {
    static func main() {
        do {
            try run(Array(CommandLine.arguments.dropFirst()))
        } catch {
            printError("\(error)")
            exit(2)
        }
    }

    static func run(_ arguments: [String]) throws {
        let usage = "usage: lmtrain-fuzz \(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) [--seconds N] [--executions N] [--seed S] CORPUS..."
        guard let name = arguments.first, let target = FuzzTarget(rawValue: name) else { throw FuzzError(usage) }
        var seconds = Double.infinity, executions = Int.max, seed: UInt64 = 1, corpus: [String] = []
        var rest = arguments.dropFirst()
        while let argument = rest.popFirst() {
            func value() throws -> String {
                guard let value = rest.popFirst() else { throw FuzzError("\(argument) needs a value") }
                return value
            }
            switch argument {
            case "--seconds": seconds = try Double(value()).map { $0 } ?? { throw FuzzError("--seconds takes a number") }()
            case "--executions": executions = try Int(value()) ?? { throw FuzzError("--executions takes an integer") }()
            case "--seed": seed = try UInt64(value()) ?? { throw FuzzError("--seed takes an integer") }()
            default: corpus.append(argument)
            }
        }
        guard !corpus.isEmpty, seconds.isFinite || executions < .max else {
            throw FuzzError("give a corpus and --seconds or --executions\n\(usage)")
        }
        let seeds = try MutationRun.seeds(corpus)
        CrashCapture.install(path: "crash-\(target.rawValue)-\(getpid()).bin")
        let result = MutationRun(target: target, seeds: seeds, scratch: scratchFile)
            .run(seed: seed, executions: executions, seconds: seconds, willRun: CrashCapture.keep)
        try? FileManager.default.removeItem(at: scratchFile)
        let rate = Double(result.executions) / max(result.seconds, 1e-9)
        print("\(target.rawValue): \(result.executions) executions in \(String(format: "%.1f", result.seconds)) s (\(Int(rate))/s), seed \(seed), \(seeds.count) seeds, no crash")
    }
}

/// Keeps a copy of the input being run so that a trap (SIGILL on x86_64, SIGTRAP on arm64) or
/// a segfault writes it to a file before the process dies: the finding, ready for a
/// regression test. Only async-signal-safe calls run in the handler.
enum CrashCapture {
    static let capacity = 1 << 20 + 1
    nonisolated(unsafe) static let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
    nonisolated(unsafe) static var length = 0
    nonisolated(unsafe) static var path: UnsafeMutablePointer<CChar>? = nil

    static func install(path name: String) {
        path = strdup(name)
        for signal in [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGABRT, SIGFPE] {
            Glibc.signal(signal) { number in
                if let path = CrashCapture.path {
                    let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                    if descriptor >= 0 {
                        _ = write(descriptor, CrashCapture.buffer, CrashCapture.length)
                        close(descriptor)
                    }
                    let note: StaticString = "lmtrain-fuzz: crash; the input is in "
                    _ = write(2, note.utf8Start, note.utf8CodeUnitCount)
                    _ = write(2, path, strlen(path))
                    _ = write(2, "\n", 1)
                }
                Glibc.signal(number, SIG_DFL)
                raise(number)
            }
        }
    }

    static func keep(_ input: [UInt8]) {
        length = min(input.count, capacity)
        input.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress!, count: length) }
    }
}
#endif
