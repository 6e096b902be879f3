// swift-tools-version:6.1
// The libFuzzer target for SluiceCodec, kept apart from the main package (as swift-nio and
// swift-protobuf do) so that neither its manifest nor its CI changes. Build and run it with
// scripts/fuzz-codec.sh; it needs a toolchain with the fuzzer runtime (the Linux swift.org ones).
import PackageDescription

let package = Package(
  name: "FuzzTesting",
  platforms: [.macOS(.v15)],
  dependencies: [
    // The parent package (named "sluice" in ../Package.swift), whatever its folder is called.
    .package(name: "sluice", path: "..")
  ],
  targets: [
    // Compiled with -sanitize=fuzzer,address by the script: libFuzzer supplies `main`.
    .executableTarget(
      name: "FuzzCodec",
      dependencies: [.product(name: "SluiceCodec", package: "sluice")],
      swiftSettings: [.swiftLanguageMode(.v6)]
    )
  ]
)
