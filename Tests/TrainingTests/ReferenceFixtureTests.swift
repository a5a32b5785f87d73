import Foundation
import Testing
import Training

/// `lmtrain step` against an independent implementation: Tests/TrainingTests/Fixtures/reference
/// holds two tiny checkpoints (dense and σ-MoE feedforward blocks), a tokens file and the step
/// dumps a PyTorch float64 model written from the documentation computed for them
/// (Scripts/fixtures/make-reference-step.py, Docs/verification.md). lmtrain must reproduce the
/// loss, the logits and every parameter gradient to float32 precision.
@Suite(.serialized) struct ReferenceFixtureTests {
    /// Relative tolerance of a tensor: max|a − b| / max(max|b|, 1e-3).
    static let relativeTolerance = 1e-4
    /// Absolute tolerance of the loss.
    static let lossTolerance = 1e-5

    @Test(arguments: ["dense", "moe"])
    func stepMatchesThePyTorchReference(model: String) throws {
        let checkpoint = try Checkpoint.load(try Fixtures.file("\(model).safetensors", in: "reference"))
        let directory = Fixtures.temporaryDirectory("reference-\(model)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let dumpURL = directory.appendingPathComponent("step.safetensors")
        try StepDump.run(
            checkpoint: checkpoint, tokensURL: try Fixtures.file("tokens.safetensors", in: "reference"),
            dumpURL: dumpURL)
        let actual = try SafeTensors.File(url: dumpURL)
        let expected = try SafeTensors.File(url: try Fixtures.file("\(model)-step.safetensors", in: "reference"))

        // Both sides hold exactly loss, logits and one gradient per parameter.
        let parameterNames = try checkpoint.makeModel().layout.views.map(\.name)
        let required = Set(["loss", "logits"] + parameterNames)
        #expect(Set(expected.tensors.keys).symmetricDifference(required).sorted() == [], "the fixture's tensors differ from loss, logits and the gradients")
        #expect(Set(actual.tensors.keys).symmetricDifference(required).sorted() == [], "lmtrain's dump differs from loss, logits and the gradients")

        for name in required.sorted() {
            guard let reference = expected.tensors[name], let computed = actual.tensors[name] else { continue }
            #expect(computed.dtype == .f32 && reference.dtype == .f32, "\(name) is not F32")
            try #require(computed.shape == reference.shape, "\(name): shape \(computed.shape), expected \(reference.shape)")
            let a = try actual.array(name, dtype: .f32, as: Float.self)
            let b = try expected.array(name, dtype: .f32, as: Float.self)
            var difference = 0.0, magnitude = 0.0
            for (x, y) in zip(a, b) {
                difference = max(difference, abs(Double(x) - Double(y)))
                magnitude = max(magnitude, abs(Double(y)))
            }
            if name == "loss" {
                #expect(difference <= Self.lossTolerance, "\(model) loss: \(a[0]) vs the reference \(b[0])")
            } else {
                let relative = difference / max(magnitude, 1e-3)
                #expect(relative <= Self.relativeTolerance, "\(model) \(name): relative difference \(relative)")
            }
        }
    }
}
