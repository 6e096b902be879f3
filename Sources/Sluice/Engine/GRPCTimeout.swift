/// The `grpc-timeout` header (gRPC's PROTOCOL-HTTP2: `TimeoutValue TimeoutUnit`, 1 to 8 ASCII
/// digits and one of `H M S m u n`), parsed strictly: no sign, no spaces, no ninth digit.
///
/// One parser for every transport. On the native port it runs before grpc-swift sees the header
/// (grpc-swift 2.4.3 traps on a negative amount such as `-1S`); on the JSON front ends it reads
/// the same header from a WebSocket handshake or an HTTP request.
enum GRPCTimeout {
  /// The duration `text` stands for, or nil when it is not a valid `grpc-timeout`.
  static func parse(_ text: some StringProtocol) -> Duration? {
    let bytes = Array(text.utf8)
    guard (2...9).contains(bytes.count), let unit = bytes.last else { return nil }
    var amount: Int64 = 0
    for byte in bytes.dropLast() {
      guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
      amount = amount * 10 + Int64(byte - UInt8(ascii: "0"))  // at most 99,999,999: no overflow
    }
    switch unit {
    case UInt8(ascii: "H"): return .seconds(amount * 3600)
    case UInt8(ascii: "M"): return .seconds(amount * 60)
    case UInt8(ascii: "S"): return .seconds(amount)
    case UInt8(ascii: "m"): return .milliseconds(amount)
    case UInt8(ascii: "u"): return .microseconds(amount)
    case UInt8(ascii: "n"): return .nanoseconds(amount)
    default: return nil
    }
  }
}
