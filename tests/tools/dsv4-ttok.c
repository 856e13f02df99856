/* dsv4-ttok — drive lib/tok.h for the tokenizer tests and benchmark.
 *
 *   dsv4-ttok encode TOKENIZER.json [raw] [no-added] < RECORDS
 *       one line of space-separated ids per record; exit 1 when a record
 *       does not round-trip (decode of its ids must give the record, with
 *       invalid UTF-8 replaced by U+FFFD unless `raw`)
 *   dsv4-ttok split TOKENIZER.json [raw] [no-added] < RECORDS
 *       the pieces of dsv4_tok_split, one line per record: the byte length
 *       of each piece, as LEN for text going to BPE, LEN:ID for an added token
 *   dsv4-ttok decode TOKENIZER.json [lossy] [skip] < RECORDS
 *       each record is a list of little-endian u32 ids; writes one record
 *       of decoded bytes per input record
 *   dsv4-ttok vocab TOKENIZER.json
 *       the record of dsv4_tok_decode([id], LOSSY) for every id in order
 *   dsv4-ttok stream TOKENIZER.json SEED COUNT
 *       COUNT random id sequences: the streaming decoder must give the
 *       one-shot decode for every flag combination; exit 1 otherwise
 *   dsv4-ttok bench TOKENIZER.json < RECORDS
 *       encode the records one call each, then as one text, single thread;
 *       prints "load: SECONDS", "one: SECONDS TOKENS" and
 *       "joined: SECONDS TOKENS BYTES"
 *
 * A record is a little-endian u32 byte count then the bytes. */
#include "buf.h"
#include "json.h"
#include "tok.h"
#include "tool.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct rec { char *p; size_t n; };

/* All records of stdin. */
static struct rec *read_records(size_t *count, dsv4_buf *all)
{
    char chunk[65536];
    size_t n, off = 0, nrec = 0, cap = 0;
    struct rec *r = NULL;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        dsv4_buf_append(all, chunk, n);
    if (all->oom)
        die("out of memory");
    while (off < all->len) {
        uint32_t len;
        if (all->len - off < 4 || all->len - off - 4 < (len = dsv4_le32_get(all->data + off)))
            die("truncated record %zu", nrec);
        if (nrec == cap) {
            cap = cap ? 2 * cap : 1024;
            if (!(r = realloc(r, cap * sizeof *r)))
                die("out of memory");
        }
        r[nrec].p = all->data + off + 4;
        r[nrec++].n = len;
        off += 4 + (size_t)len;
    }
    *count = nrec;
    return r;
}

static void put_record(const char *p, size_t n)
{
    unsigned char h[4];
    dsv4_le32_put(h, (uint32_t)n);
    fwrite(h, 1, 4, stdout);
    fwrite(p, 1, n, stdout);
}

static int has(int argc, char **argv, const char *word)
{
    for (int i = 3; i < argc; i++)
        if (!strcmp(argv[i], word))
            return 1;
    return 0;
}

static int cmd_encode(const dsv4_tok *t, unsigned flags)
{
    dsv4_buf all = DSV4_BUF_INIT, line = DSV4_BUF_INIT, dec = DSV4_BUF_INIT, want = DSV4_BUF_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    size_t n, bad = 0;
    struct rec *r = read_records(&n, &all);
    for (size_t i = 0; i < n; i++) {
        dsv4_tok_ids ids = DSV4_TOK_IDS_INIT;
        if (dsv4_tok_encode(t, r[i].p, r[i].n, flags, &ids, &err))
            die("record %zu: %s", i, err.msg);
        line.len = 0;
        for (size_t k = 0; k < ids.n; k++)
            dsv4_buf_printf(&line, k ? " %u" : "%u", ids.v[k]);
        dsv4_buf_putc(&line, '\n');
        fwrite(line.data, 1, line.len, stdout);
        /* round trip: raw bytes back, or the U+FFFD-substituted text */
        dec.len = want.len = 0;
        if (dsv4_tok_decode(t, ids.v, ids.n, 0, &dec, &err))
            die("record %zu: %s", i, err.msg);
        if (flags & DSV4_TOK_RAW_BYTES) {
            dsv4_buf_append(&want, r[i].p, r[i].n);
        } else {
            dsv4_tok_ids again = DSV4_TOK_IDS_INIT;
            /* decode gives the substituted text, whose encoding is the same */
            if (dsv4_tok_decode(t, ids.v, ids.n, DSV4_TOK_LOSSY, &want, &err) ||
                dsv4_tok_encode(t, want.data ? want.data : "", want.len, flags, &again, &err))
                die("record %zu: %s", i, err.msg);
            if (again.n != ids.n || (ids.n && memcmp(again.v, ids.v, ids.n * 4)))
                dec.len = (size_t)-1;
            dsv4_tok_ids_release(&again);
        }
        if (dec.len != want.len || (dec.len && memcmp(dec.data, want.data, dec.len))) {
            fprintf(stderr, "dsv4-ttok: record %zu does not round-trip\n", i);
            bad++;
        }
        dsv4_tok_ids_release(&ids);
    }
    dsv4_buf_release(&all); dsv4_buf_release(&line); dsv4_buf_release(&dec); dsv4_buf_release(&want);
    free(r);
    if (fflush(stdout))
        die("write error");
    return bad ? 1 : 0;
}

static int split_piece(void *ctx, const char *s, size_t n, int64_t id)
{
    dsv4_buf *line = ctx;
    dsv4_buf_printf(line, line->len ? " %zu" : "%zu", n);
    if (id >= 0)
        dsv4_buf_printf(line, ":%lld", (long long)id);
    return 0;
}

static int cmd_split(const dsv4_tok *t, unsigned flags)
{
    dsv4_buf all = DSV4_BUF_INIT, line = DSV4_BUF_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    size_t n;
    struct rec *r = read_records(&n, &all);
    for (size_t i = 0; i < n; i++) {
        line.len = 0;
        if (dsv4_tok_split(t, r[i].p, r[i].n, flags, split_piece, &line, &err))
            die("record %zu: %s", i, err.msg);
        dsv4_buf_putc(&line, '\n');
        fwrite(line.data, 1, line.len, stdout);
    }
    free(r);
    dsv4_buf_release(&all); dsv4_buf_release(&line);
    return fflush(stdout) ? 1 : 0;
}

static int cmd_decode(const dsv4_tok *t, unsigned flags)
{
    dsv4_buf all = DSV4_BUF_INIT, out = DSV4_BUF_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    size_t n;
    struct rec *r = read_records(&n, &all);
    uint32_t *ids = NULL;
    for (size_t i = 0; i < n; i++) {
        size_t k = r[i].n / 4;
        if (!(ids = realloc(ids, (k + 1) * 4)))
            die("out of memory");
        for (size_t j = 0; j < k; j++)
            ids[j] = dsv4_le32_get(r[i].p + 4 * j);
        out.len = 0;
        if (dsv4_tok_decode(t, ids, k, flags, &out, &err))
            die("record %zu: %s", i, err.msg);
        put_record(out.data, out.len);
    }
    free(ids); free(r);
    dsv4_buf_release(&all); dsv4_buf_release(&out);
    return fflush(stdout) ? 1 : 0;
}

static int cmd_vocab(const dsv4_tok *t)
{
    dsv4_buf out = DSV4_BUF_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    for (uint32_t id = 0; id < dsv4_tok_vocab_size(t); id++) {
        out.len = 0;
        if (dsv4_tok_decode(t, &id, 1, DSV4_TOK_LOSSY, &out, &err))
            die("id %u: %s", id, err.msg);
        put_record(out.data, out.len);
    }
    dsv4_buf_release(&out);
    return fflush(stdout) ? 1 : 0;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s += 0x9E3779B97F4A7C15ull;   /* splitmix64 */
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Ids whose bytes are not valid UTF-8 on their own (single high bytes,
 * fragments of multi-byte characters): the ones streaming must hold back. */
static uint32_t *partial_ids(const dsv4_tok *t, size_t *n)
{
    uint32_t v = (uint32_t)dsv4_tok_vocab_size(t), *p = malloc(v * 4);
    size_t k = 0, len;
    const char *b;
    if (!p)
        die("out of memory");
    for (uint32_t id = 0; id < v; id++)
        if ((b = dsv4_tok_bytes(t, id, &len)) && dsv4_utf8_valid_prefix(b, len) != len)
            p[k++] = id;
    *n = k;
    return p;
}

/* A random id: a partial one half the time, an added token one time in
 * eight (the last 1,300 ids), else any. */
static uint32_t random_id(const dsv4_tok *t, uint64_t *s, const uint32_t *part, size_t npart)
{
    uint32_t v = (uint32_t)dsv4_tok_vocab_size(t);
    uint64_t x = rng_next(s);
    if (x % 2 == 0 && npart)
        return part[(x >> 8) % npart];
    if (x % 8 == 1)
        return v - 1 - (uint32_t)((x >> 8) % 1300);
    return (uint32_t)((x >> 8) % v);
}

static int cmd_stream(const dsv4_tok *t, uint64_t seed, long count)
{
    static const unsigned fl[4] = { 0, DSV4_TOK_LOSSY, DSV4_TOK_SKIP_SPECIAL,
                                    DSV4_TOK_LOSSY | DSV4_TOK_SKIP_SPECIAL };
    dsv4_buf one = DSV4_BUF_INIT, str = DSV4_BUF_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    uint32_t ids[64];
    long bad = 0, checked = 0;
    size_t npart;
    uint32_t *part = partial_ids(t, &npart);
    for (long c = 0; c < count; c++) {
        size_t n = 1 + rng_next(&seed) % 64;
        for (size_t i = 0; i < n; i++)
            ids[i] = random_id(t, &seed, part, npart);
        for (int f = 0; f < 4; f++) {
            dsv4_tok_stream s;
            one.len = str.len = 0;
            if (dsv4_tok_decode(t, ids, n, fl[f], &one, &err))
                die("%s", err.msg);
            dsv4_tok_stream_init(&s, t, fl[f]);
            for (size_t i = 0; i < n; i++)
                if (dsv4_tok_stream_feed(&s, ids[i], &str, &err))
                    die("%s", err.msg);
            dsv4_tok_stream_finish(&s, &str);
            checked++;
            if (one.len != str.len || (one.len && memcmp(one.data, str.data, one.len))) {
                fprintf(stderr, "sequence %ld flags %u: stream differs from one-shot decode\n", c, fl[f]);
                bad++;
            }
        }
    }
    printf("%ld streams compared, %ld differ\n", checked, bad);
    dsv4_buf_release(&one); dsv4_buf_release(&str);
    free(part);
    return bad ? 1 : 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmd_bench(const dsv4_tok *t)
{
    dsv4_buf all = DSV4_BUF_INIT, joined = DSV4_BUF_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_tok_ids ids = DSV4_TOK_IDS_INIT;
    size_t n, tokens = 0;
    struct rec *r = read_records(&n, &all);
    double t0, best = 1e30;
    for (int rep = 0; rep < 3; rep++) {   /* best of three */
        tokens = 0;
        t0 = now();
        for (size_t i = 0; i < n; i++) {
            ids.n = 0;
            if (dsv4_tok_encode(t, r[i].p, r[i].n, 0, &ids, &err))
                die("%s", err.msg);
            tokens += ids.n;
        }
        if (now() - t0 < best)
            best = now() - t0;
    }
    printf("one: %.6f %zu\n", best, tokens);
    for (size_t i = 0; i < n; i++)
        dsv4_buf_append(&joined, r[i].p, r[i].n);
    best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        ids.n = 0;
        t0 = now();
        if (dsv4_tok_encode(t, joined.data, joined.len, 0, &ids, &err))
            die("%s", err.msg);
        if (now() - t0 < best)
            best = now() - t0;
    }
    printf("joined: %.6f %zu %zu\n", best, ids.n, joined.len);
    dsv4_tok_ids_release(&ids);
    dsv4_buf_release(&all); dsv4_buf_release(&joined);
    free(r);
    return 0;
}

int main(int argc, char **argv)
{
    dsv4_tok *t;
    dsv4_err err = DSV4_ERR_INIT;
    double t0 = now();
    int rc;
    if (argc < 3)
        die("usage: dsv4-ttok encode|split|decode|vocab|stream|bench TOKENIZER.json [...]");
    if (dsv4_tok_load_file(&t, argv[2], &err))
        die("%s", err.msg);
    if (!strcmp(argv[1], "bench"))
        printf("load: %.6f\n", now() - t0);
    if (!strcmp(argv[1], "encode"))
        rc = cmd_encode(t, (has(argc, argv, "raw") ? DSV4_TOK_RAW_BYTES : 0) |
                           (has(argc, argv, "no-added") ? DSV4_TOK_NO_ADDED : 0));
    else if (!strcmp(argv[1], "split"))
        rc = cmd_split(t, (has(argc, argv, "raw") ? DSV4_TOK_RAW_BYTES : 0) |
                          (has(argc, argv, "no-added") ? DSV4_TOK_NO_ADDED : 0));
    else if (!strcmp(argv[1], "decode"))
        rc = cmd_decode(t, (has(argc, argv, "lossy") ? DSV4_TOK_LOSSY : 0) |
                           (has(argc, argv, "skip") ? DSV4_TOK_SKIP_SPECIAL : 0));
    else if (!strcmp(argv[1], "vocab"))
        rc = cmd_vocab(t);
    else if (!strcmp(argv[1], "stream") && argc == 5)
        rc = cmd_stream(t, strtoull(argv[3], NULL, 10), strtol(argv[4], NULL, 10));
    else if (!strcmp(argv[1], "bench"))
        rc = cmd_bench(t);
    else
        die("unknown command or arguments '%s'", argv[1]);
    dsv4_tok_free(t);
    return rc;
}
