import Foundation

/// The shared corpora folder `../shared/data` next to the package root, or nil when a user's
/// fresh clone does not have it (tests then skip with a one-line reason).
public enum SharedData {
    public static let root: URL? = {
        // Tests/Support/SharedData.swift -> package root -> ../shared/data
        let packageRoot = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let candidate = packageRoot.deletingLastPathComponent()
            .appendingPathComponent("shared/data")
        return FileManager.default.fileExists(atPath: candidate.path) ? candidate : nil
    }()

    /// The file at `relativePath` under the shared data folder, if present.
    public static func file(_ relativePath: String) -> URL? {
        guard let root else { return nil }
        let url = root.appendingPathComponent(relativePath)
        return FileManager.default.fileExists(atPath: url.path) ? url : nil
    }

    public static let skipReason = "../shared/data is absent (a fresh clone): corpus test skipped"
}

/// The package root (for running the built `lmtrain` binary and reading committed files).
public let packageRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
