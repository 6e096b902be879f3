public import GRPCCore
public import Logging

/// The services Sluice hosts natively, configured from a `GatewayConfiguration`.
public enum HostedServices {
  /// Makes one instance of every hosted service.
  /// - Parameters:
  ///   - configuration: Supplies the seed services' pace and `List` count.
  ///   - logger: Passed to the services for per-message debug logs.
  public static func make(
    configuration: GatewayConfiguration,
    logger: Logger
  ) -> [any RegistrableRPCService] {
    [
      HostedStreamService(pace: configuration.pace, listCount: configuration.listCount, logger: logger),
      HostedUserService(),
      HostedDataService(),
    ]
  }
}
