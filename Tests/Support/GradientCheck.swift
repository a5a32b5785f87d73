import Foundation
import Tensor

/// A tensor whose gradient a check compares: values, the analytic gradient, and a label.
public struct CheckedTensor {
    public let name: String
    public let values: UnsafeMutablePointer<Float>
    public let gradient: UnsafePointer<Float>
    public let count: Int

    public init(
        _ name: String, values: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
        count: Int
    ) {
        self.name = name
        self.values = values
        self.gradient = gradient
        self.count = count
    }
}

/// The result of comparing one coordinate.
public struct GradientMismatch: CustomStringConvertible {
    public let tensor: String
    public let index: Int
    public let analytic: Double
    public let numeric: Double
    public var description: String {
        "\(tensor)[\(index)]: analytic \(analytic), numeric \(numeric)"
    }
}

/// Central finite differences against the analytic gradient.
///
/// `loss` must recompute the scalar from the current values (accumulated in Double, with the
/// same dropout masks each time). At most `samples` coordinates per tensor are checked
/// (all of them when the tensor is smaller), chosen by a seeded generator. A coordinate
/// passes when |analytic - numeric| <= absoluteTolerance + relativeTolerance * max(|a|, |n|).
public func checkGradients(
    _ tensors: [CheckedTensor], samples: Int = 12, step: Float = 1e-2,
    relativeTolerance: Double = 2e-2, absoluteTolerance: Double = 2e-4, seed: UInt64 = 7,
    loss: () -> Double
) -> [GradientMismatch] {
    var rng = RandomGenerator(seed: seed)
    var mismatches: [GradientMismatch] = []
    for tensor in tensors {
        let indices: [Int] =
            tensor.count <= samples
            ? Array(0..<tensor.count) : (0..<samples).map { _ in rng.integer(below: tensor.count) }
        for index in indices {
            let original = tensor.values[index]
            // A step relative to the value's size keeps float32 rounding small against it.
            let h = step * max(1, abs(original))
            tensor.values[index] = original + h
            let plus = loss()
            tensor.values[index] = original - h
            let minus = loss()
            tensor.values[index] = original
            let numeric = (plus - minus) / (2 * Double(h))
            let analytic = Double(tensor.gradient[index])
            let allowed = absoluteTolerance + relativeTolerance * max(abs(analytic), abs(numeric))
            if abs(analytic - numeric) > allowed {
                mismatches.append(
                    GradientMismatch(
                        tensor: tensor.name, index: index, analytic: analytic, numeric: numeric))
            }
        }
    }
    return mismatches
}

/// `sum(output * weights)` in Double: the scalar whose gradient with respect to `output` is
/// `weights`, used as a random upstream gradient.
public func weightedSum(
    _ output: UnsafePointer<Float>, _ weights: UnsafePointer<Float>, count: Int
) -> Double {
    var total = 0.0
    for i in 0..<count { total += Double(output[i]) * Double(weights[i]) }
    return total
}

/// A heap array of `count` floats drawn from N(0, std^2), for test inputs.
public func randomArray(_ count: Int, std: Double = 1, seed: UInt64) -> [Float] {
    var rng = RandomGenerator(seed: seed)
    return (0..<count).map { _ in Float(std * rng.normal()) }
}
