/// A growable, manually managed array used for activations and scratch space.
///
/// Layers keep one `Buffer` per activation and declare its size for a pass in a `BufferPlan`;
/// the plan reserves every buffer before the pass runs, and the pass itself only takes the
/// memory (`reserved(_:)`), which never allocates. `BufferStatistics` counts every
/// allocation so a test can assert that a training step allocates nothing after the first.
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

    /// The reserved memory, which must hold `count` elements: the owner declared the buffer
    /// in its `BufferPlan` for this pass, so nothing is allocated here. A pass that needs
    /// more than its layer declared is a bug in that declaration and traps.
    @inlinable @inline(__always)
    public func reserved(_ count: Int) -> UnsafeMutablePointer<Element> {
        precondition(count <= capacity, "buffer needs \(count) elements, its plan declared \(capacity)")
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

/// The buffers one pass needs, declared by the layers that own them: the same declaration
/// reserves the memory before the pass (`reserve()`) and gives the accountant its activation
/// inventory (`entries`), so the two cannot disagree. Declaring a buffer twice (a shared
/// scratch buffer, or one model planned for a training and an evaluation pass) keeps the
/// larger size, as the buffer itself would.
public struct BufferPlan {
    /// One buffer: the name its owner gives it and the bytes it needs.
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let bytes: Int

        public init(name: String, bytes: Int) {
            self.name = name
            self.bytes = bytes
        }
    }

    private var order: [ObjectIdentifier] = []
    private var sizes: [ObjectIdentifier: (entry: Entry, reserve: (Int) -> Void)] = [:]

    public init() {}

    /// Declares that `buffer` must hold `count` elements; `name` says what it holds.
    public mutating func declare<Element>(_ buffer: Buffer<Element>, _ name: String, count: Int) {
        declare(
            ObjectIdentifier(buffer), name, bytes: count * MemoryLayout<Element>.stride,
            reserve: { bytes in buffer.reserve(bytes / MemoryLayout<Element>.stride) })
    }

    /// Declares storage that is not a plain `Buffer` (`Ones`): `reserve` receives the bytes.
    public mutating func declare(
        _ key: ObjectIdentifier, _ name: String, bytes: Int, reserve: @escaping (Int) -> Void
    ) {
        if let existing = sizes[key] {
            if bytes > existing.entry.bytes {
                sizes[key] = (Entry(name: existing.entry.name, bytes: bytes), existing.reserve)
            }
        } else {
            order.append(key)
            sizes[key] = (Entry(name: name, bytes: bytes), reserve)
        }
    }

    /// Every declared buffer in declaration order, each once, at its largest declared size.
    public var entries: [Entry] { order.map { sizes[$0]!.entry } }

    /// Bytes of all declared buffers.
    public var bytes: Int { order.reduce(0) { $0 + sizes[$1]!.entry.bytes } }

    /// Declares with `declare` and reserves at once: for using a layer on its own (a model
    /// plans all its layers before each new pass shape).
    public static func reserve(_ declare: (inout BufferPlan) -> Void) {
        var plan = BufferPlan()
        declare(&plan)
        plan.reserve()
    }

    /// Reserves every buffer at its declared size (allocating only what grows).
    public func reserve() {
        for key in order {
            let (entry, reserve) = sizes[key]!
            reserve(entry.bytes)
        }
    }
}
