import ArgumentParser
import Configuration
import Foundation
import Layers
import Models
import Testing
import lmtrain

/// Config resolution (preset, `--config` file, flags) and the command line's options, parsed
/// in-process exactly as `lmtrain train` parses them.
struct ConfigResolutionTests {
    @Test func overridesReplaceOnlyTheFieldsTheyName() throws {
        var object = ConfigResolution.encode(Preset.quickstart.config)
        object = try ConfigResolution.merge(object, ["training": ["steps": 7], "model": ["feed_forward": ["d_ff": 99]]], source: "test")
        let config = try ConfigResolution.decode(object, source: "test")
        #expect(config.training.steps == 7)
        #expect(config.model.feedForward == FeedForwardConfig(DenseFeedForward.Config(hiddenSize: 99)))
        #expect(config.training.batchSize == Preset.quickstart.config.training.batchSize)
    }

    @Test func unknownKeysAndBadTypesNameTheField() {
        let base = ConfigResolution.encode(Preset.quickstart.config)
        #expect { _ = try ConfigResolution.merge(base, ["training": ["stepz": 1]], source: "x.json") } throws: {
            "\($0)".contains("x.json: unknown key 'training.stepz'")
        }
        #expect {
            let merged = try ConfigResolution.merge(base, ["model": ["layers": "four"]], source: "x.json")
            _ = try ConfigResolution.decode(merged, source: "x.json")
        } throws: { "\($0)".contains("x.json: model.layers must be an integer") }
        #expect {
            let merged = try ConfigResolution.merge(base, ["model": ["kind": "lstm"]], source: "x.json")
            _ = try ConfigResolution.decode(merged, source: "x.json")
        } throws: { "\($0)".contains("model.kind 'lstm' is unknown: use one of transformer-xl") }
    }

    @Test func everyPresetBuildsAndE8HasThePaperCount() throws {
        for name in Preset.allNames { try Preset(name: name)!.config.validate() }
        let e8 = try Preset.e8.config.model.makeModel()
        #expect(e8.layout.count == 41_234_721)  // the paper's 41.23M
    }

    /// A config written before `model.kind`, `training.optimizer` and `training.schedule`
    /// existed means the Transformer-XL trained with AdamW and the cosine schedule.
    @Test func configsWithoutTheNewKeysDecodeAsBefore() throws {
        var object = ConfigResolution.encode(Preset.quickstart.config)
        var model = object["model"] as! ConfigResolution.Object
        var training = object["training"] as! ConfigResolution.Object
        #expect(model.removeValue(forKey: "kind") as? String == "transformer-xl")
        #expect(training.removeValue(forKey: "optimizer") as? String == "adamw")
        #expect(training.removeValue(forKey: "schedule") as? String == "cosine")
        object["model"] = model
        object["training"] = training
        #expect(try ConfigResolution.decode(object, source: "old") == Preset.quickstart.config)
    }

    @Test func configRoundTripsThroughJSON() throws {
        for name in Preset.allNames {
            let config = Preset(name: name)!.config
            let decoded = try JSONDecoder().decode(RunConfig.self, from: ConfigResolution.prettyJSON(config))
            #expect(decoded == config, "\(name)")
        }
    }
}

struct FeedForwardChangeTests {
    @discardableResult
    static func change(_ model: inout ModelConfig, to kind: (any FeedForwardVariant.Type)?, _ set: (inout FeedForwardOptions) -> Void = { _ in }, matching: Bool = true) throws -> String? {
        var options = FeedForwardOptions()
        set(&options)
        return try model.changeFeedForward(to: kind, options: options, matching: matching)
    }

    @Test func changingTheKindMatchesTheReplacedBlock() throws {
        var model = Preset.quickstart.config.model
        try Self.change(&model, to: MixtureOfExperts.SigmaConfig.self) { $0.experts = 16 }
        // Dense 2 * 128 * 512 + 512 + 128 = 131712; 16 experts of 32: 2*16*32*128 + 16*128 = 133120.
        #expect(model.feedForward == FeedForwardConfig(MixtureOfExperts.SigmaConfig(experts: 16, expertSize: 32, k: 4)))
    }

    @Test func optionsOfAnotherKindAreRefused() {
        func failure(_ kind: (any FeedForwardVariant.Type)?, _ set: (inout FeedForwardOptions) -> Void) -> String {
            var model = Preset.quickstart.config.model
            do {
                try Self.change(&model, to: kind, set)
                try model.validate()
                return "no error"
            } catch { return "\(error)" }
        }
        #expect(failure(nil) { $0.experts = 4 } == "option experts applies to feedforward kinds moe|switch|sbase, not dense")
        #expect(failure(MixtureOfExperts.SwitchConfig.self) { $0.k = 2 } == "option k applies to feedforward kinds moe|sbase, not switch")
        #expect(failure(MixtureOfExperts.SigmaConfig.self) { $0.k = 20 }.contains("k = 20 must be between 1 and the number of experts 16"))
        #expect(failure(MixtureOfExperts.SigmaConfig.self) { $0.experts = 100_000 }.contains("cannot match"))
        #expect(failure(MixtureOfExperts.SBaseConfig.self) { $0.expertDropout = 1.5 }.contains("expert_dropout must be in [0, 1)"))
    }

    @Test func matchingPrintsTheResidualAndCanBeTurnedOff() throws {
        var model = Preset.e8.config.model
        let note = try Self.change(&model, to: MixtureOfExperts.SigmaConfig.self) { $0.experts = 16 }
        #expect(note == "matched expert size 128 (16 experts) to the 2104837 parameters per layer of the block it replaces: 2105344 (+507, +0.02%)")
        var pkm = Preset.e8.config.model
        #expect(try Self.change(&pkm, to: ProductKeyMemory.Config.self)?.contains("n_keys 62 (4 heads)") == true)
        // --match none: fixed defaults, nothing solved.
        var unmatched = Preset.quickstart.config.model
        #expect(try Self.change(&unmatched, to: MixtureOfExperts.SigmaConfig.self, { $0.experts = 16 }, matching: false) == nil)
        #expect(unmatched.feedForward == FeedForwardConfig(MixtureOfExperts.SigmaConfig(experts: 16, expertSize: 128, k: 4)))
        // A given size is used as it is.
        var given = Preset.e8.config.model
        #expect(try Self.change(&given, to: MixtureOfExperts.SigmaConfig.self) { $0.expertSize = 64 } == nil)
    }

    /// Every registered kind can replace the dense block and back, matched within 1%.
    @Test(arguments: FeedForwardConfig.kinds) func everyKindReplacesTheDenseBlock(kind: String) throws {
        var model = Preset.e8.config.model
        let dense = model.feedForward!.parameterCount(modelWidth: 512)
        try Self.change(&model, to: FeedForwardConfig.variant(kind: kind)!)
        #expect(model.feedForward!.kind == kind)
        let changed = model.feedForward!.parameterCount(modelWidth: 512)
        #expect(abs(Double(changed) / Double(dense) - 1) < 0.01, "\(kind): \(changed) vs \(dense)")
        try model.validate()
    }
}

/// The `lmtrain train` options, parsed in-process.
struct CommandLineOptionTests {
    @Test func flagsResolveToTheConfig() throws {
        let options = try ConfigOptions.parse([
            "--preset", "quickstart", "--d-model", "64", "--ffn", "moe", "--experts", "8", "--k", "2",
            "--selection", "softmax-after", "--optimizer", "adam", "--schedule", "constant", "--adam-beta2", "0.995",
            "--adam-epsilon", "1e-9", "--tokenizer", "bpe:500",
        ])
        let (config, note) = try options.resolveWithNote()
        let model = config.model.as(TransformerXL.Config.self)!
        #expect(model.modelWidth == 64)
        let block = config.model.feedForward!.as(MixtureOfExperts.SigmaConfig.self)!
        #expect(block.experts == 8 && block.k == 2 && block.selection == .softmaxAfterTopK)
        #expect(note?.hasPrefix("matched expert size") == true)
        #expect(config.training.optimizer == .adam && config.training.schedule == .constant)
        #expect(config.training.adamBeta2 == 0.995 && config.training.adamEpsilon == 1e-9)
        #expect(config.data.tokenizer == "bpe:500")
    }

    @Test func enumeratedOptionsRefuseUnknownValues() {
        for arguments in [["--ffn", "nosuch"], ["--selection", "argmax"], ["--pkm-query", "x"], ["--match", "maybe"], ["--tokenizer", "bpe"], ["--optimizer", "sgd"]] {
            #expect(throws: (any Error).self, "\(arguments)") { _ = try ConfigOptions.parse(arguments) }
        }
        do {
            _ = try ConfigOptions.parse(["--ffn", "nosuch"])
        } catch {
            let message = ConfigOptions.fullMessage(for: error)
            #expect(message.contains("'nosuch' is invalid for '--ffn") && message.contains("dense") && message.contains("sbase"), "\(message)")
        }
    }

    @Test func optionsOfAnotherKindNameTheFlags() throws {
        let options = try ConfigOptions.parse(["--ffn", "dense", "--experts", "16"])
        #expect { _ = try options.resolve() } throws: { "\($0)" == "--experts applies to --ffn moe|switch|sbase, not dense" }
        let pkm = try ConfigOptions.parse(["--ffn", "switch", "--pkm-knn", "3"])
        #expect { _ = try pkm.resolve() } throws: { "\($0)" == "--pkm-knn applies to --ffn pkm, not switch" }
    }

    @Test func helpListsTheValuesOfEveryEnumeration() {
        let help = ConfigOptions.helpMessage().split(whereSeparator: \.isWhitespace).joined(separator: " ")
        for values in ["dense, topk, pkm, moe, switch, sbase", "sigmoid, softmax-before, softmax-after", "identity, mlp-bn", "auto, sparse, dense", "auto, none", "bytes, words, bpe:N", "adamw, adam", "cosine, constant"] {
            #expect(help.contains("values: \(values)"), "\(values)")
        }
    }
}

