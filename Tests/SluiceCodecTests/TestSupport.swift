import Foundation
import SluiceCodec
import Testing

/// The test protos compiled at test time by `python3 -m grpc_tools.protoc` (pip: grpcio-tools):
/// its Python module (for reference.py) and its FileDescriptorSet (for the codec).
struct GeneratedTestProtos: Sendable {
  /// Temporary directory holding the `*_pb2.py` modules and `codec_test.binpb` (both files).
  var directory: URL
  var registry: DescriptorRegistry

  func message(_ fullName: String) throws -> MessageDescriptor {
    try #require(registry.message(fullName: fullName), "no message \(fullName)")
  }
}

struct FixtureError: Error, CustomStringConvertible {
  var description: String
}

enum Fixture {
  /// The folder of this file: Tests/SluiceCodecTests.
  static let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  static let referenceScript = testsDirectory.appendingPathComponent("reference.py").path

  /// Generated once per test process; a missing python3 or module is a failure, not a skip.
  static let generated: Result<GeneratedTestProtos, FixtureError> = Result { () throws(FixtureError) in
    try generate()
  }

  static func protos() throws -> GeneratedTestProtos {
    try generated.get()
  }

  /// Per test process; removed when the process exits.
  static let directory = FileManager.default.temporaryDirectory
    .appendingPathComponent("sluice-codec-tests-\(ProcessInfo.processInfo.processIdentifier)")

  private static func generate() throws(FixtureError) -> GeneratedTestProtos {
    do {
      try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    } catch {
      throw FixtureError(description: "cannot create \(directory.path): \(error)")
    }
    atexit { try? FileManager.default.removeItem(at: Fixture.directory) }
    let descriptorPath = directory.appendingPathComponent("codec_test.binpb").path
    let result = try run(
      [
        "python3", "-m", "grpc_tools.protoc", "-I", testsDirectory.appendingPathComponent("Protos").path,
        "--python_out=\(directory.path)", "--descriptor_set_out=\(descriptorPath)", "--include_imports",
        "codec_test.proto", "codec_test_proto2.proto",
      ])
    guard result.status == 0 else {
      throw FixtureError(
        description: """
          generating the test proto failed: python3 with the modules protobuf and grpcio-tools \
          is required (pip install protobuf grpcio-tools). stderr: \(result.stderr)
          """)
    }
    do {
      let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: descriptorPath)))
      return GeneratedTestProtos(directory: directory, registry: try DescriptorRegistry(fileDescriptorSet: bytes))
    } catch {
      throw FixtureError(description: "loading the generated descriptor set failed: \(error)")
    }
  }

  /// Runs a command through /usr/bin/env; output goes through temporary files (no pipe limits).
  static func run(_ arguments: [String]) throws(FixtureError) -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let outURL = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-out-\(UUID().uuidString)")
    let errURL = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-err-\(UUID().uuidString)")
    defer {
      try? FileManager.default.removeItem(at: outURL)
      try? FileManager.default.removeItem(at: errURL)
    }
    do {
      _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
      _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
      let out = try FileHandle(forWritingTo: outURL)
      let err = try FileHandle(forWritingTo: errURL)
      process.standardOutput = out
      process.standardError = err
      process.standardInput = FileHandle.nullDevice
      try process.run()
      process.waitUntilExit()
      try out.close()
      try err.close()
      let stdout = String(decoding: try Data(contentsOf: outURL), as: UTF8.self)
      let stderr = String(decoding: try Data(contentsOf: errURL), as: UTF8.self)
      return (process.terminationStatus, stdout, stderr)
    } catch {
      throw FixtureError(description: "cannot run \(arguments.joined(separator: " ")): \(error)")
    }
  }
}

extension JSONCodec {
  /// JSON → binary → JSON, as a String (test convenience).
  func roundTrip(_ json: String, as message: MessageDescriptor) throws -> String {
    try jsonString(fromBinary: binary(fromJSON: json, as: message), as: message)
  }
}
