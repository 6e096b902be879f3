import SluiceCodec
import SwiftProtobuf
import Testing

@testable import Sluice

/// What server reflection finds in the descriptors: symbols by full name, extensions, and a file
/// with its imports, each sent once per stream.
@Suite("Reflection's descriptor index")
struct DescriptorIndexTests {
  /// `base.proto` (package `base`: message `Base` with an extension range, nested `Inner` and enum
  /// `Kind`) and `api.proto` (package `api`, imports it: service `Api.Get`, and extends `Base`
  /// with field 100 `tag`).
  func sets() throws -> [[UInt8]] {
    var base = Google_Protobuf_FileDescriptorProto()
    base.name = "base.proto"
    base.package = "base"
    var message = Google_Protobuf_DescriptorProto()
    message.name = "Base"
    message.field = [
      .with {
        $0.name = "id"; $0.number = 1; $0.type = .int32
      }
    ]
    message.nestedType = [.with { $0.name = "Inner" }]
    message.enumType = [
      .with {
        $0.name = "Kind"; $0.value = [.with { $0.name = "NONE" }]
      }
    ]
    message.extensionRange = [
      .with {
        $0.start = 100; $0.end = 200
      }
    ]
    base.messageType = [message]

    var api = Google_Protobuf_FileDescriptorProto()
    api.name = "api.proto"
    api.package = "api"
    api.dependency = ["base.proto"]
    api.extension = [
      .with {
        $0.name = "tag"; $0.number = 100; $0.extendee = ".base.Base"; $0.type = .string; $0.label = .optional
      }
    ]
    api.service = [
      .with {
        $0.name = "Api"
        $0.method = [
          .with {
            $0.name = "Get"; $0.inputType = ".base.Base"; $0.outputType = ".base.Base"
          }
        ]
      }
    ]
    // The second set holds another base.proto: the first set's is kept.
    var other = base
    other.messageType = []
    return [
      try Google_Protobuf_FileDescriptorSet.with { $0.file = [base, api] }.serializedBytes(),
      try Google_Protobuf_FileDescriptorSet.with { $0.file = [other] }.serializedBytes(),
    ]
  }

  @Test("Every kind of symbol is found in the file that declares it")
  func symbols() throws {
    let index = try DescriptorIndex(DescriptorRegistry(fileDescriptorSets: self.sets()))
    for symbol in ["base.Base", "base.Base.id", "base.Base.Inner", "base.Base.Kind", "base"] {
      #expect(index.file(declaring: symbol) == "base.proto", "\(symbol)")
    }
    for symbol in ["api.Api", "api.Api.Get", "api.tag"] {
      #expect(index.file(declaring: symbol) == "api.proto", "\(symbol)")
    }
    #expect(index.file(declaring: "base.Missing") == nil)
    #expect(index.file(extending: "base.Base", number: 100) == "api.proto")
    #expect(index.file(extending: "base.Base", number: 101) == nil)
    #expect(index.extensionNumbers(of: "base.Base") == [100])
    #expect(index.extensionNumbers(of: "api.Api") == [])
    #expect(index.extensionNumbers(of: "no.Such") == nil)
  }

  @Test("A file goes with its imports, and an import goes once per stream")
  func imports() throws {
    let index = try DescriptorIndex(DescriptorRegistry(fileDescriptorSets: self.sets()))
    var sent: Set<String> = []
    let first = try #require(index.fileAndImports("api.proto", leavingOut: &sent))
    let names = try first.map { try Google_Protobuf_FileDescriptorProto(serializedBytes: $0).name }
    #expect(names == ["api.proto", "base.proto"])
    // The first set's base.proto, with its message.
    #expect(try Google_Protobuf_FileDescriptorProto(serializedBytes: first[1]).messageType.count == 1)
    #expect(index.fileAndImports("api.proto", leavingOut: &sent)?.count == 1)
    #expect(index.fileAndImports("base.proto", leavingOut: &sent)?.count == 1)
    #expect(index.fileAndImports("missing.proto", leavingOut: &sent) == nil)
  }
}
