# shellcheck shell=bash
# Envoy 1.40 in front of one grpc-go server, the baseline of scripts/bench.sh and scripts/bench-web.sh
# (sourced, not run): envoy_config PORT UPSTREAM_PORT [PROTOSET] prints its configuration; with
# PROTOSET, its grpc_json_transcoder serves the google.api.http rules of the seed's services in it
# (REST rows; gRPC requests pass it untouched), printing defaults as Sluice does.
# Envoy's HTTP/2 flood protection (max_outbound_frames, 10,000 by default) resets a pipelined
# stream whose client reads slower than it sends; raised here so that Envoy is measured, not its
# limit. No stream idle or route timeouts (a long Route is one stream). HTTP/1.1 and h2c in (AUTO),
# with the grpc_web filter for the gRPC-Web rows.
envoy_config() { # envoy_config PORT UPSTREAM_PORT [PROTOSET]
  local transcoder=
  if [ -n "${3:-}" ]; then
    transcoder="
          - name: envoy.filters.http.grpc_json_transcoder
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder
              proto_descriptor: \"$3\"
              services: [hello.UserService, proto.StreamService]
              convert_grpc_status: true
              print_options: { always_print_primitive_fields: true }"
  fi
  cat <<ENVOY
static_resources:
  listeners:
  - name: grpc
    address: { socket_address: { address: 127.0.0.1, port_value: $1 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: grpc
          codec_type: AUTO
          http2_protocol_options: { max_outbound_frames: 100000000 }
          stream_idle_timeout: 0s
          route_config:
            virtual_hosts:
            - { name: all, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: grpcgo, timeout: 0s } }] }
          http_filters:
          - name: envoy.filters.http.grpc_web
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb }$transcoder
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: grpcgo
    type: STATIC
    load_assignment:
      cluster_name: grpcgo
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $2 } } } }] }]
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: { max_outbound_frames: 100000000 } }
ENVOY
}
