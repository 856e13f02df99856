/* attn — one attention sub-layer of DeepSeek-V4 on a chunk of tokens
 * (spec/ARCH.md §5): query and shared-KV paths, the CSA/HCA compressors with
 * their carried state, the lightning indexer, and sliding-window + compressed
 * sparse attention with the sink.
 *
 * Chunk invariance: everything a token computes depends only on the tokens
 * before it, never on where the chunk starts, so every per-token quantity is
 * computed the same way whether it comes from this chunk or from the state. */
#include "engine_impl.h"
#include "codec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


/* The indexer's Hadamard rotation: the QAT numerics round once (ARCH.md
 * §3.7); the fixtures' reference rotates with a bf16 matmul, which rounds
 * the sums to bf16 before the 1/sqrt(n) scale. */
static void hadamard(const dsv4_kvstate *s, float *x, int64_t n)
{
    if (s->compact) {
        dsv4_hadamard_bf16(x, (int)n);
        return;
    }
    dsv4_hadamard_bf16_2r(x, (int)n);
}

/* ---- compressors (§5.3) --------------------------------------------------- */

/* Pool the rows of a completed block into c[d] (per-channel softmax over the
 * slots, f32). */
static void comp_pool(const dsv4_comp *C, float *out)
{
    int64_t d = C->d, cd = C->c * d;
    int64_t nslot = C->c == 2 ? 2 * C->r : C->r;
    for (int64_t ch = 0; ch < d; ch++) {
        float g[256], k[256];
        for (int64_t i = 0; i < nslot; i++) {
            if (C->c == 2) {   /* rows 0..r-1: previous block, A halves; r..2r-1: B halves */
                int64_t off = i < C->r ? ch : d + ch;
                g[i] = C->sc[i * cd + off];
                k[i] = C->kv[i * cd + off];
            } else {
                g[i] = C->sc[i * cd + ch];
                k[i] = C->kv[i * cd + ch];
            }
        }
        float mx = -INFINITY;
        for (int64_t i = 0; i < nslot; i++)
            mx = g[i] > mx ? g[i] : mx;
        double sum = 0.0;
        for (int64_t i = 0; i < nslot; i++) {
            g[i] = expf(g[i] - mx);
            sum += g[i];
        }
        double acc = 0.0;
        for (int64_t i = 0; i < nslot; i++)
            acc += (double)(g[i] / (float)sum) * k[i];
        out[ch] = (float)acc;
    }
}

/* Feed token t's projections (k, g already including ape) into the state;
 * returns 1 and fills entry[d] (raw pooled values) when t completes a block. */
static int comp_push(dsv4_comp *C, int64_t t, const float *k, const float *g, float *entry)
{
    int64_t cd = C->c * C->d, r = C->r;
    int64_t row = (C->c == 2 ? r : 0) + t % r;
    memcpy(C->kv + row * cd, k, (size_t)cd * sizeof *k);
    memcpy(C->sc + row * cd, g, (size_t)cd * sizeof *g);
    if (t % r != r - 1)
        return 0;
    comp_pool(C, entry);
    if (C->c == 2) {
        memcpy(C->kv, C->kv + r * cd, (size_t)(r * cd) * sizeof *C->kv);
        memcpy(C->sc, C->sc + r * cd, (size_t)(r * cd) * sizeof *C->sc);
    }
    return 1;
}

void dsv4_comp_ape(const dsv4_comp *C, float *g, int64_t M, int64_t pos0)
{
    int64_t cd = C->c * C->d;
    for (int64_t m = 0; m < M; m++) {
        const float *a = C->ape + ((pos0 + m) % C->r) * cd;
        for (int64_t i = 0; i < cd; i++)
            g[m * cd + i] += a[i];
    }
}

/* Projections of the whole chunk: k[M, c*d], g[M, c*d] (+ ape). */
static int comp_project(dsv4_engine *e, const dsv4_wt *wkv, const dsv4_wt *wgate, const dsv4_comp *C,
                        const float *xn, int64_t M, int64_t pos0, float *k, float *g, dsv4_err *err)
{
    if (dsv4_linear(e->pool, wkv, xn, M, k, 0, err) || dsv4_linear(e->pool, wgate, xn, M, g, 0, err))
        return err->code;
    dsv4_comp_ape(C, g, M, pos0);
    return 0;
}

/* bf16 -> RMSNorm -> bf16 -> RoPE at the block start. */
static void entry_finish(const dsv4_comp *C, float *x, int64_t pos)
{
    int64_t d = C->d;
    for (int64_t i = 0; i < d; i++)
        x[i] = dsv4_round_bf16(x[i]);
    dsv4_rmsnorm(x, C->norm, d, C->eps, x);
    dsv4_rope(x + d - C->rope_dim, C->rope_dim, C->freqs, pos, 0);
}

int64_t dsv4_comp_tokens(dsv4_comp *C, const dsv4_kvstate *s, const float *k, const float *g, int64_t M,
                         int64_t pos0, uint8_t *out, float *ent)
{
    int64_t cd = C->c * C->d, r = C->r, n = 0;
    size_t bytes = C->ikey ? s->ikey_bytes : s->entry_bytes;
    for (int64_t m = 0; m < M; m++) {
        int64_t t = pos0 + m;
        if (!comp_push(C, t, k + m * cd, g + m * cd, ent))
            continue;
        int64_t j = t / r;
        entry_finish(C, ent, j * r);
        if (C->ikey) {
            hadamard(s, ent, C->d);
            dsv4_ikey_pack(s, ent, out + (size_t)j * bytes);
        } else {
            dsv4_kv_pack(s, ent, out + (size_t)j * bytes);
        }
        n++;
    }
    return n;
}

static int run_compressors(dsv4_engine *e, int l, dsv4_kvstate *s, const float *xn, int64_t M, int64_t pos0,
                           dsv4_err *err)
{
    const dsv4_layer_w *L = &e->layers[l];
    dsv4_kv_layer *S = &s->layers[l];
    int64_t r = L->ratio, hd = e->c.head_dim, ihd = e->c.index_head_dim, rd = e->c.rope_dim;
    float eps = (float)e->c.norm_eps;
    dsv4_comp C = { L->c_ape, L->c_norm, L->freqs, S->ckv, S->csc, r, hd, r == 4 ? 2 : 1, rd, eps, 0 };
    dsv4_comp I = { L->ic_ape, L->ic_norm, L->freqs, S->ikv, S->isc, 4, ihd, 2, rd, eps, 1 };
    int csa = r == 4;
    int64_t n_new = (pos0 + M) / r - pos0 / r;
    if (n_new > 0 && dsv4_kv_reserve(s, l, S->n_ent + n_new, err))
        return err->code;
    int64_t cd = C.c * hd, icd = 2 * ihd;
    float *buf = malloc((size_t)(2 * M * cd + (csa ? 2 * M * icd : 0) + hd + ihd) * sizeof *buf);
    if (!buf)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory in the compressor of layer %d", l);
    float *k = buf, *g = k + M * cd, *ik = g + M * cd, *ig = ik + (csa ? M * icd : 0);
    float *ent = ig + (csa ? M * icd : 0), *ient = ent + hd;
    int rc = comp_project(e, &L->c_wkv, &L->c_wgate, &C, xn, M, pos0, k, g, err);
    if (!rc && csa)
        rc = comp_project(e, &L->ic_wkv, &L->ic_wgate, &I, xn, M, pos0, ik, ig, err);
    if (!rc) {
        /* the two compressors keep separate state: one after the other is
         * the same as token by token */
        dsv4_comp_tokens(&C, s, k, g, M, pos0, S->ent, ent);
        if (csa)
            dsv4_comp_tokens(&I, s, ik, ig, M, pos0, S->ikey, ient);
        if (n_new > 0)
            S->n_ent = (pos0 + M) / r;
    }
    free(buf);
    return rc;
}

/* ---- lightning indexer (§5.4) -------------------------------------------- */

struct idx_job {
    const dsv4_kvstate *s;
    const uint8_t *ikey;     /* [n_ent][ikey_bytes] */
    int64_t n_ent, nih, ihd;
    const float *qi, *w;     /* [M, nih*ihd], [M, nih] */
    int64_t pos0, topk;
    int32_t *sel;            /* [M, topk] */
    int64_t *nsel;           /* [M] */
    float *scratch;          /* [threads, n_ent + ihd] */
};

/* a ranks below b: lower score, or equal score and higher index */
static int worse(const float *score, int32_t a, int32_t b)
{
    return score[a] < score[b] || (score[a] == score[b] && a > b);
}

/* Put v at the root of the min-heap h[0..n) and restore the heap order. */
static void sift_down(const float *score, int32_t *h, int64_t n, int32_t v)
{
    int64_t c = 0;
    for (;;) {
        int64_t l = 2 * c + 1, w = c;
        int32_t wv = v;
        if (l < n && worse(score, h[l], wv))
            w = l, wv = h[l];
        if (l + 1 < n && worse(score, h[l + 1], wv))
            w = l + 1, wv = h[l + 1];
        if (w == c)
            break;
        h[c] = wv;
        c = w;
    }
    h[c] = v;
}

static void idx_rows(void *ctx, int64_t m0, int64_t m1, int tid)
{
    struct idx_job *J = ctx;
    int64_t nih = J->nih, ihd = J->ihd;
    float *score = J->scratch + (size_t)tid * (size_t)(J->n_ent + ihd);
    float *key = score + J->n_ent;
    for (int64_t m = m0; m < m1; m++) {
        int64_t t = J->pos0 + m, nvis = (t + 1) / 4;
        const float *q = J->qi + m * nih * ihd, *w = J->w + m * nih;
        for (int64_t j = 0; j < nvis; j++) {
            dsv4_ikey_unpack(J->s, J->ikey + (size_t)j * J->s->ikey_bytes, key);
            float acc = 0.0f;
            for (int64_t h = 0; h < nih; h++) {
                float d = dsv4_round_bf16(dsv4_dot(q + h * ihd, key, ihd));
                d = d > 0.0f ? d : 0.0f;
                acc += dsv4_round_bf16(d * w[h]);
            }
            score[j] = dsv4_round_bf16(acc);
        }
        /* top-k, descending; ties go to the lower index: a size-k min-heap
         * (O(n log k), the context can hold 2^18 entries) then a sort */
        int64_t k = nvis < J->topk ? nvis : J->topk;
        int32_t *sel = J->sel + m * J->topk;
        int64_t hn = 0;
        for (int64_t j = 0; j < nvis; j++) {
            if (hn < k) {
                int64_t c = hn++;
                while (c > 0 && worse(score, (int32_t)j, sel[(c - 1) / 2])) {
                    sel[c] = sel[(c - 1) / 2];
                    c = (c - 1) / 2;
                }
                sel[c] = (int32_t)j;
            } else if (worse(score, sel[0], (int32_t)j)) {
                sift_down(score, sel, hn, (int32_t)j);
            }
        }
        for (int64_t n_ = hn; n_ > 1; n_--) {   /* heap sort: worst to the back */
            int32_t top = sel[0];
            sift_down(score, sel, n_ - 1, sel[n_ - 1]);
            sel[n_ - 1] = top;
        }
        J->nsel[m] = k;
    }
}

void dsv4_index_rows(const dsv4_kvstate *s, const uint8_t *ikey, int64_t n_ent, int64_t nih, const float *qi,
                     const float *w, int64_t M, int64_t pos0, int64_t topk, int32_t *sel, int64_t *nsel,
                     float *scratch)
{
    struct idx_job J = { s, ikey, n_ent, nih, s->index_head_dim, qi, w, pos0, topk, sel, nsel, scratch };
    idx_rows(&J, 0, M, 0);
}

/* ---- sparse attention with sink (§5.5, §5.6) ----------------------------- */

/* struct dsv4_att_job and dsv4_att_tasks are in engine_impl.h (the GPU
 * attention test calls them as its reference). */
void dsv4_att_tasks(void *ctx, int64_t i0, int64_t i1, int tid)
{
    const struct dsv4_att_job *J = ctx;
    int64_t H = J->H, hd = J->hd, W = J->W, rd = J->rd;
    float scale = (float)pow((double)hd, -0.5);
    double acc[4096];
    float *sv = J->ssc + (size_t)tid * (size_t)J->maxslots;
    const float **vp = J->svp + (size_t)tid * (size_t)J->maxslots;
    for (int64_t task = i0; task < i1; task++) {
        int64_t m = task / H, h = task % H, t = J->pos0 + m;
        const float *q = J->q + (m * H + h) * hd;
        int64_t wb = t - (W - 1) > 0 ? t - (W - 1) : 0;
        int64_t nc = 0;
        if (J->ratio == 4)
            nc = J->nsel[m];
        else if (J->ratio)
            nc = (t + 1) / J->ratio;
        int64_t nslots = W + nc;
        /* scores of every slot (window list first, then the compressed list) */
        float mx = -INFINITY;
        double l = 0.0;
        for (int64_t i = 0; i < nslots; i++) {
            const float *v = NULL;
            if (i < W) {
                if (wb + i <= t)
                    v = J->win + (wb + i - J->wbase) * hd;
            } else if (J->ratio == 4) {
                v = J->cent + ((m * J->topk) + (i - W)) * hd;
            } else {
                v = J->cent + (i - W) * hd;
            }
            vp[i] = v;
            sv[i] = v ? dsv4_dot(q, v, hd) * scale : -INFINITY;
            mx = sv[i] > mx ? sv[i] : mx;
        }
        for (int64_t i = 0; i < nslots; i++) {
            sv[i] = vp[i] ? expf(sv[i] - mx) : 0.0f;
            l += sv[i];
        }
        memset(acc, 0, (size_t)hd * sizeof *acc);
        float den = (float)l + expf(J->sink[h] - mx);
        for (int64_t i = 0; i < nslots; i++) {
            if (!vp[i])
                continue;
            float p = sv[i] / den;
            for (int64_t d = 0; d < hd; d++)
                acc[d] += (double)p * vp[i][d];
        }
        float *o = J->o + (m * H + h) * hd;
        for (int64_t d = 0; d < hd; d++)
            o[d] = dsv4_round_bf16((float)acc[d]);
        dsv4_rope(o + hd - rd, rd, J->freqs, t, 1);
    }
}

/* Decode compressed entries: HCA all of them; CSA each token's selection. */
struct dec_job {
    const dsv4_kvstate *s;
    const dsv4_kv_layer *S;
    const int32_t *sel;
    const int64_t *nsel;
    int64_t topk, hd;
    float *out;
};

static void dec_all(void *ctx, int64_t j0, int64_t j1, int tid)
{
    struct dec_job *J = ctx;
    for (int64_t j = j0; j < j1; j++)
        dsv4_kv_unpack(J->s, J->S->ent + (size_t)j * J->s->entry_bytes, J->out + j * J->hd);
}

static void dec_sel(void *ctx, int64_t m0, int64_t m1, int tid)
{
    struct dec_job *J = ctx;
    for (int64_t m = m0; m < m1; m++)
        for (int64_t i = 0; i < J->nsel[m]; i++)
            dsv4_kv_unpack(J->s, J->S->ent + (size_t)J->sel[m * J->topk + i] * J->s->entry_bytes,
                           J->out + (m * J->topk + i) * J->hd);
}

/* ---- the sub-layer ------------------------------------------------------- */

#define TOKEN_BATCH 32   /* tokens whose CSA selections are decoded at once */

int dsv4_attn_chunk(dsv4_engine *e, int l, dsv4_kvstate *s, const float *xn, int64_t M, int64_t pos0,
                    float *out, dsv4_err *err)
{
    const dsv4_config *c = &e->c;
    const dsv4_layer_w *L = &e->layers[l];
    dsv4_kv_layer *S = &s->layers[l];
    int64_t D = c->dim, H = c->n_heads, hd = c->head_dim, rd = c->rope_dim, qr = c->q_lora_rank;
    int64_t W = c->window, G = c->o_groups, olr = c->o_lora_rank, nih = c->index_n_heads;
    int64_t ihd = c->index_head_dim;
    float eps = (float)c->norm_eps;
    int ratio = L->ratio, rc = 0;
    if (hd > 4096)
        return dsv4_err_set(err, DSV4_E_UNSUPPORTED, "head_dim %lld is larger than 4096", (long long)hd);

    int64_t wbase = pos0 - (W - 1) > 0 ? pos0 - (W - 1) : 0, nwin = pos0 + M - wbase;
    int64_t nwbuf = nwin * hd > M * olr ? nwin * hd : M * olr;
    size_t nf = (size_t)(M * qr + M * H * hd * 2 + nwbuf + M * G * olr);
    float *fb = malloc(nf * sizeof *fb);
    uint8_t *kvq = malloc((size_t)M * s->entry_bytes);
    float *qi = NULL, *cent = NULL, *iscr = NULL;
    int32_t *sel = NULL;
    int64_t *nsel = NULL;
    float *ssc = NULL;
    const float **svp = NULL;
    if (!fb || !kvq) {
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory in attention of layer %d", l);
        goto out;
    }
    float *qa = fb, *q = qa + M * qr, *o = q + M * H * hd, *win = o + M * H * hd, *z = win + nwbuf;

    /* query path */
    if ((rc = dsv4_linear_q(e->pool, &L->wq_a, xn, M, qa, err)))
        goto out;
    for (int64_t m = 0; m < M; m++)
        dsv4_rmsnorm(qa + m * qr, L->q_norm, qr, eps, qa + m * qr);
    if ((rc = dsv4_linear_q(e->pool, &L->wq_b, qa, M, q, err)))
        goto out;
    for (int64_t m = 0; m < M; m++)
        for (int64_t h = 0; h < H; h++) {
            float *qh = q + (m * H + h) * hd;
            dsv4_head_rms_bf16(qh, hd, eps);
            dsv4_rope(qh + hd - rd, rd, L->freqs, pos0 + m, 0);
        }

    /* shared KV of the new tokens go straight into the window buffer */
    float *kvn = win + (pos0 - wbase) * hd;
    if ((rc = dsv4_linear_q(e->pool, &L->wkv, xn, M, kvn, err)))
        goto out;
    for (int64_t m = 0; m < M; m++) {
        float *v = kvn + m * hd;
        dsv4_rmsnorm(v, L->kv_norm, hd, eps, v);
        dsv4_rope(v + hd - rd, rd, L->freqs, pos0 + m, 0);
        dsv4_kv_pack(s, v, kvq + (size_t)m * s->entry_bytes);
    }
    for (int64_t p = wbase; p < pos0; p++)
        dsv4_kv_unpack(s, S->win + (size_t)(p % W) * s->entry_bytes, win + (p - wbase) * hd);

    /* compressed entries completed by this chunk */
    if (ratio && (rc = run_compressors(e, l, s, xn, M, pos0, err)))
        goto out;

    int64_t topk = c->index_topk;
    if (ratio == 4) {
        qi = malloc((size_t)(M * nih * ihd + M * nih) * sizeof *qi);
        sel = malloc((size_t)(M * topk) * sizeof *sel);
        nsel = calloc((size_t)M, sizeof *nsel);
        iscr = malloc((size_t)dsv4_pool_threads(e->pool) * (size_t)(S->n_ent + ihd) * sizeof *iscr);
        if (!qi || !sel || !nsel || !iscr) {
            rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory in the indexer of layer %d", l);
            goto out;
        }
        float *wts = qi + M * nih * ihd;
        if ((rc = dsv4_linear_q(e->pool, &L->i_wq_b, qa, M, qi, err)))
            goto out;
        for (int64_t m = 0; m < M; m++)
            for (int64_t h = 0; h < nih; h++) {
                float *v = qi + (m * nih + h) * ihd;
                dsv4_rope(v + ihd - rd, rd, L->freqs, pos0 + m, 0);
                hadamard(s, v, ihd);
                if (s->compact)
                    dsv4_fp4_sim(v, ihd, 32);
            }
        if ((rc = dsv4_linear(e->pool, &L->i_wproj, xn, M, wts, 1, err)))
            goto out;
        float ws = (float)(pow((double)ihd, -0.5) * pow((double)nih, -0.5));
        for (int64_t i = 0; i < M * nih; i++)
            wts[i] = dsv4_round_bf16(wts[i] * ws);
        struct idx_job IJ = { s, S->ikey, S->n_ent, nih, ihd, qi, wts, pos0, topk, sel, nsel, iscr };
        dsv4_pool_for(e->pool, M, 1, idx_rows, &IJ);
    }

    /* attention, in batches of tokens (bounds the decoded CSA selections) */
    if (ratio == 128 && S->n_ent) {
        cent = malloc((size_t)(S->n_ent * hd) * sizeof *cent);
        if (!cent) {
            rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory in attention of layer %d", l);
            goto out;
        }
        struct dec_job DJ = { s, S, NULL, NULL, 0, hd, cent };
        dsv4_pool_for(e->pool, S->n_ent, 16, dec_all, &DJ);
    } else if (ratio == 4) {
        cent = malloc((size_t)(TOKEN_BATCH * topk * hd) * sizeof *cent);
        if (!cent) {
            rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory in attention of layer %d", l);
            goto out;
        }
    }
    int64_t maxslots = W + (ratio == 4 ? topk : ratio ? S->n_ent : 0);
    int nth = dsv4_pool_threads(e->pool);
    ssc = malloc((size_t)nth * (size_t)maxslots * sizeof *ssc);
    svp = malloc((size_t)nth * (size_t)maxslots * sizeof *svp);
    if (!ssc || !svp) {
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory in attention of layer %d", l);
        goto out;
    }
    for (int64_t b0 = 0; b0 < M; b0 += TOKEN_BATCH) {
        int64_t nb = M - b0 < TOKEN_BATCH ? M - b0 : TOKEN_BATCH;
        if (ratio == 4) {
            struct dec_job DJ = { s, S, sel + b0 * topk, nsel + b0, topk, hd, cent };
            dsv4_pool_for(e->pool, nb, 1, dec_sel, &DJ);
        }
        struct dsv4_att_job AJ = { H, hd, W, rd, L->sink, L->freqs, q + b0 * H * hd, win, wbase, pos0 + b0,
                                   cent, ratio == 4 ? nsel + b0 : NULL, topk, ratio, o + b0 * H * hd,
                                   maxslots, ssc, svp };
        dsv4_pool_for(e->pool, nb * H, 1, dsv4_att_tasks, &AJ);
    }

    /* window ring keeps the last W positions */
    for (int64_t p = pos0 + M - W > pos0 ? pos0 + M - W : pos0; p < pos0 + M; p++)
        memcpy(S->win + (size_t)(p % W) * s->entry_bytes, kvq + (size_t)(p - pos0) * s->entry_bytes,
               s->entry_bytes);

    /* output: grouped wo_a (bf16 GEMM on dequantised weights), then wo_b */
    int64_t gin = H / G * hd;
    float *og = q, *zg = win;   /* q and the window vectors are free again: reuse them */
    for (int64_t g = 0; g < G; g++) {
        for (int64_t m = 0; m < M; m++)
            memcpy(og + m * gin, o + m * H * hd + g * gin, (size_t)gin * sizeof *og);
        dsv4_wt Wa = dsv4_wt_slice(&L->wo_a, g * olr, olr);
        if ((rc = dsv4_linear(e->pool, &Wa, og, M, zg, 1, err)))
            goto out;
        for (int64_t m = 0; m < M; m++)
            memcpy(z + m * G * olr + g * olr, zg + m * olr, (size_t)olr * sizeof *z);
    }
    rc = dsv4_linear_q(e->pool, &L->wo_b, z, M, out, err);
    (void)D;
out:
    free(fb);
    free(kvq);
    free(qi);
    free(cent);
    free(iscr);
    free(sel);
    free(nsel);
    free(ssc);
    free((void *)svp);
    return rc;
}
