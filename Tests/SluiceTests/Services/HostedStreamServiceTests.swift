import GRPCCore
import Sluice
import SluiceGRPCStubs
import SluiceProtos
import SwiftProtobuf
import Testing

@Suite("proto.StreamService over HTTP/2")
struct HostedStreamServiceTests {
  @Test("List sends seven responses counting up from the request's value")
  func list() async throws {
    let points = try await withGateway { _, client in
      try await Proto_StreamService.Client(wrapping: client).list(
        .with {
          $0.pt = .with {
            $0.name = "a"; $0.value = 10
          }
        }
      ) { response in
        try await response.messages.reduce(into: []) { $0.append($1.pt) }
      }
    }
    #expect(points.map(\.value) == Array(10...16))
    #expect(points.allSatisfy { $0.name == "a" })
  }

  @Test("List sends --list-count responses")
  func listCount() async throws {
    let count = try await withGateway(testConfiguration(listCount: 1000)) { _, client in
      try await Proto_StreamService.Client(wrapping: client).list(.with { $0.pt.value = 1 }) {
        try await $0.messages.reduce(0) { count, _ in count + 1 }
      }
    }
    #expect(count == 1000)
  }

  @Test("Record answers value 1 once the client half-closes")
  func record() async throws {
    let response = try await withGateway { _, client in
      try await Proto_StreamService.Client(wrapping: client).record { writer in
        for value in 1...3 {
          try await writer.write(
            .with {
              $0.pt = .with {
                $0.name = "p\(value)"; $0.value = Int32(value)
              }
            })
        }
      }
    }
    #expect(response.pt.name == "gRPC Stream Server: Record")
    #expect(response.pt.value == 1)
  }

  @Test("Route answers 10,000 requests in order, counting from 0")
  func routeKeepsOrder() async throws {
    let values = try await withGateway { _, client in
      try await Proto_StreamService.Client(wrapping: client).route { writer in
        for value in 0..<10_000 {
          try await writer.write(
            .with {
              $0.pt = .with {
                $0.name = "r"; $0.value = Int32(value)
              }
            })
        }
      } onResponse: { response in
        try await response.messages.reduce(into: [Int32]()) { values, message in
          #expect(message.pt.name == "gRPC Stream Server: Route")
          values.append(message.pt.value)
        }
      }
    }
    #expect(values == Array(0..<10_000))
  }

  // Cancellation of a List mid-stream is tested with grpcio in Tests/Interop/test_grpcio.py: the
  // grpc-swift 2.4 client does not reset the HTTP/2 stream when its task is cancelled
  // (grpc/grpc-swift-2#17), so it cannot show the server side stopping.
}
