/// Base64 as the proto3 JSON mapping wants it: standard alphabet with padding on output;
/// standard or URL-safe alphabet, padding optional, on input.
public enum Base64 {
  private static let alphabet: [UInt8] = Array(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

  /// 0...63 for a digit of either alphabet, 0xFF otherwise.
  private static let decodeTable: [UInt8] = {
    var table = [UInt8](repeating: 0xFF, count: 256)
    for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
    table[Int(UInt8(ascii: "-"))] = 62
    table[Int(UInt8(ascii: "_"))] = 63
    return table
  }()

  /// Appends the quoted base64 text of `data` to `output`.
  static func encodeQuoted(_ data: UnsafeBufferPointer<UInt8>, into output: inout [UInt8]) {
    output.append(UInt8(ascii: "\""))
    output.reserveCapacity(output.count + (data.count + 2) / 3 * 4 + 1)
    alphabet.withUnsafeBufferPointer { alphabet in
      var index = 0
      while index + 3 <= data.count {
        let chunk = UInt32(data[index]) << 16 | UInt32(data[index + 1]) << 8 | UInt32(data[index + 2])
        output.append(alphabet[Int(chunk >> 18)])
        output.append(alphabet[Int(chunk >> 12 & 63)])
        output.append(alphabet[Int(chunk >> 6 & 63)])
        output.append(alphabet[Int(chunk & 63)])
        index += 3
      }
      let remaining = data.count - index
      if remaining == 1 {
        let chunk = UInt32(data[index]) << 16
        output.append(alphabet[Int(chunk >> 18)])
        output.append(alphabet[Int(chunk >> 12 & 63)])
        output.append(UInt8(ascii: "="))
        output.append(UInt8(ascii: "="))
      } else if remaining == 2 {
        let chunk = UInt32(data[index]) << 16 | UInt32(data[index + 1]) << 8
        output.append(alphabet[Int(chunk >> 18)])
        output.append(alphabet[Int(chunk >> 12 & 63)])
        output.append(alphabet[Int(chunk >> 6 & 63)])
        output.append(UInt8(ascii: "="))
      }
    }
    output.append(UInt8(ascii: "\""))
  }

  /// Decodes base64 text (either alphabet, padding optional); `nil` when it is not base64.
  public static func decode(_ text: String) -> [UInt8]? {
    var utf8 = Array(text.utf8)
    // Strip padding: at most two `=`, only at the end (partial padding is tolerated).
    var padding = 0
    while utf8.last == UInt8(ascii: "=") && padding < 2 {
      utf8.removeLast()
      padding += 1
    }
    if utf8.count % 4 == 1 { return nil }
    var output: [UInt8] = []
    output.reserveCapacity(utf8.count * 3 / 4)
    var accumulator: UInt32 = 0
    var bits = 0
    for byte in utf8 {
      let digit = decodeTable[Int(byte)]
      if digit == 0xFF { return nil }
      accumulator = accumulator << 6 | UInt32(digit)
      bits += 6
      if bits >= 8 {
        bits -= 8
        output.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
      }
    }
    // Non-zero leftover bits are tolerated, as by the reference implementations.
    return output
  }
}
