import Testing
import Tensor

/// Gradient groups: each group's copy of the gradients, the rows a group owns, and the fixed
/// pairwise order in which the copies (and ranks) are added.
struct GradientGroupTests {
    static func arena(count: Int) -> ParameterArena {
        var layout = ParameterLayout()
        _ = layout.add("w", shape: [count])
        return ParameterArena(layout: layout)
    }

    @Test func groupsOwnContiguousRunsOfRows() {
        let arena = Self.arena(count: 1)
        arena.setGradientGroups(4)
        #expect((0..<4).map { arena.rows(ofGroup: $0, in: 32) } == [0..<8, 8..<16, 16..<24, 24..<32])
        arena.setGradientGroups(1)
        #expect(arena.gradientGroups == 1 && arena.rows(ofGroup: 0, in: 32) == 0..<32)
    }

    /// ((g0 + g1) + (g2 + g3)) differs from (((g0 + g1) + g2) + g3) for these values: 2^24 + 1
    /// rounds to 2^24, so adding the ones one by one to 2^24 loses both, adding their sum keeps it.
    @Test func copiesAreAddedPairwiseInGroupOrder() {
        let arena = Self.arena(count: 3)
        arena.setGradientGroups(4)
        let view = arena.layout.views[0]
        let values: [[Float]] = [[16_777_216, 1, 0], [0, 2, 0], [1, 3, 0], [1, 4, 5]]
        for (group, row) in values.enumerated() {
            arena.gradient(view, group: group).update(from: row, count: 3)
        }
        arena.sumGradientGroups()
        let pairwise = (0..<3).map { i in (values[0][i] + values[1][i]) + (values[2][i] + values[3][i]) }
        let sequential = (0..<3).map { i in ((values[0][i] + values[1][i]) + values[2][i]) + values[3][i] }
        #expect(pairwise != sequential)
        #expect(Array(UnsafeBufferPointer(start: arena.gradients, count: 3)) == pairwise)
        arena.zeroGradients()
        #expect((0..<4).allSatisfy { group in (0..<3).allSatisfy { arena.gradient(view, group: group)[$0] == 0 } })
    }

    /// The same order for runs of floats in one buffer and for vectors of doubles.
    @Test func runsAndVectorsAddInTheSameOrder() {
        var runs: [Float] = [16_777_216, 1, 0, 2, 1, 3, 1, 4]
        runs.withUnsafeMutableBufferPointer { addRunsPairwise($0.baseAddress!, parts: 4, length: 2) }
        #expect(Array(runs[0..<2]) == [16_777_218, 10])
        let big = 9_007_199_254_740_992.0  // 2^53: big + 1 rounds back to big
        #expect(addPairwise([[big], [0], [1], [1]]) == [big + 2])
        #expect(addPairwise([[1, 2], [3, 4], [5, 6]]) == [9, 12])
    }
}
