// libnghttp2 (Debian's libnghttp2-dev): the native gRPC port's HTTP/2 with --grpc-http2 nghttp2.
#include <nghttp2/nghttp2.h>
