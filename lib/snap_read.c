/* snap_read — the KV snapshot reader (see snap.h, dsv4-snapshot(5)). */
#include "snap.h"
#include "buf.h"
#include "pool.h"
#include "snap_impl.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#define MAX_DIM (1 << 20)
/* The part of a state that dsv4_kv_new allocates, and partly fills, from the
 * header alone, before any payload arrives: window rings and compressor rows.
 * V4 Pro needs under 26 MiB; without this cap a 4 KB header could claim 256
 * layers of head_dim 2^20 and make the reader fill hundreds of GB. */
#define MAX_FIXED_STATE (1ull << 30)

struct rd {
    int fd;
    const char *name;
    crypto_generichash_state hs;
    uint64_t bytes, chunks;
};

/* Read exactly n bytes; what: the part being read, for the message. */
static int rd_raw(struct rd *r, void *p, size_t n, const char *what, dsv4_err *err)
{
    uint8_t *b = p;
    while (n) {
        ssize_t k = read(r->fd, b, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return dsv4_err_set(err, DSV4_E_IO, "%s: cannot read: %s", r->name, strerror(errno));
        if (k == 0)
            return dsv4_err_set(err, DSV4_E_TRUNCATED, "%s: truncated: the stream ends inside the %s "
                                "(byte %llu)", r->name, what, (unsigned long long)r->bytes);
        b += k;
        n -= (size_t)k;
        r->bytes += (uint64_t)k;
    }
    return 0;
}

static int rd_all(struct rd *r, void *p, size_t n, const char *what, dsv4_err *err)
{
    int rc = rd_raw(r, p, n, what, err);
    if (!rc)
        crypto_generichash_update(&r->hs, p, n);
    return rc;
}

#define BAD(...) dsv4_err_set(err, DSV4_E_FORMAT, __VA_ARGS__)

/* The fixed part and layer records of a header already in h[0..hb). */
static int header_parse(const uint8_t *h, dsv4_snap_info *in, const char *name, dsv4_err *err)
{
    int64_t v[9];
    in->compact = (int)dsv4_le32_get(h + 20);
    in->n_tokens = (int64_t)dsv4_le64_get(h + 24);
    in->n_mtp = (int64_t)dsv4_le64_get(h + 32);
    in->n_layers = (int)dsv4_le32_get(h + 40);
    in->n_all = (int)dsv4_le32_get(h + 44);
    for (int i = 0; i < 9; i++)
        v[i] = dsv4_le32_get(h + 48 + 4 * i);
    in->vocab_size = v[0];
    in->dim = v[1];
    in->hc_mult = v[2];
    in->window = v[3];
    in->head_dim = v[4];
    in->rope_dim = v[5];
    in->index_head_dim = v[6];
    in->entry_bytes = (uint32_t)v[7];
    in->ikey_bytes = (uint32_t)v[8];
    memcpy(in->fingerprint, h + 96, 32);
    if (in->compact != 0 && in->compact != 1)
        return BAD("%s: unknown KV layout %d", name, in->compact);
    if (in->n_tokens < 0 || in->n_tokens > (int64_t)1 << 40 || in->n_mtp < 0 || in->n_mtp > in->n_tokens)
        return BAD("%s: bad token counts %lld (MTP %lld)", name, (long long)in->n_tokens, (long long)in->n_mtp);
    for (int i = 0; i < 7; i++)
        if (v[i] < 1 || v[i] > (i == 0 ? INT32_MAX : MAX_DIM))
            return BAD("%s: bad model dimension %lld in the header (field %d)", name, (long long)v[i], i);
    if (in->rope_dim >= in->head_dim || in->hc_mult > 16 || in->index_head_dim % 32 || in->head_dim % 64 ||
        in->rope_dim % 2)
        return BAD("%s: inconsistent model dimensions in the header", name);
    for (int l = 0; l < in->n_all; l++) {
        const uint8_t *r = h + DSV4_SNAP_FIXED_BYTES + l * DSV4_SNAP_LAYER_BYTES;
        in->ratios[l] = (int)dsv4_le32_get(r);
        in->n_ent[l] = (int64_t)dsv4_le64_get(r + 8);
        int64_t n = l < in->n_layers ? in->n_tokens : in->n_mtp;
        if (in->ratios[l] != 0 && in->ratios[l] != 4 && in->ratios[l] != 128)
            return BAD("%s: layer %d has compression ratio %d (not 0, 4 or 128)", name, l, in->ratios[l]);
        if (in->n_ent[l] != (in->ratios[l] ? n / in->ratios[l] : 0))
            return BAD("%s: layer %d claims %lld compressed entries for %lld positions", name, l,
                       (long long)in->n_ent[l], (long long)n);
    }
    uint64_t fixed = 0;   /* as dsv4_kv_new allocates it; at most 2^49, no overflow */
    for (int l = 0; l < in->n_all; l++) {
        fixed += (uint64_t)in->window * in->entry_bytes;
        if (in->ratios[l] == 4)
            fixed += (uint64_t)(8 * 2 * in->head_dim + 8 * 2 * in->index_head_dim) * 2 * sizeof(float);
        else if (in->ratios[l])
            fixed += (uint64_t)(in->ratios[l] * in->head_dim) * 2 * sizeof(float);
    }
    if (fixed > MAX_FIXED_STATE)
        return BAD("%s: implausible dimensions in the header: the state would need %llu MiB before any data",
                   name, (unsigned long long)(fixed >> 20));
    return 0;
}

void dsv4_snap_info_config(const dsv4_snap_info *in, dsv4_config *c)
{
    memset(c, 0, sizeof *c);
    c->n_layers = in->n_layers;
    c->n_ratios = in->n_all;
    c->vocab_size = in->vocab_size;
    c->dim = in->dim;
    c->hc_mult = in->hc_mult;
    c->window = in->window;
    c->head_dim = in->head_dim;
    c->rope_dim = in->rope_dim;
    c->index_head_dim = in->index_head_dim;
    for (int l = 0; l < in->n_all; l++)
        c->compress_ratios[l] = in->ratios[l];
}

static int check_model(const dsv4_snap_info *in, const dsv4_snap_ropts *o, dsv4_err *err)
{
    const dsv4_config *c = o->config;
    if (o->fingerprint && memcmp(o->fingerprint, in->fingerprint, 32)) {
        char a[65], b[65];
        for (int i = 0; i < 32; i++) {
            snprintf(a + 2 * i, 3, "%02x", in->fingerprint[i]);
            snprintf(b + 2 * i, 3, "%02x", o->fingerprint[i]);
        }
        return dsv4_err_set(err, DSV4_E_MISMATCH, "%s was made with another model (fingerprint %.16s..., "
                            "the model's is %.16s...)", o->name, a, b);
    }
    if (!c)
        return 0;
    int same = c->n_layers == in->n_layers && c->n_ratios == in->n_all && c->vocab_size == in->vocab_size &&
               c->dim == in->dim && c->hc_mult == in->hc_mult && c->window == in->window &&
               c->head_dim == in->head_dim && c->rope_dim == in->rope_dim &&
               c->index_head_dim == in->index_head_dim;
    for (int l = 0; same && l < in->n_all; l++)
        same = c->compress_ratios[l] == in->ratios[l];
    if (!same)
        return dsv4_err_set(err, DSV4_E_MISMATCH, "%s: its layers and dimensions are not the model's", o->name);
    if (in->n_tokens > c->max_position)
        return dsv4_err_set(err, DSV4_E_RANGE, "%s holds %lld tokens, more than the model's "
                            "max_position_embeddings %lld", o->name, (long long)in->n_tokens,
                            (long long)c->max_position);
    return 0;
}

static int read_header(struct rd *r, const dsv4_snap_ropts *o, dsv4_snap_info *in, dsv4_err *err)
{
    uint8_t fixed[DSV4_SNAP_FIXED_BYTES], *h = NULL, sum[32];
    int rc;
    memset(in, 0, sizeof *in);
    if ((rc = rd_all(r, fixed, 20, "header", err)))
        return rc;
    if (memcmp(fixed, DSV4_SNAP_MAGIC, 8))
        return BAD("%s is not a KV snapshot (bad signature)", o->name);
    in->major = dsv4_le16_get(fixed + 8);
    in->minor = dsv4_le16_get(fixed + 10);
    in->flags = dsv4_le16_get(fixed + 12);
    in->header_bytes = dsv4_le32_get(fixed + 16);
    if (in->major != DSV4_SNAP_MAJOR)
        return dsv4_err_set(err, DSV4_E_VERSION, "%s: snapshot format version %u.%u is not supported (this "
                            "build reads %d.x)", o->name, in->major, in->minor, DSV4_SNAP_MAJOR);
    if (in->flags & DSV4_SNAP_FLAGS_INCOMPAT)
        return dsv4_err_set(err, DSV4_E_VERSION, "%s: the snapshot uses features this build does not know "
                            "(flags 0x%04x)", o->name, in->flags);
    if (in->header_bytes < dsv4_snap_header_size(0) || in->header_bytes > dsv4_snap_header_size(DSV4_MAX_LAYERS) + (1u << 16))
        return BAD("%s: bad header size %u", o->name, in->header_bytes);
    if (!(h = malloc(in->header_bytes)))
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    memcpy(h, fixed, 20);
    if ((rc = rd_all(r, h + 20, in->header_bytes - 52, "header", err)) ||
        (rc = rd_raw(r, h + in->header_bytes - 32, 32, "header", err)))
        goto out;
    crypto_generichash_update(&r->hs, h + in->header_bytes - 32, 32);
    crypto_generichash(sum, 32, h, in->header_bytes - 32, NULL, 0);
    if (sodium_memcmp(sum, h + in->header_bytes - 32, 32)) {
        rc = dsv4_err_set(err, DSV4_E_CHECKSUM, "%s: the header is damaged (checksum mismatch)", o->name);
        goto out;
    }
    in->n_all = (int)dsv4_le32_get(h + 44);
    in->n_layers = (int)dsv4_le32_get(h + 40);
    if (in->n_layers < 1 || in->n_all < in->n_layers || in->n_all > DSV4_MAX_LAYERS ||
        in->header_bytes < dsv4_snap_header_size(in->n_all)) {
        rc = BAD("%s: bad layer count %d (%d with MTP) for a %u-byte header", o->name, in->n_layers, in->n_all,
                 in->header_bytes);
        goto out;
    }
    if (!(rc = header_parse(h, in, o->name, err)))
        rc = check_model(in, o, err);
out:
    free(h);
    return rc;
}

/* Where a section's bytes go. */
struct sect_dst {
    int kind, index;
    uint64_t raw;
    int64_t n_ent;                  /* layers: compressed entries */
    dsv4_kvstate *kv;               /* layers, or NULL */
    uint8_t **flat;                 /* tokens / hidden: a malloc'd array grown as parts arrive */
};

/* Layer l needs room for the entries that bytes [0, end) of its payload reach. */
static int reserve_upto(dsv4_kvstate *s, int l, uint64_t end, int64_t n_ent, dsv4_err *err)
{
    dsv4_kv_layer *L = &s->layers[l];
    if (!L->ratio || !n_ent)
        return 0;
    int64_t save = L->n_ent;
    L->n_ent = 0;
    uint64_t before = dsv4_snap_layer_bytes(s, l);   /* window + compressor rows */
    L->n_ent = save;
    if (end <= before)
        return 0;
    uint64_t k = (end - before + s->entry_bytes - 1) / s->entry_bytes;
    return dsv4_kv_reserve(s, l, (int64_t)k < n_ent ? (int64_t)k : n_ent, err);
}

/* One chunk read from the stream, checked in parallel with the others of its
 * batch: slot j of the buffers belongs to job j, the context to the thread. */
struct rjob {
    int si;                         /* section */
    uint32_t part;
    uint64_t off, n, fb;
    uint8_t ch[DSV4_SNAP_CHUNK_BYTES];
    int bad;                        /* 1 frame hash, 2 decompression, 3 payload hash */
    size_t got;
};

struct rbatch {
    struct rjob *jobs;
    uint8_t **raw, **frame;
    size_t *raw_cap, *frame_cap;
    ZSTD_DCtx **dc;
};

static int ensure(uint8_t **p, size_t *cap, size_t n)
{
    if (n <= *cap)
        return 0;
    uint8_t *q = realloc(*p, n);
    if (!q)
        return DSV4_E_NOMEM;
    *p = q;
    *cap = n;
    return 0;
}

static void check_chunks(void *ctx, int64_t i0, int64_t i1, int tid)
{
    struct rbatch *b = ctx;
    for (int64_t i = i0; i < i1; i++) {
        struct rjob *j = &b->jobs[i];
        uint8_t sum[32];
        j->bad = 0;
        crypto_generichash(sum, 32, b->frame[i], (size_t)j->fb, NULL, 0);
        if (sodium_memcmp(sum, j->ch + 64, 32)) {
            j->bad = 1;
            continue;
        }
        j->got = ZSTD_decompressDCtx(b->dc[tid], b->raw[i], (size_t)j->n + 1, b->frame[i], (size_t)j->fb);
        if (ZSTD_isError(j->got) || j->got != j->n) {
            j->bad = 2;
            continue;
        }
        crypto_generichash(sum, 32, b->raw[i], (size_t)j->n, NULL, 0);
        if (sodium_memcmp(sum, j->ch + 32, 32))
            j->bad = 3;
    }
}

static int job_error(const struct rjob *j, const struct sect_dst *d, const char *name, dsv4_err *err)
{
    char label[32];
    dsv4_snap_section_label(label, sizeof label, d->kind, d->index);
    if (j->bad == 2)
        return dsv4_err_set(err, DSV4_E_CHECKSUM, "%s: %s: chunk %u does not decompress to its %llu bytes (%s)",
                            name, label, j->part, (unsigned long long)j->n,
                            ZSTD_isError(j->got) ? ZSTD_getErrorName(j->got) : "wrong size");
    return dsv4_err_set(err, DSV4_E_CHECKSUM, "%s: %s: chunk %u is damaged (checksum mismatch)", name, label,
                        j->part);
}

/* Where the reader is in the sections. */
struct rpos {
    int si;
    uint64_t off;
    uint32_t part;
};

/* Read the next chunk's header and frame into job j (slot buffers of b). */
static int read_chunk(struct rd *r, struct rbatch *b, int slot, const struct sect_dst *d, struct rpos *p,
                      const char *name, dsv4_err *err)
{
    struct rjob *j = &b->jobs[slot];
    char label[32], what[64];
    int rc;
    dsv4_snap_section_label(label, sizeof label, d->kind, d->index);
    snprintf(what, sizeof what, "%s chunk header", label);
    if ((rc = rd_all(r, j->ch, sizeof j->ch, what, err)))
        return rc;
    const uint8_t *ch = j->ch;
    uint32_t kind = dsv4_le32_get(ch), index = dsv4_le32_get(ch + 4), part = dsv4_le32_get(ch + 8);
    uint32_t flags = dsv4_le32_get(ch + 12);
    uint64_t n = dsv4_le64_get(ch + 16), fb = dsv4_le64_get(ch + 24);
    if (kind != (uint32_t)d->kind || index != (uint32_t)d->index || part != p->part)
        return BAD("%s: byte %llu: expected chunk %u of the %s, found kind %u index %u part %u", name,
                   (unsigned long long)(r->bytes - sizeof j->ch), p->part, label, kind, index, part);
    if (flags & ~1u)
        return BAD("%s: %s: unknown chunk flags 0x%x", name, label, flags);
    int last = flags & 1;
    if (n > DSV4_SNAP_READ_PART_MAX || n > d->raw - p->off || (last && p->off + n != d->raw) || (!last && n == 0) ||
        fb > ZSTD_compressBound((size_t)n) || fb < 9)
        return BAD("%s: %s: chunk %u has bad sizes (%llu raw, %llu compressed; the section holds %llu bytes)",
                   name, label, part, (unsigned long long)n, (unsigned long long)fb, (unsigned long long)d->raw);
    if (ensure(&b->frame[slot], &b->frame_cap[slot], (size_t)fb) ||
        ensure(&b->raw[slot], &b->raw_cap[slot], (size_t)n + 1))
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory reading %s", name);
    snprintf(what, sizeof what, "%s data", label);
    if ((rc = rd_raw(r, b->frame[slot], (size_t)fb, what, err)))
        return rc;
    j->si = p->si;
    j->part = part;
    j->off = p->off;
    j->n = n;
    j->fb = fb;
    r->chunks++;
    p->off += n;
    p->part++;
    if (last) {
        p->si++;
        p->off = 0;
        p->part = 0;
    }
    return 0;
}

/* Put a checked chunk's payload where its section goes. */
static int place_chunk(const struct rjob *j, const uint8_t *raw, const struct sect_dst *d, const char *name,
                       dsv4_err *err)
{
    int rc;
    if (d->flat) {
        uint8_t *q = realloc(*d->flat, (size_t)(j->off + j->n) + 1);
        if (!q)
            return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory reading %s", name);
        *d->flat = q;
        memcpy(q + j->off, raw, (size_t)j->n);
    } else if (d->kv) {
        if ((rc = reserve_upto(d->kv, d->index, j->off + j->n, d->n_ent, err)))
            return rc;
        dsv4_snap_layer_copy(d->kv, d->index, j->off, j->n, (uint8_t *)raw, 1);
    }
    return 0;
}

/* Every chunk of every section, in batches of one per thread: read in
 * order, checked in parallel, placed in order.  The first problem in stream
 * order is the one reported. */
static int read_chunks(struct rd *r, const struct sect_dst *d, int n_sec, dsv4_snap_stats *st,
                       const dsv4_snap_ropts *o, uint64_t total, dsv4_err *err)
{
    int threads = o->threads > 1 ? o->threads : 1, rc = 0;
    struct rbatch b = { NULL, NULL, NULL, NULL, NULL, NULL };
    dsv4_pool *pool = NULL;
    struct rpos p = { 0, 0, 0 };
    uint64_t done = 0;
    b.jobs = calloc((size_t)threads, sizeof *b.jobs);
    b.raw = calloc((size_t)threads, sizeof *b.raw);
    b.frame = calloc((size_t)threads, sizeof *b.frame);
    b.raw_cap = calloc((size_t)threads, sizeof *b.raw_cap);
    b.frame_cap = calloc((size_t)threads, sizeof *b.frame_cap);
    b.dc = calloc((size_t)threads, sizeof *b.dc);
    if (!b.jobs || !b.raw || !b.frame || !b.raw_cap || !b.frame_cap || !b.dc) {
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory reading %s", o->name);
        goto out;
    }
    for (int t = 0; t < threads; t++)
        if (!(b.dc[t] = ZSTD_createDCtx())) {
            rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory reading %s", o->name);
            goto out;
        }
    if (threads > 1 && (rc = dsv4_pool_new(&pool, threads, err)))
        goto out;
    for (int i = 0; i < n_sec; i++) {
        st->sections[i].kind = d[i].kind;
        st->sections[i].index = d[i].index;
    }
    while (p.si < n_sec) {
        dsv4_err rerr = DSV4_ERR_INIT;
        int nb = 0, rrc = 0;
        while (nb < threads && p.si < n_sec && !(rrc = read_chunk(r, &b, nb, &d[p.si], &p, o->name, &rerr)))
            nb++;
        dsv4_pool_for(pool, nb, 1, check_chunks, &b);
        for (int i = 0; i < nb; i++) {
            const struct rjob *j = &b.jobs[i];
            dsv4_snap_section *ss = &st->sections[j->si];
            if (j->bad) {
                rc = job_error(j, &d[j->si], o->name, err);
                goto out;
            }
            if ((rc = place_chunk(j, b.raw[i], &d[j->si], o->name, err)))
                goto out;
            ss->parts++;
            ss->raw += j->n;
            ss->frame += j->fb;
            done += j->n;
            st->n_sections = j->si + 1;
            if (o->progress)
                o->progress(o->progress_ctx, done, total);
        }
        if (rrc) {
            *err = rerr;
            rc = rrc;
            goto out;
        }
    }
out:
    for (int t = 0; t < threads; t++) {
        free(b.raw ? b.raw[t] : NULL);
        free(b.frame ? b.frame[t] : NULL);
        ZSTD_freeDCtx(b.dc ? b.dc[t] : NULL);
    }
    free(b.jobs);
    free(b.raw);
    free(b.frame);
    free(b.raw_cap);
    free(b.frame_cap);
    free(b.dc);
    dsv4_pool_free(pool);
    return rc;
}

void dsv4_snap_release(dsv4_snap *sn)
{
    if (!sn)
        return;
    dsv4_kv_free(sn->kv);
    free(sn->tokens);
    free(sn->hidden);
    sn->kv = NULL;
    sn->tokens = NULL;
    sn->hidden = NULL;
}

/* Payload bytes of layer l for the header's counts (without a state). */
static uint64_t info_layer_bytes(const dsv4_snap_info *in, int l)
{
    int64_t n = l < in->n_layers ? in->n_tokens : in->n_mtp, r = in->ratios[l];
    uint64_t b = (uint64_t)(n < in->window ? n : in->window) * in->entry_bytes;
    if (r == 4)
        b += (uint64_t)(8 * (in->head_dim + in->index_head_dim) + (n % 4) * 4 * (in->head_dim + in->index_head_dim)) *
             sizeof(float) + (uint64_t)in->n_ent[l] * (in->entry_bytes + in->ikey_bytes);
    else if (r)
        b += (uint64_t)(2 * (n % r) * in->head_dim) * sizeof(float) + (uint64_t)in->n_ent[l] * in->entry_bytes;
    return b;
}

int dsv4_snap_read(int fd, const dsv4_snap_ropts *ropts, dsv4_snap *out, dsv4_snap_stats *stats, dsv4_err *err)
{
    dsv4_snap_ropts o = ropts ? *ropts : (dsv4_snap_ropts)DSV4_SNAP_ROPTS_INIT;
    dsv4_snap_stats st_local, *st = stats ? stats : &st_local;
    struct rd r = { fd, NULL, { { 0 } }, 0, 0 };
    struct sect_dst *dst = NULL;
    dsv4_snap_info *in = &out->info;
    uint8_t *tok = NULL, *hid = NULL, tr[DSV4_SNAP_TRAILER_BYTES], sum[32];
    dsv4_config kc;
    int rc;

    if (!o.name)
        o.name = "the snapshot";
    r.name = o.name;
    memset(st, 0, sizeof *st);
    memset(out, 0, sizeof *out);
    crypto_generichash_init(&r.hs, NULL, 0, 32);
    if ((rc = read_header(&r, &o, in, err)))
        goto fail;
    st->header_bytes = in->header_bytes;
    dsv4_snap_info_config(in, &kc);
    {
        size_t eb, ib;
        dsv4_kv_sizes(&kc, in->compact, &eb, &ib);
        if (eb != in->entry_bytes || ib != in->ikey_bytes) {
            rc = BAD("%s: entry sizes %u/%u do not match the %s layout", o.name, in->entry_bytes, in->ikey_bytes,
                     in->compact ? "compact" : "bf16");
            goto fail;
        }
    }
    if (o.load_state) {
        if ((rc = dsv4_kv_new(&out->kv, &kc, in->compact, err)))
            goto fail;
        out->kv->n_tokens = in->n_tokens;
        out->kv->n_mtp = in->n_mtp;
    }
    uint64_t hid_bytes = in->n_tokens ? (uint64_t)(in->hc_mult * in->dim) * sizeof(float) : 0;
    uint64_t total = (uint64_t)in->n_tokens * 4 + hid_bytes;
    int n_sec = 2 + in->n_all;
    if (!(dst = calloc((size_t)n_sec, sizeof *dst))) {
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        goto fail;
    }
    dst[0] = (struct sect_dst){ DSV4_SNAP_TOKENS, 0, (uint64_t)in->n_tokens * 4, 0, NULL, &tok };
    dst[1] = (struct sect_dst){ DSV4_SNAP_HIDDEN, 0, hid_bytes, 0, NULL, &hid };
    for (int l = 0; l < in->n_all; l++) {
        dst[2 + l] = (struct sect_dst){ DSV4_SNAP_LAYER, l, info_layer_bytes(in, l), in->n_ent[l], out->kv, NULL };
        total += dst[2 + l].raw;
        if (out->kv)
            out->kv->layers[l].n_ent = in->n_ent[l];
    }
    if ((rc = read_chunks(&r, dst, n_sec, st, &o, total, err)))
        goto fail;
    for (int64_t i = 0; i < in->n_tokens; i++)
        if (dsv4_le32_get(tok + 4 * i) >= (uint64_t)in->vocab_size) {
            rc = dsv4_err_set(err, DSV4_E_RANGE, "%s: token %lld: id %u is out of range (vocab size %lld)",
                              o.name, (long long)i, dsv4_le32_get(tok + 4 * i), (long long)in->vocab_size);
            goto fail;
        }
    uint64_t before = r.bytes, chunks = r.chunks;
    if ((rc = rd_raw(&r, tr, sizeof tr, "trailer", err)))
        goto fail;
    crypto_generichash_final(&r.hs, sum, 32);
    if (memcmp(tr, DSV4_SNAP_TRAILER_MAGIC, 8)) {
        rc = BAD("%s: byte %llu: expected the trailer after the last layer", o.name, (unsigned long long)before);
        goto fail;
    }
    if (dsv4_le64_get(tr + 8) != chunks || dsv4_le64_get(tr + 16) != before) {
        rc = BAD("%s: the trailer counts %llu chunks in %llu bytes; the stream has %llu in %llu", o.name,
                 (unsigned long long)dsv4_le64_get(tr + 8), (unsigned long long)dsv4_le64_get(tr + 16),
                 (unsigned long long)chunks, (unsigned long long)before);
        goto fail;
    }
    if (sodium_memcmp(sum, tr + 24, 32)) {
        rc = dsv4_err_set(err, DSV4_E_CHECKSUM, "%s: the stream checksum does not match (damaged)", o.name);
        goto fail;
    }
    if (o.want_eof) {
        uint8_t extra;
        ssize_t k;
        while ((k = read(fd, &extra, 1)) < 0 && errno == EINTR)
            ;
        if (k != 0) {
            rc = k < 0 ? dsv4_err_set(err, DSV4_E_IO, "%s: cannot read: %s", o.name, strerror(errno))
                       : BAD("%s: unexpected bytes after the trailer", o.name);
            goto fail;
        }
    }
    st->trailer_bytes = DSV4_SNAP_TRAILER_BYTES;
    st->chunk_header_bytes = chunks * DSV4_SNAP_CHUNK_BYTES;
    st->stream_bytes = r.bytes;
    for (int i = 0; i < st->n_sections; i++) {
        st->raw += st->sections[i].raw;
        st->frame += st->sections[i].frame;
    }
    if (in->n_tokens) {
        if (!(out->tokens = malloc((size_t)in->n_tokens * sizeof *out->tokens))) {
            rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
            goto fail;
        }
        for (int64_t i = 0; i < in->n_tokens; i++)
            out->tokens[i] = dsv4_le32_get(tok + 4 * i);
        out->hidden = (float *)(void *)hid;
        hid = NULL;
    }
    free(tok);
    free(hid);
    free(dst);
    return 0;
fail:
    free(tok);
    free(hid);
    free(dst);
    dsv4_snap_release(out);
    return rc;
}
