import Tensor

// LayerNorm over the last dimension.
// Legend: R rows (tokens), C width.
//   y = (x - mean) / sqrt(var + eps) * weight + bias, var biased (divides by C), eps 1e-5,
//   weight initialised to 1 and bias to 0, as PyTorch's LayerNorm.

/// Affine layer normalisation of each row of an `[R, C]` matrix.
public final class LayerNorm {
    public let width: Int
    public let epsilon: Float = 1e-5
    public let weight: ParameterView
    public let bias: ParameterView

    private let mean = FloatBuffer()
    private let inverseStd = FloatBuffer()
    private let partialWeightGrad = FloatBuffer()
    private let partialBiasGrad = FloatBuffer()

    /// Registers `weight` and `bias` under `scope`.
    public init(_ scope: ParameterScope, width: Int) {
        self.width = width
        weight = scope.tensor("weight", shape: [width])
        bias = scope.tensor("bias", shape: [width])
    }

    public func initialize(_ arena: ParameterArena) {
        arena.value(weight).update(repeating: 1, count: width)
        arena.value(bias).update(repeating: 0, count: width)
    }

    /// The saved statistics of up to `rows` rows and, for training, the backward's partial
    /// parameter gradients.
    public func declareBuffers(rows: Int, training: Bool, in plan: inout BufferPlan) {
        plan.declare(mean, "layer norm mean", count: rows)
        plan.declare(inverseStd, "layer norm 1/std", count: rows)
        if training {
            plan.declare(partialWeightGrad, "layer norm partial weight gradients", count: Self.maximumChunks * width)
            plan.declare(partialBiasGrad, "layer norm partial bias gradients", count: Self.maximumChunks * width)
        }
    }

    static let maximumChunks = 16

    /// x, y: [R, C]. Saves per-row mean and 1/std for `backward`.
    public func forward(
        _ x: UnsafePointer<Float>, rows: Int, output y: UnsafeMutablePointer<Float>,
        arena: ParameterArena
    ) {
        let c = width
        let eps = epsilon
        let x = SendablePointer(x), y = SendablePointer(y)
        let mean = SendablePointer(self.mean.reserved(rows))
        let inverseStd = SendablePointer(self.inverseStd.reserved(rows))
        let w = SendablePointer(arena.value(weight)), b = SendablePointer(arena.value(bias))
        parallelChunks(rows, minimumChunk: 64) { range in
            for r in range {
                let row = x.pointer + r * c
                let m = sum(row, count: c) / Float(c)
                var variance: Float = 0
                // Two passes: the variance of centred values, as PyTorch computes it.
                var acc = SIMD16<Float>()
                let centre = SIMD16<Float>(repeating: m)
                var i = 0
                while i + 16 <= c {
                    let d = load16(row + i) - centre
                    acc += d * d
                    i += 16
                }
                variance = acc.sum()
                while i < c {
                    variance += (row[i] - m) * (row[i] - m)
                    i += 1
                }
                variance /= Float(c)
                let s = 1 / (variance + eps).squareRoot()
                mean.mutable[r] = m
                inverseStd.mutable[r] = s
                let out = y.mutable + r * c
                for i in 0..<c {
                    out[i] = (row[i] - m) * s * w.pointer[i] + b.pointer[i]
                }
            }
        }
    }

    /// Accumulates dWeight, dBias and, when `dInput` is given, `dx += dL/dx`.
    public func backward(
        _ x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, rows: Int,
        dInput dx: UnsafeMutablePointer<Float>?, arena: ParameterArena
    ) {
        for group in 0..<arena.gradientGroups {
            backward(
                x, dOutput: dy, rows: arena.rows(ofGroup: group, in: rows), dInput: dx,
                weightGradient: arena.gradient(weight, group: group),
                biasGradient: arena.gradient(bias, group: group), arena: arena)
        }
    }

    /// The backward pass over `part` of the rows, its parameter gradients into the given ones.
    private func backward(
        _ x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, rows part: Range<Int>,
        dInput dx: UnsafeMutablePointer<Float>?, weightGradient: UnsafeMutablePointer<Float>,
        biasGradient: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        let c = width, rows = part.count, first = part.lowerBound
        // Fixed chunking, independent of the thread count, so gradients are bit-identical
        // whatever --threads says.
        let chunks = max(1, min(Self.maximumChunks, rows / 32))
        let pw = SendablePointer(partialWeightGrad.reserved(chunks * c))
        let pb = SendablePointer(partialBiasGrad.reserved(chunks * c))
        let x = SendablePointer(x), dy = SendablePointer(dy)
        let dx = dx.map { SendablePointer($0) }
        let mean = SendablePointer(self.mean.pointer), inverseStd = SendablePointer(self.inverseStd.pointer)
        let w = SendablePointer(arena.value(weight))
        parallelFor(chunks) { chunk in
            let gw = pw.mutable + chunk * c, gb = pb.mutable + chunk * c
            gw.update(repeating: 0, count: c)
            gb.update(repeating: 0, count: c)
            for r in (first + chunk * rows / chunks)..<(first + (chunk + 1) * rows / chunks) {
                let row = x.pointer + r * c, g = dy.pointer + r * c
                let m = mean.pointer[r], s = inverseStd.pointer[r]
                // dnorm = g * w; dx = s * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)).
                // SIMD16 partial sums (a plain loop would not vectorise: see Tensor/Kernels.swift).
                var sumD16 = SIMD16<Float>(), sumDX16 = SIMD16<Float>()
                let mean16 = SIMD16<Float>(repeating: m), scale16 = SIMD16<Float>(repeating: s)
                var i = 0
                while i + 16 <= c {
                    let xhat = (load16(row + i) - mean16) * scale16
                    let gradient = load16(g + i)
                    let d = gradient * load16(w.pointer + i)
                    sumD16 += d
                    sumDX16 += d * xhat
                    store16(load16(gw + i) + gradient * xhat, gw + i)
                    store16(load16(gb + i) + gradient, gb + i)
                    i += 16
                }
                var sumD = sumD16.sum(), sumDX = sumDX16.sum()
                while i < c {
                    let xhat = (row[i] - m) * s
                    let d = g[i] * w.pointer[i]
                    sumD += d
                    sumDX += d * xhat
                    gw[i] += g[i] * xhat
                    gb[i] += g[i]
                    i += 1
                }
                if let dx {
                    let meanD = sumD / Float(c), meanDX = sumDX / Float(c)
                    let out = dx.mutable + r * c
                    for i in 0..<c {
                        let xhat = (row[i] - m) * s
                        out[i] += s * (g[i] * w.pointer[i] - meanD - xhat * meanDX)
                    }
                }
            }
        }
        for chunk in 0..<chunks {
            addInPlace(weightGradient, pw.pointer + chunk * c, count: c)
            addInPlace(biasGradient, pb.pointer + chunk * c, count: c)
        }
    }
}
