import Configuration
import Datasets
import Foundation

/// One JSON object per line in `metrics.jsonl`. Numbers are written in Swift's shortest
/// round-trip form, so a loss read back is bit-identical to the one computed.
public final class MetricsLog {
    public let url: URL
    private let handle: FileHandle

    /// Opens `url` for appending; with `keepingStepsUpTo`, first drops lines of later steps
    /// (a resumed run continues the log of the steps it keeps) and the `final` evaluation lines,
    /// which a finished run writes again (once) when it ends.
    public init(url: URL, keepingStepsUpTo lastStep: Int? = nil) throws {
        self.url = url
        if let lastStep, let old = FileManager.default.contents(atPath: url.path) {
            let kept = String(decoding: old, as: UTF8.self).split(separator: "\n").filter { line in
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                    let step = object["step"] as? Int
                else { return false }
                return step <= lastStep && object["type"] as? String != "final"
            }
            try AtomicFile.write(Data((kept.joined(separator: "\n") + (kept.isEmpty ? "" : "\n")).utf8), to: url)
        } else if !FileManager.default.fileExists(atPath: url.path) {
            try AtomicFile.write(Data(), to: url)
        }
        guard let handle = FileHandle(forWritingAtPath: url.path) else {
            throw DataError("\(url.path): cannot open for writing")
        }
        handle.seekToEndOfFile()
        self.handle = handle
    }

    deinit { try? handle.close() }

    /// Appends one record; values are String, Int, Double, Bool or nested arrays/objects of them.
    public func write(_ fields: [(String, Any)]) {
        handle.write(Data((Self.encode(fields) + "\n").utf8))
    }

    public static func encode(_ fields: [(String, Any)]) -> String {
        "{" + fields.map { "\"\($0.0)\":\(value($0.1))" }.joined(separator: ",") + "}"
    }

    static func value(_ v: Any) -> String {
        switch v {
        case let d as Double: d.isFinite ? "\(d)" : "null"
        case let f as Float: f.isFinite ? "\(f)" : "null"
        case let i as Int: "\(i)"
        case let b as Bool: b ? "true" : "false"
        case let s as String: "\"\(s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\""
        case let a as [Any]: "[" + a.map(value).joined(separator: ",") + "]"
        case let o as [String: Any]: "{" + o.keys.sorted().map { "\"\($0)\":\(value(o[$0]!))" }.joined(separator: ",") + "}"
        default: "null"
        }
    }
}
