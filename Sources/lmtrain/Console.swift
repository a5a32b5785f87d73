import Datasets
import Foundation
import Configuration
import Training

#if canImport(Glibc)
import Glibc
#endif

/// Prints training progress: on a terminal a live line (step/total, loss, bpc or ppl, lr,
/// tokens/s, ETA) rewritten in place, plus a permanent line per log interval; otherwise only
/// the plain lines.
final class ConsoleObserver: TrainingObserver {
    let interactive = isatty(STDOUT_FILENO) != 0
    let logInterval: Int
    /// The task's headline measure of a mean loss ("bpc 1.2345").
    let describe: (Double) -> String
    private var lastLive = Date.distantPast
    private var smoothedRate: Double = 0

    init(logInterval: Int, describe: @escaping (Double) -> String) {
        self.logInterval = logInterval
        self.describe = describe
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? "\(s / 3600)h\(String(format: "%02d", s % 3600 / 60))m" : s >= 60 ? "\(s / 60)m\(String(format: "%02d", s % 60))s" : "\(s)s"
    }

    func line(_ r: StepRecord, total: Int) -> String {
        smoothedRate = smoothedRate == 0 ? r.tokensPerSecond : 0.9 * smoothedRate + 0.1 * r.tokensPerSecond
        let width = String(total).count
        let stepText = String(repeating: " ", count: width - String(r.step).count) + "\(r.step)/\(total)"
        let secondsPerStep = r.elapsedSeconds / Double(max(1, r.step))
        return "step \(stepText) | loss \(String(format: "%.4f", r.loss)) | \(describe(r.crossEntropy)) | lr \(String(format: "%.2e", r.learningRate)) | \(String(format: "%.0f", smoothedRate)) tok/s | ETA \(Self.duration(secondsPerStep * Double(total - r.step)))"
    }

    func didStep(_ record: StepRecord, totalSteps: Int) {
        let text = line(record, total: totalSteps)
        if record.step % logInterval == 0 || record.step == totalSteps {
            emit(text, permanent: true)
        } else if interactive && Date().timeIntervalSince(lastLive) > 0.2 {
            lastLive = Date()
            emit(text, permanent: false)
        }
    }

    func didEvaluate(_ result: EvaluationResult, atStep step: Int) {
        emit("step \(step) | \(result.split) loss \(String(format: "%.4f", result.loss)) | \(result.metricText) | \(result.tokens) tokens", permanent: true)
    }

    func didSaveCheckpoint(_ url: URL, atStep step: Int) {
        emit("step \(step) | checkpoint \(url.path)", permanent: true)
    }

    func emit(_ text: String, permanent: Bool) {
        if interactive {
            print("\r\u{1B}[2K" + text, terminator: permanent ? "\n" : "")
        } else if permanent {
            print(text)
        }
        fflush(nil)
    }
}

