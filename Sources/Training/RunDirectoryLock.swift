import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One process per run directory: an exclusive `flock` on `RUN/.lock`, which holds the PID of
/// its holder. The kernel drops the lock when the holder's descriptor closes, including when
/// the process dies (`kill -9`), so a lock is never stale; the PID in the file is only there to
/// name the holder in the refusal.
public final class RunDirectoryLock {
    public let url: URL
    private let descriptor: Int32

    /// Locks `runDirectory` (created if needed), or throws one line naming the process that
    /// holds it. The lock lasts until this object is released or the process ends.
    public init(_ runDirectory: URL) throws {
        do {
            try FileManager.default.createDirectory(at: runDirectory, withIntermediateDirectories: true)
        } catch {
            throw TrainingError(description: "\(runDirectory.path): cannot create the run directory; choose a writable --run-dir")
        }
        url = runDirectory.appendingPathComponent(".lock")
        // Close-on-exec: processes this one starts must not inherit (and so keep) the lock.
        let fd = open(url.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw TrainingError(description: "\(url.path): cannot open the lock file (\(String(cString: strerror(errno)))); choose a writable --run-dir")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let busy = errno == EWOULDBLOCK
            let reason = String(cString: strerror(errno))
            let holder = Self.holder(fd)
            close(fd)
            guard busy else { throw TrainingError(description: "\(url.path): cannot lock (\(reason))") }
            throw TrainingError(description: "run directory \(runDirectory.path) is in use by \(holder.map { "process \($0)" } ?? "another process"): wait for it to end or stop it, then try again")
        }
        descriptor = fd
        let pid = Data("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    deinit { close(descriptor) }

    /// The PID written by the lock's holder, if it has written one yet.
    private static func holder(_ fd: Int32) -> Int32? {
        var bytes = [UInt8](repeating: 0, count: 32)
        let count = pread(fd, &bytes, bytes.count, 0)
        guard count > 0 else { return nil }
        return Int32(String(decoding: bytes[..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
