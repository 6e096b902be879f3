internal import Foundation
internal import SwiftProtobuf

/// The comments of proto files, by the full name of what they describe (`pkg.Message`,
/// `pkg.Message.field`, `pkg.Service`, `pkg.Service.Method`), for the OpenAPI document's
/// descriptions. They come from each file's `source_code_info`, which protoc writes with
/// `--include_source_info` (and `buf build` by default); files without it have none.
///
/// A leading comment is used, else a trailing one; detached comments are not (they describe no
/// element). Each line loses the one space protoc keeps after `//`.
struct ProtoComments: Sendable {
  private var byName: [String: String] = [:]

  static let none = ProtoComments()

  private init() {}

  init(files: [Google_Protobuf_FileDescriptorProto]) {
    for file in files where file.hasSourceCodeInfo {
      var byPath: [[Int32]: String] = [:]
      for location in file.sourceCodeInfo.location {
        let text = location.hasLeadingComments ? location.leadingComments : location.trailingComments
        let cleaned = Self.clean(text)
        if !cleaned.isEmpty { byPath[location.path] = cleaned }
      }
      guard !byPath.isEmpty else { continue }
      let prefix = file.package.isEmpty ? "" : file.package + "."
      // FileDescriptorProto's field numbers: message_type 4, service 6; DescriptorProto's
      // field 2, nested_type 3; ServiceDescriptorProto's method 2.
      for (index, message) in file.messageType.enumerated() {
        self.collect(message, path: [4, Int32(index)], prefix: prefix, byPath)
      }
      for (index, service) in file.service.enumerated() {
        let name = prefix + service.name
        let path: [Int32] = [6, Int32(index)]
        self.byName[name] = byPath[path]
        for (number, method) in service.method.enumerated() {
          self.byName[name + "." + method.name] = byPath[path + [2, Int32(number)]]
        }
      }
    }
  }

  private mutating func collect(
    _ message: Google_Protobuf_DescriptorProto, path: [Int32], prefix: String, _ byPath: [[Int32]: String]
  ) {
    let name = prefix + message.name
    self.byName[name] = byPath[path]
    for (index, field) in message.field.enumerated() {
      self.byName[name + "." + field.name] = byPath[path + [2, Int32(index)]]
    }
    for (index, nested) in message.nestedType.enumerated() {
      self.collect(nested, path: path + [3, Int32(index)], prefix: name + ".", byPath)
    }
  }

  /// The comment of the element `fullName` names, or nil.
  subscript(_ fullName: String) -> String? {
    self.byName[fullName]
  }

  private static func clean(_ text: String) -> String {
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
      line.hasPrefix(" ") ? line.dropFirst() : line[...]
    }
    return lines.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
  }
}
