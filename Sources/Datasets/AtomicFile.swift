import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Writes files so that readers see either the old or the new contents, never half:
/// write to a temporary name in the same folder, flush, then rename over the target.
public enum AtomicFile {
    /// A temporary path next to `url` (same file system, so the rename is atomic).
    public static func temporaryURL(for url: URL) -> URL {
        url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
    }

    /// Renames `temporary` over `url` atomically.
    public static func commit(_ temporary: URL, to url: URL) throws {
        if rename(temporary.path, url.path) != 0 {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: temporary)
            throw DataError("\(url.path): cannot write (\(reason)); check that the folder is writable")
        }
    }

    /// Writes `data` to `url` atomically, creating the folder if needed.
    public static func write(_ data: Data, to url: URL) throws {
        let folder = url.deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw DataError("\(folder.path): cannot create the folder; choose a writable location")
        }
        let temporary = temporaryURL(for: url)
        guard FileManager.default.createFile(atPath: temporary.path, contents: data) else {
            throw DataError("\(url.path): cannot write in \(folder.path); choose a writable location")
        }
        try commit(temporary, to: url)
    }
}
