import Foundation
import Synchronization
import Testing
import Tensor

/// `parallelFor` on the persistent worker pool: every index exactly once in every region, no
/// more threads than `Threads.count`, workers woken after they have gone to sleep, and regions
/// started from two threads at once, or from inside a region, still complete.
@Suite(.serialized) struct WorkerPoolTests {
    /// Runs `parallelFor(count)`, recording how often each index ran and on which thread.
    private static func region(_ count: Int) -> (visits: [Int], threads: Set<UInt>) {
        let visits = UnsafeMutablePointer<Int>.allocate(capacity: max(1, count))
        let threads = UnsafeMutablePointer<UInt>.allocate(capacity: max(1, count))
        defer {
            visits.deallocate()
            threads.deallocate()
        }
        visits.initialize(repeating: 0, count: max(1, count))
        let v = SendablePointer(visits), t = SendablePointer(threads)
        parallelFor(count) { i in
            v.mutable[i] += 1
            t.mutable[i] = UInt(pthread_self())
        }
        return (Array(UnsafeBufferPointer(start: visits, count: count)), Set(UnsafeBufferPointer(start: threads, count: count)))
    }

    @Test func everyIndexRunsOnceInThousandsOfRegions() {
        defer { Threads.configure(1) }
        // More threads than this machine may have cores, then fewer: started workers that
        // are not wanted must stay out.
        for threads in [3, 2, 1, 2] {
            Threads.configure(threads)
            for r in 0..<600 {
                let count = [0, 1, 2, 3, 7, 64, 1000][r % 7]
                let (visits, used) = Self.region(count)
                #expect(visits.allSatisfy { $0 == 1 }, "threads \(threads), region \(r), count \(count)")
                #expect(used.count <= threads, "threads \(threads): \(used.count) threads ran one region")
            }
        }
    }

    /// `parallelForLanes`: every item once, lanes below the bound, and never two items at
    /// once on one lane (each lane's scratch is used by one item at a time).
    @Test func laneItemsRunOnceAndNeverShareALaneAtOnce() {
        defer { Threads.configure(1) }
        for threads in [1, 2, 3] {
            Threads.configure(threads)
            for count in [0, 1, 2, 5, 64, 257] {
                let lanes = parallelLanes(for: count)
                #expect(lanes == max(1, min(threads, count)))
                let visits = UnsafeMutablePointer<Int>.allocate(capacity: max(1, count))
                defer { visits.deallocate() }
                visits.initialize(repeating: 0, count: max(1, count))
                let v = SendablePointer(visits)
                // Bit `lane` of `busy` is set while an item runs on that lane.
                let busy = Atomic<Int>(0), overlaps = Atomic<Int>(0), outOfRange = Atomic<Int>(0)
                parallelForLanes(count, lanes: lanes) { lane, item in
                    guard lane >= 0 && lane < lanes else {
                        outOfRange.wrappingAdd(1, ordering: .relaxed)
                        return
                    }
                    if busy.bitwiseOr(1 << lane, ordering: .acquiring).oldValue & (1 << lane) != 0 {
                        overlaps.wrappingAdd(1, ordering: .relaxed)
                    }
                    v.mutable[item] += 1
                    for _ in 0..<200 { _ = busy.load(ordering: .relaxed) }
                    busy.bitwiseAnd(~(1 << lane), ordering: .releasing)
                }
                #expect((0..<count).allSatisfy { visits[$0] == 1 }, "threads \(threads), count \(count)")
                #expect(overlaps.load(ordering: .relaxed) == 0 && outOfRange.load(ordering: .relaxed) == 0)
            }
        }
    }

    @Test func sleepingWorkersWakeForTheNextRegion() {
        Threads.configure(2)
        defer { Threads.configure(1) }
        for _ in 0..<5 {
            // Longer than a worker spins before it sleeps.
            usleep(20_000)
            let (visits, _) = Self.region(257)
            #expect(visits.allSatisfy { $0 == 1 })
        }
    }

    @Test func regionsFromTwoThreadsAndNestedRegionsComplete() {
        Threads.configure(2)
        defer { Threads.configure(1) }
        let failures = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            for _ in 0..<300 {
                let (visits, _) = Self.region(100)
                if !visits.allSatisfy({ $0 == 1 }) { failures.wrappingAdd(1, ordering: .relaxed) }
            }
        }
        #expect(failures.load(ordering: .relaxed) == 0)
        // A region inside a region runs its items on the calling worker.
        let total = Atomic<Int>(0)
        parallelFor(8) { _ in
            parallelFor(10) { _ in total.wrappingAdd(1, ordering: .relaxed) }
        }
        #expect(total.load(ordering: .relaxed) == 80)
    }
}
