internal import Foundation
internal import GRPCCore
internal import GRPCNIOTransportHTTP2Posix
internal import NIOCore
import Sluice
internal import SluiceCodec
internal import Synchronization

/// `sluice call --via grpc`: native gRPC with grpc-swift's HTTP/2 client, JSON translated here with
/// the server's descriptors. Every method goes as a bidirectional stream (the wire is the same for
/// every kind), so requests are sent as they are read and responses printed as they arrive.
enum GRPCCall {
  static func run(_ call: CallRequest) async throws -> CallStatus {
    let (connection, name, requests, timeout, verbose) = (
      call.connection, call.method, call.requests, call.timeout, call.verbose
    )
    let descriptors = try await connection.descriptors(for: name.service)
    let method = try descriptors.method(name)
    let codec = descriptors.codec
    let target = try connection.target()
    let security: HTTP2ClientTransport.Posix.TransportSecurity =
      connection.tls
      ? .tls { tls in
        if let ca = connection.ca { tls.trustRoots = .certificates([.file(path: ca, format: .pem)]) }
      } : .plaintext
    let transport = try HTTP2ClientTransport.Posix(
      target: Self.resolvable(target),
      transportSecurity: security
    )
    var metadata = Metadata()
    for (key, value) in try connection.metadata() {
      if key.hasSuffix("-bin") {
        guard let bytes = Data(base64Encoded: value) else {
          throw CallStatus(.invalidArgument, "-H \(key): a -bin value is base64")
        }
        metadata.addBinary(Array(bytes), forKey: key)
      } else {
        metadata.addString(value, forKey: key)
      }
    }
    var options = CallOptions.defaults
    options.timeout = timeout?.duration
    // A request that does not translate cancels the call; its error, not the cancellation's, is
    // the status.
    let invalid = Mutex<CallStatus?>(nil)
    let request = StreamingClientRequest<[UInt8]>(metadata: metadata) { writer in
      for await line in requests {
        let bytes: [UInt8]
        do throws(CodecError) {
          bytes = try codec.binary(fromJSON: line, as: method.input)
        } catch {
          let status = CallStatus(.invalidArgument, "invalid \(method.input.fullName): \(error.message)")
          invalid.withLock { $0 = status }
          throw RPCError(code: .cancelled, message: status.message)
        }
        try await writer.write(bytes)
        if !method.kind.clientStreams { break }
      }
    }
    let descriptor = GRPCCore.MethodDescriptor(fullyQualifiedService: name.service ?? "", method: name.method)
    do {
      try await withGRPCClient(transport: transport) { client in
        try await client.bidirectionalStreaming(
          request: request,
          descriptor: descriptor,
          serializer: BytesSerializer(),
          deserializer: BytesDeserializer(),
          options: options
        ) { response in
          let contents = try response.accepted.get()
          if verbose { Self.print("headers", contents.metadata) }
          for try await part in contents.bodyParts {
            switch part {
            case .message(let bytes):
              do {
                ClientOutput.line(String(decoding: try codec.json(fromBinary: bytes, as: method.output), as: UTF8.self))
              } catch {
                throw RPCError(code: .internalError, message: "the server sent an invalid \(method.output.fullName)")
              }
            case .trailingMetadata(let trailers):
              if verbose { Self.print("trailers", trailers) }
            }
          }
        }
      }
    } catch let error as RPCError {
      if let status = invalid.withLock({ $0 }) { return status }
      if verbose { Self.print("trailers", error.metadata) }
      return CallStatus(error.code, error.message)
    }
    return CallStatus(code: 0, "")
  }

  /// An IP address as itself (no name to resolve, and none to send as TLS SNI), else a DNS name.
  private static func resolvable(_ target: UpstreamAddress) -> any ResolvableTarget {
    if (try? SocketAddress(ipAddress: target.host, port: target.port)) != nil {
      return target.host.contains(":")
        ? .ipv6(host: target.host, port: target.port) : .ipv4(host: target.host, port: target.port)
    }
    return .dns(host: target.host, port: target.port)
  }

  private static func print(_ what: String, _ metadata: Metadata) {
    for (key, value) in metadata where !key.hasPrefix(":") {
      switch value {
      case .string(let text): ClientOutput.note("\(what): \(key): \(text)")
      case .binary(let bytes): ClientOutput.note("\(what): \(key): \(Data(bytes).base64EncodedString())")
      }
    }
  }
}

/// Messages already serialized (by the JSON codec), passed as they are.
private struct BytesSerializer: MessageSerializer {
  func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes {
    Bytes(message)
  }
}

private struct BytesDeserializer: MessageDeserializer {
  func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
    serializedMessageBytes.withUnsafeBytes { Array($0) }
  }
}
