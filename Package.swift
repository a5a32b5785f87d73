// swift-tools-version:6.0
import PackageDescription

// Targets import only downward:
//   CBLAS, CZlib -> Tensor -> Layers -> Models -> Training -> lmtrain
//   Tokenizers -> Datasets -> Training;  Accounting reads configs only.
let package = Package(
    name: "lmtrain",
    products: [
        .executable(name: "lmtrain", targets: ["lmtrain"]),
        .library(name: "LMTrain", targets: ["Tensor", "Layers", "Models", "Datasets", "Training"]),
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
        .target(name: "Tensor", dependencies: ["CBLAS"], swiftSettings: fast),
        .target(
            name: "Layers", dependencies: ["Tensor"],
            exclude: ["TopKFeedForward.swift", "ProductKeyMemory.swift"],  // INTEGRATION-PENDING
            swiftSettings: fast),
        .target(name: "Models", dependencies: ["Layers", "Tensor"], swiftSettings: fast),
        .target(name: "Datasets", dependencies: ["CZlib", "Tensor"], swiftSettings: fast),
        .target(
            name: "Training", dependencies: ["Models", "Datasets", "Layers", "Tensor"],
            swiftSettings: fast),
        .executableTarget(
            name: "lmtrain",
            dependencies: [
                "Training", "Models", "Datasets", "Tensor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // Helpers shared by the test targets (finite differences, corpus paths); not a product.
        .target(name: "TestSupport", dependencies: ["Tensor"], path: "Tests/Support"),
        .testTarget(name: "TensorTests", dependencies: ["Tensor", "TestSupport"]),
        .testTarget(
            name: "LayersTests", dependencies: ["Layers", "Tensor", "TestSupport"],
            exclude: ["TopKFeedForwardTests.swift", "ProductKeyMemoryTests.swift"]),  // INTEGRATION-PENDING
        .testTarget(
            name: "ModelsTests", dependencies: ["Models", "Layers", "Tensor", "TestSupport"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "CZlib", "TestSupport"]),
        .testTarget(
            name: "TrainingTests",
            dependencies: ["Training", "Models", "Datasets", "Tensor", "TestSupport"]),
        // Runs the built `lmtrain` binary: bad input, exit codes, a short end-to-end run.
        .testTarget(name: "CLITests", dependencies: ["lmtrain", "TestSupport"]),
    ]
)

/// Numeric targets: exclusivity checks off in release (they made element loops 20x slower,
/// STYLE.md); every buffer access already goes through unsafe pointers taken once per kernel.
var fast: [SwiftSetting] {
    [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
}
