import Layers
import Tensor

/// The Transformer-XL memory of one model: per layer, the detached inputs of the last
/// `length` positions of every stream, `[batch, capacity, d]` with `length <= capacity`.
/// Training and evaluation each keep their own, so validation never disturbs training.
///
/// An evaluation memory also keeps what its rows were projected to (`projections`): while the
/// weights stay fixed, the keys and values of a memory row and the position keys are the ones an
/// earlier segment computed, so evaluation projects only the current rows. A training pass, a
/// reset or a restore drops them (the weights are about to change, or the rows are new).
public final class TransformerXLMemory: CarriedState {
    public let batch: Int
    public let capacity: Int
    public let width: Int
    /// Rows filled per stream (0 after a reset).
    public internal(set) var length = 0
    let buffers: [FloatBuffer]
    /// Evaluation only: allocated by the first evaluation pass over this memory.
    var projections: MemoryProjections?

    init(layers: Int, width: Int, batch: Int, capacity: Int) {
        self.batch = batch
        self.capacity = capacity
        self.width = width
        buffers = (0..<layers).map { _ in FloatBuffer(count: max(1, batch * capacity * width)) }
    }

    public var layers: Int { buffers.count }

    /// Empties the memory (epoch end, start of evaluation).
    public func reset() {
        length = 0
        projections?.invalidate()
    }

    public var bytes: Int { 4 * layers * batch * capacity * width + (projections?.bytes ?? 0) }

    /// Bytes of a memory of `layers` x `batch` x `capacity` rows of width `width`.
    public static func bytes(layers: Int, batch: Int, capacity: Int, width: Int) -> Int {
        4 * layers * batch * capacity * width
    }

    /// `memory.layers.L` [batch, length, d] per layer (none while the memory is empty).
    public func checkpointTensors() -> [NamedTensor] {
        guard length > 0 else { return [] }
        return (0..<layers).map { layer in
            var values = [Float](repeating: 0, count: batch * length * width)
            values.withUnsafeMutableBufferPointer { copy(layer: layer, into: $0.baseAddress!) }
            return NamedTensor(name: "memory.layers.\(layer)", shape: [batch, length, width], values: values)
        }
    }

    /// Restores `memory.layers.L`; absent tensors mean an empty memory.
    public func restore(_ tensor: (String) throws -> NamedTensor?) throws {
        reset()
        var saved: [NamedTensor] = []
        for layer in 0..<layers {
            guard let t = try tensor("memory.layers.\(layer)") else { break }
            saved.append(t)
        }
        if saved.isEmpty { return }
        guard saved.count == layers else {
            throw ConfigError("the checkpoint holds memory for \(saved.count) of \(layers) layers")
        }
        let savedLength = saved[0].shape.count == 3 ? saved[0].shape[1] : -1
        for t in saved where t.shape != [batch, savedLength, width] || savedLength > capacity {
            throw ConfigError("\(t.name) has shape \(t.shape), the memory needs [\(batch), at most \(capacity), \(width)]")
        }
        for (layer, t) in saved.enumerated() {
            t.values.withUnsafeBufferPointer { restore(layer: layer, length: savedLength, from: $0.baseAddress!) }
        }
    }

    /// Layer `layer` packed as [batch, length, d] into `destination`.
    public func copy(layer: Int, into destination: UnsafeMutablePointer<Float>) {
        for item in 0..<batch {
            (destination + item * length * width).update(
                from: buffers[layer].pointer + item * capacity * width, count: length * width)
        }
    }

    /// Sets `length` and fills layer `layer` from packed [batch, length, d] values.
    public func restore(layer: Int, length: Int, from source: UnsafePointer<Float>) {
        precondition(length <= capacity)
        self.length = length
        projections?.invalidate()
        for item in 0..<batch {
            (buffers[layer].pointer + item * capacity * width).update(
                from: source + item * length * width, count: length * width)
        }
    }
}

/// Per layer, the keys and values of an evaluation memory's rows, [batch, capacity + T, 2HD]
/// (room for a segment's own rows after the memory's, projected in place), and the position
/// keys Wr R, [capacity + T, HD]: what `RelativeAttention` would compute again from the same
/// rows and the same weights.
final class MemoryProjections {
    let keyValues: [FloatBuffer]
    let positionKeys: [FloatBuffer]
    /// Position-key rows allocated beyond the capacity: the longest segment.
    let segmentLength: Int
    /// Rows per stream of `keyValues`: capacity + T.
    let stride: Int
    let bytes: Int
    /// Memory rows per stream whose keys and values are held (valid when equal to the
    /// memory's length).
    var length = 0
    /// Position-key rows held per layer (0: not computed yet).
    var positionRows = 0

    init(layers: Int, batch: Int, capacity: Int, segmentLength: Int, keyValueWidth: Int) {
        self.segmentLength = segmentLength
        stride = capacity + segmentLength
        keyValues = (0..<layers).map { _ in FloatBuffer(count: batch * (capacity + segmentLength) * keyValueWidth) }
        positionKeys = (0..<layers).map { _ in FloatBuffer(count: (capacity + segmentLength) * keyValueWidth / 2) }
        bytes = Self.bytes(layers: layers, batch: batch, capacity: capacity, segmentLength: segmentLength, keyValueWidth: keyValueWidth)
    }

    func invalidate() {
        length = 0
        positionRows = 0
    }

    static func bytes(layers: Int, batch: Int, capacity: Int, segmentLength: Int, keyValueWidth: Int) -> Int {
        4 * layers * (batch * (capacity + segmentLength) * keyValueWidth + (capacity + segmentLength) * keyValueWidth / 2)
    }
}
