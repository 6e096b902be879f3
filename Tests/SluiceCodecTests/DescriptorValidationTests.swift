import SluiceCodec
import SwiftProtobuf
import Testing

/// Descriptors are untrusted input (server reflection, `--descriptor-set`): a set protobuf would
/// not allow is refused whole, with an error naming the file, the message and the field, and
/// never traps, at load or on a later call.
@Suite("Descriptor validation")
struct DescriptorValidationTests {
  /// `x.proto`, package `pkg`, proto3:
  ///
  ///     message M {
  ///       string name = 1; int32 value = 2;
  ///       oneof choice { string a = 3; int64 b = 4; }
  ///       map<string, int32> counts = 5; Inner inner = 6; Color color = 7;
  ///       message Inner { bool flag = 1; }
  ///       enum Color { RED = 0; GREEN = 1; }
  ///     }
  ///     service S { rpc Call(M) returns (M); }
  static func file(_ edit: (inout Google_Protobuf_DescriptorProto) -> Void = { _ in })
    -> Google_Protobuf_FileDescriptorProto
  {
    var message = Google_Protobuf_DescriptorProto.with {
      $0.name = "M"
      $0.field = [
        Self.field("name", 1, .string),
        Self.field("value", 2, .int32),
        Self.field("a", 3, .string, oneof: 0),
        Self.field("b", 4, .int64, oneof: 0),
        Self.field("counts", 5, .message, type: ".pkg.M.CountsEntry", label: .repeated),
        Self.field("inner", 6, .message, type: ".pkg.M.Inner"),
        Self.field("color", 7, .enum, type: ".pkg.M.Color"),
      ]
      $0.oneofDecl = [.with { $0.name = "choice" }]
      $0.nestedType = [
        .with {
          $0.name = "CountsEntry"
          $0.field = [Self.field("key", 1, .string), Self.field("value", 2, .int32)]
          $0.options = .with { $0.mapEntry = true }
        },
        .with {
          $0.name = "Inner"
          $0.field = [Self.field("flag", 1, .bool)]
        },
      ]
      $0.enumType = [
        .with {
          $0.name = "Color"
          $0.value = [
            .with {
              $0.name = "RED"; $0.number = 0
            },
            .with {
              $0.name = "GREEN"; $0.number = 1
            },
          ]
        }
      ]
    }
    edit(&message)
    return .with {
      $0.name = "x.proto"
      $0.package = "pkg"
      $0.syntax = "proto3"
      $0.messageType = [message]
      $0.service = [
        .with {
          $0.name = "S"
          $0.method = [
            .with {
              $0.name = "Call"; $0.inputType = ".pkg.M"; $0.outputType = ".pkg.M"
            }
          ]
        }
      ]
    }
  }

  static func field(
    _ name: String, _ number: Int32, _ type: Google_Protobuf_FieldDescriptorProto.TypeEnum, type typeName: String = "",
    label: Google_Protobuf_FieldDescriptorProto.Label = .optional, oneof: Int32? = nil
  ) -> Google_Protobuf_FieldDescriptorProto {
    .with {
      $0.name = name
      $0.number = number
      $0.type = type
      $0.label = label
      if !typeName.isEmpty { $0.typeName = typeName }
      if let oneof { $0.oneofIndex = oneof }
    }
  }

  static func set(_ files: Google_Protobuf_FileDescriptorProto...) throws -> [UInt8] {
    try Google_Protobuf_FileDescriptorSet.with { $0.file = files }.serializedBytes()
  }

  static func set(_ edit: (inout Google_Protobuf_DescriptorProto) -> Void) throws -> [UInt8] {
    try set(file(edit))
  }

  /// The error loading `bytes` fails with.
  static func loadError(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws -> CodecError {
    try #require(throws: CodecError.self, sourceLocation: sourceLocation) {
      try DescriptorRegistry(fileDescriptorSet: bytes)
    }
  }

  /// The index of a field of M by name.
  static func index(_ message: Google_Protobuf_DescriptorProto, _ name: String) -> Int {
    message.field.firstIndex { $0.name == name } ?? -1
  }

  // MARK: - A valid set

  @Test("A valid set loads, and a JSON message round-trips through its method")
  func validSet() throws {
    let registry = try DescriptorRegistry(fileDescriptorSet: Self.set(Self.file()))
    let method = try #require(registry.method(path: "/pkg.S/Call"))
    let codec = JSONCodec(registry: registry)
    let json = #"{"name":"n","value":-5,"b":"7","counts":{"k":3},"inner":{"flag":true},"color":"GREEN"}"#
    #expect(try codec.roundTrip(json, as: method.input) == json)
    #expect(try codec.roundTrip("{}", as: method.output) == #"{"name":"","value":0,"counts":{},"color":"RED"}"#)
  }

  @Test(
    "The largest field number and those just around the reserved range are fine",
    arguments: [
      536_870_911, 18_999, 20_000,
    ] as [Int32])
  func boundaryNumbers(number: Int32) throws {
    let registry = try DescriptorRegistry(
      fileDescriptorSet: Self.set { $0.field[Self.index($0, "value")].number = number })
    let message = try #require(registry.message(fullName: "pkg.M"))
    let codec = JSONCodec(registry: registry)
    let binary = try codec.binary(fromJSON: #"{"value":42}"#, as: message)
    #expect(try codec.jsonString(fromBinary: binary, as: message).contains(#""value":42"#))
  }

  @Test("A field given by type_name alone takes the kind of the type it names")
  func typeNameAlone() throws {
    let registry = try DescriptorRegistry(
      fileDescriptorSet: Self.set {
        $0.field[Self.index($0, "inner")].clearType()
        $0.field[Self.index($0, "color")].clearType()
      })
    let message = try #require(registry.message(fullName: "pkg.M"))
    let json = #"{"name":"","value":0,"counts":{},"inner":{"flag":true},"color":"GREEN"}"#
    #expect(try JSONCodec(registry: registry).roundTrip(json, as: message) == json)
  }

  // MARK: - Field numbers

  @Test(
    "A field number outside 1...536870911 is refused, naming the field",
    arguments: [
      Int32.max, 0, -1, Int32.min, 536_870_912,
    ])
  func numberOutOfRange(number: Int32) throws {
    let error = try Self.loadError(Self.set { $0.field[Self.index($0, "value")].number = number })
    #expect(error.code == .invalidDescriptor)
    #expect(
      error.message
        == "descriptor set: file \"x.proto\": message \"pkg.M\" field \"value\": number \(number) is outside 1...536870911"
    )
  }

  @Test(
    "A field number in the reserved 19000...19999 is refused, naming the field",
    arguments: [
      19_000, 19_500, 19_999,
    ] as [Int32])
  func reservedNumber(number: Int32) throws {
    let error = try Self.loadError(Self.set { $0.field[Self.index($0, "value")].number = number })
    #expect(error.code == .invalidDescriptor)
    #expect(error.message.contains(#"message "pkg.M" field "value": number \#(number) is in 19000...19999"#))
  }

  @Test("A bad number in a nested message or a map entry names that message")
  func nestedNumber() throws {
    var error = try Self.loadError(Self.set { $0.nestedType[1].field[0].number = .max })
    #expect(error.message.contains(#"message "pkg.M.Inner" field "flag": number 2147483647"#))
    error = try Self.loadError(Self.set { $0.nestedType[0].field[1].number = -3 })
    #expect(error.message.contains(#"message "pkg.M.CountsEntry" field "value": number -3"#))
  }

  @Test("Two fields with one number, or one name, are refused")
  func duplicates() throws {
    var error = try Self.loadError(Self.set { $0.field[Self.index($0, "value")].number = 1 })
    #expect(error.message.contains(#"field "value": number 1 is also the number of field "name""#))
    error = try Self.loadError(Self.set { $0.field[Self.index($0, "value")].name = "name" })
    #expect(error.message.contains(#"message "pkg.M" field "name": the message declares the name twice"#))
    // proto3: two fields that one JSON key would name.
    error = try Self.loadError(Self.set { $0.field.append(Self.field("inner_", 8, .int32)) })
    #expect(error.message.contains(#"field "inner_": JSON name "inner" also names field "inner""#))
  }

  // MARK: - Oneofs

  @Test(
    "A oneof_index outside the message's oneofs is refused, naming the field",
    arguments: [
      1, 2, 1000, -1, Int32.min, Int32.max,
    ] as [Int32])
  func oneofIndexOutOfRange(index: Int32) throws {
    let error = try Self.loadError(Self.set { $0.field[Self.index($0, "a")].oneofIndex = index })
    #expect(error.code == .invalidDescriptor)
    #expect(
      error.message
        == "descriptor set: file \"x.proto\": message \"pkg.M\" field \"a\": oneof_index \(index) is not in 0..<1")
  }

  @Test("A oneof_index in a message without oneofs, a repeated member and an empty oneof are refused")
  func oneofShapes() throws {
    var error = try Self.loadError(Self.set { $0.nestedType[1].field[0].oneofIndex = 0 })
    #expect(
      error.message.contains(#"message "pkg.M.Inner" field "flag": oneof_index 0 but the message declares no oneof"#))
    error = try Self.loadError(Self.set { $0.field[Self.index($0, "a")].label = .repeated })
    #expect(error.message.contains(#"field "a": a repeated field cannot be a member of a oneof"#))
    error = try Self.loadError(Self.set { $0.oneofDecl.append(.with { $0.name = "other" }) })
    #expect(error.message.contains(#"message "pkg.M" oneof "other": it has no fields"#))
  }

  // MARK: - Types

  @Test("A type name that the set does not declare is refused, naming the field")
  func unresolvableType() throws {
    var error = try Self.loadError(Self.set { $0.field[Self.index($0, "inner")].typeName = ".pkg.Missing" })
    #expect(error.code == .unknownType)
    #expect(
      error.message
        == #"descriptor set: file "x.proto": message "pkg.M" field "inner": type ".pkg.Missing" is not a message of the set"#
    )
    // An enum where a message belongs, and the other way round.
    error = try Self.loadError(Self.set { $0.field[Self.index($0, "inner")].typeName = ".pkg.M.Color" })
    #expect(error.message.contains(#"field "inner": type ".pkg.M.Color" is not a message of the set"#))
    error = try Self.loadError(Self.set { $0.field[Self.index($0, "color")].typeName = ".pkg.M.Inner" })
    #expect(error.message.contains(#"field "color": type ".pkg.M.Inner" is not an enum of the set"#))
    // A scalar that names a type, and a field with no type at all.
    error = try Self.loadError(Self.set { $0.field[Self.index($0, "value")].typeName = ".pkg.M.Inner" })
    #expect(error.message.contains(#"field "value": a field of type int32 cannot name a type"#))
    error = try Self.loadError(Self.set { $0.field[Self.index($0, "value")].clearType() })
    #expect(error.message.contains(#"field "value": it has neither a type nor a type_name"#))
  }

  @Test("A method whose input or output type is missing is refused, naming the method")
  func unresolvableMethodType() throws {
    var file = Self.file()
    file.service[0].method[0].outputType = ".pkg.Gone"
    let error = try Self.loadError(Self.set(file))
    #expect(error.code == .unknownType)
    #expect(
      error.message.contains(#"service "pkg.S" method "Call": output type ".pkg.Gone" is not a message of the set"#))
  }

  // MARK: - Map entries

  @Test("Malformed map entries are refused, naming the entry and the field")
  func mapEntries() throws {
    var error = try Self.loadError(Self.set { $0.nestedType[0].field[0].type = .double })
    #expect(
      error.message.contains(
        #"message "pkg.M.CountsEntry" field "key": a map key must be an integer, bool or string type, not double"#))
    error = try Self.loadError(Self.set { $0.nestedType[0].field.append(Self.field("extra", 3, .int32)) })
    #expect(error.message.contains(#"message "pkg.M.CountsEntry": a map entry must have exactly the fields"#))
    error = try Self.loadError(Self.set { $0.nestedType[0].field[1].name = "val" })
    #expect(error.message.contains(#"message "pkg.M.CountsEntry": a map entry must have exactly the fields"#))
    error = try Self.loadError(Self.set { $0.nestedType[0].field[1].label = .repeated })
    #expect(
      error.message.contains(#"message "pkg.M.CountsEntry" field "value": a map entry's field cannot be repeated"#))
    error = try Self.loadError(Self.set { $0.field[Self.index($0, "counts")].label = .optional })
    #expect(error.message.contains(#"field "counts": map entry type ".pkg.M.CountsEntry" needs a repeated field"#))
  }

  // MARK: - Names

  @Test("Empty and unquotable names are refused", arguments: ["", "a\"b", "a b", "1x", "na\u{0}me", "é"])
  func badFieldNames(name: String) throws {
    let error = try Self.loadError(Self.set { $0.field[Self.index($0, "value")].name = name })
    #expect(error.message.contains("message \"pkg.M\" field \(name.debugDescription): the name is not an identifier"))
  }

  @Test("A json_name that would need escaping in the JSON output is refused", arguments: ["", "a\"b", "a\\b", "a\nb"])
  func badJSONNames(jsonName: String) throws {
    let error = try Self.loadError(Self.set { $0.field[Self.index($0, "value")].jsonName = jsonName })
    #expect(error.message.contains(#"message "pkg.M" field "value": json_name"#))
  }

  @Test("Bad message, package, enum and file names are refused")
  func otherNames() throws {
    var error = try Self.loadError(Self.set { $0.name = "" })
    #expect(error.message.contains(#"message "pkg.": the name is not an identifier"#))
    error = try Self.loadError(Self.set { $0.enumType[0].value[1].name = "RED" })
    #expect(error.message.contains(#"enum "pkg.M.Color" value "RED": the enum declares the name twice"#))
    error = try Self.loadError(Self.set { $0.enumType[0].value = [] })
    #expect(error.message.contains(#"enum "pkg.M.Color": it has no values"#))
    error = try Self.loadError(Self.set { $0.nestedType.append(.with { $0.name = "Inner" }) })
    #expect(error.message.contains(#"message "pkg.M.Inner": the file declares it twice"#))
    var file = Self.file()
    file.package = "pkg..x"
    error = try Self.loadError(Self.set(file))
    #expect(error.message.contains(#"package "pkg..x": the name is not a dotted identifier"#))
    file = Self.file()
    file.name = ""
    error = try Self.loadError(Self.set(file))
    #expect(error.message == #"descriptor set: file "": the file has no name"#)
  }

  @Test("A long name is cut in the error")
  func longName() throws {
    let name = String(repeating: "x", count: 10_000) + "-"
    let error = try Self.loadError(Self.set { $0.field[Self.index($0, "value")].name = name })
    #expect(error.message.count < 300)
    #expect(error.message.contains(#"field "xxxx"#))
  }

  @Test("An extension's number is checked too")
  func extensionNumber() throws {
    var file = Self.file()
    file.extension = [
      .with {
        $0.name = "ext"; $0.number = .max; $0.type = .int32; $0.label = .optional; $0.extendee = ".pkg.M"
      }
    ]
    let error = try Self.loadError(Self.set(file))
    #expect(error.message.contains(#"extension "pkg.ext": number 2147483647 is outside 1...536870911"#))
  }

  // MARK: - Nesting

  /// M with `depth` levels of nested messages below it: `message M { message N1 { message N2 ...`.
  static func nested(depth: Int) throws -> [UInt8] {
    var innermost = Google_Protobuf_DescriptorProto.with { $0.name = "N\(depth)" }
    for level in stride(from: depth - 1, through: 1, by: -1) {
      let inner = innermost
      innermost = .with {
        $0.name = "N\(level)"
        $0.nestedType = [inner]
      }
    }
    let top = innermost
    return try set { $0.nestedType.append(top) }
  }

  @Test("Message declarations may nest 64 levels deep, not 65")
  func deepNesting() throws {
    // M is level 1, so N63 is the 64th.
    _ = try DescriptorRegistry(fileDescriptorSet: Self.nested(depth: 63))
    let error = try Self.loadError(Self.nested(depth: 64))
    #expect(error.code == .invalidDescriptor)
    // The name is cut at 100 characters.
    #expect(error.message.hasPrefix(#"descriptor set: file "x.proto": message "pkg.M.N1.N2.N3."#))
    #expect(error.message.hasSuffix(#"…": message declarations nest deeper than 64 levels"#))
  }

  @Test("A set nested beyond the parser's limit is a clean error too")
  func deeperThanTheParser() throws {
    let error = try Self.loadError(Self.nested(depth: 500))
    #expect(error.code == .invalidDescriptor)
  }

  // MARK: - Second line: what loads never traps

  /// A look-alike of a well-known type (other kinds than the real one's) is an ordinary message:
  /// the special code would slice a type URL out of a varint.
  @Test("A well-known type with other field kinds is translated as an ordinary message")
  func wellKnownLookAlike() throws {
    let file = Google_Protobuf_FileDescriptorProto.with {
      $0.name = "google/protobuf/any.proto"
      $0.package = "google.protobuf"
      $0.syntax = "proto3"
      $0.messageType = [
        .with {
          $0.name = "Any"
          $0.field = [Self.field("type_url", 1, .int64), Self.field("value", 2, .int64)]
        },
        .with {
          $0.name = "Timestamp"
          $0.field = [Self.field("seconds", 1, .string), Self.field("nanos", 2, .string)]
        },
      ]
    }
    let registry = try DescriptorRegistry(fileDescriptorSet: Self.set(file))
    let codec = JSONCodec(registry: registry)
    let any = try #require(registry.message(fullName: "google.protobuf.Any"))
    let huge: [UInt8] = [0x08] + [UInt8](repeating: 0xFF, count: 9) + [0x01]
    #expect(try codec.jsonString(fromBinary: huge, as: any) == #"{"typeUrl":"-1","value":"0"}"#)
    let timestamp = try #require(registry.message(fullName: "google.protobuf.Timestamp"))
    #expect(try codec.roundTrip(#"{"seconds":"a","nanos":"b"}"#, as: timestamp) == #"{"seconds":"a","nanos":"b"}"#)
  }

  @Test("Several sets load as one, and a bad one among them refuses the whole")
  func severalSets() throws {
    let good = try Self.set(Self.file())
    var other = Self.file { $0.field[Self.index($0, "b")].oneofIndex = 7 }
    other.name = "y.proto"
    other.package = "other"
    other.service[0].method[0].inputType = ".other.M"
    other.service[0].method[0].outputType = ".other.M"
    let error = try #require(throws: CodecError.self) {
      try DescriptorRegistry(fileDescriptorSets: [good, Self.set(other)])
    }
    #expect(error.message.contains(#"file "y.proto": message "other.M" field "b": oneof_index 7 is not in 0..<1"#))
  }
}
