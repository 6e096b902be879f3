internal import NIOConcurrencyHelpers
internal import SluiceCodec
internal import SwiftProtobuf

#if canImport(FoundationEssentials)
  internal import FoundationEssentials
#else
  internal import Foundation
#endif

/// What the gateway serves, as server reflection and health report it: every service by name
/// (hosted, and proxied to an upstream) and the descriptors the JSON codec uses. Swapped whole
/// when the descriptors change (`Gateway.useDescriptors`), like the JSON bridge.
final class ServiceCatalog: Sendable {
  struct Contents: Sendable {
    /// The files of the descriptors, for reflection.
    var index: DescriptorIndex
    /// Every service served, sorted: the hosted ones and the upstream ones Sluice can name
    /// (`--upstream SERVICE=`, and what the descriptors hold that an upstream serves).
    var services: [String]
    /// The upstream that serves each proxied service of `services`.
    var upstreams: [String: UpstreamCluster]
  }

  private let contents: NIOLockedValueBox<Contents>

  init(_ contents: Contents) {
    self.contents = NIOLockedValueBox(contents)
  }

  var current: Contents { self.contents.withLockedValue { $0 } }

  func replace(with contents: Contents) {
    self.contents.withLockedValue { $0 = contents }
  }
}

/// The files of a `DescriptorRegistry` by name, and which file declares each symbol (message,
/// enum, service, method, field, extension: by full name), for `grpc.reflection`.
struct DescriptorIndex: Sendable {
  struct File: Sendable {
    /// The serialized `FileDescriptorProto`, as reflection sends it.
    var bytes: Data
    var dependencies: [String]
  }

  private var files: [String: File] = [:]
  private var symbols: [String: String] = [:]
  /// Extensions by the full name of the message they extend: number → file.
  private var extensions: [String: [Int32: String]] = [:]

  /// An index of nothing.
  init() {}

  /// The registry's files (it has taken each name once).
  init(_ registry: DescriptorRegistry) throws {
    for file in registry.files {
      self.files[file.name] = File(bytes: try file.serializedBytes(), dependencies: file.dependency)
      self.add(file)
    }
  }

  private mutating func add(_ file: Google_Protobuf_FileDescriptorProto) {
    let scope = file.package.isEmpty ? "" : file.package + "."
    func declare(_ name: String) {
      if self.symbols[name] == nil { self.symbols[name] = file.name }
    }
    func extend(_ fields: [Google_Protobuf_FieldDescriptorProto], in scope: String) {
      for field in fields {
        declare(scope + field.name)
        let extendee = String(field.extendee.drop(while: { $0 == "." }))
        self.extensions[extendee, default: [:]][field.number] = file.name
      }
    }
    func addMessage(_ type: Google_Protobuf_DescriptorProto, in scope: String) {
      let name = scope + type.name
      declare(name)
      for field in type.field { declare(name + "." + field.name) }
      for nested in type.nestedType { addMessage(nested, in: name + ".") }
      for nested in type.enumType { declare(name + "." + nested.name) }
      extend(type.extension, in: name + ".")
    }
    if !file.package.isEmpty { declare(file.package) }
    for type in file.messageType { addMessage(type, in: scope) }
    for type in file.enumType { declare(scope + type.name) }
    for service in file.service {
      declare(scope + service.name)
      for method in service.method { declare(scope + service.name + "." + method.name) }
    }
    extend(file.extension, in: scope)
  }

  /// Whether a file declares `symbol` (a full name without a leading dot).
  func declares(_ symbol: String) -> Bool {
    self.symbols[symbol] != nil
  }

  /// The name of the file that declares `symbol`.
  func file(declaring symbol: String) -> String? {
    self.symbols[symbol]
  }

  /// The name of the file that declares extension `number` of `message`.
  func file(extending message: String, number: Int32) -> String? {
    self.extensions[message]?[number]
  }

  /// The extension numbers of `message` (empty when it has none), or nil when no file declares it.
  func extensionNumbers(of message: String) -> [Int32]? {
    guard self.symbols[message] != nil else { return nil }
    return (self.extensions[message].map { Array($0.keys) } ?? []).sorted()
  }

  /// File `name` first, then every file it imports, directly or not, each once, leaving out those
  /// in `sent`, which gets the names of those returned; nil when there is no such file.
  func fileAndImports(_ name: String, leavingOut sent: inout Set<String>) -> [Data]? {
    guard let file = self.files[name] else { return nil }
    // The named file goes out even when it went before on this stream: the client asked for it.
    sent.insert(name)
    var result = [file.bytes]
    var pending = file.dependencies
    while let next = pending.popLast() {
      guard sent.insert(next).inserted, let entry = self.files[next] else { continue }
      result.append(entry.bytes)
      pending += entry.dependencies
    }
    return result
  }
}
