#include "buf.h"
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dsv4_buf_reserve(dsv4_buf *b, size_t extra)
{
    size_t need, cap;
    char *p;
    if (b->oom)
        return DSV4_E_NOMEM;
    if (extra > SIZE_MAX - b->len - 1)
        goto fail;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = realloc(b->data, cap);
    if (!p)
        goto fail;
    b->data = p;
    b->cap = cap;
    return 0;
fail:
    b->oom = 1;
    return DSV4_E_NOMEM;
}

void dsv4_buf_append(dsv4_buf *b, const void *p, size_t n)
{
    if (dsv4_buf_reserve(b, n))
        return;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

int dsv4_grow(void **v, size_t *cap, size_t n, size_t elem)
{
    size_t nc;
    void *p;
    if (n < *cap)
        return 0;
    nc = *cap ? 2 * *cap : 8;
    if (nc > SIZE_MAX / elem || !(p = realloc(*v, nc * elem)))
        return DSV4_E_NOMEM;
    *v = p;
    *cap = nc;
    return 0;
}

void dsv4_buf_puts(dsv4_buf *b, const char *s) { dsv4_buf_append(b, s, strlen(s)); }
void dsv4_buf_putc(dsv4_buf *b, char c) { dsv4_buf_append(b, &c, 1); }

void dsv4_buf_printf(dsv4_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || dsv4_buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void dsv4_buf_put_le16(dsv4_buf *b, uint16_t v) { unsigned char t[2]; dsv4_le16_put(t, v); dsv4_buf_append(b, t, 2); }
void dsv4_buf_put_le32(dsv4_buf *b, uint32_t v) { unsigned char t[4]; dsv4_le32_put(t, v); dsv4_buf_append(b, t, 4); }
void dsv4_buf_put_le64(dsv4_buf *b, uint64_t v) { unsigned char t[8]; dsv4_le64_put(t, v); dsv4_buf_append(b, t, 8); }

void dsv4_buf_pad(dsv4_buf *b, size_t align)
{
    static const char zeros[64];
    while (b->len % align && !b->oom) {
        size_t n = align - b->len % align;
        dsv4_buf_append(b, zeros, n < sizeof zeros ? n : sizeof zeros);
    }
}

void dsv4_buf_release(dsv4_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

char *dsv4_buf_detach(dsv4_buf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    if (!p)
        p = calloc(1, 1);
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
    return p;
}
