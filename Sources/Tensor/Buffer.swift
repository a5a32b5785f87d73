/// A growable, manually managed array used for activations and scratch space.
///
/// Layers keep one `Buffer` per activation and call `reserve` at the start of every forward
/// pass: the first call for a shape allocates, later calls with the same or a smaller shape
/// return the same memory. `Buffer.allocations` counts every allocation so a test can assert
/// that a training step allocates nothing after the first.
public final class Buffer<Element> {
    public private(set) var pointer: UnsafeMutablePointer<Element>
    public private(set) var capacity: Int

    public init() {
        pointer = UnsafeMutablePointer<Element>.allocate(capacity: 1)
        capacity = 0
    }

    public convenience init(count: Int) {
        self.init()
        _ = reserve(count)
    }

    deinit { pointer.deallocate() }

    /// Memory for at least `count` elements, keeping earlier contents only when no growth
    /// was needed (callers overwrite what they reserve).
    @discardableResult
    public func reserve(_ count: Int) -> UnsafeMutablePointer<Element> {
        if count > capacity {
            pointer.deallocate()
            pointer = UnsafeMutablePointer<Element>.allocate(capacity: count)
            capacity = count
            BufferStatistics.noteAllocation(bytes: count * MemoryLayout<Element>.stride)
        }
        return pointer
    }
}

public typealias FloatBuffer = Buffer<Float>

/// Counts of `Buffer` allocations, for the "a step allocates nothing" test and for memory
/// reports. Buffers are reserved from one thread (forward and backward drivers), never from
/// inside `parallelFor` bodies.
public enum BufferStatistics {
    nonisolated(unsafe) public private(set) static var allocations: Int = 0
    nonisolated(unsafe) public private(set) static var allocatedBytes: Int = 0

    static func noteAllocation(bytes: Int) {
        allocations += 1
        allocatedBytes += bytes
    }
}
