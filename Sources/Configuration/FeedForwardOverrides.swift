import Layers
import Models

/// The `--ffn` flag and the options of each feedforward kind, applied to a resolved model
/// config. Changing the kind starts from that kind's defaults, with the expert size matched to
/// the parameter count of the block it replaces unless `--expert-size` is given; an option
/// that does not belong to the chosen kind is an error naming both.
public struct FeedForwardOverrides: Sendable, Equatable {
    public var kind: String?
    public var hiddenSize: Int?
    public var experts: Int?
    public var expertSize: Int?
    public var k: Int?
    public var expertDropout: Float?
    public var regularization: Double?
    public var selection: String?
    public var balance: Double?
    public var topK: Int?
    public var pkmHeads: Int?
    public var pkmKeys: Int?
    public var pkmKnn: Int?
    public var pkmActivation: String?
    public var pkmQuery: String?
    public var pkmPath: String?
    public var pkmValueInit: String?
    /// Solve a sparse block's free size from the parameters of the block it replaces
    /// (`--match auto`, the default); false (`--match none`) takes the kind's fixed defaults.
    public var matching = true

    public init() {}

    public var isEmpty: Bool {
        var plain = self
        plain.matching = true
        return plain == FeedForwardOverrides()
    }

    /// Expert size used without matching (the paper's G).
    public static let unmatchedExpertSize = 128

    /// Flags given, with the kinds each belongs to.
    var given: [(flag: String, kinds: [String])] {
        var list: [(String, [String])] = []
        if hiddenSize != nil { list.append(("--d-ff", ["dense", "topk"])) }
        if topK != nil { list.append(("--topk", ["topk"])) }
        for (value, flag) in [(pkmHeads as Any?, "--pkm-heads"), (pkmKeys, "--pkm-keys"), (pkmKnn, "--pkm-knn"),
                              (pkmActivation, "--pkm-activation"), (pkmQuery, "--pkm-query"),
                              (pkmPath, "--pkm-path"), (pkmValueInit, "--pkm-value-init")] where value != nil {
            list.append((flag, ["pkm"]))
        }
        if experts != nil { list.append(("--experts", ["moe", "switch", "sbase"])) }
        if expertSize != nil { list.append(("--expert-size", ["moe", "switch", "sbase"])) }
        if k != nil { list.append(("--k", ["moe", "sbase"])) }
        if expertDropout != nil { list.append(("--expert-dropout", ["moe", "sbase"])) }
        if regularization != nil { list.append(("--moe-reg", ["moe", "sbase"])) }
        if selection != nil { list.append(("--selection", ["moe"])) }
        if balance != nil { list.append(("--balance", ["switch"])) }
        return list
    }

    /// Applies the flags; returns one line describing a size that was matched (with the
    /// residual), or nil.
    @discardableResult
    public func apply(to model: inout ModelConfig) throws -> String? {
        var ff = model.feedForward
        var note: String?
        let d = model.modelWidth
        let kind = self.kind ?? ff.kind
        guard FeedForwardConfig.kinds.contains(kind) else {
            throw ConfigError("--ffn \(kind) is unknown: use one of \(FeedForwardConfig.kinds.joined(separator: ", "))")
        }
        for (flag, kinds) in given where !kinds.contains(kind) {
            throw ConfigError("\(flag) applies to --ffn \(kinds.joined(separator: "|")), not \(kind)")
        }
        var selectionValue: MixtureOfExperts.Selection?
        if let selection {
            guard let value = MixtureOfExperts.Selection(rawValue: selection) else {
                throw ConfigError("--selection \(selection) is unknown: use one of \(MixtureOfExperts.Selection.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            selectionValue = value
        }
        let target = ff.parameterCount(modelWidth: d)
        if kind != ff.kind {
            let n = experts ?? 16
            func expertSizeMatched() throws -> Int {
                if let expertSize { return expertSize }
                guard matching else { return Self.unmatchedExpertSize }
                let size = try Self.matched(target: target, experts: n, modelWidth: d)
                note = Self.residual("expert size \(size) (\(n) experts)", target: target, achieved: FeedForwardConfig.expertParameters(experts: n, expertSize: size, modelWidth: d))
                return size
            }
            // A dense or top-K block keeps its hidden size; other blocks get the dense width
            // with the same parameter count.
            let denseWidth: Int
            switch ff {
            case .dense(let c): denseWidth = c.hiddenSize
            case .topK(let c): denseWidth = c.hiddenSize
            default: denseWidth = max(1, (target - d) / (2 * d + 1))
            }
            switch kind {
            case "dense": ff = .dense(.init(hiddenSize: hiddenSize ?? denseWidth))
            case "topk":
                let width = hiddenSize ?? denseWidth
                ff = .topK(.init(hiddenSize: width, k: topK ?? max(1, width / 16)))
            case "pkm":
                let heads = pkmHeads ?? 4
                let keys: Int
                if let pkmKeys {
                    keys = pkmKeys
                } else if !matching {
                    // Unmatched: as many values as the dense block has hidden units.
                    keys = max(1, Int(Double(denseWidth).squareRoot().rounded()))
                } else {
                    guard let matched = FeedForwardConfig.matchedKeysPerHalf(target: target, heads: heads, modelWidth: d) else {
                        throw ConfigError("no PKM size matches the \(target) parameters of the block it replaces: give --pkm-keys")
                    }
                    keys = matched
                    note = Self.residual("n_keys \(keys) (\(heads) heads)", target: target, achieved: FeedForwardConfig.productKeyParameters(keysPerHalf: keys, heads: heads, modelWidth: d))
                }
                ff = .productKeyMemory(.init(keysPerHalf: keys, heads: heads))
            case "moe": ff = .sigmaMoE(.init(experts: n, expertSize: try expertSizeMatched(), k: 4))
            case "switch": ff = .switchMoE(.init(experts: n, expertSize: try expertSizeMatched()))
            default: ff = .sBase(.init(experts: n, expertSize: try expertSizeMatched(), k: 4))
            }
        }
        switch ff {
        case .dense(var c):
            if let hiddenSize { c.hiddenSize = hiddenSize }
            ff = .dense(c)
        case .sigmaMoE(var c):
            if let experts { c.experts = experts }
            if let expertSize { c.expertSize = expertSize }
            if let k { c.k = k }
            if let expertDropout { c.expertDropout = expertDropout }
            if let regularization { c.regularization = regularization }
            if let selectionValue { c.selection = selectionValue }
            ff = .sigmaMoE(c)
        case .switchMoE(var c):
            if let experts { c.experts = experts }
            if let expertSize { c.expertSize = expertSize }
            if let balance { c.balance = balance }
            ff = .switchMoE(c)
        case .sBase(var c):
            if let experts { c.experts = experts }
            if let expertSize { c.expertSize = expertSize }
            if let k { c.k = k }
            if let expertDropout { c.expertDropout = expertDropout }
            if let regularization { c.regularization = regularization }
            ff = .sBase(c)
        case .topK(var c):
            if let hiddenSize { c.hiddenSize = hiddenSize }
            if let topK { c.k = topK }
            ff = .topK(c)
        case .productKeyMemory(var c):
            if let pkmHeads { c.heads = pkmHeads }
            if let pkmKeys { c.keysPerHalf = pkmKeys }
            if let pkmKnn { c.knn = pkmKnn }
            if let pkmActivation { c.activation = try Self.parse(pkmActivation, flag: "--pkm-activation") }
            if let pkmQuery { c.query = try Self.parse(pkmQuery, flag: "--pkm-query") }
            if let pkmPath { c.path = try Self.parse(pkmPath, flag: "--pkm-path") }
            if let pkmValueInit { c.valueInit = try Self.parse(pkmValueInit, flag: "--pkm-value-init") }
            ff = .productKeyMemory(c)
        }
        model.feedForward = ff
        return note
    }

    /// "matched expert size 128 (16 experts) to the 2104837 parameters per layer of the block it
    /// replaces: 2105344 (+507, +0.02%)".
    static func residual(_ what: String, target: Int, achieved: Int) -> String {
        let difference = achieved - target
        let percent = 100 * Double(difference) / Double(target)
        return "matched \(what) to the \(target) parameters per layer of the block it replaces: \(achieved) (\(difference >= 0 ? "+" : "")\(difference), \(String(format: "%+.2f", percent))%)"
    }

    static func parse<T: RawRepresentable & CaseIterable>(_ value: String, flag: String) throws -> T where T.RawValue == String {
        guard let parsed = T(rawValue: value) else {
            throw ConfigError("\(flag) \(value) is unknown: use one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return parsed
    }

    static func matched(target: Int, experts: Int, modelWidth d: Int) throws -> Int {
        guard experts >= 1 else { throw ConfigError("--experts must be at least 1 (got \(experts))") }
        guard let size = FeedForwardConfig.matchedExpertSize(target: target, experts: experts, modelWidth: d) else {
            throw ConfigError("\(experts) experts cannot match the \(target) parameters of the block they replace (even expert size 1 has more): use fewer --experts or give --expert-size")
        }
        return size
    }
}
