/* snap — KV snapshot layer payloads, header and writer (see snap.h,
 * dsv4-snapshot(5)); the reader is snap_read.c. */
#include "snap.h"
#include "buf.h"
#include "pool.h"
#include "snap_impl.h"

#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

/* The state's f32 rows and the hidden streams are copied as they lie in
 * memory: the format is little-endian. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "snap.c assumes a little-endian host"
#endif


/* ---- the layer payload as a list of byte ranges in the state -------------- */

struct seg {
    uint8_t *p;
    uint64_t n;
};

enum { MAX_SEGS = 32 };

static int64_t layer_pos(const dsv4_kvstate *s, int l)
{
    return l < s->n_layers ? s->n_tokens : s->n_mtp;
}

/* ratio 4 compressor rows (c = 2 halves of d): the previous block's first
 * halves, then the current block's n % 4 full rows; k rows, then g rows. */
static int segs_overlap(struct seg *g, int k, float *kv, float *sc, int64_t d, int64_t n)
{
    float *a[2] = { kv, sc };
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 4; i++)
            g[k++] = (struct seg){ (uint8_t *)(a[t] + i * 2 * d), (uint64_t)d * sizeof(float) };
    for (int t = 0; t < 2; t++)
        g[k++] = (struct seg){ (uint8_t *)(a[t] + 4 * 2 * d), (uint64_t)((n % 4) * 2 * d) * sizeof(float) };
    return k;
}

static int layer_segs(const dsv4_kvstate *s, int l, struct seg *g)
{
    const dsv4_kv_layer *L = &s->layers[l];
    int64_t n = layer_pos(s, l), w = n < s->window ? n : s->window;
    int k = 0;
    g[k++] = (struct seg){ L->win, (uint64_t)w * s->entry_bytes };
    if (L->ratio == 4) {
        k = segs_overlap(g, k, L->ckv, L->csc, s->head_dim, n);
        k = segs_overlap(g, k, L->ikv, L->isc, s->index_head_dim, n);
    } else if (L->ratio) {
        uint64_t b = (uint64_t)((n % L->ratio) * L->cdim) * sizeof(float);
        g[k++] = (struct seg){ (uint8_t *)L->ckv, b };
        g[k++] = (struct seg){ (uint8_t *)L->csc, b };
    }
    if (L->ratio) {
        g[k++] = (struct seg){ L->ent, (uint64_t)L->n_ent * s->entry_bytes };
        if (L->ratio == 4)
            g[k++] = (struct seg){ L->ikey, (uint64_t)L->n_ent * s->ikey_bytes };
    }
    return k;
}

uint64_t dsv4_snap_layer_bytes(const dsv4_kvstate *s, int l)
{
    struct seg g[MAX_SEGS];
    uint64_t t = 0;
    int k = layer_segs(s, l, g);
    for (int i = 0; i < k; i++)
        t += g[i].n;
    return t;
}

void dsv4_snap_layer_copy(const dsv4_kvstate *s, int l, uint64_t off, uint64_t n, uint8_t *buf, int put)
{
    struct seg g[MAX_SEGS];
    int k = layer_segs(s, l, g);
    uint64_t base = 0;
    for (int i = 0; i < k && n; i++) {
        uint64_t end = base + g[i].n;
        if (off < end) {
            uint64_t a = off - base, m = end - off < n ? end - off : n;
            if (put)
                memcpy(g[i].p + a, buf, m);
            else
                memcpy(buf, g[i].p + a, m);
            buf += m;
            off += m;
            n -= m;
        }
        base = end;
    }
}

void dsv4_snap_layer_get(const dsv4_kvstate *s, int l, uint64_t off, uint64_t n, uint8_t *out)
{
    dsv4_snap_layer_copy(s, l, off, n, out, 0);
}

const char *dsv4_snap_kind_name(int kind)
{
    switch (kind) {
    case DSV4_SNAP_TOKENS: return "tokens";
    case DSV4_SNAP_HIDDEN: return "hidden";
    case DSV4_SNAP_LAYER: return "layer";
    default: return "unknown";
    }
}

void dsv4_snap_section_label(char *out, size_t cap, int kind, int index)
{
    if (kind == DSV4_SNAP_LAYER)
        snprintf(out, cap, "layer %d", index);
    else
        snprintf(out, cap, "%s", dsv4_snap_kind_name(kind));
}

/* ---- header ------------------------------------------------------------- */

uint32_t dsv4_snap_header_size(int n_all)
{
    return DSV4_SNAP_FIXED_BYTES + (uint32_t)n_all * DSV4_SNAP_LAYER_BYTES + 32;
}

static void header_encode(uint8_t *h, const dsv4_snap_info *in)
{
    memset(h, 0, in->header_bytes);
    memcpy(h, DSV4_SNAP_MAGIC, 8);
    dsv4_le16_put(h + 8, in->major);
    dsv4_le16_put(h + 10, in->minor);
    dsv4_le16_put(h + 12, in->flags);
    dsv4_le32_put(h + 16, in->header_bytes);
    dsv4_le32_put(h + 20, (uint32_t)in->compact);
    dsv4_le64_put(h + 24, (uint64_t)in->n_tokens);
    dsv4_le64_put(h + 32, (uint64_t)in->n_mtp);
    dsv4_le32_put(h + 40, (uint32_t)in->n_layers);
    dsv4_le32_put(h + 44, (uint32_t)in->n_all);
    int64_t dims[] = { in->vocab_size, in->dim, in->hc_mult, in->window, in->head_dim, in->rope_dim,
                       in->index_head_dim, in->entry_bytes, in->ikey_bytes };
    for (int i = 0; i < 9; i++)
        dsv4_le32_put(h + 48 + 4 * i, (uint32_t)dims[i]);
    memcpy(h + 96, in->fingerprint, 32);
    for (int l = 0; l < in->n_all; l++) {
        uint8_t *r = h + DSV4_SNAP_FIXED_BYTES + l * DSV4_SNAP_LAYER_BYTES;
        dsv4_le32_put(r, (uint32_t)in->ratios[l]);
        dsv4_le64_put(r + 8, (uint64_t)in->n_ent[l]);
    }
    crypto_generichash(h + in->header_bytes - 32, 32, h, in->header_bytes - 32, NULL, 0);
}

static void info_from_state(dsv4_snap_info *in, const dsv4_config *c, const uint8_t *fp, const dsv4_kvstate *s)
{
    memset(in, 0, sizeof *in);
    in->major = DSV4_SNAP_MAJOR;
    in->minor = DSV4_SNAP_MINOR;
    in->header_bytes = dsv4_snap_header_size(s->n_all);
    in->compact = s->compact;
    in->n_tokens = s->n_tokens;
    in->n_mtp = s->n_mtp;
    in->n_layers = s->n_layers;
    in->n_all = s->n_all;
    in->vocab_size = c->vocab_size;
    in->dim = c->dim;
    in->hc_mult = c->hc_mult;
    in->window = s->window;
    in->head_dim = s->head_dim;
    in->rope_dim = s->rope_dim;
    in->index_head_dim = s->index_head_dim;
    in->entry_bytes = (uint32_t)s->entry_bytes;
    in->ikey_bytes = (uint32_t)s->ikey_bytes;
    memcpy(in->fingerprint, fp, 32);
    for (int l = 0; l < s->n_all; l++) {
        in->ratios[l] = s->layers[l].ratio;
        in->n_ent[l] = s->layers[l].n_ent;
    }
}

/* ---- writer --------------------------------------------------------------- */

struct wr {
    int fd;
    const char *name;
    crypto_generichash_state hs;
    uint64_t bytes, chunks;
};

/* write(2) all of p, retrying on EINTR and short writes. */
static int write_full(int fd, const char *name, const void *p, size_t n, dsv4_err *err)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t k = write(fd, b, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return dsv4_err_set(err, DSV4_E_IO, "cannot write %s: %s", name, k < 0 ? strerror(errno) : "nothing written");
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Counted: everything before the trailer.  Hashed into the stream hash: the
 * header and the chunk headers; a frame is covered by the frame hash its
 * chunk header carries, so chunks can be hashed independently. */
static int wr_all(struct wr *w, const void *p, size_t n, int hash, dsv4_err *err)
{
    if (hash)
        crypto_generichash_update(&w->hs, p, n);
    w->bytes += n;
    return write_full(w->fd, w->name, p, n, err);
}

/* One chunk of the stream: which section bytes it carries and, once done,
 * its header and frame. */
struct sect_src {
    int kind, index;
    uint64_t raw;
    const uint8_t *flat;            /* tokens / hidden bytes, or NULL for a layer */
};

struct wjob {
    const struct sect_src *src;
    uint64_t off, n;
    int part, last;
    uint8_t ch[DSV4_SNAP_CHUNK_BYTES];
    size_t fb;                      /* frame bytes, or a zstd error code */
};

/* A batch of chunks made in parallel: slot j of raw/frame belongs to job j,
 * the compression context to the thread. */
struct wbatch {
    const dsv4_kvstate *s;
    struct wjob *jobs;
    uint8_t **raw, **frame;
    size_t frame_cap;
    ZSTD_CCtx **cc;
    int level;
};

static void make_chunks(void *ctx, int64_t i0, int64_t i1, int tid)
{
    struct wbatch *b = ctx;
    for (int64_t i = i0; i < i1; i++) {
        struct wjob *j = &b->jobs[i];
        const struct sect_src *src = j->src;
        uint8_t *raw = b->raw[i], *ch = j->ch;
        if (src->flat)
            memcpy(raw, src->flat + j->off, (size_t)j->n);
        else
            dsv4_snap_layer_copy(b->s, src->index, j->off, j->n, raw, 0);
        j->fb = ZSTD_compressCCtx(b->cc[tid], b->frame[i], b->frame_cap, raw, (size_t)j->n, b->level);
        if (ZSTD_isError(j->fb))
            continue;
        memset(ch, 0, DSV4_SNAP_CHUNK_BYTES);
        dsv4_le32_put(ch, (uint32_t)src->kind);
        dsv4_le32_put(ch + 4, (uint32_t)src->index);
        dsv4_le32_put(ch + 8, (uint32_t)j->part);
        dsv4_le32_put(ch + 12, j->last ? 1u : 0u);
        dsv4_le64_put(ch + 16, j->n);
        dsv4_le64_put(ch + 24, j->fb);
        crypto_generichash(ch + 32, 32, raw, (size_t)j->n, NULL, 0);
        crypto_generichash(ch + 64, 32, b->frame[i], j->fb, NULL, 0);
    }
}

/* Every chunk of every section, in stream order: *out (malloc'd), *n. */
static int plan_chunks(const struct sect_src *src, int n_src, uint64_t part_max, struct wjob **out, int64_t *n,
                       dsv4_err *err)
{
    int64_t total = 0, k = 0;
    for (int i = 0; i < n_src; i++)
        total += src[i].raw ? (int64_t)((src[i].raw + part_max - 1) / part_max) : 1;
    struct wjob *j = calloc((size_t)total, sizeof *j);
    if (!j)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    for (int i = 0; i < n_src; i++) {
        uint64_t off = 0;
        int part = 0;
        do {
            uint64_t m = src[i].raw - off < part_max ? src[i].raw - off : part_max;
            j[k].src = &src[i];
            j[k].off = off;
            j[k].n = m;
            j[k].part = part++;
            off += m;
            j[k].last = off == src[i].raw;
            k++;
        } while (off < src[i].raw);
    }
    *out = j;
    *n = total;
    return 0;
}

int dsv4_snap_write(int fd, const dsv4_config *c, const uint8_t fingerprint[32], const dsv4_kvstate *s,
                    const uint32_t *tokens, const float *hidden, const dsv4_snap_wopts *opts,
                    dsv4_snap_stats *stats, dsv4_err *err)
{
    dsv4_snap_wopts o = opts ? *opts : (dsv4_snap_wopts)DSV4_SNAP_WOPTS_INIT;
    struct wr w = { fd, o.name ? o.name : "the snapshot", { { 0 } }, 0, 0 };
    dsv4_snap_stats st_local, *st = stats ? stats : &st_local;
    dsv4_snap_info in;
    struct sect_src *src = NULL;
    struct wjob *jobs = NULL;
    struct wbatch b = { s, NULL, NULL, NULL, 0, NULL, o.level ? o.level : 1 };
    dsv4_pool *pool = NULL;
    uint8_t *hdr = NULL, *tok = NULL;
    int rc = 0, threads = o.threads > 0 ? o.threads : 1, n_src = 2 + s->n_all;
    int64_t n_jobs = 0;
    uint64_t part_max = o.part_bytes && o.part_bytes < DSV4_SNAP_PART_MAX ? o.part_bytes : DSV4_SNAP_PART_MAX;

    memset(st, 0, sizeof *st);
    if (s->n_layers != c->n_layers || s->n_all != c->n_ratios || s->head_dim != c->head_dim)
        return dsv4_err_set(err, DSV4_E_INVALID, "the KV state does not belong to this model");
    if (s->n_tokens > 0 && (!tokens || !hidden))
        return dsv4_err_set(err, DSV4_E_INVALID, "a snapshot of %lld tokens needs their ids and hidden state",
                            (long long)s->n_tokens);
    info_from_state(&in, c, fingerprint, s);
    b.frame_cap = ZSTD_compressBound(DSV4_SNAP_PART_MAX);
    hdr = malloc(in.header_bytes);
    tok = malloc((size_t)s->n_tokens * 4 + 1);
    src = calloc((size_t)n_src, sizeof *src);
    b.raw = calloc((size_t)threads, sizeof *b.raw);
    b.frame = calloc((size_t)threads, sizeof *b.frame);
    b.cc = calloc((size_t)threads, sizeof *b.cc);
    if (!hdr || !tok || !src || !b.raw || !b.frame || !b.cc)
        goto nomem;
    for (int t = 0; t < threads; t++)
        if (!(b.raw[t] = malloc(DSV4_SNAP_PART_MAX)) || !(b.frame[t] = malloc(b.frame_cap)) ||
            !(b.cc[t] = ZSTD_createCCtx()))
            goto nomem;
    if (threads > 1 && (rc = dsv4_pool_new(&pool, threads, err)))
        goto out;
    for (int64_t i = 0; i < s->n_tokens; i++)
        dsv4_le32_put(tok + 4 * i, tokens[i]);
    src[0] = (struct sect_src){ DSV4_SNAP_TOKENS, 0, (uint64_t)s->n_tokens * 4, tok };
    src[1] = (struct sect_src){ DSV4_SNAP_HIDDEN, 0,
                                s->n_tokens ? (uint64_t)(c->hc_mult * c->dim) * sizeof(float) : 0,
                                (const uint8_t *)hidden };
    for (int l = 0; l < s->n_all; l++)
        src[2 + l] = (struct sect_src){ DSV4_SNAP_LAYER, l, dsv4_snap_layer_bytes(s, l), NULL };
    uint64_t total = 0, done = 0;
    for (int i = 0; i < n_src; i++) {
        total += src[i].raw;
        st->sections[i].kind = src[i].kind;
        st->sections[i].index = src[i].index;
    }
    st->n_sections = n_src;
    if ((rc = plan_chunks(src, n_src, part_max, &jobs, &n_jobs, err)))
        goto out;

    crypto_generichash_init(&w.hs, NULL, 0, 32);
    header_encode(hdr, &in);
    if ((rc = wr_all(&w, hdr, in.header_bytes, 1, err)))
        goto out;
    st->header_bytes = in.header_bytes;
    /* batches of one chunk per thread: made in parallel, written in order */
    for (int64_t j0 = 0; j0 < n_jobs; j0 += threads) {
        int64_t nb = n_jobs - j0 < threads ? n_jobs - j0 : threads;
        b.jobs = jobs + j0;
        dsv4_pool_for(pool, nb, 1, make_chunks, &b);
        for (int64_t i = 0; i < nb; i++) {
            struct wjob *j = &b.jobs[i];
            dsv4_snap_section *ss = &st->sections[j->src - src];
            if (ZSTD_isError(j->fb)) {
                rc = dsv4_err_set(err, DSV4_E_BUG, "zstd: %s", ZSTD_getErrorName(j->fb));
                goto out;
            }
            if ((rc = wr_all(&w, j->ch, sizeof j->ch, 1, err)) || (rc = wr_all(&w, b.frame[i], j->fb, 0, err)))
                goto out;
            w.chunks++;
            ss->parts++;
            ss->raw += j->n;
            ss->frame += j->fb;
            done += j->n;
            if (o.progress)
                o.progress(o.progress_ctx, done, total);
        }
    }

    uint8_t tr[DSV4_SNAP_TRAILER_BYTES];
    memcpy(tr, DSV4_SNAP_TRAILER_MAGIC, 8);
    dsv4_le64_put(tr + 8, w.chunks);
    dsv4_le64_put(tr + 16, w.bytes);
    crypto_generichash_final(&w.hs, tr + 24, 32);
    if ((rc = write_full(w.fd, w.name, tr, sizeof tr, err)))   /* not part of the hash */
        goto out;
    st->trailer_bytes = DSV4_SNAP_TRAILER_BYTES;
    st->stream_bytes = w.bytes + DSV4_SNAP_TRAILER_BYTES;
    st->chunk_header_bytes = w.chunks * DSV4_SNAP_CHUNK_BYTES;
    for (int i = 0; i < st->n_sections; i++) {
        st->raw += st->sections[i].raw;
        st->frame += st->sections[i].frame;
    }
    goto out;
nomem:
    rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory writing %s", w.name);
out:
    for (int t = 0; t < threads; t++) {
        free(b.raw ? b.raw[t] : NULL);
        free(b.frame ? b.frame[t] : NULL);
        ZSTD_freeCCtx(b.cc ? b.cc[t] : NULL);
    }
    free(b.raw);
    free(b.frame);
    free(b.cc);
    dsv4_pool_free(pool);
    free(jobs);
    free(src);
    free(hdr);
    free(tok);
    return rc;
}
