import Testing
import Heaps
import Tensor

/// The binary heap against sorting: random inputs with many ties, a total order (ties broken by
/// id, so the output is fully determined) and a weak one (only the keys must come out sorted),
/// the bounded "keep the best k" selection, and reuse after `removeAll`.
struct BinaryHeapTests {
    struct Item: Equatable {
        var key: Int
        var id: Int
    }

    /// Higher key first, then the lower id: a strict total order on distinct ids.
    static func precedes(_ a: Item, _ b: Item) -> Bool { a.key > b.key || (a.key == b.key && a.id < b.id) }

    /// Keys from a small range, so that most inputs hold ties.
    static func items(_ count: Int, keys: Int, rng: inout RandomGenerator) -> [Item] {
        (0..<count).map { Item(key: rng.integer(below: keys), id: $0) }
    }

    @Test func popsInSortedOrderUnderATotalOrder() {
        var rng = RandomGenerator(seed: 1)
        var heap = BinaryHeap<Item>()
        for trial in 0..<200 {
            let input = Self.items(trial % 50, keys: 1 + trial % 7, rng: &rng)
            heap.removeAll(keepingCapacity: true)
            #expect(heap.isEmpty)
            for item in input { heap.push(item, by: Self.precedes) }
            #expect(heap.count == input.count)
            var output: [Item] = []
            while let item = heap.pop(by: Self.precedes) { output.append(item) }
            #expect(output == input.sorted(by: Self.precedes))
            #expect(heap.pop(by: Self.precedes) == nil)
        }
    }

    @Test func interleavedPushesAndPopsMatchASortedList() {
        var rng = RandomGenerator(seed: 2)
        var heap = BinaryHeap<Item>()
        var reference: [Item] = []
        for id in 0..<2000 {
            if rng.integer(below: 3) == 0, let top = heap.pop(by: Self.precedes) {
                #expect(top == reference.removeFirst())
            } else {
                let item = Item(key: rng.integer(below: 5), id: id)
                heap.push(item, by: Self.precedes)
                reference.append(item)
                reference.sort(by: Self.precedes)
            }
        }
        #expect(heap.count == reference.count)
    }

    @Test func keysComeOutSortedUnderAWeakOrder() {
        var rng = RandomGenerator(seed: 3)
        var heap = BinaryHeap<Item>()
        let input = Self.items(500, keys: 4, rng: &rng)
        for item in input { heap.push(item) { $0.key > $1.key } }
        var keys: [Int] = []
        while let item = heap.pop(by: { $0.key > $1.key }) { keys.append(item.key) }
        #expect(keys == input.map(\.key).sorted(by: >))
    }

    @Test func selectBestKeepsTheBestKBestFirst() {
        var rng = RandomGenerator(seed: 4)
        for trial in 0..<300 {
            let count = trial % 40
            let keep = 1 + rng.integer(below: 45)  // sometimes more than there are
            let keys = (0..<count).map { _ in rng.integer(below: 1 + trial % 6) }
            // Ids as in the PKM selection: higher key first, then the lower id.
            func better(_ a: Int32, _ b: Int32) -> Bool {
                keys[Int(a)] > keys[Int(b)] || (keys[Int(a)] == keys[Int(b)] && a < b)
            }
            var best = [Int32](repeating: -1, count: keep)
            let kept = best.withUnsafeMutableBufferPointer {
                BinaryHeap.selectBest(0..<Int32(count), into: $0, by: better)
            }
            let expected = Array((0..<Int32(count)).sorted(by: better).prefix(keep))
            #expect(kept == expected.count)
            #expect(Array(best.prefix(kept)) == expected)
            #expect(best.dropFirst(kept).allSatisfy { $0 == -1 })
        }
    }

    @Test func siftOperationsKeepTheInvariant() {
        var rng = RandomGenerator(seed: 5)
        var values = (0..<100).map { _ in rng.integer(below: 10) }
        values.withUnsafeMutableBufferPointer { heap in
            for i in 0..<heap.count {
                BinaryHeap.siftUp(UnsafeMutableBufferPointer(rebasing: heap[0...i]), from: i, by: <)
            }
            for i in 1..<heap.count { #expect(heap[(i - 1) / 2] <= heap[i]) }
            heap[0] = 99
            BinaryHeap.siftDown(heap, from: 0, by: <)
            for i in 1..<heap.count { #expect(heap[(i - 1) / 2] <= heap[i]) }
        }
    }
}
