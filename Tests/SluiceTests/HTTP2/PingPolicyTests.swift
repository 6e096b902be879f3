import NIOCore
import Testing

@testable import Sluice

@Suite("grpc-go's PING policy, as a value")
struct PingPolicyTests {
  /// Feeds PINGs to `policy` at `times` (offsets from one start); returns the verdict of each.
  static func verdicts(
    _ policy: inout PingPolicy,
    at times: [TimeAmount],
    openStreams: Int = 1,
    sent: (Int) -> Bool = { _ in false }
  ) -> [Bool] {
    let start = NIODeadline.now()
    return times.enumerated().map { index, offset in
      policy.receivedPing(at: start + offset, openStreams: openStreams, sentSinceLastPing: sent(index))
    }
  }

  @Test("PINGs that follow response data are never struck, however many and however fast")
  func bdpPings() {
    var policy = PingPolicy()
    let times = (0..<100_000).map { TimeAmount.microseconds(Int64($0) * 50) }
    let verdicts = Self.verdicts(&policy, at: times, sent: { _ in true })
    #expect(!verdicts.contains(true))
  }

  @Test("The third strike is one too many: PINGs a second apart with nothing sent between")
  func flood() {
    var policy = PingPolicy()
    let verdicts = Self.verdicts(&policy, at: [.seconds(0), .seconds(1), .seconds(2), .seconds(3)])
    #expect(verdicts == [false, false, false, true])  // the first PING is no strike at all
  }

  @Test("Data sent clears the strikes; PINGs 5 minutes apart are not strikes")
  func forgiveness() {
    var policy = PingPolicy()
    let times = (0..<30).map { TimeAmount.seconds(Int64($0)) }
    let verdicts = Self.verdicts(&policy, at: times, sent: { $0 % 3 == 2 })
    #expect(!verdicts.contains(true))

    var keepalive = PingPolicy()
    let everyFiveMinutes = (0..<12).map { TimeAmount.minutes(Int64($0) * 5) }
    #expect(!Self.verdicts(&keepalive, at: everyFiveMinutes).contains(true))
  }

  @Test("With no stream open, PINGs closer than two hours are strikes")
  func idle() {
    var policy = PingPolicy()
    let everyTenMinutes = (0..<4).map { TimeAmount.minutes(Int64($0) * 10) }
    #expect(Self.verdicts(&policy, at: everyTenMinutes, openStreams: 0) == [false, false, false, true])
  }
}
