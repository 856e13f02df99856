/* .dsv4 model file: writer output checked field by field against
 * dsv4-model(5), reader round trip, fingerprint, verify, and every kind of
 * damage (flipped bytes, truncation, unknown versions, a hostile directory). */
#include "test.h"
#include "buf.h"
#include "convert.h"
#include "model.h"
#include "safetensors.h"
#include "version.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR "tests/out/unit-model"

/* ---- a small model -------------------------------------------------------- */

enum { NT = 11 };

static const struct { const char *name; dsv4_dtype dt; int ndim; int64_t shape[4]; } specs[NT] = {
    { "embed.weight", DSV4_DT_BF16, 2, { 16, 8 } },
    { "layers.0.attn.wkv.weight", DSV4_DT_F8_E4M3, 2, { 5, 7 } },
    { "layers.0.attn.wkv.scale", DSV4_DT_F8_E8M0, 2, { 1, 1 } },
    { "layers.0.ffn.experts.0.w1.weight", DSV4_DT_I8, 2, { 4, 6 } },
    { "big", DSV4_DT_F32, 1, { 3000 } },                 /* spans three pages */
    { "layers.0.ffn.gate.tid2eid", DSV4_DT_I64, 2, { 3, 2 } },
    { "scalar", DSV4_DT_F32, 0, { 0 } },
    { "empty", DSV4_DT_F16, 2, { 0, 5 } },
    { "u8.4d", DSV4_DT_U8, 4, { 2, 1, 3, 2 } },
    { "i32", DSV4_DT_I32, 1, { 7 } },
    { "n\xc3\xa4me.\xe2\x82\xac", DSV4_DT_F32, 1, { 1 } },
};

struct model_src {
    dsv4_tensor t[NT];
    const dsv4_tensor *v[NT];
    uint8_t *data[NT];
    char *cfg;
    size_t cfg_len;
    dsv4_blob blobs[5];
    size_t nblobs;
};

static uint8_t binary_blob[300];
static const char tokenizer_blob[] = "{\"model\": {\"type\": \"BPE\"}}";

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *p;
    long n;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    if (p)
        p[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return p;
}

static int write_all(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(p, 1, n, f) == n;
    if (f && fclose(f))
        ok = 0;
    return ok;
}

/* The real config of the one-layer SWA fixture, and random tensor data. */
static void src_init(struct model_src *s)
{
    char path[1024];
    uint64_t seed = 42;
    memset(s, 0, sizeof *s);
    snprintf(path, sizeof path, "%s/tiny-v4-swa/config.json", test_fixtures());
    s->cfg = read_all(path, &s->cfg_len);
    if (!s->cfg) {
        fprintf(stderr, "  cannot read %s\n", path);
        exit(1);
    }
    for (int i = 0; i < NT; i++) {
        dsv4_tensor *t = &s->t[i];
        t->name = specs[i].name;
        t->dtype = specs[i].dt;
        t->ndim = specs[i].ndim;
        memcpy(t->shape, specs[i].shape, sizeof t->shape);
        t->nbytes = (uint64_t)dsv4_tensor_numel(t) * dsv4_dtype_size(t->dtype);
        s->data[i] = malloc(t->nbytes ? t->nbytes : 1);
        for (uint64_t b = 0; b < t->nbytes; b++)
            s->data[i][b] = (uint8_t)rng(&seed);
        t->data = s->data[i];
        s->v[i] = t;
    }
    for (size_t b = 0; b < sizeof binary_blob; b++)
        binary_blob[b] = (uint8_t)(b % 7 ? b * 13 : 0);
    s->blobs[0] = (dsv4_blob){ "config.json", s->cfg, s->cfg_len };
    s->blobs[1] = (dsv4_blob){ "tokenizer.json", tokenizer_blob, sizeof tokenizer_blob - 1 };
    s->blobs[2] = (dsv4_blob){ "empty.bin", "", 0 };
    s->blobs[3] = (dsv4_blob){ "binary", binary_blob, sizeof binary_blob };
    s->blobs[4] = (dsv4_blob){ "a-name-of-exactly-39-bytes-0123456789ab", "x", 1 };
    s->nblobs = 5;
}

static void src_free(struct model_src *s)
{
    for (int i = 0; i < NT; i++)
        free(s->data[i]);
    free(s->cfg);
}

/* A fresh temp file name under DIR (mkstemp; the file exists, empty). */
static void temp_path(char *out, size_t cap)
{
    int fd;
    snprintf(out, cap, DIR "/m.XXXXXX");
    fd = mkstemp(out);
    if (fd < 0) {
        perror(out);
        exit(1);
    }
    close(fd);
}

static int write_model(const char *path, const dsv4_tensor *const *t, size_t n, const dsv4_blob *b, size_t nb,
                       uint8_t fp[32])
{
    dsv4_err err = DSV4_ERR_INIT;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644), rc;
    if (fd < 0)
        return -1;
    rc = dsv4_model_write(fd, t, n, b, nb, NULL, NULL, NULL, NULL, fp, &err);
    close(fd);
    if (rc)
        fprintf(stderr, "  dsv4_model_write: %s\n", err.msg);
    return rc;
}

static int write_src(const char *path, struct model_src *s, uint8_t fp[32])
{
    return write_model(path, s->v, NT, s->blobs, s->nblobs, fp);
}

/* ---- reading the format as dsv4-model(5) describes it ---------------------- */

struct entry {
    char name[1100];
    int dtype, ndim;
    uint64_t shape[4], offset, nbytes;
    const uint8_t *hash;
};

static void blake(uint8_t out[32], const void *p, size_t n)
{
    crypto_generichash(out, 32, p, n, NULL, 0);
}

/* Parse the directory of file image f (no validation beyond bounds). */
static int parse_dir(const uint8_t *f, size_t len, struct entry *e, size_t cap)
{
    uint64_t p = dsv4_le64_get(f + 88), n = dsv4_le64_get(f + 80);
    if (n > cap)
        return -1;
    for (uint64_t i = 0; i < n; i++) {
        size_t nl;
        if (p + 88 > len)
            return -1;
        nl = dsv4_le16_get(f + p);
        if (nl >= sizeof e[i].name || p + 88 + nl > len)
            return -1;
        memcpy(e[i].name, f + p + 88, nl);
        e[i].name[nl] = 0;
        e[i].dtype = f[p + 2];
        e[i].ndim = f[p + 3];
        for (int d = 0; d < 4; d++)
            e[i].shape[d] = dsv4_le64_get(f + p + 8 + 8 * d);
        e[i].offset = dsv4_le64_get(f + p + 40);
        e[i].nbytes = dsv4_le64_get(f + p + 48);
        e[i].hash = f + p + 56;
        p += (88 + nl + 7) / 8 * 8;
    }
    return (int)n;
}

/* Recompute meta_hash (when the region lies inside the image) and
 * header_hash after editing image f of len bytes. */
static void rehash(uint8_t *f, size_t len)
{
    uint64_t mo = dsv4_le64_get(f + 40), mb = dsv4_le64_get(f + 48);
    if (mo <= len && mb <= len - mo)
        blake(f + 136, f + mo, (size_t)mb);
    blake(f + 224, f, 224);
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* The fingerprint computed from the man page, independently of model.c. */
static void spec_fingerprint(uint8_t out[32], const char *cfg, size_t cfg_len, const dsv4_tensor *const *t, size_t n)
{
    crypto_generichash_state st;
    uint8_t tmp[8], h[32];
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)"dsv4-model-fingerprint-v1", 26);   /* with its NUL */
    dsv4_le64_put(tmp, cfg_len);
    crypto_generichash_update(&st, tmp, 8);
    crypto_generichash_update(&st, (const uint8_t *)cfg, cfg_len);
    for (size_t i = 0; i < n; i++) {
        crypto_generichash_update(&st, (const uint8_t *)t[i]->name, strlen(t[i]->name) + 1);
        tmp[0] = (uint8_t)t[i]->dtype;
        tmp[1] = (uint8_t)t[i]->ndim;
        crypto_generichash_update(&st, tmp, 2);
        for (int d = 0; d < t[i]->ndim; d++) {
            dsv4_le64_put(tmp, (uint64_t)t[i]->shape[d]);
            crypto_generichash_update(&st, tmp, 8);
        }
        blake(h, t[i]->data, (size_t)t[i]->nbytes);
        crypto_generichash_update(&st, h, 32);
    }
    crypto_generichash_final(&st, out, 32);
}

/* open must fail with code `code` (0: any) and a message naming the path and
 * containing `what`. */
static int open_fails(const char *path, int code, const char *what)
{
    dsv4_model *m = (dsv4_model *)1;
    dsv4_err err = DSV4_ERR_INIT;
    int rc = dsv4_model_open(&m, path, &err);
    if (rc >= 0 || m != NULL || (code && rc != code) || !strstr(err.msg, path) || !strstr(err.msg, what)) {
        fprintf(stderr, "  %s: rc %d msg '%s' (wanted %d, '%s')\n", path, rc, err.msg, code, what);
        if (rc == 0)
            dsv4_model_close(m);
        return 0;
    }
    return 1;
}

struct reports {
    int n;
    char subj[8][64], msg[8][128];
};

static void on_report(void *ctx, const char *subject, const char *msg)
{
    struct reports *r = ctx;
    if (r->n < 8) {
        snprintf(r->subj[r->n], sizeof r->subj[0], "%s", subject);
        snprintf(r->msg[r->n], sizeof r->msg[0], "%s", msg);
    }
    r->n++;
}

struct prog {
    uint64_t last_done, total;
    int calls, backwards;
};

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    struct prog *p = ctx;
    if (done < p->last_done)
        p->backwards = 1;
    p->last_done = done;
    p->total = total;
    p->calls++;
}

/* ---- tests ------------------------------------------------------------------ */

TEST(layout_matches_the_spec)
{
    struct model_src s;
    char path[256];
    uint8_t fp[32], h[32], *f;
    size_t len;
    struct entry e[NT];
    uint64_t meta_off, meta_bytes, data_off, prev_end;
    src_init(&s);
    temp_path(path, sizeof path);
    CHECK(write_src(path, &s, fp) == 0);
    f = (uint8_t *)read_all(path, &len);
    CHECK(f && len >= 4096);
    if (!f || len < 4096)
        goto out;
    CHECK(!memcmp(f, "\x89WT4\r\n\x1a\n", 8));
    CHECK_EQ_INT(dsv4_le16_get(f + 8), 1);
    CHECK_EQ_INT(dsv4_le16_get(f + 10), 0);
    CHECK_EQ_INT(dsv4_le32_get(f + 12), 256);
    CHECK_EQ_INT(dsv4_le64_get(f + 16), 0);
    CHECK_EQ_INT(dsv4_le64_get(f + 24), 0);
    CHECK_EQ_INT(dsv4_le64_get(f + 32), len);
    meta_off = dsv4_le64_get(f + 40);
    meta_bytes = dsv4_le64_get(f + 48);
    data_off = dsv4_le64_get(f + 56);
    CHECK_EQ_INT(meta_off, 4096);
    CHECK(data_off % 4096 == 0 && data_off >= meta_off + meta_bytes && data_off < meta_off + meta_bytes + 4096);
    CHECK_EQ_INT(dsv4_le64_get(f + 64), len - data_off);
    CHECK_EQ_INT(dsv4_le32_get(f + 72), s.nblobs);
    CHECK_EQ_INT(dsv4_le32_get(f + 76), 4096);
    CHECK_EQ_INT(dsv4_le64_get(f + 80), NT);
    CHECK_EQ_INT(dsv4_le64_get(f + 88) + dsv4_le64_get(f + 96), meta_off + meta_bytes);   /* directory ends it */
    CHECK(!memcmp(f + 104, fp, 32));
    blake(h, f + meta_off, (size_t)meta_bytes);
    CHECK(!memcmp(f + 136, h, 32));
    CHECK(all_zero(f + 168, 56));
    blake(h, f, 224);
    CHECK(!memcmp(f + 224, h, 32));
    CHECK(all_zero(f + 256, 4096 - 256));
    CHECK(all_zero(f + meta_off + meta_bytes, (size_t)(data_off - meta_off - meta_bytes)));
    /* blob table and blobs */
    {
        uint64_t expect_off = meta_off + 64 * s.nblobs;
        for (size_t b = 0; b < s.nblobs; b++) {
            const uint8_t *r = f + meta_off + 64 * b;
            CHECK(!strncmp((const char *)r, s.blobs[b].name, 40) && all_zero(r + strlen(s.blobs[b].name), 40 - strlen(s.blobs[b].name)));
            CHECK_EQ_INT(dsv4_le64_get(r + 40), expect_off);
            CHECK_EQ_INT(dsv4_le64_get(r + 48), s.blobs[b].len);
            CHECK_EQ_INT(dsv4_le64_get(r + 56), 0);
            CHECK(!memcmp(f + expect_off, s.blobs[b].data, s.blobs[b].len));
            expect_off += (s.blobs[b].len + 7) / 8 * 8;
        }
        CHECK_EQ_INT(dsv4_le64_get(f + 88), expect_off);
    }
    /* directory and data */
    CHECK_EQ_INT(parse_dir(f, len, e, NT), NT);
    prev_end = data_off;
    for (int i = 0; i < NT; i++) {
        CHECK_STR(e[i].name, specs[i].name);
        CHECK_EQ_INT(e[i].dtype, specs[i].dt);
        CHECK_EQ_INT(e[i].ndim, specs[i].ndim);
        for (int d = 0; d < 4; d++)
            CHECK_EQ_INT(e[i].shape[d], d < specs[i].ndim ? specs[i].shape[d] : 0);
        CHECK(e[i].offset % 4096 == 0 && e[i].offset >= prev_end && e[i].offset < prev_end + 4096);
        CHECK_EQ_INT(e[i].nbytes, s.t[i].nbytes);
        if (e[i].offset < prev_end || e[i].offset > len || e[i].nbytes != s.t[i].nbytes ||
            s.t[i].nbytes > len - e[i].offset)
            break;
        CHECK(all_zero(f + prev_end, (size_t)(e[i].offset - prev_end)));
        CHECK(!memcmp(f + e[i].offset, s.data[i], (size_t)s.t[i].nbytes));
        blake(h, s.data[i], (size_t)s.t[i].nbytes);
        CHECK(!memcmp(e[i].hash, h, 32));
        prev_end = e[i].offset + e[i].nbytes;
    }
    CHECK_EQ_INT(prev_end, len);   /* the file ends with the last tensor */
    spec_fingerprint(h, s.cfg, s.cfg_len, s.v, NT);
    CHECK(!memcmp(h, fp, 32));
out:
    free(f);
    unlink(path);
    src_free(&s);
}

TEST(open_and_read_back)
{
    struct model_src s;
    char path[256], hex[65], want_hex[65];
    uint8_t fp[32];
    dsv4_model *m = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_config cfg;
    struct stat st;
    int major = 0, minor = -1;
    src_init(&s);
    temp_path(path, sizeof path);
    CHECK(write_src(path, &s, fp) == 0);
    CHECK(dsv4_model_open(&m, path, &err) == 0);
    if (!m) {
        fprintf(stderr, "  %s\n", err.msg);
        goto out;
    }
    CHECK_EQ_INT(dsv4_model_count(m), NT);
    for (int i = 0; i < NT; i++) {
        const dsv4_tensor *t = dsv4_model_tensor(m, (size_t)i), *f = dsv4_model_find(m, specs[i].name);
        CHECK(t && f == t);
        if (!t)
            continue;
        CHECK_STR(t->name, specs[i].name);
        CHECK(t->dtype == specs[i].dt && t->ndim == specs[i].ndim && t->nbytes == s.t[i].nbytes);
        for (int d = 0; d < t->ndim; d++)
            CHECK_EQ_INT(t->shape[d], specs[i].shape[d]);
        CHECK(!memcmp(t->data, s.data[i], (size_t)t->nbytes));
        CHECK((uintptr_t)t->data % 4096 == 0);      /* mapped, page-aligned */
        CHECK(t->data != s.data[i]);
    }
    CHECK(dsv4_model_tensor(m, NT) == NULL);
    CHECK(dsv4_model_find(m, "nope") == NULL);
    CHECK(dsv4_model_find(m, "embed") == NULL);
    CHECK(dsv4_model_find(m, "embed.weightx") == NULL);
    CHECK(dsv4_model_find(m, "") == NULL);
    /* blobs, in table order */
    CHECK_EQ_INT(dsv4_model_blob_count(m), s.nblobs);
    for (size_t b = 0; b < s.nblobs; b++) {
        size_t len = 99;
        const char *p = dsv4_model_blob(m, s.blobs[b].name, &len);
        CHECK_STR(dsv4_model_blob_name(m, b), s.blobs[b].name);
        CHECK(p && len == s.blobs[b].len && !memcmp(p, s.blobs[b].data, len));
    }
    CHECK(dsv4_model_blob_name(m, s.nblobs) == NULL);
    {
        size_t len = 99;
        CHECK(dsv4_model_blob(m, "generation_config.json", &len) == NULL && len == 0);
        CHECK(dsv4_model_blob(m, "config.jso", NULL) == NULL);
    }
    /* config: parsed from the embedded config.json */
    CHECK(dsv4_config_parse(&cfg, s.cfg, s.cfg_len, &err) == 0);
    CHECK(!memcmp(dsv4_model_config(m), &cfg, sizeof cfg));
    CHECK_EQ_INT(dsv4_model_config(m)->dim, 128);
    CHECK_EQ_INT(dsv4_model_config(m)->n_layers, 1);
    /* identity */
    CHECK(!memcmp(dsv4_model_fingerprint(m), fp, 32));
    dsv4_model_fingerprint_hex(m, hex);
    for (int i = 0; i < 32; i++)
        sprintf(want_hex + 2 * i, "%02x", fp[i]);
    CHECK_STR(hex, want_hex);
    dsv4_model_version(m, &major, &minor);
    CHECK(major == 1 && minor == 0);
    CHECK(stat(path, &st) == 0 && dsv4_model_file_bytes(m) == (uint64_t)st.st_size);
    CHECK_STR(dsv4_model_path(m), path);
    dsv4_model_close(m);
    dsv4_model_close(NULL);
out:
    unlink(path);
    src_free(&s);
}

TEST(fingerprint)
{
    struct model_src s;
    char p1[256], p2[256];
    uint8_t fp[32], fp2[32], spec[32];
    size_t l1, l2;
    char *f1, *f2;
    src_init(&s);
    temp_path(p1, sizeof p1);
    temp_path(p2, sizeof p2);
    CHECK(write_src(p1, &s, fp) == 0);
    /* stable: the same content gives the same file, byte for byte */
    CHECK(write_src(p2, &s, fp2) == 0);
    CHECK(!memcmp(fp, fp2, 32));
    f1 = read_all(p1, &l1);
    f2 = read_all(p2, &l2);
    CHECK(f1 && f2 && l1 == l2 && !memcmp(f1, f2, l1));
    free(f1);
    free(f2);
    /* independent of blob order and of blobs other than config.json */
    {
        dsv4_blob b[2] = { { "other", "zz", 2 }, s.blobs[0] };
        CHECK(write_model(p2, s.v, NT, b, 2, fp2) == 0);
        CHECK(!memcmp(fp, fp2, 32));
    }
    /* changes with a tensor's data (one bit), name, shape, dtype, order; with config.json */
    s.data[4][5000] ^= 0x10;
    CHECK(write_src(p2, &s, fp2) == 0);
    CHECK(memcmp(fp, fp2, 32) != 0);
    spec_fingerprint(spec, s.cfg, s.cfg_len, s.v, NT);
    CHECK(!memcmp(spec, fp2, 32));
    s.data[4][5000] ^= 0x10;
    CHECK(write_src(p2, &s, fp2) == 0 && !memcmp(fp, fp2, 32));   /* and back */
    s.t[9].name = "i33";
    CHECK(write_src(p2, &s, fp2) == 0 && memcmp(fp, fp2, 32) != 0);
    s.t[9].name = specs[9].name;
    s.t[1].shape[0] = 7;
    s.t[1].shape[1] = 5;
    CHECK(write_src(p2, &s, fp2) == 0 && memcmp(fp, fp2, 32) != 0);
    s.t[1].shape[0] = 5;
    s.t[1].shape[1] = 7;
    s.t[3].dtype = DSV4_DT_U8;
    CHECK(write_src(p2, &s, fp2) == 0 && memcmp(fp, fp2, 32) != 0);
    s.t[3].dtype = DSV4_DT_I8;
    {
        const dsv4_tensor *sw = s.v[0];
        s.v[0] = s.v[1];
        s.v[1] = sw;
        CHECK(write_src(p2, &s, fp2) == 0 && memcmp(fp, fp2, 32) != 0);
        s.v[1] = s.v[0];
        s.v[0] = sw;
    }
    {
        char *cfg2 = malloc(s.cfg_len + 2);
        memcpy(cfg2, s.cfg, s.cfg_len);
        cfg2[s.cfg_len] = '\n';
        s.blobs[0].data = cfg2;
        s.blobs[0].len = s.cfg_len + 1;
        CHECK(write_src(p2, &s, fp2) == 0 && memcmp(fp, fp2, 32) != 0);
        s.blobs[0].data = s.cfg;
        s.blobs[0].len = s.cfg_len;
        free(cfg2);
    }
    CHECK(write_src(p2, &s, fp2) == 0 && !memcmp(fp, fp2, 32));
    unlink(p1);
    unlink(p2);
    src_free(&s);
}

TEST(verify)
{
    struct model_src s;
    char path[256];
    dsv4_model *m = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    struct reports r;
    struct prog pg;
    uint8_t *f;
    size_t len;
    struct entry e[NT];
    uint64_t total = 0;
    src_init(&s);
    temp_path(path, sizeof path);
    CHECK(write_src(path, &s, NULL) == 0);
    for (int i = 0; i < NT; i++)
        total += s.t[i].nbytes;
    /* intact: no mismatch, progress reaches the total */
    memset(&r, 0, sizeof r);
    memset(&pg, 0, sizeof pg);
    CHECK(dsv4_model_open(&m, path, &err) == 0);
    CHECK(m && dsv4_model_verify(m, on_report, &r, on_progress, &pg, &err) == 0);
    CHECK_EQ_INT(r.n, 0);
    CHECK(pg.calls > 0 && !pg.backwards && pg.last_done == total && pg.total == total);
    CHECK(m && dsv4_model_verify(m, NULL, NULL, NULL, NULL, &err) == 0);
    dsv4_model_close(m);
    m = NULL;

    f = (uint8_t *)read_all(path, &len);
    CHECK(f && parse_dir(f, len, e, NT) == NT);
    if (!f)
        goto out;
    /* one flipped bit in "big": opens (data is not hashed on open), verify names it */
    f[e[4].offset + 7777] ^= 0x04;
    CHECK(write_all(path, f, len));
    memset(&r, 0, sizeof r);
    CHECK(dsv4_model_open(&m, path, &err) == 0);
    CHECK(m && dsv4_model_verify(m, on_report, &r, NULL, NULL, &err) == 1);
    CHECK_EQ_INT(r.n, 1);
    CHECK_STR(r.subj[0], "big");
    CHECK(strstr(r.msg[0], "checksum") != NULL);
    CHECK(m && dsv4_model_verify(m, NULL, NULL, NULL, NULL, &err) == 1);   /* no callback: still counted */
    dsv4_model_close(m);
    m = NULL;
    /* two more: the first byte of the first tensor, the last byte of the last non-empty one */
    f[e[0].offset] ^= 0x80;
    f[e[10].offset + e[10].nbytes - 1] ^= 0x01;
    CHECK(write_all(path, f, len));
    memset(&r, 0, sizeof r);
    CHECK(dsv4_model_open(&m, path, &err) == 0);
    CHECK(m && dsv4_model_verify(m, on_report, &r, NULL, NULL, &err) == 3);
    CHECK_EQ_INT(r.n, 3);
    CHECK_STR(r.subj[0], "embed.weight");
    CHECK_STR(r.subj[1], "big");
    CHECK_STR(r.subj[2], specs[10].name);
    dsv4_model_close(m);
out:
    free(f);
    unlink(path);
    src_free(&s);
}

TEST(damaged_header_and_metadata)
{
    struct model_src s;
    char path[256], bad[256];
    uint8_t *f;
    size_t len;
    uint64_t meta_bytes;
    int fails = 0, tried = 0;
    src_init(&s);
    temp_path(path, sizeof path);
    temp_path(bad, sizeof bad);
    CHECK(write_src(path, &s, NULL) == 0);
    f = (uint8_t *)read_all(path, &len);
    if (!f)
        goto out;
    /* every byte of the header's defined part, two different flips each */
    for (int off = 0; off < 256; off++) {
        for (int k = 0; k < 2; k++) {
            uint8_t mask = k ? 0x80 : 0x01;
            const char *what = off < 8 ? "signature" : off < 10 ? "version" : "header checksum";
            int code = off < 8 ? DSV4_E_FORMAT : off < 10 ? DSV4_E_VERSION : DSV4_E_CHECKSUM;
            f[off] ^= mask;
            CHECK(write_all(bad, f, len));
            tried++;
            if (open_fails(bad, code, what))
                fails++;
            else
                fprintf(stderr, "  (header byte %d ^ 0x%02x)\n", off, mask);
            f[off] ^= mask;
        }
    }
    CHECK_EQ_INT(fails, tried);
    /* every byte of the metadata region: blob table, blobs, directory */
    meta_bytes = dsv4_le64_get(f + 48);
    CHECK(meta_bytes > 64 * s.nblobs + NT * 88);
    fails = tried = 0;
    for (uint64_t off = 4096; off < 4096 + meta_bytes; off++) {
        f[off] ^= 0x20;
        CHECK(write_all(bad, f, len));
        tried++;
        if (open_fails(bad, DSV4_E_CHECKSUM, "metadata checksum mismatch"))
            fails++;
        else
            fprintf(stderr, "  (metadata byte %llu)\n", (unsigned long long)off);
        f[off] ^= 0x20;
    }
    CHECK_EQ_INT(fails, tried);
    /* the intact image still opens (the flips were undone) */
    {
        dsv4_model *m = NULL;
        dsv4_err err = DSV4_ERR_INIT;
        CHECK(write_all(bad, f, len));
        CHECK(dsv4_model_open(&m, bad, &err) == 0);
        dsv4_model_close(m);
    }
out:
    free(f);
    unlink(path);
    unlink(bad);
    src_free(&s);
}

TEST(truncated_and_extended)
{
    struct model_src s;
    char path[256], bad[256];
    uint8_t *f;
    size_t len;
    uint64_t data_off;
    src_init(&s);
    temp_path(path, sizeof path);
    temp_path(bad, sizeof bad);
    CHECK(write_src(path, &s, NULL) == 0);
    f = (uint8_t *)read_all(path, &len);
    if (!f)
        goto out;
    data_off = dsv4_le64_get(f + 56);
    {
        size_t cut[] = { len - 1, len - 4096, (size_t)data_off + 1, (size_t)data_off, 4096 + 100, 4096 };
        for (size_t k = 0; k < sizeof cut / sizeof cut[0]; k++) {
            CHECK(write_all(bad, f, cut[k]));
            if (!open_fails(bad, DSV4_E_TRUNCATED, "truncated"))
                fprintf(stderr, "  (cut to %zu of %zu bytes)\n", cut[k], len);
        }
    }
    {
        size_t cut[] = { 4095, 256, 100, 8, 7, 1, 0 };
        for (size_t k = 0; k < sizeof cut / sizeof cut[0]; k++) {
            CHECK(write_all(bad, f, cut[k]));
            if (!open_fails(bad, 0, ""))
                fprintf(stderr, "  (cut to %zu bytes)\n", cut[k]);
        }
    }
    /* a byte appended */
    {
        uint8_t *g = malloc(len + 1);
        memcpy(g, f, len);
        g[len] = 0;
        CHECK(write_all(bad, g, len + 1));
        CHECK(open_fails(bad, DSV4_E_FORMAT, "header says"));
        free(g);
    }
    /* not a model file at all */
    {
        static const char st[] = "\x10\0\0\0\0\0\0\0{\"a\":1}         ";
        CHECK(write_all(bad, st, sizeof st - 1));
        CHECK(open_fails(bad, DSV4_E_FORMAT, "safetensors"));
        CHECK(write_all(bad, "hello, world, this is text", 26));
        CHECK(open_fails(bad, DSV4_E_FORMAT, "signature"));
        unlink(bad);
        CHECK(open_fails(bad, 0, "cannot open"));
    }
out:
    free(f);
    unlink(path);
    unlink(bad);
    src_free(&s);
}

TEST(versions)
{
    struct model_src s;
    char path[256], bad[256];
    uint8_t *f, keep[256];
    size_t len;
    dsv4_model *m = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    int major, minor;
    src_init(&s);
    temp_path(path, sizeof path);
    temp_path(bad, sizeof bad);
    CHECK(write_src(path, &s, NULL) == 0);
    f = (uint8_t *)read_all(path, &len);
    if (!f)
        goto out;
    memcpy(keep, f, 256);
    /* unknown majors are refused before anything else is trusted */
    for (int k = 0; k < 3; k++) {
        static const uint16_t majors[] = { 2, 0, 65535 };
        char what[48];
        dsv4_le16_put(f + 8, majors[k]);
        CHECK(write_all(bad, f, len));
        snprintf(what, sizeof what, "version %u.0 is not supported", majors[k]);
        CHECK(open_fails(bad, DSV4_E_VERSION, what));
        rehash(f, len);   /* with a consistent header too */
        CHECK(write_all(bad, f, len));
        CHECK(open_fails(bad, DSV4_E_VERSION, what));
        memcpy(f, keep, 256);
    }
    /* a later minor version of major 1 is read */
    dsv4_le16_put(f + 10, 7);
    rehash(f, len);
    CHECK(write_all(bad, f, len));
    CHECK(dsv4_model_open(&m, bad, &err) == 0);
    if (m) {
        dsv4_model_version(m, &major, &minor);
        CHECK(major == 1 && minor == 7);
        CHECK_EQ_INT(dsv4_model_count(m), NT);
        dsv4_model_close(m);
        m = NULL;
    }
    memcpy(f, keep, 256);
    /* compat feature bits and reserved header fields are ignored ... */
    dsv4_le64_put(f + 24, 0x5);
    f[200] = 0xab;
    rehash(f, len);
    CHECK(write_all(bad, f, len));
    CHECK(dsv4_model_open(&m, bad, &err) == 0);
    dsv4_model_close(m);
    m = NULL;
    memcpy(f, keep, 256);
    /* ... incompat ones are not */
    dsv4_le64_put(f + 16, 0x2);   /* 0x1 (Q2/Q3 tensors) is known */
    rehash(f, len);
    CHECK(write_all(bad, f, len));
    CHECK(open_fails(bad, DSV4_E_VERSION, "incompatible features"));
out:
    free(f);
    unlink(path);
    unlink(bad);
    src_free(&s);
}

/* Directory entries that are wrong although every checksum matches. */
TEST(hostile_directory)
{
    struct model_src s;
    char path[256], bad[256];
    uint8_t *f;
    size_t len;
    uint64_t d0;
    src_init(&s);
    temp_path(path, sizeof path);
    temp_path(bad, sizeof bad);
    CHECK(write_src(path, &s, NULL) == 0);
    f = (uint8_t *)read_all(path, &len);
    if (!f)
        goto out;
    d0 = dsv4_le64_get(f + 88);   /* first entry: embed.weight */
#define EDIT(stmt, code, what) do { \
        uint8_t *g = malloc(len); memcpy(g, f, len); { uint8_t *x = g; (void)x; stmt; } rehash(g, len); \
        CHECK(write_all(bad, g, len)); CHECK(open_fails(bad, code, what)); free(g); } while (0)
    EDIT(x[d0 + 2] = 99, DSV4_E_FORMAT, "unknown dtype");
    EDIT(x[d0 + 2] = 0, DSV4_E_FORMAT, "unknown dtype");
    EDIT(x[d0 + 3] = 5, DSV4_E_FORMAT, "rank");
    EDIT(dsv4_le64_put(x + d0 + 48, 255), DSV4_E_FORMAT, "do not match its shape");
    EDIT(dsv4_le64_put(x + d0 + 8, 1ull << 41), DSV4_E_FORMAT, "absurd shape");
    EDIT(dsv4_le64_put(x + d0 + 40, len), DSV4_E_FORMAT, "outside the data region");
    EDIT(dsv4_le64_put(x + d0 + 40, 4096), DSV4_E_FORMAT, "outside the data region");
    EDIT(dsv4_le64_put(x + d0 + 40, dsv4_le64_get(x + d0 + 40) + 8), DSV4_E_FORMAT, "outside the data region");
    EDIT(dsv4_le16_put(x + d0, 0), DSV4_E_FORMAT, "name length");
    EDIT(dsv4_le16_put(x + d0, 60000), DSV4_E_FORMAT, "name length");
    /* same-shape edits pass the entry checks but not the fingerprint */
    EDIT(x[d0 + 88] = 'E', DSV4_E_CHECKSUM, "fingerprint");
    EDIT(x[d0 + 56] ^= 1, DSV4_E_CHECKSUM, "fingerprint");
    EDIT((dsv4_le64_put(x + d0 + 8, 8), dsv4_le64_put(x + d0 + 16, 16)), DSV4_E_CHECKSUM, "fingerprint");
    EDIT(x[104] ^= 1, DSV4_E_CHECKSUM, "fingerprint");
    /* header offsets */
    EDIT(dsv4_le64_put(x + 48, len), DSV4_E_FORMAT, "inconsistent section offsets");
    EDIT(dsv4_le64_put(x + 80, 1000000), DSV4_E_FORMAT, "inconsistent section offsets");
    EDIT(dsv4_le32_put(x + 72, 1000000), DSV4_E_FORMAT, "inconsistent section offsets");
    EDIT(dsv4_le64_put(x + 88, 100), DSV4_E_FORMAT, "inconsistent section offsets");
    /* blobs */
    EDIT(dsv4_le64_put(x + 4096 + 40, len), DSV4_E_FORMAT, "outside the metadata region");
    EDIT(memcpy(x + 4096, "konfig.json", 11), DSV4_E_FORMAT, "no config.json");
#undef EDIT
out:
    free(f);
    unlink(path);
    unlink(bad);
    src_free(&s);
}

TEST(writer_and_content_errors)
{
    struct model_src s;
    char path[256];
    uint8_t fp[32];
    dsv4_err err = DSV4_ERR_INIT;
    int fd;
    src_init(&s);
    temp_path(path, sizeof path);
    fd = open(path, O_RDWR | O_TRUNC);
    /* refused by the writer */
    CHECK(dsv4_model_write(fd, s.v, NT, s.blobs + 1, s.nblobs - 1, NULL, NULL, NULL, NULL, fp, &err) ==
          DSV4_E_INVALID && strstr(err.msg, "config.json"));
    {
        dsv4_blob b[2] = { s.blobs[0], { "a-name-of-exactly-40-bytes-0123456789abc", "", 0 } };
        CHECK(dsv4_model_write(fd, s.v, NT, b, 2, NULL, NULL, NULL, NULL, fp, &err) == DSV4_E_INVALID &&
              strstr(err.msg, "too long"));
    }
    {
        dsv4_tensor t = s.t[0];
        const dsv4_tensor *v = &t;
        t.name = "";
        CHECK(dsv4_model_write(fd, &v, 1, s.blobs, 1, NULL, NULL, NULL, NULL, fp, &err) == DSV4_E_INVALID);
    }
    close(fd);
    /* written, but refused by the reader */
    {
        const dsv4_tensor *v[2] = { s.v[0], s.v[0] };
        CHECK(write_model(path, v, 2, s.blobs, 1, fp) == 0);
        CHECK(open_fails(path, DSV4_E_FORMAT, "'embed.weight' appears twice"));
    }
    {
        dsv4_blob b = { "config.json", "{\"vocab_size\": 5}", 17 };
        CHECK(write_model(path, s.v, NT, &b, 1, fp) == 0);
        CHECK(open_fails(path, 0, "config.json"));
        b.data = "{\"vocab_size\": ";
        b.len = 15;
        CHECK(write_model(path, s.v, NT, &b, 1, fp) == 0);
        CHECK(open_fails(path, DSV4_E_FORMAT, "line 1, column 16"));
    }
    /* no tensors at all is a valid (useless) file */
    {
        dsv4_model *m = NULL;
        CHECK(write_model(path, NULL, 0, s.blobs, 1, fp) == 0);
        CHECK(dsv4_model_open(&m, path, &err) == 0);
        CHECK(m && dsv4_model_count(m) == 0 && dsv4_model_find(m, "x") == NULL);
        CHECK(m && dsv4_model_verify(m, NULL, NULL, NULL, NULL, &err) == 0);
        dsv4_model_close(m);
    }
    unlink(path);
    src_free(&s);
}

/* The converter's output for a real fixture holds exactly its tensors. */
TEST(converted_fixture)
{
    char hf[1024], path[256], cfgp[1100];
    dsv4_convert_opts o = { NULL, "test_model" };
    dsv4_err err = DSV4_ERR_INIT;
    struct reports r;
    uint8_t fp[32];
    dsv4_model *m = NULL;
    dsv4_st *st = NULL;
    char *cfg;
    size_t cfg_len = 0, bl = 0;
    const char *blob;
    int fd, rc;
    snprintf(hf, sizeof hf, "%s/tiny-v4-swa", test_fixtures());
    snprintf(cfgp, sizeof cfgp, "%s/config.json", hf);
    temp_path(path, sizeof path);
    memset(&r, 0, sizeof r);
    fd = open(path, O_RDWR | O_TRUNC);
    rc = dsv4_convert(hf, fd, &o, on_report, &r, NULL, NULL, fp, &err);
    close(fd);
    CHECK(rc == 0);
    if (rc) {
        fprintf(stderr, "  convert: rc %d %s; %d reports, first %s: %s\n", rc, err.msg, r.n, r.subj[0], r.msg[0]);
        goto out;
    }
    CHECK(dsv4_model_open(&m, path, &err) == 0);
    CHECK(dsv4_st_open(&st, hf, NULL, NULL, &err) == 0);
    if (!m || !st)
        goto out;
    CHECK(!memcmp(dsv4_model_fingerprint(m), fp, 32));
    CHECK_EQ_INT(dsv4_model_count(m), dsv4_st_count(st));
    for (size_t i = 0; i < dsv4_st_count(st); i++) {
        const dsv4_tensor *a = dsv4_st_tensor(st, i), *b = dsv4_model_find(m, a->name);
        int same = b && a->dtype == b->dtype && a->ndim == b->ndim && a->nbytes == b->nbytes &&
                   !memcmp(a->shape, b->shape, sizeof a->shape) && !memcmp(a->data, b->data, (size_t)a->nbytes);
        if (!same)
            fprintf(stderr, "  %s differs\n", a->name);
        CHECK(same);
    }
    CHECK(dsv4_model_verify(m, NULL, NULL, NULL, NULL, &err) == 0);
    cfg = read_all(cfgp, &cfg_len);
    blob = dsv4_model_blob(m, "config.json", &bl);
    CHECK(cfg && blob && bl == cfg_len && !memcmp(cfg, blob, bl));   /* verbatim */
    CHECK(dsv4_model_blob(m, "generation_config.json", NULL) != NULL);
    CHECK(dsv4_model_blob(m, "dsv4.json", NULL) != NULL);
    {
        /* the fingerprint follows from config.json and the tensors in directory order */
        size_t n = dsv4_model_count(m);
        const dsv4_tensor **v = malloc(n * sizeof *v);
        uint8_t spec[32];
        for (size_t i = 0; i < n; i++)
            v[i] = dsv4_model_tensor(m, i);
        spec_fingerprint(spec, cfg, cfg_len, v, n);
        CHECK(!memcmp(spec, fp, 32));
        free(v);
    }
    free(cfg);
out:
    dsv4_st_close(st);
    dsv4_model_close(m);
    unlink(path);
}

int main(void);
static void setup(void) __attribute__((constructor));
static void setup(void)
{
    mkdir("tests/out", 0755);
    mkdir(DIR, 0755);
    if (dsv4_init()) {
        fprintf(stderr, "cannot initialise libsodium\n");
        exit(1);
    }
}

TEST_MAIN(T(layout_matches_the_spec), T(open_and_read_back), T(fingerprint), T(verify), T(damaged_header_and_metadata),
          T(truncated_and_extended), T(versions), T(hostile_directory), T(writer_and_content_errors),
          T(converted_fixture))
