/// The string forms of Timestamp (RFC 3339), Duration (`"1.5s"`) and FieldMask (`"a.bC,d"`).
enum WellKnownText {
  /// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the Timestamp range.
  static let minimumTimestampSeconds: Int64 = -62_135_596_800
  static let maximumTimestampSeconds: Int64 = 253_402_300_799
  /// ±10,000 years, the Duration range.
  static let maximumDurationSeconds: Int64 = 315_576_000_000

  // MARK: Timestamp

  static func formatTimestamp(seconds: Int64, nanos: Int32) -> String? {
    guard seconds >= minimumTimestampSeconds, seconds <= maximumTimestampSeconds,
      nanos >= 0, nanos <= 999_999_999
    else { return nil }
    let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
    let secondOfDay = seconds - days * 86_400
    let (year, month, day) = civil(fromDays: days)
    var text = pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2) + "T"
    text += pad(secondOfDay / 3600, 2) + ":" + pad(secondOfDay / 60 % 60, 2) + ":" + pad(secondOfDay % 60, 2)
    text += fraction(nanos) + "Z"
    return text
  }

  static func parseTimestamp(_ text: String) -> (seconds: Int64, nanos: Int32)? {
    let utf8 = Array(text.utf8)
    guard utf8.count >= 20 else { return nil }
    func number(_ start: Int, _ count: Int) -> Int64? {
      var value: Int64 = 0
      for index in start..<(start + count) {
        let digit = utf8[index] &- UInt8(ascii: "0")
        guard digit < 10 else { return nil }
        value = value * 10 + Int64(digit)
      }
      return value
    }
    guard let year = number(0, 4), utf8[4] == UInt8(ascii: "-"), let month = number(5, 2),
      utf8[7] == UInt8(ascii: "-"), let day = number(8, 2), utf8[10] == UInt8(ascii: "T"),
      let hour = number(11, 2), utf8[13] == UInt8(ascii: ":"), let minute = number(14, 2),
      utf8[16] == UInt8(ascii: ":"), let second = number(17, 2)
    else { return nil }
    guard year >= 1, month >= 1, month <= 12, day >= 1, day <= daysInMonth(year, month),
      hour < 24, minute < 60, second < 60
    else { return nil }
    var index = 19
    var nanos: Int32 = 0
    if utf8[index] == UInt8(ascii: ".") {
      index += 1
      var digits = 0
      while index < utf8.count, utf8[index] &- UInt8(ascii: "0") < 10 {
        guard digits < 9 else { return nil }
        nanos = nanos * 10 + Int32(utf8[index] - UInt8(ascii: "0"))
        digits += 1
        index += 1
      }
      guard digits > 0 else { return nil }
      for _ in digits..<9 { nanos *= 10 }
    }
    guard index < utf8.count else { return nil }
    var offset: Int64 = 0
    if utf8[index] == UInt8(ascii: "Z") {
      index += 1
    } else if utf8[index] == UInt8(ascii: "+") || utf8[index] == UInt8(ascii: "-") {
      guard utf8.count - index == 6, let offsetHours = number(index + 1, 2), utf8[index + 3] == UInt8(ascii: ":"),
        let offsetMinutes = number(index + 4, 2), offsetHours < 24, offsetMinutes < 60
      else { return nil }
      offset = (offsetHours * 3600 + offsetMinutes * 60) * (utf8[index] == UInt8(ascii: "-") ? -1 : 1)
      index += 6
    } else {
      return nil
    }
    guard index == utf8.count else { return nil }
    let seconds = days(fromCivil: year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset
    guard seconds >= minimumTimestampSeconds, seconds <= maximumTimestampSeconds else { return nil }
    return (seconds, nanos)
  }

  // MARK: Duration

  static func formatDuration(seconds: Int64, nanos: Int32) -> String? {
    guard seconds >= -maximumDurationSeconds, seconds <= maximumDurationSeconds,
      nanos >= -999_999_999, nanos <= 999_999_999,
      !(seconds > 0 && nanos < 0), !(seconds < 0 && nanos > 0)
    else { return nil }
    let sign = seconds < 0 || nanos < 0 ? "-" : ""
    return sign + String(seconds.magnitude) + fraction(Int32(nanos.magnitude)) + "s"
  }

  static func parseDuration(_ text: String) -> (seconds: Int64, nanos: Int32)? {
    var utf8 = Array(text.utf8)[...]
    guard utf8.last == UInt8(ascii: "s") else { return nil }
    utf8 = utf8.dropLast()
    let negative = utf8.first == UInt8(ascii: "-")
    if negative { utf8 = utf8.dropFirst() }
    var seconds: Int64 = 0
    var integerDigits = 0
    while let byte = utf8.first, byte &- UInt8(ascii: "0") < 10 {
      guard integerDigits < 12 else { return nil }
      seconds = seconds * 10 + Int64(byte - UInt8(ascii: "0"))
      integerDigits += 1
      utf8 = utf8.dropFirst()
    }
    guard integerDigits > 0 else { return nil }
    var nanos: Int32 = 0
    if utf8.first == UInt8(ascii: ".") {
      utf8 = utf8.dropFirst()
      var digits = 0
      while let byte = utf8.first, byte &- UInt8(ascii: "0") < 10 {
        guard digits < 9 else { return nil }
        nanos = nanos * 10 + Int32(byte - UInt8(ascii: "0"))
        digits += 1
        utf8 = utf8.dropFirst()
      }
      guard digits > 0 else { return nil }
      for _ in digits..<9 { nanos *= 10 }
    }
    guard utf8.isEmpty, seconds <= maximumDurationSeconds else { return nil }
    return negative ? (-seconds, -nanos) : (seconds, nanos)
  }

  // MARK: FieldMask

  /// `foo_bar.baz` → `fooBar.baz`; nil when the path would not survive the round trip.
  ///
  /// Case is ASCII case, as in protobuf's C++ and Go runtimes (field names are ASCII): Unicode's
  /// `isUppercase` is also true of letters such as U+01BA `ƺ` that are lowercase and have no
  /// uppercase, which once turned the JSON path `ƺ41` into the binary path `_ƺ41`.
  static func camelCasePath(_ path: String) -> String? {
    var result = ""
    var afterUnderscore = false
    for character in path {
      if character.isASCIIUppercase { return nil }
      if afterUnderscore {
        guard character.isASCIILowercase else { return nil }
        result += character.uppercased()
        afterUnderscore = false
      } else if character == "_" {
        afterUnderscore = true
      } else {
        result.append(character)
      }
    }
    return afterUnderscore ? nil : result
  }

  /// `fooBar.baz` → `foo_bar.baz`; nil when the path holds an underscore. ASCII case, as above.
  static func snakeCasePath(_ path: String) -> String? {
    var result = ""
    for character in path {
      if character == "_" { return nil }
      if character.isASCIIUppercase {
        result += "_" + character.lowercased()
      } else {
        result.append(character)
      }
    }
    return result
  }

  // MARK: Calendar (proleptic Gregorian, days since 1970-01-01)

  private static func civil(fromDays days: Int64) -> (Int64, Int64, Int64) {
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let dayOfEra = z - era * 146_097
    let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
    let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
    let shiftedMonth = (5 * dayOfYear + 2) / 153
    let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
    let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
    return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
  }

  private static func days(fromCivil year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
    let year = month <= 2 ? year - 1 : year
    let era = (year >= 0 ? year : year - 399) / 400
    let yearOfEra = year - era * 400
    let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
    let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
    return era * 146_097 + dayOfEra - 719_468
  }

  private static func daysInMonth(_ year: Int64, _ month: Int64) -> Int64 {
    switch month {
    case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
    case 4, 6, 9, 11: 30
    default: 31
    }
  }

  private static func pad(_ value: Int64, _ width: Int) -> String {
    let digits = String(value)
    return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
  }

  /// "", ".123", ".123456" or ".123456789": the shortest of 0, 3, 6, 9 digits.
  private static func fraction(_ nanos: Int32) -> String {
    if nanos == 0 { return "" }
    let nine = pad(Int64(nanos), 9)
    if nanos % 1_000_000 == 0 { return "." + nine.prefix(3) }
    if nanos % 1000 == 0 { return "." + nine.prefix(6) }
    return "." + nine
  }
}

extension Character {
  fileprivate var isASCIIUppercase: Bool { self.isASCII && self.isUppercase }
  fileprivate var isASCIILowercase: Bool { self.isASCII && self.isLowercase }
}
