// libFuzzer entry point for loading descriptors: a FileDescriptorSet is untrusted input (an
// upstream's server reflection, a `--descriptor-set` file), and what loads must translate.
//
//   scripts/fuzz-descriptors.sh      builds this with -sanitize=fuzzer,address and runs it
//
// The first byte of an input chooses how the rest is read:
//  - even: the rest is a serialized FileDescriptorSet, loaded as it is (the seeds are valid sets,
//    which libFuzzer mutates byte by byte);
//  - odd: the second byte picks one of the valid base sets, and the rest is a script of semantic
//    mutations on it (field numbers, oneof indexes, type names, labels, names, map entries,
//    nesting, enum values, method types) that byte mutations rarely reach.
// Whatever loads is exercised: for each method, JSON `{}` is encoded as its request and the
// input's last bytes are decoded as its response; for 16 message types (from an offset the input
// picks), `{}` is encoded and the same bytes decoded. A `CodecError` is a fine outcome. A crash, a trap or a
// sanitizer report is a finding; so is a broken invariant (checked with `fatalError`):
//  - the binary that `{}` encodes to decodes again;
//  - a loaded registry's files, serialized again, load again (checked on one run in eight).
//
// Base sets: $SLUICE_FUZZ_DESCRIPTOR_SETS (colon-separated .binpb paths); by default
// Protos/sluice.binpb of this repository. The script seeds the corpus with each base set, raw
// (a zero byte, then the set) and as an empty mutation script (bytes 1 and its index).

import Foundation
import SluiceCodec
import SwiftProtobuf

/// The repository's root: FuzzTesting/Sources/FuzzDescriptors/main.swift is four levels down.
let repositoryRoot = URL(fileURLWithPath: #filePath)
  .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

let baseSets: [Google_Protobuf_FileDescriptorSet] = {
  let paths =
    ProcessInfo.processInfo.environment["SLUICE_FUZZ_DESCRIPTOR_SETS"].map {
      $0.split(separator: ":").map(String.init)
    } ?? [repositoryRoot.appendingPathComponent("Protos/sluice.binpb").path]
  return paths.map { path in
    guard let data = FileManager.default.contents(atPath: path) else {
      fatalError("FuzzDescriptors: cannot read the descriptor set \(path)")
    }
    do {
      _ = try DescriptorRegistry(fileDescriptorSet: [UInt8](data))
      return try Google_Protobuf_FileDescriptorSet(serializedBytes: [UInt8](data))
    } catch {
      fatalError("FuzzDescriptors: the base set \(path) does not load: \(error)")
    }
  }
}()

/// Reads the mutation script: bytes, then zeros once it is used up.
struct Script {
  var bytes: UnsafeRawBufferPointer.SubSequence

  mutating func byte() -> UInt8 {
    guard let first = bytes.first else { return 0 }
    bytes = bytes.dropFirst()
    return first
  }

  mutating func int32() -> Int32 {
    Int32(bitPattern: (0..<4).reduce(UInt32(0)) { value, _ in value << 8 | UInt32(byte()) })
  }

  mutating func pick<T>(_ choices: [T]) -> T? {
    choices.isEmpty ? nil : choices[Int(byte()) % choices.count]
  }
}

/// Where a message sits in a set: file index, then the nested-type indexes down to it.
struct MessagePath {
  var file: Int
  var nesting: [Int]
  var fullName: String
}

func messagePaths(_ set: Google_Protobuf_FileDescriptorSet) -> [MessagePath] {
  var paths: [MessagePath] = []
  func walk(_ messages: [Google_Protobuf_DescriptorProto], file: Int, nesting: [Int], scope: String) {
    for (index, message) in messages.enumerated() {
      let name = scope + message.name
      paths.append(MessagePath(file: file, nesting: nesting + [index], fullName: name))
      if nesting.count < 8 { walk(message.nestedType, file: file, nesting: nesting + [index], scope: name + ".") }
    }
  }
  for (index, file) in set.file.enumerated() {
    walk(file.messageType, file: index, nesting: [], scope: file.package.isEmpty ? "" : file.package + ".")
  }
  return paths
}

func withMessage(
  _ path: MessagePath, in set: inout Google_Protobuf_FileDescriptorSet,
  _ body: (inout Google_Protobuf_DescriptorProto) -> Void
) {
  func descend(_ messages: inout [Google_Protobuf_DescriptorProto], _ nesting: ArraySlice<Int>) {
    guard let index = nesting.first, messages.indices.contains(index) else { return }
    if nesting.count == 1 {
      body(&messages[index])
    } else {
      descend(&messages[index].nestedType, nesting.dropFirst())
    }
  }
  descend(&set.file[path.file].messageType, path.nesting[...])
}

let interestingNumbers: [Int32] = [
  .max, .min, -1, 0, 1, 2, 15, 16, 255, 256, 2047, 2048, 18_999, 19_000, 19_999, 20_000, 536_870_911, 536_870_912,
  1 << 30,
]
let interestingNames = ["", "a\"b", "a\\b", "a\nb", "x", "key", "value", "1x", "é", "name", "@type", "a.b"]

/// One mutation, chosen and parameterized by the script.
func mutate(_ set: inout Google_Protobuf_FileDescriptorSet, _ script: inout Script) {
  let paths = messagePaths(set)
  let typeNames = paths.map { "." + $0.fullName } + ["", ".", ".missing.Type", "google.protobuf.Any"]
  let operation = script.byte() % 20
  if operation >= 17 {
    guard !set.file.isEmpty else { return }
    let file = Int(script.byte()) % set.file.count
    switch operation {
    case 17:
      set.file[file].package = script.pick(["", "a..b", ".a", "a.", "google.protobuf", "x"]) ?? ""
    case 18:
      guard !set.file[file].service.isEmpty else { return }
      let service = Int(script.byte()) % set.file[file].service.count
      guard !set.file[file].service[service].method.isEmpty else { return }
      let method = Int(script.byte()) % set.file[file].service[service].method.count
      let name = script.pick(typeNames) ?? ""
      if script.byte() & 1 == 0 {
        set.file[file].service[service].method[method].inputType = name
      } else {
        set.file[file].service[service].method[method].outputType = name
      }
    default:
      set.file[file].syntax = script.pick(["proto2", "proto3", "", "editions"]) ?? ""
    }
    return
  }
  guard let path = script.pick(paths) else { return }
  withMessage(path, in: &set) { message in
    let fieldIndex = message.field.isEmpty ? nil : Int(script.byte()) % message.field.count
    switch operation {
    case 0:
      if let fieldIndex { message.field[fieldIndex].number = script.pick(interestingNumbers) ?? 0 }
    case 1:
      if let fieldIndex { message.field[fieldIndex].number = script.int32() }
    case 2:
      if let fieldIndex { message.field[fieldIndex].oneofIndex = Int32(Int8(bitPattern: script.byte())) }
    case 3:
      if let fieldIndex { message.field[fieldIndex].typeName = script.pick(typeNames) ?? "" }
    case 4:
      guard let fieldIndex else { return }
      if let type = Google_Protobuf_FieldDescriptorProto.TypeEnum(rawValue: Int(script.byte() % 20)) {
        message.field[fieldIndex].type = type
      } else {
        message.field[fieldIndex].clearType()
      }
    case 5:
      guard let fieldIndex else { return }
      message.field[fieldIndex].label = script.pick([.optional, .required, .repeated]) ?? .optional
    case 6:
      guard let fieldIndex else { return }
      let other = message.field.map(\.name)
      message.field[fieldIndex].name = script.pick(interestingNames + other) ?? ""
    case 7:
      if let fieldIndex { message.field[fieldIndex].jsonName = script.pick(interestingNames) ?? "" }
    case 8:
      if let fieldIndex { message.field.append(message.field[fieldIndex]) }
    case 9:
      if let fieldIndex { message.field.remove(at: fieldIndex) }
    case 10:
      message.options.mapEntry.toggle()
    case 11:
      if script.byte() & 1 == 0 || message.oneofDecl.isEmpty {
        message.oneofDecl.append(.with { $0.name = script.pick(interestingNames) ?? "o" })
      } else {
        message.oneofDecl.removeLast()
      }
    case 12:
      // A chain of nested declarations: one in eight 60…107 levels deep (around the validator's 64
      // and the parser's 100), the others 0…6. Not deeper and not more often: SwiftProtobuf sizes
      // every nested message again at each level it encodes, so a chain costs depth² to serialize;
      // up to 255 levels on every pick made runs 5x slower under ASan.
      let pick = Int(script.byte())
      let depth = pick % 8 == 7 ? 60 + pick / 8 % 48 : pick % 8
      var inner = Google_Protobuf_DescriptorProto.with { $0.name = "Deep" }
      for level in 0..<depth {
        let below = inner
        inner = .with {
          $0.name = "D\(level)"
          $0.nestedType = [below]
          $0.field = [
            .with {
              $0.name = "f"; $0.number = 1; $0.type = .message; $0.typeName = "." + path.fullName
            }
          ]
        }
      }
      message.nestedType.append(inner)
    case 13:
      guard !message.enumType.isEmpty else { return }
      let index = Int(script.byte()) % message.enumType.count
      switch script.byte() % 3 {
      case 0: message.enumType[index].value = []
      case 1: message.enumType[index].value.append(.with { $0.name = script.pick(interestingNames) ?? "" })
      default:
        if !message.enumType[index].value.isEmpty { message.enumType[index].value[0].number = script.int32() }
      }
    case 14:
      message.name = script.pick(interestingNames + paths.map(\.fullName)) ?? ""
    case 15:
      if let fieldIndex { message.field[fieldIndex].proto3Optional.toggle() }
    default:
      if let fieldIndex { message.field[fieldIndex].clearOneofIndex() }
    }
  }
}

/// For failure messages only.
func hex(_ bytes: some Collection<UInt8>) -> String {
  bytes.prefix(256).map { String($0, radix: 16) }.joined(separator: " ")
}

/// What a loaded registry must do without trapping.
func exercise(_ registry: DescriptorRegistry, response: [UInt8]) {
  let codec = JSONCodec(registry: registry)
  func check(_ message: MessageDescriptor) {
    if let request = try? codec.binary(fromJSON: "{}", as: message) {
      do {
        _ = try codec.json(fromBinary: request, as: message)
      } catch {
        fatalError(
          "FuzzDescriptors invariant: \(message): {} encodes to \(hex(request)), which does not decode: \(error)")
      }
    }
    _ = try? codec.json(fromBinary: response, as: message)
  }
  for method in registry.methods.prefix(64) {
    check(method.input)
    check(method.output)
  }
  // 16 message types a run, from an offset the input picks: every type is reached over the runs,
  // and a run stays fast enough for a million of them (all 256 made it 52 runs a second).
  let names = registry.messageNames
  let offset = names.isEmpty ? 0 : Int(response.first ?? 0) * 7 % names.count
  for name in (names[offset...] + names[..<offset]).prefix(16) {
    guard let message = registry.message(fullName: name) else {
      fatalError("FuzzDescriptors invariant: messageNames lists \(name) but message(fullName:) does not find it")
    }
    check(message)
  }
  // What loaded once loads again (one run in eight: it loads the whole set a second time).
  guard (response.last ?? 0) & 7 == 0 else { return }
  do {
    let bytes: [UInt8] = try Google_Protobuf_FileDescriptorSet.with { $0.file = registry.files }.serializedBytes()
    _ = try DescriptorRegistry(fileDescriptorSet: bytes)
  } catch {
    fatalError("FuzzDescriptors invariant: a loaded registry's files do not load again: \(error)")
  }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
  let input = UnsafeRawBufferPointer(start: start, count: count)
  guard let mode = input.first else { return 0 }
  let response = [UInt8](input.suffix(32))
  let setBytes: [UInt8]
  if mode & 1 == 0 {
    setBytes = [UInt8](input.dropFirst())
  } else {
    var script = Script(bytes: input.dropFirst())
    var set = baseSets[Int(script.byte()) % baseSets.count]
    var steps = 0
    while !script.bytes.isEmpty && steps < 16 {
      mutate(&set, &script)
      steps += 1
    }
    guard let bytes: [UInt8] = try? set.serializedBytes() else { return 0 }
    setBytes = bytes
  }
  if let registry = try? DescriptorRegistry(fileDescriptorSet: setBytes) {
    exercise(registry, response: response)
  }
  return 0
}
