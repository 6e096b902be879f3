import Foundation
import SluiceCodec
import Testing

/// Compares the codec with protobuf python's `json_format` on seeded random messages, both ways.
@Suite("Differential tests against protobuf python")
struct DifferentialTests {
  @Test(
    "JSON → binary and binary → JSON agree with protobuf python on random messages",
    arguments: [
      ("codectest.Everything", 1, 600), ("codectest.Scalars", 2, 300), ("codectest.Nested", 3, 100),
      ("codectest2.Legacy", 4, 300),
    ])
  func agreesWithPython(message fullName: String, seed: Int, count: Int) throws {
    let protos = try Fixture.protos()
    let message = try protos.message(fullName)
    let codec = JSONCodec(registry: protos.registry)
    let cases = protos.directory.appendingPathComponent("cases-\(seed).jsonl")
    let ours = protos.directory.appendingPathComponent("ours-\(seed).jsonl")
    defer {
      try? FileManager.default.removeItem(at: cases)
      try? FileManager.default.removeItem(at: ours)
    }
    let generated = try Fixture.run(
      [
        "python3", Fixture.referenceScript, "generate", protos.directory.path, fullName, String(seed), String(count),
        cases.path,
      ])
    try #require(generated.status == 0, "reference.py generate failed: \(generated.stderr)")

    var output = ""
    var caseCount = 0
    for line in try String(contentsOf: cases, encoding: .utf8).split(separator: "\n") {
      caseCount += 1
      let object = try #require(try codec.parseJSON(String(line)).objectValue)
      guard case .string(let json) = object["json"], case .string(let binaryBase64) = object["binary"],
        let binary = Data(base64Encoded: binaryBase64), case .string(let altJSON) = object["alt_json"],
        let options = object["options"]?.objectValue
      else {
        Issue.record("bad case line")
        continue
      }
      var result = JSONObject()
      do {
        let ourBinary = try codec.binary(fromJSON: json, as: message)
        result["binary"] = .string(Data(ourBinary).base64EncodedString())
        result["json"] = .string(try codec.jsonString(fromBinary: [UInt8](binary), as: message))
        let altBinary = try codec.binary(fromJSON: altJSON, as: message)
        result["alt_binary"] = .string(Data(altBinary).base64EncodedString())
        let altCodec = JSONCodec(
          registry: protos.registry,
          encoding: .init(
            emitDefaultValues: options["defaults"] == .bool(true), preserveProtoNames: options["names"] == .bool(true),
            enumsAsIntegers: options["ints"] == .bool(true)))
        result["alt_json"] = .string(try altCodec.jsonString(fromBinary: [UInt8](binary), as: message))
      } catch {
        result["error"] = .string(error.message)
      }
      output += JSONValue.object(result).serialized + "\n"
    }
    #expect(caseCount >= count * 9 / 10, "too few cases generated")
    try output.write(to: ours, atomically: true, encoding: .utf8)

    let checked = try Fixture.run(
      ["python3", Fixture.referenceScript, "check", protos.directory.path, fullName, cases.path, ours.path])
    try #require(checked.status == 0, "reference.py check failed: \(checked.stderr)")
    let summary = try #require(try codec.parseJSON(checked.stdout).objectValue)
    #expect(summary["total"] == .number(String(caseCount)))
    #expect(summary["failed"] == .number("0"), "\(checked.stdout)")
  }
}

extension DifferentialTests {
  /// Inputs near the edges of the mapping: the codec accepts exactly those protobuf python accepts.
  static let edgeInputs =
    [
      #"{"scalars":{"fInt32":"5"}}"#, #"{"scalars":{"fInt32":1e2}}"#, #"{"scalars":{"fInt64":5}}"#,
      #"{"scalars":{"fInt32":-0}}"#, #"{"scalars":{"fUint64":18446744073709551615}}"#,
      #"{"rEnum":[1]}"#, #"{"scalars":{"fBytes":"-_8"}}"#, #"{"scalars":{"fBytes":"AQ"}}"#,
      #"{"timestamp":"2024-01-01T00:00:00+01:00"}"#, #"{"timestamp":"2024-01-01T00:00:00.123456789Z"}"#,
      #"{"nullValue":null}"#, #"{"value":null}"#, #"{"scalars":null}"#, #"{"rValue":[null]}"#,
      #"{"scalars":{"fFloat":"Infinity","fDouble":"-Infinity"}}"#, #"{"scalars":{"fDouble":"1.5"}}"#,
      #"{"any":{}}"#, #"{"duration":"-0.5s"}"#, #"{"fieldMask":""}"#, #"{"mBool":{"true":"x"}}"#,
      #"{"scalars":{"fInt32":"abc"}}"#, #"{"scalars":{"fInt32":2147483648}}"#, #"{"scalars":{"fUint32":-1}}"#,
      #"{"scalars":{"fInt64":"9223372036854775808"}}"#, #"{"scalars":{"fUint64":"18446744073709551616"}}"#,
      #"{"scalars":{"fInt32":1.5}}"#, #"{"scalars":{"fBool":"true"}}"#, #"{"scalars":{"fBool":1}}"#,
      #"{"scalars":{"fString":1}}"#, #"{"scalars":{"fEnum":"PURPLE"}}"#, #"{"scalars":{"fFloat":1e39}}"#,
      #"{"scalars":{"fBytes":"*"}}"#, #"{"oString":"a","oInt64":"1"}"#, #"{"customName":"a","json_named":"b"}"#,
      #"{"nope":1}"#, #"{"rInt32":[1,null]}"#, #"{"rInt32":{}}"#, #"{"mInt32":{"a":"b"}}"#, #"{"mBool":{"1":"b"}}"#,
      #"{"timestamp":"2023-02-29T00:00:00Z"}"#, #"{"timestamp":"10000-01-01T00:00:00Z"}"#, #"{"duration":"1"}"#,
      #"{"duration":"315576000001s"}"#, #"{"any":{"@type":"x/no.Such"}}"#, #"{"structValue":[]}"#,
      #"{"a":1,"a":2}"#, #"{"scalars":{"fString":"\ud800"}}"#, #"{"listValue":{}}"#, #"{"scalars":[]}"#,
      #"{"rNested":[{"name":1}]}"#, #"{"oNested":{"child":{"value":"x"}}}"#, "1", #"{"#,
      #"{"mString":{"k":null}}"#, #"{"mInt32":{"1":null}}"#, #"{"optInt32":null}"#, #"{"oNested":null,"oString":"a"}"#,
      #"{"scalars":{"fEnum":"1"}}"#, #"{"timestamp":"2024-01-01T00:00:00z"}"#, #"{"timestamp":"2024-01-01t00:00:00Z"}"#,
      #"{"scalars":{"fInt32":" 5"}}"#, #"{"scalars":{"fFloat":"1e5"}}"#, #"{"scalars":{"fInt64":"1e3"}}"#,
      #"{"scalars":{"fInt64":1.0}}"#, #"{"scalars":{"fDouble":"nan"}}"#, #"{"scalars":{"fInt32":"0x10"}}"#,
      #"{"mInt32":{"01":"a"}}"#, #"{"mInt32":{" 1":"a"}}"#, #"{"mBool":{"True":"a"}}"#, #"{"fieldMask":"a,,b"}"#,
      #"{"fieldMask":"A"}"#, #"{"fieldMask":"a.B"}"#, #"{"duration":"-1.-5s"}"#, #"{"duration":".5s"}"#,
      #"{"timestamp":"2024-01-01T00:00:60Z"}"#, #"{"timestamp":"0000-12-31T23:59:59Z"}"#,
      #"{"timestamp":"0001-01-01T00:00:00+01:00"}"#, #"{"any":{"@type":"x/google.protobuf.Duration"}}"#,
      #"{"any":{"@type":"x/google.protobuf.Empty","value":{}}}"#, #"{"rWInt32":[null]}"#, #"{"wInt32":null}"#,
      #"{"scalars":{"fString":null}}"#, #"{"rEnum":["PURPLE"]}"#, #"{"scalars":{"fUint32":"4294967296"}}"#,
      #"{"scalars":{"fInt32":-2147483649}}"#, #"{"scalars":{"fSint32":1e10}}"#, #"{"scalars":{"fFloat":3.5e38}}"#,
      #"{"scalars":{"fDouble":1.8e308}}"#, #"{"mValue":{"a":null}}"#, #"{"structValue":{"a":null}}"#,
      #"{"listValue":[null]}"#, #"{"value":[{"a":[]}]}"#, #"{"scalars":{"fBytes":"AQ=="}}"#,
      #"{"scalars":{"fBytes":"AQ="}}"#, #"{"fieldMask":"ƺ41"}"#, #"{"fieldMask":"ƺB"}"#,
      #"{"scalars":{"fBytes":"A"}}"#, #"{"scalars":{"fBytes":"AQ\n"}}"#, #"{"nullValue":"NULL_VALUE"}"#,
      #"{"nullValue":0}"#, #"{"value":{"@type":"x"}}"#,
    ] + stricterThanPython

  /// Inputs protobuf python accepts and the codec rejects on purpose (python's leniencies):
  /// base64 with characters outside both alphabets or surplus padding (python drops them), one
  /// field set by both of its names (python keeps the last), an array where a message object
  /// belongs (python iterates it as an empty object), integers spelled the Python way (`+5`,
  /// `1_0`), `"inf"`, a fraction without digits or beyond nanoseconds, a type URL without `/`,
  /// and extra members beside `"value"` in an Any holding a well-known type.
  static let stricterThanPython = [
    #"{"scalars":{"fBytes":"*"}}"#, #"{"scalars":{"fBytes":"AQ==="}}"#, #"{"scalars":{"fBytes":"A=Q="}}"#,
    #"{"customName":"a","json_named":"b"}"#, #"{"scalars":[]}"#, "[]",
    #"{"scalars":{"fInt32":"+5"}}"#, #"{"scalars":{"fInt32":"1_0"}}"#, #"{"scalars":{"fDouble":"inf"}}"#,
    #"{"duration":"1.s"}"#, #"{"duration":"1.0000000001s"}"#, #"{"timestamp":"2024-01-01T00:00:00.Z"}"#,
    #"{"any":{"@type":"codectest.Nested"}}"#, #"{"any":{"@type":"x/google.protobuf.Duration","value":"1s","x":1}}"#,
  ]

  @Test("Edge inputs: accepted or rejected exactly as protobuf python does")
  func edgeInputsAgree() throws {
    let protos = try Fixture.protos()
    let message = try protos.message("codectest.Everything")
    let codec = JSONCodec(registry: protos.registry)
    let inputs = protos.directory.appendingPathComponent("edge-inputs.jsonl")
    defer { try? FileManager.default.removeItem(at: inputs) }
    try Self.edgeInputs.map { JSONValue.string($0).serialized }.joined(separator: "\n")
      .write(to: inputs, atomically: true, encoding: .utf8)
    let result = try Fixture.run(
      ["python3", Fixture.referenceScript, "accepts", protos.directory.path, "codectest.Everything", inputs.path])
    try #require(result.status == 0, "reference.py accepts failed: \(result.stderr)")
    guard case .array(let verdicts) = try codec.parseJSON(result.stdout) else {
      Issue.record("unexpected output \(result.stdout)")
      return
    }
    try #require(verdicts.count == Self.edgeInputs.count)
    for (input, verdict) in zip(Self.edgeInputs, verdicts) {
      let ours: Bool
      do {
        _ = try codec.binary(fromJSON: input, as: message)
        ours = true
      } catch {
        ours = false
      }
      if Self.stricterThanPython.contains(input) {
        #expect(!ours && verdict == .bool(true), "\(input): expected python to accept and the codec to reject")
      } else {
        #expect(
          .bool(ours) == verdict, "\(input): protobuf python \(verdict == .bool(true) ? "accepts" : "rejects") it")
      }
    }
  }
}

extension DifferentialTests {
  static let legacySeeds = [
    #"{"count":0,"label":"x","flag":true,"level":"HIGH","plain":[1,2],"packed":["-3","4"],"item":{"name":"n","size":"5"},"entry":[{"id":1},{}],"child":{"flag":false,"level":"LOW"},"levels":{"a":1},"ratio":0.5}"#,
    #"{"flag":false,"blob":"AAE=","entry":[{"id":7}],"child":{"flag":true,"item":{}}}"#,
  ]

  @Test(
    "Mutated wire bytes: the codec fails where protobuf python fails and prints the same JSON otherwise",
    arguments: [("codectest.Everything", 7), ("codectest.Everything", 8), ("codectest2.Legacy", 9)]
      as [(String, UInt64)])
  func mutatedWireAgrees(fullName: String, seed: UInt64) throws {
    let protos = try Fixture.protos()
    let message = try protos.message(fullName)
    let codec = JSONCodec(registry: protos.registry)
    let ours = protos.directory.appendingPathComponent("wire-ours-\(seed).jsonl")
    defer { try? FileManager.default.removeItem(at: ours) }
    let jsonSeeds = fullName == "codectest2.Legacy" ? Self.legacySeeds : FuzzTests.everythingSeeds
    let seeds = try jsonSeeds.map { try codec.binary(fromJSON: $0, as: message) }
    var random = FuzzTests.SplitMix64(state: seed)
    var output = ""
    for index in 0..<3000 {
      let input = FuzzTests.mutate(seeds[index % seeds.count], using: &random)
      var line: JSONObject = ["binary": .string(Data(input).base64EncodedString())]
      do {
        line["json"] = .string(try codec.jsonString(fromBinary: input, as: message))
      } catch {
        line["error"] = .string(error.message)
      }
      output += JSONValue.object(line).serialized + "\n"
    }
    try output.write(to: ours, atomically: true, encoding: .utf8)
    let checked = try Fixture.run(
      ["python3", Fixture.referenceScript, "wirecheck", protos.directory.path, fullName, ours.path])
    try #require(checked.status == 0, "reference.py wirecheck failed: \(checked.stderr)")
    let summary = try #require(try codec.parseJSON(checked.stdout).objectValue)
    #expect(summary["failed"] == .number("0"), "\(checked.stdout)")
  }
}

extension DifferentialTests {
  @Test(
    "Mutated JSON: the codec accepts what protobuf python accepts, with the same message",
    arguments: [("codectest.Everything", 11), ("codectest.Everything", 12), ("codectest2.Legacy", 13)]
      as [(String, UInt64)])
  func mutatedJSONAgrees(fullName: String, seed: UInt64) throws {
    let protos = try Fixture.protos()
    let message = try protos.message(fullName)
    let jsonSeeds = fullName == "codectest2.Legacy" ? Self.legacySeeds : FuzzTests.everythingSeeds
    let codec = JSONCodec(registry: protos.registry)
    let ours = protos.directory.appendingPathComponent("json-ours-\(seed).jsonl")
    defer { try? FileManager.default.removeItem(at: ours) }
    var random = FuzzTests.SplitMix64(state: seed)
    var output = ""
    for index in 0..<3000 {
      let seed = Array(jsonSeeds[index % jsonSeeds.count].utf8)
      let input =
        index % 2 == 0
        ? FuzzTests.mutateJSONValue(FuzzTests.mutateJSONValue(seed, using: &random), using: &random)
        : FuzzTests.mutate(seed, using: &random)
      // Python reads text; inputs that are not UTF-8 are covered by the fuzz test instead.
      guard let text = String(validating: input, as: UTF8.self) else { continue }
      var line: JSONObject = ["json": .string(text)]
      do {
        line["binary"] = .string(Data(try codec.binary(fromJSON: input, as: message)).base64EncodedString())
      } catch {
        line["error"] = .string(error.message)
        // Python tolerates values the mapping does not allow: sloppy spellings inside strings
        // ("InFinity", "+5", "1_0", base64 with junk, "12:0:00" in a timestamp, "-1.s"), true/false
        // for numbers and enums (a Python bool is an int), enum numbers beyond int32 or with a
        // fraction, 1e400 in a Value, a field set by both its names, and extra members in an Any
        // holding a well-known type. The codec rejects them (see stricterThanPython); where python
        // rejects, the codec must reject too, and where both accept, the messages must be equal.
        line["stricter"] = .bool(
          error.code == .invalidValue || error.code == .duplicateField
            || (error.code == .unknownField && error.reason.contains("may appear in an Any")))
      }
      output += JSONValue.object(line).serialized + "\n"
    }
    try output.write(to: ours, atomically: true, encoding: .utf8)
    let checked = try Fixture.run(
      ["python3", Fixture.referenceScript, "jsoncheck", protos.directory.path, fullName, ours.path])
    try #require(checked.status == 0, "reference.py jsoncheck failed: \(checked.stderr)")
    let summary = try #require(try codec.parseJSON(checked.stdout).objectValue)
    #expect(summary["failed"] == .number("0"), "\(checked.stdout)")
  }
}
