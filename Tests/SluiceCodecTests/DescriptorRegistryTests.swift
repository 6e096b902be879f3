import SluiceCodec
import SluiceProtos
import Testing

@Suite("DescriptorRegistry")
struct DescriptorRegistryTests {
  @Test("The hosted services' methods are found by path with their kinds and types")
  func hostedMethods() throws {
    let registry = try DescriptorRegistry(fileDescriptorSet: SluiceDescriptors.fileDescriptorSet)
    #expect(
      registry.methods.map(\.path) == [
        "/DataService/BidirectionalStream", "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/List",
        "/grpc.health.v1.Health/Watch", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "/hello.UserService/SayHi",
        "/proto.StreamService/List", "/proto.StreamService/Record", "/proto.StreamService/Route",
      ])
    let list = try #require(registry.method(path: "/proto.StreamService/List"))
    #expect(list.kind == .serverStreaming)
    #expect(list.serviceName == "proto.StreamService")
    #expect(list.methodName == "List")
    #expect(list.input.fullName == "proto.StreamRequest")
    #expect(list.output.fullName == "proto.StreamResponse")
    #expect(registry.method(path: "/proto.StreamService/Record")?.kind == .clientStreaming)
    #expect(registry.method(path: "/proto.StreamService/Route")?.kind == .bidirectionalStreaming)
    #expect(registry.method(path: "/hello.UserService/SayHi")?.kind == .unary)
    let bidi = try #require(registry.method(path: "/DataService/BidirectionalStream"))
    #expect(bidi.kind.clientStreams && bidi.kind.serverStreams)
    #expect(bidi.serviceName == "DataService")
    #expect(bidi.input.fullName == "StreamRequest")
    #expect(!MethodKind.unary.clientStreams && !MethodKind.unary.serverStreams)
    #expect(MethodKind.serverStreaming.serverStreams && !MethodKind.serverStreaming.clientStreams)
    #expect(registry.method(path: "/proto.StreamService/Nope") == nil)
    #expect(registry.message(fullName: "proto.StreamPoint")?.fieldNames == ["name", "value"])
    #expect(registry.message(fullName: "proto.Nope") == nil)
  }

  @Test("A set with imports resolves types across files, including the well-known types")
  func imports() throws {
    let protos = try Fixture.protos()
    let message = try protos.message("codectest.Everything")
    #expect(message.fieldNames.contains("timestamp"))
    #expect(protos.registry.message(fullName: "google.protobuf.Any") != nil)
    #expect(protos.registry.message(fullName: "codectest.Everything.MInt32Entry") != nil)
  }

  @Test("Garbage instead of a descriptor set is a clean error")
  func garbage() {
    #expect(throws: CodecError.self) { try DescriptorRegistry(fileDescriptorSet: [0xFF, 0xFF, 0xFF]) }
    // A field whose type is missing from the set.
    #expect(throws: CodecError.self) { try DescriptorRegistry(fileDescriptorSet: Self.danglingType) }
  }

  /// file "x.proto", message M { Missing f = 1; } without the file defining Missing.
  static let danglingType: [UInt8] = {
    let field: [UInt8] = [0x0A, 1, 0x66, 0x18, 1, 0x20, 1, 0x28, 11, 0x32, 8] + Array(".Missing".utf8)
    let message: [UInt8] = [0x0A, 1, 0x4D, 0x12, UInt8(field.count)] + field
    let file: [UInt8] = [0x0A, 7] + Array("x.proto".utf8) + [0x22, UInt8(message.count)] + message
    return [0x0A, UInt8(file.count)] + file
  }()
}
