import Foundation
import Training

#if canImport(Glibc)
import Glibc
#endif

/// Progress of the final evaluation, which can take minutes: on a terminal a live line per
/// split (batches, tokens, tokens/s, ETA) rewritten in place; otherwise plain lines, one when a
/// split starts, one every 30 seconds and one when it ends.
final class EvaluationConsole {
    let interactive = isatty(STDOUT_FILENO) != 0
    private var split = ""
    private var started = Date()
    private var lastLine = Date.distantPast
    private var lastPlainLine = Date()

    func report(split: String, _ progress: EvaluationProgress) {
        let now = Date()
        if split != self.split {
            self.split = split
            started = now
            lastPlainLine = now
            emit("evaluating \(split): \(progress.totalBatches) batches", permanent: true)
        }
        // Before the first batch (the tasks report 0 batches then) there is no rate yet.
        if progress.batches == 0 && progress.totalBatches > 0 { return }
        let seconds = max(1e-9, now.timeIntervalSince(started))
        let rate = Double(progress.tokens) / seconds
        if progress.batches == progress.totalBatches {
            emit(String(format: "evaluated %@: %d batches, %d tokens in %.1f s (%.0f tok/s)", split, progress.totalBatches, progress.tokens, seconds, rate), permanent: true)
            return
        }
        let remaining = seconds / Double(progress.batches) * Double(progress.totalBatches - progress.batches)
        let line = "\(split) \(progress.batches)/\(progress.totalBatches) batches | \(progress.tokens) tokens | \(String(format: "%.0f", rate)) tok/s | ETA \(ConsoleObserver.duration(remaining))"
        if interactive, now.timeIntervalSince(lastLine) > 0.2 {
            lastLine = now
            emit(line, permanent: false)
        } else if !interactive, now.timeIntervalSince(lastPlainLine) >= 30 {
            lastPlainLine = now
            emit(line, permanent: true)
        }
    }

    private func emit(_ text: String, permanent: Bool) {
        if interactive {
            print("\r\u{1B}[2K" + text, terminator: permanent ? "\n" : "")
        } else {
            print(text)
        }
        fflush(nil)
    }
}
