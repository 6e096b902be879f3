import SluiceCodec
import SluiceProtos
import Testing

@Suite("JSONCodec on the hosted services' messages")
struct JSONCodecTests {
  let registry: DescriptorRegistry
  let codec: JSONCodec
  let request: MessageDescriptor

  init() throws {
    registry = try DescriptorRegistry(fileDescriptorSet: SluiceDescriptors.fileDescriptorSet)
    codec = JSONCodec(registry: registry)
    request = try #require(registry.message(fullName: "proto.StreamRequest"))
  }

  @Test("A request round-trips with defaults emitted and unset messages omitted")
  func roundTrip() throws {
    #expect(try codec.roundTrip(#"{"pt":{"name":"a","value":1}}"#, as: request) == #"{"pt":{"name":"a","value":1}}"#)
    #expect(try codec.roundTrip(#"{"pt":{}}"#, as: request) == #"{"pt":{"name":"","value":0}}"#)
    #expect(try codec.roundTrip(#"{}"#, as: request) == #"{}"#)
    #expect(try codec.roundTrip(#"{"pt":null}"#, as: request) == #"{}"#)
    let quiet = JSONCodec(registry: registry, encoding: .init(emitDefaultValues: false))
    #expect(try quiet.roundTrip(#"{"pt":{"value":0}}"#, as: request) == #"{"pt":{}}"#)
  }

  @Test("Binary is the protobuf encoding")
  func binary() throws {
    #expect(
      try codec.binary(fromJSON: #"{"pt":{"name":"a","value":1}}"#, as: request) == [0x0A, 5, 0x0A, 1, 0x61, 0x10, 1])
    #expect(
      try codec.binary(fromJSON: #"{"pt":{"value":-1}}"#, as: request) == [0x0A, 11, 0x10]
        + [UInt8](repeating: 0xFF, count: 9) + [1])
    #expect(try codec.binary(fromJSON: #" { "pt" : { "value" : "7" } } "#, as: request) == [0x0A, 2, 0x10, 7])
    #expect(try codec.binary(fromJSON: #"{"pt":{"value":1e2}}"#, as: request) == [0x0A, 2, 0x10, 100])
  }

  @Test(
    "Bad input yields an error that says what and where",
    arguments: [
      (
        #"{"pt":{"value":"abc"}}"#, CodecError.Code.invalidValue,
        #"invalid value for field pt.value: expected int32, got "abc""#
      ),
      (#"{"pt":{"vlaue":1}}"#, .unknownField, #"unknown field "pt.vlaue""#),
      (
        #"{"pt":{"value":3000000000}}"#, .invalidValue,
        "invalid value for field pt.value: value 3000000000 is out of range for int32"
      ),
      (#"{"pt":{"value":1.5}}"#, .invalidValue, "invalid value for field pt.value: expected int32, got 1.5"),
      (#"{"pt":{"name":1}}"#, .invalidValue, "invalid value for field pt.name: expected string, got 1"),
      (
        #"{"pt":[]}"#, .invalidValue, "invalid value for field pt: expected an object (proto.StreamPoint), got an array"
      ),
      (#"{"pt":{"value":1,"value":2}}"#, .malformedJSON, #"malformed JSON at byte 17: duplicate key "value""#),
      (#"{"pt":{"name":"a"}"#, .malformedJSON, "malformed JSON at byte 18: unexpected end of input in an object"),
      (#"{"pt":{"name":"a"}},"#, .malformedJSON, "malformed JSON at byte 19: unexpected data after the JSON value"),
      (#"[1]"#, .invalidValue, "expected an object (proto.StreamRequest), got an array"),
    ])
  func errors(json: String, code: CodecError.Code, message: String) {
    do {
      _ = try codec.binary(fromJSON: json, as: request)
      Issue.record("no error for \(json)")
    } catch {
      #expect(error.code == code)
      #expect(error.message == message)
    }
  }

  @Test("Unknown fields can be ignored")
  func ignoreUnknown() throws {
    let lenient = JSONCodec(registry: registry, decoding: .init(ignoreUnknownFields: true))
    #expect(try lenient.binary(fromJSON: #"{"pt":{"vlaue":1,"x":{"y":[1]}},"z":null}"#, as: request) == [0x0A, 0])
  }

  @Test("Size and depth limits are enforced")
  func limits() throws {
    let small = JSONCodec(registry: registry, decoding: .init(maximumDepth: 3, maximumBytes: 20))
    #expect(throws: CodecError(code: .tooLarge, reason: "JSON text exceeds the limit of 20 bytes")) {
      try small.binary(fromJSON: #"{"pt":{"name":"abcdefghij"}}"#, as: request)
    }
    let deep = String(repeating: "[", count: 4) + String(repeating: "]", count: 4)
    #expect(throws: CodecError(code: .tooDeep, reason: "JSON nesting exceeds the limit of 3")) {
      try small.parseJSON(deep)
    }
    let veryDeep = String(repeating: "[", count: 100_000)
    #expect(throws: CodecError.self) { try codec.parseJSON(veryDeep) }
  }

  @Test("Wire bytes: unknown fields are skipped, truncated data is an error")
  func wire() throws {
    // pt { value: 1 }, then unknown field 9 (varint), then unknown field 10 (group with a varint inside).
    let bytes: [UInt8] = [0x0A, 2, 0x10, 1, 0x48, 5, 0x53, 0x08, 1, 0x54]
    #expect(try codec.jsonString(fromBinary: bytes, as: request) == #"{"pt":{"name":"","value":1}}"#)
    #expect(throws: CodecError.self) { try codec.json(fromBinary: [0x0A, 5, 0x10], as: request) }
    #expect(throws: CodecError.self) { try codec.json(fromBinary: [0x0A, 1, 0x80], as: request) }
    #expect(throws: CodecError.self) { try codec.json(fromBinary: [0x0F], as: request) }
    #expect(throws: CodecError.self) { try codec.json(fromBinary: [0x00], as: request) }
    // A tag is at most 5 bytes: field 1 (wire type 0) spelled in 9 is refused, as protobuf does
    // (conformance: BadTag_OverlongVarint); in 5 it is still field 1.
    let overlong: [UInt8] = [0x88, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x01]
    #expect(throws: CodecError.self) { try codec.json(fromBinary: overlong, as: request) }
    let fiveBytes: [UInt8] = [0x8A, 0x80, 0x80, 0x80, 0x00, 0x00]
    #expect(try codec.jsonString(fromBinary: fiveBytes, as: request) == #"{"pt":{"name":"","value":0}}"#)
  }

  @Test("A parsed frame splits into control keys and a message")
  func parsedFrames() throws {
    let value = try codec.parseJSON(#"{"$end":true}"#)
    #expect(value == .object(["$end": .bool(true)]))
    let end: JSONValue = .object(["$end": .object(["code": .integer(5), "message": .string("not \"found\"")])])
    #expect(end.serialized == #"{"$end":{"code":5,"message":"not \"found\""}}"#)
    let message = try codec.parseJSON(#"{"pt":{"name":"x"}}"#)
    #expect(try codec.binary(from: message, as: request) == [0x0A, 3, 0x0A, 1, 0x78])
  }
}

extension JSONCodecTests {
  @Test("JSON can be appended to an existing buffer, which is left intact on error")
  func appendJSON() throws {
    let response = try #require(registry.message(fullName: "proto.StreamResponse"))
    var body = Array("{\"first\":1}\n".utf8)
    try codec.appendJSON(fromBinary: [0x0A, 2, 0x10, 3], as: response, to: &body)
    body.append(UInt8(ascii: "\n"))
    #expect(String(decoding: body, as: UTF8.self) == "{\"first\":1}\n{\"pt\":{\"name\":\"\",\"value\":3}}\n")
    let before = body
    #expect(throws: CodecError.self) { try codec.appendJSON(fromBinary: [0x0A, 9, 0x10], as: response, to: &body) }
    #expect(body == before)
  }
}
