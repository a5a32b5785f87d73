// What data preparation tells the user: permanent lines, and on a terminal a progress bar with
// MB/s rewritten in place (plain lines only when the output is a file or a pipe).

import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where preparation reports what it does. Permanent lines are also kept in ``lines`` so tests
/// can check what was said.
public final class PreparationReporter {
    /// Where lines go.
    public enum Output: Sendable {
        /// Standard output; a live bar when it is a terminal.
        case standardOutput
        /// Nothing is printed (lines are still kept).
        case none
    }

    let output: Output
    /// Whether a live line may be rewritten in place.
    let interactive: Bool
    /// Every permanent line reported so far.
    public private(set) var lines: [String] = []
    private var liveShown = false

    /// `interactive` (rewriting a live line) defaults to whether standard output is a terminal.
    public init(output: Output, interactive: Bool? = nil) {
        self.output = output
        self.interactive = output == .standardOutput && (interactive ?? (isatty(STDOUT_FILENO) != 0))
    }

    /// Standard output, live bar on a terminal.
    public static var console: PreparationReporter { PreparationReporter(output: .standardOutput) }
    /// Prints nothing.
    public static var silent: PreparationReporter { PreparationReporter(output: .none) }

    /// A permanent line.
    public func note(_ line: String) {
        lines.append(line)
        guard output == .standardOutput else { return }
        print((liveShown ? "\r\u{1B}[2K" : "") + line)
        liveShown = false
        fflush(nil)
    }

    /// A line rewritten in place (terminals only).
    func live(_ line: String) {
        guard interactive else { return }
        print("\r\u{1B}[2K" + line, terminator: "")
        liveShown = true
        fflush(nil)
    }
}

/// Progress over a known number of bytes: `[#####.....]  52%  5.6/10.8 MB  24.1 MB/s`.
final class ProgressBar {
    let title: String
    let totalBytes: Int
    let reporter: PreparationReporter
    let started = Date()
    private var lastDrawn = Date.distantPast
    private var lastPlainLine: Date

    init(title: String, totalBytes: Int, reporter: PreparationReporter) {
        self.title = title
        self.totalBytes = max(1, totalBytes)
        self.reporter = reporter
        lastPlainLine = started
    }

    var seconds: Double { max(1e-9, Date().timeIntervalSince(started)) }

    static func megabytes(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1e6) }

    /// `done` bytes of `totalBytes` processed.
    func advance(to done: Int) {
        let now = Date()
        let rate = Double(done) / 1e6 / seconds
        if reporter.interactive {
            guard now.timeIntervalSince(lastDrawn) > 0.1 else { return }
            lastDrawn = now
            let fraction = min(1, Double(done) / Double(totalBytes))
            let filled = Int(fraction * 24)
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: 24 - filled)
            let remaining = rate > 0 ? Double(totalBytes - done) / 1e6 / rate : .infinity
            reporter.live(String(format: "  %@  [%@] %3.0f%%  %@/%@  %.1f MB/s  ETA %@", title, bar, 100 * fraction, Self.megabytes(done), Self.megabytes(totalBytes), rate, Self.duration(remaining)))
        } else if now.timeIntervalSince(lastPlainLine) >= 30 {
            // Long steps written to a log still show signs of life.
            lastPlainLine = now
            reporter.note(String(format: "  %@: %@ of %@, %.1f MB/s", title, Self.megabytes(done), Self.megabytes(totalBytes), rate))
        }
    }

    /// The permanent line that ends the bar.
    func finish(_ summary: String) {
        reporter.note(String(format: "  %@: %@ in %.2f s (%.1f MB/s)%@", title, Self.megabytes(totalBytes), seconds, Double(totalBytes) / 1e6 / seconds, summary.isEmpty ? "" : ", " + summary))
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 60 ? "\(s / 60)m\(String(format: "%02d", s % 60))s" : "\(s)s"
    }
}
