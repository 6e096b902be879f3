// libFuzzer entry point for SluiceCodec: everything a client controls, from one byte string.
//
//   scripts/fuzz-codec.sh            builds this with -sanitize=fuzzer,address and runs it
//
// Each input is fed to the codec twice, for every message type of the loaded descriptor sets:
//  1. as JSON text (a request body): parsed under the gateway's limits, then JSON → binary;
//  2. as protobuf binary (a backend's response): binary → JSON.
// A `CodecError` is a fine outcome. A crash, a trap, a sanitizer report or a broken invariant
// (checked with `fatalError`, so libFuzzer saves the input) is a finding:
//  - JSON text → value → text → value gives the same value;
//  - tighter limits only turn results into errors, never into other results;
//  - JSON → binary → JSON → binary → JSON: the JSON is a fixed point after one trip;
//  - binary → JSON always parses back, to the same canonical JSON, whatever the output options;
//  - `ignoreUnknownFields` never changes a result that succeeds without it;
//  - `appendJSON` appends exactly what `json(fromBinary:)` returns, and nothing on error.
//
// Descriptor sets: $SLUICE_FUZZ_DESCRIPTOR_SETS (colon-separated .binpb paths, each loaded as
// its own registry); by default Protos/sluice.binpb of this repository (the hosted services).
// The script adds the codec tests' protos (every field kind and well-known type), compiled
// with protoc into test-output/fuzz-codec/.
//
// Seeding: with $SLUICE_FUZZ_EMIT set to a folder, every input that translates to a non-empty
// binary also writes that binary there (`FuzzCodec seed1.json seed2.json ...` runs each file
// once), and a libFuzzer dictionary of the field names is written to $SLUICE_FUZZ_EMIT/../codec.dict.

import Foundation
import SluiceCodec

/// The repository's root: FuzzTesting/Sources/FuzzCodec/main.swift is four levels down.
let repositoryRoot = URL(fileURLWithPath: #filePath)
  .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// One message type with the codecs that translate it (all on the same registry).
struct Target: Sendable {
  var message: MessageDescriptor
  /// The gateway's codec: default options and limits (Gateway.swift uses the same defaults).
  var canonical: JSONCodec
  /// Other output options and `ignoreUnknownFields`; same limits.
  var variant: JSONCodec
  /// Small limits (depth 8, 512 bytes), to reach the limit checks.
  var tight: JSONCodec
}

func loadTargets() -> [Target] {
  let paths =
    ProcessInfo.processInfo.environment["SLUICE_FUZZ_DESCRIPTOR_SETS"].map {
      $0.split(separator: ":").map(String.init)
    } ?? [repositoryRoot.appendingPathComponent("Protos/sluice.binpb").path]
  var targets: [Target] = []
  for path in paths {
    guard let data = FileManager.default.contents(atPath: path) else {
      fatalError("FuzzCodec: cannot read the descriptor set \(path)")
    }
    let registry: DescriptorRegistry
    do {
      registry = try DescriptorRegistry(fileDescriptorSet: [UInt8](data))
    } catch {
      fatalError("FuzzCodec: the descriptor set \(path) does not load: \(error)")
    }
    let canonical = JSONCodec(registry: registry)
    let variant = JSONCodec(
      registry: registry,
      encoding: .init(emitDefaultValues: false, preserveProtoNames: true, enumsAsIntegers: true),
      decoding: .init(ignoreUnknownFields: true))
    let tight = JSONCodec(registry: registry, decoding: .init(maximumDepth: 8, maximumBytes: 512))
    for name in registry.messageNames {
      guard let message = registry.message(fullName: name) else {
        fatalError("FuzzCodec: messageNames lists \(name) but message(fullName:) does not find it")
      }
      targets.append(Target(message: message, canonical: canonical, variant: variant, tight: tight))
    }
    FileHandle.standardError.write(Data("FuzzCodec: \(registry.messageNames.count) message types from \(path)\n".utf8))
  }
  guard !targets.isEmpty else { fatalError("FuzzCodec: no message types loaded") }
  return targets
}

let targets = loadTargets()
let emitDirectory = ProcessInfo.processInfo.environment["SLUICE_FUZZ_EMIT"]
let dictionaryWritten: Bool = {
  guard let emitDirectory else { return false }
  var entries: Set<String> = []
  for target in targets {
    for name in target.message.fieldNames {
      entries.insert(name)
      let parts = name.split(separator: "_", omittingEmptySubsequences: false)
      entries.insert(String(parts[0]) + parts.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined())
    }
  }
  let lines = entries.sorted().map { "\"\\\"\($0)\\\"\"" }
  let path = URL(fileURLWithPath: emitDirectory).deletingLastPathComponent().appendingPathComponent("codec.dict")
  _ = FileManager.default.createFile(atPath: path.path, contents: Data((lines.joined(separator: "\n") + "\n").utf8))
  return true
}()

/// For failure messages only (never build one on the hot path: pass it as an autoclosure).
func hex(_ bytes: some Collection<UInt8>) -> String {
  let digits = Array("0123456789abcdef".utf8)
  var text: [UInt8] = []
  for byte in bytes.prefix(512) { text += [digits[Int(byte >> 4)], digits[Int(byte & 15)]] }
  return String(decoding: text, as: UTF8.self) + (bytes.count > 512 ? "…" : "")
}

/// A stable name for a seed file (Swift's `hashValue` changes with every process).
func fnv1a(_ bytes: [UInt8]) -> UInt64 {
  bytes.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
}

func text(_ bytes: [UInt8]) -> String { String(decoding: bytes.prefix(1024), as: UTF8.self) }

/// A broken invariant: libFuzzer sees the trap and saves the input.
func violated(_ message: String) -> Never {
  fatalError("FuzzCodec invariant: " + message)
}

/// JSON → binary (`first`, already made) → JSON → binary → JSON: the JSON must be a fixed point.
func checkFixedPoint(_ first: [UInt8], _ target: Target, from what: @autoclosure () -> String) {
  let codec = target.canonical
  let message = target.message
  do {
    let json1 = try codec.json(fromBinary: first, as: message)
    let second: [UInt8]
    do {
      second = try codec.binary(fromJSON: json1, as: message)
    } catch {
      violated("\(message): JSON \(text(json1)) (from \(what())) does not parse back: \(error)")
    }
    let json2 = try codec.json(fromBinary: second, as: message)
    if json2 != json1 {
      violated("\(message): JSON differs after a round trip (from \(what())):\n  \(text(json1))\n  \(text(json2))")
    }
    let third = try codec.binary(fromJSON: json2, as: message)
    if third != second {
      violated("\(message): binary differs for the same JSON \(text(json2)): \(hex(second)) vs \(hex(third))")
    }
  } catch {
    violated("\(message): binary \(hex(first)) (from \(what())) does not translate back: \(error)")
  }
}

/// The input as JSON text, for every message type.
func fuzzJSON(_ input: UnsafeRawBufferPointer) {
  let first = targets[0]
  let value: JSONValue
  do {
    value = try first.canonical.parseJSON(input)
  } catch {
    if let tightValue = try? first.tight.parseJSON(input) {
      violated("the tight limits accept JSON that the default ones reject (\(error)): \(tightValue.serialized)")
    }
    return
  }
  // The writer and the reader agree.
  let serialized = value.serializedBytes
  do {
    let reparsed = try first.canonical.parseJSON(serialized)
    if reparsed != value { violated("JSON differs after serializing: \(text(serialized))") }
  } catch {
    violated("serialized JSON \(text(serialized)) does not parse: \(error)")
  }
  if let tightValue = try? first.tight.parseJSON(input), tightValue != value {
    violated("the tight limits parse to another value: \(tightValue.serialized) vs \(value.serialized)")
  }

  for target in targets {
    let binary: [UInt8]
    do {
      binary = try target.canonical.binary(from: value, as: target.message)
    } catch {
      // Unknown fields may be skipped instead; what comes out must still be sound.
      if error.code == .unknownField, let lenient = try? target.variant.binary(from: value, as: target.message) {
        checkFixedPoint(lenient, target, from: "ignoreUnknownFields")
      }
      if let tight = try? target.tight.binary(from: value, as: target.message) {
        violated("\(target.message): the tight limits accept a value the default ones reject (\(error)): \(hex(tight))")
      }
      continue
    }
    do {
      let lenient = try target.variant.binary(from: value, as: target.message)
      if lenient != binary {
        violated("\(target.message): ignoreUnknownFields changes the binary: \(hex(binary)) vs \(hex(lenient))")
      }
    } catch {
      violated("\(target.message): ignoreUnknownFields rejects what is accepted without it: \(error)")
    }
    if let tight = try? target.tight.binary(from: value, as: target.message), tight != binary {
      violated("\(target.message): the tight limits give another binary: \(hex(tight)) vs \(hex(binary))")
    }
    checkFixedPoint(binary, target, from: "JSON")
    if let emitDirectory, !binary.isEmpty {
      let name = "bin-\(target.message.fullName)-\(String(fnv1a(binary), radix: 16))"
      _ = FileManager.default.createFile(atPath: emitDirectory + "/" + name, contents: Data(binary))
    }
  }
}

/// The input as protobuf binary, for every message type.
func fuzzBinary(_ input: UnsafeRawBufferPointer, rotation: Int) {
  var firstFailure: Target?
  for (index, target) in targets.enumerated() {
    let message = target.message
    let chosen = index == rotation % targets.count
    let canonical = try? target.canonical.json(fromBinary: input, as: message)
    // Errors are the common case: compare them for one message type per input only.
    let variant = canonical != nil || chosen ? try? target.variant.json(fromBinary: input, as: message) : nil
    if canonical == nil && firstFailure == nil { firstFailure = target }
    if (canonical == nil) != (variant == nil) && (canonical != nil || chosen) {
      violated("\(message): the output options change whether \(hex(input)) translates")
    }
    guard let canonical, let variant else { continue }

    // What the gateway sends a client must come back as the same message.
    do {
      let binary = try target.canonical.binary(fromJSON: canonical, as: message)
      checkFixedPoint(binary, target, from: "wire bytes \(hex(input))")
      let again = try target.canonical.json(fromBinary: binary, as: message)
      if again != canonical {
        violated(
          "\(message): canonical JSON of \(hex(input)) changes on a round trip:"
            + "\n  \(text(canonical))\n  \(text(again))"
        )
      }
    } catch {
      violated("\(message): JSON \(text(canonical)) from wire bytes \(hex(input)) does not parse back: \(error)")
    }
    // Proto names, enum numbers and omitted defaults are all valid input for the same message.
    do {
      let binary = try target.canonical.binary(fromJSON: variant, as: message)
      let json = try target.canonical.json(fromBinary: binary, as: message)
      if json != canonical {
        violated(
          "\(message): the variant JSON of \(hex(input)) means something else:"
            + "\n  \(text(variant))\n  \(text(json))\n  \(text(canonical))"
        )
      }
    } catch {
      violated("\(message): variant JSON \(text(variant)) from wire bytes \(hex(input)) does not parse back: \(error)")
    }

    // One message type per input: appendJSON and the tight depth limit.
    if chosen {
      var output: [UInt8] = Array("[1,".utf8)
      do {
        try target.canonical.appendJSON(fromBinary: input, as: message, to: &output)
        if output != Array("[1,".utf8) + canonical { violated("\(message): appendJSON appends \(text(output))") }
      } catch {
        violated("\(message): appendJSON fails (\(error)) where json(fromBinary:) succeeds")
      }
      if let tight = try? target.tight.json(fromBinary: input, as: message), tight != canonical {
        violated("\(message): the tight limits give other JSON: \(text(tight)) vs \(text(canonical))")
      }
    }
  }
  // appendJSON leaves the output as it was on error (checked on the first failing type).
  if let target = firstFailure {
    var output: [UInt8] = Array("[1,".utf8)
    do {
      try target.canonical.appendJSON(fromBinary: input, as: target.message, to: &output)
      violated("\(target.message): appendJSON succeeds where json(fromBinary:) fails")
    } catch {
      if output != Array("[1,".utf8) { violated("\(target.message): appendJSON leaves \(text(output)) on error") }
    }
  }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
  _ = dictionaryWritten
  let input = UnsafeRawBufferPointer(start: start, count: count)
  fuzzJSON(input)
  fuzzBinary(input, rotation: count &+ Int(input.first ?? 0))
  return 0
}
