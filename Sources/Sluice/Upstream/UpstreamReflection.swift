internal import GRPCCore
public import Logging
internal import NIOCore
internal import NIOHPACK
internal import NIOPosix
internal import SluiceProtos
internal import SwiftProtobuf

/// `--upstream-reflection`: asks upstreams for their services and descriptors over gRPC server
/// reflection (`grpc.reflection.v1`, falling back to `v1alpha` when an upstream does not have v1),
/// so that the JSON front ends can translate for them without `--descriptor-set`.
///
/// Written on the gateway's own upstream client (`UpstreamConnection`), as one bidirectional
/// stream per upstream: `list_services`, then `file_containing_symbol` for each service the route
/// covers, then `file_by_filename` for any import not yet sent.
public enum UpstreamReflection {
  /// What one upstream described.
  public struct Description: Sendable {
    /// The route asked.
    public var route: UpstreamRoute
    /// The services it listed that the route covers.
    public var services: [String]
    /// A serialized `FileDescriptorSet` of their files and imports.
    public var fileDescriptorSet: [UInt8]
    /// `v1` or `v1alpha`.
    public var version: String
  }

  /// How long one upstream may take to answer.
  static let timeout = TimeAmount.seconds(10)

  /// Asks `route`'s upstream (its first reachable address) to describe its services; the
  /// reflection services themselves only with `includingReflection` (a client listing everything).
  /// - Throws: An error naming the upstream and what went wrong.
  public static func describe(
    _ route: UpstreamRoute,
    tls: UpstreamTLS?,
    logger: Logger,
    includingReflection: Bool = false
  ) async throws -> Description {
    let cluster = try UpstreamCluster(route: route, tls: tls, logger: logger)
    defer { cluster.closeConnections() }
    let loop = MultiThreadedEventLoopGroup.singleton.any()
    for version in ["v1", "v1alpha"] {
      let promise = loop.makePromise(of: ReflectionExchange.Outcome.self)
      loop.execute {
        cluster.connection(on: loop) { result in
          switch result {
          case .failure(let error):
            promise.fail(error)
          case .success(let connection):
            ReflectionExchange(
              connection: connection, version: version, wanted: route.service,
              includingReflection: includingReflection, authority: cluster.authority,
              secure: cluster.secure, promise: promise
            ).start()
          }
        }
      }
      let timer = loop.scheduleTask(in: Self.timeout) {
        promise.fail(
          RPCError(code: .deadlineExceeded, message: "no answer within \(Self.timeout.nanoseconds / 1_000_000_000) s"))
      }
      let outcome = try await promise.futureResult.get()
      timer.cancel()
      guard case .described(let files, let services) = outcome else { continue }
      var set = Google_Protobuf_FileDescriptorSet()
      set.file = files
      return Description(
        route: route, services: services, fileDescriptorSet: try set.serializedBytes(), version: version)
    }
    throw RPCError(code: .unimplemented, message: "it offers neither grpc.reflection.v1 nor v1alpha")
  }
}

/// One reflection conversation on one upstream stream, on the connection's event loop.
private final class ReflectionExchange: UpstreamStreamDelegate {
  enum Outcome {
    case described([Google_Protobuf_FileDescriptorProto], services: [String])
    /// The upstream has no reflection service of this version.
    case unimplemented
  }

  private let connection: UpstreamConnection
  private let path: String
  private let wanted: String
  private let includingReflection: Bool
  private let authority: String
  private let secure: Bool
  private let promise: EventLoopPromise<Outcome>
  private var stream: Int32?
  private var deframer = GRPCMessageDeframer(maximumMessageBytes: 64 << 20, requests: false)
  private var queue: [Grpc_Reflection_V1_ServerReflectionRequest] = []
  private var files: [Google_Protobuf_FileDescriptorProto] = []
  private var fileNames: Set<String> = []
  private var requested: Set<String> = []
  private var services: [String] = []
  private var done = false

  init(
    connection: UpstreamConnection,
    version: String,
    wanted: String,
    includingReflection: Bool,
    authority: String,
    secure: Bool,
    promise: EventLoopPromise<Outcome>
  ) {
    self.connection = connection
    self.path = "/grpc.reflection.\(version).ServerReflection/ServerReflectionInfo"
    self.wanted = wanted
    self.includingReflection = includingReflection
    self.authority = authority
    self.secure = secure
    self.promise = promise
    // Made on the connection's loop, which the promise belongs to: a timeout (or any end)
    // resets a stream still open.
    promise.futureResult.assumeIsolated().whenComplete { _ in self.finish() }
  }

  func start() {
    var headers = UpstreamMetadata.callHeaders(path: self.path, authority: self.authority, secure: self.secure)
    headers.add(name: "user-agent", value: "sluice")
    guard let stream = self.connection.openStream(headers, delegate: self) else {
      self.promise.fail(RPCError(code: .unavailable, message: "its connection is closing"))
      return
    }
    self.stream = stream
    var request = Grpc_Reflection_V1_ServerReflectionRequest()
    request.listServices = "*"
    self.send(request)
  }

  private func send(_ request: Grpc_Reflection_V1_ServerReflectionRequest) {
    guard let stream = self.stream, let bytes: [UInt8] = try? request.serializedBytes() else { return }
    var framed = ByteBuffer()
    framed.writeGRPCMessage(bytes: bytes)
    self.connection.send(framed, on: stream)
  }

  private func finish() {
    guard !self.done else { return }
    self.done = true
    if let stream = self.stream { self.connection.reset(stream) }
  }

  // MARK: - UpstreamStreamDelegate

  func upstreamHeaders(_ headers: HPACKHeaders, endStream: Bool) {
    guard endStream else {
      if let refusal = UpstreamMetadata.refusal(headers) { self.promise.fail(refusal) }
      return
    }
    self.stream = nil
    self.done = true
    let (error, _) = UpstreamMetadata.status(headers)
    if self.deframer.hasPartialMessage {
      self.promise.fail(GRPCErrors.truncatedResponse)
    } else if let error {
      if error.code == .unimplemented {
        self.promise.succeed(.unimplemented)
      } else {
        self.promise.fail(error)
      }
    } else {
      self.promise.succeed(.described(self.files, services: self.services))
    }
  }

  func upstreamData(_ bytes: ByteBuffer, length: Int) {
    self.deframer.append(bytes)
    do throws(RPCError) {
      while let message = try self.deframer.next() {
        guard !message.compressed else { throw GRPCErrors.responseCompressedWithoutEncoding }
        guard
          let response = try? Grpc_Reflection_V1_ServerReflectionResponse(serializedBytes: ProtobufBytes(message.bytes))
        else { throw RPCError(code: .internalError, message: "an invalid ServerReflectionResponse") }
        self.handle(response)
      }
    } catch {
      self.promise.fail(error)
      return
    }
    if let stream = self.stream { self.connection.consumed(length, on: stream) }
  }

  func upstreamTook(_ bytes: Int) {}

  func upstreamClosed(_ reason: UpstreamConnection.CloseReason?) {
    self.stream = nil
    if let reason { self.promise.fail(UpstreamMetadata.error(for: reason, service: self.wanted)) }
  }

  // MARK: - The conversation

  private func handle(_ response: Grpc_Reflection_V1_ServerReflectionResponse) {
    switch response.messageResponse {
    case .listServicesResponse(let list):
      for service in list.service.map(\.name)
      where (self.includingReflection || !service.hasPrefix("grpc.reflection."))
        && (self.wanted == "*" || service == self.wanted)
      {
        self.services.append(service)
        var request = Grpc_Reflection_V1_ServerReflectionRequest()
        request.fileContainingSymbol = service
        self.queue.append(request)
      }
    case .fileDescriptorResponse(let found):
      // An answer holds the file and usually its imports: imports still missing are asked for
      // once the whole answer is in.
      var added: [Google_Protobuf_FileDescriptorProto] = []
      for bytes in found.fileDescriptorProto {
        guard let file = try? Google_Protobuf_FileDescriptorProto(serializedBytes: bytes),
          self.fileNames.insert(file.name).inserted
        else { continue }
        added.append(file)
      }
      self.files += added
      for dependency in added.flatMap(\.dependency) where !self.fileNames.contains(dependency) {
        guard self.requested.insert(dependency).inserted else { continue }
        var request = Grpc_Reflection_V1_ServerReflectionRequest()
        request.fileByFilename = dependency
        self.queue.append(request)
      }
    default:
      break  // an error for one symbol or file: the rest still counts
    }
    if self.queue.isEmpty {
      if let stream = self.stream { self.connection.end(stream) }
    } else {
      self.send(self.queue.removeFirst())
    }
  }
}
