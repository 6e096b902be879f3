import GRPCCore
import Sluice
import SluiceGRPCStubs
import SluiceProtos
import SwiftProtobuf
import Testing

@Suite("hello.UserService over HTTP/2")
struct HostedUserServiceTests {
  @Test("SayHi answers hi <name>---<yyyy-MM-dd HH:mm:ss>")
  func sayHi() async throws {
    let response = try await withGateway { _, client in
      try await Hello_UserService.Client(wrapping: client).sayHi(.with { $0.name = "ada" })
    }
    let match = try #require(
      response.result.wholeMatch(of: /hi ada---(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})/)
    )
    #expect((1...12).contains(Int(match.2)!))
    #expect((1...31).contains(Int(match.3)!))
    #expect((0...23).contains(Int(match.4)!))
  }
}
