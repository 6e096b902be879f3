import GRPCCore
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP1
import Testing

@testable import Sluice

/// What crosses the proxy in headers, and how `--upstream` is read.
@Suite("Upstream metadata and flags")
struct UpstreamMetadataTests {
  /// A responder that records nothing: the request headers only need the call's metadata.
  final class Silent: CallResponder {
    let eventLoop: any EventLoop = EmbeddedEventLoop()
    var isWritable: Bool { true }
    var messageCompressed: Bool { false }
    func send(serialized message: [UInt8], compressed: Bool) {}
    func finish(_ error: RPCError?, trailers: HPACKHeaders) {}
    func sendHeaders(_ metadata: HPACKHeaders) {}
    func holdRequests(_ hold: Bool) {}
    var outputTurn: ConnectionTurn? { nil }
  }

  func call(_ metadata: HPACKHeaders, deadline: NIODeadline? = nil, forwardedFor: String? = nil) -> ServerCall {
    ServerCall(
      responder: Silent(),
      metadata: metadata,
      deadline: deadline,
      origin: CallOrigin(
        peerAddress: try? SocketAddress(ipAddress: "192.0.2.7", port: 40_000),
        source: .headers(
          HTTPHeaders([("Host", "gateway.example:8080")] + (forwardedFor.map { [("X-Forwarded-For", $0)] } ?? [])),
          secure: true
        )
      )
    )
  }

  @Test("Request metadata goes upstream; pseudo, hop-by-hop, framing and gateway keys do not")
  func requestHeaders() {
    let metadata: HPACKHeaders = [
      ":path": "/x.Y/Z", ":authority": "client", "content-type": "application/grpc+proto", "te": "trailers",
      "grpc-timeout": "1S", "grpc-accept-encoding": "gzip", "connection": "keep-alive", "sluice-rpc-id": "forged",
      "authorization": "Bearer t", "x-custom": "v", "x-data-bin": "AAE=", "user-agent": "grpc-go/1.0",
      "x-forwarded-host": "forged", "x-forwarded-proto": "forged",
    ]
    let headers = UpstreamMetadata.requestHeaders(
      for: self.call(metadata, forwardedFor: "203.0.113.1"), path: "/x.Y/Z", authority: "backend:50051", secure: false)
    #expect(headers.first(name: ":authority") == "backend:50051")
    #expect(headers.first(name: ":scheme") == "http")
    #expect(headers[":path"] == ["/x.Y/Z"])
    #expect(headers["content-type"] == ["application/grpc"])
    #expect(headers["te"] == ["trailers"])
    #expect(headers["grpc-timeout"].isEmpty)
    #expect(headers["grpc-accept-encoding"].isEmpty)
    #expect(headers["connection"].isEmpty)
    #expect(headers["sluice-rpc-id"].isEmpty)
    #expect(headers.first(name: "authorization") == "Bearer t")
    #expect(headers.first(name: "x-custom") == "v")
    #expect(headers.first(name: "x-data-bin") == "AAE=")
    #expect(headers["user-agent"] == ["grpc-go/1.0 sluice"])
    #expect(headers["x-forwarded-for"] == ["203.0.113.1, 192.0.2.7"])
    #expect(headers["x-forwarded-host"] == ["gateway.example:8080"])
    #expect(headers["x-forwarded-proto"] == ["https"])
    // Pseudo-headers lead, as HTTP/2 requires.
    let names = headers.map(\.name)
    #expect(names.prefix(4).allSatisfy { $0.hasPrefix(":") })
  }

  @Test("A native call's host, scheme and earlier X-Forwarded-For come from its metadata")
  func nativeOrigin() {
    let call = ServerCall(
      responder: Silent(),
      metadata: [":authority": "gw:8888", ":scheme": "https", "x-forwarded-for": "198.51.100.1"],
      deadline: nil,
      origin: CallOrigin(peerAddress: try? SocketAddress(ipAddress: "192.0.2.9", port: 1), source: .metadata)
    )
    let headers = UpstreamMetadata.requestHeaders(for: call, path: "/x.Y/Z", authority: "b", secure: false)
    #expect(headers["x-forwarded-for"] == ["198.51.100.1, 192.0.2.9"])
    #expect(headers["x-forwarded-host"] == ["gw:8888"])
    #expect(headers["x-forwarded-proto"] == ["https"])
  }

  @Test("The deadline goes upstream as what is left of it")
  func deadline() {
    let headers = UpstreamMetadata.requestHeaders(
      for: self.call([:], deadline: .now() + .seconds(3)), path: "/x.Y/Z", authority: "b", secure: false)
    let value = headers.first(name: "grpc-timeout") ?? ""
    let milliseconds = Int(value.dropLast()) ?? -1
    #expect(value.hasSuffix("m"))
    #expect((2_900...3_000).contains(milliseconds))
    // A deadline already past still sends the smallest timeout, not a negative one.
    #expect(UpstreamMetadata.timeout(until: .now() - .seconds(1)) == "1m")
    #expect(UpstreamMetadata.timeout(until: .now() + .hours(100_000)).hasSuffix("S"))
  }

  @Test("Trailers give the status unchanged and their other metadata back")
  func status() {
    let (error, trailers) = UpstreamMetadata.status([
      "grpc-status": "9", "grpc-message": "not%20now%3A%20%C3%BC", "grpc-status-details-bin": "CAk=",
      "x-trailer": "t", "content-type": "application/grpc",
    ])
    #expect(error?.code == .failedPrecondition)
    #expect(error?.message == "not now: ü")
    #expect(trailers["grpc-status-details-bin"] == ["CAk="])
    #expect(trailers["x-trailer"] == ["t"])
    #expect(trailers["content-type"].isEmpty)
    #expect(trailers["grpc-status"].isEmpty)
    #expect(UpstreamMetadata.status(["grpc-status": "0"]).0 == nil)
    #expect(UpstreamMetadata.status(["grpc-status": "99"]).0?.code == .unknown)
    #expect(UpstreamMetadata.status(["x": "y"]).0?.code == .unknown)
    #expect(UpstreamMetadata.percentDecoded("100%") == "100%")
    #expect(UpstreamMetadata.percentDecoded("%zz%41") == "%zzA")
  }

  @Test("A response that is not gRPC maps to gRPC's codes for its HTTP status")
  func refusals() {
    #expect(UpstreamMetadata.refusal([":status": "200", "content-type": "application/grpc"]) == nil)
    #expect(UpstreamMetadata.refusal([":status": "200", "content-type": "application/grpc+proto"]) == nil)
    #expect(UpstreamMetadata.refusal([":status": "404"])?.code == .unimplemented)
    #expect(UpstreamMetadata.refusal([":status": "503"])?.code == .unavailable)
    #expect(UpstreamMetadata.refusal([":status": "401"])?.code == .unauthenticated)
    #expect(UpstreamMetadata.refusal([":status": "200", "content-type": "text/html"])?.code == .unknown)
  }

  @Test("--upstream parses services, wildcards and addresses, and names what is wrong")
  func routes() throws {
    let route = try UpstreamRoute(parsing: "pkg.Service=10.0.0.1:50051,backend.internal:443,[::1]:7000")
    #expect(route.service == "pkg.Service")
    #expect(
      route.addresses == [
        UpstreamAddress(host: "10.0.0.1", port: 50051), UpstreamAddress(host: "backend.internal", port: 443),
        UpstreamAddress(host: "::1", port: 7000),
      ])
    #expect(route.addresses[2].description == "[::1]:7000")
    #expect(try UpstreamRoute(parsing: "*=localhost:1").service == "*")
    for bad in [
      "pkg.Service", "pkg.Service=", "pkg.Service=host", "pkg.Service=host:0", "a b=h:1", ".x=h:1", "x=h:99999",
    ] {
      #expect(throws: UpstreamConfigurationError.self) { try UpstreamRoute(parsing: bad) }
    }
  }

  @Test("Only /pkg.Service/Method paths name an upstream service")
  func servicePaths() {
    #expect(UpstreamDirectory.service(of: "/pkg.S/M") == "pkg.S")
    #expect(UpstreamDirectory.service(of: "/pkg.S/M/extra") == nil)
    #expect(UpstreamDirectory.service(of: "pkg.S/M") == nil)
    #expect(UpstreamDirectory.service(of: "//M") == nil)
  }
}
