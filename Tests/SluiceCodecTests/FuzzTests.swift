import SluiceCodec
import SluiceProtos
import Testing

/// Feeds random and mutated JSON and wire bytes to the codec: every input must give a clean
/// `CodecError` or a result, and every result must translate back.
@Suite("Fuzzing")
struct FuzzTests {
  /// A small, seeded generator (SplitMix64), so a failure reproduces.
  struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
      state &+= 0x9E37_79B9_7F4A_7C15
      var z = state
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
  }

  static let everythingSeeds = [
    #"""
    {"scalars":{"fDouble":1.5,"fFloat":"NaN","fInt32":-5,"fInt64":"-9223372036854775808","fUint32":4294967295,
    "fUint64":"18446744073709551615","fSint32":-3,"fSint64":"7","fFixed32":9,"fFixed64":"10","fSfixed32":-11,
    "fSfixed64":"-12","fBool":true,"fString":"h\u00e9llo \ud83d\ude00","fBytes":"AAEC/w==","fEnum":"RED"},
    "rInt32":[1,-2,3],"rDouble":[1,"Infinity"],"rString":["a","b"],"rEnum":["RED",2],"rNested":[{"name":"n","child":{"value":3}}],
    "uInt32":[1,2],"mInt32":{"1":"a","-2":"b"},"mBool":{"true":"t"},"mString":{"k":{"name":"v"}},"mValue":{"x":[1,"a",null,{"b":true}]}}
    """#,
    #"""
    {"oString":"one","optInt32":0,"timestamp":"2024-02-29T12:00:00.123Z","duration":"-1.5s","fieldMask":"a.bC,d",
    "structValue":{"a":{"b":[1,2]}},"value":null,"listValue":[1,{}],"nullValue":null,"empty":{},
    "any":{"@type":"type.googleapis.com/codectest.Nested","name":"x"},
    "rAny":[{"@type":"type.googleapis.com/google.protobuf.Duration","value":"1s"}],
    "wDouble":1,"wInt64":"5","wString":"s","wBytes":"_-8","customName":"c","snake_case_field_name":3,
    "recursive":{"nested":{"value":1},"mSfixed64":{"-1":"1970-01-01T00:00:00Z"},"oNested":{}}}
    """#,
  ]
  static let requestSeeds = [#"{"pt":{"name":"gRPC Stream Client: Route","value":123456}}"#, #"{"pt":{}}"#, "{}"]

  static let interesting: [UInt8] =
    Array(#"{}[]",:\0123456789-+.eEtrufalsn u"#.utf8) + [0x80, 0xC3, 0xE2, 0xF0, 0xFF, 0x00]

  static func mutate(_ input: [UInt8], using random: inout SplitMix64) -> [UInt8] {
    var bytes = input
    for _ in 0..<(Int.random(in: 0..<4, using: &random) == 0 ? 2 : 1) {
      switch Int.random(in: 0..<7, using: &random) {
      case 0 where !bytes.isEmpty:  // flip a bit
        let index = Int.random(in: 0..<bytes.count, using: &random)
        bytes[index] ^= 1 << UInt8.random(in: 0..<8, using: &random)
      case 1:  // insert an interesting byte
        let index = Int.random(in: 0...bytes.count, using: &random)
        bytes.insert(interesting.randomElement(using: &random)!, at: index)
      case 2 where !bytes.isEmpty:  // delete a range
        let start = Int.random(in: 0..<bytes.count, using: &random)
        let end = min(bytes.count, start + Int.random(in: 1...8, using: &random))
        bytes.removeSubrange(start..<end)
      case 3 where !bytes.isEmpty:  // truncate
        bytes.removeLast(Int.random(in: 1...bytes.count, using: &random))
      case 4 where !bytes.isEmpty:  // duplicate a range
        let start = Int.random(in: 0..<bytes.count, using: &random)
        let end = min(bytes.count, start + Int.random(in: 1...16, using: &random))
        bytes.insert(contentsOf: bytes[start..<end], at: Int.random(in: 0...bytes.count, using: &random))
      case 5 where !bytes.isEmpty:  // overwrite with a random byte
        bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
      default:  // append random bytes
        for _ in 0..<Int.random(in: 1...4, using: &random) { bytes.append(UInt8.random(in: 0...255, using: &random)) }
      }
    }
    return bytes
  }

  @Test("100,000 random and mutated JSON and wire inputs end in a result or a CodecError")
  func fuzz() throws {
    let protos = try Fixture.protos()
    let everything = try protos.message("codectest.Everything")
    let codec = JSONCodec(registry: protos.registry, decoding: .init(maximumDepth: 20))
    let hosted = try DescriptorRegistry(fileDescriptorSet: SluiceDescriptors.fileDescriptorSet)
    let request = try #require(hosted.message(fullName: "proto.StreamRequest"))
    let hostedCodec = JSONCodec(registry: hosted)

    let targets: [(JSONCodec, MessageDescriptor, [[UInt8]])] = [
      (codec, everything, Self.everythingSeeds.map { Array($0.utf8) }),
      (hostedCodec, request, Self.requestSeeds.map { Array($0.utf8) }),
    ]
    var random = SplitMix64(state: 20_261_122)
    var results = (json: 0, jsonErrors: 0, wire: 0, wireErrors: 0)
    var wireReasons: [String: Int] = [:]
    for iteration in 0..<100_000 {
      let (codec, message, seeds) = targets[iteration % 4 == 0 ? 1 : 0]
      let seed = seeds.randomElement(using: &random)!
      if iteration % 2 == 0 {
        // JSON → binary; a result must translate back to JSON.
        let input =
          iteration % 20 == 0
          ? Self.randomBytes(using: &random)
          : iteration % 4 == 2 ? Self.mutateJSONValue(seed, using: &random) : Self.mutate(seed, using: &random)
        do {
          let binary = try codec.binary(fromJSON: input, as: message)
          results.json += 1
          do {
            _ = try codec.json(fromBinary: binary, as: message)
          } catch {
            Issue.record("binary from \(String(decoding: input, as: UTF8.self)) does not translate back: \(error)")
          }
        } catch {
          results.jsonErrors += 1
        }
      } else {
        // binary → JSON; a result must parse back.
        let binary = (try? codec.binary(fromJSON: seed, as: message)) ?? []
        let input = iteration % 20 == 1 ? Self.randomBytes(using: &random) : Self.mutate(binary, using: &random)
        do {
          let json = try codec.json(fromBinary: input, as: message)
          results.wire += 1
          do {
            _ = try codec.binary(fromJSON: json, as: message)
          } catch {
            Issue.record(
              "JSON \(String(decoding: json, as: UTF8.self)) from wire \(input) does not parse back: \(error)")
          }
        } catch {
          results.wireErrors += 1
          wireReasons[String(error.reason.prefix(60)), default: 0] += 1
        }
      }
    }
    // Both outcomes must have happened in both directions, or the mutations are too weak or too strong.
    #expect(
      results.json > 1000 && results.jsonErrors > 1000 && results.wire > 1000 && results.wireErrors > 1000,
      "\(results) \(wireReasons.sorted { $0.value > $1.value }.prefix(5))")
  }

  static let replacementValues = [
    "0", "-1", "1.5", "1e400", "-0", "4294967296", "18446744073709551616", "-9223372036854775809", "null", "true",
    "false", "[]", "{}", "[null]", #""""#, #""x""#, #""NaN""#, #""-Infinity""#, #""AQ""#, #""1""#, #""RED""#,
    #""1970-01-01T00:00:00Z""#, #""1s""#, #"{"a":1}"#, #"[1,"a"]"#,
  ]

  /// Replaces the scalar after a random `:` or `[` with another JSON value: the text stays
  /// well-formed more often, so the mapping rules (not just the reader) get exercised.
  static func mutateJSONValue(_ input: [UInt8], using random: inout SplitMix64) -> [UInt8] {
    let starts = input.indices.filter { input[$0] == UInt8(ascii: ":") || input[$0] == UInt8(ascii: "[") }
    guard let colon = starts.randomElement(using: &random) else { return input }
    var start = colon + 1
    while start < input.count && input[start] == UInt8(ascii: " ") { start += 1 }
    guard start < input.count, !"{[]}".utf8.contains(input[start]) else { return input }
    var end = start
    if input[start] == UInt8(ascii: "\"") {
      end += 1
      while end < input.count && input[end] != UInt8(ascii: "\"") {
        end += input[end] == UInt8(ascii: "\\") ? 2 : 1
      }
      end = min(end + 1, input.count)
    } else {
      while end < input.count && !",}]".utf8.contains(input[end]) { end += 1 }
    }
    var output = input
    output.replaceSubrange(start..<end, with: replacementValues.randomElement(using: &random)!.utf8)
    return output
  }

  static func randomBytes(using random: inout SplitMix64) -> [UInt8] {
    (0..<Int.random(in: 0..<64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
  }
}
