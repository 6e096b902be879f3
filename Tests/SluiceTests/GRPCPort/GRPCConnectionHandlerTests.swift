import Testing

@testable import Sluice

@Suite("The native port's receive windows")
struct GRPCConnectionHandlerTests {
  @Test("A window is reopened to the target once it is down to half, not before")
  func reopenAtHalf() {
    let target = 1 << 20
    #expect(GRPCConnectionHandler.windowIncrement(window: target, target: target) == nil)
    #expect(GRPCConnectionHandler.windowIncrement(window: target / 2 + 1, target: target) == nil)
    #expect(GRPCConnectionHandler.windowIncrement(window: target / 2, target: target) == target / 2)
    #expect(GRPCConnectionHandler.windowIncrement(window: 0, target: target) == target)
    // The connection's window starts at 65,535 and grows to a larger target at the first DATA.
    #expect(GRPCConnectionHandler.windowIncrement(window: 65_535 - 100, target: target) == target - 65_435)
  }

  @Test("A negative window (the client's SETTINGS shrank it) is reopened past zero, within HTTP/2's limit")
  func negative() {
    #expect(GRPCConnectionHandler.windowIncrement(window: -10, target: 100) == 110)
    #expect(GRPCConnectionHandler.windowIncrement(window: -10, target: Int(Int32.max)) == Int(Int32.max))
  }
}
