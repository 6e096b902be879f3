internal import Foundation
internal import GRPCCore
internal import Logging
import Sluice
internal import SluiceCodec

/// `sluice call --via grpc`: native gRPC on the gateway's own HTTP/2 client (`UpstreamClientCall`,
/// libnghttp2), JSON translated here with the server's descriptors. Every method goes as a
/// bidirectional stream (the wire is the same for every kind), so requests are sent as they are
/// read and responses printed as they arrive.
enum GRPCCall {
  static func run(_ call: CallRequest) async throws -> CallStatus {
    let (connection, name, verbose) = (call.connection, call.method, call.verbose)
    let descriptors = try await connection.descriptors(for: name.service)
    let method = try descriptors.method(name)
    let codec = descriptors.codec
    let target = try connection.target()
    let metadata = try connection.metadata()
    for (key, value) in metadata where key.hasSuffix("-bin") {
      guard Data(base64Encoded: value) != nil else {
        throw CallStatus(.invalidArgument, "-H \(key): a -bin value is base64")
      }
    }
    // A request that does not translate cancels the call; its error is the status.
    let requests = call.requests.prefix(method.kind.clientStreams ? Int.max : 1).map { line throws -> [UInt8] in
      do throws(CodecError) {
        return try codec.binary(fromJSON: line, as: method.input)
      } catch {
        throw CallStatus(.invalidArgument, "invalid \(method.input.fullName): \(error.message)")
      }
    }
    do {
      let status = try await UpstreamClientCall.run(
        address: target,
        tls: connection.tls ? UpstreamTLS(caPath: connection.ca) : nil,
        path: name.path,
        metadata: metadata,
        timeout: call.timeout?.duration,
        requests: requests,
        onHeaders: { headers in if verbose { Self.print("headers", headers) } },
        onMessage: { bytes in
          let json: [UInt8]
          do {
            json = try codec.json(fromBinary: bytes, as: method.output)
          } catch {
            throw CallStatus(.internalError, "the server sent an invalid \(method.output.fullName)")
          }
          ClientOutput.line(String(decoding: json, as: UTF8.self))
        },
        logger: Logger(label: "sluice.client", factory: { _ in SwiftLogNoOpLogHandler() })
      )
      if verbose { Self.print("trailers", status.trailers) }
      return CallStatus(code: status.code, status.message)
    } catch let status as CallStatus {
      return status
    } catch let error as RPCError {
      return CallStatus(error.code, error.message)
    }
  }

  private static func print(_ what: String, _ metadata: [(String, String)]) {
    for (key, value) in metadata where !key.hasPrefix(":") {
      ClientOutput.note("\(what): \(key): \(value)")
    }
  }
}
