internal import GRPCCore
internal import SluiceCodec

/// The id of a stream in a multiplexed session (PROTOCOL.md, "Multiplexed WebSocket session"): the
/// client's string of at most 64 characters (Unicode scalars, so at most 256 bytes: an id is kept
/// and echoed in every frame of its stream) or integer below 2^53, echoed exactly as sent (`1` and
/// `"1"` are two ids).
enum MuxStreamID: Hashable {
  case string(String)
  case integer(UInt64)

  /// The longest string id.
  static let maxCharacters = 64
  /// Integer ids are below 2^53, so that JavaScript numbers hold them exactly.
  static let integerLimit: UInt64 = 1 << 53

  /// The id of `value`, or nil when it is no readable id (negative, fractional, an exponent, too
  /// long, another type).
  init?(_ value: JSONValue) {
    switch value {
    case .string(let text):
      // Counted in scalars, not grapheme clusters: 64 clusters can hold any number of combining
      // marks, and counting them walks the whole string.
      guard text.utf8.count <= 4 * Self.maxCharacters, text.unicodeScalars.count <= Self.maxCharacters else {
        return nil
      }
      self = .string(text)
    case .number(let lexeme):
      // Only plain digits: `1.0`, `1e3` and `-0` are not ids.
      guard lexeme.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
        let number = UInt64(lexeme), number < Self.integerLimit
      else { return nil }
      self = .integer(number)
    default:
      return nil
    }
  }

  /// The id as the JSON it came in.
  var json: JSONValue {
    switch self {
    case .string(let text): .string(text)
    case .integer(let number): .integer(number)
    }
  }
}

/// One client frame of a multiplexed session, read from its JSON object.
enum MuxFrame: Equatable {
  /// `{"ping":N}`: answered `{"pong":N}`.
  case ping(JSONValue)
  /// A frame of the stream `id`.
  case stream(MuxStreamID, Stream)

  /// What a stream frame asks for. `problem` is why it cannot be taken (an unknown key, a value
  /// of the wrong shape, metadata that is not allowed): it ends that stream with
  /// `INVALID_ARGUMENT` and no other.
  struct Stream: Equatable {
    /// Whether the frame has `start`: it opens a stream (or ends at once when it cannot).
    var starts = false
    /// `start`'s method path, when it is a string.
    var start: String?
    var metadata: Metadata?
    var timeout: Duration?
    /// With `start`, the response credit to begin with; else credit to add.
    var credit: Int?
    var message: JSONValue?
    var end = false
    var cancel = false
    var problem: RPCError?
  }

  /// The most credit one frame grants, and a stream holds (larger grants are capped).
  static let maxCredit = Int(Int32.max)

  /// Reads a frame, or throws the `INVALID_ARGUMENT` that ends the session with close 4400: a
  /// frame that is not an object, or has no readable `id` and is not a ping.
  static func parse(_ value: JSONValue, maxMetadataBytes: Int) throws(RPCError) -> MuxFrame {
    guard case .object(let object) = value else { throw GRPCErrors.muxFrameNotObject }
    guard let idValue = object["id"] else {
      if object.count == 1, let ping = object["ping"] { return .ping(ping) }
      throw GRPCErrors.muxFrameWithoutID
    }
    guard let id = MuxStreamID(idValue) else { throw GRPCErrors.muxUnreadableID(idValue) }
    var frame = Stream()
    do throws(RPCError) {
      try frame.read(object, maxMetadataBytes: maxMetadataBytes)
    } catch {
      frame.problem = error
    }
    return .stream(id, frame)
  }
}

extension MuxFrame.Stream {
  fileprivate mutating func read(_ object: JSONObject, maxMetadataBytes: Int) throws(RPCError) {
    self.starts = object["start"] != nil
    for (key, value) in object.members {
      switch key {
      case "id":
        continue
      case "start":
        guard case .string(let path) = value else { throw GRPCErrors.muxInvalidMember("start", "a method path string") }
        self.start = path
      case "metadata", "timeoutMs":
        guard self.starts else { throw GRPCErrors.muxOnlyInStart(key) }
        if key == "timeoutMs" {
          self.timeout = try RequestMetadata.timeout(fromMilliseconds: value)
        } else {
          guard case .object(let members) = value else { throw GRPCErrors.muxInvalidMember("metadata", "an object") }
          var metadata = Metadata()
          try RequestMetadata.add(members, to: &metadata, maxBytes: maxMetadataBytes)
          self.metadata = metadata
        }
      case "credit":
        guard case .number(let lexeme) = value, let credit = Self.count(lexeme) else {
          throw GRPCErrors.muxInvalidMember("credit", "a non-negative integer")
        }
        self.credit = credit
      case "message":
        self.message = value
      case "end", "cancel":
        guard value == .bool(true) else { throw GRPCErrors.muxInvalidMember(key, "true") }
        if key == "end" { self.end = true } else { self.cancel = true }
      default:
        throw GRPCErrors.muxUnknownMember(key)
      }
    }
  }

  /// A non-negative integer lexeme, capped at `maxCredit`.
  private static func count(_ lexeme: String) -> Int? {
    guard !lexeme.isEmpty, lexeme.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else {
      return nil
    }
    return lexeme.utf8.count > 10 ? MuxFrame.maxCredit : min(Int(lexeme) ?? MuxFrame.maxCredit, MuxFrame.maxCredit)
  }
}
