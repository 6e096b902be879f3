import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Sluice
import Testing

/// An HTTP JSON request to the gateway's HTTP port.
func httpRequest(
  port: Int,
  path: String,
  method: HTTPMethod = .POST,
  headers: [(String, String)] = [],
  body: String? = nil
) -> HTTPClientRequest {
  var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
  request.method = method
  for (name, value) in headers { request.headers.add(name: name, value: value) }
  if let body { request.body = .bytes(ByteBuffer(string: body)) }
  return request
}

/// A response read to its end.
struct HTTPAnswer: Sendable {
  var status: HTTPResponseStatus
  var headers: HTTPHeaders
  var body: String

  /// The body as one JSON object.
  var json: [String: Any]? { try? JSONSerialization.jsonObject(with: Data(self.body.utf8)) as? [String: Any] }

  /// The body as NDJSON objects.
  var lines: [[String: Any]] {
    self.body.split(separator: "\n").compactMap {
      try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }
  }
}

func send(_ request: HTTPClientRequest) async throws -> HTTPAnswer {
  let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
  let body = try await response.body.collect(upTo: 16 << 20)
  return HTTPAnswer(status: response.status, headers: response.headers, body: String(buffer: body))
}

/// Reads a response body line by line as the chunks arrive.
struct LineReader {
  var chunks: HTTPClientResponse.Body.AsyncIterator
  var pending = ""

  init(_ body: HTTPClientResponse.Body) { self.chunks = body.makeAsyncIterator() }

  /// The next line, as text.
  mutating func nextLine() async throws -> String? {
    while true {
      if let newline = self.pending.firstIndex(of: "\n") {
        let line = String(self.pending[..<newline])
        self.pending.removeSubrange(...newline)
        return line
      }
      guard let chunk = try await self.chunks.next() else { return nil }
      self.pending += String(buffer: chunk)
    }
  }

  /// The next line, as a JSON object.
  mutating func next() async throws -> [String: Any]? {
    guard let line = try await self.nextLine() else { return nil }
    return try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
  }
}

/// A Record call whose body never ends: the service cannot answer before its deadline.
func neverEndingRecord(port: Int, timeout: String) -> HTTPClientRequest {
  var request = httpRequest(port: port, path: "/proto.StreamService/Record", headers: [("grpc-timeout", timeout)])
  request.body = .stream(AsyncStream<ByteBuffer> { _ in }, length: .unknown)
  return request
}

@Suite("HTTP JSON calls (async-http-client)")
struct HTTPJSONTests {
  @Test("SayHi: one JSON request, one JSON response")
  func unary() async throws {
    let answer = try await withGateway { gateway, _ in
      try await send(
        httpRequest(
          port: try await gateway.httpPort(),
          path: "/hello.UserService/SayHi",
          headers: [("Content-Type", "application/json")],
          body: #"{"name":"ada"}"#
        )
      )
    }
    #expect(answer.status == .ok)
    #expect(answer.headers["Content-Type"] == ["application/json"])
    #expect((answer.json?["result"] as? String)?.hasPrefix("hi ada---") == true)
  }

  @Test("List answers NDJSON line by line while the RPC runs; hanging up cancels it")
  func listStreamsAndHangUpCancels() async throws {
    // A pace far longer than the test: the first line can only be seen while the RPC still runs.
    var configuration = testConfiguration()
    configuration.services.pace = .seconds(600)
    try await withGateway(configuration) { gateway, _ in
      let port = try await gateway.httpPort()
      let (firstLines, firstLine) = AsyncStream.makeStream(of: String.self)
      let reader = Task {
        let response = try await HTTPClient.shared.execute(
          httpRequest(port: port, path: "/proto.StreamService/List", body: #"{"pt":{"name":"a","value":1}}"#),
          timeout: .seconds(900)
        )
        #expect(response.headers["Content-Type"] == ["application/x-ndjson"])
        var lines = LineReader(response.body)
        while let line = try await lines.nextLine() { firstLine.yield(line) }
      }
      var iterator = firstLines.makeAsyncIterator()
      let first = await iterator.next()
      #expect(first == #"{"pt":{"name":"a","value":1}}"#)
      #expect(gateway.monitor.activeRPCs(method: "proto.StreamService/List") == 1)
      reader.cancel()
      let stopped = try await eventually { gateway.monitor.activeRPCs() == 0 }
      #expect(stopped, "the List RPC should be cancelled when the client hangs up")
    }
  }

  @Test("Route over one HTTP/1.1 exchange: each NDJSON line is answered before the next is sent")
  func routeInteractive() async throws {
    try await withGateway { gateway, _ in
      let (body, lines) = AsyncStream.makeStream(of: ByteBuffer.self)
      var request = httpRequest(port: try await gateway.httpPort(), path: "/proto.StreamService/Route")
      request.headers.add(name: "Content-Type", value: "application/x-ndjson")
      request.body = .stream(body, length: .unknown)

      lines.yield(ByteBuffer(string: #"{"pt":{"name":"a","value":1}}"# + "\n"))
      let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
      var reader = LineReader(response.body)
      let first = try await reader.next()
      #expect((first?["pt"] as? [String: Any])?["value"] as? Int == 0)
      lines.yield(ByteBuffer(string: #"{"pt":{"name":"b","value":2}}"# + "\n"))
      let second = try await reader.next()
      #expect((second?["pt"] as? [String: Any])?["value"] as? Int == 1)
      // A bad message after responses went out: the outcome is the $end line.
      lines.yield(ByteBuffer(string: #"{"pt":{"bogus":1}}"# + "\n"))
      lines.finish()
      let end = try await reader.next()?["$end"] as? [String: Any]
      #expect(end?["code"] as? Int == 3)
      #expect((end?["message"] as? String)?.contains("line 3") == true)
      #expect(try await reader.next() == nil)
    }
  }

  @Test("Record takes an NDJSON body and answers one JSON document")
  func record() async throws {
    let answer = try await withGateway { gateway, _ in
      try await send(
        httpRequest(
          port: try await gateway.httpPort(),
          path: "/proto.StreamService/Record",
          method: .PUT,
          headers: [("Content-Type", "application/x-ndjson")],
          body: #"{"pt":{"name":"a","value":1}}"# + "\n\n" + #"{"pt":{"name":"b","value":2}}"#
        )
      )
    }
    #expect(answer.status == .ok)
    let point = answer.json?["pt"] as? [String: Any]
    #expect(point?["name"] as? String == "gRPC Stream Server: Record")
    #expect(point?["value"] as? Int == 1)
  }

  @Test("Errors before any response: mapped HTTP status and a google.rpc.Status body")
  func errors() async throws {
    var configuration = testConfiguration()
    configuration.calls.maxMessageBytes = 1024
    let answers = try await withGateway(configuration) { gateway, _ in
      let port = try await gateway.httpPort()
      return [
        try await send(httpRequest(port: port, path: "/no.Such/Method", body: "{}")),
        try await send(httpRequest(port: port, path: "/hello.UserService/SayHi", body: #"{"name":"#)),
        try await send(httpRequest(port: port, path: "/hello.UserService/SayHi", body: #"{"nom":"x"}"#)),
        try await send(
          httpRequest(
            port: port, path: "/hello.UserService/SayHi", body: #"{"name":"\#(String(repeating: "x", count: 2000))"}"#)
        ),
        try await send(httpRequest(port: port, path: "/hello.UserService/SayHi", method: .GET)),
        try await send(neverEndingRecord(port: port, timeout: "100m")),
      ]
    }
    #expect(
      answers.map(\.status) == [
        .notImplemented, .badRequest, .badRequest, .payloadTooLarge, .methodNotAllowed, .gatewayTimeout,
      ])
    #expect(answers.map { $0.json?["code"] as? Int } == [12, 3, 3, 8, 12, 4])
    #expect((answers[1].json?["message"] as? String)?.contains("malformed JSON") == true)
    #expect((answers[2].json?["message"] as? String)?.contains("nom") == true)
    #expect(answers[4].headers["Allow"] == ["POST, PUT, OPTIONS"])
  }

  @Test("Request headers become metadata; response metadata comes back as grpc-metadata-* headers")
  func metadata() async throws {
    var configuration = testConfiguration()
    configuration.calls.echoMetadata = true
    let answer = try await withGateway(configuration) { gateway, _ in
      try await send(
        httpRequest(
          port: try await gateway.httpPort(),
          path: "/hello.UserService/SayHi",
          headers: [("Authorization", "Bearer t0k"), ("grpc-metadata-tenant", "acme")],
          body: #"{"name":"ada"}"#
        )
      )
    }
    #expect(answer.status == .ok)
    // Credentials are never echoed; that Authorization reaches the service is the bearer tests' part.
    #expect(answer.headers["grpc-metadata-echo-authorization"] == [])
    #expect(answer.headers["grpc-metadata-echo-tenant"] == ["acme"])
  }

  @Test("Server-Sent Events from a GET with the request in the query, for EventSource")
  func eventStream() async throws {
    let answer = try await withGateway { gateway, _ in
      let query = #"{"pt":{"name":"a b","value":3}}"#.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
      return try await send(
        httpRequest(
          port: try await gateway.httpPort(),
          path: "/proto.StreamService/List?request=\(query)",
          method: .GET,
          headers: [("Accept", "text/event-stream")]
        )
      )
    }
    #expect(answer.headers["Content-Type"] == ["text/event-stream"])
    let events = answer.body.components(separatedBy: "\n\n").filter { !$0.isEmpty }
    #expect(events.count == 8)
    #expect(events.first == #"data: {"pt":{"name":"a b","value":3}}"#)
    #expect(events.last == #"data: {"$end":{"code":0}}"#)
  }

  @Test("CORS: preflight and calls from an allowed origin; other origins refused with 403")
  func cors() async throws {
    var configuration = testConfiguration()
    configuration.origins.allowed = ["http://app.example"]
    configuration.calls.echoMetadata = true
    let answers = try await withGateway(configuration) { gateway, _ in
      let port = try await gateway.httpPort()
      return [
        try await send(
          httpRequest(
            port: port,
            path: "/hello.UserService/SayHi",
            method: .OPTIONS,
            headers: [
              ("Origin", "http://app.example"), ("Access-Control-Request-Method", "POST"),
              ("Access-Control-Request-Headers", "content-type, grpc-metadata-tenant"),
            ]
          )
        ),
        try await send(
          httpRequest(
            port: port,
            path: "/hello.UserService/SayHi",
            headers: [("Origin", "http://app.example"), ("grpc-metadata-tenant", "acme")],
            body: #"{"name":"ada"}"#
          )
        ),
        try await send(
          httpRequest(
            port: port, path: "/hello.UserService/SayHi", headers: [("Origin", "http://evil.example")], body: "{}")
        ),
      ]
    }
    #expect(answers[0].status == .noContent)
    #expect(answers[0].headers["Access-Control-Allow-Origin"] == ["http://app.example"])
    #expect(answers[0].headers["Access-Control-Allow-Headers"] == ["content-type, grpc-metadata-tenant"])
    #expect(answers[1].status == .ok)
    #expect(answers[1].headers["Access-Control-Allow-Origin"] == ["http://app.example"])
    #expect(answers[1].headers["Access-Control-Expose-Headers"] == ["grpc-metadata-echo-tenant"])
    #expect(answers[2].status == .forbidden)
  }

  @Test("GET / serves the public folder's index.html; nothing outside the folder is reachable")
  func staticFiles() async throws {
    let base = FileManager.default.temporaryDirectory.appending(path: "sluice-static-\(UUID().uuidString)")
    let root = base.appending(path: "public")
    try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: base) }
    try Data("<html>page</html>".utf8).write(to: root.appending(path: "index.html"))
    try Data("console.log(1)".utf8).write(to: root.appending(path: "app.js"))
    try Data("secret".utf8).write(to: base.appending(path: "secret.txt"))
    try Data("hidden".utf8).write(to: root.appending(path: ".hidden"))

    var configuration = testConfiguration()
    configuration.http.publicDirectory = root.path
    let answers = try await withGateway(configuration) { gateway, _ in
      let port = try await gateway.httpPort()
      return [
        try await send(httpRequest(port: port, path: "/", method: .GET)),
        try await send(httpRequest(port: port, path: "/app.js", method: .GET)),
        try await send(httpRequest(port: port, path: "/../secret.txt", method: .GET)),
        try await send(httpRequest(port: port, path: "/%2e%2e/secret.txt", method: .GET)),
        try await send(httpRequest(port: port, path: "/.hidden", method: .GET)),
      ]
    }
    #expect(answers[0].status == .ok)
    #expect(answers[0].headers["Content-Type"] == ["text/html; charset=utf-8"])
    #expect(answers[0].body == "<html>page</html>")
    #expect(answers[1].headers["Content-Type"] == ["text/javascript; charset=utf-8"])
    #expect(answers.dropFirst(2).map(\.status) == [.notFound, .notFound, .notFound])
  }
}
