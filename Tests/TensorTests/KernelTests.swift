import Foundation
import Testing
import Tensor
import TestSupport

struct KernelTests {
    @Test func exp16IsWithinTwoUlpsOfFoundation() {
        var worst: Float = 0
        var x: Float = -87
        while x < 88 {
            let fast = exp16(SIMD16(repeating: x))[0]
            let reference = Foundation.exp(x)
            worst = max(worst, abs(fast - reference) / reference)
            x += 0.0137
        }
        #expect(worst < 2.5e-7, "worst relative error \(worst)")
    }

    @Test func exp16UnderflowAndMaskedInputsGiveZero() {
        let v = exp16(SIMD16(repeating: -.infinity))
        #expect(v[0] == 0)
        #expect(exp16(SIMD16(repeating: -100))[3] == 0)
        #expect(exp16(SIMD16(repeating: 0))[0] == 1)
        #expect(exp16(SIMD16(repeating: .nan))[5].isNaN)
    }

    @Test func reductionsMatchNaiveSums() {
        for count in [0, 1, 15, 16, 17, 33, 100, 1000] {
            let a = randomArray(count, seed: UInt64(count) + 1)
            let b = randomArray(count, seed: UInt64(count) + 2)
            var s = 0.0, d = 0.0
            var m = -Float.infinity
            for i in 0..<count {
                s += Double(a[i])
                d += Double(a[i]) * Double(b[i])
                m = max(m, a[i])
            }
            #expect(abs(Double(sum(a, count: count)) - s) < 1e-4)
            #expect(abs(Double(dot(a, b, count: count)) - d) < 1e-3)
            #expect(maximum(a, count: count) == m)
        }
    }

    @Test func softmaxSumsToOneAndMatchesDefinition() {
        var x = randomArray(37, std: 3, seed: 9)
        let original = x
        softmaxInPlace(&x, count: x.count)
        let total = original.map { Foundation.exp(Double($0)) }.reduce(0, +)
        for i in 0..<x.count {
            #expect(abs(Double(x[i]) - Foundation.exp(Double(original[i])) / total) < 1e-6)
        }
    }

    @Test func parallelForVisitsEveryIndexOnce() {
        Threads.configure(2)
        defer { Threads.configure(1) }
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: 1000)
        defer { counts.deallocate() }
        counts.initialize(repeating: 0, count: 1000)
        let shared = SendablePointer(counts)
        parallelFor(1000) { shared.mutable[$0] += 1 }
        #expect((0..<1000).allSatisfy { counts[$0] == 1 })
        parallelChunks(1000, minimumChunk: 10) { range in
            for i in range { shared.mutable[i] += 1 }
        }
        #expect((0..<1000).allSatisfy { counts[$0] == 2 })
    }
}

struct RandomTests {
    @Test func sameSeedSameStreamAndStateRoundTrip() {
        var a = RandomGenerator(seed: 42), b = RandomGenerator(seed: 42)
        for _ in 0..<10 { #expect(a.next() == b.next()) }
        let saved = a.state
        let expected = (0..<5).map { _ in a.next() }
        var restored = RandomGenerator(state: saved)
        #expect((0..<5).map { _ in restored.next() } == expected)
        var c = RandomGenerator(seed: 43)
        #expect(c.next() != RandomGenerator(seed: 42).state[0])
    }

    @Test func normalHasUnitVarianceAndUniformIsInRange() {
        var rng = RandomGenerator(seed: 1)
        let n = 200_000
        var s = 0.0, s2 = 0.0
        for _ in 0..<n {
            let z = rng.normal()
            s += z
            s2 += z * z
        }
        #expect(abs(s / Double(n)) < 0.01)
        #expect(abs(s2 / Double(n) - 1) < 0.01)
        for _ in 0..<10_000 {
            let u = rng.uniform()
            #expect(u >= 0 && u < 1)
        }
    }

    @Test func truncatedNormalHasExactStdAndBoundedSupport() {
        var rng = RandomGenerator(seed: 3)
        var x = [Float](repeating: 0, count: 5000)
        Initializer.truncatedNormalExactStd(&x, count: x.count, std: 0.05, rng: &rng)
        #expect(abs(Initializer.standardDeviation(x, count: x.count) - 0.05) < 1e-6)
        // Before rescaling the samples lay in [-2, 2] with std ~0.88, so |x| <= 2 * 0.05 / 0.88.
        #expect(x.allSatisfy { abs($0) < 0.05 * 2 / 0.8 })
    }
}

struct BufferTests {
    @Test func reserveAllocatesOnlyWhenGrowing() {
        let buffer = FloatBuffer()
        let before = BufferStatistics.allocations
        _ = buffer.reserve(100)
        _ = buffer.reserve(50)
        _ = buffer.reserve(100)
        #expect(BufferStatistics.allocations == before + 1)
        _ = buffer.reserve(101)
        #expect(BufferStatistics.allocations == before + 2)
    }
}
