// swift-tools-version:6.0
import PackageDescription

// Targets import only downward:
//   CMPI -> Distributed -> lmtrain (Tensor's Collective, over MPI).
//   CBLAS, CZlib -> Tensor -> Layers -> Models -> Configuration -> Accounting -> Training -> lmtrain
//   CZlib -> Datasets -> Configuration;  Accounting builds models to ask them (no parameter memory).
//   Heaps (no dependencies) -> Layers, Tokenizers;  Tokenizers -> Datasets.
//   Tensor -> FormalLanguages (only for its seeded random generator).
// Swift code is compiled for the CPU that builds it (AVX2 and FMA units on x86_64 rather than
// the SSE2 baseline): the fast-weight and elementwise kernels are written with 8- and 16-lane
// SIMD types, which the baseline splits into 4-lane halves (measured: the linear
// Transformer's recurrences 2x slower). No floating-point contraction is enabled, so results are
// the same bits either way, except attention's products per head: LMTRAIN_NATIVE_CPU tells the
// code it was built natively, and only then, on a CPU with AVX-512, does it run them in its own
// kernel (Tensor/PanelGemm.swift) instead of OpenBLAS. A binary built so runs only on CPUs with
// the builder's features; LMTRAIN_PORTABLE=1 swift build ... builds for the baseline.
#if arch(x86_64)
let cpuTuning: [SwiftSetting] =
    Context.environment["LMTRAIN_PORTABLE"] == "1"
        ? [] : [.unsafeFlags(["-target-cpu", "native"]), .define("LMTRAIN_NATIVE_CPU")]
#else
let cpuTuning: [SwiftSetting] = []
#endif

let package = Package(
    name: "lmtrain",
    products: [
        .executable(name: "lmtrain", targets: ["lmtrain"]),
        .executable(name: "lmtrain-fuzz", targets: ["lmtrain-fuzz"]),
        .library(
            name: "LMTrain",
            targets: [
                "Heaps", "Tensor", "Layers", "Models", "Tokenizers", "Datasets", "Configuration", "Accounting",
                "Training", "FormalLanguages", "Distributed",
            ]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(
            name: "CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),
        // Open MPI, for data-parallel training under mpirun (Docs/distributed.md).
        .systemLibrary(
            name: "CMPI", pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev"])]),
        // The binary heap of the BPE merge queues and of PKM's top-k selection.
        .target(name: "Heaps"),
        .target(name: "Tensor", dependencies: ["CBLAS"]),
        // The ranks of an mpirun job as a `Collective` (Tensor's protocol), through Open MPI.
        .target(name: "Distributed", dependencies: ["CMPI", "Tensor"]),
        .target(name: "Layers", dependencies: ["Tensor", "Heaps"]),
        .target(name: "Models", dependencies: ["Layers", "Tensor"]),
        // Byte, word and SentencePiece-compatible BPE tokenizers (pure Swift).
        .target(name: "Tokenizers", dependencies: ["Heaps"]),
        .target(name: "Datasets", dependencies: ["CZlib", "Tensor", "Tokenizers"]),
        // The formal-language recognition tasks: generators, target rules, checked files (pure Swift).
        .target(name: "FormalLanguages", dependencies: ["Tensor"]),
        // Run configs, presets and their JSON/flag resolution (no tensors).
        .target(name: "Configuration", dependencies: ["Models", "Datasets", "Layers", "FormalLanguages"]),
        // Parameters, FLOPs and memory of a config, parameter matching, audits (no tensors).
        .target(name: "Accounting", dependencies: ["Configuration", "FormalLanguages", "Models", "Layers", "Tensor"]),
        .target(
            name: "Training",
            dependencies: ["Configuration", "Accounting", "Models", "Datasets", "FormalLanguages", "Layers", "Tensor"]),
        .executableTarget(
            name: "lmtrain",
            dependencies: [
                "Training", "Configuration", "Accounting", "Models", "Datasets", "Tensor", "Distributed",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // The readers of user files as fuzz targets, a seeded mutator, and the runner (for the
        // tests and `lmtrain-fuzz`, which is also built as a libFuzzer binary; Docs/reliability.md).
        .target(name: "FuzzTargets", dependencies: ["Training", "Configuration", "Accounting", "Datasets", "Tokenizers"]),
        .executableTarget(name: "lmtrain-fuzz", dependencies: ["FuzzTargets"]),
        // Helpers shared by the test targets (finite differences, corpus paths, a block of every
        // feedforward kind); not a product.
        .target(name: "TestSupport", dependencies: ["Tensor", "Layers", "Models"], path: "Tests/Support"),
        .testTarget(name: "HeapsTests", dependencies: ["Heaps", "Tensor"]),
        .testTarget(name: "TensorTests", dependencies: ["Tensor", "TestSupport"]),
        .testTarget(
            name: "TokenizersTests", dependencies: ["Tokenizers"], resources: [.copy("Fixtures")]),
        .testTarget(name: "LayersTests", dependencies: ["Layers", "Tensor", "TestSupport"]),
        .testTarget(
            name: "ModelsTests", dependencies: ["Models", "Layers", "Tensor", "TestSupport"]),
        .testTarget(name: "FormalLanguagesTests", dependencies: ["FormalLanguages"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "CZlib", "TestSupport"]),
        .testTarget(
            name: "TrainingTests",
            dependencies: ["Training", "Configuration", "Models", "Datasets", "FormalLanguages", "Tensor", "TestSupport"],
            // The PyTorch reference step (Scripts/fixtures/make-reference-step.py) and checkpoints
            // of an earlier lmtrain.
            resources: [.copy("Fixtures/reference"), .copy("Fixtures/legacy")]),
        // Config resolution and the command line's options, parsed in-process.
        .testTarget(
            name: "ConfigurationTests",
            dependencies: [
                "Configuration", "Models", "Layers", "lmtrain",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(
            name: "AccountingTests",
            dependencies: ["Accounting", "Configuration", "Layers", "Models", "Training", "Tensor", "TestSupport"]),
        // A short seeded mutation run of every fuzz target over Fuzz/corpus, and the findings.
        .testTarget(name: "FuzzTargetsTests", dependencies: ["FuzzTargets", "Datasets", "TestSupport"]),
        // Runs the built `lmtrain` binary: bad input, exit codes, a short end-to-end run.
        .testTarget(name: "CLITests", dependencies: ["lmtrain", "Datasets", "Tensor", "TestSupport"]),
    ]
)

for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + cpuTuning
}
