import SluiceCodec
import Testing

/// Targeted cases on Protos/codec_test.proto: every mapping rule, with exact expected text.
@Suite("JSON mapping rules on codec_test.proto")
struct CodecTestProtoTests {
  let protos: GeneratedTestProtos
  let codec: JSONCodec
  let everything: MessageDescriptor
  let quiet: JSONCodec

  init() throws {
    protos = try Fixture.protos()
    codec = JSONCodec(registry: protos.registry)
    quiet = JSONCodec(registry: protos.registry, encoding: .init(emitDefaultValues: false))
    everything = try protos.message("codectest.Everything")
  }

  /// JSON in, compact JSON (defaults off) out.
  func normalized(_ json: String) throws -> String {
    try quiet.roundTrip(json, as: everything)
  }

  func error(_ json: String) -> CodecError? {
    do {
      _ = try codec.binary(fromJSON: json, as: everything)
      return nil
    } catch {
      return error
    }
  }

  @Test(
    "Inputs in every accepted spelling normalize to the canonical output",
    arguments: [
      // Names: lowerCamelCase, proto name, json_name.
      (#"{"snake_case_field_name":1,"customName":"x"}"#, #"{"customName":"x","snakeCaseFieldName":1}"#),
      (#"{"json_named":"x"}"#, #"{"customName":"x"}"#),
      // 64-bit integers: numbers or strings in, strings out; exponents when integral.
      (
        #"{"scalars":{"fInt64":-9223372036854775808,"fUint64":"18446744073709551615","fSint64":1e3}}"#,
        #"{"scalars":{"fInt64":"-9223372036854775808","fUint64":"18446744073709551615","fSint64":"1000"}}"#
      ),
      (
        #"{"scalars":{"fInt32":"-2147483648","fUint32":4294967295,"fFixed64":"0","fSfixed32":-1.0}}"#,
        #"{"scalars":{"fInt32":-2147483648,"fUint32":4294967295,"fSfixed32":-1}}"#
      ),
      // Floats: special values, strings, shortest round-trip text.
      (
        #"{"scalars":{"fDouble":"NaN","fFloat":"-Infinity"},"rDouble":["Infinity",0.1,"2.5",1e300]}"#,
        #"{"scalars":{"fDouble":"NaN","fFloat":"-Infinity"},"rDouble":["Infinity",0.1,2.5,1e+300]}"#
      ),
      (#"{"scalars":{"fFloat":0.1}}"#, #"{"scalars":{"fFloat":0.1}}"#),
      // Enums: names or numbers in (unknown numbers stay numbers), names out.
      (
        #"{"rEnum":["RED",2,-1,7],"optEnum":"COLOR_UNSPECIFIED"}"#,
        #"{"rEnum":["RED","GREEN","NEGATIVE",7],"optEnum":"COLOR_UNSPECIFIED"}"#
      ),
      // Bytes: URL-safe or standard, padding optional; standard with padding out.
      (
        #"{"scalars":{"fBytes":"-_8"},"rBytes":["+/8=","AQ","AQI"]}"#,
        #"{"scalars":{"fBytes":"+/8="},"rBytes":["+/8=","AQ==","AQI="]}"#
      ),
      // Maps with every key kind.
      (
        #"{"mInt32":{"-1":"a"},"mInt64":{"9223372036854775807":"1"},"mUint32":{"4294967295":{}},"mUint64":{"18446744073709551615":""},"mSint32":{"-2":"RED"},"mSint64":{"-3":1.5},"mFixed32":{"4":true},"mFixed64":{"5":2},"mSfixed32":{"-6":"7"},"mSfixed64":{"-7":"1970-01-01T00:00:01Z"},"mBool":{"false":"f","true":"t"},"mString":{"":{"name":"n"}}}"#,
        #"{"mInt32":{"-1":"a"},"mInt64":{"9223372036854775807":"1"},"mUint32":{"4294967295":{}},"mUint64":{"18446744073709551615":""},"mSint32":{"-2":"RED"},"mSint64":{"-3":1.5},"mFixed32":{"4":true},"mFixed64":{"5":2},"mSfixed32":{"-6":"7"},"mSfixed64":{"-7":"1970-01-01T00:00:01Z"},"mBool":{"false":"f","true":"t"},"mString":{"":{"name":"n"}}}"#
      ),
      // oneof and optional: presence keeps default values.
      (
        #"{"oInt64":0,"optInt32":0,"optString":"","optBool":false}"#,
        #"{"oInt64":"0","optInt32":0,"optString":"","optBool":false}"#
      ),
      (#"{"oString":null,"oInt64":"5"}"#, #"{"oInt64":"5"}"#),
      // Well-known types.
      (
        #"{"timestamp":"2024-02-29T23:59:59.5+01:00","duration":"-0.000001s","fieldMask":"a.bC,d","empty":{}}"#,
        #"{"timestamp":"2024-02-29T22:59:59.500Z","duration":"-0.000001s","fieldMask":"a.bC,d","empty":{}}"#
      ),
      (
        #"{"rTimestamp":["0001-01-01T00:00:00Z","9999-12-31T23:59:59.999999999Z","1970-01-01T00:00:00.000001Z"]}"#,
        #"{"rTimestamp":["0001-01-01T00:00:00Z","9999-12-31T23:59:59.999999999Z","1970-01-01T00:00:00.000001Z"]}"#
      ),
      (
        #"{"rDuration":["315576000000s","-315576000000.999999999s","0s","1.1s"]}"#,
        #"{"rDuration":["315576000000s","-315576000000.999999999s","0s","1.100s"]}"#
      ),
      (
        #"{"structValue":{"a":[1,"x",null,true,{"b":{}}]},"value":null,"listValue":[[],{}],"rValue":[null,1]}"#,
        #"{"structValue":{"a":[1,"x",null,true,{"b":{}}]},"value":null,"listValue":[[],{}],"rValue":[null,1]}"#
      ),
      (#"{"mValue":{"k":null},"nullValue":null}"#, #"{"mValue":{"k":null}}"#),
      (
        #"{"wDouble":"NaN","wFloat":0,"wInt64":5,"wUint64":"6","wInt32":-1,"wUint32":2,"wBool":false,"wString":"","wBytes":"AA"}"#,
        #"{"wDouble":"NaN","wFloat":0,"wInt64":"5","wUint64":"6","wInt32":-1,"wUint32":2,"wBool":false,"wString":"","wBytes":"AA=="}"#
      ),
      (#"{"rWInt32":[0,1]}"#, #"{"rWInt32":[0,1]}"#),
      (
        #"{"any":{"value":"1.5s","@type":"type.googleapis.com/google.protobuf.Duration"}}"#,
        #"{"any":{"@type":"type.googleapis.com/google.protobuf.Duration","value":"1.500s"}}"#
      ),
      (
        #"{"rAny":[{"@type":"x/codectest.Nested","name":"n","child":{"value":1}},{},{"@type":"t/google.protobuf.Empty"},{"@type":"t/google.protobuf.Any","value":{"@type":"t/google.protobuf.Int32Value","value":3}}]}"#,
        #"{"rAny":[{"@type":"x/codectest.Nested","name":"n","child":{"value":1}},{},{"@type":"t/google.protobuf.Empty"},{"@type":"t/google.protobuf.Any","value":{"@type":"t/google.protobuf.Int32Value","value":3}}]}"#
      ),
      // Recursion, strings with escapes and non-BMP characters.
      (
        #"{"recursive":{"recursive":{"nested":{"child":{"name":"\ud83d\ude00\u0000\"\\\/é"}}}}}"#,
        #"{"recursive":{"recursive":{"nested":{"child":{"name":"😀\u0000\"\\/é"}}}}}"#
      ),
      (#"{"largeFieldNumber":1}"#, #"{"largeFieldNumber":1}"#),
      // Field-mask case is ASCII case: U+01BA `ƺ` counts as both upper- and lowercase in Unicode
      // (found by libFuzzer: "ƺ41" became the binary path "_ƺ41" and did not translate back).
      (#"{"fieldMask":"ƺ41,aƺB.cD"}"#, #"{"fieldMask":"ƺ41,aƺB.cD"}"#),
    ])
  func normalizes(input: String, expected: String) throws {
    #expect(try normalized(input) == expected)
  }

  @Test(
    "Invalid values are rejected with the field's path",
    arguments: [
      (
        #"{"oString":"a","oInt64":1}"#, CodecError.Code.duplicateField,
        #"invalid value for field oInt64: oneof "choice" already has field "oString" set"#
      ),
      (
        #"{"customName":"a","json_named":"b"}"#, .duplicateField,
        #"invalid value for field json_named: field "json_named" is set more than once (as "customName" and "json_named")"#
      ),
      (#"{"rNested":[{},{"vlaue":1}]}"#, .unknownField, #"unknown field "rNested[1].vlaue""#),
      (#"{"mInt32":{"x":"a"}}"#, .invalidValue, #"invalid value for field mInt32[x]: expected int32, got "x""#),
      (
        #"{"mBool":{"yes":"a"}}"#, .invalidValue,
        #"invalid value for field mBool[yes]: expected a bool map key ("true" or "false"), got "yes""#
      ),
      (
        #"{"rInt32":[1,null]}"#, .invalidValue,
        "invalid value for field rInt32[1]: null is not allowed in a repeated field"
      ),
      (
        #"{"scalars":{"fUint32":-1}}"#, .invalidValue,
        "invalid value for field scalars.fUint32: value -1 is out of range for uint32"
      ),
      (
        #"{"scalars":{"fUint64":"18446744073709551616"}}"#, .invalidValue,
        #"invalid value for field scalars.fUint64: value "18446744073709551616" is out of range for uint64"#
      ),
      (
        #"{"scalars":{"fFloat":1e39}}"#, .invalidValue,
        "invalid value for field scalars.fFloat: value 1e39 is out of range for float"
      ),
      (
        #"{"scalars":{"fDouble":1e999}}"#, .invalidValue,
        "invalid value for field scalars.fDouble: value 1e999 is out of range for double"
      ),
      (
        #"{"scalars":{"fEnum":"PURPLE"}}"#, .invalidValue,
        #"invalid value for field scalars.fEnum: unknown value "PURPLE" for enum codectest.Color"#
      ),
      (
        #"{"scalars":{"fBool":"true"}}"#, .invalidValue,
        #"invalid value for field scalars.fBool: expected bool, got "true""#
      ),
      (
        #"{"scalars":{"fBytes":"a*b"}}"#, .invalidValue,
        #"invalid value for field scalars.fBytes: expected bytes (base64), got "a*b""#
      ),
      (
        #"{"timestamp":"2023-02-29T00:00:00Z"}"#, .invalidValue,
        #"invalid value for field timestamp: expected an RFC 3339 timestamp between years 0001 and 9999, got "2023-02-29T00:00:00Z""#
      ),
      (
        #"{"duration":"315576000001s"}"#, .invalidValue,
        #"invalid value for field duration: expected a duration like "1.5s" within ±315576000000s, got "315576000001s""#
      ),
      (#"{"fieldMask":"a_b"}"#, .invalidValue, #"invalid value for field fieldMask: invalid field mask path "a_b""#),
      (
        #"{"any":{"@type":"x/no.Such"}}"#, .unknownType,
        #"invalid value for field any.@type: type "no.Such" is not in the registry"#
      ),
      (
        #"{"any":{"name":"x"}}"#, .invalidValue,
        #"invalid value for field any: google.protobuf.Any needs an "@type" member"#
      ),
      (
        #"{"value":{"a":1e999}}"#, .invalidValue,
        "invalid value for field value.a: value 1e999 is out of range for a double"
      ),
      (
        #"{"structValue":[]}"#, .invalidValue,
        "invalid value for field structValue: expected an object (Struct), got an array"
      ),
      (
        "{\"scalars\":{\"fString\":\"\u{1}\"}}", .malformedJSON,
        "malformed JSON at byte 23: control character in a string"
      ),
      (
        #"{"scalars":{"fString":"\ud800"}}"#, .malformedJSON,
        #"malformed JSON at byte 29: unpaired surrogate in a \u escape"#
      ),
      (#"{"a":01}"#, .malformedJSON, "malformed JSON at byte 6: leading zero in a number"),
      (#"{"a":1,}"#, .malformedJSON, "malformed JSON at byte 7: expected a string key"),
    ])
  func rejects(input: String, code: CodecError.Code, message: String) {
    let error = error(input)
    #expect(error?.code == code)
    #expect(error?.message == message)
  }

  @Test("Invalid UTF-8 in JSON text and in wire strings is rejected")
  func invalidUTF8() throws {
    for bad: [UInt8] in [[0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [0xFF]] {
      let json = Array(#"{"customName":""#.utf8) + bad + Array(#""}"#.utf8)
      #expect(throws: CodecError.self) { try codec.binary(fromJSON: json, as: everything) }
      let wire: [UInt8] = [0xC2, 0x07, UInt8(bad.count)] + bad  // field 120, wire type 2
      #expect(throws: CodecError.self) { try codec.json(fromBinary: wire, as: everything) }
    }
  }

  @Test("Default values are emitted for fields without presence; unset messages are not")
  func defaults() throws {
    let nested = try protos.message("codectest.Nested")
    #expect(
      try codec.jsonString(fromBinary: [], as: nested)
        == #"{"name":"","value":0,"children":[],"color":"COLOR_UNSPECIFIED"}"#)
    let scalars = try protos.message("codectest.Scalars")
    #expect(
      try codec.jsonString(fromBinary: [], as: scalars)
        == #"{"fDouble":0,"fFloat":0,"fInt32":0,"fInt64":"0","fUint32":0,"fUint64":"0","fSint32":0,"fSint64":"0","fFixed32":0,"fFixed64":"0","fSfixed32":0,"fSfixed64":"0","fBool":false,"fString":"","fBytes":"","fEnum":"COLOR_UNSPECIFIED"}"#
    )
    let everythingJSON = try codec.jsonString(fromBinary: [], as: everything)
    #expect(everythingJSON.contains(#""mInt32":{}"#) && everythingJSON.contains(#""rNested":[]"#))
    #expect(everythingJSON.contains(#""nullValue":null"#))
    #expect(
      !everythingJSON.contains("optInt32") && !everythingJSON.contains("timestamp")
        && !everythingJSON.contains("oString"))
  }

  @Test("Output options: proto names and enum numbers")
  func outputOptions() throws {
    let options = JSONCodec(
      registry: protos.registry,
      encoding: .init(emitDefaultValues: false, preserveProtoNames: true, enumsAsIntegers: true))
    let binary = try codec.binary(
      fromJSON: #"{"customName":"x","rEnum":["BLUE"],"snakeCaseFieldName":2}"#, as: everything)
    #expect(
      try options.jsonString(fromBinary: binary, as: everything)
        == #"{"r_enum":[3],"json_named":"x","snake_case_field_name":2}"#)
  }

  @Test("Unknown enum names are dropped when unknown fields are ignored")
  func ignoreUnknownEnums() throws {
    let lenient = JSONCodec(
      registry: protos.registry, encoding: .init(emitDefaultValues: false), decoding: .init(ignoreUnknownFields: true))
    let binary = try lenient.binary(
      fromJSON: #"{"optEnum":"PURPLE","rEnum":["RED","PURPLE"],"mSint32":{"1":"PURPLE"},"zzz":1}"#, as: everything)
    #expect(try lenient.jsonString(fromBinary: binary, as: everything) == #"{"rEnum":["RED"]}"#)
  }

  @Test("Wire data: packed and unpacked repeated, merged messages, last oneof member, duplicate map keys")
  func wireSemantics() throws {
    var wire: [UInt8] = []
    wire += [0x22, 0x02, 0x01, 0x02]  // r_int32 packed [1, 2]
    wire += [0x20, 0x03]  // r_int32 unpacked 3
    wire += [0xF0, 0x01, 0x05, 0xF0, 0x01, 0x06]  // u_int32 (30) unpacked 5, 6
    wire += [0xF2, 0x01, 0x01, 0x07]  // u_int32 packed 7 (accepted although declared unpacked)
    wire += [0x82, 0x05, 0x02, 0x0A, 0x00]  // nested (80) { name: "" }
    wire += [0x82, 0x05, 0x02, 0x10, 0x04]  // nested again: merges { value: 4 }
    wire += [0xE2, 0x03, 0x01, 0x61]  // o_string (60) "a"
    wire += [0xE8, 0x03, 0x09]  // o_int64 (61) 9: replaces o_string
    wire += [0xC2, 0x02, 0x04, 0x08, 0x01, 0x12, 0x00]  // m_int32 (40) {1: ""}
    wire += [0xC2, 0x02, 0x05, 0x08, 0x01, 0x12, 0x01, 0x62]  // m_int32 {1: "b"}: replaces
    wire += [0xC2, 0x02, 0x00]  // m_int32 entry with neither key nor value: {0: ""}
    let json = try quiet.jsonString(fromBinary: wire, as: everything)
    #expect(json == #"{"rInt32":[1,2,3],"uInt32":[5,6,7],"mInt32":{"1":"b","0":""},"oInt64":"9","nested":{"value":4}}"#)
  }

  @Test("Binary nesting deeper than the limit is an error, not a crash")
  func deepBinary() throws {
    var wire: [UInt8] = []
    for _ in 0..<200 { wire = [0x8A, 0x05] + varint(wire.count) + wire }  // recursive (81)
    #expect(throws: CodecError.self) { try codec.json(fromBinary: wire, as: everything) }
    let deepJSON = String(repeating: #"{"recursive":"#, count: 100) + "{}" + String(repeating: "}", count: 100)
    #expect(throws: CodecError.self) { try codec.binary(fromJSON: deepJSON, as: everything) }
  }

  func varint(_ value: Int) -> [UInt8] {
    var value = value
    var bytes: [UInt8] = []
    while value >= 0x80 {
      bytes.append(UInt8(value & 0x7F) | 0x80)
      value >>= 7
    }
    return bytes + [UInt8(value)]
  }
}
