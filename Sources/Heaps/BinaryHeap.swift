// Binary heaps: the one sift-up / sift-down of lmtrain, for the tokenizers' merge queues and the
// product-key memory's bounded selection.
// Layout: heap[0] is the root, the children of i are 2i + 1 and 2i + 2.
//   invariant   no child precedes its parent under `precedes` (a strict weak order),
//               so the root is an element that nothing else precedes
//   sift-up     swaps an element with its parent while it strictly precedes the parent
//   sift-down   swaps an element with the preceding child (the left one unless the right one
//               strictly precedes it) while that child strictly precedes it
// Which of two equal elements comes out first depends on these exact rules, so callers whose
// output must not depend on them make `precedes` a total order (ties broken by an id).
//
// The order is an argument of every call rather than part of the heap: the BPE trainer's order
// reads tables that grow between calls. Everything is `@inlinable`, so a caller's closure is
// specialised and inlined into the loops.

/// A binary heap in an array: `pop` returns an element that no other element precedes,
/// under the strict weak order `precedes` given to every call (always the same order).
/// `push` and `pop` take O(log count) comparisons.
public struct BinaryHeap<Element> {
    @usableFromInline var elements: [Element] = []

    @inlinable public init() {}

    @inlinable public var isEmpty: Bool { elements.isEmpty }

    @inlinable public var count: Int { elements.count }

    @inlinable
    public mutating func push(_ element: Element, by precedes: (Element, Element) -> Bool) {
        elements.append(element)
        let last = elements.count - 1
        elements.withUnsafeMutableBufferPointer { Self.siftUp($0, from: last, by: precedes) }
    }

    /// The root (nil when empty); the last element takes its place and sifts down.
    @inlinable
    public mutating func pop(by precedes: (Element, Element) -> Bool) -> Element? {
        guard let top = elements.first else { return nil }
        let last = elements.removeLast()
        if !elements.isEmpty {
            elements[0] = last
            elements.withUnsafeMutableBufferPointer { Self.siftDown($0, from: 0, by: precedes) }
        }
        return top
    }

    @inlinable
    public mutating func removeAll(keepingCapacity keepCapacity: Bool = false) {
        elements.removeAll(keepingCapacity: keepCapacity)
    }
}

extension BinaryHeap {
    /// Restores the invariant after `heap[index]` was placed at the end of a valid heap (or
    /// made to precede more): moves it toward the root while it strictly precedes its parent.
    @inlinable @inline(__always)
    public static func siftUp(
        _ heap: UnsafeMutableBufferPointer<Element>, from index: Int,
        by precedes: (Element, Element) -> Bool
    ) {
        var child = index
        while child > 0 {
            let parent = (child - 1) / 2
            guard precedes(heap[child], heap[parent]) else { return }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    /// Restores the invariant after `heap[index]` was replaced in a valid heap of
    /// `heap.count` elements (or made to precede less): moves it toward the leaves while a
    /// child strictly precedes it, swapping with the left child unless the right one strictly
    /// precedes the left.
    @inlinable @inline(__always)
    public static func siftDown(
        _ heap: UnsafeMutableBufferPointer<Element>, from index: Int,
        by precedes: (Element, Element) -> Bool
    ) {
        let size = heap.count
        var parent = index
        while true {
            let left = 2 * parent + 1
            if left >= size { return }
            var first = left
            if left + 1 < size && precedes(heap[left + 1], heap[left]) { first = left + 1 }
            guard precedes(heap[first], heap[parent]) else { return }
            heap.swapAt(first, parent)
            parent = first
        }
    }

    /// The `best.count` best of `elements` under the strict total order `better`, best first,
    /// written to `best`; returns how many were written (all of `elements` when fewer).
    /// Uses no memory but `best`: a heap whose root is the worst element kept, which a better
    /// newcomer replaces, then a heap sort of what is kept.
    @inlinable @inline(__always)
    @discardableResult
    public static func selectBest<Elements: Sequence>(
        _ elements: Elements, into best: UnsafeMutableBufferPointer<Element>,
        by better: (Element, Element) -> Bool
    ) -> Int where Elements.Element == Element {
        let keep = best.count
        // Worst first: a precedes b when b is better.
        @inline(__always) func worse(_ a: Element, _ b: Element) -> Bool { better(b, a) }
        var size = 0
        for element in elements {
            if size < keep {
                best[size] = element
                size += 1
                siftUp(UnsafeMutableBufferPointer(rebasing: best[0..<size]), from: size - 1, by: worse)
            } else if keep > 0 && better(element, best[0]) {
                best[0] = element
                siftDown(best, from: 0, by: worse)
            }
        }
        // Heap sort: the worst of the first `end + 1` goes to position `end`.
        var end = size - 1
        while end > 0 {
            best.swapAt(0, end)
            siftDown(UnsafeMutableBufferPointer(rebasing: best[0..<end]), from: 0, by: worse)
            end -= 1
        }
        return size
    }
}
