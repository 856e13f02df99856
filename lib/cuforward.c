/* cuforward — the DeepSeek-V4 forward pass on the device (cuengine.h): the
 * CPU engine's steps (engine.c block/hc_*, attn.c dsv4_attn_chunk, moe.c
 * dsv4_moe_chunk) in the same order, each by its kernel of kernels/, with
 * the activations and the KV state on the device.  Everything runs on the
 * default stream; the host waits only to read results back. */
#include "cuengine.h"

#if DSV4_HAVE_CUDA

#include "cuengine_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_attn.h"
#include "gpu_comp.h"
#include "gpu_gemm.h"
#include "gpu_mhc.h"
#include "gpu_moe.h"
#include "gpu_ops.h"

/* ---- scratch: one bump arena per call, grown to the high-water mark ----------- */

struct arena {
    dsv4_cuscratch *sc;
    size_t used;             /* logical fill level, overflow included */
    void **extra;            /* overflow allocations of this call */
    size_t n_extra, need;
    dsv4_err *err;
};

void dsv4_cuscratch_free(dsv4_cuscratch *sc)
{
    dsv4_cu_free(sc->p);
    sc->p = NULL;
    sc->cap = 0;
}

/* n bytes, 256-aligned; NULL (with err set) when the device is out of memory.
 * used is the logical fill level (overflow included): a caller may reset it
 * to an earlier value to free everything taken since. */
static void *take(struct arena *a, size_t n)
{
    n = (n + 255) / 256 * 256;
    size_t at = a->used;
    a->used += n;
    a->need = a->used > a->need ? a->used : a->need;
    if (at + n <= a->sc->cap)
        return (uint8_t *)a->sc->p + at;
    void **x = realloc(a->extra, (a->n_extra + 1) * sizeof *x);
    void *p = NULL;
    if (!x) {
        dsv4_err_set(a->err, DSV4_E_NOMEM, "out of memory");
        return NULL;
    }
    a->extra = x;
    if (dsv4_cu_alloc(&p, n, a->err))
        return NULL;
    a->extra[a->n_extra++] = p;
    return p;
}
#define TAKE(a, type, count) ((type *)take((a), (size_t)(count) * sizeof(type)))

/* After a call: free the overflow and grow the arena so the next call of
 * this size needs none.  The stream must be idle (the caller synced). */
static void arena_end(struct arena *a)
{
    for (size_t i = 0; i < a->n_extra; i++)
        dsv4_cu_free(a->extra[i]);
    free(a->extra);
    if (a->n_extra) {
        dsv4_err e2 = DSV4_ERR_INIT;
        void *p = NULL;
        dsv4_cuscratch_free(a->sc);
        if (!dsv4_cu_alloc(&p, a->need, &e2)) {
            a->sc->p = p;
            a->sc->cap = a->need;
        }
    }
}

static dsv4_cu_kv_layout layout_of(const dsv4_kvstate *s)
{
    dsv4_cu_kv_layout L = { s->compact, (int)s->head_dim, (int)s->rope_dim, (int)s->index_head_dim,
                            (int)s->entry_bytes, (int)s->ikey_bytes };
    return L;
}

/* ---- mHC -------------------------------------------------------------------------- */

static dsv4_cu_hc_dims hc_dims(const dsv4_config *c)
{
    dsv4_cu_hc_dims d = { c->hc_mult, c->dim, (float)c->norm_eps, (float)c->hc_eps, c->hc_sinkhorn_iters };
    return d;
}

static dsv4_cu_hc_w hc_w(const dsv4_hc_w *h)
{
    dsv4_cu_hc_w w = { (const float *)h->fn.w, h->base, h->scale };
    return w;
}

/* ---- compressors and indexer (attn.c run_compressors, idx_rows) ------------------- */

/* One compressor of layer l: projections of xn, then the kernel. */
static int comp_one(dsv4_cuengine *g, struct arena *A, const dsv4_kvstate *s, int ratio, int ikey,
                    const dsv4_wt *wkv, const dsv4_wt *wgate, const float *ape, const float *norm,
                    const float *freqs, float *kv, float *sc, uint8_t *out, const float *xn, int64_t M,
                    int64_t pos0, dsv4_err *err)
{
    int64_t d = ikey ? g->c.index_head_dim : g->c.head_dim, cd = (ratio == 4 ? 2 : 1) * d;
    size_t mark = A->used;
    float *k = TAKE(A, float, M * cd), *gt = TAKE(A, float, M * cd);
    if (!k || !gt)
        return err->code;
    dsv4_cu_comp_args a;
    memset(&a, 0, sizeof a);
    a.ratio = ratio;
    a.ikey = ikey;
    a.compact = s->compact;
    a.d = d;
    a.rope_dim = g->c.rope_dim;
    a.eps = (float)g->c.norm_eps;
    a.M = M;
    a.pos0 = pos0;
    a.k = k;
    a.g = gt;
    a.ape = ape;
    a.norm = norm;
    a.freqs = freqs;
    a.kv = kv;
    a.sc = sc;
    a.out = out;
    if (dsv4_cu_linear(wkv, xn, M, k, 0, NULL, err) || dsv4_cu_linear(wgate, xn, M, gt, 0, NULL, err) ||
        dsv4_cu_compress(&a, NULL, err))
        return err->code;
    A->used = mark;
    return 0;
}

static int comp_chunk(dsv4_cuengine *g, struct arena *A, int l, dsv4_cukv *kv, const float *xn, int64_t M,
                      int64_t pos0, dsv4_err *err)
{
    const dsv4_layer_w *L = &g->w.layers[l];
    dsv4_kv_layer *S = &kv->s.layers[l];
    int r = L->ratio;
    int64_t n_after = (pos0 + M) / r;
    if (n_after > S->n_ent && dsv4_cukv_reserve(kv, l, n_after, err))
        return err->code;
    if (comp_one(g, A, &kv->s, r, 0, &L->c_wkv, &L->c_wgate, L->c_ape, L->c_norm, L->freqs, S->ckv, S->csc,
                 S->ent, xn, M, pos0, err))
        return err->code;
    if (r == 4 && comp_one(g, A, &kv->s, 4, 1, &L->ic_wkv, &L->ic_wgate, L->ic_ape, L->ic_norm, L->freqs,
                           S->ikv, S->isc, S->ikey, xn, M, pos0, err))
        return err->code;
    S->n_ent = n_after;
    return 0;
}

static int index_topk(dsv4_cuengine *g, struct arena *A, const dsv4_cukv *kv, int l, const float *qi,
                      const float *wts, int64_t M, int64_t pos0, int32_t *sel, int32_t *nsel, dsv4_err *err)
{
    const dsv4_kv_layer *S = &kv->s.layers[l];
    dsv4_cu_index_args a;
    memset(&a, 0, sizeof a);
    a.compact = kv->s.compact;
    a.nih = g->c.index_n_heads;
    a.ihd = g->c.index_head_dim;
    a.M = M;
    a.pos0 = pos0;
    a.topk = g->c.index_topk;
    a.n_ent = S->n_ent;
    a.qi = qi;
    a.w = wts;
    a.ikeys = S->ikey;
    a.scores = TAKE(A, float, M * (S->n_ent > 0 ? S->n_ent : 1));
    a.sel = sel;
    a.nsel = nsel;
    if (!a.scores || dsv4_cu_index_topk(&a, NULL, err))
        return err->code;
    return 0;
}

/* ---- attention sub-layer (attn.c dsv4_attn_chunk) ------------------------------- */

static int attn_chunk(dsv4_cuengine *g, struct arena *A, int l, dsv4_cukv *kv, const float *xn, int64_t M,
                      int64_t pos0, float *out, dsv4_err *err)
{
    const dsv4_config *c = &g->c;
    const dsv4_layer_w *L = &g->w.layers[l];
    dsv4_kvstate *s = &kv->s;
    dsv4_kv_layer *S = &s->layers[l];
    dsv4_cu_kv_layout lay = layout_of(s);
    int64_t H = c->n_heads, hd = c->head_dim, rd = c->rope_dim, qr = c->q_lora_rank;
    int64_t W = c->window, G = c->o_groups, olr = c->o_lora_rank, nih = c->index_n_heads;
    int64_t ihd = c->index_head_dim, topk = c->index_topk;
    float eps = (float)c->norm_eps;
    int ratio = L->ratio;
    size_t eb = s->entry_bytes;

    float *qa = TAKE(A, float, M * qr), *q = TAKE(A, float, M * H * hd), *o = TAKE(A, float, M * H * hd);
    float *kvn = TAKE(A, float, M * hd);
    uint8_t *kvq = TAKE(A, uint8_t, (size_t)M * eb);
    int64_t kmax = c->dim > qr ? c->dim : qr;           /* the widest input of a linear_q below */
    kmax = kmax > G * olr ? kmax : G * olr;
    void *qs = take(A, dsv4_cu_linear_q_scratch(M, kmax));
    if (!qa || !q || !o || !kvn || !kvq || !qs)
        return err->code;

    /* query path */
    if (dsv4_cu_linear_q(&L->wq_a, xn, M, qa, qs, NULL, err) ||
        dsv4_cu_rmsnorm(qa, L->q_norm, M, qr, eps, qa, NULL, err) ||
        dsv4_cu_linear_q(&L->wq_b, qa, M, q, qs, NULL, err) ||
        dsv4_cu_head_rms_bf16(q, M * H, hd, eps, NULL, err) ||
        dsv4_cu_rope(q, M, H, hd, rd, L->freqs, pos0, NULL, 0, NULL, err))
        return err->code;

    /* the new tokens' shared KV, packed (the window reads them packed) */
    if (dsv4_cu_linear_q(&L->wkv, xn, M, kvn, qs, NULL, err) ||
        dsv4_cu_rmsnorm(kvn, L->kv_norm, M, hd, eps, kvn, NULL, err) ||
        dsv4_cu_rope(kvn, M, 1, hd, rd, L->freqs, pos0, NULL, 0, NULL, err) ||
        dsv4_cu_kv_pack(kvn, M, &lay, kvq, (int64_t)eb, NULL, err))
        return err->code;

    /* compressed entries completed by this chunk */
    if (ratio && comp_chunk(g, A, l, kv, xn, M, pos0, err))
        return err->code;

    /* CSA: the indexer's selections */
    int32_t *sel = NULL, *nsel = NULL;
    if (ratio == 4) {
        float *qi = TAKE(A, float, M * nih * ihd), *wts = TAKE(A, float, M * nih);
        sel = TAKE(A, int32_t, M * topk);
        nsel = TAKE(A, int32_t, M);
        if (!qi || !wts || !sel || !nsel)
            return err->code;
        float ws = (float)(pow((double)ihd, -0.5) * pow((double)nih, -0.5));
        if (dsv4_cu_linear_q(&L->i_wq_b, qa, M, qi, qs, NULL, err) ||
            dsv4_cu_rope(qi, M, nih, ihd, rd, L->freqs, pos0, NULL, 0, NULL, err) ||
            dsv4_cu_hadamard(qi, M * nih, (int)ihd, !s->compact, NULL, err) ||
            (s->compact && dsv4_cu_fp4_sim(qi, M * nih, ihd, 32, NULL, err)) ||
            dsv4_cu_linear(&L->i_wproj, xn, M, wts, 1, NULL, err) ||
            dsv4_cu_scale_round_bf16(wts, M * nih, ws, NULL, err) ||
            index_topk(g, A, kv, l, qi, wts, M, pos0, sel, nsel, err))
            return err->code;
    }

    /* attention over the window and the compressed entries */
    dsv4_attn_args a;
    memset(&a, 0, sizeof a);
    a.M = M;
    a.H = H;
    a.hd = hd;
    a.rd = rd;
    a.W = W;
    a.pos0 = pos0;
    a.ratio = ratio;
    a.compact = s->compact;
    a.q = q;
    a.ring = S->win;
    a.kvnew = kvq;
    a.ent = S->ent;
    a.n_ent = S->n_ent;
    a.sel = sel;
    a.nsel = nsel;
    a.topk = topk;
    a.sink = L->sink;
    a.freqs = L->freqs;
    a.o = o;
    a.ws_bytes = dsv4_cu_attn_ws_bytes(&a);
    a.ws = a.ws_bytes ? take(A, a.ws_bytes) : NULL;
    if ((a.ws_bytes && !a.ws) || dsv4_cu_attn(&a, NULL, err) ||
        dsv4_cu_win_store(S->win, kvq, (int64_t)eb, W, pos0, M, NULL, err))
        return err->code;

    /* output: grouped wo_a on dequantised weights (bf16), then wo_b */
    int64_t gin = H / G * hd;
    float *og = q, *z = TAKE(A, float, M * G * olr), *zg = TAKE(A, float, M * olr);
    if (!z || !zg)
        return err->code;
    for (int64_t gi = 0; gi < G; gi++) {
        dsv4_wt Wa = dsv4_wt_slice(&L->wo_a, gi * olr, olr);
        if (dsv4_cu_copy2d(og, (size_t)gin * sizeof(float), o + gi * gin, (size_t)(H * hd) * sizeof(float),
                           (size_t)gin * sizeof(float), (size_t)M, err) ||
            dsv4_cu_linear(&Wa, og, M, zg, 1, NULL, err) ||
            dsv4_cu_copy2d(z + gi * olr, (size_t)(G * olr) * sizeof(float), zg, (size_t)olr * sizeof(float),
                           (size_t)olr * sizeof(float), (size_t)M, err))
            return err->code;
    }
    return dsv4_cu_linear_q(&L->wo_b, z, M, out, qs, NULL, err);
}

/* ---- MoE sub-layer (moe.c dsv4_moe_chunk) -------------------------------------- */

static int moe_chunk(dsv4_cuengine *g, struct arena *A, int l, const float *xn, const uint32_t *tokens, int64_t M,
                     float *out, int32_t *status, dsv4_err *err)
{
    const dsv4_cu_moe_layer *L = &g->moe[l];
    size_t wb = dsv4_cu_moe_chunk_workspace(L, M);
    void *ws = take(A, wb);
    if (!ws)
        return err->code;
    return dsv4_cu_moe_chunk(L, xn, NULL, NULL, tokens, M, out, status, ws, wb, NULL, err);
}

/* ---- blocks and the whole pass (engine.c) ----------------------------------------- */

struct acts {                 /* the pass's activations, [n, ...] */
    float *X, *x, *y, *post, *comb, *mu;
    uint32_t *tokens;
    int32_t *status;          /* set by the MoE on a bad tid2eid entry */
};

static int block(dsv4_cuengine *g, struct arena *A, int l, dsv4_cukv *kv, struct acts *a, int64_t M, int64_t pos0,
                 dsv4_err *err)
{
    const dsv4_config *c = &g->c;
    const dsv4_layer_w *L = &g->w.layers[l];
    dsv4_cu_hc_dims d = hc_dims(c);
    dsv4_cu_hc_w ha = hc_w(&L->hc_attn), hf = hc_w(&L->hc_ffn);
    float eps = (float)c->norm_eps;
    size_t mark = A->used;
    if (dsv4_cu_hc_pre(&ha, &d, a->X, M, a->mu, a->x, a->post, a->comb, NULL, err) ||
        dsv4_cu_rmsnorm(a->x, L->attn_norm, M, c->dim, eps, a->x, NULL, err) ||
        attn_chunk(g, A, l, kv, a->x, M, pos0, a->y, err) ||
        dsv4_cu_hc_post(&d, a->y, a->X, M, a->post, a->comb, NULL, err))
        return err->code;
    A->used = mark;           /* the sub-layer's scratch is free again (same stream: ordered) */
    if (dsv4_cu_hc_pre(&hf, &d, a->X, M, a->mu, a->x, a->post, a->comb, NULL, err) ||
        dsv4_cu_rmsnorm(a->x, L->ffn_norm, M, c->dim, eps, a->x, NULL, err) ||
        moe_chunk(g, A, l, a->x, a->tokens, M, a->y, a->status, err) ||
        dsv4_cu_hc_post(&d, a->y, a->X, M, a->post, a->comb, NULL, err))
        return err->code;
    A->used = mark;
    return 0;
}

/* Logits of rows [r0, n) of the streams X (HCHead, final norm, head) to the
 * host array logits. */
static int head_logits(dsv4_cuengine *g, struct arena *A, const dsv4_hc_w *hcw, const float *nw, const float *X,
                       int64_t r0, int64_t n, float *logits, dsv4_err *err)
{
    const dsv4_config *c = &g->c;
    int64_t rows = n - r0, D = c->dim, V = c->vocab_size;
    dsv4_cu_hc_dims d = hc_dims(c);
    dsv4_cu_hc_w hh = hc_w(hcw);
    float *u = TAKE(A, float, rows * D), *mu = TAKE(A, float, rows * c->hc_mult), *lg = TAKE(A, float, rows * V);
    if (!u || !mu || !lg)
        return err->code;
    g->have_lg = 0;
    if (dsv4_cu_hc_head(&hh, &d, nw, X + r0 * c->hc_mult * D, rows, mu, u, NULL, err) ||
        dsv4_cu_linear(&g->w.head, u, rows, lg, 0, NULL, err) ||
        dsv4_cu_copy(g->last_lg, lg + (rows - 1) * V, (size_t)V * sizeof(float), err) || dsv4_cu_sync(NULL, err) ||
        dsv4_cu_download(logits, lg, (size_t)(rows * V) * sizeof(float), err))
        return err->code;
    g->have_lg = 1;
    return 0;
}

/* The activations of n tokens, their ids on the device, the status zeroed. */
static int acts_take(dsv4_cuengine *g, struct arena *A, struct acts *a, int64_t n, const uint32_t *tokens,
                     dsv4_err *err)
{
    int64_t D = g->c.dim, hc = g->c.hc_mult;
    int32_t zero = 0;
    a->X = TAKE(A, float, n * hc * D);
    a->x = TAKE(A, float, n * D);
    a->y = TAKE(A, float, n * D);
    a->post = TAKE(A, float, n * hc);
    a->comb = TAKE(A, float, n * hc * hc);
    a->mu = TAKE(A, float, n * (2 + hc) * hc);
    a->tokens = TAKE(A, uint32_t, n);
    a->status = TAKE(A, int32_t, 1);
    if (!a->X || !a->x || !a->y || !a->post || !a->comb || !a->mu || !a->tokens || !a->status ||
        dsv4_cu_upload(a->status, &zero, sizeof zero, err) ||
        dsv4_cu_upload(a->tokens, tokens, (size_t)n * sizeof *tokens, err))
        return err->code;
    return 0;
}

/* out[m, c, :] = the embedding of tokens[m] (device ids) for c < copies. */
static int embed(dsv4_cuengine *g, const uint32_t *tokens, int64_t n, int64_t copies, float *out, dsv4_err *err)
{
    int et = g->w.embed.kind == DSV4_WT_F32 ? DSV4_CU_EMBED_F32 : DSV4_CU_EMBED_BF16;
    return dsv4_cu_embed(tokens, n, g->w.embed.w, et, g->c.vocab_size, g->c.dim, copies, out, NULL, NULL, err);
}

/* The logits logits_mode asks for from the final streams X[n] (HCHead with
 * hcw and nw), or just the end of the stream's work. */
static int logits_of(dsv4_cuengine *g, struct arena *A, const dsv4_hc_w *hcw, const float *nw, const float *X,
                     int64_t n, int logits_mode, float *logits, dsv4_err *err)
{
    if (logits_mode == DSV4_LOGITS_LAST)
        return head_logits(g, A, hcw, nw, X, n - 1, n, logits, err);
    if (logits_mode == DSV4_LOGITS_ALL)
        return head_logits(g, A, hcw, nw, X, 0, n, logits, err);
    return dsv4_cu_sync(NULL, err);
}

/* End of a public call: wait for the stream (reporting a kernel fault
 * unless the call already failed), release the arena's overflow. */
static int call_end(struct arena *A, int rc, dsv4_err *err)
{
    dsv4_err e2 = DSV4_ERR_INIT;
    if (dsv4_cu_sync(NULL, rc ? &e2 : err) && !rc)
        rc = err->code;
    arena_end(A);
    return rc;
}

static int forward(dsv4_cuengine *g, struct arena *A, dsv4_cukv *kv, const uint32_t *tokens, int64_t n,
                   int logits_mode, float *logits, float *hidden, dsv4_err *err)
{
    const dsv4_config *c = &g->c;
    int64_t pos0 = kv->s.n_tokens, HD = c->hc_mult * c->dim;
    struct acts a;
    int32_t st = 0;
    if (acts_take(g, A, &a, n, tokens, err) || embed(g, a.tokens, n, c->hc_mult, a.X, err))
        return err->code;
    for (int l = 0; l < c->n_layers; l++) {
        if (block(g, A, l, kv, &a, n, pos0, err))
            return dsv4_err_prefix(err, "layer %d", l);
    }
    if (dsv4_cu_sync(NULL, err) || dsv4_cu_download(&st, a.status, sizeof st, err))
        return err->code;
    if (st)
        return dsv4_err_set(err, DSV4_E_FORMAT, "gate.tid2eid holds an expert id out of range for one of the tokens");
    if (hidden && dsv4_cu_download(hidden, a.X, (size_t)(n * HD) * sizeof(float), err))
        return err->code;
    return logits_of(g, A, &g->w.hc_head, g->w.norm, a.X, n, logits_mode, logits, err);
}

int dsv4_cuforward(dsv4_cuengine *g, dsv4_cukv *kv, const uint32_t *tokens, int64_t n, int logits_mode,
                   float *logits, float *hidden, dsv4_err *err)
{
    const dsv4_config *c = &g->c;
    dsv4_kvstate *s = &kv->s;
    if (dsv4_check_tokens(c, tokens, n, s->n_tokens, err))
        return err->code;
    if (s->n_layers != c->n_layers || s->head_dim != c->head_dim || s->window != c->window)
        return dsv4_err_set(err, DSV4_E_MISMATCH, "the KV state was made for another model");
    if (s->n_tokens + n > c->max_position)
        return dsv4_err_set(err, DSV4_E_RANGE, "position %lld is beyond max_position_embeddings %lld",
                            (long long)(s->n_tokens + n - 1), (long long)c->max_position);
    struct arena A = { &g->sc, 0, NULL, 0, 0, err };
    g->have_lg = 0;
    int rc = call_end(&A, forward(g, &A, kv, tokens, n, logits_mode, logits, hidden, err), err);
    if (!rc)
        s->n_tokens += n;
    return rc;
}

int dsv4_cuengine_logits(dsv4_cuengine *g, const float *hidden, int64_t n, float *logits, dsv4_err *err)
{
    struct arena A = { &g->sc, 0, NULL, 0, 0, err };
    size_t bytes = (size_t)(n * g->c.hc_mult * g->c.dim) * sizeof(float);
    float *X = take(&A, bytes);
    int rc = X ? 0 : err->code;
    if (!rc && dsv4_cu_upload(X, hidden, bytes, err))
        rc = err->code;
    if (!rc)
        rc = head_logits(g, &A, &g->w.hc_head, g->w.norm, X, 0, n, logits, err);
    return call_end(&A, rc, err);
}

/* The MTP block (engine.c dsv4_mtp_forward): row i joins the backbone's
 * streams hidden[i] with the embedding of next_tokens[i]. */
static int mtp(dsv4_cuengine *g, struct arena *A, dsv4_cukv *kv, const float *hidden, const uint32_t *next,
               int64_t n, int logits_mode, float *logits, dsv4_err *err)
{
    const dsv4_config *c = &g->c;
    int64_t D = c->dim, hc = c->hc_mult, pos0 = kv->s.n_mtp;
    int l = (int)c->n_layers;
    const dsv4_layer_w *L = &g->w.layers[l];
    float eps = (float)c->norm_eps;
    struct acts a;
    if (acts_take(g, A, &a, n, next, err))
        return err->code;
    float *Xh = TAKE(A, float, n * hc * D);
    void *qs = take(A, dsv4_cu_linear_q_scratch(n * hc, D));
    if (!Xh || !qs)
        return err->code;
    if (embed(g, a.tokens, n, 1, a.x, err) ||
        dsv4_cu_rmsnorm(a.x, L->enorm, n, D, eps, a.x, NULL, err) ||
        dsv4_cu_upload(Xh, hidden, (size_t)(n * hc * D) * sizeof(float), err) ||
        dsv4_cu_rmsnorm(Xh, L->hnorm, n * hc, D, eps, Xh, NULL, err) ||
        dsv4_cu_linear_q(&L->e_proj, a.x, n, a.y, qs, NULL, err) ||
        dsv4_cu_linear_q(&L->h_proj, Xh, n * hc, a.X, qs, NULL, err) ||
        dsv4_cu_add_bcast_bf16(a.X, a.y, n, hc, D, NULL, err))
        return err->code;
    if (block(g, A, l, kv, &a, n, pos0, err))
        return dsv4_err_prefix(err, "MTP block");
    return logits_of(g, A, &L->hc_head, L->mnorm, a.X, n, logits_mode, logits, err);
}

int dsv4_cumtp_forward(dsv4_cuengine *g, dsv4_cukv *kv, const float *hidden, const uint32_t *next_tokens,
                       int64_t n, int logits_mode, float *logits, dsv4_err *err)
{
    const dsv4_config *c = &g->c;
    if (c->n_mtp_layers < 1)
        return dsv4_err_set(err, DSV4_E_UNSUPPORTED, "the model has no MTP block");
    if (dsv4_check_tokens(c, next_tokens, n, kv->s.n_mtp, err))
        return err->code;
    struct arena A = { &g->sc, 0, NULL, 0, 0, err };
    g->have_lg = 0;
    int rc = call_end(&A, mtp(g, &A, kv, hidden, next_tokens, n, logits_mode, logits, err), err);
    if (!rc)
        kv->s.n_mtp += n;
    return rc;
}

#endif
