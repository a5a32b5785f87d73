import Datasets
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The one check every command runs on the file it is about to write: the output must not be
/// one of the command's own inputs (`lmtrain step --dump C` with C the checkpoint would replace
/// it), and must not replace a checkpoint with something that is not one.
public enum OutputPath {
    /// What a command writes.
    public enum Content {
        /// JSON or other text: may replace neither a checkpoint nor any other safetensors file.
        case text
        /// A safetensors file that is not a checkpoint (a step dump): may replace another such
        /// file, but not an lmtrain checkpoint.
        case safetensors
    }

    /// Throws when `output` (given as `flag`) is the same file as one of `inputs` (flag and
    /// path; paths that do not exist are skipped), or when it exists and `content` would
    /// replace a checkpoint-format file it must not.
    public static func check(_ output: URL, flag: String, content: Content, inputs: [(flag: String, path: String)]) throws {
        guard let target = identity(output.path) else { return }  // a new file replaces nothing
        for input in inputs where identity(input.path)?.file == target.file {
            throw DataError("\(flag) \(output.path) is the \(input.flag) file of the same command (same file after resolving links): writing it would destroy the input; choose another path")
        }
        // Only a regular file is read for its header (opening a FIFO would wait for a writer).
        guard target.isRegular, let header = SafeTensors.header(of: output) else { return }
        let isCheckpoint = (header["__metadata__"] as? [String: String])?["format"] == Checkpoint.format
        switch content {
        case .text:
            throw DataError("\(flag) \(output.path) is a safetensors \(isCheckpoint ? "checkpoint" : "file"); lmtrain does not replace it with JSON: choose another path")
        case .safetensors where isCheckpoint:
            throw DataError("\(flag) \(output.path) is an lmtrain checkpoint; lmtrain does not replace it with a step dump: choose another path")
        case .safetensors:
            return
        }
    }

    /// Throws one line naming `flag` unless a file can be created at `path` the way
    /// `AtomicFile.write` will (a temporary file in its folder, the folder created if needed):
    /// run before a long computation, so that an unwritable `--output` fails at once rather
    /// than after the work.
    public static func checkWritable(_ path: String, flag: String) throws {
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

    /// Device and inode of the file at `path` after following links (equal for two names of
    /// one file: links, `./x` and `x`, hard links) and whether it is a regular file; nil if
    /// there is none.
    static func identity(_ path: String) -> (file: [UInt64], isRegular: Bool)? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return ([UInt64(info.st_dev), UInt64(info.st_ino)], (info.st_mode & S_IFMT) == S_IFREG)
    }
}
