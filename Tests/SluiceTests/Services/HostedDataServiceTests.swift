import GRPCCore
import Sluice
import SluiceGRPCStubs
import SluiceProtos
import SwiftProtobuf
import Testing

@Suite("DataService over HTTP/2")
struct HostedDataServiceTests {
  @Test("BidirectionalStream answers each request as it arrives")
  func answersEachMessageBeforeTheNext() async throws {
    let (requests, requestWriter) = AsyncStream.makeStream(of: String.self)
    let results = try await withGateway { _, client in
      try await DataService.Client(wrapping: client).bidirectionalStream { writer in
        // Only send the next request after the previous answer arrived.
        for await data in requests {
          try await writer.write(.with { $0.data = data })
        }
      } onResponse: { response in
        var results: [String] = []
        requestWriter.yield("first")
        for try await message in response.messages {
          results.append(message.result)
          if results.count == 3 { requestWriter.finish() } else { requestWriter.yield("next \(results.count)") }
        }
        return results
      }
    }
    #expect(results == ["processed: first", "processed: next 1", "processed: next 2"])
  }
}
