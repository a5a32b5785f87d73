import Layers
import Tensor

/// The Transformer-XL memory of one model: per layer, the detached inputs of the last
/// `length` positions of every stream, `[batch, capacity, d]` with `length <= capacity`.
/// Training and evaluation each keep their own, so validation never disturbs training.
public final class TransformerXLMemory: CarriedState {
    public let batch: Int
    public let capacity: Int
    public let width: Int
    /// Rows filled per stream (0 after a reset).
    public internal(set) var length = 0
    let buffers: [FloatBuffer]

    init(layers: Int, width: Int, batch: Int, capacity: Int) {
        self.batch = batch
        self.capacity = capacity
        self.width = width
        buffers = (0..<layers).map { _ in FloatBuffer(count: max(1, batch * capacity * width)) }
    }

    public var layers: Int { buffers.count }

    /// Empties the memory (epoch end, start of evaluation).
    public func reset() { length = 0 }

    public var bytes: Int { 4 * layers * batch * capacity * width }

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
        for item in 0..<batch {
            (buffers[layer].pointer + item * capacity * width).update(
                from: source + item * length * width, count: length * width)
        }
    }
}
