internal import GRPCCore
internal import NIOCore
internal import SluiceProtos
internal import SwiftProtobuf

/// gRPC server reflection, `grpc.reflection.v1` and `v1alpha` (one wire format under two package
/// names, so one handler serves both), for every service in the `ServiceCatalog`: the hosted
/// ones and the upstream ones, from the descriptors the JSON codec uses. Written here because
/// grpc-swift's reflection service (grpc-swift-extras) is not available to this build and runs
/// on Swift Concurrency, off the engine's event loops.
enum ReflectionMethods {
  static let services = ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]

  static func make(catalog: ServiceCatalog) -> [RPCMethod] {
    Self.services.map { service in
      RPCMethod(path: "/\(service)/ServerReflectionInfo", kind: .bidirectionalStreaming) {
        ReflectionHandler(catalog: catalog)
      }
    }
  }
}

/// One reflection stream: requests are answered in order, from the catalog as it was when the
/// stream began; a file's imports are sent with it once per stream, as grpc-go does.
///
/// An answer can be far larger than its request (a descriptor set for a symbol's name), so answers
/// go out only while the stream is writable: requests that arrive while it is not wait here (at
/// most those of the DATA already read, since the stream then stops reading and its HTTP/2 window
/// stays shut) until `becameWritable`.
private final class ReflectionHandler: RPCHandler {
  private let contents: ServiceCatalog.Contents
  private var sent: Set<String> = []
  /// Requests not yet answered, in order.
  private var waiting: CircularBuffer<ByteBuffer> = []
  /// The client half-closed: the call ends once `waiting` is answered.
  private var ended = false

  init(catalog: ServiceCatalog) {
    self.contents = catalog.current
  }

  func received(_ message: ByteBuffer, _ call: ServerCall) {
    self.waiting.append(message)
    self.answerWaiting(call)
  }

  func receivedEnd(_ call: ServerCall) {
    self.ended = true
    self.answerWaiting(call)
  }

  func becameWritable(_ call: ServerCall) {
    self.answerWaiting(call)
  }

  /// Answers waiting requests while the stream takes output; ends the call when the client is
  /// done and everything is answered.
  private func answerWaiting(_ call: ServerCall) {
    while call.isWritable, let message = self.waiting.popFirst() {
      guard let request = call.decode(Grpc_Reflection_V1_ServerReflectionRequest.self, from: message) else { return }
      var response = Grpc_Reflection_V1_ServerReflectionResponse()
      response.validHost = request.host
      response.originalRequest = request
      response.messageResponse = self.answer(request.messageRequest)
      call.send(response)
    }
    if self.ended, self.waiting.isEmpty { call.finish() }
  }

  private func answer(
    _ request: Grpc_Reflection_V1_ServerReflectionRequest.OneOf_MessageRequest?
  ) -> Grpc_Reflection_V1_ServerReflectionResponse.OneOf_MessageResponse {
    let index = self.contents.index
    switch request {
    case .listServices:
      var list = Grpc_Reflection_V1_ListServiceResponse()
      list.service = self.contents.services.map { name in .with { $0.name = name } }
      return .listServicesResponse(list)
    case .fileByFilename(let name):
      return self.files(name, else: "no file \(name)")
    case .fileContainingSymbol(let symbol):
      let name = index.file(declaring: Self.trimmed(symbol))
      return self.files(name, else: "no symbol \(symbol)")
    case .fileContainingExtension(let request):
      let type = Self.trimmed(request.containingType)
      let name = index.file(extending: type, number: request.extensionNumber)
      return self.files(name, else: "no extension \(request.extensionNumber) of \(request.containingType)")
    case .allExtensionNumbersOfType(let type):
      guard let numbers = index.extensionNumbers(of: Self.trimmed(type)) else {
        return Self.error(.notFound, "no type \(type)")
      }
      var answer = Grpc_Reflection_V1_ExtensionNumberResponse()
      answer.baseTypeName = Self.trimmed(type)
      answer.extensionNumber = numbers
      return .allExtensionNumbersResponse(answer)
    case nil:
      return Self.error(.invalidArgument, "the request asks for nothing (no message_request)")
    }
  }

  private func files(
    _ name: String?, else missing: String
  ) -> Grpc_Reflection_V1_ServerReflectionResponse.OneOf_MessageResponse {
    guard let name, let files = self.contents.index.fileAndImports(name, leavingOut: &self.sent) else {
      return Self.error(.notFound, missing)
    }
    var answer = Grpc_Reflection_V1_FileDescriptorResponse()
    answer.fileDescriptorProto = files
    return .fileDescriptorResponse(answer)
  }

  private static func error(
    _ code: RPCError.Code, _ message: String
  ) -> Grpc_Reflection_V1_ServerReflectionResponse.OneOf_MessageResponse {
    var error = Grpc_Reflection_V1_ErrorResponse()
    error.errorCode = Int32(code.rawValue)
    error.errorMessage = message
    return .errorResponse(error)
  }

  /// A symbol without the leading dot some clients send.
  private static func trimmed(_ symbol: String) -> String {
    symbol.hasPrefix(".") ? String(symbol.dropFirst()) : symbol
  }
}
