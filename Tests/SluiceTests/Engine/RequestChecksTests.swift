import GRPCCore
import NIOHPACK
import NIOHTTP1
import Testing

@testable import Sluice

/// The value-level checks behind the security fixes (issue 13), without sockets; the interop
/// suite (Tests/Interop/test_security.py) drives the same through real clients.
@Suite("Request checks")
struct RequestChecksTests {
  @Test(
    "grpc-timeout: 1 to 8 digits and one unit, nothing else",
    arguments: [
      ("1H", Duration.seconds(3600)), ("2M", .seconds(120)), ("3S", .seconds(3)), ("4m", .milliseconds(4)),
      ("5u", .microseconds(5)), ("6n", .nanoseconds(6)), ("99999999H", .seconds(99_999_999 * 3600)),
      ("00000000S", .zero),
    ]
  )
  func validTimeouts(text: String, duration: Duration) {
    #expect(GRPCTimeout.parse(text) == duration)
  }

  @Test(
    "grpc-timeout: signs, spaces, a ninth digit, other units and non-ASCII digits are refused",
    arguments: ["-1S", "+1S", " 1S", "1S ", "123456789S", "S", "1", "1s", "1.5S", "١S", "", "1X", "-0S"]
  )
  func invalidTimeouts(text: String) {
    #expect(GRPCTimeout.parse(text) == nil)
  }

  @Test("grpc-message is percent-encoded")
  func percentEncoding() {
    #expect(GRPCServerStreamState.percentEncoded("a 100% ü\n") == "a 100%25 %C3%BC%0A")
  }

  @Test("Metadata keys: gRPC's characters only; framing, hop-by-hop and the gateway's own reserved")
  func metadataKeys() {
    #expect(MetadataKeys.isValid("x-user.id_2"))
    for key in ["", "X-User", "a b", "ü", "a:b"] { #expect(!MetadataKeys.isValid(key), "\(key)") }
    for key in [
      "sluice-rpc-id", "sluice-x", "connection", "host", "proxy-authorization", "te", "grpc-timeout", ":path",
    ] {
      #expect(MetadataKeys.isReservedInRequests(key), "\(key)")
    }
    #expect(!MetadataKeys.isReservedInRequests("authorization"))
  }

  @Test("Origins: tools pass; a browser's Host must be an address, localhost or allowed; the scheme counts")
  func origins() {
    let policy = OriginPolicy(allowedOrigins: [], allowedHosts: ["gw.example"])
    func refused(_ headers: [(String, String)], _ policy: OriginPolicy = policy) -> Bool {
      policy.refusal(HTTPHeaders(headers)) != nil
    }
    #expect(!refused([("Host", "evil.example:8080")]))  // curl, websocat: no browser
    #expect(refused([("Host", "evil.example:8080"), ("Origin", "http://evil.example:8080")]))
    #expect(refused([("Host", "evil.example:8080"), ("Sec-Fetch-Site", "same-origin")]))
    #expect(!refused([("Host", "gw.example:8080"), ("Origin", "http://gw.example:8080")]))
    #expect(!refused([("Host", "10.1.2.3:8080"), ("Origin", "http://10.1.2.3:8080")]))
    #expect(!refused([("Host", "[::1]:8080"), ("Origin", "http://[::1]:8080")]))
    #expect(!refused([("Host", "localhost:8080"), ("Origin", "http://localhost:8080")]))
    #expect(refused([("Host", "localhost:8080"), ("Origin", "https://localhost:8080")]))
    #expect(refused([("Host", "localhost:8080"), ("Origin", "http://localhost:8081")]))
    let tls = OriginPolicy(allowedOrigins: [], usesTLS: true)
    #expect(!refused([("Host", "127.0.0.1:8443"), ("Origin", "https://127.0.0.1:8443")], tls))
    #expect(refused([("Host", "127.0.0.1:8443"), ("Origin", "http://127.0.0.1:8443")], tls))
    let list = OriginPolicy(allowedOrigins: ["https://app.example"])
    #expect(!refused([("Host", "evil.example"), ("Origin", "https://app.example")], list))
    #expect(refused([("Host", "127.0.0.1"), ("Origin", "http://127.0.0.1")], list))
  }

  @Test("The request byte budget refuses what would go past it and takes nothing then")
  func budget() {
    let budget = RequestByteBudget(limit: 100)
    #expect(budget.reserve(60))
    #expect(!budget.reserve(41))
    #expect(budget.bytesHeld == 60)
    #expect(budget.reserve(40))
    budget.release(100)
    #expect(budget.bytesHeld == 0)
  }
}
