import Datasets
import Foundation
import Layers
import Models

/// Builds a run config from a preset, then a JSON override file, then flag overrides, each
/// layer replacing only the fields it names. Unknown keys are errors that name the key.
public enum ConfigResolution {
    /// A JSON object as parsed by JSONSerialization.
    public typealias Object = [String: Any]

    public static func encode(_ config: RunConfig) -> Object {
        let encoder = JSONEncoder()
        let data = try! encoder.encode(config)
        return try! JSONSerialization.jsonObject(with: data) as! Object
    }

    /// Pretty JSON with sorted keys, as written to `config.json`.
    public static func prettyJSON(_ config: RunConfig) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try! encoder.encode(config)
    }

    /// One-line JSON with sorted keys, as stored in checkpoint metadata.
    public static func compactJSON(_ config: RunConfig) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try! encoder.encode(config)
    }

    public static func decode(_ object: Object, source: String) throws -> RunConfig {
        let data = try JSONSerialization.data(withJSONObject: object)
        do {
            return try JSONDecoder().decode(RunConfig.self, from: data)
        } catch let error as ConfigError {
            throw ConfigError("\(source): \(error.description)")
        } catch let error as FeedForwardConfigError {
            throw ConfigError("\(source): \(error.description)")
        } catch let DecodingError.typeMismatch(type, context) {
            throw ConfigError("\(source): \(path(context)) must be \(describe(type))")
        } catch let DecodingError.valueNotFound(type, context) {
            throw ConfigError("\(source): \(path(context)) must be \(describe(type)), not null")
        } catch let DecodingError.keyNotFound(key, context) {
            throw ConfigError("\(source): missing key \(path(context, key.stringValue))")
        } catch let DecodingError.dataCorrupted(context) {
            if context.codingPath.isEmpty, let mistyped = mistypedNumber(in: object) {
                throw ConfigError("\(source): \(mistyped)")
            }
            throw ConfigError("\(source): \(path(context)): \(context.debugDescription)")
        }
    }

    /// Reads a JSON object from a config file.
    public static func readObject(_ url: URL) throws -> Object {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ConfigError("--config \(url.path): cannot read the file")
        }
        do {
            guard let object = try JSONSerialization.jsonObject(with: data) as? Object else {
                throw ConfigError("--config \(url.path): the top level must be a JSON object")
            }
            return object
        } catch let error as ConfigError {
            throw error
        } catch {
            throw ConfigError("--config \(url.path): not valid JSON\(parseFailure(error, text: data))")
        }
    }

    /// The feedforward block a resolution changes to (`--ffn` and the block options).
    public struct FeedForwardChange: Sendable {
        /// The new variant, nil to keep the preset's.
        public var kind: (any FeedForwardVariant.Type)?
        public var options: FeedForwardOptions
        /// Match the new block's free size to the replaced block's parameters (`--match auto`).
        public var matching: Bool

        public init(kind: (any FeedForwardVariant.Type)? = nil, options: FeedForwardOptions = .init(), matching: Bool = true) {
            self.kind = kind
            self.options = options
            self.matching = matching
        }

        public var isEmpty: Bool { kind == nil && options.isEmpty }
    }

    /// A run config from a preset's config, then a JSON file's fields (`--config`), then single
    /// field overrides (flags, as a partial config object), then the feedforward change;
    /// validated. Also returns the line describing a matched block size, if one was matched.
    public static func resolve(
        preset: RunConfig, configFile: URL? = nil, overrides: Object = [:],
        feedForward: FeedForwardChange = .init()
    ) throws -> (config: RunConfig, note: String?) {
        var object = encode(preset)
        if let configFile {
            object = try merge(object, readObject(configFile), source: "--config \(configFile.path)")
        }
        object = try merge(object, overrides, source: "flags")
        let source = configFile.map { "--config \($0.path) with flags" } ?? "flags"
        try requireFiniteNumbers(object, source: source)
        var resolved = try decode(object, source: source)
        // Before the feedforward change, whose size matching builds blocks of these sizes.
        do { try ConfigLimits.check(resolved) } catch let error as ConfigError {
            throw ConfigError("\(source): \(error.description)")
        }
        let note = try resolved.model.changeFeedForward(
            to: feedForward.kind, options: feedForward.options, matching: feedForward.matching)
        try resolved.validate()
        return (resolved, note)
    }

    /// Throws one line naming the first NaN or infinite number of `object` (JSON cannot hold
    /// them, so they would otherwise fail the re-encoding with Foundation's message).
    static func requireFiniteNumbers(_ value: Any, source: String, path: String = "") throws {
        switch value {
        case let object as Object:
            for (key, child) in object.sorted(by: { $0.key < $1.key }) {
                try requireFiniteNumbers(child, source: source, path: path.isEmpty ? key : "\(path).\(key)")
            }
        case let array as [Any]:
            for (index, child) in array.enumerated() {
                try requireFiniteNumbers(child, source: source, path: "\(path).\(index)")
            }
        case let number as Double where !number.isFinite:
            throw ConfigError("\(source): \(path) must be a finite number (got \(number))")
        default:
            break
        }
    }

    /// `base` with `override`'s fields replacing its own. Every key of `override` must exist
    /// in `base`. An object whose `kind` changes (a feedforward block, a model) replaces the
    /// whole object.
    public static func merge(_ base: Object, _ override: Object, source: String, prefix: String = "") throws -> Object {
        var result = base
        for (key, value) in override {
            let path = prefix.isEmpty ? key : "\(prefix).\(key)"
            guard let existing = base[key] else {
                let known = base.keys.sorted().joined(separator: ", ")
                throw ConfigError("\(source): unknown key '\(path)' (known here: \(known))")
            }
            if let child = value as? Object, let baseChild = existing as? Object {
                if let kind = child["kind"] as? String, kind != baseChild["kind"] as? String {
                    result[key] = child
                } else {
                    result[key] = try merge(baseChild, child, source: source, prefix: path)
                }
            } else {
                result[key] = value
            }
        }
        return result
    }

    static func path(_ context: DecodingError.Context, _ last: String? = nil) -> String {
        let keys = context.codingPath.map(\.stringValue) + (last.map { [$0] } ?? [])
        return keys.isEmpty ? "(top level)" : keys.joined(separator: ".")
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type, is UInt64.Type: "an integer"
        case is Double.Type, is Float.Type: "a number"
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        default: "\(type)"
        }
    }
}
