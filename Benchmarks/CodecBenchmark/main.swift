// Messages per second of the descriptor-driven JSON codec, side by side with SwiftProtobuf's
// generated-type JSON on the same StreamService messages, plus the JSON reader comparison that
// chose SluiceCodec's reader (see JSONReader.swift).
//
//   swift run -c release CodecBenchmark [seconds-per-row]
//
// A plain program on purpose: it prints figures and asserts nothing. Figures of 2026-11-22
// (release build, Linux x86-64, 2 cores shared with other builds, 2 s per row):
//
// | operation                              |  SluiceCodec | SwiftProtobuf | ratio |
// |---|---:|---:|---:|
// | StreamRequest JSON → binary            |      2692554 |      1118402 | 2.41× |
// |   (vs SwiftProtobuf JSON parse only)   |      2692554 |      1477298 | 1.82× |
// | StreamResponse binary → JSON           |      3110681 |       950723 | 3.27× |
// |   (vs SwiftProtobuf JSON print only)   |      3110681 |      1228931 | 2.53× |
// | StreamRequest JSON → binary, Data in   |      2350653 |      1118402 | 2.10× |
// | StreamResponse binary → JSON, Data in  |      2588701 |       950723 | 2.72× |
// | StreamResponse JSON → binary           |      2752992 |      1171513 | 2.35× |
// | StreamRequest binary → JSON            |      2934216 |       896287 | 3.27× |
//
// JSON readers, parses/s of the request JSON:
// | reader | parses/s |
// |---|---:|
// | SluiceCodec JSONReader |      5736946 |
// | Foundation JSONSerialization |       745767 |

import Foundation
import SluiceCodec
import SluiceProtos
import SwiftProtobuf

let secondsPerRow = CommandLine.arguments.dropFirst().first.flatMap(Double.init) ?? 1.0

/// Runs `body` repeatedly for about `secondsPerRow`; returns operations per second.
func measure(_ body: () throws -> Int) rethrows -> Double {
  var sink = 0
  // Warm up.
  for _ in 0..<1000 { sink &+= try body() }
  let clock = ContinuousClock()
  var operations = 0
  let start = clock.now
  var elapsed: Duration = .zero
  while elapsed < .seconds(secondsPerRow) {
    for _ in 0..<1000 { sink &+= try body() }
    operations += 1000
    elapsed = clock.now - start
  }
  if sink == 42 { print("", terminator: "") }  // keep the work observable
  let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
  return Double(operations) / seconds
}

func format(_ rate: Double) -> String {
  let text = String(Int(rate.rounded()))
  return String(repeating: " ", count: max(0, 12 - text.count)) + text
}

func row(_ name: String, _ ours: Double, _ theirs: Double) {
  let ratio = String(format: "%.2f", ours / theirs)
  print(
    "| \(name.padding(toLength: 38, withPad: " ", startingAt: 0)) | \(format(ours)) | \(format(theirs)) | \(ratio)× |")
}

let registry = try DescriptorRegistry(fileDescriptorSet: SluiceDescriptors.fileDescriptorSet)
let codec = JSONCodec(registry: registry)
let requestType = registry.message(fullName: "proto.StreamRequest")!
let responseType = registry.message(fullName: "proto.StreamResponse")!

var request = Proto_StreamRequest()
request.pt.name = "gRPC Stream Client: Route"
request.pt.value = 123_456
var response = Proto_StreamResponse()
response.pt.name = "gRPC Stream Server: Route"
response.pt.value = 7

// Every field is non-default so both codecs print the same text (SwiftProtobuf cannot emit defaults).
let requestJSON: [UInt8] = try request.jsonUTF8Bytes()
let requestBinary: [UInt8] = try request.serializedBytes()
let responseJSON: [UInt8] = try response.jsonUTF8Bytes()
let responseBinary: [UInt8] = try response.serializedBytes()
let checkBinary = try codec.binary(fromJSON: requestJSON, as: requestType)
let checkJSON = try codec.json(fromBinary: responseBinary, as: responseType)
precondition(checkBinary == requestBinary && checkJSON == responseJSON, "the codecs disagree")

print("Codec throughput, messages/s (\(ProcessInfo.processInfo.activeProcessorCount) cores)")
print("request  JSON: \(String(decoding: requestJSON, as: UTF8.self))")
print("response JSON: \(String(decoding: responseJSON, as: UTF8.self))")
print()
print("| operation                              |  SluiceCodec | SwiftProtobuf | ratio |")
print("|---|---:|---:|---:|")

// JSON → binary: ours transcodes directly; SwiftProtobuf parses JSON into the generated type, then serializes.
let oursRequestToBinary = try measure { try codec.binary(fromJSON: requestJSON, as: requestType).count }
let theirsRequestToBinary = try measure {
  try (Proto_StreamRequest(jsonUTF8Bytes: requestJSON).serializedBytes() as [UInt8]).count
}
row("StreamRequest JSON → binary", oursRequestToBinary, theirsRequestToBinary)
let theirsRequestParseOnly = try measure { try Proto_StreamRequest(jsonUTF8Bytes: requestJSON).pt.name.utf8.count }
row("  (vs SwiftProtobuf JSON parse only)", oursRequestToBinary, theirsRequestParseOnly)

// binary → JSON: ours transcodes directly; SwiftProtobuf parses binary, then prints JSON.
let oursResponseToJSON = try measure { try codec.json(fromBinary: responseBinary, as: responseType).count }
let theirsResponseToJSON = try measure {
  try (Proto_StreamResponse(serializedBytes: responseBinary).jsonUTF8Bytes() as [UInt8]).count
}
row("StreamResponse binary → JSON", oursResponseToJSON, theirsResponseToJSON)
let theirsResponsePrintOnly = try measure { (try response.jsonUTF8Bytes() as [UInt8]).count }
row("  (vs SwiftProtobuf JSON print only)", oursResponseToJSON, theirsResponsePrintOnly)

// The same through the generic `some Collection<UInt8>` entry points (here with `Data`).
let requestJSONData = Data(requestJSON)
let responseBinaryData = Data(responseBinary)
let oursGenericToBinary = try measure { try codec.binary(fromJSON: requestJSONData, as: requestType).count }
row("StreamRequest JSON → binary, Data in", oursGenericToBinary, theirsRequestToBinary)
let oursGenericToJSON = try measure { try codec.json(fromBinary: responseBinaryData, as: responseType).count }
row("StreamResponse binary → JSON, Data in", oursGenericToJSON, theirsResponseToJSON)

// The other two directions, for completeness.
let oursResponseToBinary = try measure { try codec.binary(fromJSON: responseJSON, as: responseType).count }
let theirsResponseToBinary = try measure {
  try (Proto_StreamResponse(jsonUTF8Bytes: responseJSON).serializedBytes() as [UInt8]).count
}
row("StreamResponse JSON → binary", oursResponseToBinary, theirsResponseToBinary)
let oursRequestToJSON = try measure { try codec.json(fromBinary: requestBinary, as: requestType).count }
let theirsRequestToJSON = try measure {
  try (Proto_StreamRequest(serializedBytes: requestBinary).jsonUTF8Bytes() as [UInt8]).count
}
row("StreamRequest binary → JSON", oursRequestToJSON, theirsRequestToJSON)

// JSON readers: parse only, same document.
print()
print("JSON readers, parses/s of the request JSON (\(requestJSON.count) bytes)")
print("| reader | parses/s |")
print("|---|---:|")
let requestData = Data(requestJSON)
let oursParse = try measure {
  if case .object(let object) = try codec.parseJSON(requestJSON) { return object.count }
  return 0
}
print("| SluiceCodec JSONReader | \(format(oursParse)) |")
let foundationParse = try measure {
  (try JSONSerialization.jsonObject(with: requestData) as? [String: Any])?.count ?? 0
}
print("| Foundation JSONSerialization | \(format(foundationParse)) |")

// Correctness probes for JSONSerialization (the reasons it was not chosen).
let probe = Data(#"{"u":18446744073709551615,"i":-9223372036854775808,"p":9007199254740993}"#.utf8)
if let object = try? JSONSerialization.jsonObject(with: probe) as? [String: Any] {
  let u = (object["u"] as? NSNumber).map { "\($0.uint64Value)" } ?? "?"
  let i = (object["i"] as? NSNumber).map { "\($0.int64Value)" } ?? "?"
  let p = (object["p"] as? NSNumber).map { "\($0.int64Value)" } ?? "?"
  print(
    "JSONSerialization numbers: u=\(u) i=\(i) p=\(p) (exact: 18446744073709551615, -9223372036854775808, 9007199254740993)"
  )
}
let duplicate = Data(#"{"a":1,"a":2}"#.utf8)
let duplicateResult = (try? JSONSerialization.jsonObject(with: duplicate)).map { "accepted \($0)" } ?? "rejected"
print("JSONSerialization duplicate keys: \(duplicateResult)")
let invalidUTF8 = Data([0x22, 0xC0, 0xAF, 0x22])
print(
  "JSONSerialization overlong UTF-8: \((try? JSONSerialization.jsonObject(with: invalidUTF8, options: .fragmentsAllowed)) == nil ? "rejected" : "accepted")"
)
