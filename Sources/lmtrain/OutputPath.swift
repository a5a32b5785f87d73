import Datasets
import Foundation

/// Checks before a long computation that its result can be written where the user asked, so
/// that an unwritable `--output` fails at once rather than after the work.
enum OutputPath {
    /// Throws one line naming `flag` unless a file can be created at `path` the way
    /// `AtomicFile.write` will (a temporary file in its folder, the folder created if needed).
    static func checkWritable(_ path: String, flag: String) throws {
        let url = URL(fileURLWithPath: path)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw DataError("\(flag) \(path) is a folder: name a file")
        }
        let folder = url.deletingLastPathComponent()
        let probe = AtomicFile.temporaryURL(for: url)
        guard (try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)) != nil,
            FileManager.default.createFile(atPath: probe.path, contents: nil)
        else {
            throw DataError("\(flag) \(path): cannot write in \(folder.path); choose a writable location")
        }
        try? FileManager.default.removeItem(at: probe)
    }
}
