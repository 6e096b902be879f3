// zlib (Debian's zlib1g-dev), for gzip-encoded gRPC messages both ways.
#include <zlib.h>

// inflateInit2 is a macro; Swift cannot call it.
static inline int czlib_inflate_init_gzip(z_stream *stream) {
  return inflateInit2(stream, 16 + MAX_WBITS);
}

// deflateInit2 is a macro too: a gzip (not zlib) stream, default memory and strategy.
static inline int czlib_deflate_init_gzip(z_stream *stream, int level) {
  return deflateInit2(stream, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
}
