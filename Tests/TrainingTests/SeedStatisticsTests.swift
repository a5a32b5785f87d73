import Testing
import Training

/// Mean, spread and Welch intervals over seeds, on cases worked by hand.
struct SeedStatisticsTests {
    @Test func meanAndSampleStandardDeviation() {
        let s = SeedSummary([1, 2, 3])
        #expect(s.mean == 2 && s.standardDeviation == 1)
        #expect(SeedSummary([4.5]).standardDeviation == 0)
    }

    /// a = 1, 2, 3 (sd 1), b = 4, 6 (sd sqrt 2): se^2 = 1/3 + 1, Welch df = (4/3)^2 /
    /// ((1/3)^2 / 2 + 1) = 1.684, so t(1) = 12.7062 and the half-width 12.7062 x sqrt(4/3).
    @Test func welchIntervalByHand() throws {
        let d = SeedDifference(SeedSummary([1, 2, 3]), minus: SeedSummary([4, 6]))
        #expect(d.difference == -3)
        #expect(abs(try #require(d.degreesOfFreedom) - 1.6842105) < 1e-6)
        #expect(abs(try #require(d.halfWidth) - 12.7062 * (4.0 / 3).squareRoot()) < 1e-9)
        #expect(d.isSignificant == false)
        // a = 10, 12, 14, 16 against b = 11, 11, 13, 13: df 4.15 -> t(4) = 2.7764, se = sqrt 2.
        let e = SeedDifference(SeedSummary([10, 12, 14, 16]), minus: SeedSummary([11, 11, 13, 13]))
        #expect(abs(try #require(e.halfWidth) - 2.7764 * 2.0.squareRoot()) < 1e-9)
        #expect(e.text(decimals: 2) == "+1.00 ± 3.93")
        // Far apart with little spread: significant.
        #expect(SeedDifference(SeedSummary([10, 10.1, 9.9]), minus: SeedSummary([5, 5.1, 4.9])).isSignificant)
    }

    @Test func oneSeedHasNoInterval() {
        let d = SeedDifference(SeedSummary([3]), minus: SeedSummary([1, 2]))
        #expect(d.halfWidth == nil && !d.isSignificant && d.text(decimals: 1) == "+1.5 (no interval: 1 seed)")
    }

    /// The table to 30 degrees of freedom, then the Cornish–Fisher expansion against Student's
    /// t quantiles (to 5 decimals: 31 2.03951, 40 2.02108, 60 2.00030, 120 1.97993).
    @Test func tQuantiles() {
        #expect(SeedDifference.tQuantile975(degreesOfFreedom: 1.9) == 12.7062)
        #expect(SeedDifference.tQuantile975(degreesOfFreedom: 30) == 2.0423)
        for (df, exact) in [(31.0, 2.03951), (40, 2.02108), (60, 2.00030), (120, 1.97993)] {
            #expect(abs(SeedDifference.tQuantile975(degreesOfFreedom: df) - exact) < 1e-4, "\(df)")
        }
    }
}
