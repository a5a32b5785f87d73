/// The eight formal-language recognition tasks of the linear-Transformer experiments (Irie,
/// Csordás and Schmidhuber, EMNLP 2023), with the strings of Bhattamishra et al. (2020).
///
/// A sequence is a string of input symbols; its target has one symbol per input position i,
/// computed from x_1 ... x_i alone (`targets(of:)`), so a causal model can be scored at every
/// position. The raw values are the folder names of the paper's data sets.
///
/// | task | inputs | target at position i |
/// |---|---|---|
/// | `parity` | 0 1 | 1 iff the number of 1s so far is even |
/// | `aa-star` (aa)* | a | 1 iff i is even |
/// | `abab-star` (abab)* | a b | 1 iff i is a multiple of 4 |
/// | `counter-2` aⁿbⁿ | a b | the symbols allowed next: c (a or b), b, or T after the whole word |
/// | `counter-3` aⁿbⁿcⁿ | a b c | d (a or b), b, c, or T after the whole word |
/// | `shuffle-2` | ( ) [ ] | two bits, one per bracket type: 1 iff its opens minus closes ≠ 0 |
/// | `dyck-1` | ( ) | 1 iff the depth is above 0 |
/// | `reset-dyck` | ( ) 1 | 0 at a 1; else 1 iff opens minus closes since the last 1 > 0 |
public enum FormalTask: String, CaseIterable, Sendable, Codable {
    case parity
    case aaStar = "aa-star"
    case ababStar = "abab-star"
    case counter2 = "counter-2"
    case counter3 = "counter-3"
    case shuffle2 = "shuffle-2"
    case dyck1 = "dyck-1"
    case resetDyck = "reset-dyck"

    /// The task named `name`: a raw value, or the paper's folder spelling `reset_dyck`.
    public init?(name: String) {
        self.init(rawValue: name.replacingOccurrences(of: "_", with: "-"))
    }

    /// The language as written in the paper.
    public var title: String {
        switch self {
        case .parity: "Parity"
        case .aaStar: "(aa)*"
        case .ababStar: "(abab)*"
        case .counter2: "a^n b^n"
        case .counter3: "a^n b^n c^n"
        case .shuffle2: "Shuffle-2"
        case .dyck1: "Dyck-1"
        case .resetDyck: "reset Dyck-1"
        }
    }

    /// The input symbols; a symbol's index here is its alphabet index in `targets(of:)`.
    public var inputAlphabet: [String] {
        switch self {
        case .parity: ["0", "1"]
        case .aaStar: ["a"]
        case .ababStar, .counter2: ["a", "b"]
        case .counter3: ["a", "b", "c"]
        case .shuffle2: ["(", ")", "[", "]"]
        case .dyck1: ["(", ")"]
        case .resetDyck: ["(", ")", "1"]
        }
    }

    /// The target symbols. The counters name the set of symbols allowed next: "c" (counter-2)
    /// and "d" (counter-3) stand for "a or b", "T" ends the word. Shuffle-2 writes its two bits
    /// as one symbol, round brackets' bit first.
    public var targetAlphabet: [String] {
        switch self {
        case .parity, .aaStar, .ababStar, .dyck1, .resetDyck: ["0", "1"]
        case .counter2: ["b", "c", "T"]
        case .counter3: ["b", "c", "d", "T"]
        case .shuffle2: ["00", "01", "10", "11"]
        }
    }
}
