/* buf — a growable byte buffer (always NUL-terminated) and little-endian
 * put/get helpers used by every file format.
 *
 * Ownership: a dsv4_buf owns its data; dsv4_buf_release frees it and leaves
 * an empty buffer.  dsv4_buf_detach hands the data to the caller (free()).
 * Not thread-safe; one owner at a time. */
#ifndef DSV4_BUF_H
#define DSV4_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct dsv4_buf {
    char *data;   /* NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
    int oom;      /* sticky: set when an allocation failed; later appends are no-ops */
} dsv4_buf;

#define DSV4_BUF_INIT { NULL, 0, 0, 0 }

int  dsv4_buf_reserve(dsv4_buf *b, size_t extra);          /* 0 or DSV4_E_NOMEM */
void dsv4_buf_append(dsv4_buf *b, const void *p, size_t n);
void dsv4_buf_puts(dsv4_buf *b, const char *s);
void dsv4_buf_putc(dsv4_buf *b, char c);
void dsv4_buf_printf(dsv4_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dsv4_buf_put_le16(dsv4_buf *b, uint16_t v);
void dsv4_buf_put_le32(dsv4_buf *b, uint32_t v);
void dsv4_buf_put_le64(dsv4_buf *b, uint64_t v);
void dsv4_buf_pad(dsv4_buf *b, size_t align);              /* zero bytes up to a multiple */
void dsv4_buf_release(dsv4_buf *b);
/* Make room for one more element in a caller's array *v of *cap elements of
 * elem bytes holding n: doubles the capacity when full.  0 or DSV4_E_NOMEM
 * (then *v is unchanged). */
int  dsv4_grow(void **v, size_t *cap, size_t n, size_t elem);
char *dsv4_buf_detach(dsv4_buf *b, size_t *len);

static inline void dsv4_le16_put(void *p, uint16_t v)
{ unsigned char *q = p; q[0] = (unsigned char)v; q[1] = (unsigned char)(v >> 8); }
static inline void dsv4_le32_put(void *p, uint32_t v)
{ unsigned char *q = p; for (int i = 0; i < 4; i++) q[i] = (unsigned char)(v >> (8 * i)); }
static inline void dsv4_le64_put(void *p, uint64_t v)
{ unsigned char *q = p; for (int i = 0; i < 8; i++) q[i] = (unsigned char)(v >> (8 * i)); }
static inline uint16_t dsv4_le16_get(const void *p)
{ const unsigned char *q = p; return (uint16_t)(q[0] | (q[1] << 8)); }
static inline uint32_t dsv4_le32_get(const void *p)
{ const unsigned char *q = p; uint32_t v = 0; for (int i = 3; i >= 0; i--) v = (v << 8) | q[i]; return v; }
static inline uint64_t dsv4_le64_get(const void *p)
{ const unsigned char *q = p; uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | q[i]; return v; }

#endif
