/* Hostile model files: a valid small .dsv4 and safetensors file is built,
 * then each field the readers take from the file is made to lie (offsets
 * past the end or wrapping around, sizes of UINT64_MAX, shape products that
 * overflow, huge counts, overlapping ranges, names without their bytes, index
 * entries naming missing shards).  Every such file must be refused with the
 * right code and a message naming it; never a crash or a read outside the
 * mapping (built with ./configure --sanitize, ASan and UBSan check that).
 * Checksums are recomputed after each edit: a hostile writer can do that
 * too, so only the structural checks stand between it and the reader. */
#include "test.h"
#include "buf.h"
#include "model.h"
#include "safetensors.h"
#include "version.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR "tests/out/unit-hostile"
#define U64MAX UINT64_MAX

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *p = NULL;
    long n;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (p = malloc((size_t)n + 1)) && fread(p, 1, (size_t)n, f) == (size_t)n) {
        p[n] = 0;
        *len = (size_t)n;
    } else {
        free(p);
        p = NULL;
    }
    fclose(f);
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

/* ---- .dsv4 ------------------------------------------------------------------ */

enum { NT = 4 };
static const struct { const char *name; dsv4_dtype dt; int ndim; int64_t shape[4]; } specs[NT] = {
    { "a.weight", DSV4_DT_BF16, 2, { 16, 8 } },
    { "b", DSV4_DT_F32, 1, { 3000 } },       /* spans three pages */
    { "c", DSV4_DT_U8, 1, { 5 } },
    { "empty", DSV4_DT_F16, 2, { 0, 5 } },
};

/* Header fields and directory entry fields (dsv4-model(5)). */
enum { H_HBYTES = 12, H_FILE = 32, H_MOFF = 40, H_MBYTES = 48, H_DOFF = 56, H_DBYTES = 64, H_NBLOBS = 72,
       H_NT = 80, H_DIROFF = 88, H_DIRBYTES = 96 };
enum { E_NL = 0, E_DT = 2, E_ND = 3, E_SHAPE = 8, E_OFF = 40, E_NB = 48 };

/* A model file image built by the library's writer, with the first `from`
 * in config.json replaced by `to` (from NULL: valid). */
static uint8_t *model_with_config(const char *path, size_t *len, const char *from, const char *to)
{
    static uint8_t data[NT][12000];
    dsv4_tensor t[NT];
    const dsv4_tensor *v[NT];
    char cfgpath[1024], *cfg;
    size_t cfg_len = 0;
    dsv4_blob blobs[2];
    dsv4_err err = DSV4_ERR_INIT;
    int fd, rc;
    snprintf(cfgpath, sizeof cfgpath, "%s/tiny-v4-swa/config.json", test_fixtures());
    if (!(cfg = read_all(cfgpath, &cfg_len))) {
        fprintf(stderr, "  cannot read %s\n", cfgpath);
        return NULL;
    }
    if (from) {
        char *at = strstr(cfg, from), *edited = malloc(cfg_len + strlen(to) + 1);
        if (!at || !edited) {
            fprintf(stderr, "  no '%s' in %s\n", from, cfgpath);
            exit(1);
        }
        cfg_len = (size_t)sprintf(edited, "%.*s%s%s", (int)(at - cfg), cfg, to, at + strlen(from));
        free(cfg);
        cfg = edited;
    }
    for (int i = 0; i < NT; i++) {
        t[i] = (dsv4_tensor){ specs[i].name, specs[i].dt, specs[i].ndim, { 0 }, data[i], 0 };
        memcpy(t[i].shape, specs[i].shape, sizeof t[i].shape);
        t[i].nbytes = (uint64_t)dsv4_tensor_numel(&t[i]) * dsv4_dtype_size(t[i].dtype);
        for (uint64_t b = 0; b < t[i].nbytes; b++)
            data[i][b] = (uint8_t)(b * 7 + (uint64_t)i);
        v[i] = &t[i];
    }
    blobs[0] = (dsv4_blob){ "config.json", cfg, cfg_len };
    blobs[1] = (dsv4_blob){ "tokenizer.json", "{}", 2 };
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    rc = fd < 0 ? -1 : dsv4_model_write(fd, v, NT, blobs, 2, NULL, NULL, NULL, NULL, NULL, &err);
    if (fd >= 0)
        close(fd);
    free(cfg);
    if (rc) {
        fprintf(stderr, "  dsv4_model_write: %s\n", err.msg);
        return NULL;
    }
    return (uint8_t *)read_all(path, len);
}

static uint8_t *good_model(const char *path, size_t *len) { return model_with_config(path, len, NULL, NULL); }

static void blake(uint8_t *out, const void *p, size_t n) { crypto_generichash(out, 32, p, n, NULL, 0); }

/* Recompute meta_hash (when the region lies inside the image) and header_hash. */
static void rehash(uint8_t *f, size_t len)
{
    uint64_t mo = dsv4_le64_get(f + H_MOFF), mb = dsv4_le64_get(f + H_MBYTES);
    if (mo <= len && mb <= len - mo)
        blake(f + 136, f + mo, (size_t)mb);
    blake(f + 224, f, 224);
}

/* Offset of directory entry i in a writer-made image. */
static uint64_t entry(const uint8_t *f, int i)
{
    uint64_t p = dsv4_le64_get(f + H_DIROFF);
    while (i-- > 0)
        p += (88 + dsv4_le16_get(f + p) + 7) / 8 * 8;
    return p;
}

/* open must fail with `code` and a message naming `path` and saying `what`. */
static int model_refused(const char *path, int code, const char *what, const char *desc)
{
    dsv4_model *m = (dsv4_model *)1;
    dsv4_err err = DSV4_ERR_INIT;
    int rc = dsv4_model_open(&m, path, &err);
    if (rc != code || m != NULL || err.code != code || !strstr(err.msg, path) || !strstr(err.msg, what)) {
        fprintf(stderr, "  %s: rc %d msg '%s' (wanted %d, '%s')\n", desc, rc, err.msg, code, what);
        if (rc == 0)
            dsv4_model_close(m);
        return 0;
    }
    return 1;
}

struct medit { const char *desc; int code; const char *what; };

/* Each case edits a copy of the image (and may change its length), then the
 * checksums are recomputed. */
TEST(model_fields)
{
    char path[256], bad[256];
    size_t len = 0;
    uint8_t *f;
    int tried = 0, refused = 0;
    snprintf(path, sizeof path, DIR "/good.dsv4");
    snprintf(bad, sizeof bad, DIR "/bad.dsv4");
    f = good_model(path, &len);
    CHECK(f != NULL);
    if (!f)
        return;
    {
        dsv4_model *m = NULL;
        dsv4_err err = DSV4_ERR_INIT;
        CHECK(dsv4_model_open(&m, path, &err) == 0);
        CHECK(m && dsv4_model_count(m) == NT);
        dsv4_model_close(m);
    }
    const uint64_t fsize = len, moff = dsv4_le64_get(f + H_MOFF), mbytes = dsv4_le64_get(f + H_MBYTES),
                   doff = dsv4_le64_get(f + H_DOFF), dir = dsv4_le64_get(f + H_DIROFF),
                   dirb = dsv4_le64_get(f + H_DIRBYTES), e0 = entry(f, 0), e1 = entry(f, 1), e2 = entry(f, 2),
                   e3 = entry(f, 3);
    CHECK(e0 == dir && e3 + 88 + 5 + 3 == dir + dirb && moff + mbytes == dir + dirb);
#define X(stmt, code, what) do { \
        uint8_t *x = malloc(len); \
        memcpy(x, f, len); \
        stmt; \
        rehash(x, len); \
        CHECK(write_all(bad, x, len)); \
        tried++; \
        if (model_refused(bad, code, what, #stmt)) refused++; \
        free(x); \
    } while (0)
#define P64(o, v) dsv4_le64_put(x + (o), (uint64_t)(v))
    const char *sect = "inconsistent section offsets";
    /* header: sections that lie or wrap around */
    X(P64(H_MOFF, fsize - 1), DSV4_E_FORMAT, sect);
    X(P64(H_MOFF, U64MAX), DSV4_E_FORMAT, sect);
    X(P64(H_MOFF, 256), DSV4_E_FORMAT, sect);                 /* metadata inside the header region */
    X(P64(H_MOFF, 0), DSV4_E_FORMAT, sect);
    X(P64(H_MBYTES, U64MAX), DSV4_E_FORMAT, sect);
    X(P64(H_MBYTES, U64MAX - moff + 1), DSV4_E_FORMAT, sect);  /* moff + mbytes wraps to 0 */
    X(P64(H_MBYTES, fsize - moff + 1), DSV4_E_FORMAT, sect);
    X(P64(H_DOFF, U64MAX), DSV4_E_FORMAT, sect);
    X(P64(H_DOFF, 4096), DSV4_E_FORMAT, sect);               /* data region over the metadata */
    X((P64(H_DOFF, 0), P64(H_DBYTES, fsize)), DSV4_E_FORMAT, sect);
    X(P64(H_DBYTES, U64MAX), DSV4_E_FORMAT, sect);
    X(P64(H_DBYTES, fsize - doff - 1), DSV4_E_FORMAT, sect);
    X(P64(H_DIROFF, U64MAX), DSV4_E_FORMAT, sect);
    X(P64(H_DIROFF, moff - 1), DSV4_E_FORMAT, sect);
    X(P64(H_DIROFF, moff + mbytes + 1), DSV4_E_FORMAT, sect);
    X(P64(H_DIRBYTES, U64MAX), DSV4_E_FORMAT, sect);
    X(P64(H_DIRBYTES, U64MAX - dir + 1), DSV4_E_FORMAT, sect); /* dir + dirb wraps to 0 */
    X(P64(H_DIRBYTES, dirb + 8), DSV4_E_FORMAT, sect);
    X(P64(H_NT, U64MAX), DSV4_E_FORMAT, sect);
    X(P64(H_NT, 1ull << 61), DSV4_E_FORMAT, sect);            /* count x 88 wraps */
    X(P64(H_NT, dirb / 88 + 2), DSV4_E_FORMAT, sect);
    X(dsv4_le32_put(x + H_NBLOBS, UINT32_MAX), DSV4_E_FORMAT, sect);
    X(dsv4_le32_put(x + H_NBLOBS, (uint32_t)(mbytes / 64 + 1)), DSV4_E_FORMAT, sect);
    X(P64(H_FILE, U64MAX), DSV4_E_TRUNCATED, "truncated");
    X(P64(H_FILE, fsize - 1), DSV4_E_FORMAT, "header says");
    /* more entries than the directory holds: the next one would be read
     * from the bytes after it */
    X(P64(H_NT, NT + 1), DSV4_E_FORMAT, "directory ends early");
    /* blobs */
    X(P64(moff + 40, U64MAX), DSV4_E_FORMAT, "outside the metadata region");
    X(P64(moff + 40, 0), DSV4_E_FORMAT, "outside the metadata region");
    X(P64(moff + 48, U64MAX), DSV4_E_FORMAT, "outside the metadata region");
    X(P64(moff + 48, U64MAX - dsv4_le64_get(x + moff + 40) + 1), DSV4_E_FORMAT, "outside the metadata region");
    X(P64(moff + 48, moff + mbytes - dsv4_le64_get(x + moff + 40) + 1), DSV4_E_FORMAT,
      "outside the metadata region");
    X(memset(x + moff, 'A', 40), DSV4_E_FORMAT, "no config.json");   /* a name without its NUL */
    /* directory entries: name lengths */
    X(dsv4_le16_put(x + e0 + E_NL, 0), DSV4_E_FORMAT, "name length");
    X(dsv4_le16_put(x + e0 + E_NL, 1025), DSV4_E_FORMAT, "name length");
    X(dsv4_le16_put(x + e0 + E_NL, 65535), DSV4_E_FORMAT, "name length");
    X(dsv4_le16_put(x + e3 + E_NL, 9), DSV4_E_FORMAT, "name length");   /* past the directory's end */
    /* dtype, rank, shape */
    X(x[e1 + E_DT] = 0, DSV4_E_FORMAT, "unknown dtype");
    X(x[e1 + E_DT] = DSV4_DT_COUNT, DSV4_E_FORMAT, "unknown dtype");
    X(x[e1 + E_DT] = 255, DSV4_E_FORMAT, "unknown dtype");
    X(x[e1 + E_ND] = 5, DSV4_E_FORMAT, "rank");
    X(x[e1 + E_ND] = 255, DSV4_E_FORMAT, "rank");
    X(P64(e1 + E_SHAPE, U64MAX), DSV4_E_FORMAT, "absurd shape");          /* -1 as int64 */
    X(P64(e1 + E_SHAPE, 1ull << 63), DSV4_E_FORMAT, "absurd shape");
    X((x[e1 + E_ND] = 4, P64(e1 + E_SHAPE, 1 << 20), P64(e1 + E_SHAPE + 8, 1 << 20), P64(e1 + E_SHAPE + 16, 1 << 20),
       P64(e1 + E_SHAPE + 24, 1 << 20)), DSV4_E_FORMAT, "absurd shape");   /* product 2^80 */
    X((x[e1 + E_ND] = 4, P64(e1 + E_SHAPE, 1ull << 32), P64(e1 + E_SHAPE + 8, 1ull << 32),
       P64(e1 + E_SHAPE + 16, 1ull << 32), P64(e1 + E_SHAPE + 24, 1ull << 32)), DSV4_E_FORMAT, "absurd shape");
    X((x[e3 + E_ND] = 4, P64(e3 + E_SHAPE + 16, 1ull << 40), P64(e3 + E_SHAPE + 24, 1ull << 40)), DSV4_E_FORMAT,
      "absurd shape");                                   /* a zero dim first does not hide the rest */
    /* nbytes */
    X(P64(e1 + E_NB, U64MAX), DSV4_E_FORMAT, "do not match its shape");
    X(P64(e1 + E_NB, 0), DSV4_E_FORMAT, "do not match its shape");
    X(P64(e1 + E_NB, 12001), DSV4_E_FORMAT, "do not match its shape");
    /* offsets */
    X(P64(e1 + E_OFF, fsize - 1), DSV4_E_FORMAT, "outside the data region");
    X(P64(e1 + E_OFF, fsize / 4096 * 4096), DSV4_E_FORMAT, "outside the data region");
    X(P64(e1 + E_OFF, U64MAX), DSV4_E_FORMAT, "outside the data region");
    X(P64(e1 + E_OFF, U64MAX / 4096 * 4096), DSV4_E_FORMAT, "outside the data region");  /* off + nbytes wraps */
    X(P64(e1 + E_OFF, 0), DSV4_E_FORMAT, "outside the data region");          /* over the header */
    X(P64(e1 + E_OFF, 4096), DSV4_E_FORMAT, "outside the data region");       /* over the metadata */
    X(P64(e1 + E_OFF, dsv4_le64_get(x + e1 + E_OFF) + 1), DSV4_E_FORMAT, "outside the data region");
    X(P64(e1 + E_OFF, dsv4_le64_get(x + e0 + E_OFF)), DSV4_E_FORMAT, "overlaps the previous tensor");
    X(P64(e2 + E_OFF, dsv4_le64_get(x + e1 + E_OFF) + 8192), DSV4_E_FORMAT, "overlaps the previous tensor");
    /* a renamed entry passes the entry checks, not the fingerprint; one
     * made a copy of another (name, shape, offset) overlaps it */
    X(x[e2 + 88] = 'a', DSV4_E_CHECKSUM, "fingerprint");
    X((memcpy(x + e2 + 88, "b", 1), x[e2 + E_DT] = DSV4_DT_F32, x[e2 + E_ND] = 1, P64(e2 + E_SHAPE, 3000),
       P64(e2 + E_NB, 12000), P64(e2 + E_OFF, dsv4_le64_get(x + e1 + E_OFF))), DSV4_E_FORMAT, "overlaps");
#undef P64
#undef X
    CHECK_EQ_INT(refused, tried);
    free(f);
}

/* A directory that ends exactly at the end of the file, its last entry's
 * padding missing, and one entry too many claimed: reading that entry would
 * start past the mapping (it used to, as end - p wrapped around). */
TEST(model_directory_at_eof)
{
    char path[256], bad[256];
    size_t len = 0;
    uint8_t *f, *x;
    uint64_t e3, nsz, fsize;
    snprintf(path, sizeof path, DIR "/good2.dsv4");
    snprintf(bad, sizeof bad, DIR "/eof.dsv4");
    f = good_model(path, &len);
    CHECK(f != NULL);
    if (!f)
        return;
    e3 = entry(f, 3);                       /* "empty": 0 bytes, name of 5 */
    nsz = 88 + 5;                           /* unpadded */
    fsize = (e3 + nsz + 4095) / 4096 * 4096;   /* a page boundary */
    x = calloc(1, fsize);
    memcpy(x, f, e3);
    memcpy(x + fsize - nsz, f + e3, nsz);   /* the entry, at the very end */
    dsv4_le64_put(x + H_FILE, fsize);
    dsv4_le64_put(x + H_MBYTES, fsize - 4096);
    dsv4_le64_put(x + H_DOFF, fsize);
    dsv4_le64_put(x + H_DBYTES, 0);
    dsv4_le64_put(x + H_NT, 2);
    dsv4_le64_put(x + H_DIROFF, fsize - nsz);
    dsv4_le64_put(x + H_DIRBYTES, nsz);
    dsv4_le64_put(x + fsize - nsz + E_OFF, fsize);
    rehash(x, fsize);
    CHECK(write_all(bad, x, fsize));
    CHECK(model_refused(bad, DSV4_E_FORMAT, "directory ends early", "directory at EOF"));
    /* with one entry it is a valid file (a wrong fingerprint aside) */
    dsv4_le64_put(x + H_NT, 1);
    rehash(x, fsize);
    CHECK(write_all(bad, x, fsize));
    CHECK(model_refused(bad, DSV4_E_CHECKSUM, "fingerprint", "directory at EOF, one entry"));
    free(x);
    free(f);
}

/* config.json is part of the file too: sizes the engine would size buffers
 * with are bounded. */
TEST(model_config_sizes)
{
    static const struct { const char *from, *to; } c[] = {
        { "\"hidden_size\": 128", "\"hidden_size\": 1099511627776" },
        { "\"hidden_size\": 128", "\"hidden_size\": 9007199254740992" },
        { "\"n_routed_experts\": ", "\"n_routed_experts\": 1000000000000, \"x\": " },
        { "\"index_topk\": ", "\"index_topk\": 4294967296, \"x\": " },
        { "\"max_position_embeddings\": ", "\"max_position_embeddings\": 1000000000000000, \"x\": " },
        { "\"hidden_size\": 128", "\"hidden_size\": -128" },
    };
    for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
        char path[256];
        size_t len = 0;
        uint8_t *f;
        snprintf(path, sizeof path, DIR "/cfg%zu.dsv4", k);
        f = model_with_config(path, &len, c[k].from, c[k].to);
        CHECK(f != NULL);
        if (!model_refused(path, DSV4_E_FORMAT, "config.json", c[k].to))
            CHECK(!c[k].to);
        free(f);
    }
}

/* Truncations and tiny files never read past the end. */
TEST(model_short_files)
{
    char path[256], bad[256];
    size_t len = 0, cuts[] = { 0, 1, 7, 8, 9, 255, 256, 4095, 4096, 4097 };
    uint8_t *f;
    snprintf(path, sizeof path, DIR "/good3.dsv4");
    snprintf(bad, sizeof bad, DIR "/short.dsv4");
    f = good_model(path, &len);
    CHECK(f != NULL);
    if (!f)
        return;
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        int code = cuts[k] < 8 ? DSV4_E_FORMAT : DSV4_E_TRUNCATED;
        char desc[64];
        snprintf(desc, sizeof desc, "cut to %zu bytes", cuts[k]);
        CHECK(write_all(bad, f, cuts[k]));
        CHECK(model_refused(bad, code, cuts[k] < 8 ? "signature" : "truncated", desc));
    }
    /* a safetensors-looking prefix whose header length lies */
    {
        uint8_t st[16] = { 0 };
        dsv4_le64_put(st, U64MAX);
        st[8] = '{';
        CHECK(write_all(bad, st, sizeof st));
        CHECK(model_refused(bad, DSV4_E_FORMAT, "signature", "safetensors prefix"));
    }
    free(f);
}

/* ---- safetensors --------------------------------------------------------------- */

/* A file of an 8-byte header length (*hlen, or the header's own length when
 * hlen is NULL), the header text and ndata bytes. */
static void st_file(const char *path, const char *header, const uint64_t *hlen, size_t ndata)
{
    FILE *f = fopen(path, "wb");
    uint8_t l[8];
    size_t hl = strlen(header);
    if (!f) {
        perror(path);
        exit(1);
    }
    dsv4_le64_put(l, hlen ? *hlen : hl);
    fwrite(l, 1, 8, f);
    fwrite(header, 1, hl, f);
    for (size_t i = 0; i < ndata; i++)
        fputc((int)(i * 13 & 0xff), f);
    fclose(f);
}

static int st_refused(const char *path, int code, const char *what, const char *desc)
{
    dsv4_st *st = (dsv4_st *)1;
    dsv4_err err = DSV4_ERR_INIT;
    int rc = dsv4_st_open(&st, path, NULL, NULL, &err);
    if (rc != code || st != NULL || err.code != code || !strstr(err.msg, path) || !strstr(err.msg, what)) {
        fprintf(stderr, "  %s: rc %d msg '%s' (wanted %d, '%s')\n", desc, rc, err.msg, code, what);
        if (rc == 0)
            dsv4_st_close(st);
        return 0;
    }
    return 1;
}

/* One entry "t" of 16 U8 bytes, described by a header template with the
 * dtype, shape and offsets filled in. */
#define ENTRY(dt, shape, offs) "{\"t\":{\"dtype\":" dt ",\"shape\":" shape ",\"data_offsets\":" offs "}}"

TEST(safetensors_fields)
{
    char p[256];
    static const struct { const char *desc, *header; size_t ndata; int code; const char *what; } c[] = {
        { "valid", ENTRY("\"U8\"", "[16]", "[0,16]"), 16, 0, NULL },
        { "offset = size - 1, 16 bytes", ENTRY("\"U8\"", "[16]", "[15,31]"), 16, DSV4_E_TRUNCATED, "truncated" },
        { "end = UINT64_MAX", ENTRY("\"U8\"", "[16]", "[0,18446744073709551615]"), 16, DSV4_E_FORMAT,
          "data bytes but shape" },
        { "both UINT64_MAX, empty", ENTRY("\"U8\"", "[0]", "[18446744073709551615,18446744073709551615]"), 16,
          DSV4_E_TRUNCATED, "truncated" },
        { "offsets past 2^64", ENTRY("\"U8\"", "[0]", "[18446744073709551616,18446744073709551616]"), 16,
          DSV4_E_FORMAT, "bad data_offsets" },
        { "offsets of 2^70", ENTRY("\"U8\"", "[16]", "[1180591620717411303424,1180591620717411303440]"), 16,
          DSV4_E_FORMAT, "bad data_offsets" },
        { "begin past end, empty", ENTRY("\"U8\"", "[0]", "[17,17]"), 16, DSV4_E_TRUNCATED, "truncated" },
        { "reversed", ENTRY("\"U8\"", "[0]", "[16,0]"), 16, DSV4_E_FORMAT, "reversed" },
        { "negative offset", ENTRY("\"U8\"", "[16]", "[-16,0]"), 16, DSV4_E_FORMAT, "bad data_offsets" },
        { "fractional offset", ENTRY("\"U8\"", "[16]", "[0.5,16]"), 16, DSV4_E_FORMAT, "bad data_offsets" },
        { "offset as a string", ENTRY("\"U8\"", "[16]", "[\"0\",16]"), 16, DSV4_E_FORMAT, "bad data_offsets" },
        { "three offsets", ENTRY("\"U8\"", "[16]", "[0,16,32]"), 16, DSV4_E_FORMAT, "lacks" },
        { "offsets not an array", ENTRY("\"U8\"", "[16]", "16"), 16, DSV4_E_FORMAT, "lacks" },
        { "negative dim", ENTRY("\"U8\"", "[-1]", "[0,16]"), 16, DSV4_E_FORMAT, "bad dimension" },
        { "huge dim", ENTRY("\"U8\"", "[1e300]", "[0,16]"), 16, DSV4_E_FORMAT, "bad dimension" },
        { "dim past 2^53", ENTRY("\"U8\"", "[9007199254740993]", "[0,16]"), 16, DSV4_E_FORMAT, "bad dimension" },
        { "dim as a string", ENTRY("\"U8\"", "[\"16\"]", "[0,16]"), 16, DSV4_E_FORMAT, "bad dimension" },
        { "product past int64", ENTRY("\"F32\"", "[1000000000000000,1000000000000000]", "[0,16]"), 16,
          DSV4_E_FORMAT, "shape too large" },
        { "product wraps to 16", ENTRY("\"U8\"", "[4294967296,4294967296,16]", "[0,16]"), 16, DSV4_E_FORMAT,
          "shape too large" },
        { "product x dtype size wraps", ENTRY("\"I64\"", "[2305843009213693952]", "[0,0]"), 16, DSV4_E_FORMAT,
          "bad dimension" },
        { "product x 8 past int64", ENTRY("\"I64\"", "[1000000000000000,1000]", "[0,16]"), 16, DSV4_E_FORMAT,
          "shape too large" },
        { "zero dim, then huge ones", ENTRY("\"U8\"", "[0,1000000000000000,1000000000000000]", "[0,0]"), 16,
          DSV4_E_FORMAT, "shape too large" },
        { "five dims", ENTRY("\"U8\"", "[1,1,1,1,16]", "[0,16]"), 16, DSV4_E_FORMAT, "dimensions" },
        { "unknown dtype", ENTRY("\"F4\"", "[16]", "[0,16]"), 16, DSV4_E_FORMAT, "unknown dtype" },
        { "dtype not a string", ENTRY("9", "[16]", "[0,16]"), 16, DSV4_E_FORMAT, "lacks" },
        { "entry not an object", "{\"t\":[1,2]}", 16, DSV4_E_FORMAT, "lacks" },
        { "overlap", "{\"t\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[0,16]},"
                     "\"u\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[15,16]}}", 16, DSV4_E_FORMAT,
          "overlaps" },
        { "same range twice", "{\"t\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[0,16]},"
                              "\"u\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[0,16]}}", 16,
          DSV4_E_FORMAT, "overlaps" },
        { "duplicate name", "{\"t\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                            "\"t\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[8,16]}}", 16,
          DSV4_E_FORMAT, "duplicate" },
        { "name cut at an escaped NUL", "{\"t\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                                        "\"t\\u0000x\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[8,16]}}",
          16, DSV4_E_FORMAT, "duplicate" },
    };
    for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
        snprintf(p, sizeof p, DIR "/f%02zu.safetensors", k);
        st_file(p, c[k].header, NULL, c[k].ndata);
        if (!c[k].code) {
            dsv4_st *st = NULL;
            dsv4_err err = DSV4_ERR_INIT;
            CHECK(dsv4_st_open(&st, p, NULL, NULL, &err) == 0);
            CHECK(st && dsv4_st_count(st) == 1);
            dsv4_st_close(st);
        } else if (!st_refused(p, c[k].code, c[k].what, c[k].desc)) {
            CHECK(!c[k].desc);
        }
    }
}

/* header_len lies: past the file, into the data, UINT64_MAX, too short. */
TEST(safetensors_header_len)
{
    char p[256];
    const char *h = ENTRY("\"U8\"", "[16]", "[0,16]");
    const uint64_t hl = strlen(h);
    const struct { uint64_t hlen; int code; const char *what; } c[] = {
        { U64MAX, DSV4_E_FORMAT, "100 MB" },
        { 100000001, DSV4_E_FORMAT, "100 MB" },
        { 100000000, DSV4_E_TRUNCATED, "header length" },   /* at the cap, past the file */
        { hl + 17, DSV4_E_TRUNCATED, "header length" },     /* one byte past the file */
        { hl + 16, DSV4_E_FORMAT, "bad header JSON" },      /* the data read as header */
        { hl - 1, DSV4_E_FORMAT, "bad header JSON" },       /* the closing brace cut off */
        { 1, DSV4_E_FORMAT, "not a JSON object" },
        { 0, DSV4_E_FORMAT, "not a JSON object" },
    };
    for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
        char desc[64];
        snprintf(p, sizeof p, DIR "/h%zu.safetensors", k);
        snprintf(desc, sizeof desc, "header_len %llu", (unsigned long long)c[k].hlen);
        st_file(p, h, &c[k].hlen, 16);
        CHECK(st_refused(p, c[k].code, c[k].what, desc));
    }
    /* files shorter than the length field */
    for (size_t n = 0; n < 8; n++) {
        FILE *f;
        snprintf(p, sizeof p, DIR "/tiny%zu.safetensors", n);
        f = fopen(p, "wb");
        for (size_t i = 0; i < n; i++)
            fputc(0, f);
        fclose(f);
        CHECK(st_refused(p, DSV4_E_TRUNCATED, "too short", "tiny file"));
    }
}

/* Sharded checkpoints whose index lies. */
TEST(safetensors_index)
{
    static const struct { const char *index; int code; const char *what; } c[] = {
        { "{\"weight_map\": {\"t\": \"missing.safetensors\"}}", DSV4_E_NOTFOUND, "missing.safetensors" },
        { "{\"weight_map\": {\"t\": \"sub\"}}", DSV4_E_IO, "not a regular file" },
        { "{\"weight_map\": {\"t\": \"model.safetensors.index.json\"}}", DSV4_E_FORMAT, "100 MB" },
        { "{\"weight_map\": {\"t\": \"..\"}}", DSV4_E_FORMAT, "not a file name" },
        { "{\"weight_map\": {\"t\": \"/etc/passwd\"}}", DSV4_E_FORMAT, "not a file name" },
        { "{\"weight_map\": {\"t\": \"\"}}", DSV4_E_FORMAT, "not a file name" },
        { "{\"weight_map\": {\"t\": 5}}", DSV4_E_FORMAT, "not a file name" },
        { "{\"weight_map\": [\"s1.safetensors\"]}", DSV4_E_FORMAT, "weight_map" },
        { "{\"weight_map\": {\"t\": \"s1.safetensors\"", DSV4_E_FORMAT, "index.json" },
        { "{\"weight_map\": {\"t\": \"s1.safetensors\", \"v\": \"s2.safetensors\", \"w\": \"s1.safetensors\"}}",
          DSV4_E_FORMAT, "index says shard s1.safetensors but it is in" },
        { "{\"weight_map\": {\"t\": \"s1.safetensors\", \"v\": \"s2.safetensors\"}}", DSV4_E_FORMAT,
          "not listed in the index" },
        { "{\"weight_map\": {\"t\": \"s1.safetensors\", \"v\": \"s2.safetensors\", \"w\": \"s2.safetensors\", "
          "\"u\": \"s1.safetensors\"}}", DSV4_E_NOTFOUND, "listed in the index" },
        /* t in s1 and s3: one of the two is not where the index says */
        { "{\"weight_map\": {\"t\": \"s1.safetensors\", \"x\": \"s3.safetensors\"}}", DSV4_E_FORMAT, "shard" },
        { "{\"weight_map\": {}}", DSV4_E_NOTFOUND, "no readable safetensors shard" },
    };
    char d[256], p[300];
    snprintf(d, sizeof d, DIR "/ck");
    mkdir(d, 0755);
    snprintf(p, sizeof p, "%s/sub", d);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/s1.safetensors", d);
    st_file(p, ENTRY("\"U8\"", "[16]", "[0,16]"), NULL, 16);
    snprintf(p, sizeof p, "%s/s2.safetensors", d);
    st_file(p, "{\"v\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
               "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", NULL, 2);
    snprintf(p, sizeof p, "%s/s3.safetensors", d);
    st_file(p, "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
               "\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", NULL, 2);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
    for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
        dsv4_st *st = (dsv4_st *)1;
        dsv4_err err = DSV4_ERR_INIT;
        int rc;
        CHECK(write_all(p, c[k].index, strlen(c[k].index)));
        rc = dsv4_st_open(&st, d, NULL, NULL, &err);
        /* the message names the index, the shard or the tensor with its shard */
        if (rc != c[k].code || st || !strstr(err.msg, c[k].what) || !(strstr(err.msg, d) || strstr(err.msg, ".safetensors"))) {
            fprintf(stderr, "  index %zu: rc %d msg '%s' (wanted %d, '%s')\n", k, rc, err.msg, c[k].code, c[k].what);
            CHECK(!"index refused as expected");
            if (!rc)
                dsv4_st_close(st);
        }
    }
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

TEST_MAIN(T(model_fields), T(model_directory_at_eof), T(model_config_sizes), T(model_short_files), T(safetensors_fields),
          T(safetensors_header_len), T(safetensors_index))
