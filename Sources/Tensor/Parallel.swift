import CBLAS
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A pointer that may cross into `parallelFor` bodies. This is the one audited place where
/// lmtrain tells Swift 6 that sharing raw buffers between worker threads is fine: every
/// parallel kernel writes disjoint ranges (one head, one batch row, one chunk), which the
/// kernels' own comments state.
public struct SendablePointer<Element>: @unchecked Sendable {
    public let mutable: UnsafeMutablePointer<Element>
    @inlinable public var pointer: UnsafePointer<Element> { UnsafePointer(mutable) }
    @inlinable public init(_ pointer: UnsafeMutablePointer<Element>) { mutable = pointer }
    @inlinable public init(_ pointer: UnsafePointer<Element>) {
        mutable = UnsafeMutablePointer(mutating: pointer)
    }
}

/// How many cores lmtrain uses.
///
/// OpenBLAS is set to one thread once and for all; lmtrain spreads work, large products
/// included (`gemm`), over `count` workers of `parallelFor`, so at no time do more than
/// `count` threads compute and no OpenBLAS thread pool competes with them.
public enum Threads {
    nonisolated(unsafe) public private(set) static var count: Int = 1

    /// Sets the number of compute threads (0 = all cores); OpenBLAS runs single-threaded.
    public static func configure(_ requested: Int) {
        let available = max(1, onlineCores)
        count = requested <= 0 ? available : requested
        openblas_set_num_threads(1)
    }

    /// Cores the operating system reports online.
    public static var onlineCores: Int {
        let n = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        return n > 0 ? Int(n) : 1
    }
}

/// Runs `body(i)` for every `i` in `0..<count` on up to `Threads.count` threads (the caller and
/// the persistent workers of `WorkerPool`), each taking the next unclaimed index when it
/// finishes (items of uneven cost, such as experts with different numbers of tokens, balance
/// themselves). Callers make items coarse (one head, one chunk of rows, one expert). The
/// result never depends on the number of threads or the schedule: each index runs exactly
/// once and writes only its own outputs.
public func parallelFor(_ count: Int, _ body: @Sendable (Int) -> Void) {
    let workers = min(Threads.count, count)
    // One thread, or a region already running (this is one of its items, or another thread
    // started it): the items run here, in order.
    if workers <= 1 || !WorkerPool.shared.run(count, helpers: min(workers, 0xffff) - 1, body) {
        for i in 0..<count { body(i) }
    }
}

/// `parallelFor` over items that each need a scratch while they run: `body(lane, item)` with
/// `lane < lanes`, where no two items run at once on the same lane. A lane's scratch passes
/// from one item to the next on the same thread and stays in that core's cache; a scratch per
/// item is written out to memory instead (the attention of a training pass wrote 64 MB per
/// layer so). Items are claimed in turn, as with `parallelFor`, so results do not depend on
/// which lane runs an item as long as each item overwrites what it reads of its scratch.
public func parallelForLanes(_ count: Int, lanes: Int, _ body: @Sendable (_ lane: Int, _ item: Int) -> Void) {
    let lanes = min(lanes, count)
    if lanes <= 1 {
        for item in 0..<count { body(0, item) }
        return
    }
    let next = Atomic<Int>(0)
    parallelFor(lanes) { lane in
        while true {
            let item = next.wrappingAdd(1, ordering: .relaxed).oldValue
            if item >= count { return }
            body(lane, item)
        }
    }
}

/// The lanes `parallelForLanes` can use for `count` items: one per thread.
public func parallelLanes(for count: Int) -> Int { max(1, min(Threads.count, count)) }

/// Splits `0..<total` into at most a few chunks per worker, each at least `minimumChunk`
/// long, and runs `body` on each range in parallel. For elementwise kernels.
@inlinable
public func parallelChunks(
    _ total: Int, minimumChunk: Int = 16_384, _ body: @Sendable (Range<Int>) -> Void
) {
    let chunks = max(1, min(Threads.count * 2, total / max(1, minimumChunk)))
    if chunks == 1 {
        body(0..<total)
        return
    }
    parallelFor(chunks) { chunk in
        body((chunk * total / chunks)..<((chunk + 1) * total / chunks))
    }
}

extension Threads {
    /// Whether a `parallelFor` region is running (on any thread): a product then stays on the
    /// thread that asks for it.
    @usableFromInline static var parallelRegionRunning: Bool { WorkerPool.shared.isRunning }
}

/// Asks the processor to bring `count` floats from `address` into cache ahead of their use
/// (a hint; nothing is read). For loops that walk large buffers in an order the hardware
/// prefetcher does not follow, such as stored per-step states read backwards in time.
@inline(__always)
public func prefetch(_ address: UnsafePointer<Float>, count: Int) {
    var offset = 0
    while offset < count {
        lmtrain_prefetch(address + offset)
        offset += 16
    }
}
