import Foundation

/// The spread of one figure over the seeds of a comparison: its values, mean and sample
/// standard deviation (n - 1 in the denominator; 0 for one seed).
public struct SeedSummary: Sendable, Codable, Equatable {
    public var values: [Double]

    public init(_ values: [Double]) { self.values = values }

    public var count: Int { values.count }
    public var mean: Double { values.reduce(0, +) / Double(max(1, values.count)) }

    public var standardDeviation: Double {
        guard values.count > 1 else { return 0 }
        let m = mean
        return (values.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(values.count - 1)).squareRoot()
    }

    enum CodingKeys: String, CodingKey { case values, mean, standardDeviation = "standard_deviation" }

    public init(from decoder: any Decoder) throws {
        values = try decoder.container(keyedBy: CodingKeys.self).decode([Double].self, forKey: .values)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(values, forKey: .values)
        try c.encode(mean, forKey: .mean)
        try c.encode(standardDeviation, forKey: .standardDeviation)
    }
}

/// A difference of two means over seeds with its 95% confidence interval (Welch's t: the two
/// variants' seeds are independent samples with their own variances).
public struct SeedDifference: Sendable, Codable, Equatable {
    /// mean(a) - mean(b).
    public var difference: Double
    /// Half the width of the 95% interval; nil when either side has a single seed (no spread
    /// to estimate).
    public var halfWidth: Double?
    /// Welch–Satterthwaite degrees of freedom.
    public var degreesOfFreedom: Double?

    enum CodingKeys: String, CodingKey {
        case difference
        case halfWidth = "half_width_95"
        case degreesOfFreedom = "degrees_of_freedom"
    }

    public init(_ a: SeedSummary, minus b: SeedSummary) {
        difference = a.mean - b.mean
        guard a.count > 1, b.count > 1 else { return }
        let va = a.standardDeviation * a.standardDeviation / Double(a.count)
        let vb = b.standardDeviation * b.standardDeviation / Double(b.count)
        let standardError = (va + vb).squareRoot()
        guard standardError > 0 else {
            (halfWidth, degreesOfFreedom) = (0, Double(a.count + b.count - 2))
            return
        }
        let df = (va + vb) * (va + vb) / (va * va / Double(a.count - 1) + vb * vb / Double(b.count - 1))
        degreesOfFreedom = df
        halfWidth = Self.tQuantile975(degreesOfFreedom: df) * standardError
    }

    /// Whether the interval excludes 0 (a difference larger than the seed-to-seed noise).
    public var isSignificant: Bool { halfWidth.map { abs(difference) > $0 } ?? false }

    /// "+0.0123 ± 0.0045", or "+0.0123 (1 seed)" without an interval.
    public func text(decimals: Int) -> String {
        let value = String(format: "%+.\(decimals)f", difference)
        guard let halfWidth else { return "\(value) (no interval: 1 seed)" }
        return value + String(format: " ± %.\(decimals)f", halfWidth)
    }

    /// The 97.5% quantile of Student's t with `degreesOfFreedom` (a fractional Welch value is
    /// rounded down, which widens the interval): the table's exact values to 30, then the
    /// Cornish–Fisher expansion around the normal quantile (within 1e-4 beyond 30).
    public static func tQuantile975(degreesOfFreedom: Double) -> Double {
        let table: [Double] = [
            12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
            2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
            2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
        ]
        let df = max(1, Int(degreesOfFreedom.rounded(.down)))
        if df <= table.count { return table[df - 1] }
        let z = 1.959963984540054, n = Double(df)
        let z3 = z * z * z, z5 = z3 * z * z, z7 = z5 * z * z
        return z + (z3 + z) / (4 * n) + (5 * z5 + 16 * z3 + 3 * z) / (96 * n * n)
            + (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * n * n * n)
    }
}
