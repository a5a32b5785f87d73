import Configuration
import Datasets
import Foundation

extension Checkpoint.Loaded {
    /// Refuses to continue the run in `runDirectory` from a checkpoint of another config (a
    /// checkpoint copied in from another run would otherwise train on under the wrong
    /// config.json). Both configs are compared as resolved (defaults filled in), key by key;
    /// the first difference is named with both values. A directory without `config.json`
    /// (a checkpoint resumed on its own) has nothing to compare with.
    public func requireConfig(ofRunIn runDirectory: URL) throws {
        let file = runDirectory.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: file.path) else { return }
        let runConfig = try ConfigResolution.decode(ConfigResolution.readObject(file), source: file.path)
        let saved = ConfigResolution.encode(config), expected = ConfigResolution.encode(runConfig)
        guard let key = Self.firstDifference(saved, expected) else { return }
        throw DataError(
            "checkpoint \(url.path) has \(key) \(Self.text(Self.value(at: key, in: saved))) but \(file.path) says \(Self.text(Self.value(at: key, in: expected))): it is not a checkpoint of this run; resume from the run's own checkpoints")
    }

    /// The dotted path of the first key (in sorted order) whose values differ, or nil.
    static func firstDifference(_ a: ConfigResolution.Object, _ b: ConfigResolution.Object, prefix: String = "") -> String? {
        for key in Set(a.keys).union(b.keys).sorted() {
            let path = prefix.isEmpty ? key : "\(prefix).\(key)"
            if let x = a[key] as? ConfigResolution.Object, let y = b[key] as? ConfigResolution.Object {
                if let inner = firstDifference(x, y, prefix: path) { return inner }
            } else if text(a[key]) != text(b[key]) {
                return path
            }
        }
        return nil
    }

    static func value(at path: String, in object: ConfigResolution.Object) -> Any? {
        var current: Any? = object
        for key in path.split(separator: ".") { current = (current as? ConfigResolution.Object)?[String(key)] }
        return current
    }

    /// A JSON value as compact text (sorted keys), "not set" when absent.
    static func text(_ value: Any?) -> String {
        guard let value else { return "not set" }
        guard let data = try? JSONSerialization.data(withJSONObject: [value], options: [.sortedKeys, .fragmentsAllowed]) else {
            return "\(value)"
        }
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }
}
