internal import NIOCore

/// A first-in, first-out queue that keeps its first element inline and allocates storage only
/// when a second one waits behind it.
///
/// Written here because NIO's `CircularBuffer` allocates room for 16 elements as soon as it is
/// made, and the streams that hold these queues are made once per call: a unary call queues at
/// most one DATA buffer each way, so with `CircularBuffer` alone every call paid for two or three
/// allocations it never used.
struct InlineFirstQueue<Element> {
  private var head: Element?
  /// The elements behind `head`; kept once made, so a long stream allocates it once.
  private var rest: CircularBuffer<Element>?

  init() {}

  var isEmpty: Bool { self.head == nil }

  var count: Int { self.head == nil ? 0 : 1 + (self.rest?.count ?? 0) }

  mutating func append(_ element: Element) {
    guard self.head != nil else {
      self.head = element
      return
    }
    if self.rest == nil { self.rest = CircularBuffer(initialCapacity: 4) }
    self.rest?.append(element)
  }

  /// Puts `element` back in front (a partly taken element).
  mutating func prepend(_ element: Element) {
    if let head = self.head {
      if self.rest == nil { self.rest = CircularBuffer(initialCapacity: 4) }
      self.rest?.prepend(head)
    }
    self.head = element
  }

  mutating func popFirst() -> Element? {
    guard let head = self.head else { return nil }
    self.head = self.rest?.popFirst()
    return head
  }

  /// Empties the queue and lets its storage go.
  mutating func removeAll() {
    self.head = nil
    self.rest = nil
  }
}
