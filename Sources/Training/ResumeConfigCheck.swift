import Configuration
import Datasets
import Foundation

extension Checkpoint.Loaded {
    /// Refuses to continue the run in `runDirectory` from a checkpoint of another model (a
    /// checkpoint copied in from another run would otherwise train on under the wrong
    /// config.json). The `model` parts of both configs are compared as resolved (defaults
    /// filled in), key by key; the first difference is named with both values. Other fields
    /// that differ (a hand-edited learning rate) do not make the checkpoint foreign: resume
    /// keeps the checkpoint's values and `ConfigDrift` says so. A directory without
    /// `config.json` (a checkpoint resumed on its own) has nothing to compare with.
    public func requireConfig(ofRunIn runDirectory: URL) throws {
        let file = runDirectory.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: file.path) else { return }
        let runConfig = try ConfigResolution.decode(ConfigResolution.readObject(file), source: file.path)
        let saved = ConfigDrift.flatten(ConfigResolution.encode(config))
        let expected = ConfigDrift.flatten(ConfigResolution.encode(runConfig))
        let keys = Set(saved.keys).union(expected.keys).sorted()
        guard let key = keys.first(where: { $0.hasPrefix("model.") && saved[$0] != expected[$0] }) else { return }
        throw DataError(
            "checkpoint \(url.path) has \(key) \(saved[key] ?? "not set") but \(file.path) says \(expected[key] ?? "not set"): it is not a checkpoint of this run; resume from the run's own checkpoints")
    }
}
