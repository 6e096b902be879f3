// swift-tools-version:6.1
// The libFuzzer targets for SluiceCodec, kept apart from the main package (as swift-nio and
// swift-protobuf do) so that neither its manifest nor its CI changes. Build and run them with
// scripts/fuzz-codec.sh and scripts/fuzz-descriptors.sh; they need a toolchain with the fuzzer
// runtime (the Linux swift.org ones).
import PackageDescription

let package = Package(
  name: "FuzzTesting",
  platforms: [.macOS(.v15)],
  dependencies: [
    // The parent package (named "sluice" in ../Package.swift), whatever its folder is called.
    .package(name: "sluice", path: ".."),
    // The parent's version: FuzzDescriptors builds and mutates descriptor sets with it.
    .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
  ],
  targets: [
    // Compiled with -sanitize=fuzzer,address by the script: libFuzzer supplies `main`.
    .executableTarget(
      name: "FuzzCodec",
      dependencies: [.product(name: "SluiceCodec", package: "sluice")],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
    // Descriptor loading (scripts/fuzz-descriptors.sh): a FileDescriptorSet is untrusted input.
    .executableTarget(
      name: "FuzzDescriptors",
      dependencies: [
        .product(name: "SluiceCodec", package: "sluice"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
  ]
)
