// zlib (Debian's zlib1g-dev), for inflating gzip-encoded gRPC messages.
#include <zlib.h>

// inflateInit2 is a macro; Swift cannot call it.
static inline int czlib_inflate_init_gzip(z_stream *stream) {
  return inflateInit2(stream, 16 + MAX_WBITS);
}
