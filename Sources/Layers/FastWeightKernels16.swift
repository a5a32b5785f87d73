import Tensor

// The fast-weight kernels of FastWeightCore.swift for a head size of 16, the size of every
// formal-language preset: each [16, 16] fast-weight row is one SIMD16 value, and the vectors a
// step accumulates (y, u, vbar, du) stay in registers across the 16 rows. The general kernels
// accumulate through memory (the compiler cannot prove that the output aliases no input), and
// that store-to-load chain held the hottest instruction of the linear Transformer's backward
// (perf annotate). A matrix-vector product over the rows, z_e = Σ_m M[e, m] x_m, sums 16 rows
// at once with a tree of half-vector additions (`rowDots`) instead of 16 separate horizontal
// sums. Each kernel computes what its general counterpart does; the writes of W are the same
// bits (the row sums are added in another order), and tests compare both with per-step
// references.

enum FastWeightKernels16 {
    typealias Row = SIMD16<Float>

    @inline(__always) static func row(_ m: UnsafePointer<Float>, _ e: Int) -> Row { load16(m + 16 * e) }

    /// Σ of the 16 lanes by halves (the standard library's `sum()` was left as a call).
    @inline(__always) static func lanesSum(_ x: Row) -> Float {
        let eight = x.lowHalf + x.highHalf, four = eight.lowHalf + eight.highHalf
        return (four[0] + four[1]) + (four[2] + four[3])
    }

    /// The largest of the 16 lanes, by halves.
    @inline(__always) static func lanesMax(_ x: Row) -> Float {
        var eight = x.lowHalf
        eight.replace(with: x.highHalf, where: x.highHalf .> eight)
        var four = eight.lowHalf
        four.replace(with: eight.highHalf, where: eight.highHalf .> four)
        return max(max(four[0], four[1]), max(four[2], four[3]))
    }

    /// (M x)_e = Σ_m M[e, m] x_m for the 16 rows of M: products, then pairs of rows folded into
    /// one vector while halving the lanes per row, until lane e holds row e's sum.
    @inline(__always)
    static func rowDots(_ m: UnsafePointer<Float>, _ x: Row) -> Row {
        @inline(__always) func halves(_ a: Row, _ b: Row) -> Row {
            Row(lowHalf: a.lowHalf + a.highHalf, highHalf: b.lowHalf + b.highHalf)
        }
        @inline(__always) func pairs(_ a: Row, _ b: Row) -> Row {
            Row(lowHalf: a.evenHalf + a.oddHalf, highHalf: b.evenHalf + b.oddHalf)
        }
        // 8 lanes per row, two rows per vector.
        let f0 = halves(row(m, 0) * x, row(m, 1) * x), f1 = halves(row(m, 2) * x, row(m, 3) * x)
        let f2 = halves(row(m, 4) * x, row(m, 5) * x), f3 = halves(row(m, 6) * x, row(m, 7) * x)
        let f4 = halves(row(m, 8) * x, row(m, 9) * x), f5 = halves(row(m, 10) * x, row(m, 11) * x)
        let f6 = halves(row(m, 12) * x, row(m, 13) * x), f7 = halves(row(m, 14) * x, row(m, 15) * x)
        // 4, 2, then 1 lane per row.
        let g0 = pairs(f0, f1), g1 = pairs(f2, f3), g2 = pairs(f4, f5), g3 = pairs(f6, f7)
        return pairs(pairs(g0, g1), pairs(g2, g3))
    }

    /// Σ_e x_e M[e, :]: a row vector times the matrix.
    @inline(__always)
    static func product(_ x: UnsafePointer<Float>, _ m: UnsafePointer<Float>) -> Row {
        var total = Row()
        for e in 0..<16 { total = total + Row(repeating: x[e]) * row(m, e) }
        return total
    }

    /// phi(x) = ELU(x) + 1 into `f` with the SIMD exponential (`exp16`, within 2.5e-7 of
    /// libm's); returns Σ f.
    @inline(__always)
    static func eluPlusOne(_ x: UnsafePointer<Float>, into f: UnsafeMutablePointer<Float>) -> Float {
        let xv = load16(x)
        var phi = xv + Row(repeating: 1)
        phi.replace(with: exp16(xv), where: xv .<= Row(repeating: 0))
        store16(phi, f)
        return lanesSum(phi)
    }

    /// min(x, 1) lane by lane: phi'(x) from phi(x) (compare and blend; `pointwiseMin` does not
    /// specialise).
    @inline(__always)
    static func derivativeFromFeature(_ phi: Row) -> Row {
        var derivative = phi
        let one = Row(repeating: 1)
        derivative.replace(with: one, where: phi .> one)
        return derivative
    }

    /// softmax(x), stable (the maximum subtracted), as Tensor's `softmaxInPlace`.
    @inline(__always)
    static func softmax(_ x: Row) -> Row {
        let e = exp16(x - Row(repeating: lanesMax(x)))
        return e * Row(repeating: 1 / lanesSum(e))
    }

    /// dz = a * (da - (da . a)): the gradient through a = softmax(z) (or through a sum
    /// normalisation with a in place of the factor).
    @inline(__always)
    static func softmaxBackward(_ a: Row, dOutput da: Row) -> Row {
        a * (da - Row(repeating: lanesSum(da * a)))
    }

    /// M += Σ_t x_t ⊗ z_t over the given steps, in their order: each t adds x_t[e] z_t to row e
    /// (`rowAxpy`'s arithmetic, so the same bits as adding the steps one at a time), with four
    /// rows held in registers per pass over the steps instead of all 16 rows read and written
    /// at every step.
    @inline(__always)
    static func accumulateOuterProducts(
        _ steps: StrideThrough<Int>, left x: (Int) -> UnsafePointer<Float>,
        right z: (Int) -> UnsafePointer<Float>, into m: UnsafeMutablePointer<Float>
    ) {
        for block in stride(from: 0, to: 16, by: 4) {
            var r0 = row(m, block), r1 = row(m, block + 1), r2 = row(m, block + 2), r3 = row(m, block + 3)
            for t in steps {
                let xt = x(t), zt = load16(z(t))
                r0 = r0 + Row(repeating: xt[block]) * zt
                r1 = r1 + Row(repeating: xt[block + 1]) * zt
                r2 = r2 + Row(repeating: xt[block + 2]) * zt
                r3 = r3 + Row(repeating: xt[block + 3]) * zt
            }
            store16(r0, m + 16 * block)
            store16(r1, m + 16 * (block + 1))
            store16(r2, m + 16 * (block + 2))
            store16(r3, m + 16 * (block + 3))
        }
    }

    /// next = previous + k ⊗ u (previous nil: W_0 = 0).
    @inline(__always)
    static func write(
        previous: UnsafePointer<Float>?, next: UnsafeMutablePointer<Float>,
        key k: UnsafePointer<Float>, update u: UnsafePointer<Float>
    ) {
        let uv = load16(u)
        for e in 0..<16 {
            let scaled = Row(repeating: k[e]) * uv
            store16(previous.map { row($0, e) + scaled } ?? scaled, next + 16 * e)
        }
    }

    /// next = previous + k ⊗ u, then y = q next (overwritten).
    @inline(__always)
    static func writeAndRead(
        previous: UnsafePointer<Float>?, next: UnsafeMutablePointer<Float>,
        key k: UnsafePointer<Float>, update u: UnsafePointer<Float>, query q: UnsafePointer<Float>,
        output y: UnsafeMutablePointer<Float>
    ) {
        let uv = load16(u)
        var yv = Row()
        for e in 0..<16 {
            let scaled = Row(repeating: k[e]) * uv
            let updated = previous.map { row($0, e) + scaled } ?? scaled
            store16(updated, next + 16 * e)
            yv = yv + Row(repeating: q[e]) * updated
        }
        store16(yv, y)
    }

    /// S += q ⊗ dy; dq = W_t dy; du = k S; dk = S u (dq, du, dk overwritten).
    @inline(__always)
    static func writeAndReadBackward(
        current w: UnsafePointer<Float>, key k: UnsafePointer<Float>, update u: UnsafePointer<Float>,
        query q: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>,
        weightGradient s: UnsafeMutablePointer<Float>, dQuery dq: UnsafeMutablePointer<Float>,
        dKey dk: UnsafeMutablePointer<Float>, dUpdate du: UnsafeMutablePointer<Float>
    ) {
        store16(rowDots(w, load16(dy)), dq)
        carryBackward(key: k, update: u, query: q, dOutput: dy, weightGradient: s, dKey: dk, dUpdate: du)
    }

    /// S += q ⊗ dy; du = k S; dk = S u (du, dk overwritten): `writeAndReadBackward` without dq.
    @inline(__always)
    static func carryBackward(
        key k: UnsafePointer<Float>, update u: UnsafePointer<Float>, query q: UnsafePointer<Float>,
        dOutput dy: UnsafePointer<Float>, weightGradient s: UnsafeMutablePointer<Float>,
        dKey dk: UnsafeMutablePointer<Float>, dUpdate du: UnsafeMutablePointer<Float>
    ) {
        let dyv = load16(dy)
        var duv = Row()
        for e in 0..<16 {
            let updated = row(s, e) + Row(repeating: q[e]) * dyv
            store16(updated, s + 16 * e)
            duv = duv + Row(repeating: k[e]) * updated
        }
        store16(duv, du)
        store16(rowDots(s, load16(u)), dk)
    }

    /// The delta rule's forward (`FastWeightKernels.deltaRuleForward`).
    @inline(__always)
    static func deltaRuleForward(
        _ step: DeltaRuleStep, value v: UnsafePointer<Float>, previous: UnsafePointer<Float>?,
        next: UnsafeMutablePointer<Float>, output y: UnsafeMutablePointer<Float>
    ) {
        let vbar = previous.map { product(step.key, $0) } ?? Row()
        let delta = load16(v) - vbar
        store16(delta, step.delta)
        store16(Row(repeating: step.beta) * delta, step.update)
        writeAndRead(
            previous: previous, next: next, key: step.key, update: step.update, query: step.query, output: y)
    }

    /// The delta rule's backward (`FastWeightKernels.deltaRuleBackward`); returns dbeta.
    @inline(__always)
    static func deltaRuleBackward(
        _ step: DeltaRuleStep, previous: UnsafePointer<Float>?, current: UnsafePointer<Float>,
        dOutput dy: UnsafePointer<Float>, weightGradient s: UnsafeMutablePointer<Float>,
        dQuery dq: UnsafeMutablePointer<Float>, dKey dk: UnsafeMutablePointer<Float>,
        dValue dv: UnsafeMutablePointer<Float>, dUpdate du: UnsafeMutablePointer<Float>
    ) -> Float {
        writeAndReadBackward(
            current: current, key: step.key, update: step.update, query: step.query, dOutput: dy,
            weightGradient: s, dQuery: dq, dKey: dk, dUpdate: du)
        let duv = load16(du)
        let dBeta = lanesSum(duv * load16(step.delta))
        let dvv = Row(repeating: step.beta) * duv
        store16(dvv, dv)
        // dvbar = -dv; W_0 = 0 has no gradient path.
        guard let previous else { return dBeta }
        store16(load16(dk) - rowDots(previous, dvv), dk)
        let k = step.key
        for e in 0..<16 { store16(row(s, e) - Row(repeating: k[e]) * dvv, s + 16 * e) }
        return dBeta
    }

    /// A [16, 16] matrix held in sixteen SIMD16 values, so that a loop over time keeps it in
    /// vector registers (a local of this type is split into its rows by the optimiser) instead
    /// of storing it and loading it back at every step. Row e is `r<e>`; the rows are spelled
    /// out because a subscript over a switch or a tuple would put the matrix back in memory.
    struct Matrix16 {
        var r0: Row
        var r1: Row
        var r2: Row
        var r3: Row
        var r4: Row
        var r5: Row
        var r6: Row
        var r7: Row
        var r8: Row
        var r9: Row
        var r10: Row
        var r11: Row
        var r12: Row
        var r13: Row
        var r14: Row
        var r15: Row

        /// The zero matrix.
        @inline(__always) init() {
            let zero = Row()
            (r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15) = (zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero)
        }

        /// Row e += x_e z (each element as `write` computes it: row + x_e * z, unfused).
        @inline(__always) mutating func addOuter(_ x: UnsafePointer<Float>, _ z: Row) {
            r0 = r0 + Row(repeating: x[0]) * z
            r1 = r1 + Row(repeating: x[1]) * z
            r2 = r2 + Row(repeating: x[2]) * z
            r3 = r3 + Row(repeating: x[3]) * z
            r4 = r4 + Row(repeating: x[4]) * z
            r5 = r5 + Row(repeating: x[5]) * z
            r6 = r6 + Row(repeating: x[6]) * z
            r7 = r7 + Row(repeating: x[7]) * z
            r8 = r8 + Row(repeating: x[8]) * z
            r9 = r9 + Row(repeating: x[9]) * z
            r10 = r10 + Row(repeating: x[10]) * z
            r11 = r11 + Row(repeating: x[11]) * z
            r12 = r12 + Row(repeating: x[12]) * z
            r13 = r13 + Row(repeating: x[13]) * z
            r14 = r14 + Row(repeating: x[14]) * z
            r15 = r15 + Row(repeating: x[15]) * z
        }

        /// Σ_e x_e row_e, summed in the order e = 0, 1, ..., 15 from zero (`writeAndRead`'s order).
        @inline(__always) func product(_ x: UnsafePointer<Float>) -> Row {
            var total = Row()
            total = total + Row(repeating: x[0]) * r0
            total = total + Row(repeating: x[1]) * r1
            total = total + Row(repeating: x[2]) * r2
            total = total + Row(repeating: x[3]) * r3
            total = total + Row(repeating: x[4]) * r4
            total = total + Row(repeating: x[5]) * r5
            total = total + Row(repeating: x[6]) * r6
            total = total + Row(repeating: x[7]) * r7
            total = total + Row(repeating: x[8]) * r8
            total = total + Row(repeating: x[9]) * r9
            total = total + Row(repeating: x[10]) * r10
            total = total + Row(repeating: x[11]) * r11
            total = total + Row(repeating: x[12]) * r12
            total = total + Row(repeating: x[13]) * r13
            total = total + Row(repeating: x[14]) * r14
            total = total + Row(repeating: x[15]) * r15
            return total
        }

        /// Σ_e x_e row_e with two running sums (even and odd e), added at the end: half the
        /// dependent additions of `product`, for backward passes whose order is their own.
        @inline(__always) func pairedProduct(_ x: UnsafePointer<Float>) -> Row {
            var even = Row(), odd = Row()
            even = even + Row(repeating: x[0]) * r0
            even = even + Row(repeating: x[2]) * r2
            even = even + Row(repeating: x[4]) * r4
            even = even + Row(repeating: x[6]) * r6
            even = even + Row(repeating: x[8]) * r8
            even = even + Row(repeating: x[10]) * r10
            even = even + Row(repeating: x[12]) * r12
            even = even + Row(repeating: x[14]) * r14
            odd = odd + Row(repeating: x[1]) * r1
            odd = odd + Row(repeating: x[3]) * r3
            odd = odd + Row(repeating: x[5]) * r5
            odd = odd + Row(repeating: x[7]) * r7
            odd = odd + Row(repeating: x[9]) * r9
            odd = odd + Row(repeating: x[11]) * r11
            odd = odd + Row(repeating: x[13]) * r13
            odd = odd + Row(repeating: x[15]) * r15
            return even + odd
        }

        /// (M z)_e = row_e . z for the 16 rows, by the halving tree of `rowDots`.
        @inline(__always) func rowDots(_ z: Row) -> Row {
            @inline(__always) func halves(_ a: Row, _ b: Row) -> Row {
                Row(lowHalf: a.lowHalf + a.highHalf, highHalf: b.lowHalf + b.highHalf)
            }
            @inline(__always) func pairs(_ a: Row, _ b: Row) -> Row {
                Row(lowHalf: a.evenHalf + a.oddHalf, highHalf: b.evenHalf + b.oddHalf)
            }
            let f0 = halves(r0 * z, r1 * z), f1 = halves(r2 * z, r3 * z)
            let f2 = halves(r4 * z, r5 * z), f3 = halves(r6 * z, r7 * z)
            let f4 = halves(r8 * z, r9 * z), f5 = halves(r10 * z, r11 * z)
            let f6 = halves(r12 * z, r13 * z), f7 = halves(r14 * z, r15 * z)
            let g0 = pairs(f0, f1), g1 = pairs(f2, f3), g2 = pairs(f4, f5), g3 = pairs(f6, f7)
            return pairs(pairs(g0, g1), pairs(g2, g3))
        }
    }
}
