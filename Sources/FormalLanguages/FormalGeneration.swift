/// Sizes and windows of generated data; `paper` holds the benchmark generator's settings:
/// lo = 2, hi = 50, 10000 training strings and 2000 drawn per evaluation bin.
public struct FormalGenerationSettings: Sendable, Equatable {
    /// lo and hi: the window of the training split and Bin0.
    public var lowerWindow: Int
    public var upperWindow: Int
    /// Bin1's window ends at hi + `binWidth`.
    public var binWidth: Int
    public var trainingSize: Int
    /// Strings drawn per evaluation bin, before any de-duplication.
    public var evaluationSize: Int

    public init(
        lowerWindow: Int = 2, upperWindow: Int = 50, binWidth: Int = 50, trainingSize: Int = 10_000,
        evaluationSize: Int = 2_000
    ) {
        self.lowerWindow = lowerWindow
        self.upperWindow = upperWindow
        self.binWidth = binWidth
        self.trainingSize = trainingSize
        self.evaluationSize = evaluationSize
    }

    public static let paper = FormalGenerationSettings()

    func validate() throws(FormalDataError) {
        guard lowerWindow >= 1, upperWindow >= lowerWindow, binWidth >= 2, trainingSize >= 1,
            evaluationSize >= 1
        else {
            throw FormalDataError(
                "generation settings \(lowerWindow)...\(upperWindow), bin width \(binWidth), sizes "
                    + "\(trainingSize)/\(evaluationSize): need 1 <= lo <= hi, a bin width of at least 2 "
                    + "and positive sizes")
        }
    }
}

extension FormalTask {
    /// The window of `split`. It bounds the length of a string, except for the counters, where
    /// it bounds n (aⁿbⁿ has 2n symbols), and for reset Dyck-1, where it bounds each of the two
    /// bracket words drawn (the string is up to 2 hi + 1 long) and the string's least length.
    /// Bin1 starts at hi + 2 for Dyck-1 and Shuffle-2 (their words have even lengths), at
    /// hi + 1 otherwise, and ends at hi + `binWidth`.
    public func window(of split: FormalSplit, settings: FormalGenerationSettings = .paper) -> ClosedRange<Int> {
        switch split {
        case .train, .bin0:
            return settings.lowerWindow...settings.upperWindow
        case .bin1:
            let start = self == .dyck1 || self == .shuffle2 ? 2 : 1
            return (settings.upperWindow + start)...(settings.upperWindow + settings.binWidth)
        }
    }

    /// The longest string `split` can hold: the window's end, twice it for aⁿbⁿ, three times
    /// for aⁿbⁿcⁿ, two words and the reset symbol for reset Dyck-1 (the accountant sizes a
    /// pass with it).
    public func longestString(of split: FormalSplit, settings: FormalGenerationSettings = .paper) -> Int {
        let end = window(of: split, settings: settings).upperBound
        switch self {
        case .counter2: return 2 * end
        case .counter3: return 3 * end
        case .resetDyck: return 2 * end + 1
        default: return end
        }
    }

    /// A data set drawn as the benchmark's generators draw it, deterministic from `seed`.
    ///
    /// - Parity: symbols drawn with p = L / (2 (1 + L)), L = floor((lo + hi) / 2) of the
    ///   split's window, at most hi of them; a string shorter than lo, or already in the list, is
    ///   redrawn; an odd one gets a 1 appended when that still fits (else it is redrawn). The
    ///   duplicate check looks at the drawn string, not the one kept, so about 12% of the
    ///   strings repeat (as in the original files).
    /// - (aa)*, (abab)*: the unit repeated floor(u / unit length) times, u uniform in the
    ///   window, redrawn while outside the window; the training split keeps repeats.
    /// - Counters: n uniform in the window; the training split keeps repeats.
    /// - Dyck-1, Shuffle-2: the grammar S -> (S) with probability 1/2 | S S 1/4 | empty 1/4,
    ///   the bracket type uniform, any partial string longer than hi collapsing to empty;
    ///   Shuffle-2 uses two bracket types, so its strings are well-nested Dyck-2 words, as in
    ///   the original files. Each split distinct, at least lo long.
    /// - Reset Dyck-1: a uniformly cut prefix of one grammar word, the reset symbol 1, then a
    ///   whole second word (each word at most hi); distinct, at least lo long.
    ///
    /// Parity and reset Dyck-1 draw the training split and Bin0 as one list of
    /// trainingSize + evaluationSize strings: the first trainingSize are the training split,
    /// the rest Bin0 (parity's repeats may therefore cross them). The other tasks draw each
    /// split on its own. Counters, (aa)* and (abab)* draw evaluationSize strings per bin and
    /// keep each distinct string once, in order of first draw. The splits are drawn in the
    /// order training, Bin0, Bin1 from one generator seeded with `seed`.
    ///
    /// Throws when the settings are invalid or a window cannot supply the distinct strings
    /// asked for.
    public func generate(seed: UInt64, settings: FormalGenerationSettings = .paper) throws(FormalDataError)
        -> FormalDataset
    {
        try settings.validate()
        var generator = SplitGenerator(task: self, settings: settings, sampler: WordSampler(seed: seed))
        let train: [[UInt8]]
        let bin0: [[UInt8]]
        switch self {
        case .parity, .resetDyck:
            let both = try generator.draw(.train, count: settings.trainingSize + settings.evaluationSize)
            train = Array(both[..<settings.trainingSize])
            bin0 = Array(both[settings.trainingSize...])
        default:
            train = try generator.draw(.train, count: settings.trainingSize)
            bin0 = try generator.draw(.bin0, count: settings.evaluationSize)
        }
        let bin1 = try generator.draw(.bin1, count: settings.evaluationSize)
        return FormalDataset(task: self, train: train, bin0: bin0, bin1: bin1)
    }
}

/// Draws the strings of one split after another.
private struct SplitGenerator {
    let task: FormalTask
    let settings: FormalGenerationSettings
    var sampler: WordSampler

    /// The strings of `split`: `count` of them, or for a de-duplicated bin the distinct ones
    /// among `count` draws.
    mutating func draw(_ split: FormalSplit, count: Int) throws(FormalDataError) -> [[UInt8]] {
        let window = task.window(of: split, settings: settings)
        switch task {
        case .parity:
            return try parityList(count: count, window: window, split: split)
        case .aaStar, .ababStar:
            let unit: [UInt8] = task == .aaStar ? [0, 0] : [0, 1, 0, 1]
            let words = try collect(count, distinct: false, split: split) { sampler, _ in
                let word = sampler.repetition(of: unit, window: window)
                return window.contains(word.count) ? word : nil
            }
            return split == .train ? words : firstOccurrences(words)
        case .counter2, .counter3:
            let letters = task.inputAlphabet.count
            let words = (0..<count).map { _ in
                WordSampler.counterWord(letters: letters, n: sampler.integer(in: window))
            }
            return split == .train ? words : firstOccurrences(words)
        case .dyck1, .shuffle2:
            let pairs = task == .dyck1 ? 1 : 2
            return try collect(count, distinct: true, split: split) { sampler, _ in
                let word = sampler.brackets(pairs: pairs, maxLength: window.upperBound)
                return word.count >= window.lowerBound ? word : nil
            }
        case .resetDyck:
            return try collect(count, distinct: true, split: split) { sampler, _ in
                let word = sampler.resetBrackets(maxLength: window.upperBound)
                return word.count >= window.lowerBound ? word : nil
            }
        }
    }

    /// Draws until `count` strings are kept; `draw` returns nil for a string to redraw and sees
    /// the strings kept so far. With `distinct`, a string already kept is redrawn.
    private mutating func collect(
        _ count: Int, distinct: Bool, split: FormalSplit,
        draw: (inout WordSampler, _ kept: Set<[UInt8]>) -> [UInt8]?
    ) throws(FormalDataError) -> [[UInt8]] {
        var words: [[UInt8]] = []
        words.reserveCapacity(count)
        var kept = Set<[UInt8]>()
        var draws = 0
        while words.count < count {
            draws += 1
            if draws > drawLimit(count) { throw shortfall(split, found: words.count, wanted: count, draws: draws) }
            guard let word = draw(&sampler, kept) else { continue }
            guard kept.insert(word).inserted || !distinct else { continue }
            words.append(word)
        }
        return words
    }

    /// The parity list with the original's duplicate check on the drawn string (see `generate`).
    private mutating func parityList(count: Int, window: ClosedRange<Int>, split: FormalSplit) throws(FormalDataError)
        -> [[UInt8]]
    {
        let middle = Double((window.lowerBound + window.upperBound) / 2)
        let p = middle / (2 * (1 + middle))
        return try collect(count, distinct: false, split: split) { sampler, kept in
            let drawn = sampler.bits(p: p, maxLength: window.upperBound)
            guard !kept.contains(drawn), window.contains(drawn.count) else { return nil }
            let odd = drawn.reduce(0) { $0 + Int($1) } % 2 == 1
            let word = odd ? drawn + [1] : drawn
            return word.count <= window.upperBound ? word : nil
        }
    }

    /// Draws allowed before giving up: far more than any window of the paper needs.
    private func drawLimit(_ count: Int) -> Int { 1_000 * count + 1_000_000 }

    private func shortfall(_ split: FormalSplit, found: Int, wanted: Int, draws: Int) -> FormalDataError {
        let window = task.window(of: split, settings: settings)
        return FormalDataError(
            "\(task.rawValue): \(split.rawValue) window \(window.lowerBound)...\(window.upperBound) gave only "
                + "\(found) of \(wanted) strings in \(draws - 1) draws; widen the window or ask for fewer strings")
    }
}

/// Each distinct string once, in order of first occurrence.
private func firstOccurrences(_ words: [[UInt8]]) -> [[UInt8]] {
    var seen = Set<[UInt8]>()
    return words.filter { seen.insert($0).inserted }
}
