import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Ctrl-C (SIGINT) and SIGTERM during a run. The first asks the training loop to stop after
/// the step it is on, which then writes a checkpoint; the command exits with 128 + the signal
/// (130, 143). A second signal, or one that arrives while nothing can be checkpointed (the
/// final evaluation, whose checkpoint already exists), ends the process at once with that
/// status; checkpoints are written by rename, so no file is left half written either way.
///
/// The signals are taken from their default action and delivered to a dispatch queue: the
/// handler runs on its own thread, so it may print and exit while the main thread computes.
final class Interruption {
    private let state: State
    /// Kept for the life of the run: a released source stops delivering.
    private let sources: [any DispatchSourceSignal]

    static let signals: [Int32] = [SIGINT, SIGTERM]

    /// Starts listening for SIGINT and SIGTERM; `resumeCommand` is what the user runs to
    /// continue (`lmtrain train --resume RUN`).
    init(resumeCommand: String) {
        let state = State(resumeCommand: resumeCommand)
        self.state = state
        sources = Self.signals.map { number in
            Glibc.signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { state.receive(number) }
            source.resume()
            return source
        }
    }

    /// The signal that asked the run to stop, if any.
    var receivedSignal: Int32? {
        let value = state.received.load(ordering: .acquiring)
        return value == 0 ? nil : value
    }

    /// The exit status for `signal`: 128 + its number, as a shell reports a process it ended.
    static func status(_ signal: Int32) -> Int32 { 128 + signal }

    /// From now on a signal ends the process at once, saying `reason` (nothing is left to
    /// checkpoint).
    func stopAtOnceFromNow(_ reason: String) {
        state.immediateReason.withLock { $0 = reason }
        state.immediate.store(true, ordering: .releasing)
    }

    /// What the handler, on its dispatch thread, shares with the training thread.
    private final class State: Sendable {
        /// The first signal received, 0 before any.
        let received = Atomic<Int32>(0)
        /// Whether a signal now ends the process at once, and the reason it gives.
        let immediate = Atomic<Bool>(false)
        let immediateReason = Mutex<String>("")
        let resumeCommand: String

        init(resumeCommand: String) { self.resumeCommand = resumeCommand }

        func receive(_ number: Int32) {
            let (first, _) = received.compareExchange(expected: 0, desired: number, ordering: .acquiringAndReleasing)
            let name = number == SIGINT ? "interrupt" : "SIGTERM"
            if immediate.load(ordering: .acquiring) {
                let reason = immediateReason.withLock { $0 }
                exitNow(number, "\(name) \(reason); continue with: \(resumeCommand)")
            } else if !first {
                exitNow(number, "second \(name): stopping at once (checkpoints written so far are kept); continue with: \(resumeCommand)")
            } else {
                let hint = number == SIGINT ? " (Ctrl-C again stops at once)" : ""
                FileHandle.standardError.write(Data("\nlmtrain: \(name): stopping after this step to write a checkpoint\(hint)\n".utf8))
            }
        }

        private func exitNow(_ number: Int32, _ message: String) {
            fflush(nil)
            FileHandle.standardError.write(Data("\nlmtrain: \(message)\n".utf8))
            _exit(Interruption.status(number))
        }
    }
}
