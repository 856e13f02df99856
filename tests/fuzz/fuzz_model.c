/* fuzz_model — the .dsv4 model file reader (lib/model.h): header, section
 * offsets, blob table, tensor directory, embedded config.json, fingerprint;
 * then the accessors, dsv4_model_verify and the inventory and value checks
 * (lib/check.h) that dsv4-convert --check runs on an opened model.
 *
 * Input: the bytes of a .dsv4 file, opened through a memfd path (the reader
 * only takes a path; it mmaps the file).  Every input is opened twice: as
 * given, and with its checksums repaired (header file_bytes, metadata hash,
 * fingerprint, header hash; see fixup()), so that mutations get past the
 * BLAKE2b checks into the directory and config parsers. */
#include "fuzz.h"

#include "buf.h"
#include "check.h"
#include "model.h"

#include <sodium.h>

/* dsv4-model(5) offsets, as lib/model.c has them. */
enum {
    H_SIG = 0, H_MAJOR = 8, H_FILE_BYTES = 32, H_META_OFF = 40, H_META_BYTES = 48, H_NBLOBS = 72,
    H_NTENSORS = 80, H_DIR_OFF = 88, H_DIR_BYTES = 96, H_FINGERPRINT = 104, H_META_HASH = 136,
    H_HEADER_HASH = 224
};
#define ALIGN 4096
#define BLOB_REC 64
#define DIR_FIXED 88

/* The fingerprint as lib/model.c computes it: domain, config.json, and per
 * tensor name, dtype, rank, shape and data hash.  Leniently: whatever does
 * not parse is skipped (the reader will refuse it anyway). */
static void fingerprint(uint8_t *h, size_t size)
{
    uint64_t mo = dsv4_le64_get(h + H_META_OFF), mb = dsv4_le64_get(h + H_META_BYTES);
    uint64_t dof = dsv4_le64_get(h + H_DIR_OFF), db = dsv4_le64_get(h + H_DIR_BYTES);
    uint64_t nt = dsv4_le64_get(h + H_NTENSORS);
    uint32_t nb = dsv4_le32_get(h + H_NBLOBS);
    const uint8_t *cfg = NULL;
    uint64_t cl = 0;
    crypto_generichash_state st;
    uint8_t tmp[8];
    if (mo > size || mb > size - mo || dof > size || db > size - dof || (uint64_t)nb * BLOB_REC > mb)
        return;
    for (uint32_t b = 0; b < nb; b++) {
        const uint8_t *r = h + mo + (size_t)b * BLOB_REC;
        uint64_t bo = dsv4_le64_get(r + 40), bl = dsv4_le64_get(r + 48);
        if (!strncmp((const char *)r, "config.json", 40) && bo <= size && bl <= size - bo) {
            cfg = h + bo;
            cl = bl;
            break;
        }
    }
    if (!cfg)
        return;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)"dsv4-model-fingerprint-v1", 26);
    dsv4_le64_put(tmp, cl);
    crypto_generichash_update(&st, tmp, 8);
    crypto_generichash_update(&st, cfg, cl);
    for (uint64_t i = 0, p = dof; i < nt && nt < 100000; i++) {
        const uint8_t *r = h + p;
        uint64_t nl;
        if (db - (p - dof) < DIR_FIXED)
            return;
        nl = dsv4_le16_get(r);
        if (db - (p - dof) < DIR_FIXED + nl || r[3] > 4)
            return;
        crypto_generichash_update(&st, r + DIR_FIXED, nl);
        crypto_generichash_update(&st, (const uint8_t *)"", 1);
        crypto_generichash_update(&st, r + 2, 2);
        for (int d = 0; d < r[3]; d++)
            crypto_generichash_update(&st, r + 8 + 8 * d, 8);
        crypto_generichash_update(&st, r + 56, 32);
        p += (DIR_FIXED + nl + 7) / 8 * 8;
    }
    crypto_generichash_final(&st, h + H_FINGERPRINT, 32);
}

/* Repair what checksums protect, so the parsers behind them get fuzzed. */
static void fixup(uint8_t *h, size_t size)
{
    uint64_t mo, mb;
    if (size < ALIGN || memcmp(h, "\x89WT4\r\n\x1a\n", 8))
        return;
    dsv4_le64_put(h + H_FILE_BYTES, size);
    mo = dsv4_le64_get(h + H_META_OFF);
    mb = dsv4_le64_get(h + H_META_BYTES);
    fingerprint(h, size);
    if (mo <= size && mb <= size - mo)
        crypto_generichash(h + H_META_HASH, 32, h + mo, mb, NULL, 0);
    crypto_generichash(h + H_HEADER_HASH, 32, h, H_HEADER_HASH, NULL, 0);
}

static volatile uint8_t sink;
static int nreports;

static void report(void *ctx, const char *subject, const char *msg)
{
    (void)ctx;
    FUZZ_ASSERT(subject && msg && msg[0], "empty report");
    nreports++;
}

static void open_and_walk(const uint8_t *data, size_t size)
{
    dsv4_model *m = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    char path[64];
    int fd = fuzz_memfd(data, size), rc;
    if (fd < 0)
        return;
    fuzz_fd_path(path, sizeof path, fd);
    rc = dsv4_model_open(&m, path, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (rc) {
        FUZZ_ASSERT(m == NULL, "model returned with an error");
        close(fd);
        return;
    }
    size_t n = dsv4_model_count(m);
    const dsv4_tensor **views = calloc(n ? n : 1, sizeof *views);
    for (size_t i = 0; i < n; i++) {
        const dsv4_tensor *t = dsv4_model_tensor(m, i);
        FUZZ_ASSERT(t && dsv4_model_find(m, t->name) == t, "tensor %zu not found by name", i);
        if (t->nbytes) {
            sink ^= ((const uint8_t *)t->data)[0];
            sink ^= ((const uint8_t *)t->data)[t->nbytes - 1];
        }
        if (views)
            views[i] = t;
    }
    FUZZ_ASSERT(dsv4_model_tensor(m, n) == NULL, "past the end");
    for (size_t b = 0; b < dsv4_model_blob_count(m); b++) {
        size_t len = 0;
        const char *name = dsv4_model_blob_name(m, b);
        const char *p = dsv4_model_blob(m, name, &len);
        FUZZ_ASSERT(p != NULL, "blob '%s' not found by name", name);
        if (len)
            sink ^= (uint8_t)(p[0] ^ p[len - 1]);
    }
    {
        char hex[2 * DSV4_FINGERPRINT_BYTES + 1];
        int major, minor;
        dsv4_model_fingerprint_hex(m, hex);
        dsv4_model_version(m, &major, &minor);
        FUZZ_ASSERT(dsv4_model_file_bytes(m) == size && dsv4_model_path(m), "size or path");
    }
    rc = dsv4_model_verify(m, report, NULL, NULL, NULL, &err);
    FUZZ_ASSERT(rc >= 0, "verify: %s", err.msg);
    if (views) {
        const dsv4_config *c = dsv4_model_config(m);
        size_t ql;
        rc = dsv4_check_inventory(c, views, n, dsv4_model_blob(m, "quant.json", &ql) != NULL, report, NULL, &err);
        FUZZ_CHECK_ERR(rc, err);
        for (size_t i = 0; i < n; i++)
            (void)dsv4_check_values(c, views[i], report, NULL);
    }
    free(views);
    dsv4_model_close(m);
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *fixed;
    open_and_walk(data, size);
    if (size < ALIGN || !(fixed = malloc(size)))
        return 0;
    memcpy(fixed, data, size);
    fixup(fixed, size);
    if (memcmp(fixed, data, size))
        open_and_walk(fixed, size);
    free(fixed);
    return 0;
}
