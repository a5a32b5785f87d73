import Foundation

#if canImport(Glibc)
import Glibc
#endif

extension AtomicFile {
    /// The process that writes the temporary file `name` (`.TARGET.PID.tmp`, as
    /// `temporaryURL(for:)` names it); nil for any other name.
    public static func writerPID(ofTemporary name: String) -> pid_t? {
        guard name.hasPrefix("."), name.hasSuffix(".tmp") else { return nil }
        let parts = name.dropLast(".tmp".count).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 3, let pid = pid_t(parts[parts.count - 1]), pid > 0 else { return nil }
        return pid
    }

    /// Removes the temporary files in `folder` whose writer is no longer running (a process
    /// killed mid-write leaves its temporary behind, and nothing else would ever remove it);
    /// those of live processes are left alone. Returns the names removed.
    @discardableResult
    public static func removeStaleTemporaries(in folder: URL) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        var removed: [String] = []
        for name in names.sorted() {
            guard let pid = writerPID(ofTemporary: name), !isRunning(pid) else { continue }
            if (try? FileManager.default.removeItem(at: folder.appendingPathComponent(name))) != nil {
                removed.append(name)
            }
        }
        return removed
    }

    /// Whether process `pid` exists. Only ESRCH means gone: EPERM is a live process of
    /// another user, whose file must stay.
    static func isRunning(_ pid: pid_t) -> Bool {
        kill(pid, 0) == 0 || errno != ESRCH
    }
}
