public import GRPCCore
public import SluiceProtos
internal import SwiftProtobuf

#if canImport(Glibc)
  internal import Glibc
#elseif canImport(Darwin)
  internal import Darwin
#endif

/// `hello.UserService` from the seed: `SayHi` answers `hi <name>---<local time>`.
public struct HostedUserService: Hello_UserService.SimpleServiceProtocol {
  /// Creates the service.
  public init() {}

  public func sayHi(request: Hello_Request, context: ServerContext) async throws -> Hello_Response {
    .with { $0.result = "hi \(request.name)---\(Self.localTimestamp())" }
  }

  /// The current local time as `yyyy-MM-dd HH:mm:ss`, the seed's format.
  static func localTimestamp() -> String {
    // strftime is the C library's formatter; Foundation's DateFormatter would do the same work
    // with a heavier, lock-guarded object per call.
    var now = time(nil)
    var parts = tm()
    localtime_r(&now, &parts)
    return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 32) { buffer in
      let count = strftime(buffer.baseAddress!, buffer.count, "%Y-%m-%d %H:%M:%S", &parts)
      return String(decoding: UnsafeRawBufferPointer(start: buffer.baseAddress, count: count), as: UTF8.self)
    }
  }
}
