// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
  .swiftLanguageMode(.v6),
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("InternalImportsByDefault"),
  .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
  name: "sluice",
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "sluice", targets: ["sluice"]),
    .library(name: "Sluice", targets: ["Sluice"]),
    .library(name: "SluiceCodec", targets: ["SluiceCodec"]),
  ],
  dependencies: [
    .package(url: "https://github.com/grpc/grpc-swift-2", exact: "2.4.3"),
    .package(url: "https://github.com/grpc/grpc-swift-nio-transport", exact: "2.9.2"),
    .package(url: "https://github.com/grpc/grpc-swift-protobuf", exact: "2.4.1"),
    .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
    .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
    .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
    .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", exact: "2.13.0"),
    .package(url: "https://github.com/swift-server/async-http-client", exact: "1.37.0"),
    .package(url: "https://github.com/apple/swift-metrics", exact: "2.13.0"),
    .package(url: "https://github.com/apple/swift-nio-ssl", exact: "2.37.6"),
    .package(url: "https://github.com/apple/swift-nio-http2", exact: "1.46.0"),
    .package(url: "https://github.com/apple/swift-crypto", exact: "4.5.2"),
    .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
    .package(url: "https://github.com/apple/swift-configuration", exact: "1.4.0", traits: ["JSON", "YAML"]),
    .package(url: "https://github.com/jpsim/Yams", exact: "6.2.2"),
    .package(url: "https://github.com/swift-otel/swift-otel", exact: "1.6.0"),
    .package(url: "https://github.com/apple/swift-distributed-tracing", exact: "1.7.3"),
  ],
  targets: [
    // The command: `serve` parses flags into a `GatewayConfiguration` and runs the `Gateway`;
    // `call`, `list` and `describe` are a client of gRPC servers and of Sluice's JSON paths.
    .executableTarget(
      name: "sluice",
      dependencies: [
        "Sluice",
        "SluiceCodec",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOWebSocket", package: "swift-nio"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "Configuration", package: "swift-configuration"),
        .product(name: "Yams", package: "Yams"),
      ],
      swiftSettings: swiftSettings
    ),
    // The gateway: front ends, hosted services, process lifecycle.
    .target(
      name: "Sluice",
      dependencies: [
        "SluiceCodec",
        "SluiceProtos",
        "SluicePublicFiles",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOWebSocket", package: "swift-nio"),
        .product(name: "_NIOFileSystem", package: "swift-nio"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "NIOHTTP2", package: "swift-nio-http2"),
        .product(name: "NIOHPACK", package: "swift-nio-http2"),
        .product(name: "Crypto", package: "swift-crypto"),
        "CZlib",
        "CNGHTTP2",
        .product(name: "CoreMetrics", package: "swift-metrics"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        .product(name: "OTel", package: "swift-otel"),
        .product(name: "Tracing", package: "swift-distributed-tracing"),
        .product(name: "Instrumentation", package: "swift-distributed-tracing"),
      ],
      // Release builds skip the runtime's dynamic exclusivity checks (the compile-time ones stay):
      // on the proxy's hot path, where every nghttp2 callback touches a connection's and a
      // stream's stored properties, they were about 10 % of the gateway's CPU (swift_beginAccess
      // and its thread-local access set), and proxy CPU per Route message went from 6.37 to
      // 5.80 us without them (docs/PERFORMANCE.md). Debug builds, which the Swift test suite
      // runs, keep them, so an overlapping access still traps there.
      swiftSettings: swiftSettings + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
    ),
    // zlib from the system (apt: zlib1g-dev), for gzip-encoded gRPC messages.
    .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),
    .systemLibrary(name: "CNGHTTP2", providers: [.apt(["libnghttp2-dev"])]),
    // Descriptor-driven JSON <-> protobuf translation (no generated types, no gRPC).
    .target(
      name: "SluiceCodec",
      dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
      swiftSettings: swiftSettings
    ),
    // The page in public/, embedded (scripts/embed-public.sh): its own target, so that editing the
    // page rebuilds one file, not the gateway.
    .target(name: "SluicePublicFiles", swiftSettings: swiftSettings),
    // grpc-swift-2 service stubs generated from Protos/ (scripts/generate-protos.sh), for the tests'
    // and benchmarks' clients only: the product speaks gRPC through its own HTTP/2 layer.
    .target(
      name: "SluiceGRPCStubs",
      dependencies: [
        "SluiceProtos",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
      ],
      swiftSettings: swiftSettings
    ),
    // Message types and the FileDescriptorSet generated from Protos/ (scripts/generate-protos.sh).
    .target(
      name: "SluiceProtos",
      dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
      exclude: ["Generated/protos.sha256"],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "SluiceCodecTests",
      dependencies: [
        "SluiceCodec",
        "SluiceProtos",
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      exclude: ["Protos", "reference.py"],
      swiftSettings: swiftSettings
    ),
    // A bare WebSocket client for the tests and benchmarks (not a product).
    .target(
      name: "SluiceTestSupport",
      dependencies: [
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOWebSocket", package: "swift-nio"),
      ],
      swiftSettings: swiftSettings
    ),
    // Benchmarks are programs that print figures; none of them is a test.
    .executableTarget(
      name: "CodecBenchmark",
      dependencies: [
        "SluiceCodec",
        "SluiceProtos",
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      path: "Benchmarks/CodecBenchmark",
      swiftSettings: swiftSettings
    ),
    // protobuf's conformance suite's testee (Tests/Interop/test_conformance.py): SluiceCodec only.
    .executableTarget(
      name: "sluice-conformance",
      dependencies: ["SluiceCodec"],
      path: "Tests/Conformance",
      exclude: ["failing_recommended.txt"],
      swiftSettings: swiftSettings
    ),
    .executableTarget(
      name: "BridgeBenchmark",
      dependencies: [
        "Sluice",
        "SluiceProtos",
        "SluiceGRPCStubs",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOWebSocket", package: "swift-nio"),
        "SluiceTestSupport",
      ],
      path: "Benchmarks/BridgeBenchmark",
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "SluiceTests",
      dependencies: [
        "Sluice",
        "SluiceCodec",
        "SluiceProtos",
        "SluiceGRPCStubs",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
        .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOWebSocket", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOHPACK", package: "swift-nio-http2"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        "SluiceTestSupport",
      ],
      swiftSettings: swiftSettings
    ),
  ]
)
