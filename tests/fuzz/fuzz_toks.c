/* fuzz_toks — token streams (lib/toks.h): the header parser, the reader on
 * a regular file (memfd) and on a non-blocking pipe, reads of every size,
 * the vocab limit and max_ids, and a write/read round trip.
 *
 * Input: the bytes of a token stream (binary or text variant).  Invariants:
 * every error has a message; reading one id at a time, a few at a time or
 * all at once gives the same ids and the same error; a pipe and a file give
 * the same result; ids written back by the writer (both variants) read back
 * identical. */
#include "fuzz.h"

#include "toks.h"

#define MAX_IDS 100000

/* All ids of fd with reads of cap ids (0: read_all); returns the final rc. */
static int read_ids(int fd, uint32_t vocab, size_t cap, size_t max_ids, dsv4_toks_vec *v, dsv4_toks_info *info)
{
    dsv4_toks_reader *r = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    int rc = dsv4_toks_reader_open(&r, fd, "fuzz", vocab, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (rc)
        return rc;
    if (info)
        *info = *dsv4_toks_reader_info(r);
    if (!cap) {
        rc = dsv4_toks_read_all(r, v, max_ids, &err);
    } else {
        uint32_t ids[16];
        for (;;) {
            size_t n = 0;
            rc = cap == 1 ? dsv4_toks_next(r, ids, &err) : dsv4_toks_read(r, ids, cap, &n, &err);
            if (cap == 1 && rc > 0)
                n = 1, rc = 0;
            for (size_t i = 0; i < n; i++)
                FUZZ_ASSERT(dsv4_toks_vec_push(v, ids[i]) == 0, "push");
            if (rc || !n)
                break;
        }
        if (rc) {   /* the error is sticky */
            dsv4_err e2 = DSV4_ERR_INIT;
            size_t n = 0;
            FUZZ_ASSERT(dsv4_toks_read(r, ids, 4, &n, &e2) == rc && n == 0, "error not sticky");
        }
    }
    FUZZ_CHECK_ERR(rc, err);
    FUZZ_ASSERT(rc || dsv4_toks_reader_count(r) == v->n, "count %llu vs %zu",
                (unsigned long long)dsv4_toks_reader_count(r), v->n);
    dsv4_toks_reader_close(r);
    return rc;
}

static int same(const dsv4_toks_vec *a, const dsv4_toks_vec *b)
{
    return a->n == b->n && (!a->n || !memcmp(a->ids, b->ids, a->n * 4));
}

/* Write ids with the writer in format fmt, read them back, compare. */
static void roundtrip(const dsv4_toks_vec *v, int fmt, const dsv4_toks_info *info)
{
    dsv4_toks_wopts wo = DSV4_TOKS_WOPTS_INIT;
    dsv4_toks_writer *w = NULL;
    dsv4_toks_vec back = DSV4_TOKS_VEC_INIT;
    dsv4_toks_info bi;
    dsv4_err err = DSV4_ERR_INIT;
    int fd = memfd_create("fuzz-out", MFD_CLOEXEC), rc;
    if (fd < 0)
        return;
    wo.format = fmt;
    wo.fingerprint = info->has_fingerprint ? info->fingerprint : NULL;
    wo.vocab_size = info->vocab_size;
    rc = dsv4_toks_writer_open(&w, fd, &wo, &err);
    FUZZ_ASSERT(rc == 0, "writer_open: %s", err.msg);
    rc = dsv4_toks_put_n(w, v->ids, v->n / 2, &err);
    for (size_t i = v->n / 2; !rc && i < v->n; i++)
        rc = dsv4_toks_put(w, v->ids[i], &err);
    if (!rc)
        rc = dsv4_toks_finish(w, &err);
    FUZZ_ASSERT(rc == 0, "writing: %s", err.msg);
    FUZZ_ASSERT(dsv4_toks_writer_count(w) == v->n, "writer count");
    dsv4_toks_writer_close(w);
    lseek(fd, 0, SEEK_SET);
    rc = read_ids(fd, 0, 0, 0, &back, &bi);
    FUZZ_ASSERT(rc == 0 && same(v, &back), "round trip (format %d): rc %d, %zu ids back of %zu", fmt, rc,
                back.n, v->n);
    if (fmt == DSV4_TOKS_BIN)
        FUZZ_ASSERT(bi.vocab_size == info->vocab_size && bi.has_fingerprint == info->has_fingerprint &&
                    !memcmp(bi.fingerprint, info->fingerprint, DSV4_TOKS_FP_BYTES), "header round trip");
    dsv4_toks_vec_release(&back);
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dsv4_toks_vec all = DSV4_TOKS_VEC_INIT;
    dsv4_toks_info info, hinfo;
    dsv4_err err = DSV4_ERR_INIT;
    size_t need = 0;
    int rc, rc_all, fd;

    rc = dsv4_toks_header_parse(data, size, &hinfo, &need, &err);
    FUZZ_CHECK_ERR(rc, err);
    FUZZ_ASSERT(rc != DSV4_E_TRUNCATED || need > size, "truncated but need %zu <= %zu", need, size);

    if ((fd = fuzz_memfd(data, size)) < 0)
        return 0;
    rc_all = read_ids(fd, 0, 0, 0, &all, &info);

    /* Other read sizes and a vocab limit: same ids up to the same error. */
    static const size_t caps[] = { 1, 3, 16 };
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        dsv4_toks_vec v = DSV4_TOKS_VEC_INIT;
        lseek(fd, 0, SEEK_SET);
        rc = read_ids(fd, 0, caps[c], 0, &v, NULL);
        FUZZ_ASSERT(rc == rc_all && same(&v, &all), "cap %zu: rc %d vs %d, %zu vs %zu ids", caps[c], rc, rc_all,
                    v.n, all.n);
        dsv4_toks_vec_release(&v);
    }
    {
        dsv4_toks_vec v = DSV4_TOKS_VEC_INIT;
        lseek(fd, 0, SEEK_SET);
        rc = read_ids(fd, 1000, 0, 5, &v, NULL);
        FUZZ_ASSERT(v.n <= 5 && v.n <= all.n && (!v.n || !memcmp(v.ids, all.ids, v.n * 4)), "limited read");
        for (size_t i = 0; i < v.n; i++)
            FUZZ_ASSERT(v.ids[i] < 1000, "id %u over the limit", v.ids[i]);
        dsv4_toks_vec_release(&v);
    }
    close(fd);

    /* A non-blocking pipe (the reader polls); the input fits in the pipe. */
    if (size <= 60000) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) == 0) {
            dsv4_toks_vec v = DSV4_TOKS_VEC_INIT;
            ssize_t k = size ? write(p[1], data, size) : 0;
            close(p[1]);
            if (k == (ssize_t)size) {
                fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
                rc = read_ids(p[0], 0, 0, 0, &v, NULL);
                FUZZ_ASSERT(rc == rc_all && same(&v, &all), "pipe: rc %d vs %d", rc, rc_all);
            }
            dsv4_toks_vec_release(&v);
            close(p[0]);
        }
    }

    if (!rc_all && all.n <= MAX_IDS) {
        roundtrip(&all, DSV4_TOKS_BIN, &info);
        roundtrip(&all, DSV4_TOKS_TEXT, &info);
    }
    dsv4_toks_vec_release(&all);
    return 0;
}
