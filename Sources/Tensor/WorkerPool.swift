import CBLAS
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The threads behind `parallelFor`: `Threads.count - 1` persistent workers and the calling
/// thread, which takes part in every region.
///
/// Why not `DispatchQueue.concurrentPerform`: a training step of the formal-language models runs
/// about a hundred parallel regions of a few hundred microseconds each, and Dispatch puts its
/// worker to sleep between them; waking it again cost tens of microseconds per region on these
/// virtual machines (1 -> 2 threads gave 1.4x on the linear Transformer's step). Here a worker
/// that finishes a region spins (with the processor's pause hint) for `spinNanoseconds` waiting
/// for the next one, and only then sleeps on a condition variable. The schedule never changes a
/// result: indices are claimed from one counter, each runs exactly once, and every caller's
/// items write disjoint outputs.
///
/// One region runs at a time. A `parallelFor` from inside a region, or from another thread
/// while one is running, runs its items itself, in order.
final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool()

    /// How long an idle worker polls for the next region before it sleeps: longer than the
    /// serial stretches inside a training step (copies, the loss, small products), so a worker
    /// sleeps only between steps. With 0.5 ms, workers of the linear Transformer's step were
    /// found asleep in a fifth of the samples of /proc/PID/task/TID/stat.
    static let spinNanoseconds: UInt64 = 5_000_000

    /// A region's serial number (above bit 16) and how many workers take part in it (below):
    /// one atomic value, so a worker that sees a new region also sees whether it is wanted.
    /// Published to start a region; workers wait for it to change.
    private let generation = Atomic<Int>(0)
    /// The next unclaimed index of the running region.
    private let next = Atomic<Int>(0)
    /// Workers of the running region that have not finished.
    private let unfinished = Atomic<Int>(0)
    /// Whether a region is running (`parallelFor` from a second thread then runs serially).
    private let busy = Atomic<Bool>(false)

    // Written by the thread that owns `busy` before it publishes `generation` (release), read by
    // workers after they see the new generation (acquire).
    nonisolated(unsafe) private var body: (@Sendable (Int) -> Void)?
    nonisolated(unsafe) private var count = 0
    /// Workers started so far (only the owner of `busy` starts more).
    nonisolated(unsafe) private var started = 0

    /// Sleeping workers wait on `condition`; `sleepers` is guarded by `mutex`.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    nonisolated(unsafe) private var sleepers = 0

    private init() {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    /// Whether a region is running.
    var isRunning: Bool { busy.load(ordering: .relaxed) }

    /// Runs `body(i)` for every i in 0..<count on the calling thread and `helpers` workers.
    /// Returns false, having run nothing, when another region is running.
    func run(_ count: Int, helpers: Int, _ body: @Sendable (Int) -> Void) -> Bool {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        defer { busy.store(false, ordering: .releasing) }
        startWorkers(upTo: helpers)
        withoutActuallyEscaping(body) { body in
            self.body = body
            self.count = count
            next.store(0, ordering: .relaxed)
            unfinished.store(helpers, ordering: .relaxed)
            let serial = generation.load(ordering: .relaxed) >> 16 + 1
            generation.store(serial << 16 | helpers, ordering: .releasing)
            pthread_mutex_lock(mutex)
            if sleepers > 0 { pthread_cond_broadcast(condition) }
            pthread_mutex_unlock(mutex)
            drain()
            var spins = 0
            while unfinished.load(ordering: .acquiring) != 0 {
                lmtrain_spin_pause()
                spins += 1
                // More threads than free cores: let the workers have this one.
                if spins >= 4096 { sched_yield() }
            }
            self.body = nil
        }
        return true
    }

    /// Claims and runs indices of the running region until none is left.
    private func drain() {
        guard let body else { return }
        let count = self.count
        while true {
            let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
            if i >= count { return }
            body(i)
        }
    }

    private func startWorkers(upTo helpers: Int) {
        while started < helpers {
            let argument = UnsafeMutablePointer<Int>.allocate(capacity: 2)
            argument[0] = started
            argument[1] = generation.load(ordering: .relaxed)
            var thread = pthread_t()
            let status = pthread_create(&thread, nil, { raw in
                let argument = raw!.assumingMemoryBound(to: Int.self)
                let (id, seen) = (argument[0], argument[1])
                argument.deallocate()
                WorkerPool.shared.work(id: id, seen: seen)
            }, argument)
            precondition(status == 0, "lmtrain: cannot start a worker thread (pthread_create error \(status))")
            pthread_detach(thread)
            started += 1
        }
    }

    /// A worker's life: wait for a region, take part if its id is among the participants,
    /// report, wait again.
    private func work(id: Int, seen start: Int) -> Never {
        var seen = start
        while true {
            seen = waitForRegion(after: seen)
            guard id < seen & 0xffff else { continue }
            drain()
            unfinished.wrappingSubtract(1, ordering: .releasing)
        }
    }

    /// The next generation after `seen`: spins for `spinNanoseconds`, then sleeps.
    private func waitForRegion(after seen: Int) -> Int {
        let deadline = DispatchTime.now().uptimeNanoseconds + Self.spinNanoseconds
        var spins = 0
        while true {
            let current = generation.load(ordering: .acquiring)
            if current != seen { return current }
            lmtrain_spin_pause()
            spins += 1
            if spins & 255 == 0 && DispatchTime.now().uptimeNanoseconds > deadline { break }
        }
        pthread_mutex_lock(mutex)
        sleepers += 1
        while generation.load(ordering: .acquiring) == seen { pthread_cond_wait(condition, mutex) }
        sleepers -= 1
        pthread_mutex_unlock(mutex)
        return generation.load(ordering: .acquiring)
    }
}
