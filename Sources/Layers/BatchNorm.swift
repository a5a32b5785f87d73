import Tensor

// Batch normalisation of each feature over the rows (PyTorch's BatchNorm1d on an [R, C] input).
// Legend: R rows (tokens), C features.
//   training    mean_j = sum_r x[r, j] / R,  var_j = sum_r (x[r, j] - mean_j)^2 / R (biased);
//               running_mean = 0.9 running_mean + 0.1 mean,
//               running_var = 0.9 running_var + 0.1 var R / (R - 1) (unbiased)
//   evaluation  mean, var = running_mean, running_var
//   both        xhat = (x - mean) / sqrt(var + eps), eps 1e-5;  y = weight xhat + bias
//   backward    training: dx = weight inv / R (R dy - sum_r dy - xhat sum_r dy xhat),
//               evaluation: dx = weight inv dy, with inv = 1 / sqrt(var + eps);
//               dweight += sum_r dy xhat, dbias += sum_r dy
//
// Each worker owns a range of features (columns) and walks the rows in order, so every sum
// runs in row order whatever the thread count. In a data-parallel job R counts every rank's
// rows and each sum over rows is reduced across ranks (`Collective`). Backward needs only xhat, which forward writes
// over its input when the input is `inputBuffer(rows:)`: the input costs no buffer of its own.

/// Feature-wise batch normalisation of an `[R, C]` matrix: `y = weight (x - mean) /
/// sqrt(var + eps) + bias`, with the batch's mean and biased variance in training (which also
/// update the running statistics) and the running statistics in evaluation.
public final class BatchNorm {
    /// Weight of the current batch in the running statistics (PyTorch's).
    public static let momentum: Float = 0.1
    /// Added to the variance before the square root (PyTorch's).
    public static let epsilon: Float = 1e-5

    public let width: Int
    /// `NAME.weight` [C] (gamma).
    public let weight: ParameterView
    /// `NAME.bias` [C] (beta).
    public let bias: ParameterView
    private let name: String

    // Non-trained state, allocated with the layer (it is loaded from checkpoints before any pass).
    private let runningMean: UnsafeMutablePointer<Float>  // [C]
    private let runningVariance: UnsafeMutablePointer<Float>  // [C]
    private var usedBatchStatistics = false
    /// Rows of the last training pass's statistics (every rank's) and the ranks they span.
    private var batchStatisticsRows = 0
    private var batchCollective: (any Collective)?
    // Forward activations (kept for backward).
    private let normalized = FloatBuffer()  // [R, C] xhat
    private let inverseStd = FloatBuffer()  // [C]
    private let featureSums = FloatBuffer()  // [2C] per-feature reductions

    /// Registers `weight` and `bias` under `scope`; the running statistics start at (0, 1).
    public init(_ scope: ParameterScope, width: Int) {
        name = scope.prefix
        self.width = width
        weight = scope.tensor("weight", shape: [width])
        bias = scope.tensor("bias", shape: [width])
        runningMean = .allocate(capacity: width)
        runningVariance = .allocate(capacity: width)
        runningMean.initialize(repeating: 0, count: width)
        runningVariance.initialize(repeating: 1, count: width)
    }

    deinit {
        runningMean.deallocate()
        runningVariance.deallocate()
    }

    /// x̂ of `rows` rows and the per-feature statistics.
    public func declareBuffers(rows: Int, in plan: inout BufferPlan) {
        plan.declare(normalized, "batch norm x̂", count: rows * width)
        plan.declare(inverseStd, "batch norm 1/std", count: width)
        plan.declare(featureSums, "batch norm feature sums", count: 2 * width)
    }

    /// Weight 1, bias 0, running statistics (0, 1).
    public func initialize(_ arena: ParameterArena) {
        arena.value(weight).update(repeating: 1, count: width)
        arena.value(bias).update(repeating: 0, count: width)
        runningMean.update(repeating: 0, count: width)
        runningVariance.update(repeating: 1, count: width)
    }

    // MARK: State

    /// The running statistics, `NAME.running_mean` and `NAME.running_var` ([C] each, PyTorch's
    /// names and meaning), which a checkpoint carries besides the parameters.
    public var state: [String: [Float]] {
        [
            "\(name).running_mean": Array(UnsafeBufferPointer(start: runningMean, count: width)),
            "\(name).running_var": Array(UnsafeBufferPointer(start: runningVariance, count: width)),
        ]
    }

    /// Restores what `state` returned; throws one line (`FeedForwardConfigError`) for a missing
    /// name or a wrong length.
    public func loadState(_ state: [String: [Float]]) throws {
        for (key, buffer) in [("running_mean", runningMean), ("running_var", runningVariance)] {
            let full = "\(name).\(key)"
            guard let saved = state[full] else {
                throw FeedForwardConfigError(description: "checkpoint lacks \(full)")
            }
            guard saved.count == width else {
                throw FeedForwardConfigError(
                    description: "checkpoint \(full) has \(saved.count) entries, the model needs \(width)")
            }
            saved.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress!, count: width) }
        }
    }

    // MARK: Forward and backward

    /// Where to write an input of `rows` rows so that `forward` normalises it in place: [R, C].
    public func inputBuffer(rows: Int) -> UnsafeMutablePointer<Float> {
        normalized.reserved(rows * width)
    }

    /// x: [R, C] -> y: [R, C] (overwritten). Training needs R >= 2 (the unbiased variance) and
    /// updates the running statistics. x may be `inputBuffer(rows:)`, which then holds xhat.
    /// In a data-parallel job (`collective`), R and the statistics are those of every rank's
    /// rows together: each per-feature sum is reduced across ranks before it is used.
    public func forward(
        _ x: UnsafePointer<Float>, rows: Int, output y: UnsafeMutablePointer<Float>, training: Bool,
        arena: ParameterArena, collective: (any Collective)? = nil
    ) {
        let overallRows = training ? (collective?.sum(rows) ?? rows) : rows
        precondition(!training || overallRows >= 2, "batch norm \(name) needs at least 2 rows in training")
        let f = width
        let z = SendablePointer(x)
        let xhat = SendablePointer(normalized.reserved(rows * f))
        let q = SendablePointer(y)
        let inv = SendablePointer(inverseStd.reserved(f))
        let mean = SendablePointer(featureSums.reserved(2 * f))
        let gamma = SendablePointer(arena.value(weight))
        let beta = SendablePointer(arena.value(bias))
        let runningMean = SendablePointer(self.runningMean)
        let runningVariance = SendablePointer(self.runningVariance)
        usedBatchStatistics = training
        let eps = Self.epsilon, momentum = Self.momentum
        let count = Float(overallRows)
        let statistics = mean.mutable, variances = SendablePointer(mean.mutable + f)
        if training {
            // Each sum over rows is taken per gradient group and the groups' sums are added
            // pairwise, within this rank and across ranks (see ParameterArena).
            let groups = arena.gradientGroups
            // (groups x C floats, allocated per pass: the plan does not know the groups.)
            let partial = SendablePointer(UnsafeMutablePointer<Float>.allocate(capacity: groups * f))
            defer { partial.mutable.deallocate() }
            parallelChunks(f, minimumChunk: 256) { range in
                for group in 0..<groups {
                    let m = partial.mutable + group * f
                    for j in range { m[j] = 0 }
                    for r in arena.rows(ofGroup: group, in: rows) {
                        let row = z.pointer + r * f
                        for j in range { m[j] += row[j] }
                    }
                }
            }
            addRunsPairwise(partial.mutable, parts: groups, length: f)
            statistics.update(from: partial.pointer, count: f)
            collective?.allReduceSumPairwise(statistics, count: f)
            parallelChunks(f, minimumChunk: 256) { range in
                let m = mean.mutable
                for j in range { m[j] /= count }
                for group in 0..<groups {
                    let v = partial.mutable + group * f
                    for j in range { v[j] = 0 }
                    for r in arena.rows(ofGroup: group, in: rows) {
                        let row = z.pointer + r * f
                        for j in range {
                            let c = row[j] - m[j]
                            v[j] += c * c
                        }
                    }
                }
            }
            addRunsPairwise(partial.mutable, parts: groups, length: f)
            variances.mutable.update(from: partial.pointer, count: f)
            collective?.allReduceSumPairwise(variances.mutable, count: f)
        }
        parallelChunks(f, minimumChunk: 256) { range in
                let m = mean.mutable, v = variances.mutable
            if training {
                for j in range {
                    v[j] /= count
                    inv.mutable[j] = 1 / (v[j] + eps).squareRoot()
                    runningMean.mutable[j] = (1 - momentum) * runningMean.mutable[j] + momentum * m[j]
                    runningVariance.mutable[j] =
                        (1 - momentum) * runningVariance.mutable[j] + momentum * v[j] * count / (count - 1)
                }
            } else {
                for j in range {
                    m[j] = runningMean.mutable[j]
                    inv.mutable[j] = 1 / (runningVariance.mutable[j] + eps).squareRoot()
                }
            }
            // Element by element, so x and xhat may share memory.
            for r in 0..<rows {
                let zr = z.pointer + r * f, xr = xhat.mutable + r * f, qr = q.mutable + r * f
                for j in range {
                    let n = (zr[j] - m[j]) * inv.mutable[j]
                    xr[j] = n
                    qr[j] = gamma.mutable[j] * n + beta.mutable[j]
                }
            }
        }
        batchStatisticsRows = overallRows
        batchCollective = training ? collective : nil
    }

    /// In place: dy -> dx ([R, C]) for the statistics the last `forward` used. Accumulates
    /// dweight += sum_r dy xhat and dbias += sum_r dy over this rank's rows; the batch
    /// statistics' gradient uses those sums over every rank's rows.
    public func backward(
        inPlace dy: UnsafeMutablePointer<Float>, rows: Int, arena: ParameterArena
    ) {
        let f = width
        let g = SendablePointer(dy)
        let xhat = SendablePointer(normalized.pointer), inv = SendablePointer(inverseStd.pointer)
        let gamma = SendablePointer(arena.value(weight))
        let groups = arena.gradientGroups
        let dGamma = (0..<groups).map { SendablePointer(arena.gradient(weight, group: $0)) }
        let dBeta = (0..<groups).map { SendablePointer(arena.gradient(bias, group: $0)) }
        let partial = SendablePointer(UnsafeMutablePointer<Float>.allocate(capacity: groups * 2 * f))
        defer { partial.mutable.deallocate() }
        let batch = usedBatchStatistics
        let count = Float(batch ? batchStatisticsRows : rows)
        parallelChunks(f, minimumChunk: 256) { range in
            for group in 0..<groups {
                let s = partial.mutable + group * 2 * f, sx = s + f
                for j in range {
                    s[j] = 0
                    sx[j] = 0
                }
                for r in arena.rows(ofGroup: group, in: rows) {
                    let gr = g.pointer + r * f, xr = xhat.pointer + r * f
                    for j in range {
                        s[j] += gr[j]
                        sx[j] += gr[j] * xr[j]
                    }
                }
                for j in range {
                    dGamma[group].mutable[j] += sx[j]
                    dBeta[group].mutable[j] += s[j]
                }
            }
        }
        // The batch statistics' gradient: the groups' sums added pairwise, then across ranks.
        addRunsPairwise(partial.mutable, parts: groups, length: 2 * f)
        let sums = SendablePointer(featureSums.reserved(2 * f))
        sums.mutable.update(from: partial.pointer, count: 2 * f)
        batchCollective?.allReduceSumPairwise(sums.mutable, count: 2 * f)
        parallelChunks(f, minimumChunk: 256) { range in
            let s = sums.pointer, sx = sums.pointer + f
            for r in 0..<rows {
                let gr = g.mutable + r * f, xr = xhat.pointer + r * f
                for j in range {
                    let scale = gamma.pointer[j] * inv.pointer[j]
                    gr[j] = batch
                        ? scale * (gr[j] - s[j] / count - xr[j] * sx[j] / count)
                        : scale * gr[j]
                }
            }
        }
    }
}
