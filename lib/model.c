/* model — .dsv4 model file reader and writer (see model.h, dsv4-model(5)). */
#include "model.h"
#include "buf.h"
#include "mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const uint8_t model_sig[8] = { 0x89, 'W', 'T', '4', 0x0d, 0x0a, 0x1a, 0x0a };

/* Header field offsets (dsv4-model(5)). */
enum {
    H_SIG = 0, H_MAJOR = 8, H_MINOR = 10, H_HBYTES = 12, H_INCOMPAT = 16, H_COMPAT = 24,
    H_FILE_BYTES = 32, H_META_OFF = 40, H_META_BYTES = 48, H_DATA_OFF = 56, H_DATA_BYTES = 64,
    H_NBLOBS = 72, H_ALIGN = 76, H_NTENSORS = 80, H_DIR_OFF = 88, H_DIR_BYTES = 96,
    H_FINGERPRINT = 104, H_META_HASH = 136, H_HEADER_HASH = 224, H_SIZE = 256
};
#define BLOB_REC 64          /* name[40] + u64 offset + u64 size + 8 reserved */
#define BLOB_NAME 40
#define DIR_FIXED 88         /* u16 name_len, u8 dtype, u8 ndim, u32 flags, 4 x u64 shape,
                                u64 offset, u64 nbytes, hash[32] */
#define MAX_NAME 1024
#define HASH 32

struct dsv4_model {
    dsv4_map map;
    dsv4_config cfg;
    dsv4_tensor *t;
    char **names;
    uint8_t (*hash)[HASH];
    size_t n;
    size_t n_names;          /* allocated name slots (== n once open succeeded) */
    size_t *sorted;          /* indices sorted by name, for find */
    size_t nblobs;
    char (*blob_names)[BLOB_NAME + 1];
    const char **blob_data;
    size_t *blob_len;
    uint8_t fingerprint[HASH];
    int major, minor;
};

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

static void blake(uint8_t out[HASH], const void *p, size_t n)
{
    crypto_generichash(out, HASH, p, n, NULL, 0);
}

/* Fingerprint: BLAKE2b-256 of a domain string, config.json and, for each
 * tensor in directory order, its name, dtype, shape and data hash.  It names
 * the model's content independently of file layout details. */
static void fingerprint(uint8_t out[HASH], const char *cfg, size_t cfg_len, const dsv4_tensor *const *t,
                        uint8_t (*hash)[HASH], size_t n)
{
    crypto_generichash_state st;
    uint8_t tmp[8];
    crypto_generichash_init(&st, NULL, 0, HASH);
    crypto_generichash_update(&st, (const uint8_t *)"dsv4-model-fingerprint-v1", 26);
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
        crypto_generichash_update(&st, hash[i], HASH);
    }
    crypto_generichash_final(&st, out, HASH);
}

/* ---- writer ---- */

static int pwrite_all(int fd, const void *p, size_t n, uint64_t off, dsv4_err *err)
{
    const char *c = p;
    while (n) {
        ssize_t w = pwrite(fd, c, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return dsv4_err_set(err, DSV4_E_IO, "write error: %s", strerror(errno));
        }
        c += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Readers that predate the re-encoded dtypes would only see an unknown dtype;
 * the feature bit makes them say what the file needs instead. */
static uint64_t incompat_of(const dsv4_tensor *const *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (t[i]->dtype == DSV4_DT_Q2 || t[i]->dtype == DSV4_DT_Q3 || t[i]->dtype == DSV4_DT_QS8)
            return DSV4_MODEL_INCOMPAT_QBLOCK;
    return 0;
}

int dsv4_model_write(int fd, const dsv4_tensor *const *t, size_t n, const dsv4_blob *blobs, size_t nblobs,
                     dsv4_tensor_hook each, void *hctx, dsv4_progress_fn progress, void *pctx,
                     uint8_t fp_out[HASH], dsv4_err *err)
{
    dsv4_buf meta = DSV4_BUF_INIT;
    uint8_t (*hash)[HASH] = NULL, header[DSV4_MODEL_ALIGN];
    uint64_t *off = NULL, dir_off, data_off, pos, total = 0, done = 0;
    size_t dir_pos;
    const char *cfg = NULL;
    size_t cfg_len = 0;
    int rc = 0;

    for (size_t b = 0; b < nblobs; b++) {
        if (strlen(blobs[b].name) >= BLOB_NAME)
            return dsv4_err_set(err, DSV4_E_INVALID, "blob name '%s' too long", blobs[b].name);
        if (!strcmp(blobs[b].name, "config.json")) {
            cfg = blobs[b].data;
            cfg_len = blobs[b].len;
        }
    }
    if (!cfg)
        return dsv4_err_set(err, DSV4_E_INVALID, "a model file needs a config.json blob");
    hash = calloc(n ? n : 1, sizeof *hash);
    off = calloc(n ? n : 1, sizeof *off);
    if (!hash || !off) {
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        goto out;
    }

    /* Metadata region: blob table, blobs, directory (hashes patched later). */
    for (size_t b = 0; b < nblobs; b++) {
        char name[BLOB_NAME] = { 0 };
        memcpy(name, blobs[b].name, strlen(blobs[b].name));
        dsv4_buf_append(&meta, name, BLOB_NAME);
        dsv4_buf_put_le64(&meta, 0);    /* offset, patched below */
        dsv4_buf_put_le64(&meta, blobs[b].len);
        dsv4_buf_put_le64(&meta, 0);
    }
    if (meta.oom) {
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        goto out;
    }
    for (size_t b = 0; b < nblobs; b++) {
        dsv4_le64_put(meta.data + b * BLOB_REC + BLOB_NAME, DSV4_MODEL_ALIGN + meta.len);
        dsv4_buf_append(&meta, blobs[b].data, blobs[b].len);
        dsv4_buf_pad(&meta, 8);
    }
    dir_off = DSV4_MODEL_ALIGN + meta.len;
    dir_pos = meta.len;
    for (size_t i = 0; i < n; i++) {
        size_t nl = strlen(t[i]->name);
        if (nl == 0 || nl > MAX_NAME) {
            rc = dsv4_err_set(err, DSV4_E_INVALID, "tensor name of %zu bytes", nl);
            goto out;
        }
        dsv4_buf_put_le16(&meta, (uint16_t)nl);
        dsv4_buf_append(&meta, &(uint8_t){ (uint8_t)t[i]->dtype }, 1);
        dsv4_buf_append(&meta, &(uint8_t){ (uint8_t)t[i]->ndim }, 1);
        dsv4_buf_put_le32(&meta, 0);
        for (int d = 0; d < DSV4_MAX_DIMS; d++)
            dsv4_buf_put_le64(&meta, d < t[i]->ndim ? (uint64_t)t[i]->shape[d] : 0);
        dsv4_buf_put_le64(&meta, 0);    /* offset, patched below */
        dsv4_buf_put_le64(&meta, t[i]->nbytes);
        dsv4_buf_append(&meta, (uint8_t[HASH]){ 0 }, HASH);
        dsv4_buf_append(&meta, t[i]->name, nl);
        dsv4_buf_pad(&meta, 8);
        total += t[i]->nbytes;
    }
    if (meta.oom) {
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        goto out;
    }
    data_off = align_up(DSV4_MODEL_ALIGN + meta.len, DSV4_MODEL_ALIGN);
    pos = data_off;
    for (size_t i = 0; i < n; i++) {
        off[i] = pos;
        pos = align_up(pos + t[i]->nbytes, DSV4_MODEL_ALIGN);
    }

    /* Tensor data, hashed as it is written; the source pages are dropped
     * behind us so a checkpoint larger than RAM streams through. */
    for (size_t i = 0; i < n; i++) {
        uint64_t left = t[i]->nbytes, o = off[i];
        crypto_generichash_state hs;
        crypto_generichash_init(&hs, NULL, 0, HASH);
        /* value checks run first, while the pages are still resident; a
         * producer hook may also fill the data now, so it is read after */
        if (each && (rc = each(hctx, t[i], err)))
            goto out;
        const uint8_t *src = t[i]->data;
        while (left) {
            size_t chunk = left > (64u << 20) ? (64u << 20) : (size_t)left;
            crypto_generichash_update(&hs, src, chunk);
            if ((rc = pwrite_all(fd, src, chunk, o, err)))
                goto out;
#ifdef MADV_PAGEOUT
            {
                /* reclaim the source pages just consumed.  Not MADV_DONTNEED:
                 * the views are borrowed and may be anonymous memory, which
                 * DONTNEED would zero under the caller. */
                uintptr_t a = ((uintptr_t)src + 4095) & ~(uintptr_t)4095, e = (uintptr_t)(src + chunk) & ~(uintptr_t)4095;
                if (e > a)
                    madvise((void *)a, e - a, MADV_PAGEOUT);
            }
#endif
            sync_file_range(fd, (off_t)o, (off_t)chunk, SYNC_FILE_RANGE_WRITE);
            src += chunk;
            o += chunk;
            left -= chunk;
            done += chunk;
            if (progress)
                progress(pctx, done, total);
        }
        crypto_generichash_final(&hs, hash[i], HASH);
    }

    /* Patch offsets and hashes into the directory. */
    {
        size_t p = dir_pos;
        for (size_t i = 0; i < n; i++) {
            size_t nl = strlen(t[i]->name);
            dsv4_le64_put(meta.data + p + 40, off[i]);
            memcpy(meta.data + p + 56, hash[i], HASH);
            p += align_up(DIR_FIXED + nl, 8);
        }
    }
    if ((rc = pwrite_all(fd, meta.data, meta.len, DSV4_MODEL_ALIGN, err)))
        goto out;
    /* make the file end at the last tensor's end */
    if (ftruncate(fd, (off_t)(n ? off[n - 1] + t[n - 1]->nbytes : data_off))) {
        rc = dsv4_err_set(err, DSV4_E_IO, "cannot size the output: %s", strerror(errno));
        goto out;
    }

    memset(header, 0, sizeof header);
    memcpy(header + H_SIG, model_sig, 8);
    dsv4_le16_put(header + H_MAJOR, 1);
    dsv4_le16_put(header + H_MINOR, 0);
    dsv4_le32_put(header + H_HBYTES, H_SIZE);
    dsv4_le64_put(header + H_INCOMPAT, incompat_of(t, n));
    dsv4_le64_put(header + H_FILE_BYTES, n ? off[n - 1] + t[n - 1]->nbytes : data_off);
    dsv4_le64_put(header + H_META_OFF, DSV4_MODEL_ALIGN);
    dsv4_le64_put(header + H_META_BYTES, meta.len);
    dsv4_le64_put(header + H_DATA_OFF, data_off);
    dsv4_le64_put(header + H_DATA_BYTES, (n ? off[n - 1] + t[n - 1]->nbytes : data_off) - data_off);
    dsv4_le32_put(header + H_NBLOBS, (uint32_t)nblobs);
    dsv4_le32_put(header + H_ALIGN, DSV4_MODEL_ALIGN);
    dsv4_le64_put(header + H_NTENSORS, n);
    dsv4_le64_put(header + H_DIR_OFF, dir_off);
    dsv4_le64_put(header + H_DIR_BYTES, meta.len - dir_pos);
    fingerprint(header + H_FINGERPRINT, cfg, cfg_len, t, hash, n);
    blake(header + H_META_HASH, meta.data, meta.len);
    blake(header + H_HEADER_HASH, header, H_HEADER_HASH);
    if ((rc = pwrite_all(fd, header, sizeof header, 0, err)))
        goto out;
    if (fp_out)
        memcpy(fp_out, header + H_FINGERPRINT, HASH);
out:
    dsv4_buf_release(&meta);
    free(hash);
    free(off);
    return rc;
}

/* ---- reader ---- */

#define FAIL(code, ...) do { rc = dsv4_err_set(err, code, __VA_ARGS__); goto fail; } while (0)

static int cmp_idx_name(const void *a, const void *b, void *ctx)
{
    char **names = ctx;
    return strcmp(names[*(const size_t *)a], names[*(const size_t *)b]);
}

int dsv4_model_open(dsv4_model **out, const char *path, dsv4_err *err)
{
    dsv4_model *m = calloc(1, sizeof *m);
    const uint8_t *h, *meta;
    uint64_t fsize, meta_off, meta_bytes, data_off, data_bytes, dir_off, dir_bytes, ntens, p, end, data_end = 0;
    uint32_t nblobs;
    uint8_t dig[HASH];
    const dsv4_tensor **views = NULL;
    int rc;
    *out = NULL;
    if (!m)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    if ((rc = dsv4_map_open(&m->map, path, err)))
        goto fail;
    h = m->map.data;
    fsize = m->map.size;
    if (fsize < 8 || memcmp(h, model_sig, 8)) {
        if (fsize >= 8 && dsv4_le64_get(h) < 100000000 && fsize > 9 && h[8] == '{')
            FAIL(DSV4_E_FORMAT, "'%s': this is a safetensors file, not a .dsv4 model (convert it with dsv4-convert)", path);
        FAIL(DSV4_E_FORMAT, "'%s': not a dsv4 model file (bad signature)", path);
    }
    if (fsize < DSV4_MODEL_ALIGN)
        FAIL(DSV4_E_TRUNCATED, "'%s': truncated (%llu bytes, the header alone is %d)", path,
             (unsigned long long)fsize, DSV4_MODEL_ALIGN);
    m->major = dsv4_le16_get(h + H_MAJOR);
    m->minor = dsv4_le16_get(h + H_MINOR);
    if (m->major != 1)
        FAIL(DSV4_E_VERSION, "'%s': model format version %d.%d is not supported (this build reads 1.x)", path,
             m->major, m->minor);
    blake(dig, h, H_HEADER_HASH);
    if (memcmp(dig, h + H_HEADER_HASH, HASH))
        FAIL(DSV4_E_CHECKSUM, "'%s': header checksum mismatch (corrupted header)", path);
    if (dsv4_le64_get(h + H_INCOMPAT) & ~(uint64_t)DSV4_MODEL_INCOMPAT_KNOWN)
        FAIL(DSV4_E_VERSION, "'%s': uses incompatible features 0x%llx unknown to this build", path,
             (unsigned long long)(dsv4_le64_get(h + H_INCOMPAT) & ~(uint64_t)DSV4_MODEL_INCOMPAT_KNOWN));
    meta_off = dsv4_le64_get(h + H_META_OFF);
    meta_bytes = dsv4_le64_get(h + H_META_BYTES);
    data_off = dsv4_le64_get(h + H_DATA_OFF);
    data_bytes = dsv4_le64_get(h + H_DATA_BYTES);
    dir_off = dsv4_le64_get(h + H_DIR_OFF);
    dir_bytes = dsv4_le64_get(h + H_DIR_BYTES);
    ntens = dsv4_le64_get(h + H_NTENSORS);
    nblobs = dsv4_le32_get(h + H_NBLOBS);
    if (dsv4_le64_get(h + H_FILE_BYTES) != fsize)
        FAIL(fsize < dsv4_le64_get(h + H_FILE_BYTES) ? DSV4_E_TRUNCATED : DSV4_E_FORMAT,
             "'%s': file has %llu bytes but its header says %llu%s", path, (unsigned long long)fsize,
             (unsigned long long)dsv4_le64_get(h + H_FILE_BYTES),
             fsize < dsv4_le64_get(h + H_FILE_BYTES) ? " (truncated)" : "");
    /* Every field is the file's word, checksums included (a hostile writer
     * recomputes them): compare without sums that could wrap.  The regions
     * follow each other: header, metadata, data. */
    if (meta_off < DSV4_MODEL_ALIGN || meta_off > fsize || meta_bytes > fsize - meta_off ||
        data_off < meta_off + meta_bytes || data_off > fsize || data_bytes != fsize - data_off ||
        dir_off < meta_off || dir_off > meta_off + meta_bytes || dir_bytes > meta_off + meta_bytes - dir_off ||
        ntens > dir_bytes / DIR_FIXED + 1 || (uint64_t)nblobs * BLOB_REC > meta_bytes)
        FAIL(DSV4_E_FORMAT, "'%s': inconsistent section offsets in the header", path);
    meta = h + meta_off;
    blake(dig, meta, (size_t)meta_bytes);
    if (memcmp(dig, h + H_META_HASH, HASH))
        FAIL(DSV4_E_CHECKSUM, "'%s': metadata checksum mismatch (corrupted directory or config)", path);
    memcpy(m->fingerprint, h + H_FINGERPRINT, HASH);

    m->nblobs = nblobs;
    m->blob_names = calloc(nblobs ? nblobs : 1, sizeof *m->blob_names);
    m->blob_data = calloc(nblobs ? nblobs : 1, sizeof *m->blob_data);
    m->blob_len = calloc(nblobs ? nblobs : 1, sizeof *m->blob_len);
    if (!m->blob_names || !m->blob_data || !m->blob_len)
        FAIL(DSV4_E_NOMEM, "out of memory");
    for (uint32_t b = 0; b < nblobs; b++) {
        const uint8_t *r = meta + (size_t)b * BLOB_REC;
        uint64_t bo = dsv4_le64_get(r + BLOB_NAME), bl = dsv4_le64_get(r + BLOB_NAME + 8);
        memcpy(m->blob_names[b], r, BLOB_NAME);
        m->blob_names[b][BLOB_NAME] = 0;
        if (bo < meta_off || bo > meta_off + meta_bytes || bl > meta_off + meta_bytes - bo)
            FAIL(DSV4_E_FORMAT, "'%s': blob '%s' lies outside the metadata region", path, m->blob_names[b]);
        m->blob_data[b] = (const char *)h + bo;
        m->blob_len[b] = (size_t)bl;
    }

    m->t = calloc(ntens ? ntens : 1, sizeof *m->t);
    m->names = calloc(ntens ? ntens : 1, sizeof *m->names);
    m->hash = calloc(ntens ? ntens : 1, sizeof *m->hash);
    m->sorted = calloc(ntens ? ntens : 1, sizeof *m->sorted);
    views = calloc(ntens ? ntens : 1, sizeof *views);
    if (!m->t || !m->names || !m->hash || !m->sorted || !views)
        FAIL(DSV4_E_NOMEM, "out of memory");
    m->n_names = (size_t)ntens;
    p = dir_off;
    end = dir_off + dir_bytes;
    for (uint64_t i = 0; i < ntens; i++) {
        const uint8_t *r = h + p;
        uint64_t nl, to, tb, numel = 1, span = 1;
        dsv4_tensor *t = &m->t[i];
        /* p > end: the previous entry's padding ran past the directory */
        if (p > end || end - p < DIR_FIXED)
            FAIL(DSV4_E_FORMAT, "'%s': tensor directory ends early (entry %llu)", path, (unsigned long long)i);
        nl = dsv4_le16_get(r);
        if (nl == 0 || nl > MAX_NAME || end - p < DIR_FIXED + nl)
            FAIL(DSV4_E_FORMAT, "'%s': bad name length in directory entry %llu", path, (unsigned long long)i);
        m->names[i] = strndup((const char *)r + DIR_FIXED, (size_t)nl);
        if (!m->names[i])
            FAIL(DSV4_E_NOMEM, "out of memory");
        t->name = m->names[i];
        t->dtype = (dsv4_dtype)r[2];
        t->ndim = r[3];
        if (!dsv4_dtype_size(t->dtype) || t->ndim > DSV4_MAX_DIMS)
            FAIL(DSV4_E_FORMAT, "'%s': tensor '%s' has an unknown dtype or rank", path, t->name);
        for (int d = 0; d < t->ndim; d++) {
            uint64_t v = dsv4_le64_get(r + 8 + 8 * d);
            /* span: the product of the nonzero dims, so that a zero dim does
             * not let the others multiply past int64 where rows are sized */
            if (v > (1ull << 40) || (v && span > (1ull << 50) / v))
                FAIL(DSV4_E_FORMAT, "'%s': tensor '%s' has an absurd shape", path, t->name);
            t->shape[d] = (int64_t)v;
            span *= v ? v : 1;
            numel *= v;
        }
        to = dsv4_le64_get(r + 40);
        tb = dsv4_le64_get(r + 48);
        if (tb != numel * dsv4_dtype_size(t->dtype))
            FAIL(DSV4_E_FORMAT, "'%s': tensor '%s': %llu bytes do not match its shape", path, t->name,
                 (unsigned long long)tb);
        if (to < data_off || to > fsize || tb > fsize - to || to % DSV4_MODEL_ALIGN)
            FAIL(DSV4_E_FORMAT, "'%s': tensor '%s' lies outside the data region", path, t->name);
        /* offsets increase in directory order, so no two tensors share bytes */
        if (to < data_end)
            FAIL(DSV4_E_FORMAT, "'%s': tensor '%s' overlaps the previous tensor", path, t->name);
        data_end = to + tb;
        t->data = h + to;
        t->nbytes = tb;
        memcpy(m->hash[i], r + 56, HASH);
        views[i] = t;
        m->sorted[i] = i;
        p += align_up(DIR_FIXED + nl, 8);
    }
    m->n = (size_t)ntens;
    qsort_r(m->sorted, m->n, sizeof *m->sorted, cmp_idx_name, m->names);
    for (size_t i = 1; i < m->n; i++)
        if (!strcmp(m->names[m->sorted[i]], m->names[m->sorted[i - 1]]))
            FAIL(DSV4_E_FORMAT, "'%s': tensor '%s' appears twice", path, m->names[m->sorted[i]]);
    {
        size_t cl;
        const char *cfg = dsv4_model_blob(m, "config.json", &cl);
        if (!cfg)
            FAIL(DSV4_E_FORMAT, "'%s': no config.json inside", path);
        if ((rc = dsv4_config_parse(&m->cfg, cfg, cl, err))) {
            dsv4_err_prefix(err, "'%s'", path);
            goto fail;
        }
        /* The stored fingerprint must be the one its content implies. */
        fingerprint(dig, cfg, cl, views, m->hash, m->n);
        if (memcmp(dig, m->fingerprint, HASH))
            FAIL(DSV4_E_CHECKSUM, "'%s': fingerprint does not match the directory", path);
    }
    free(views);
    *out = m;
    return 0;
fail:
    free(views);
    dsv4_model_close(m);
    return rc;
}

void dsv4_model_close(dsv4_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; m->names && i < m->n_names; i++)
        free(m->names[i]);
    free(m->names);
    free(m->t);
    free(m->hash);
    free(m->sorted);
    free(m->blob_names);
    free(m->blob_data);
    free(m->blob_len);
    dsv4_map_close(&m->map);
    free(m);
}

const dsv4_config *dsv4_model_config(const dsv4_model *m) { return &m->cfg; }
size_t dsv4_model_count(const dsv4_model *m) { return m->n; }
const dsv4_tensor *dsv4_model_tensor(const dsv4_model *m, size_t i) { return i < m->n ? &m->t[i] : NULL; }
const uint8_t *dsv4_model_fingerprint(const dsv4_model *m) { return m->fingerprint; }
uint64_t dsv4_model_file_bytes(const dsv4_model *m) { return m->map.size; }
const char *dsv4_model_path(const dsv4_model *m) { return m->map.path; }
size_t dsv4_model_blob_count(const dsv4_model *m) { return m->nblobs; }
const char *dsv4_model_blob_name(const dsv4_model *m, size_t i) { return i < m->nblobs ? m->blob_names[i] : NULL; }

void dsv4_model_version(const dsv4_model *m, int *major, int *minor)
{
    *major = m->major;
    *minor = m->minor;
}

void dsv4_model_fingerprint_hex(const dsv4_model *m, char out[2 * HASH + 1])
{
    sodium_bin2hex(out, 2 * HASH + 1, m->fingerprint, HASH);
}

const dsv4_tensor *dsv4_model_find(const dsv4_model *m, const char *name)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(m->names[m->sorted[mid]], name);
        if (!c)
            return &m->t[m->sorted[mid]];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *dsv4_model_blob(const dsv4_model *m, const char *name, size_t *len)
{
    for (size_t b = 0; b < m->nblobs; b++)
        if (!strcmp(m->blob_names[b], name)) {
            if (len)
                *len = m->blob_len[b];
            return m->blob_data[b];
        }
    if (len)
        *len = 0;
    return NULL;
}

int dsv4_model_verify(const dsv4_model *m, dsv4_report_fn report, void *rctx,
                      dsv4_progress_fn progress, void *pctx, dsv4_err *err)
{
    uint64_t total = 0, done = 0;
    int bad = 0;
    for (size_t i = 0; i < m->n; i++)
        total += m->t[i].nbytes;
    for (size_t i = 0; i < m->n; i++) {
        uint8_t dig[HASH];
        const uint8_t *p = m->t[i].data;
        uint64_t left = m->t[i].nbytes;
        crypto_generichash_state hs;
        crypto_generichash_init(&hs, NULL, 0, HASH);
        while (left) {
            size_t chunk = left > (64u << 20) ? (64u << 20) : (size_t)left;
            crypto_generichash_update(&hs, p, chunk);
            dsv4_map_dontneed(&m->map, (uint64_t)(p - m->map.data), chunk);
            p += chunk;
            left -= chunk;
            done += chunk;
            if (progress)
                progress(pctx, done, total);
        }
        crypto_generichash_final(&hs, dig, HASH);
        if (memcmp(dig, m->hash[i], HASH)) {
            bad++;
            if (report)
                report(rctx, m->t[i].name, "checksum mismatch: tensor data is corrupted");
        }
    }
    (void)err;
    return bad;
}
