import SluiceCodec
import SluiceProtos
import SwiftProtobuf
import Testing

/// The codec and SwiftProtobuf's generated types read each other's JSON and agree on binary.
@Suite("Round trips with SwiftProtobuf's generated types")
struct SwiftProtobufRoundTripTests {
  let registry: DescriptorRegistry
  let codec: JSONCodec

  init() throws {
    registry = try DescriptorRegistry(fileDescriptorSet: SluiceDescriptors.fileDescriptorSet)
    codec = JSONCodec(registry: registry)
  }

  static func randomString(using random: inout FuzzTests.SplitMix64) -> String {
    let pieces = ["a", "Z", " ", "\"", "\\", "\n", "\u{1}", "é", "中", "😀", "gRPC Stream", ""]
    return (0..<Int.random(in: 0..<6, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined()
  }

  static func randomInt32(using random: inout FuzzTests.SplitMix64) -> Int32 {
    [0, 1, -1, .max, .min, Int32.random(in: .min ... .max, using: &random)].randomElement(using: &random)!
  }

  /// Checks one message both ways.
  func check<M: SwiftProtobuf.Message & Equatable>(_ original: M, as fullName: String) throws {
    let message = try #require(registry.message(fullName: fullName))
    let binary: [UInt8] = try original.serializedBytes()
    // Our JSON, read by SwiftProtobuf.
    let ours = try codec.json(fromBinary: binary, as: message)
    #expect(try M(jsonUTF8Bytes: ours) == original, "\(String(decoding: ours, as: UTF8.self))")
    // SwiftProtobuf's JSON (both name styles), read by us: the same binary.
    let theirs: [UInt8] = try original.jsonUTF8Bytes()
    #expect(try codec.binary(fromJSON: theirs, as: message) == binary)
    var options = JSONEncodingOptions()
    options.preserveProtoFieldNames = true
    let theirsProtoNames: [UInt8] = try original.jsonUTF8Bytes(options: options)
    #expect(try codec.binary(fromJSON: theirsProtoNames, as: message) == binary)
    // Without defaults, our JSON is SwiftProtobuf's JSON byte for byte.
    let quiet = JSONCodec(registry: registry, encoding: .init(emitDefaultValues: false))
    #expect(try quiet.json(fromBinary: binary, as: message) == theirs)
  }

  @Test("proto.StreamRequest and proto.StreamResponse")
  func streamMessages() throws {
    var random = FuzzTests.SplitMix64(state: 1)
    for index in 0..<300 {
      var point = Proto_StreamPoint()
      point.name = Self.randomString(using: &random)
      point.value = Self.randomInt32(using: &random)
      var request = Proto_StreamRequest()
      var response = Proto_StreamResponse()
      if index % 10 != 0 {
        request.pt = point
        response.pt = point
      }
      try check(request, as: "proto.StreamRequest")
      try check(response, as: "proto.StreamResponse")
    }
  }

  @Test("hello.Request/Response and the package-less StreamRequest/StreamResponse")
  func otherMessages() throws {
    var random = FuzzTests.SplitMix64(state: 2)
    for _ in 0..<200 {
      var hello = Hello_Request()
      hello.name = Self.randomString(using: &random)
      try check(hello, as: "hello.Request")
      var helloResponse = Hello_Response()
      helloResponse.result = Self.randomString(using: &random)
      try check(helloResponse, as: "hello.Response")
      var data = StreamRequest()
      data.data = Self.randomString(using: &random)
      try check(data, as: "StreamRequest")
      var dataResponse = StreamResponse()
      dataResponse.result = Self.randomString(using: &random)
      try check(dataResponse, as: "StreamResponse")
    }
  }
}
