internal import AsyncHTTPClient
internal import Foundation
internal import GRPCCore
internal import NIOCore
internal import NIOHTTP1
internal import NIOSSL
import Sluice

/// `sluice call --via http`: one HTTP JSON call on a Sluice gateway's HTTP port, with
/// async-http-client. The body is NDJSON sent line by line as it is read (the end of input is the
/// half-close); a streaming answer is NDJSON printed line by line, ending with its `$end` line; a
/// single answer is one JSON document, and an error before any message is an HTTP status with a
/// `google.rpc.Status` body.
enum HTTPCallClient {
  static func run(_ call: CallRequest) async throws -> CallStatus {
    let (connection, name, requests, timeout, verbose) = (
      call.connection, call.method, call.requests, call.timeout, call.verbose
    )
    let target = try connection.target()
    var configuration = HTTPClient.Configuration()
    // One call from a command line: a refused connection is UNAVAILABLE at once, as for --via grpc
    // and ws, not after the pool's retries for its 10-second connect timeout.
    configuration.connectionPool.retryConnectionEstablishment = false
    if connection.tls {
      var tls = TLSConfiguration.makeClientConfiguration()
      if let ca = connection.ca { tls.trustRoots = .file(ca) }
      configuration.tlsConfiguration = tls
    }
    let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    do {
      let outcome = try await Self.call(
        client, target: target, connection: connection, path: name.path, requests: requests,
        timeout: timeout, verbose: verbose)
      try await client.shutdown()
      return outcome
    } catch {
      try? await client.shutdown()
      if let failure = error as? CallStatus { return failure }
      return CallStatus(.unavailable, "\(target): \(error)")
    }
  }

  private static func call(
    _ client: HTTPClient,
    target: UpstreamAddress,
    connection: ConnectionOptions,
    path: String,
    requests: AsyncStream<String>,
    timeout: TimeoutValue?,
    verbose: Bool
  ) async throws -> CallStatus {
    var request = HTTPClientRequest(url: "\(connection.tls ? "https" : "http")://\(target)\(path)")
    request.method = .POST
    request.headers.add(name: "Content-Type", value: "application/x-ndjson")
    request.headers.add(contentsOf: try GatewayJSON.headers(connection, timeout: timeout))
    request.body = .stream(requests.map { ByteBuffer(string: $0 + "\n") }, length: .unknown)
    let response = try await client.execute(request, timeout: .hours(24 * 365))
    if verbose {
      for (name, value) in response.headers where name.lowercased().hasPrefix("grpc-metadata-") {
        ClientOutput.note("headers: \(name.dropFirst("grpc-metadata-".count).lowercased()): \(value)")
      }
    }
    var body = ByteBuffer()
    guard response.status == .ok else {
      for try await var part in response.body { body.writeBuffer(&part) }
      return HTTPResponseStatusJSON.failure(status: response.status, body: body)
    }
    let streaming = response.headers.first(name: "Content-Type")?.lowercased().hasPrefix("application/x-ndjson") == true
    guard streaming else {
      for try await var part in response.body { body.writeBuffer(&part) }
      ClientOutput.line(String(buffer: body).trimmingCharacters(in: .whitespacesAndNewlines))
      return CallStatus(code: 0, "")
    }
    // NDJSON: each line is printed as soon as it is whole.
    for try await var part in response.body {
      body.writeBuffer(&part)
      while let newline = body.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
        let line = body.readString(length: newline - body.readerIndex) ?? ""
        body.moveReaderIndex(forwardBy: 1)
        if let end = Self.end(line, verbose: verbose) { return end }
      }
      body.discardReadBytes()
    }
    return CallStatus(.unavailable, "the answer ended without a $end line")
  }

  /// Prints a line, or returns the status of the `$end` line.
  private static func end(_ line: String, verbose: Bool) -> CallStatus? {
    if let end = GatewayJSON.control(line)?["$end"] as? [String: Any] {
      return GatewayJSON.status(ofEnd: end, verbose: verbose)
    }
    if !line.isEmpty { ClientOutput.line(line) }
    return nil
  }
}
