internal import Logging
internal import ServiceLifecycle
internal import UnixSignals

/// `--upstream-reflection` as a service of the gateway's `ServiceGroup`: the upstreams are asked
/// to describe their services once before the ports open (`describeAll`, so the first JSON call
/// has the descriptors), then, while the gateway runs, those that could not be asked are asked
/// again every `retryInterval` until they answer, and all of them again on SIGHUP. A graceful
/// shutdown ends it.
final class UpstreamReflectionRefresh: Service {
  /// How long an upstream that could not be asked waits before it is asked again.
  static let retryInterval = Duration.seconds(10)

  private let descriptors: ReflectedDescriptors
  private let logger: Logger

  /// `apply` hands the gateway every upstream's descriptors whole; it throws when they do not load.
  init(
    routes: [UpstreamRoute],
    tls: UpstreamTLS?,
    logger: Logger,
    apply: @escaping @Sendable ([[UInt8]]) throws -> Void
  ) {
    self.descriptors = ReflectedDescriptors(routes: routes, tls: tls, logger: logger, apply: apply)
    self.logger = logger
  }

  /// Asks every upstream once (the gateway calls this before its ports open).
  func describeAll() async {
    await self.descriptors.refresh(onlyMissing: false)
  }

  func run() async throws {
    let signals = await UnixSignalsSequence(trapping: .sighup)
    do {
      try await cancelWhenGracefulShutdown {
        try await withThrowingDiscardingTaskGroup { group in
          group.addTask {
            while await self.descriptors.hasMissing {
              try await Task.sleep(for: Self.retryInterval)
              await self.descriptors.refresh(onlyMissing: true)
            }
          }
          group.addTask {
            for await _ in signals {
              self.logger.info("SIGHUP: asking the upstreams to describe their services again")
              await self.descriptors.refresh(onlyMissing: false)
            }
          }
        }
      }
    } catch is CancellationError {
      // The graceful shutdown (or the group's cancellation) ended it.
    }
  }
}

/// The descriptors `--upstream-reflection` got, per upstream, handed to the gateway whole.
private actor ReflectedDescriptors {
  private let routes: [UpstreamRoute]
  private let tls: UpstreamTLS?
  private let logger: Logger
  private let apply: @Sendable ([[UInt8]]) throws -> Void
  private var sets: [String: [UInt8]] = [:]

  init(
    routes: [UpstreamRoute], tls: UpstreamTLS?, logger: Logger, apply: @escaping @Sendable ([[UInt8]]) throws -> Void
  ) {
    self.routes = routes
    self.tls = tls
    self.logger = logger
    self.apply = apply
  }

  var hasMissing: Bool { self.routes.contains { self.sets[$0.service] == nil } }

  /// Asks every upstream (or those that have not answered yet) and gives the gateway the result;
  /// an upstream that cannot be asked, or whose descriptors do not load, keeps what it described
  /// before (and one that never described any is asked again).
  func refresh(onlyMissing: Bool) async {
    for route in self.routes where !onlyMissing || self.sets[route.service] == nil {
      let addresses = route.addresses.map { $0.description }.joined(separator: ",")
      let description: UpstreamReflection.Description
      do {
        description = try await UpstreamReflection.describe(route, tls: self.tls, logger: self.logger)
      } catch {
        self.logger.warning(
          "Upstream reflection failed; JSON calls to its services need descriptors (asked again every 10 s)",
          metadata: [
            "sluice.upstream.service": "\(route.service)", "sluice.upstream.addresses": "\(addresses)",
            "sluice.error": "\(error)",
          ])
        continue
      }
      // Loaded (so validated) before it is kept: a set the gateway refuses neither replaces what
      // this upstream described before nor keeps the other upstreams' descriptors from loading.
      var sets = self.sets
      sets[route.service] = description.fileDescriptorSet
      do {
        try self.apply(self.routes.compactMap { sets[$0.service] })
      } catch {
        self.logger.error(
          "The upstream's descriptors do not load; the gateway keeps those it had",
          metadata: [
            "sluice.upstream.service": "\(route.service)", "sluice.upstream.addresses": "\(addresses)",
            "sluice.error": "\(error)",
          ])
        continue
      }
      self.sets = sets
      self.logger.info(
        "Upstream reflection",
        metadata: [
          "sluice.upstream.service": "\(route.service)", "sluice.upstream.addresses": "\(addresses)",
          "sluice.reflection.version": "\(description.version)",
          "sluice.reflection.services": "\(description.services.joined(separator: ","))",
        ])
    }
  }
}
