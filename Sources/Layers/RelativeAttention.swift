import Foundation
import Tensor

// Transformer-XL relative multi-head attention with memory, as in the official σ-MoE code
// (Docs/model.md "Relative attention").
// Legend: B batch, T query length (current segment), M memory length, S = M + T key length,
//   d model width, H heads, D head size (H * D may differ from d), HD = H * D.
// Input: the layer-normalised concat(memory, h), [B, S, d]; queries are its last T rows.
//   q = x Wq^T, [k | v] = x Wkv^T (per head: D key columns then D value columns),
//   R_p sinusoidal interleaved (R[2m] = sin(p w_m), R[2m+1] = cos(p w_m), w_m = 10000^(-2m/d)),
//   score[i, j] = s * ((q_i + u) . k_j + (q_i + v) . (Wr R_p)),  p = j - (M + i) <= 0,
//   keys with p > 0 (the future) masked; out = concat_h(softmax(score) V) Wo^T.
// Row r of the position table holds p = -r, so the position term of (i, j) is column
// r = M + i - j of (q_i + v) . (Wr R)^T.

/// Relative multi-head attention over a memory of earlier segments plus the current one.
public final class RelativeAttention {
    /// Head layout of one attention layer.
    public struct Config: Sendable, Codable, Equatable {
        public var heads: Int
        public var headSize: Int
        public init(heads: Int, headSize: Int) {
            self.heads = heads
            self.headSize = headSize
        }
    }

    public let config: Config
    public let width: Int
    public let query: ParameterView  // [HD, d]
    public let keyValue: ParameterView  // [2HD, d], rows ordered head, {key, value}, D
    public let position: ParameterView  // Wr [HD, d], no bias
    public let output: ParameterView  // Wo [d, HD]
    public let contentBias: ParameterView  // u [H, D]
    public let positionBias: ParameterView  // v [H, D]
    public let scoreScale: ParameterView  // s [1], learnable, init 1/sqrt(D)
    /// The official layer's unused scalar `s_bias`: kept so parameter counts match the paper.
    public let unusedBias: ParameterView

    let scratch: AttentionScratch

    // Saved by forward for backward.
    private var saved = (batch: 0, queryLength: 0, memoryLength: 0)
    private var savedForBackward = false
    /// Where the last pass's keys and values are when it projected into a memory's
    /// (`Reuse.keyValues`), and their rows per stream.
    private var lastKeyValues: (UnsafeMutablePointer<Float>, Int)?
    private let queryInput = FloatBuffer()  // [B*T, d]
    private let contentQuery = FloatBuffer()  // q + u, [B*T, HD]
    private let positionQuery = FloatBuffer()  // q + v, [B*T, HD]
    private let keyValues = FloatBuffer()  // [B*S, 2HD]
    private let positionKeys = FloatBuffer()  // Wr R, [HD, S], in reverse distance
    private let rawScores = FloatBuffer()  // unscaled content + position scores, [H, B, T, S]
    private let rowMaximum = FloatBuffer()  // softmax statistics per (h, b, i)
    private let rowInverseSum = FloatBuffer()
    private let merged = FloatBuffer()  // [B*T, HD]
    private let positionTable = FloatBuffer()  // R, [S, d]
    /// A training pass's R in reverse row order (row c holds p = -(S-1-c)): the order of its
    /// position keys and their gradient, for Wr's gradient (see `forward`).
    private let reversedPositionTable = FloatBuffer()
    private var positionTableRows = 0
    // Backward only.
    private let dMerged = FloatBuffer()
    private let dQuery = FloatBuffer()
    private let dKeyValues = FloatBuffer()
    private let dPositionKeys = FloatBuffer()
    private let dScalePartial = FloatBuffer()
    private let dPositionBiasRows = FloatBuffer()

    /// Registers the tensors above under `scope` (`query.weight`, `key_value.weight`, ...);
    /// `scratch` is shared by the attention layers of one model.
    public init(_ scope: ParameterScope, config: Config, width: Int, scratch: AttentionScratch) {
        self.config = config
        self.width = width
        self.scratch = scratch
        let hd = config.heads * config.headSize
        query = scope.tensor("query.weight", shape: [hd, width])
        keyValue = scope.tensor("key_value.weight", shape: [2 * hd, width])
        position = scope.tensor("position.weight", shape: [hd, width])
        output = scope.tensor("output.weight", shape: [width, hd])
        contentBias = scope.tensor("content_bias", shape: [config.heads, config.headSize])
        positionBias = scope.tensor("position_bias", shape: [config.heads, config.headSize])
        scoreScale = scope.tensor("scale", shape: [1])
        unusedBias = scope.tensor("unused_scale_bias", shape: [1])
    }

    public func initialize(_ arena: ParameterArena, _ context: inout InitializationContext) {
        for weight in [query, keyValue, position, output] {
            context.prenormInitialize(weight, in: arena)
        }
        arena.value(contentBias).update(repeating: 0, count: contentBias.count)
        arena.value(positionBias).update(repeating: 0, count: positionBias.count)
        arena.value(scoreScale)[0] = Float(1 / Double(config.headSize).squareRoot())
        arena.value(unusedBias)[0] = 0
    }

    /// The sinusoidal table for p = 0, -1, ..., -(rows-1), built in float32 like the official
    /// `sinusoidal_pos_embedding` (div_term = exp(2m * -ln(10000)/d) in float32).
    static func fillPositionTable(_ table: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        let factor = Float(-Foundation.log(10000.0) / Double(width))
        for m in 0..<(width / 2) {
            let frequency = Foundation.exp(Float(2 * m) * factor)
            for r in 0..<rows {
                let angle = Float(-r) * frequency
                table[r * width + 2 * m] = Foundation.sin(angle)
                table[r * width + 2 * m + 1] = Foundation.cos(angle)
            }
        }
    }

    /// What an evaluation pass takes from earlier segments instead of computing it again: with
    /// fixed weights, a memory row's keys and values and the position keys are the ones an
    /// earlier segment computed (the same rows through the same products).
    public struct Reuse {
        /// Keys and values of the memory rows, [B, stride, 2HD] with the first M rows per
        /// stream filled and room for the T current rows after them, which `forward` projects
        /// in place; nil: all rows are projected from `x` as in training.
        public var keyValues: UnsafeMutablePointer<Float>?
        /// Rows per stream of `keyValues`: at least M + T.
        public var stride: Int
        /// Wr R for `positionRows` distances, transposed and in reverse distance ([HD,
        /// positionRows], column c: distance positionRows-1-c); when that is fewer than S,
        /// `forward` fills `memoryCapacity + T` distances.
        public var positionKeys: UnsafeMutablePointer<Float>
        public var positionRows: Int

        public init(keyValues: UnsafeMutablePointer<Float>?, stride: Int, positionKeys: UnsafeMutablePointer<Float>, positionRows: Int) {
            self.keyValues = keyValues
            self.stride = stride
            self.positionKeys = positionKeys
            self.positionRows = positionRows
        }
    }

    /// x: layer-normalised concat(memory, h), [B, S, d], or only its current rows [B, T, d]
    /// when `reuse` holds the memory's keys and values; y: [B*T, d] (overwritten).
    /// Buffers are sized for `memoryCapacity` rows of memory (at least `memoryLength`), so a
    /// memory that fills up over the first steps does not reallocate them. A pass with `reuse`,
    /// or without `keepsForBackward`, keeps nothing for `backward`.
    public func forward(
        _ x: UnsafePointer<Float>, batch: Int, queryLength: Int, memoryLength: Int,
        memoryCapacity: Int = 0, reuse: Reuse? = nil, keepsForBackward: Bool = true,
        output y: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        precondition(reuse == nil || !keepsForBackward, "a pass that reuses projections keeps nothing for backward")
        let (b, t, m) = (batch, queryLength, memoryLength)
        let s = m + t, d = width, h = config.heads, dh = config.headSize, hd = h * dh
        let sMax = max(m, memoryCapacity) + t
        saved = (b, t, m)
        savedForBackward = keepsForBackward && reuse == nil
        let reusedKeyValues = reuse?.keyValues
        lastKeyValues = reusedKeyValues.map { ($0, reuse!.stride) }

        // Queries come from the current segment's rows only.
        let yq: UnsafePointer<Float>
        if reusedKeyValues != nil {
            yq = x
        } else {
            let copy = queryInput.reserved(b * t * d)
            for i in 0..<b {
                (copy + i * t * d).update(from: x + (i * s + m) * d, count: t * d)
            }
            yq = UnsafePointer(copy)
        }
        let qc = contentQuery.reserved(b * t * hd), qp = positionQuery.reserved(b * t * hd)
        gemmInRowGroups(arena.gradientGroups, transposeB: true, m: b * t, n: hd, k: d, a: yq, lda: d,
             b: arena.value(query), ldb: d, beta: 0, c: qc, ldc: hd)
        let u = arena.value(contentBias), v = arena.value(positionBias)
        for row in 0..<(b * t) {
            add(qc + row * hd, v, into: qp + row * hd, count: hd)
            addInPlace(qc + row * hd, u, count: hd)
        }
        // Keys and values: [B, kvStride, 2HD], the first S rows per stream used.
        let kv: UnsafeMutablePointer<Float>, kvStride: Int
        if let reused = reusedKeyValues {
            // The memory rows' are in place; the current rows' go right after them.
            (kv, kvStride) = (reused, reuse!.stride)
            precondition(kvStride >= s)
            let rows = SendablePointer(kv), input = SendablePointer(x), weights = SendablePointer(arena.value(keyValue))
            parallelFor(b) { item in
                gemm(transposeB: true, m: t, n: 2 * hd, k: d, a: input.pointer + item * t * d, lda: d,
                     b: weights.pointer, ldb: d, beta: 0, c: rows.mutable + (item * kvStride + m) * 2 * hd, ldc: 2 * hd)
            }
        } else {
            (kv, kvStride) = (keyValues.reserved(b * sMax * 2 * hd), s)
            gemmInRowGroups(arena.gradientGroups, transposeB: true, m: b * s, n: 2 * hd, k: d, a: x, lda: d,
                 b: arena.value(keyValue), ldb: d, beta: 0, c: kv, ldc: 2 * hd)
        }

        if positionTableRows < sMax {
            Self.fillPositionTable(positionTable.reserved(sMax * d), rows: sMax, width: d)
            positionTableRows = sMax
        }
        // Position keys are kept transposed and in reverse distance: [HD, rows], column c
        // holding distance rows-1-c, so that the relative shift reads each row of position
        // scores forward (see `attendInBlocks` and the training pass below).
        let rk: UnsafeMutablePointer<Float>, positionKeyRows: Int
        if let reuse {
            rk = reuse.positionKeys
            positionKeyRows = reuse.positionRows < s ? sMax : reuse.positionRows
            if reuse.positionRows < s { fillTransposedReversedPositionKeys(rk, rows: sMax, arena: arena) }
        } else {
            (rk, positionKeyRows) = (positionKeys.reserved(sMax * hd), s)
            fillTransposedReversedPositionKeys(rk, rows: s, arena: arena)
        }
        if keepsForBackward && reuse == nil {
            // Wr's gradient takes the table in the keys' order: reversed.
            let reversed = reversedPositionTable.reserved(sMax * d)
            for row in 0..<s {
                (reversed + row * d).update(from: positionTable.pointer + (s - 1 - row) * d, count: d)
            }
        }

        let out = merged.reserved(b * t * hd)
        if !keepsForBackward {
            attendInBlocks(
                contentQuery: qc, positionQuery: qp, keyValues: kv, keyValueStride: kvStride, positionKeys: rk,
                positionKeyRows: positionKeyRows, batch: b, queryLength: t, memoryLength: m, keyCapacity: sMax,
                scale: arena.value(scoreScale)[0], output: out)
            gemmInRowGroups(arena.gradientGroups, transposeB: true, m: b * t, n: d, k: hd, a: out, lda: hd,
                 b: arena.value(output), ldb: hd, beta: 0, c: y, ldc: d)
            return
        }

        // Position scores per (head, stream), in reverse distance: bd[h, row, c] = qp[row, h] .
        // rk[h, c] is the term of distance S-1-c. Key j of query i (distance M+i-j) is then
        // column T-1-i+j: the shift reads each row forward, as one vectorised pass with the
        // softmax's, and a row needs only its columns from T-1-i on.
        let raw = SendablePointer(rawScores.reserved(h * b * t * sMax))
        let rowMax = SendablePointer(rowMaximum.reserved(h * b * t))
        let rowInv = SendablePointer(rowInverseSum.reserved(h * b * t))
        let outS = SendablePointer(out)
        let qcS = SendablePointer(qc), qpS = SendablePointer(qp), kvS = SendablePointer(kv)
        let rkS = SendablePointer(rk)
        let scaleValue = arena.value(scoreScale)[0]
        // One task per (head, batch row): each writes only its own raw score block and its own
        // D columns of `merged`. Its position scores and probabilities are needed only while
        // it runs: they go to its thread's lane of the scratch, written right before they are
        // read, while they are in cache.
        let lanes = scratch.lanes(tasks: h * b, floatsPerLane: 2 * t * s)
        parallelForLanes(h * b, lanes: lanes.count) { lane, task in
            let head = task / b, item = task % b
            let block = task * t * s
            let positions = lanes.block(lane), probabilities = positions + t * s
            Self.attendRows(
                first: 0, rows: t, memoryLength: m, headSize: dh, scale: scaleValue,
                contentQuery: qcS.pointer + item * t * hd + head * dh, positionQuery: qpS.pointer + item * t * hd + head * dh,
                queryStride: hd, keys: kvS.pointer + item * s * 2 * hd + head * 2 * dh, keyStride: 2 * hd,
                positionKeys: rkS.pointer + head * dh * s, positionKeyStride: s,
                scores: raw.mutable + block, positions: positions, probabilities: probabilities,
                rowMaximum: rowMax.mutable + task * t, rowInverseSum: rowInv.mutable + task * t,
                output: outS.mutable + item * t * hd + head * dh, outputStride: hd)
        }
        gemmInRowGroups(arena.gradientGroups, transposeB: true, m: b * t, n: d, k: hd, a: out, lda: hd,
             b: arena.value(output), ldb: hd, beta: 0, c: y, ldc: d)
    }

    /// Query rows per block of a pass that keeps nothing for backward.
    static let evaluationRowBlock = 128

    /// Wr R for distances 0 ... rows-1, transposed and in reverse distance: `keys[e, c]` is
    /// feature e of distance rows-1-c ([HD, rows]).
    private func fillTransposedReversedPositionKeys(_ keys: UnsafeMutablePointer<Float>, rows: Int, arena: ParameterArena) {
        let hd = config.heads * config.headSize
        gemm(transposeB: true, m: hd, n: rows, k: width, a: arena.value(position), lda: width,
             b: positionTable.pointer, ldb: width, beta: 0, c: keys, ldc: rows)
        for feature in 0..<hd {
            var distances = UnsafeMutableBufferPointer(start: keys + feature * rows, count: rows)
            distances.reverse()
        }
    }

    /// The attention of a pass that keeps nothing for backward (evaluation): per (head, stream),
    /// blocks of query rows go through content and position scores, softmax and the value read
    /// in a scratch that stays in cache, and only over the keys the block's rows can see (the
    /// masked future is neither computed nor stored), through `attendRows` as a training
    /// pass's segment, whose full score matrices its backward pass needs.
    ///
    /// `positionKeys` is [HD, positionKeyRows] in reverse distance (column c: distance
    /// positionKeyRows-1-c). A block of `rows` queries from `first` multiplies the last
    /// `columns = M + first + rows` of those columns.
    private func attendInBlocks(
        contentQuery qc: UnsafePointer<Float>, positionQuery qp: UnsafePointer<Float>,
        keyValues kv: UnsafePointer<Float>, keyValueStride kvStride: Int, positionKeys rk: UnsafePointer<Float>,
        positionKeyRows: Int, batch b: Int, queryLength t: Int, memoryLength m: Int, keyCapacity sMax: Int,
        scale scaleValue: Float, output out: UnsafeMutablePointer<Float>
    ) {
        let h = config.heads, dh = config.headSize, hd = h * dh
        let rowBlock = Self.evaluationRowBlock
        let lanes = scratch.lanes(tasks: h * b, floatsPerLane: 2 * rowBlock * sMax)
        let qcS = SendablePointer(qc), qpS = SendablePointer(qp), kvS = SendablePointer(kv)
        let rkS = SendablePointer(rk), outS = SendablePointer(out)
        parallelForLanes(h * b, lanes: lanes.count) { lane, task in
            let head = task / b, item = task % b
            let keys = kvS.pointer + item * kvStride * 2 * hd + head * 2 * dh
            let scores = lanes.block(lane)
            let positions = scores + rowBlock * sMax
            var first = 0
            while first < t {
                let rows = min(rowBlock, t - first), columns = m + first + rows
                withUnsafeTemporaryAllocation(of: Float.self, capacity: rows) { inverseSums in
                    // In place: each row of `scores` ends up holding the unnormalised exponentials.
                    Self.attendRows(
                        first: first, rows: rows, memoryLength: m, headSize: dh, scale: scaleValue,
                        contentQuery: qcS.pointer + (item * t + first) * hd + head * dh,
                        positionQuery: qpS.pointer + (item * t + first) * hd + head * dh, queryStride: hd,
                        keys: keys, keyStride: 2 * hd,
                        positionKeys: rkS.pointer + head * dh * positionKeyRows + (positionKeyRows - columns),
                        positionKeyStride: positionKeyRows,
                        scores: scores, positions: positions, probabilities: scores,
                        rowMaximum: nil, rowInverseSum: inverseSums.baseAddress!,
                        output: outS.mutable + (item * t + first) * hd + head * dh, outputStride: hd)
                }
                first += rows
            }
        }
    }

    /// Content and position scores, softmax and value read of one (head, stream)'s `rows`
    /// queries from `first`, over the `columns = M + first + rows` keys the last of them can
    /// see: a training pass's whole segment, or a block of a pass without backward. Query r
    /// sees keys 0 ... M + first + r (the rest of its row is neither computed nor read) and
    /// finds key j's distance M+first+r-j in column rows-1-r+j of its row of `positions`.
    ///
    /// The queries start at the block's first row; `keys` at the head's first key, its values
    /// `headSize` further on; `positionKeys` at the head's rows of the transposed keys in
    /// reverse distance, column 0 holding distance columns-1. `scores` gets the raw scores and
    /// `probabilities` the unnormalised exponentials (the same buffer where raw scores are not
    /// kept), both with row stride `columns`; each output row is scaled by 1/sum after the
    /// value read (D multiplications where the row has up to S), and the row statistics are
    /// written to `rowMaximum` (if given) and `rowInverseSum`.
    @inline(__always)
    static func attendRows(
        first: Int, rows: Int, memoryLength m: Int, headSize dh: Int, scale: Float,
        contentQuery: UnsafePointer<Float>, positionQuery: UnsafePointer<Float>, queryStride: Int,
        keys: UnsafePointer<Float>, keyStride: Int,
        positionKeys: UnsafePointer<Float>, positionKeyStride: Int,
        scores: UnsafeMutablePointer<Float>, positions: UnsafeMutablePointer<Float>,
        probabilities: UnsafeMutablePointer<Float>,
        rowMaximum: UnsafeMutablePointer<Float>?, rowInverseSum: UnsafeMutablePointer<Float>,
        output: UnsafeMutablePointer<Float>, outputStride: Int
    ) {
        let columns = m + first + rows
        panelOrBLASGemm(m: rows, n: columns, k: dh, a: contentQuery, lda: queryStride, b: keys, ldb: keyStride,
                        transposeB: true, beta: 0, c: scores, ldc: columns, outputs: .upTo(offset: m + first))
        panelOrBLASGemm(m: rows, n: columns, k: dh, a: positionQuery, lda: queryStride, b: positionKeys,
                        ldb: positionKeyStride, beta: 0, c: positions, ldc: columns, outputs: .from(offset: rows - 1))
        for r in 0..<rows {
            let visible = m + first + r + 1
            let probabilityRow = probabilities + r * columns
            let rowMaxValue = addPositionsAndScale(
                scores + r * columns, positions + r * columns + (rows - 1 - r), scale: scale,
                into: probabilityRow, count: visible)
            let total = expInPlace(probabilityRow, count: visible, minus: rowMaxValue)
            (probabilityRow + visible).update(repeating: 0, count: columns - visible)
            rowMaximum?[r] = rowMaxValue
            rowInverseSum[r] = 1 / total
        }
        panelOrBLASGemm(m: rows, n: dh, k: columns, a: probabilities, lda: columns, b: keys + dh, ldb: keyStride,
                        beta: 0, c: output, ldc: outputStride, zeros: .after(offset: m + first))
        for r in 0..<rows { Tensor.scale(output + r * outputStride, by: rowInverseSum[r], count: dh) }
    }

    /// Declares every buffer of a pass over `pass.batch` streams of `pass.length` queries and up
    /// to `pass.keyLength` keys (a full memory), backward buffers for a training pass.
    public func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        let (b, t, s) = (pass.batch, pass.length, pass.keyLength)
        let h = config.heads, hd = config.heads * config.headSize, d = width
        plan.declare(queryInput, "attention query rows", count: b * t * d)
        plan.declare(contentQuery, "attention q + u", count: b * t * hd)
        plan.declare(positionQuery, "attention q + v", count: b * t * hd)
        plan.declare(keyValues, "attention keys and values", count: b * s * 2 * hd)
        plan.declare(positionTable, "attention sinusoid table", count: s * d)
        plan.declare(positionKeys, "attention position keys", count: s * hd)
        plan.declare(merged, "attention merged heads", count: b * t * hd)
        let lanes = parallelLanes(for: h * b)
        guard pass.training else {
            scratch.declareLanes(lanes, floatsPerLane: 2 * Self.evaluationRowBlock * s, in: &plan)
            return
        }
        plan.declare(reversedPositionTable, "attention sinusoid table, reversed", count: s * d)
        plan.declare(rawScores, "attention raw scores", count: h * b * t * s)
        plan.declare(rowMaximum, "attention softmax maxima", count: h * b * t)
        plan.declare(rowInverseSum, "attention softmax 1/sums", count: h * b * t)
        scratch.declareLanes(lanes, floatsPerLane: 2 * t * s, in: &plan)
        plan.declare(scratch.positionScores, "attention position-score gradient (shared)", count: h * b * t * s)
        plan.declare(dMerged, "attention merged-heads gradient", count: b * t * hd)
        plan.declare(dKeyValues, "attention key and value gradient", count: b * s * 2 * hd)
        plan.declare(dQuery, "attention query gradient", count: b * t * hd)
        plan.declare(dPositionKeys, "attention position-key gradient", count: s * hd)
        plan.declare(dScalePartial, "attention scale partial gradients", count: h * b)
        plan.declare(dPositionBiasRows, "attention position-bias column sums", count: h * s)
        Ones.shared.declare(count: b * t, in: &plan)
    }

    /// Matrix-product FLOPs per query token of a forward pass over segments of `length` with
    /// `keyLength` keys per stream and `batch` streams: the query and output projections, the
    /// key/value projection of every key row, the position keys once per pass, and the content
    /// scores, position scores and value read over the keys. With `reusesProjections` (an
    /// evaluation pass over a full memory, see `Reuse`) only the current rows are projected to
    /// keys and values, and the position keys are computed once per evaluation.
    public func forwardFLOPs(batch b: Int, length t: Int, keyLength s: Int, reusesProjections: Bool = false) -> Double {
        let hd = config.heads * config.headSize, d = width
        let projectedRows = reusesProjections ? t : s
        let positionKeys = reusesProjections ? 0 : 2.0 * Double(hd * d) * Double(s) / Double(b * t)
        return 2.0 * Double(hd * d) * 2 + 4.0 * Double(hd * d) * Double(projectedRows) / Double(t)
            + positionKeys + 3 * 2.0 * Double(s * hd)
    }

    /// Leaves the keys and values of the last `keep` rows per stream of the last forward pass
    /// at the start of each stream's rows of `destination`, [B, stride, 2HD] (an evaluation
    /// memory's projections): moved there when that pass projected into `destination` itself,
    /// copied otherwise.
    public func saveKeyValues(into destination: UnsafeMutablePointer<Float>, stride: Int, keep: Int) {
        let (b, t, m) = saved
        let s = m + t, width = 2 * config.heads * config.headSize
        precondition(keep <= s && keep <= stride)
        let source: UnsafeMutablePointer<Float>, sourceStride: Int
        if let (rows, rowsStride) = lastKeyValues {
            precondition(rows == destination && rowsStride == stride, "keys and values saved into another memory")
            (source, sourceStride) = (rows, rowsStride)
        } else {
            (source, sourceStride) = (keyValues.pointer, s)
        }
        let to = SendablePointer(destination), from = SendablePointer(source)
        parallelFor(b) { item in
            // Overlapping when moved within one stream's rows: memmove.
            memmove(to.mutable + item * stride * width, from.pointer + (item * sourceStride + s - keep) * width,
                    keep * width * MemoryLayout<Float>.size)
        }
    }

    /// Recomputes the softmax of one (head, batch) block from the saved raw scores and row
    /// statistics: the exponentials exactly as `forward` computed them (scale, subtract the
    /// maximum, `exp16` over blocks of 16 from the row's start, then `exp1`), times the 1/sum
    /// that `forward` applied to the head's output rows instead, in one pass per row.
    @inline(__always)
    static func recomputeProbabilities(
        raw: UnsafePointer<Float>, rowMaximum: UnsafePointer<Float>,
        rowInverseSum: UnsafePointer<Float>, queryLength t: Int, memoryLength m: Int,
        scaleValue: Float, into p: UnsafeMutablePointer<Float>
    ) {
        let s = m + t
        for i in 0..<t {
            let visible = m + i + 1
            let row = p + i * s, rawRow = raw + i * s
            let shift = rowMaximum[i], inverse = rowInverseSum[i]
            var j = 0
            while j + 16 <= visible {
                store16(exp16(scaleValue * load16(rawRow + j) - SIMD16(repeating: shift)) * inverse, row + j)
                j += 16
            }
            while j < visible {
                row[j] = exp1(scaleValue * rawRow[j] - shift) * inverse
                j += 1
            }
            for j in visible..<s { row[j] = 0 }
        }
    }

    /// One row of a training pass's scores: `raw += positions` (the shifted position scores),
    /// `p = scale * raw`; returns `max(p)`. One pass where four were (add, copy, scale, max),
    /// with the same operations per entry, so the probabilities keep their bits.
    @inline(__always)
    static func addPositionsAndScale(
        _ raw: UnsafeMutablePointer<Float>, _ positions: UnsafePointer<Float>, scale: Float,
        into p: UnsafeMutablePointer<Float>, count: Int
    ) -> Float {
        var best = SIMD16<Float>(repeating: -.infinity)
        var j = 0
        while j + 16 <= count {
            let score = load16(raw + j) + load16(positions + j)
            store16(score, raw + j)
            let scaled = scale * score
            store16(scaled, p + j)
            best.replace(with: scaled, where: scaled .> best)
            j += 16
        }
        var result = best.max()
        while j < count {
            let score = raw[j] + positions[j]
            raw[j] = score
            p[j] = scale * score
            result = Swift.max(result, p[j])
            j += 1
        }
        return result
    }

    /// One row of the softmax backward, in one pass where four were: `v = p * (g - inner)` (the
    /// logit gradient), `g = scale * v` (the raw scores' gradient, also written to
    /// `positions`, the shifted position-score gradient); returns `sum(v * raw)`, the scale's
    /// gradient, summed in the order of `dot`.
    @inline(__always)
    static func softmaxBackwardRow(
        _ g: UnsafeMutablePointer<Float>, probabilities p: UnsafePointer<Float>, raw: UnsafePointer<Float>,
        inner: Float, scale: Float, positions: UnsafeMutablePointer<Float>, count: Int
    ) -> Float {
        @inline(__always) func block(_ j: Int) -> SIMD16<Float> {
            let logit = load16(p + j) * (load16(g + j) - SIMD16(repeating: inner))
            let scaled = scale * logit
            store16(scaled, g + j)
            store16(scaled, positions + j)
            return logit * load16(raw + j)
        }
        var even = SIMD16<Float>(), odd = SIMD16<Float>()
        var j = 0
        while j + 32 <= count {
            even += block(j)
            odd += block(j + 16)
            j += 32
        }
        if j + 16 <= count {
            even += block(j)
            j += 16
        }
        var total = (even + odd).sum()
        while j < count {
            let logit = p[j] * (g[j] - inner)
            total += logit * raw[j]
            g[j] = scale * logit
            positions[j] = g[j]
            j += 1
        }
        return total
    }

    /// Accumulates all parameter gradients and `dx += dL/dx` for the whole input
    /// [B, S, d] (memory rows included: their gradient reaches the layer norm's parameters).
    public func backward(
        _ x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>,
        dInput dx: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        precondition(savedForBackward, "backward after a forward pass that reused projections")
        let (b, t, m) = saved
        let s = m + t, d = width, h = config.heads, dh = config.headSize, hd = h * dh
        let scaleValue = arena.value(scoreScale)[0]

        // Output projection. Every parameter gradient sums over the streams of each gradient
        // group apart (the groups are contiguous runs of streams; see ParameterArena).
        let groups = arena.gradientGroups
        gemmOverRowGroups(
            groups, m: d, n: hd, rows: b * t, a: dy, lda: d, b: merged.pointer, ldb: hd,
            gradient: { arena.gradient(output, group: $0) }, ldc: hd)
        let dOut = dMerged.reserved(b * t * hd)
        gemmInRowGroups(arena.gradientGroups, m: b * t, n: hd, k: d, a: dy, lda: d, b: arena.value(output), ldb: hd,
             beta: 0, c: dOut, ldc: hd)

        let dbd = SendablePointer(scratch.positionScores.reserved(h * b * t * s))
        let dkv = SendablePointer(dKeyValues.reserved(b * s * 2 * hd))
        let dq = SendablePointer(dQuery.reserved(b * t * hd))
        let dsPartial = SendablePointer(dScalePartial.reserved(h * b))
        let raw = SendablePointer(rawScores.pointer)
        let kv = SendablePointer(keyValues.pointer), qc = SendablePointer(contentQuery.pointer)
        let dOutS = SendablePointer(dOut), mergedS = SendablePointer(merged.pointer)
        let rowMax = SendablePointer(rowMaximum.pointer), rowInv = SendablePointer(rowInverseSum.pointer)
        // The probabilities and their gradient are needed only while a task runs: its thread's
        // lane of the scratch (as in `forward`).
        let lanes = scratch.lanes(tasks: h * b, floatsPerLane: 2 * t * s)
        parallelForLanes(h * b, lanes: lanes.count) { lane, task in
            let head = task / b, item = task % b
            let block = task * t * s
            let p = lanes.block(lane), g = p + t * s
            Self.recomputeProbabilities(
                raw: raw.pointer + block, rowMaximum: rowMax.pointer + task * t,
                rowInverseSum: rowInv.pointer + task * t, queryLength: t, memoryLength: m,
                scaleValue: scaleValue, into: p)
            let keys = kv.pointer + item * s * 2 * hd + head * 2 * dh
            let dKeys = dkv.mutable + item * s * 2 * hd + head * 2 * dh
            let dHead = dOutS.pointer + item * t * hd + head * dh
            // dP = dO V^T; dV = P^T dO.
            panelOrBLASGemm(m: t, n: s, k: dh, a: dHead, lda: hd, b: keys + dh, ldb: 2 * hd, transposeB: true,
                            beta: 0, c: g, ldc: s, outputs: .upTo(offset: m))
            panelOrBLASGemm(transposeA: true, m: s, n: dh, k: t, a: p, lda: s, b: dHead, ldb: hd,
                            beta: 0, c: dKeys + dh, ldc: 2 * hd, zeros: .before(offset: m))
            // Softmax backward, d(scale), then d(raw) = scale * d(logit).
            var dScale: Float = 0
            let headOutput = mergedS.pointer + item * t * hd + head * dh
            for i in 0..<t {
                let visible = m + i + 1
                let gRow = g + i * s, pRow = p + i * s
                // sum_j dP_ij P_ij = dO_i . (sum_j P_ij V_j) = dO_i . O_i: D terms instead of S.
                let inner = dot(dHead + i * hd, headOutput + i * hd, count: dh)
                // Position part: key j is column T-1-i+j of this row of bd (reverse distance);
                // the columns before belong to the future.
                let positions = dbd.mutable + (head * b * t + item * t + i) * s
                positions.update(repeating: 0, count: t - 1 - i)
                dScale += Self.softmaxBackwardRow(
                    gRow, probabilities: pRow, raw: raw.pointer + block + i * s, inner: inner,
                    scale: scaleValue, positions: positions + (t - 1 - i), count: visible)
                for j in visible..<s { gRow[j] = 0 }
            }
            dsPartial.mutable[task] = dScale
            // Content part: dK = dRaw^T (q + u); d(q + u) = dRaw K.
            panelOrBLASGemm(transposeA: true, m: s, n: dh, k: t, a: g, lda: s,
                            b: qc.pointer + item * t * hd + head * dh, ldb: hd,
                            beta: 0, c: dKeys, ldc: 2 * hd, zeros: .before(offset: m))
            panelOrBLASGemm(m: t, n: dh, k: s, a: g, lda: s, b: keys, ldb: 2 * hd,
                            beta: 0, c: dq.mutable + item * t * hd + head * dh, ldc: hd, zeros: .after(offset: m))
        }
        for group in 0..<groups {
            var dScaleTotal: Float = 0
            for head in 0..<h {
                for item in arena.rows(ofGroup: group, in: b) { dScaleTotal += dsPartial.pointer[head * b + item] }
            }
            arena.gradient(scoreScale, group: group)[0] += dScaleTotal
            // u collects the content-query gradient before the position part is added to dq.
            let part = arena.rows(ofGroup: group, in: b * t)
            addColumnSums(
                arena.gradient(contentBias, group: group), of: dq.pointer + part.lowerBound * hd,
                rows: part.count, columns: hd, rowStride: hd)
        }

        // Position part per head over all B*T rows (dbd, rk and d rk in reverse distance, as
        // the forward pass left them, rk transposed, and the reversed table for Wr's gradient):
        //   d(q + v) = dbd rk,  d rk = dbd^T (q + v),  dv = (column sums of dbd) rk.
        let rk = SendablePointer(positionKeys.pointer), qp = SendablePointer(positionQuery.pointer)
        let drk = SendablePointer(dPositionKeys.reserved(s * hd))
        let dvRows = SendablePointer(dPositionBiasRows.reserved(h * s))
        let ones = SendablePointer(Ones.shared.pointer(count: b * t))
        // One item per (head, gradient group): the products `gemmInRowGroups` would make, as
        // twice as many items as heads, so the threads finish together.
        parallelFor(h * groups) { task in
            let head = task / groups, part = rowsOfGroup(task % groups, of: groups, in: b * t)
            panelOrBLASGemm(m: part.count, n: dh, k: s, a: dbd.pointer + (head * b * t + part.lowerBound) * s, lda: s,
                            b: rk.pointer + head * dh * s, ldb: s, transposeB: true,
                            beta: 1, c: dq.mutable + part.lowerBound * hd + head * dh, ldc: hd)
        }
        for group in 0..<groups {
            let part = arena.rows(ofGroup: group, in: b * t)
            let dvGrad = SendablePointer(arena.gradient(positionBias, group: group))
            parallelFor(h) { head in
                let block = dbd.pointer + head * b * t * s + part.lowerBound * s
                panelOrBLASGemm(transposeA: true, m: s, n: dh, k: part.count, a: block, lda: s,
                                b: qp.pointer + part.lowerBound * hd + head * dh, ldb: hd,
                                beta: 0, c: drk.mutable + head * dh, ldc: hd)
                let columnSums = dvRows.mutable + head * s
                gemv(transpose: true, rows: part.count, columns: s, a: block, lda: s, x: ones.pointer,
                     beta: 0, y: columnSums)
                gemv(rows: dh, columns: s, a: rk.pointer + head * dh * s, lda: s,
                     x: columnSums, beta: 1, y: dvGrad.mutable + head * dh)
            }
            gemm(transposeA: true, m: hd, n: d, k: s, a: drk.pointer, lda: hd,
                 b: reversedPositionTable.pointer, ldb: d, beta: 1, c: arena.gradient(position, group: group), ldc: d)
        }

        // Query projection: dWq += dq^T yq; dx[query rows] += dq Wq.
        gemmOverRowGroups(
            groups, m: hd, n: d, rows: b * t, a: dq.pointer, lda: hd, b: queryInput.pointer, ldb: d,
            gradient: { arena.gradient(query, group: $0) }, ldc: d)
        for item in 0..<b {
            gemm(m: t, n: d, k: hd, a: dq.pointer + item * t * hd, lda: hd,
                 b: arena.value(query), ldb: d, beta: 1, c: dx + (item * s + m) * d, ldc: d)
        }
        // Key/value projection over all S rows.
        gemmOverRowGroups(
            groups, m: 2 * hd, n: d, rows: b * s, a: dkv.pointer, lda: 2 * hd, b: x, ldb: d,
            gradient: { arena.gradient(keyValue, group: $0) }, ldc: d)
        gemmInRowGroups(arena.gradientGroups, m: b * s, n: d, k: 2 * hd, a: dkv.pointer, lda: 2 * hd,
             b: arena.value(keyValue), ldb: d, beta: 1, c: dx, ldc: d)
    }
}

/// Scratch shared by all attention layers of a model: needed only while one layer runs.
public final class AttentionScratch {
    /// One lane per thread (`parallelForLanes`), holding two score blocks of the (head,
    /// stream) task it runs: position scores and probabilities (training forward), the
    /// probabilities and their gradient (backward), or a block of rows' scores and position
    /// scores (a pass without backward).
    let laneBlocks = FloatBuffer()
    let positionScores = FloatBuffer()  // [H, B*T, S], the position-score gradient
    public init() {}

    func declareLanes(_ lanes: Int, floatsPerLane: Int, in plan: inout BufferPlan) {
        plan.declare(laneBlocks, "attention score blocks, one per thread (shared)", count: lanes * floatsPerLane)
    }

    /// The lanes for `tasks` tasks: as many as were declared, at most one per thread.
    func lanes(tasks: Int, floatsPerLane: Int) -> Lanes {
        let count = max(1, min(parallelLanes(for: tasks), laneBlocks.capacity / max(1, floatsPerLane)))
        return Lanes(count: count, floatsPerLane: floatsPerLane, base: SendablePointer(laneBlocks.reserved(count * floatsPerLane)))
    }

    /// `count` lanes of `floatsPerLane` floats each, for the tasks of one `parallelForLanes`.
    struct Lanes: Sendable {
        let count: Int, floatsPerLane: Int
        let base: SendablePointer<Float>

        func block(_ lane: Int) -> UnsafeMutablePointer<Float> { base.mutable + lane * floatsPerLane }
    }
}
