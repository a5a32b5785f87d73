/// The processes of a data-parallel job and the reductions a training step needs across them.
///
/// Every rank holds the whole model and runs a contiguous share of the batch's streams; every
/// quantity that one process would reduce over the batch (the loss normaliser, the σ-MoE
/// regulariser's column statistics, Switch's balancing statistics, batch-norm statistics,
/// gradients, usage counts) is reduced across ranks with these calls, so that a step under N
/// ranks computes what one process computes on the whole batch. Every rank makes the same
/// calls in the same order (they are collective). A single process is `SingleProcess`: rank 0
/// of 1, and every call returns at once. The MPI implementation is in the `Distributed` target.
public protocol Collective: AnyObject, Sendable {
    /// This process's index, 0 ..< size.
    var rank: Int { get }
    /// Processes in the job.
    var size: Int { get }
    /// values = sum over ranks of values, in place, the same on every rank.
    func allReduceSum(_ values: UnsafeMutablePointer<Float>, count: Int)
    /// values = sum over ranks of values, in place.
    func allReduceSum(_ values: UnsafeMutablePointer<Double>, count: Int)
    /// values = maximum over ranks of values, in place.
    func allReduceMax(_ values: UnsafeMutablePointer<Double>, count: Int)
    /// Every rank's `count` values, rank after rank, into `output` ([size * count]) on every rank.
    func allGather(_ values: UnsafePointer<Float>, count: Int, into output: UnsafeMutablePointer<Float>)
    /// Rank 0's `count` bytes at `bytes` on every rank.
    func broadcast(_ bytes: UnsafeMutableRawPointer, count: Int)
    /// Waits until every rank has reached this call.
    func barrier()
}

extension Collective {
    /// Whether more than one process takes part.
    public var isDistributed: Bool { size > 1 }

    /// The sums over ranks of `values`.
    public func sum(_ values: [Double]) -> [Double] {
        guard isDistributed else { return values }
        var copy = values
        copy.withUnsafeMutableBufferPointer { allReduceSum($0.baseAddress!, count: $0.count) }
        return copy
    }

    /// The sum over ranks of an integer count (exact below 2^53).
    public func sum(_ value: Int) -> Int { Int(sum([Double(value)])[0]) }

    /// The maxima over ranks of `values`.
    public func maximum(_ values: [Double]) -> [Double] {
        guard isDistributed else { return values }
        var copy = values
        copy.withUnsafeMutableBufferPointer { allReduceMax($0.baseAddress!, count: $0.count) }
        return copy
    }

    /// Rank 0's `text` on every rank (what the others pass is ignored).
    public func broadcast(_ text: String) -> String {
        guard isDistributed else { return text }
        var length = [Double(rank == 0 ? text.utf8.count : 0)]
        length = sum(length)
        var bytes = rank == 0 ? Array(text.utf8) : [UInt8](repeating: 0, count: Int(length[0]))
        if !bytes.isEmpty { bytes.withUnsafeMutableBytes { broadcast($0.baseAddress!, count: $0.count) } }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whether a pairwise sum in rank order needs a gather: for a power of two above 2. Two
    /// ranks add two numbers, which MPI's own sum gives in either order with the same bits.
    private var gathersToAddPairwise: Bool { size > 2 && size & (size - 1) == 0 }

    /// values = the sum over ranks, added pairwise in rank order when the size is a power of
    /// two (then the same bits as one process summing the ranks' groups), else by the MPI
    /// library's own order.
    public func allReduceSumPairwise(_ values: UnsafeMutablePointer<Float>, count: Int) {
        guard gathersToAddPairwise else { return allReduceSum(values, count: count) }
        let chunk = 1 << 20
        let gathered = UnsafeMutablePointer<Float>.allocate(capacity: size * min(chunk, count))
        defer { gathered.deallocate() }
        var start = 0
        while start < count {
            let length = min(chunk, count - start)
            allGather(values + start, count: length, into: gathered)
            addRunsPairwise(gathered, parts: size, length: length)
            (values + start).update(from: gathered, count: length)
            start += length
        }
    }

    /// The sums over ranks of `values`, added like `allReduceSumPairwise`.
    public func sumPairwise(_ values: [Double]) -> [Double] {
        guard gathersToAddPairwise else { return sum(values) }
        // Doubles travel as pairs of floats: the gather copies bits, it adds nothing.
        let bits = values.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let gathered = gather(bits)
        return gathered.withUnsafeBytes { raw in
            let all = raw.bindMemory(to: Double.self)
            return Tensor.addPairwise((0..<size).map { Array(all[($0 * values.count)..<(($0 + 1) * values.count)]) })
        }
    }

    /// Whether `flag` holds on any rank.
    public func any(_ flag: Bool) -> Bool {
        guard isDistributed else { return flag }
        return maximum([flag ? 1 : 0])[0] > 0
    }

    /// Every rank's `values` (the same count on each), rank after rank.
    public func gather(_ values: [Float]) -> [Float] {
        guard isDistributed else { return values }
        var output = [Float](repeating: 0, count: values.count * size)
        values.withUnsafeBufferPointer { local in
            output.withUnsafeMutableBufferPointer {
                allGather(local.baseAddress!, count: values.count, into: $0.baseAddress!)
            }
        }
        return output
    }
}

/// A job of one process: rank 0 of 1; every reduction is the identity.
public final class SingleProcess: Collective {
    public static let shared = SingleProcess()
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allReduceSum(_ values: UnsafeMutablePointer<Float>, count: Int) {}
    public func allReduceSum(_ values: UnsafeMutablePointer<Double>, count: Int) {}
    public func allReduceMax(_ values: UnsafeMutablePointer<Double>, count: Int) {}
    public func allGather(_ values: UnsafePointer<Float>, count: Int, into output: UnsafeMutablePointer<Float>) {
        output.update(from: values, count: count)
    }
    public func broadcast(_ bytes: UnsafeMutableRawPointer, count: Int) {}
    public func barrier() {}
}

/// The streams (batch rows) one rank runs: a contiguous share of the global batch's streams.
public struct StreamShard: Sendable, Equatable {
    /// Streams of the whole batch (all ranks).
    public var globalBatch: Int
    /// Global index of this rank's first stream.
    public var first: Int
    /// Streams this rank runs.
    public var count: Int

    /// Rank `rank` of `ranks` runs streams floor(rank B / N) ..< floor((rank + 1) B / N): B/N
    /// each when N divides B (which carried state needs), otherwise shares differing by one.
    public init(globalBatch: Int, rank: Int, ranks: Int) {
        precondition(ranks > 0 && (0..<ranks).contains(rank), "rank \(rank) of \(ranks)")
        self.globalBatch = globalBatch
        first = rank * globalBatch / ranks
        count = (rank + 1) * globalBatch / ranks - first
    }
}

/// The additions of a pairwise sum of `parts` terms in order, ((p0 + p1) + (p2 + p3)) + ...:
/// `add(target, source)` means p[target] += p[source], and p[0] ends as the sum. The one order
/// of every sum over gradient groups and ranks (`ParameterArena.sumGradientGroups`).
public func forEachPairwiseAddition(parts: Int, _ add: (_ target: Int, _ source: Int) -> Void) {
    var width = 1
    while width < parts {
        for first in stride(from: 0, to: parts - width, by: 2 * width) { add(first, first + width) }
        width *= 2
    }
}

/// The element-wise sum of `parts` (equal lengths), added pairwise in order.
public func addPairwise(_ parts: [[Double]]) -> [Double] {
    var parts = parts
    forEachPairwiseAddition(parts: parts.count) { target, source in
        for i in parts[target].indices { parts[target][i] += parts[source][i] }
    }
    return parts.first ?? []
}

/// The first of `parts` consecutive runs of `length` floats at `values` becomes their sum,
/// added pairwise in order; the other runs are left holding partial sums.
public func addRunsPairwise(_ values: UnsafeMutablePointer<Float>, parts: Int, length: Int) {
    forEachPairwiseAddition(parts: parts) { target, source in
        addInPlace(values + target * length, values + source * length, count: length)
    }
}
