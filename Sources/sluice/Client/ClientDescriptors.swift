internal import GRPCCore
internal import SluiceCodec
internal import SwiftProtobuf

/// The descriptors a client command works from (a server's reflection or `--descriptor-set`):
/// the methods and their JSON translation, and the files, to print a symbol as proto source.
struct ClientDescriptors {
  let codec: JSONCodec
  /// The services to list: those the server listed, or every one of the files.
  let services: [String]
  private let files: [Google_Protobuf_FileDescriptorProto]

  init(fileDescriptorSets: [[UInt8]], services: [String]?) throws {
    let registry: DescriptorRegistry
    do {
      registry = try DescriptorRegistry(fileDescriptorSets: fileDescriptorSets)
    } catch {
      throw CallStatus(.invalidArgument, "the descriptors do not load: \(error.message)")
    }
    self.codec = JSONCodec(registry: registry)
    self.files = registry.files
    self.services = services?.sorted() ?? Array(Set(registry.methods.map(\.serviceName))).sorted()
  }

  /// The method `name` names.
  func method(_ name: MethodName) throws -> SluiceCodec.MethodDescriptor {
    guard let method = self.codec.registry.method(path: name.path) else {
      throw CallStatus(
        .unimplemented, "no method \(name.text) in the descriptors (sluice list ADDR SERVICE lists them)")
    }
    return method
  }

  /// The methods of `service` as `pkg.Service.Method`, or nil when there is no such service.
  func methods(of service: String) -> [String]? {
    let methods = self.codec.registry.methods.filter { $0.serviceName == service }
    return methods.isEmpty ? nil : methods.map { "\(service).\($0.methodName)" }
  }

  /// `symbol` (a service, method, message or enum, by full name) as proto source, or nil.
  func describe(_ symbol: String) -> String? {
    let name = symbol.hasPrefix(".") ? String(symbol.dropFirst()) : symbol
    for file in self.files {
      let scope = file.package.isEmpty ? "" : file.package + "."
      for service in file.service {
        if scope + service.name == name {
          return "\(name) is a service:\n" + ProtoSource.service(service)
        }
        for method in service.method where scope + service.name + "." + method.name == name {
          return "\(name) is a method:\n" + ProtoSource.method(method)
        }
      }
      if let found = Self.find(name, in: file.messageType, enums: file.enumType, scope: scope) { return found }
    }
    return nil
  }

  private static func find(
    _ name: String,
    in messages: [Google_Protobuf_DescriptorProto],
    enums: [Google_Protobuf_EnumDescriptorProto],
    scope: String
  ) -> String? {
    for type in enums where scope + type.name == name {
      return "\(name) is an enum:\n" + ProtoSource.enumeration(type, indent: "")
    }
    for type in messages {
      if scope + type.name == name { return "\(name) is a message:\n" + ProtoSource.message(type, indent: "") }
      if let found = find(name, in: type.nestedType, enums: type.enumType, scope: scope + type.name + ".") {
        return found
      }
    }
    return nil
  }
}

/// Descriptors printed back as proto3-style source, as grpcurl's `describe` shows them.
enum ProtoSource {
  static func service(_ service: Google_Protobuf_ServiceDescriptorProto) -> String {
    var text = "service \(service.name) {\n"
    for method in service.method { text += "  " + Self.method(method) }
    return text + "}\n"
  }

  static func method(_ method: Google_Protobuf_MethodDescriptorProto) -> String {
    let input = (method.clientStreaming ? "stream " : "") + method.inputType
    let output = (method.serverStreaming ? "stream " : "") + method.outputType
    return "rpc \(method.name) ( \(input) ) returns ( \(output) );\n"
  }

  static func enumeration(_ type: Google_Protobuf_EnumDescriptorProto, indent: String) -> String {
    var text = "\(indent)enum \(type.name) {\n"
    for value in type.value { text += "\(indent)  \(value.name) = \(value.number);\n" }
    return text + "\(indent)}\n"
  }

  static func message(_ type: Google_Protobuf_DescriptorProto, indent: String) -> String {
    var text = "\(indent)message \(type.name) {\n"
    let entries = Dictionary(
      type.nestedType.filter { $0.options.mapEntry }.map { (type.name + "." + $0.name, $0) },
      uniquingKeysWith: { first, _ in first })
    var printedOneofs: Set<Int32> = []
    for field in type.field {
      if field.hasOneofIndex, !field.proto3Optional {
        let index = field.oneofIndex
        guard printedOneofs.insert(index).inserted, type.oneofDecl.indices.contains(Int(index)) else { continue }
        text += "\(indent)  oneof \(type.oneofDecl[Int(index)].name) {\n"
        for member in type.field where member.hasOneofIndex && member.oneofIndex == index && !member.proto3Optional {
          text += "\(indent)    \(Self.typeName(member, entries: entries)) \(member.name) = \(member.number);\n"
        }
        text += "\(indent)  }\n"
        continue
      }
      var label = ""
      if Self.mapEntry(field, entries: entries) == nil {
        if field.label == .repeated { label = "repeated " } else if field.proto3Optional { label = "optional " }
      }
      text += "\(indent)  \(label)\(Self.typeName(field, entries: entries)) \(field.name) = \(field.number);\n"
    }
    for nested in type.nestedType where !nested.options.mapEntry {
      text += Self.message(nested, indent: indent + "  ")
    }
    for nested in type.enumType { text += Self.enumeration(nested, indent: indent + "  ") }
    return text + "\(indent)}\n"
  }

  private static func mapEntry(
    _ field: Google_Protobuf_FieldDescriptorProto,
    entries: [String: Google_Protobuf_DescriptorProto]
  ) -> Google_Protobuf_DescriptorProto? {
    guard field.label == .repeated, field.type == .message else { return nil }
    let name = field.typeName.split(separator: ".").suffix(2).joined(separator: ".")
    return entries[name]
  }

  private static func typeName(
    _ field: Google_Protobuf_FieldDescriptorProto,
    entries: [String: Google_Protobuf_DescriptorProto]
  ) -> String {
    if let entry = Self.mapEntry(field, entries: entries), entry.field.count == 2 {
      return "map<\(Self.typeName(entry.field[0], entries: [:])), \(Self.typeName(entry.field[1], entries: [:]))>"
    }
    switch field.type {
    case .message, .enum, .group: return field.typeName
    case .double: return "double"
    case .float: return "float"
    case .int64: return "int64"
    case .uint64: return "uint64"
    case .int32: return "int32"
    case .fixed64: return "fixed64"
    case .fixed32: return "fixed32"
    case .bool: return "bool"
    case .string: return "string"
    case .bytes: return "bytes"
    case .uint32: return "uint32"
    case .sfixed32: return "sfixed32"
    case .sfixed64: return "sfixed64"
    case .sint32: return "sint32"
    case .sint64: return "sint64"
    }
  }
}
