import Configuration
import Foundation

/// A resumed run continues with the config its checkpoint carries; `config.json` only records
/// it. When someone edits `config.json` by hand, resume says which fields it will not use
/// rather than ignoring the edit without a word. (A difference in the `model` fields makes resume
/// refuse instead, in `Checkpoint.Loaded.requireConfig`: the checkpoint is then another run's.)
public enum ConfigDrift {
    /// One field whose value in `config.json` differs from the checkpoint's.
    public struct Difference: Sendable, Equatable {
        /// Dotted key, as in `config.json` (`training.learning_rate`).
        public var key: String
        public var file: String
        public var checkpoint: String
    }

    /// The fields outside `model` in which `file` differs from `checkpoint`, sorted by key.
    public static func differences(file: RunConfig, checkpoint: RunConfig) -> [Difference] {
        let a = flatten(ConfigResolution.encode(file)), b = flatten(ConfigResolution.encode(checkpoint))
        return Set(a.keys).union(b.keys).sorted().compactMap { key in
            guard !key.hasPrefix("model."), a[key] != b[key] else { return nil }
            return Difference(key: key, file: a[key] ?? "absent", checkpoint: b[key] ?? "absent")
        }
    }

    /// The line resume prints about `runDirectory/config.json`, or nil when it agrees with
    /// `checkpoint`.
    public static func note(runDirectory: URL, checkpoint: RunConfig) -> String? {
        let url = runDirectory.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: url.path) else {
            return "\(url.path) is missing: resuming with the checkpoint's config"
        }
        let file: RunConfig
        do {
            file = try ConfigResolution.decode(ConfigResolution.readObject(url), source: url.path)
        } catch {
            return "\(url.path) cannot be read (\(error)): resuming with the checkpoint's config"
        }
        let changed = differences(file: file, checkpoint: checkpoint)
        guard !changed.isEmpty else { return nil }
        let fields = changed.map { "\($0.key) (config.json \($0.file), checkpoint \($0.checkpoint))" }
        return "\(url.path) differs from its checkpoint in \(fields.joined(separator: ", ")): resume continues with the checkpoint's values and ignores these edits; to train with other values, start a new run"
    }

    /// Leaves of a JSON object by dotted key, each as its JSON text.
    static func flatten(_ object: [String: Any], prefix: String = "") -> [String: String] {
        var leaves: [String: String] = [:]
        for (key, value) in object {
            if let nested = value as? [String: Any] {
                leaves.merge(flatten(nested, prefix: prefix + key + ".")) { a, _ in a }
            } else {
                leaves[prefix + key] = text(value)
            }
        }
        return leaves
    }

    static func text(_ value: Any) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys]) else {
            return "\(value)"
        }
        return String(decoding: data, as: UTF8.self)
    }
}
