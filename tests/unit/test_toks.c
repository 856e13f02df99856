/* toks: binary and text round trips, detection, headers of other versions,
 * truncation, junk, range checks, fingerprints and streaming through pipes
 * (including interrupted, short and non-blocking writes). */
#include "test.h"
#include "buf.h"
#include "toks.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define VOCAB 129280u

/* An fd holding the bytes p[0..n), positioned at the start (unlinked file). */
static int mem_fd(const void *p, size_t n)
{
    FILE *f = tmpfile();
    int fd;
    if (!f)
        return -1;
    fd = dup(fileno(f));
    fclose(f);
    if (fd < 0 || (n && write(fd, p, n) != (ssize_t)n) || lseek(fd, 0, SEEK_SET) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* An empty unlinked file for a writer. */
static int tmp_fd(void)
{
    return mem_fd("", 0);
}

/* Everything in fd from the start (malloc'd). */
static uint8_t *slurp(int fd, size_t *n)
{
    off_t end = lseek(fd, 0, SEEK_END);
    uint8_t *p = malloc((size_t)end + 1);
    *n = 0;
    if (!p || lseek(fd, 0, SEEK_SET) != 0)
        return p;
    while (*n < (size_t)end) {
        ssize_t r = read(fd, p + *n, (size_t)end - *n);
        if (r <= 0)
            break;
        *n += (size_t)r;
    }
    p[*n] = 0;
    return p;
}

/* A header with arbitrary fields, written by hand (not by the library). */
static size_t make_header(uint8_t *out, uint16_t major, uint16_t minor, uint16_t flags, uint32_t hb,
                          uint32_t vocab, uint8_t fpbyte)
{
    memset(out, 0, hb);
    memcpy(out, "\x89TK4\r\n\x1a\n", 8);
    dsv4_le16_put(out + 8, major);
    dsv4_le16_put(out + 10, minor);
    dsv4_le16_put(out + 12, flags);
    dsv4_le32_put(out + 16, hb);
    dsv4_le32_put(out + 20, vocab);
    memset(out + 24, fpbyte, 32);
    if (hb > 56)
        memset(out + 56, 0xee, hb - 56);   /* fields of a future minor */
    return hb;
}

/* Load the bytes p[0..n) as a stream; returns the rc, fills v, info and err. */
static int load_mem(const void *p, size_t n, uint32_t vocab, dsv4_toks_vec *v, dsv4_toks_info *info,
                    dsv4_err *err)
{
    int fd = mem_fd(p, n), rc;
    if (fd < 0)
        return DSV4_E_IO;
    rc = dsv4_toks_load(fd, "t.tok", vocab, 0, v, info, err);
    close(fd);
    return rc;
}

static int load_str(const char *s, uint32_t vocab, dsv4_toks_vec *v, dsv4_err *err)
{
    return load_mem(s, strlen(s), vocab, v, NULL, err);
}

TEST(roundtrip_bin)
{
    static const uint32_t ids[] = { 0, 1, 2, 127, 128, 65535, 65536, VOCAB - 1, UINT32_MAX - 1, UINT32_MAX };
    const size_t n = sizeof ids / sizeof ids[0];
    dsv4_toks_wopts o = DSV4_TOKS_WOPTS_INIT;
    dsv4_toks_writer *w;
    dsv4_toks_vec v = DSV4_TOKS_VEC_INIT;
    dsv4_toks_info info;
    dsv4_err err = DSV4_ERR_INIT;
    uint8_t fp[32], *bytes;
    size_t len;
    int fd = tmp_fd();

    CHECK(dsv4_toks_fingerprint("{\"model\":{}}", 12, fp, &err) == 0);
    o.fingerprint = fp;
    CHECK(dsv4_toks_writer_open(&w, fd, &o, &err) == 0);
    CHECK(dsv4_toks_put(w, ids[0], &err) == 0);
    CHECK(dsv4_toks_put_n(w, ids + 1, n - 1, &err) == 0);
    CHECK_EQ_INT(dsv4_toks_writer_count(w), n);
    CHECK(dsv4_toks_finish(w, &err) == 0);
    CHECK(dsv4_toks_finish(w, &err) == 0);
    CHECK_EQ_INT(dsv4_toks_put(w, 5, &err), DSV4_E_INVALID);
    dsv4_toks_writer_close(w);

    bytes = slurp(fd, &len);
    CHECK_EQ_INT(len, DSV4_TOKS_HEADER_BYTES + 4 * n);
    CHECK(!memcmp(bytes, "\x89TK4\r\n\x1a\n", 8));
    CHECK_EQ_INT(dsv4_le16_get(bytes + 8), 1);
    CHECK_EQ_INT(dsv4_le16_get(bytes + 10), 0);
    CHECK_EQ_INT(dsv4_le32_get(bytes + 16), 56);
    CHECK(!memcmp(bytes + 24, fp, 32));
    CHECK_EQ_INT(dsv4_le32_get(bytes + 56), 0);
    CHECK(!memcmp(bytes + len - 4, "\xff\xff\xff\xff", 4));
    CHECK(!memcmp(bytes + 56 + 4 * 6, "\x00\x00\x01\x00", 4));   /* 65536, little-endian */
    free(bytes);

    lseek(fd, 0, SEEK_SET);
    CHECK(dsv4_toks_load(fd, "rt.tok", 0, 0, &v, &info, &err) == 0);
    CHECK_EQ_INT(info.format, DSV4_TOKS_BIN);
    CHECK_EQ_INT(info.major, 1);
    CHECK_EQ_INT(info.minor, 0);
    CHECK_EQ_INT(info.header_bytes, 56);
    CHECK_EQ_INT(info.vocab_size, 0);
    CHECK(info.has_fingerprint);
    CHECK(!memcmp(info.fingerprint, fp, 32));
    CHECK_EQ_INT(v.n, n);
    CHECK(v.n == n && !memcmp(v.ids, ids, sizeof ids));
    dsv4_toks_vec_release(&v);
    close(fd);
}

TEST(roundtrip_text)
{
    static const uint32_t ids[] = { 0, 7, 10, 4242, VOCAB - 1 };
    dsv4_toks_wopts o = DSV4_TOKS_WOPTS_INIT;
    dsv4_toks_writer *w;
    dsv4_toks_vec v = DSV4_TOKS_VEC_INIT;
    dsv4_toks_info info;
    dsv4_err err = DSV4_ERR_INIT;
    uint8_t fp[32], *bytes;
    size_t len;
    int fd = tmp_fd();

    memset(fp, 0xab, sizeof fp);
    o.format = DSV4_TOKS_TEXT;
    o.fingerprint = fp;                 /* text has nowhere to put it */
    o.vocab_size = VOCAB;
    CHECK(dsv4_toks_writer_open(&w, fd, &o, &err) == 0);
    CHECK(dsv4_toks_put_n(w, ids, 5, &err) == 0);
    CHECK(dsv4_toks_finish(w, &err) == 0);
    dsv4_toks_writer_close(w);
    bytes = slurp(fd, &len);
    CHECK_STR((char *)bytes, "0\n7\n10\n4242\n129279\n");
    free(bytes);

    lseek(fd, 0, SEEK_SET);
    CHECK(dsv4_toks_load(fd, NULL, VOCAB, 0, &v, &info, &err) == 0);
    CHECK_EQ_INT(info.format, DSV4_TOKS_TEXT);
    CHECK(!info.has_fingerprint);
    CHECK(v.n == 5 && !memcmp(v.ids, ids, sizeof ids));
    dsv4_toks_vec_release(&v);
    close(fd);

    /* the whole u32 range without a vocab; any whitespace; leading zeros */
    CHECK(load_str(" \t4294967295\r\n\v\f0007   0", 0, &v, &err) == 0);
    CHECK(v.n == 3 && v.ids[0] == UINT32_MAX && v.ids[1] == 7 && v.ids[2] == 0);
    dsv4_toks_vec_release(&v);

    /* the text writer writes the largest id too */
    fd = tmp_fd();
    o.vocab_size = 0;
    CHECK(dsv4_toks_writer_open(&w, fd, &o, &err) == 0);
    CHECK(dsv4_toks_put(w, UINT32_MAX, &err) == 0);
    CHECK(dsv4_toks_finish(w, &err) == 0);
    dsv4_toks_writer_close(w);
    bytes = slurp(fd, &len);
    CHECK_STR((char *)bytes, "4294967295\n");
    free(bytes);
    close(fd);
}

TEST(detection)
{
    dsv4_toks_vec v = DSV4_TOKS_VEC_INIT;
    dsv4_toks_info info;
    dsv4_err err = DSV4_ERR_INIT;
    uint8_t h[64];

    make_header(h, 1, 0, 0, 56, 0, 0);
    dsv4_le32_put(h + 56, 42);
    CHECK(load_mem(h, 60, 0, &v, &info, &err) == 0);
    CHECK_EQ_INT(info.format, DSV4_TOKS_BIN);
    CHECK(!info.has_fingerprint);        /* all zero = unknown */
    CHECK(v.n == 1 && v.ids[0] == 42);
    dsv4_toks_vec_release(&v);

    CHECK(load_mem("42", 2, 0, &v, &info, &err) == 0);
    CHECK_EQ_INT(info.format, DSV4_TOKS_TEXT);
    CHECK(v.n == 1 && v.ids[0] == 42);
    dsv4_toks_vec_release(&v);
    CHECK(load_mem("\n 42\n", 5, 0, &v, &info, &err) == 0);
    CHECK_EQ_INT(info.format, DSV4_TOKS_TEXT);
    dsv4_toks_vec_release(&v);

    /* neither variant */
    CHECK_EQ_INT(load_str("{\"ids\": [1]}", 0, &v, &err), DSV4_E_FORMAT);
    CHECK(strstr(err.msg, "'t.tok': not a token stream: starts with byte 0x7b '{'") != NULL);
    CHECK_EQ_INT(load_mem("\x89PNG\r\n\x1a\n\0\0\0\0\0\0\0\0\0\0\0\0", 20, 0, &v, NULL, &err), DSV4_E_FORMAT);
    CHECK(strstr(err.msg, "bad signature 89 50 4e 47 0d 0a 1a 0a") != NULL);
    CHECK_EQ_INT(load_str("\xef\xbb\xbf" "1 2", 0, &v, &err), DSV4_E_FORMAT);
    CHECK(strstr(err.msg, "0xef '\\xef'") != NULL);

    /* what text-mode transfers do to the signature */
    make_header(h, 1, 0, 0, 56, 0, 0);
    memmove(h + 4, h + 5, 51);           /* CR-LF -> LF */
    CHECK_EQ_INT(load_mem(h, 55, 0, &v, NULL, &err), DSV4_E_FORMAT);
    CHECK(strstr(err.msg, "CR-LF") != NULL);
    make_header(h, 1, 0, 0, 56, 0, 0);
    h[0] = 0x09;                         /* 7-bit transfer */
    CHECK_EQ_INT(load_mem(h, 56, 0, &v, NULL, &err), DSV4_E_FORMAT);
    CHECK(strstr(err.msg, "high bit") != NULL);
    dsv4_toks_vec_release(&v);
}

TEST(empty_streams)
{
    dsv4_toks_wopts o = DSV4_TOKS_WOPTS_INIT;
    dsv4_toks_writer *w;
    dsv4_toks_reader *r;
    dsv4_toks_vec v = DSV4_TOKS_VEC_INIT;
    dsv4_toks_info info;
    dsv4_err err = DSV4_ERR_INIT;
    uint8_t fp[32], *bytes;
    size_t len, n = 99;
    uint32_t id;
    int fd = tmp_fd();

    memset(fp, 0x5a, sizeof fp);
    o.fingerprint = fp;
    o.vocab_size = 1000;
    CHECK(dsv4_toks_writer_open(&w, fd, &o, &err) == 0);
    CHECK(dsv4_toks_finish(w, &err) == 0);
    dsv4_toks_writer_close(w);
    bytes = slurp(fd, &len);
    CHECK_EQ_INT(len, 56);
    free(bytes);
    lseek(fd, 0, SEEK_SET);
    CHECK(dsv4_toks_reader_open(&r, fd, "h.tok", 0, &err) == 0);
    CHECK_EQ_INT(dsv4_toks_reader_info(r)->format, DSV4_TOKS_BIN);
    CHECK_EQ_INT(dsv4_toks_reader_info(r)->vocab_size, 1000);
    CHECK(dsv4_toks_reader_info(r)->has_fingerprint);
    CHECK(dsv4_toks_read(r, &id, 1, &n, &err) == 0 && n == 0);
    CHECK_EQ_INT(dsv4_toks_next(r, &id, &err), 0);    /* end stays end */
    dsv4_toks_reader_close(r);
    close(fd);

    CHECK(load_mem("", 0, 0, &v, &info, &err) == 0);
    CHECK_EQ_INT(info.format, DSV4_TOKS_TEXT);
    CHECK_EQ_INT(v.n, 0);
    CHECK(load_str(" \n\n\t ", 0, &v, &err) == 0);
    CHECK_EQ_INT(v.n, 0);
    dsv4_toks_vec_release(&v);
}

TEST(truncated_header)
{
    dsv4_toks_vec v = DSV4_TOKS_VEC_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    uint8_t h[80];

    make_header(h, 1, 0, 0, 56, 0, 0);
    CHECK_EQ_INT(load_mem(h, 1, 0, &v, NULL, &err), DSV4_E_TRUNCATED);
    CHECK_EQ_INT(load_mem(h, 5, 0, &v, NULL, &err), DSV4_E_TRUNCATED);
    CHECK_EQ_INT(load_mem(h, 19, 0, &v, NULL, &err), DSV4_E_TRUNCATED);
    CHECK_EQ_INT(load_mem(h, 55, 0, &v, NULL, &err), DSV4_E_TRUNCATED);
    CHECK(strstr(err.msg, "'t.tok': truncated token stream header (55 of 56 bytes)") != NULL);
    /* a newer minor's longer header, cut inside its unknown tail */
    make_header(h, 1, 3, 0, 72, 0, 0);
    CHECK_EQ_INT(load_mem(h, 60, 0, &v, NULL, &err), DSV4_E_TRUNCATED);
    CHECK(strstr(err.msg, "60 of 72") != NULL);
    /* the parser on its own says how long the header is */
    {
        size_t need = 0;
        CHECK_EQ_INT(dsv4_toks_header_parse(h, 30, NULL, &need, &err), DSV4_E_TRUNCATED);
        CHECK_EQ_INT(need, 72);
    }
    dsv4_toks_vec_release(&v);
}

TEST(truncated_id)
{
    dsv4_toks_reader *r;
    dsv4_toks_vec v = DSV4_TOKS_VEC_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    uint8_t h[64];
    uint32_t id;
    int fd;

    make_header(h, 1, 0, 0, 56, 0, 0);
    dsv4_le32_put(h + 56, 9);
    h[60] = 1;
    h[61] = 2;                           /* 2 bytes of a second id */
    h[62] = 3;
    fd = mem_fd(h, 62);
    CHECK(dsv4_toks_reader_open(&r, fd, "cut.tok", 0, &err) == 0);
    CHECK_EQ_INT(dsv4_toks_next(r, &id, &err), 1);
    CHECK_EQ_INT(id, 9);
    CHECK_EQ_INT(dsv4_toks_next(r, &id, &err), DSV4_E_TRUNCATED);
    CHECK(strstr(err.msg, "'cut.tok': truncated token stream: 2 stray bytes after token 1 at byte offset 60")
          != NULL);
    memset(&err, 0, sizeof err);
    CHECK_EQ_INT(dsv4_toks_next(r, &id, &err), DSV4_E_TRUNCATED);   /* sticky */
    CHECK_EQ_INT(err.code, DSV4_E_TRUNCATED);
    dsv4_toks_reader_close(r);
    close(fd);

    for (int extra = 1; extra <= 3; extra++) {
        CHECK_EQ_INT(load_mem(h, (size_t)(60 + extra), 0, &v, NULL, &err), DSV4_E_TRUNCATED);
        CHECK_EQ_INT(v.n, 1);            /* what came before is kept */
        v.n = 0;
    }
    dsv4_toks_vec_release(&v);
}

TEST(versions)
{
    dsv4_toks_vec v = DSV4_TOKS_VEC_INIT;
    dsv4_toks_info info;
    dsv4_err err = DSV4_ERR_INIT;
    uint8_t h[128];
    size_t n;

    /* future major: refused, even with a header this reader cannot size */
    n = make_header(h, 2, 0, 0, 56, 0, 0);
    CHECK_EQ_INT(load_mem(h, n, 0, &v, NULL, &err), DSV4_E_VERSION);
    CHECK(strstr(err.msg, "format 2.0 is newer than this reader (1.x)") != NULL);
    n = make_header(h, 7, 1, 0, 56, 0, 0);
    dsv4_le32_put(h + 16, 4);
    CHECK_EQ_INT(load_mem(h, 12, 0, &v, NULL, &err), DSV4_E_VERSION);
    n = make_header(h, 0, 9, 0, 56, 0, 0);
    CHECK_EQ_INT(load_mem(h, n, 0, &v, NULL, &err), DSV4_E_VERSION);

    /* future minor with a longer header: accepted, the tail skipped */
    n = make_header(h, 1, 5, 0x0100, 72, 0, 0x11);
    dsv4_le32_put(h + n, 123);
    dsv4_le32_put(h + n + 4, 456);
    CHECK(load_mem(h, n + 8, 0, &v, &info, &err) == 0);
    CHECK_EQ_INT(info.minor, 5);
    CHECK_EQ_INT(info.flags, 0x0100);    /* an ignorable flag */
    CHECK_EQ_INT(info.header_bytes, 72);
    CHECK(info.has_fingerprint && info.fingerprint[31] == 0x11);
    CHECK(v.n == 2 && v.ids[0] == 123 && v.ids[1] == 456);
    dsv4_toks_vec_release(&v);

    /* an incompatible flag this reader does not know */
    n = make_header(h, 1, 1, 0x0004, 56, 0, 0);
    CHECK_EQ_INT(load_mem(h, n, 0, &v, NULL, &err), DSV4_E_VERSION);
    CHECK(strstr(err.msg, "flags 0x0004") != NULL);

    /* impossible header sizes */
    n = make_header(h, 1, 0, 0, 56, 0, 0);
    dsv4_le32_put(h + 16, 52);
    CHECK_EQ_INT(load_mem(h, n, 0, &v, NULL, &err), DSV4_E_FORMAT);
    dsv4_le32_put(h + 16, 58);
    CHECK_EQ_INT(load_mem(h, n, 0, &v, NULL, &err), DSV4_E_FORMAT);
    dsv4_le32_put(h + 16, 0x7ffffff0);
    CHECK_EQ_INT(load_mem(h, n, 0, &v, NULL, &err), DSV4_E_FORMAT);
    CHECK(strstr(err.msg, "header size 2147483632") != NULL);

    /* encode/parse agree */
    {
        dsv4_toks_info a, b;
        uint8_t e[DSV4_TOKS_HEADER_BYTES];
        memset(&a, 0, sizeof a);
        a.vocab_size = VOCAB;
        a.has_fingerprint = 1;
        memset(a.fingerprint, 0x42, 32);
        dsv4_toks_header_encode(e, &a);
        CHECK(dsv4_toks_header_parse(e, sizeof e, &b, NULL, &err) == 0);
        CHECK_EQ_INT(b.vocab_size, VOCAB);
        CHECK_EQ_INT(b.header_bytes, 56);
        CHECK(b.has_fingerprint && !memcmp(a.fingerprint, b.fingerprint, 32));
    }
    dsv4_toks_vec_release(&v);
}

TEST(text_junk)
{
    dsv4_toks_vec v = DSV4_TOKS_VEC_INIT;
    dsv4_err err = DSV4_ERR_INIT;

    CHECK_EQ_INT(load_str("1 2\n  3x 4\n", 0, &v, &err), DSV4_E_FORMAT);
    CHECK_STR(err.msg, "'t.tok': line 2, column 3: unexpected '3x' (expected decimal token ids separated "
                       "by whitespace)");
    CHECK_EQ_INT(v.n, 2);
    v.n = 0;
    CHECK_EQ_INT(load_str("5 -1", 0, &v, &err), DSV4_E_FORMAT);
    CHECK(strstr(err.msg, "line 1, column 3: unexpected '-1'") != NULL);
    v.n = 0;
    CHECK_EQ_INT(load_str("1,2", 0, &v, &err), DSV4_E_FORMAT);
    CHECK(strstr(err.msg, "line 1, column 1: unexpected '1,2'") != NULL);
    v.n = 0;
    CHECK_EQ_INT(load_str("0x10", 0, &v, &err), DSV4_E_FORMAT);
    v.n = 0;
    CHECK_EQ_INT(load_str("+5", 0, &v, &err), DSV4_E_FORMAT);
    v.n = 0;
    CHECK_EQ_INT(load_str("7 1.5", 0, &v, &err), DSV4_E_FORMAT);
    v.n = 0;
    CHECK_EQ_INT(load_str("\n\n\n12 \x01\x02'x", 0, &v, &err), DSV4_E_FORMAT);   /* ends at EOF */
    CHECK(strstr(err.msg, "line 4, column 4: unexpected '\\x01\\x02\\x27x'") != NULL);
    v.n = 0;
    /* a long junk word is quoted in part */
    CHECK_EQ_INT(load_str("1 abcdefghijklmnopqrstuvwxyzabcdefghijklmnop", 0, &v, &err), DSV4_E_FORMAT);
    CHECK(strstr(err.msg, "'abcdefghijklmnopqrstuvwx...'") != NULL);
    dsv4_toks_vec_release(&v);
}

TEST(text_overflow)
{
    dsv4_toks_vec v = DSV4_TOKS_VEC_INIT;
    dsv4_err err = DSV4_ERR_INIT;

    CHECK(load_str("4294967295", 0, &v, &err) == 0);
    v.n = 0;
    CHECK_EQ_INT(load_str("1\n4294967296\n", 0, &v, &err), DSV4_E_RANGE);
    CHECK_STR(err.msg, "'t.tok': line 2, column 1: '4294967296' does not fit in 32 bits (ids are at most "
                       "4294967295)");
    v.n = 0;
    CHECK_EQ_INT(load_str("99999999999999999999999999999999999999", 0, &v, &err), DSV4_E_RANGE);
    CHECK(strstr(err.msg, "'999999999999999999999999...' does not fit") != NULL);
    v.n = 0;
    CHECK(load_str("00000000000000000000000000000000000000012", 0, &v, &err) == 0);
    CHECK(v.n == 1 && v.ids[0] == 12);
    v.n = 0;
    CHECK_EQ_INT(load_str("18446744073709551617", 0, &v, &err), DSV4_E_RANGE);   /* 2^64 + 1 */
    dsv4_toks_vec_release(&v);
}

TEST(vocab_range)
{
    dsv4_toks_wopts o = DSV4_TOKS_WOPTS_INIT;
    dsv4_toks_writer *w;
    dsv4_toks_vec v = DSV4_TOKS_VEC_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    uint8_t h[80];
    uint32_t bad[] = { 1, 2, 10 };
    int fd;

    CHECK(load_str("0 9", 10, &v, &err) == 0 && v.n == 2);
    v.n = 0;
    CHECK_EQ_INT(load_str("0 9\n  10", 10, &v, &err), DSV4_E_RANGE);
    CHECK_STR(err.msg, "'t.tok': line 2, column 3: id 10 is out of range (vocab size 10)");
    v.n = 0;

    /* binary: the caller's bound, and the header's own */
    make_header(h, 1, 0, 0, 56, 0, 0);
    dsv4_le32_put(h + 56, 3);
    dsv4_le32_put(h + 60, VOCAB);
    CHECK_EQ_INT(load_mem(h, 64, VOCAB, &v, NULL, &err), DSV4_E_RANGE);
    CHECK(strstr(err.msg, "token 1 (byte offset 60): id 129280 is out of range (vocab size 129280)") != NULL);
    v.n = 0;
    CHECK(load_mem(h, 64, 0, &v, NULL, &err) == 0 && v.n == 2);
    v.n = 0;
    make_header(h, 1, 0, 0, 56, 100, 0);
    dsv4_le32_put(h + 56, 99);
    dsv4_le32_put(h + 60, 100);
    CHECK_EQ_INT(load_mem(h, 64, 0, &v, NULL, &err), DSV4_E_RANGE);
    CHECK(strstr(err.msg, "(vocab size 100)") != NULL);
    v.n = 0;
    CHECK_EQ_INT(load_mem(h, 64, VOCAB, &v, NULL, &err), DSV4_E_RANGE);   /* the smaller bound wins */
    dsv4_toks_vec_release(&v);

    /* the writer refuses them before writing anything of the call */
    fd = tmp_fd();
    o.vocab_size = 10;
    o.name = "o.tok";
    CHECK(dsv4_toks_writer_open(&w, fd, &o, &err) == 0);
    CHECK_EQ_INT(dsv4_toks_put_n(w, bad, 3, &err), DSV4_E_RANGE);
    CHECK_STR(err.msg, "'o.tok': token 2: id 10 is out of range (vocab size 10)");
    CHECK_EQ_INT(dsv4_toks_writer_count(w), 0);
    CHECK(dsv4_toks_put_n(w, bad, 2, &err) == 0);
    CHECK(dsv4_toks_finish(w, &err) == 0);
    dsv4_toks_writer_close(w);
    CHECK_EQ_INT(lseek(fd, 0, SEEK_END), 56 + 8);
    close(fd);

    /* a cap on the count */
    fd = mem_fd("1 2 3 4 5", 9);
    CHECK_EQ_INT(dsv4_toks_load(fd, NULL, 0, 4, &v, NULL, &err), DSV4_E_RANGE);
    CHECK_STR(err.msg, "more than 4 token ids");
    CHECK_EQ_INT(v.n, 4);
    close(fd);
    v.n = 0;
    fd = mem_fd("1 2 3 4 5", 9);
    CHECK(dsv4_toks_load(fd, NULL, 0, 5, &v, NULL, &err) == 0 && v.n == 5);
    close(fd);
    dsv4_toks_vec_release(&v);
}

TEST(fingerprints)
{
    static const char *tok = "{\"version\":\"1.0\",\"model\":{\"type\":\"BPE\"}}";
    dsv4_err err = DSV4_ERR_INIT;
    uint8_t a[32], b[32], zero[32] = { 0 };
    char hex[65];

    CHECK(dsv4_toks_fingerprint("", 0, a, &err) == 0);
    dsv4_toks_fingerprint_hex(a, hex);
    CHECK_STR(hex, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");   /* BLAKE2b-256("") */
    CHECK(dsv4_toks_fingerprint("abc", 3, a, &err) == 0);
    dsv4_toks_fingerprint_hex(a, hex);
    CHECK_STR(hex, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
    dsv4_toks_fingerprint_hex(NULL, hex);
    CHECK_STR(hex, "0000000000000000000000000000000000000000000000000000000000000000");

    CHECK(dsv4_toks_fingerprint(tok, strlen(tok), a, &err) == 0);
    CHECK(dsv4_toks_fingerprint(tok, strlen(tok) - 1, b, &err) == 0);
    CHECK(dsv4_toks_fingerprint_known(a));
    CHECK(!dsv4_toks_fingerprint_known(zero));
    CHECK(!dsv4_toks_fingerprint_known(NULL));

    CHECK(dsv4_toks_check_fingerprint(a, a, &err) == 0);
    CHECK(dsv4_toks_check_fingerprint(a, zero, &err) == 0);   /* unknown on either side passes */
    CHECK(dsv4_toks_check_fingerprint(zero, b, &err) == 0);
    CHECK(dsv4_toks_check_fingerprint(NULL, b, &err) == 0);
    CHECK(dsv4_toks_check_fingerprint(a, NULL, &err) == 0);
    CHECK_EQ_INT(dsv4_toks_check_fingerprint(a, b, &err), DSV4_E_MISMATCH);
    CHECK_EQ_INT(err.code, DSV4_E_MISMATCH);
    {
        char ha[65], hb[65], want[256];
        dsv4_toks_fingerprint_hex(a, ha);
        dsv4_toks_fingerprint_hex(b, hb);
        snprintf(want, sizeof want, "tokenizer mismatch: the tokens were made with tokenizer %.16s..., "
                 "expected tokenizer %.16s... (BLAKE2b-256 of tokenizer.json)", hb, ha);
        CHECK_STR(err.msg, want);
    }
}

/* ---- pipes ---- */

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

/* Ids arrive one by one: each is readable as soon as it is put, with both
 * ends in this process (a reader that waited for a full buffer would hang;
 * alarm() turns a hang into a failure). */
TEST(pipe_streaming_same_process)
{
    for (int fmt = DSV4_TOKS_BIN; fmt <= DSV4_TOKS_TEXT; fmt++) {
        dsv4_toks_wopts o = DSV4_TOKS_WOPTS_INIT;
        dsv4_toks_writer *w = NULL;
        dsv4_toks_reader *r = NULL;
        dsv4_err err = DSV4_ERR_INIT;
        uint8_t fp[32];
        uint32_t id;
        int p[2];

        CHECK(pipe(p) == 0);
        memset(fp, 0x77, sizeof fp);
        o.format = fmt;
        o.fingerprint = fp;
        alarm(10);
        CHECK(dsv4_toks_writer_open(&w, p[1], &o, &err) == 0);   /* AUTO: header written now */
        if (fmt == DSV4_TOKS_TEXT)
            CHECK(dsv4_toks_put(w, 31, &err) == 0);            /* text detection needs a byte */
        CHECK(dsv4_toks_reader_open(&r, p[0], "pipe", 0, &err) == 0);
        CHECK_EQ_INT(dsv4_toks_reader_info(r)->format, fmt);
        CHECK_EQ_INT(dsv4_toks_reader_info(r)->has_fingerprint, fmt == DSV4_TOKS_BIN);
        if (fmt == DSV4_TOKS_TEXT) {
            CHECK_EQ_INT(dsv4_toks_next(r, &id, &err), 1);
            CHECK_EQ_INT(id, 31);
        }
        for (uint32_t i = 0; i < 50; i++) {
            uint32_t got[8];
            size_t n = 0;
            CHECK(dsv4_toks_put(w, i * 1000003u, &err) == 0);
            CHECK(dsv4_toks_read(r, got, 8, &n, &err) == 0);
            CHECK(n == 1 && got[0] == i * 1000003u);
        }
        CHECK(dsv4_toks_finish(w, &err) == 0);
        close(p[1]);
        CHECK_EQ_INT(dsv4_toks_next(r, &id, &err), 0);
        alarm(0);
        dsv4_toks_writer_close(w);
        dsv4_toks_reader_close(r);
        close(p[0]);
    }
}

/* Text split at awkward places: a number across two writes. */
TEST(pipe_text_split)
{
    dsv4_toks_reader *r;
    dsv4_toks_vec v = DSV4_TOKS_VEC_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    uint32_t id;
    int p[2];

    CHECK(pipe(p) == 0);
    alarm(10);
    CHECK(write(p[1], "1", 1) == 1);
    CHECK(dsv4_toks_reader_open(&r, p[0], NULL, 0, &err) == 0);
    CHECK(write(p[1], "2", 1) == 1);
    CHECK(write(p[1], "34 5", 4) == 4);
    CHECK_EQ_INT(dsv4_toks_next(r, &id, &err), 1);
    CHECK_EQ_INT(id, 1234);
    CHECK(write(p[1], "6\n78", 4) == 4);
    close(p[1]);
    CHECK(dsv4_toks_read_all(r, &v, 0, &err) == 0);
    CHECK(v.n == 2 && v.ids[0] == 56 && v.ids[1] == 78);
    alarm(0);
    dsv4_toks_reader_close(r);
    close(p[0]);
    dsv4_toks_vec_release(&v);
}

#define N_BIG 400000u

static uint32_t pattern(uint32_t i)
{
    return i * 2654435761u;
}

/* A forked reader checks N_BIG ids; the parent writes them into the pipe,
 * optionally non-blocking and under a 200 us SIGALRM without SA_RESTART, so
 * writes are interrupted (EINTR), short, or refused (EAGAIN). */
static void stream_to_child(int fmt, int nonblock, int signals, int flush)
{
    struct sigaction sa, old_alrm, old_pipe;
    struct itimerval it, off;
    dsv4_toks_wopts o = DSV4_TOKS_WOPTS_INIT;
    dsv4_toks_writer *w = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    int p[2], status = -1;
    pid_t pid;

    CHECK(pipe(p) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dsv4_toks_vec v = DSV4_TOKS_VEC_INIT;
        dsv4_toks_info info;
        int ok;
        close(p[1]);
        usleep(20000);                   /* let the writer fill the pipe and block */
        ok = dsv4_toks_load(p[0], "child", 0, 0, &v, &info, &err) == 0 && v.n == N_BIG &&
             info.format == fmt;
        for (uint32_t i = 0; ok && i < N_BIG; i++)
            ok = v.ids[i] == pattern(i);
        if (!ok)
            fprintf(stderr, "child: n=%zu rc=%d %s\n", v.n, err.code, err.msg);
        _exit(ok ? 0 : 1);
    }
    close(p[0]);

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;            /* no SA_RESTART: blocked writes fail with EINTR */
    sigaction(SIGALRM, &sa, &old_alrm);
    sa.sa_handler = SIG_IGN;             /* a dead child is an EPIPE error, not our death */
    sigaction(SIGPIPE, &sa, &old_pipe);
    if (nonblock)
        fcntl(p[1], F_SETFL, fcntl(p[1], F_GETFL) | O_NONBLOCK);
    memset(&it, 0, sizeof it);
    memset(&off, 0, sizeof off);
    it.it_interval.tv_usec = it.it_value.tv_usec = 200;
    alarms = 0;
    if (signals)
        setitimer(ITIMER_REAL, &it, NULL);

    o.format = fmt;
    o.flush = flush;
    CHECK(dsv4_toks_writer_open(&w, p[1], &o, &err) == 0);
    {
        uint32_t chunk[1000];
        for (uint32_t i = 0; i < N_BIG && w; i += 1000) {
            for (uint32_t j = 0; j < 1000; j++)
                chunk[j] = pattern(i + j);
            if (dsv4_toks_put_n(w, chunk, 1000, &err)) {
                fprintf(stderr, "writer: %s\n", err.msg);
                CHECK(0);
                break;
            }
        }
    }
    CHECK(dsv4_toks_finish(w, &err) == 0);
    dsv4_toks_writer_close(w);
    setitimer(ITIMER_REAL, &off, NULL);
    close(p[1]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    sigaction(SIGALRM, &old_alrm, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (signals)
        CHECK(alarms > 0);               /* the writer really ran under signals */
}

TEST(pipe_fork_bin_interrupted)
{
    stream_to_child(DSV4_TOKS_BIN, 0, 1, DSV4_TOKS_FLUSH_BUFFERED);
}

TEST(pipe_fork_bin_nonblocking)
{
    stream_to_child(DSV4_TOKS_BIN, 1, 1, DSV4_TOKS_FLUSH_AUTO);
}

TEST(pipe_fork_text_interrupted)
{
    stream_to_child(DSV4_TOKS_TEXT, 0, 1, DSV4_TOKS_FLUSH_EACH);
}

/* A reader on a non-blocking descriptor waits instead of failing with EAGAIN. */
TEST(pipe_nonblocking_reader)
{
    dsv4_toks_wopts o = DSV4_TOKS_WOPTS_INIT;
    dsv4_toks_writer *w;
    dsv4_toks_vec v = DSV4_TOKS_VEC_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    int p[2], status = -1;
    pid_t pid;

    CHECK(pipe(p) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        if (dsv4_toks_writer_open(&w, p[1], &o, &err))
            _exit(1);
        for (uint32_t i = 0; i < 5; i++) {
            usleep(5000);
            if (dsv4_toks_put(w, i, &err))
                _exit(1);
        }
        _exit(dsv4_toks_finish(w, &err) ? 1 : 0);
    }
    close(p[1]);
    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
    CHECK(dsv4_toks_load(p[0], "nb", 0, 0, &v, NULL, &err) == 0);
    CHECK(v.n == 5 && v.ids[4] == 4);
    close(p[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    dsv4_toks_vec_release(&v);
}

/* A write error (reader gone) is reported, and sticks. */
TEST(write_error)
{
    struct sigaction sa, old;
    dsv4_toks_wopts o = DSV4_TOKS_WOPTS_INIT;
    dsv4_toks_writer *w;
    dsv4_err err = DSV4_ERR_INIT;
    int p[2];

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, &old);
    CHECK(pipe(p) == 0);
    close(p[0]);
    o.name = "out";
    CHECK_EQ_INT(dsv4_toks_writer_open(&w, p[1], &o, &err), DSV4_E_IO);
    CHECK(strstr(err.msg, "'out': write error: ") != NULL);
    o.flush = DSV4_TOKS_FLUSH_BUFFERED;
    CHECK(dsv4_toks_writer_open(&w, p[1], &o, &err) == 0);
    CHECK(dsv4_toks_put(w, 1, &err) == 0);
    CHECK_EQ_INT(dsv4_toks_flush(w, &err), DSV4_E_IO);
    memset(&err, 0, sizeof err);
    CHECK_EQ_INT(dsv4_toks_put(w, 2, &err), DSV4_E_IO);
    CHECK(strstr(err.msg, "write error") != NULL);
    CHECK_EQ_INT(dsv4_toks_finish(w, &err), DSV4_E_IO);
    dsv4_toks_writer_close(w);
    close(p[1]);
    sigaction(SIGPIPE, &old, NULL);

    CHECK_EQ_INT(dsv4_toks_writer_open(&w, -1, NULL, &err), DSV4_E_IO);
    o.format = 7;
    CHECK_EQ_INT(dsv4_toks_writer_open(&w, 1, &o, &err), DSV4_E_INVALID);
}

/* Small reads across the internal buffer boundary, both variants. */
TEST(incremental_reads)
{
    dsv4_toks_wopts o = DSV4_TOKS_WOPTS_INIT;
    dsv4_toks_writer *w;
    dsv4_toks_reader *r;
    dsv4_err err = DSV4_ERR_INIT;
    const uint32_t N = 50000;            /* > 64 KiB in both variants */

    for (int fmt = DSV4_TOKS_BIN; fmt <= DSV4_TOKS_TEXT; fmt++) {
        uint32_t got[7];
        uint32_t i = 0;
        size_t n;
        int fd = tmp_fd(), ok = 1;
        o.format = fmt;
        CHECK(dsv4_toks_writer_open(&w, fd, &o, &err) == 0);
        for (uint32_t k = 0; k < N; k++)
            CHECK(dsv4_toks_put(w, pattern(k), &err) == 0);
        CHECK(dsv4_toks_finish(w, &err) == 0);
        dsv4_toks_writer_close(w);
        lseek(fd, 0, SEEK_SET);
        CHECK(dsv4_toks_reader_open(&r, fd, NULL, 0, &err) == 0);
        while (dsv4_toks_read(r, got, 7, &n, &err) == 0 && n)
            for (size_t k = 0; k < n; k++, i++)
                ok &= got[k] == pattern(i);
        CHECK_EQ_INT(err.code, 0);
        CHECK(ok);
        CHECK_EQ_INT(i, N);
        CHECK_EQ_INT(dsv4_toks_reader_count(r), N);
        dsv4_toks_reader_close(r);
        close(fd);
    }
    CHECK_STR(dsv4_toks_format_name(DSV4_TOKS_BIN), "binary");
    CHECK_STR(dsv4_toks_format_name(DSV4_TOKS_TEXT), "text");
}

TEST_MAIN(T(roundtrip_bin), T(roundtrip_text), T(detection), T(empty_streams), T(truncated_header),
          T(truncated_id), T(versions), T(text_junk), T(text_overflow), T(vocab_range), T(fingerprints),
          T(pipe_streaming_same_process), T(pipe_text_split), T(pipe_fork_bin_interrupted),
          T(pipe_fork_bin_nonblocking), T(pipe_fork_text_interrupted), T(pipe_nonblocking_reader),
          T(write_error), T(incremental_reads))
