/* toks — token stream reader and writer; the format is dsv4-tokens(5). */
#include "toks.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "buf.h"
#include "version.h"

#define IOBUF (64 * 1024)
#define SNIP 24                 /* bytes of offending text quoted in messages */
#define IO_CHUNK (1u << 30)     /* largest single read/write request */

/* ---- small helpers ---- */

static char *xstrdup(const char *s)
{
    size_t n;
    char *d;
    if (!s)
        return NULL;
    n = strlen(s) + 1;
    d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* Quote raw bytes for a message: printable ASCII as is, the rest as \xNN. */
static void quote(char *out, size_t cap, const uint8_t *p, size_t n, int more)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\'' && p[i] != '\\')
            out[o++] = (char)p[i];
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", p[i]);
    }
    if (more && o + 4 < cap) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o < cap ? o : cap - 1] = 0;
}

/* Set err to "'name': <message>" (no prefix when name is NULL). */
static int named_err(dsv4_err *err, const char *name, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int named_err(dsv4_err *err, const char *name, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dsv4_err_vset(err, code, fmt, ap);
    va_end(ap);
    if (name && err)
        dsv4_err_prefix(err, "'%s'", name);
    return code;
}

/* Wait until fd is ready for events (non-blocking descriptors). */
static int wait_fd(int fd, short events)
{
    struct pollfd p = { fd, events, 0 };
    for (;;) {
        int rc = poll(&p, 1, -1);
        if (rc >= 0 || errno != EINTR)
            return rc < 0 ? -1 : 0;
    }
}

/* Write all n bytes: retries EINTR, continues after short writes, waits on
 * EAGAIN.  Returns 0 or -1 with errno set. */
static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n > IO_CHUNK ? IO_CHUNK : n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (wait_fd(fd, POLLOUT) < 0)
                    return -1;
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One read(2) of at most n bytes: retries EINTR, waits on EAGAIN.  Returns
 * the byte count (0 = end of input) or -1 with errno set. */
static ssize_t read_some(int fd, uint8_t *p, size_t n)
{
    for (;;) {
        ssize_t r = read(fd, p, n > IO_CHUNK ? IO_CHUNK : n);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (wait_fd(fd, POLLIN) < 0)
                return -1;
            continue;
        }
        return -1;
    }
}

/* ---- vec ---- */

int dsv4_toks_vec_reserve(dsv4_toks_vec *v, size_t extra)
{
    size_t want, cap;
    uint32_t *p;
    if (extra > SIZE_MAX / sizeof *v->ids - v->n)
        return DSV4_E_NOMEM;
    want = v->n + extra;
    if (want <= v->cap)
        return 0;
    cap = v->cap ? v->cap : 256;
    while (cap < want)
        cap = cap > SIZE_MAX / sizeof *v->ids / 2 ? want : cap * 2;
    p = realloc(v->ids, cap * sizeof *p);
    if (!p)
        return DSV4_E_NOMEM;
    v->ids = p;
    v->cap = cap;
    return 0;
}

int dsv4_toks_vec_push(dsv4_toks_vec *v, uint32_t id)
{
    if (v->n == v->cap && dsv4_toks_vec_reserve(v, 1))
        return DSV4_E_NOMEM;
    v->ids[v->n++] = id;
    return 0;
}

void dsv4_toks_vec_release(dsv4_toks_vec *v)
{
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

/* ---- fingerprints ---- */

int dsv4_toks_fingerprint(const void *tokenizer_json, size_t len, uint8_t out[DSV4_TOKS_FP_BYTES],
                          dsv4_err *err)
{
    if (!tokenizer_json && len)
        return dsv4_err_set(err, DSV4_E_INVALID, "tokenizer fingerprint: no data");
    if (dsv4_init() < 0 ||
        crypto_generichash(out, DSV4_TOKS_FP_BYTES, tokenizer_json, len, NULL, 0) != 0)
        return dsv4_err_set(err, DSV4_E_BUG, "tokenizer fingerprint: libsodium failed");
    return 0;
}

int dsv4_toks_fingerprint_known(const uint8_t *fp)
{
    if (!fp)
        return 0;
    for (int i = 0; i < DSV4_TOKS_FP_BYTES; i++)
        if (fp[i])
            return 1;
    return 0;
}

void dsv4_toks_fingerprint_hex(const uint8_t *fp, char out[2 * DSV4_TOKS_FP_BYTES + 1])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < DSV4_TOKS_FP_BYTES; i++) {
        out[2 * i] = fp ? hx[fp[i] >> 4] : '0';
        out[2 * i + 1] = fp ? hx[fp[i] & 15] : '0';
    }
    out[2 * DSV4_TOKS_FP_BYTES] = 0;
}

int dsv4_toks_check_fingerprint(const uint8_t *expected, const uint8_t *got, dsv4_err *err)
{
    char he[2 * DSV4_TOKS_FP_BYTES + 1], hg[2 * DSV4_TOKS_FP_BYTES + 1];
    if (!dsv4_toks_fingerprint_known(expected) || !dsv4_toks_fingerprint_known(got) ||
        !memcmp(expected, got, DSV4_TOKS_FP_BYTES))
        return 0;
    dsv4_toks_fingerprint_hex(expected, he);
    dsv4_toks_fingerprint_hex(got, hg);
    /* 16 hex digits identify a tokenizer and leave room for a file-name prefix. */
    return dsv4_err_set(err, DSV4_E_MISMATCH,
                        "tokenizer mismatch: the tokens were made with tokenizer %.16s..., "
                        "expected tokenizer %.16s... (BLAKE2b-256 of tokenizer.json)", hg, he);
}

/* ---- header ---- */

void dsv4_toks_header_encode(uint8_t out[DSV4_TOKS_HEADER_BYTES], const dsv4_toks_info *info)
{
    memset(out, 0, DSV4_TOKS_HEADER_BYTES);
    memcpy(out, DSV4_TOKS_MAGIC, DSV4_TOKS_MAGIC_BYTES);
    dsv4_le16_put(out + 8, DSV4_TOKS_FORMAT_MAJOR);
    dsv4_le16_put(out + 10, DSV4_TOKS_FORMAT_MINOR);
    dsv4_le16_put(out + 12, info ? info->flags : 0);
    dsv4_le16_put(out + 14, 0);
    dsv4_le32_put(out + 16, DSV4_TOKS_HEADER_BYTES);
    dsv4_le32_put(out + 20, info ? info->vocab_size : 0);
    if (info && info->has_fingerprint)
        memcpy(out + 24, info->fingerprint, DSV4_TOKS_FP_BYTES);
}

static int bad_signature(const uint8_t *p, size_t n, dsv4_err *err)
{
    char hex[3 * DSV4_TOKS_MAGIC_BYTES + 1] = "";
    size_t m = n < DSV4_TOKS_MAGIC_BYTES ? n : DSV4_TOKS_MAGIC_BYTES;
    /* PNG's trick: the CR-LF, ^Z and LF in the signature show what a text-mode
     * transfer did to the file. */
    if (n >= 5 && !memcmp(p, "\x89TK4\n", 5))
        return dsv4_err_set(err, DSV4_E_FORMAT, "token stream signature damaged by CR-LF to LF "
                            "conversion (copy the file in binary mode)");
    if (n >= 4 && !memcmp(p, "\x89TK4", 4))
        return dsv4_err_set(err, DSV4_E_FORMAT, "token stream signature damaged (line endings "
                            "converted? copy the file in binary mode)");
    for (size_t i = 0; i < m; i++)
        snprintf(hex + (i ? 3 * i - 1 : 0), sizeof hex - (i ? 3 * i - 1 : 0), "%s%02x", i ? " " : "", p[i]);
    return dsv4_err_set(err, DSV4_E_FORMAT, "not a dsv4 token stream: bad signature %s "
                        "(expected 89 54 4b 34 0d 0a 1a 0a)", hex);
}

int dsv4_toks_header_parse(const void *data, size_t n, dsv4_toks_info *info, size_t *need, dsv4_err *err)
{
    const uint8_t *p = data;
    size_t m = n < DSV4_TOKS_MAGIC_BYTES ? n : DSV4_TOKS_MAGIC_BYTES;
    uint16_t major, minor, flags;
    uint32_t hb;

    if (need)
        *need = DSV4_TOKS_HEADER_BYTES;
    if (memcmp(p, DSV4_TOKS_MAGIC, m))
        return bad_signature(p, n, err);
    if (n >= 10) {
        major = dsv4_le16_get(p + 8);
        minor = n >= 12 ? dsv4_le16_get(p + 10) : 0;
        if (major > DSV4_TOKS_FORMAT_MAJOR)
            return dsv4_err_set(err, DSV4_E_VERSION, "token stream format %u.%u is newer than this "
                                "reader (%d.x); upgrade dsv4", major, minor, DSV4_TOKS_FORMAT_MAJOR);
        if (major != DSV4_TOKS_FORMAT_MAJOR)
            return dsv4_err_set(err, DSV4_E_VERSION, "unknown token stream format version %u.%u",
                                major, minor);
    }
    if (n < 20)
        return dsv4_err_set(err, DSV4_E_TRUNCATED, "truncated token stream header (%zu bytes)", n);
    minor = dsv4_le16_get(p + 10);
    flags = dsv4_le16_get(p + 12);
    hb = dsv4_le32_get(p + 16);
    if (hb < DSV4_TOKS_HEADER_BYTES || hb > DSV4_TOKS_HEADER_MAX || hb % 4)
        return dsv4_err_set(err, DSV4_E_FORMAT, "token stream header size %u is invalid (a multiple "
                            "of 4 from %d to %u)", hb, DSV4_TOKS_HEADER_BYTES, DSV4_TOKS_HEADER_MAX);
    if (need)
        *need = hb;
    if (n < DSV4_TOKS_HEADER_BYTES)
        return dsv4_err_set(err, DSV4_E_TRUNCATED, "truncated token stream header (%zu of %u bytes)",
                            n, hb);
    if (flags & DSV4_TOKS_FLAGS_INCOMPAT)
        return dsv4_err_set(err, DSV4_E_VERSION, "token stream %u.%u uses features this reader does "
                            "not know (flags 0x%04x); upgrade dsv4", DSV4_TOKS_FORMAT_MAJOR, minor,
                            flags & DSV4_TOKS_FLAGS_INCOMPAT);
    if (info) {
        memset(info, 0, sizeof *info);
        info->format = DSV4_TOKS_BIN;
        info->major = DSV4_TOKS_FORMAT_MAJOR;
        info->minor = minor;
        info->flags = flags;
        info->header_bytes = hb;
        info->vocab_size = dsv4_le32_get(p + 20);
        memcpy(info->fingerprint, p + 24, DSV4_TOKS_FP_BYTES);
        info->has_fingerprint = dsv4_toks_fingerprint_known(info->fingerprint);
    }
    return 0;
}

const char *dsv4_toks_format_name(int format)
{
    return format == DSV4_TOKS_TEXT ? "text" : format == DSV4_TOKS_BIN ? "binary" : "unknown";
}

/* ---- writer ---- */

struct dsv4_toks_writer {
    int fd;
    int format;
    int each;           /* flush after every put call */
    int finished;
    uint32_t vocab;
    uint64_t count;
    char *name;
    dsv4_err failed;    /* code != 0 once a write failed: every later call returns it */
    size_t len;
    uint8_t buf[IOBUF];
};

static int w_fail(dsv4_toks_writer *w, dsv4_err *err)
{
    if (err)
        *err = w->failed;
    return w->failed.code;
}

static int w_drain(dsv4_toks_writer *w, dsv4_err *err)
{
    if (w->failed.code)
        return w_fail(w, err);
    if (w->len && write_all(w->fd, w->buf, w->len) < 0) {
        named_err(&w->failed, w->name, DSV4_E_IO, "write error: %s", strerror(errno));
        return w_fail(w, err);
    }
    w->len = 0;
    return 0;
}

int dsv4_toks_writer_open(dsv4_toks_writer **out, int fd, const dsv4_toks_wopts *opts, dsv4_err *err)
{
    static const dsv4_toks_wopts defaults = DSV4_TOKS_WOPTS_INIT;
    dsv4_toks_writer *w;
    struct stat st;

    *out = NULL;
    if (!opts)
        opts = &defaults;
    if (opts->format != DSV4_TOKS_BIN && opts->format != DSV4_TOKS_TEXT)
        return dsv4_err_set(err, DSV4_E_INVALID, "token stream format %d is not binary or text", opts->format);
    if (opts->flush < DSV4_TOKS_FLUSH_AUTO || opts->flush > DSV4_TOKS_FLUSH_BUFFERED)
        return dsv4_err_set(err, DSV4_E_INVALID, "token stream flush mode %d is unknown", opts->flush);
    if (fstat(fd, &st) < 0)
        return named_err(err, opts->name, DSV4_E_IO, "cannot write tokens: %s", strerror(errno));
    w = calloc(1, sizeof *w);
    if (!w || (opts->name && !(w->name = xstrdup(opts->name)))) {
        free(w);
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    }
    w->fd = fd;
    w->format = opts->format;
    w->vocab = opts->vocab_size;
    w->each = opts->flush == DSV4_TOKS_FLUSH_EACH ||
              (opts->flush == DSV4_TOKS_FLUSH_AUTO && !S_ISREG(st.st_mode));
    if (w->format == DSV4_TOKS_BIN) {
        dsv4_toks_info info;
        memset(&info, 0, sizeof info);
        info.vocab_size = opts->vocab_size;
        if (dsv4_toks_fingerprint_known(opts->fingerprint)) {
            info.has_fingerprint = 1;
            memcpy(info.fingerprint, opts->fingerprint, DSV4_TOKS_FP_BYTES);
        }
        dsv4_toks_header_encode(w->buf, &info);
        w->len = DSV4_TOKS_HEADER_BYTES;
        if (w->each) {
            int rc = w_drain(w, err);
            if (rc) {
                dsv4_toks_writer_close(w);
                return rc;
            }
        }
    }
    *out = w;
    return 0;
}

/* Longest encoding of one id: 10 digits + newline (text), 4 bytes (binary). */
#define MAX_ID_BYTES 11

static void w_append(dsv4_toks_writer *w, uint32_t id)
{
    if (w->format == DSV4_TOKS_BIN) {
        dsv4_le32_put(w->buf + w->len, id);
        w->len += 4;
    } else {
        char tmp[10];
        int k = 0;
        do {
            tmp[k++] = (char)('0' + id % 10);
            id /= 10;
        } while (id);
        while (k)
            w->buf[w->len++] = (uint8_t)tmp[--k];
        w->buf[w->len++] = '\n';
    }
}

int dsv4_toks_put_n(dsv4_toks_writer *w, const uint32_t *ids, size_t n, dsv4_err *err)
{
    if (w->failed.code)
        return w_fail(w, err);
    if (w->finished)
        return named_err(err, w->name, DSV4_E_INVALID, "token stream already finished");
    if (w->vocab)
        for (size_t i = 0; i < n; i++)
            if (ids[i] >= w->vocab)
                return named_err(err, w->name, DSV4_E_RANGE, "token %llu: id %u is out of range "
                                 "(vocab size %u)", (unsigned long long)(w->count + i), ids[i], w->vocab);
    for (size_t i = 0; i < n; i++) {
        if (IOBUF - w->len < MAX_ID_BYTES) {
            int rc = w_drain(w, err);
            if (rc)
                return rc;
        }
        w_append(w, ids[i]);
        w->count++;
    }
    return w->each ? w_drain(w, err) : 0;
}

int dsv4_toks_put(dsv4_toks_writer *w, uint32_t id, dsv4_err *err)
{
    return dsv4_toks_put_n(w, &id, 1, err);
}

int dsv4_toks_flush(dsv4_toks_writer *w, dsv4_err *err)
{
    return w_drain(w, err);
}

int dsv4_toks_finish(dsv4_toks_writer *w, dsv4_err *err)
{
    int rc = w_drain(w, err);
    if (!rc)
        w->finished = 1;
    return rc;
}

uint64_t dsv4_toks_writer_count(const dsv4_toks_writer *w)
{
    return w->count;
}

void dsv4_toks_writer_close(dsv4_toks_writer *w)
{
    if (!w)
        return;
    free(w->name);
    free(w);
}

/* ---- reader ---- */

enum { T_GAP = 0, T_NUM, T_JUNK };

struct dsv4_toks_reader {
    int fd;
    int eof;
    char *name;
    uint32_t limit;          /* ids must be below this; 0 = no bound */
    dsv4_toks_info info;
    dsv4_err failed;         /* sticky error */
    uint64_t count;          /* ids returned */
    uint64_t offset;         /* stream offset of buf[pos] */
    size_t pos, len;
    /* text state */
    int tstate;              /* T_* */
    int first;               /* first byte of the stream */
    uint64_t tval;
    int tover;               /* the number has passed UINT32_MAX */
    uint64_t line, col;      /* position of buf[pos], 1-based */
    uint64_t tline, tcol;    /* where the current word started */
    uint8_t snip[SNIP];
    size_t snip_len;
    int snip_more;
    uint8_t buf[IOBUF];
};

/* Set the sticky error from a formatted message (prefixed with the name). */
static int r_err(dsv4_toks_reader *r, dsv4_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int r_err(dsv4_toks_reader *r, dsv4_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dsv4_err_vset(&r->failed, code, fmt, ap);
    va_end(ap);
    if (r->name)
        dsv4_err_prefix(&r->failed, "'%s'", r->name);
    if (err)
        *err = r->failed;
    return code;
}

static int r_fail(const dsv4_toks_reader *r, dsv4_err *err)
{
    if (err)
        *err = r->failed;
    return r->failed.code;
}

/* Read more input after the unread bytes (moved to the front).  Sets eof
 * at end of input.  Returns 0 or DSV4_E_IO. */
static int r_fill(dsv4_toks_reader *r, dsv4_err *err)
{
    ssize_t got;
    if (r->pos) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    if (r->len == sizeof r->buf)
        return 0;
    got = read_some(r->fd, r->buf + r->len, sizeof r->buf - r->len);
    if (got < 0)
        return r_err(r, err, DSV4_E_IO, "read error: %s", strerror(errno));
    if (got == 0)
        r->eof = 1;
    r->len += (size_t)got;
    return 0;
}

static int is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int r_open_bin(dsv4_toks_reader *r, dsv4_err *err)
{
    dsv4_err perr = DSV4_ERR_INIT;
    size_t need, skip;
    int rc;

    for (;;) {
        rc = dsv4_toks_header_parse(r->buf, r->len, &r->info, &need, &perr);
        if (rc != DSV4_E_TRUNCATED || r->eof || r->len >= DSV4_TOKS_HEADER_BYTES)
            break;
        if ((rc = r_fill(r, err)))
            return rc;
    }
    if (rc == DSV4_E_TRUNCATED && r->len > 0 && r->len < DSV4_TOKS_HEADER_BYTES)
        return r_err(r, err, rc, "truncated token stream header (%zu of %zu bytes)", r->len, need);
    if (rc)
        return r_err(r, err, rc, "%s", perr.msg);
    /* Skip the part of a newer minor's header this reader does not know. */
    skip = r->info.header_bytes;
    while (skip) {
        size_t take = r->len - r->pos < skip ? r->len - r->pos : skip;
        r->pos += take;
        r->offset += take;
        skip -= take;
        if (!skip)
            break;
        if (r->eof)
            return r_err(r, err, DSV4_E_TRUNCATED, "truncated token stream header (%llu of %u bytes)",
                         (unsigned long long)r->offset, r->info.header_bytes);
        if ((rc = r_fill(r, err)))
            return rc;
    }
    return 0;
}

int dsv4_toks_reader_open(dsv4_toks_reader **out, int fd, const char *name, uint32_t vocab_size,
                          dsv4_err *err)
{
    dsv4_toks_reader *r;
    int rc = 0, c;

    *out = NULL;
    r = calloc(1, sizeof *r);
    if (!r || (name && !(r->name = xstrdup(name)))) {
        free(r);
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    }
    r->fd = fd;
    r->line = r->col = 1;
    while (!r->len && !r->eof)
        if ((rc = r_fill(r, err)))
            goto fail;
    c = r->len ? r->buf[0] : ' ';
    r->first = r->len ? c : -1;
    if (c == 0x89) {
        if ((rc = r_open_bin(r, err)))
            goto fail;
    } else if (is_space(c) || (c >= '0' && c <= '9')) {
        r->info.format = DSV4_TOKS_TEXT;
    } else {
        char q[8];
        quote(q, sizeof q, r->buf, 1, 0);
        rc = r_err(r, err, DSV4_E_FORMAT, "not a token stream: starts with byte 0x%02x '%s' (expected "
                   "the binary signature or decimal token ids)", c, q);
        goto fail;
    }
    r->limit = vocab_size;
    if (r->info.vocab_size && (!r->limit || r->info.vocab_size < r->limit))
        r->limit = r->info.vocab_size;
    *out = r;
    return 0;
fail:
    dsv4_toks_reader_close(r);
    return rc;
}

const dsv4_toks_info *dsv4_toks_reader_info(const dsv4_toks_reader *r)
{
    return &r->info;
}

uint64_t dsv4_toks_reader_count(const dsv4_toks_reader *r)
{
    return r->count;
}

/* Both readers store the ids that precede an error and count them in *n. */
static int bin_read(dsv4_toks_reader *r, uint32_t *ids, size_t cap, size_t *n, dsv4_err *err)
{
    size_t k = 0;
    int rc = 0;
    for (;;) {
        while (k < cap && r->len - r->pos >= 4) {
            uint32_t id = dsv4_le32_get(r->buf + r->pos);
            if (r->limit && id >= r->limit) {
                rc = r_err(r, err, DSV4_E_RANGE, "token %llu (byte offset %llu): id %u is out of "
                           "range (vocab size %u)", (unsigned long long)r->count,
                           (unsigned long long)r->offset, id, r->limit);
                goto out;
            }
            ids[k++] = id;
            r->pos += 4;
            r->offset += 4;
            r->count++;
        }
        if (k || !cap)
            break;
        if (r->eof) {
            if (r->len > r->pos)
                rc = r_err(r, err, DSV4_E_TRUNCATED, "truncated token stream: %zu stray byte%s after "
                           "token %llu at byte offset %llu (ids are 4 bytes each)", r->len - r->pos,
                           r->len - r->pos == 1 ? "" : "s", (unsigned long long)r->count,
                           (unsigned long long)r->offset);
            break;
        }
        if ((rc = r_fill(r, err)))
            break;
    }
out:
    *n = k;
    return rc;
}

static int text_word_error(dsv4_toks_reader *r, dsv4_err *err)
{
    char q[4 * SNIP + 8];
    if (r->first == '\t' && r->tline == 1 && r->tcol == 2 && r->snip_len >= 3 && !memcmp(r->snip, "TK4", 3))
        return r_err(r, err, DSV4_E_FORMAT, "token stream signature damaged: its high bit was stripped "
                     "(copy the file in binary mode)");
    quote(q, sizeof q, r->snip, r->snip_len, r->snip_more);
    return r_err(r, err, DSV4_E_FORMAT, "line %llu, column %llu: unexpected '%s' (expected decimal "
                 "token ids separated by whitespace)", (unsigned long long)r->tline,
                 (unsigned long long)r->tcol, q);
}

/* The number that just ended: check it and store it in *id. */
static int text_emit(dsv4_toks_reader *r, uint32_t *id, dsv4_err *err)
{
    char q[4 * SNIP + 8];
    r->tstate = T_GAP;
    if (r->tover) {
        quote(q, sizeof q, r->snip, r->snip_len, r->snip_more);
        return r_err(r, err, DSV4_E_RANGE, "line %llu, column %llu: '%s' does not fit in 32 bits "
                     "(ids are at most %u)", (unsigned long long)r->tline, (unsigned long long)r->tcol,
                     q, UINT32_MAX);
    }
    if (r->limit && r->tval >= r->limit)
        return r_err(r, err, DSV4_E_RANGE, "line %llu, column %llu: id %llu is out of range (vocab "
                     "size %u)", (unsigned long long)r->tline, (unsigned long long)r->tcol,
                     (unsigned long long)r->tval, r->limit);
    *id = (uint32_t)r->tval;
    r->count++;
    return 0;
}

static int text_read(dsv4_toks_reader *r, uint32_t *ids, size_t cap, size_t *n, dsv4_err *err)
{
    size_t k = 0;
    int rc = 0;
    for (;;) {
        while (k < cap && r->pos < r->len) {
            int c = r->buf[r->pos];
            if (is_space(c)) {
                if (r->tstate == T_NUM) {
                    if ((rc = text_emit(r, &ids[k], err)))
                        goto out;
                    k++;
                }
                if (r->tstate == T_JUNK) {
                    rc = text_word_error(r, err);
                    goto out;
                }
            } else {
                if (r->tstate == T_GAP) {
                    r->tstate = T_NUM;
                    r->tline = r->line;
                    r->tcol = r->col;
                    r->tval = 0;
                    r->tover = 0;
                    r->snip_len = 0;
                    r->snip_more = 0;
                }
                if (r->tstate == T_NUM && c >= '0' && c <= '9') {
                    r->tval = r->tval * 10 + (uint64_t)(c - '0');
                    if (r->tval > UINT32_MAX) {
                        r->tover = 1;
                        r->tval = UINT32_MAX;   /* keep it bounded; only the flag matters now */
                    }
                } else {
                    r->tstate = T_JUNK;
                }
                if (r->snip_len < SNIP) {
                    r->snip[r->snip_len++] = (uint8_t)c;
                } else {
                    r->snip_more = 1;
                    if (r->tstate == T_JUNK) {   /* enough to quote; do not wait for the rest */
                        rc = text_word_error(r, err);
                        goto out;
                    }
                }
            }
            r->pos++;
            r->offset++;
            if (c == '\n') {
                r->line++;
                r->col = 1;
            } else {
                r->col++;
            }
        }
        if (k || !cap)
            break;
        if (r->eof) {
            if (r->tstate == T_NUM && !(rc = text_emit(r, &ids[k], err)))
                k++;
            else if (r->tstate == T_JUNK)
                rc = text_word_error(r, err);
            break;
        }
        if ((rc = r_fill(r, err)))
            break;
    }
out:
    *n = k;
    return rc;
}

int dsv4_toks_read(dsv4_toks_reader *r, uint32_t *ids, size_t cap, size_t *n, dsv4_err *err)
{
    *n = 0;
    if (r->failed.code)
        return r_fail(r, err);
    return r->info.format == DSV4_TOKS_BIN ? bin_read(r, ids, cap, n, err) : text_read(r, ids, cap, n, err);
}

int dsv4_toks_next(dsv4_toks_reader *r, uint32_t *id, dsv4_err *err)
{
    size_t n;
    int rc = dsv4_toks_read(r, id, 1, &n, err);
    return rc ? rc : (int)n;
}

int dsv4_toks_read_all(dsv4_toks_reader *r, dsv4_toks_vec *v, size_t max_ids, dsv4_err *err)
{
    size_t n, cap;
    int rc;
    for (;;) {
        if (dsv4_toks_vec_reserve(v, 16384))
            return r_err(r, err, DSV4_E_NOMEM, "out of memory after %zu token ids", v->n);
        cap = v->cap - v->n;
        /* Read at most one id past the limit: enough to know it is exceeded. */
        if (max_ids && cap > max_ids + 1 - v->n)
            cap = max_ids + 1 - v->n;          /* v->n <= max_ids here */
        rc = dsv4_toks_read(r, v->ids + v->n, cap, &n, err);
        v->n += n;
        if (rc || !n)
            return rc;
        if (max_ids && v->n > max_ids) {
            v->n = max_ids;
            return r_err(r, err, DSV4_E_RANGE, "more than %zu token ids", max_ids);
        }
    }
}

void dsv4_toks_reader_close(dsv4_toks_reader *r)
{
    if (!r)
        return;
    free(r->name);
    free(r);
}

int dsv4_toks_load(int fd, const char *name, uint32_t vocab_size, size_t max_ids, dsv4_toks_vec *v,
                   dsv4_toks_info *info, dsv4_err *err)
{
    dsv4_toks_reader *r;
    int rc = dsv4_toks_reader_open(&r, fd, name, vocab_size, err);
    if (rc)
        return rc;
    if (info)
        *info = r->info;
    rc = dsv4_toks_read_all(r, v, max_ids, err);
    dsv4_toks_reader_close(r);
    return rc;
}
