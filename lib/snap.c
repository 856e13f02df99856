/* snap — KV snapshot writer and reader (see snap.h, dsv4-snapshot(5)). */
#include "snap.h"
#include "buf.h"

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

#define READ_PART_MAX (256u << 20)   /* larger chunks are refused (ours are 16 MiB) */
#define MAX_DIM (1 << 20)
/* The part of a state that dsv4_kv_new allocates, and partly fills, from the
 * header alone, before any payload arrives: window rings and compressor rows.
 * V4 Pro needs under 26 MiB; without this cap a 4 KB header could claim 256
 * layers of head_dim 2^20 and make the reader fill hundreds of GB. */
#define MAX_FIXED_STATE (1ull << 30)

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

/* Copy bytes [off, off + n) of the payload out of (put = 0) or into (1) the state. */
static void layer_copy(const dsv4_kvstate *s, int l, uint64_t off, uint64_t n, uint8_t *buf, int put)
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
    layer_copy(s, l, off, n, out, 0);
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

static void section_label(char *out, size_t cap, int kind, int index)
{
    if (kind == DSV4_SNAP_LAYER)
        snprintf(out, cap, "layer %d", index);
    else
        snprintf(out, cap, "%s", dsv4_snap_kind_name(kind));
}

/* ---- header ------------------------------------------------------------- */

static uint32_t header_size(int n_all)
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
    in->header_bytes = header_size(s->n_all);
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

struct sect_src {
    int kind, index;
    uint64_t raw;
    const uint8_t *flat;            /* tokens / hidden bytes, or NULL for a layer */
};

static void section_fill(const dsv4_kvstate *s, const struct sect_src *src, uint64_t off, uint64_t n, uint8_t *out)
{
    if (src->flat)
        memcpy(out, src->flat + off, n);
    else
        layer_copy(s, src->index, off, n, out, 0);
}

static int write_section(struct wr *w, ZSTD_CCtx *cc, int level, const dsv4_kvstate *s, const struct sect_src *src,
                         uint8_t *raw, uint8_t *frame, size_t frame_cap, dsv4_snap_section *st,
                         const dsv4_snap_wopts *o, uint64_t *done, uint64_t total, dsv4_err *err)
{
    uint64_t off = 0;
    int part = 0;
    st->kind = src->kind;
    st->index = src->index;
    do {
        uint64_t n = src->raw - off < DSV4_SNAP_PART_MAX ? src->raw - off : DSV4_SNAP_PART_MAX;
        uint8_t ch[DSV4_SNAP_CHUNK_BYTES] = { 0 };
        section_fill(s, src, off, n, raw);
        size_t fb = ZSTD_compressCCtx(cc, frame, frame_cap, raw, (size_t)n, level);
        if (ZSTD_isError(fb))
            return dsv4_err_set(err, DSV4_E_BUG, "zstd: %s", ZSTD_getErrorName(fb));
        dsv4_le32_put(ch, (uint32_t)src->kind);
        dsv4_le32_put(ch + 4, (uint32_t)src->index);
        dsv4_le32_put(ch + 8, (uint32_t)part);
        dsv4_le32_put(ch + 12, off + n == src->raw ? 1u : 0u);
        dsv4_le64_put(ch + 16, n);
        dsv4_le64_put(ch + 24, fb);
        crypto_generichash(ch + 32, 32, raw, (size_t)n, NULL, 0);
        crypto_generichash(ch + 64, 32, frame, fb, NULL, 0);
        if (wr_all(w, ch, sizeof ch, 1, err) || wr_all(w, frame, fb, 0, err))
            return err->code;
        w->chunks++;
        st->parts++;
        st->raw += n;
        st->frame += fb;
        off += n;
        part++;
        *done += n;
        if (o->progress)
            o->progress(o->progress_ctx, *done, total);
    } while (off < src->raw);
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
    uint8_t *hdr = NULL, *raw = NULL, *frame = NULL, *tok = NULL;
    ZSTD_CCtx *cc = NULL;
    int rc = 0, level = o.level ? o.level : 1;

    memset(st, 0, sizeof *st);
    if (s->n_layers != c->n_layers || s->n_all != c->n_ratios || s->head_dim != c->head_dim)
        return dsv4_err_set(err, DSV4_E_INVALID, "the KV state does not belong to this model");
    if (s->n_tokens > 0 && (!tokens || !hidden))
        return dsv4_err_set(err, DSV4_E_INVALID, "a snapshot of %lld tokens needs their ids and hidden state",
                            (long long)s->n_tokens);
    info_from_state(&in, c, fingerprint, s);
    uint64_t hid_bytes = s->n_tokens ? (uint64_t)(c->hc_mult * c->dim) * sizeof(float) : 0;
    uint64_t total = (uint64_t)s->n_tokens * 4 + hid_bytes;
    for (int l = 0; l < s->n_all; l++)
        total += dsv4_snap_layer_bytes(s, l);
    size_t frame_cap = ZSTD_compressBound(DSV4_SNAP_PART_MAX);
    hdr = malloc(in.header_bytes);
    raw = malloc(DSV4_SNAP_PART_MAX);
    frame = malloc(frame_cap);
    tok = malloc((size_t)s->n_tokens * 4 + 1);
    cc = ZSTD_createCCtx();
    if (!hdr || !raw || !frame || !tok || !cc) {
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory writing %s", w.name);
        goto out;
    }
    for (int64_t i = 0; i < s->n_tokens; i++)
        dsv4_le32_put(tok + 4 * i, tokens[i]);
    crypto_generichash_init(&w.hs, NULL, 0, 32);
    header_encode(hdr, &in);
    if ((rc = wr_all(&w, hdr, in.header_bytes, 1, err)))
        goto out;
    st->header_bytes = in.header_bytes;

    uint64_t done = 0;
    struct sect_src tsrc = { DSV4_SNAP_TOKENS, 0, (uint64_t)s->n_tokens * 4, tok };
    struct sect_src hsrc = { DSV4_SNAP_HIDDEN, 0, hid_bytes, (const uint8_t *)hidden };
    if ((rc = write_section(&w, cc, level, s, &tsrc, raw, frame, frame_cap, &st->sections[0], &o, &done, total, err)) ||
        (rc = write_section(&w, cc, level, s, &hsrc, raw, frame, frame_cap, &st->sections[1], &o, &done, total, err)))
        goto out;
    for (int l = 0; l < s->n_all; l++) {
        struct sect_src lsrc = { DSV4_SNAP_LAYER, l, dsv4_snap_layer_bytes(s, l), NULL };
        if ((rc = write_section(&w, cc, level, s, &lsrc, raw, frame, frame_cap, &st->sections[2 + l], &o, &done,
                                total, err)))
            goto out;
    }
    st->n_sections = 2 + s->n_all;

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
out:
    ZSTD_freeCCtx(cc);
    free(hdr);
    free(raw);
    free(frame);
    free(tok);
    return rc;
}

/* ---- reader --------------------------------------------------------------- */

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

/* The config dsv4_kv_new needs, from the header. */
static void info_config(const dsv4_snap_info *in, dsv4_config *c)
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
    if (in->header_bytes < header_size(0) || in->header_bytes > header_size(DSV4_MAX_LAYERS) + (1u << 16))
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
        in->header_bytes < header_size(in->n_all)) {
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

struct rbuf {
    uint8_t *raw, *frame;
    size_t raw_cap, frame_cap;
    ZSTD_DCtx *dc;
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

/* Where a section's bytes go. */
struct sect_dst {
    int kind, index;
    uint64_t raw;
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

static int read_section(struct rd *r, struct rbuf *b, const struct sect_dst *d, int64_t n_ent,
                        dsv4_snap_section *st, const dsv4_snap_ropts *o, uint64_t *done, uint64_t total,
                        dsv4_err *err)
{
    char label[32];
    uint64_t off = 0;
    int last = 0;
    section_label(label, sizeof label, d->kind, d->index);
    st->kind = d->kind;
    st->index = d->index;
    for (uint32_t part = 0; !last; part++) {
        uint8_t ch[DSV4_SNAP_CHUNK_BYTES], sum[32];
        int rc;
        char what[64];
        snprintf(what, sizeof what, "%s chunk header", label);
        if ((rc = rd_all(r, ch, sizeof ch, what, err)))
            return rc;
        uint32_t kind = dsv4_le32_get(ch), index = dsv4_le32_get(ch + 4), p = dsv4_le32_get(ch + 8);
        uint32_t flags = dsv4_le32_get(ch + 12);
        uint64_t n = dsv4_le64_get(ch + 16), fb = dsv4_le64_get(ch + 24);
        if (kind != (uint32_t)d->kind || index != (uint32_t)d->index || p != part)
            return BAD("%s: byte %llu: expected chunk %u of the %s, found kind %u index %u part %u", o->name,
                       (unsigned long long)(r->bytes - sizeof ch), part, label, kind, index, p);
        if (flags & ~1u)
            return BAD("%s: %s: unknown chunk flags 0x%x", o->name, label, flags);
        last = flags & 1;
        if (n > READ_PART_MAX || n > d->raw - off || (last && off + n != d->raw) || (!last && n == 0) ||
            fb > ZSTD_compressBound((size_t)n) || fb < 9)
            return BAD("%s: %s: chunk %u has bad sizes (%llu raw, %llu compressed; the section holds %llu "
                       "bytes)", o->name, label, part, (unsigned long long)n, (unsigned long long)fb,
                       (unsigned long long)d->raw);
        if (ensure(&b->frame, &b->frame_cap, (size_t)fb) || ensure(&b->raw, &b->raw_cap, (size_t)n + 1))
            return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory reading %s", o->name);
        snprintf(what, sizeof what, "%s data", label);
        if ((rc = rd_raw(r, b->frame, (size_t)fb, what, err)))
            return rc;
        crypto_generichash(sum, 32, b->frame, (size_t)fb, NULL, 0);
        if (sodium_memcmp(sum, ch + 64, 32))
            return dsv4_err_set(err, DSV4_E_CHECKSUM, "%s: %s: chunk %u is damaged (checksum mismatch)",
                                o->name, label, part);
        size_t got = ZSTD_decompressDCtx(b->dc, b->raw, (size_t)n + 1, b->frame, (size_t)fb);
        if (ZSTD_isError(got) || got != n)
            return dsv4_err_set(err, DSV4_E_CHECKSUM, "%s: %s: chunk %u does not decompress to its %llu bytes "
                                "(%s)", o->name, label, part, (unsigned long long)n,
                                ZSTD_isError(got) ? ZSTD_getErrorName(got) : "wrong size");
        crypto_generichash(sum, 32, b->raw, (size_t)n, NULL, 0);
        if (sodium_memcmp(sum, ch + 32, 32))
            return dsv4_err_set(err, DSV4_E_CHECKSUM, "%s: %s: chunk %u is damaged (checksum mismatch)",
                                o->name, label, part);
        if (d->flat) {
            uint8_t *q = realloc(*d->flat, (size_t)(off + n) + 1);
            if (!q)
                return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory reading %s", o->name);
            *d->flat = q;
            memcpy(q + off, b->raw, (size_t)n);
        } else if (d->kv) {
            if ((rc = reserve_upto(d->kv, d->index, off + n, n_ent, err)))
                return rc;
            layer_copy(d->kv, d->index, off, n, b->raw, 1);
        }
        r->chunks++;
        st->parts++;
        st->raw += n;
        st->frame += fb;
        off += n;
        *done += n;
        if (o->progress)
            o->progress(o->progress_ctx, *done, total);
    }
    return 0;
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
    struct rbuf b = { NULL, NULL, 0, 0, NULL };
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
    info_config(in, &kc);
    if (o.load_state) {
        if ((rc = dsv4_kv_new(&out->kv, &kc, in->compact, err)))
            goto fail;
        if (out->kv->entry_bytes != in->entry_bytes || out->kv->ikey_bytes != in->ikey_bytes) {
            rc = BAD("%s: entry sizes %u/%u do not match the %s layout", o.name, in->entry_bytes, in->ikey_bytes,
                     in->compact ? "compact" : "bf16");
            goto fail;
        }
        out->kv->n_tokens = in->n_tokens;
        out->kv->n_mtp = in->n_mtp;
    } else {
        uint32_t eb = in->compact ? (uint32_t)((2 * in->rope_dim + (in->head_dim - in->rope_dim) +
                                                (in->head_dim - in->rope_dim + 63) / 64 + 7) / 8 * 8)
                                  : (uint32_t)(2 * in->head_dim);
        uint32_t ib = in->compact ? (uint32_t)(in->index_head_dim / 2 + (in->index_head_dim + 31) / 32)
                                  : (uint32_t)(2 * in->index_head_dim);
        if (eb != in->entry_bytes || ib != in->ikey_bytes) {
            rc = BAD("%s: entry sizes %u/%u do not match the %s layout", o.name, in->entry_bytes, in->ikey_bytes,
                     in->compact ? "compact" : "bf16");
            goto fail;
        }
    }
    if (!(b.dc = ZSTD_createDCtx())) {
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        goto fail;
    }
    uint64_t hid_bytes = in->n_tokens ? (uint64_t)(in->hc_mult * in->dim) * sizeof(float) : 0, done = 0;
    uint64_t total = (uint64_t)in->n_tokens * 4 + hid_bytes;
    for (int l = 0; l < in->n_all; l++)
        total += info_layer_bytes(in, l);
    struct sect_dst tdst = { DSV4_SNAP_TOKENS, 0, (uint64_t)in->n_tokens * 4, NULL, &tok };
    struct sect_dst hdst = { DSV4_SNAP_HIDDEN, 0, hid_bytes, NULL, &hid };
    if ((rc = read_section(&r, &b, &tdst, 0, &st->sections[0], &o, &done, total, err)))
        goto fail;
    st->n_sections = 1;
    for (int64_t i = 0; i < in->n_tokens; i++)
        if (dsv4_le32_get(tok + 4 * i) >= (uint64_t)in->vocab_size) {
            rc = dsv4_err_set(err, DSV4_E_RANGE, "%s: token %lld: id %u is out of range (vocab size %lld)",
                              o.name, (long long)i, dsv4_le32_get(tok + 4 * i), (long long)in->vocab_size);
            goto fail;
        }
    if ((rc = read_section(&r, &b, &hdst, 0, &st->sections[1], &o, &done, total, err)))
        goto fail;
    st->n_sections = 2;
    for (int l = 0; l < in->n_all; l++) {
        struct sect_dst ld = { DSV4_SNAP_LAYER, l, info_layer_bytes(in, l), out->kv, NULL };
        if (out->kv)
            out->kv->layers[l].n_ent = in->n_ent[l];
        if ((rc = read_section(&r, &b, &ld, in->n_ent[l], &st->sections[2 + l], &o, &done, total, err)))
            goto fail;
        st->n_sections = 3 + l;
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
    free(b.raw);
    free(b.frame);
    ZSTD_freeDCtx(b.dc);
    return 0;
fail:
    free(tok);
    free(hid);
    free(b.raw);
    free(b.frame);
    ZSTD_freeDCtx(b.dc);
    dsv4_snap_release(out);
    return rc;
}
