import Configuration
import Foundation
import Layers
import Models
import Testing

/// Numbers no config may hold (non-finite reals, sizes whose products overflow), and numbers
/// of the wrong type in a `--config` file: one line naming the field.
struct ConfigLimitsTests {
    @Test func fieldsAreCollectedWithTheirJSONKeyPaths() {
        let fields = ConfigField.all(of: Preset(name: "quickstart-moe")!.config)
        let paths = Set(fields.map(\.path))
        #expect(paths.isSuperset(of: ["model.d_model", "model.feed_forward.regularization", "training.learning_rate", "data.split.1", "training.seed"]))
        #expect(fields.first { $0.path == "model.d_model" }?.value == .integer(128))
        #expect(fields.first { $0.path == "training.seed" }?.value == .unsigned(1))
    }

    /// Every real field of every preset kind (language models, each feedforward variant, the
    /// formal-language models) is refused when NaN or infinite, naming it.
    @Test func everyRealFieldOfEveryPresetMustBeFinite() throws {
        var checked = 0
        for name in Presets.allNames {
            let config = Presets.config(named: name)!
            try ConfigLimits.check(config)
            for field in ConfigField.all(of: config) {
                guard case .real = field.value else { continue }
                var object = ConfigResolution.encode(config)
                object = set(field.path.split(separator: ".").map(String.init), in: object, to: Double.nan) as! ConfigResolution.Object
                #expect { _ = try ConfigResolution.resolve(preset: config, overrides: object) } throws: {
                    "\($0)".contains("\(field.path) must be a finite number (got nan)")
                }
                checked += 1
            }
        }
        #expect(checked > 100)
    }

    @Test func oversizedFieldsAndProductsAreRefusedNamingTheFields() throws {
        var config = Preset.quickstart.config
        config.training.batchSize = 1 << 40
        #expect { try config.validate() } throws: { "\($0)".contains("training.batch_size = 1099511627776 is too large") }
        config = Preset.quickstart.config
        config.training.steps = 1 << 50
        #expect { try config.validate() } throws: { "\($0)".contains("training.steps") }
        config = Preset.quickstart.config
        config.training.segmentLength = 1 << 22
        config.training.memoryLength = 1 << 22
        config.evaluation.batchSize = 1 << 22
        #expect { try config.validate() } throws: {
            "\($0)".contains("too large") && "\($0)".contains("training.segment_length = 4194304")
        }
        // The paper's largest presets stay well inside.
        for name in ["wt-b", "wt-s-star-moe", "e8-pkm-matched", "wt-b-pkm-init"] {
            try ConfigLimits.check(Presets.config(named: name)!)
        }
    }

    @Test func aNumberAnIntegerFieldCannotHoldNamesKeyAndType() throws {
        let base = ConfigResolution.encode(Preset.quickstart.config)
        let cases: [(ConfigResolution.Object, String)] = [
            (["model": ["d_model": 64.5]], "model.d_model must be an integer (got 64.5)"),
            (["training": ["steps": 1e30]], "training.steps must be an integer"),
            (["training": ["seed": -1]], "training.seed must be a non-negative integer"),
            (["model": ["feed_forward": ["d_ff": 0.25]]], "model.feed_forward.d_ff must be an integer"),
        ]
        for (override, message) in cases {
            let merged = try ConfigResolution.merge(base, override, source: "c.json")
            #expect { _ = try ConfigResolution.decode(merged, source: "c.json") } throws: { "\($0)" == "c.json: \(message)" || "\($0)".hasPrefix("c.json: \(message)") }
        }
        // A fraction in a real field is fine; a negative integer where one is allowed too.
        let fine = try ConfigResolution.merge(base, ["training": ["learning_rate": 0.5, "memory_length": 0]], source: "c.json")
        #expect(try ConfigResolution.decode(fine, source: "c.json").training.learningRate == 0.5)
    }

    func set(_ path: [String], in value: Any, to newValue: Any) -> Any {
        guard let key = path.first else { return newValue }
        if var object = value as? ConfigResolution.Object {
            object[key] = set(Array(path.dropFirst()), in: object[key]!, to: newValue)
            return object
        }
        var array = value as! [Any]
        array[Int(key)!] = set(Array(path.dropFirst()), in: array[Int(key)!], to: newValue)
        return array
    }
}
