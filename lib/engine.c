/* engine — binding the weights and running the DeepSeek-V4 forward pass on
 * the CPU (see engine.h): embedding, mHC (HCPre with Sinkhorn, HCPost,
 * HCHead), the blocks, final norm and head, and the MTP block.
 * Attention is in attn.c, the MoE in moe.c. */
#include "engine_impl.h"
#include "codec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- binding -------------------------------------------------------------- */

struct binder {
    const dsv4_config *c;
    dsv4_find_fn find;
    void *ctx;
    dsv4_err *err;
    int rc;
};

static const dsv4_tensor *need(struct binder *b, const char *name, int64_t numel)
{
    if (b->rc)
        return NULL;
    const dsv4_tensor *t = b->find(b->ctx, name);
    if (!t) {
        b->rc = dsv4_err_set(b->err, DSV4_E_NOTFOUND, "tensor %s is missing", name);
        return NULL;
    }
    if (numel >= 0 && dsv4_tensor_numel(t) != numel) {
        b->rc = dsv4_err_set(b->err, DSV4_E_MISMATCH, "tensor %s has %lld elements, the config implies %lld", name,
                             (long long)dsv4_tensor_numel(t), (long long)numel);
        return NULL;
    }
    return t;
}

/* A small vector as an owned f32 copy (BF16 or F32 on disk). */
static float *vec(struct binder *b, const char *fmt, const char *pre, int64_t n)
{
    char name[160];
    snprintf(name, sizeof name, fmt, pre);
    const dsv4_tensor *t = need(b, name, n);
    if (!t)
        return NULL;
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) {
        b->rc = dsv4_err_set(b->err, DSV4_E_NOMEM, "out of memory");
        return NULL;
    }
    const uint8_t *p = t->data;
    if (t->dtype == DSV4_DT_BF16) {
        for (int64_t i = 0; i < n; i++)
            v[i] = dsv4_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    } else if (t->dtype == DSV4_DT_F32) {
        memcpy(v, p, (size_t)n * sizeof *v);
    } else {
        free(v);
        b->rc = dsv4_err_set(b->err, DSV4_E_MISMATCH, "tensor %s is %s, expected BF16 or F32", name,
                             dsv4_dtype_name(t->dtype));
        return NULL;
    }
    return v;
}

/* A matrix [n, k] in any supported encoding (FP8/FP4/Q2/Q3 with a .scale sibling). */
static dsv4_wt mat(struct binder *b, const char *pre, const char *name, int64_t n, int64_t k)
{
    dsv4_wt w = { 0 };
    char full[192], sname[192];
    snprintf(full, sizeof full, "%s%s", pre, name);
    const dsv4_tensor *t = need(b, full, -1);
    if (!t)
        return w;
    w.n = n;
    w.k = k;
    w.w = t->data;
    w.kind = dsv4_wt_kind_of(t->dtype);
    if (w.kind == DSV4_WT_NONE) {
        b->rc = dsv4_err_set(b->err, DSV4_E_MISMATCH, "tensor %s has unsupported dtype %s", full,
                             dsv4_dtype_name(t->dtype));
        return w;
    }
    if (t->ndim != 2 || t->shape[0] != n || dsv4_wt_cols(w.kind, t->shape[1]) != k) {
        b->rc = dsv4_err_set(b->err, DSV4_E_MISMATCH, "tensor %s does not have the [%lld, %lld] shape the config implies",
                             full, (long long)n, (long long)k);
        return w;
    }
    if (w.kind == DSV4_WT_Q2 && k % 64)
        b->rc = dsv4_err_set(b->err, DSV4_E_MISMATCH, "tensor %s is Q2 but %lld columns are not a multiple of 64", full,
                             (long long)k);
    if (w.kind == DSV4_WT_Q3 && k % 32)
        b->rc = dsv4_err_set(b->err, DSV4_E_MISMATCH, "tensor %s is Q3 but %lld columns are not a multiple of 32", full,
                             (long long)k);
    if (w.kind != DSV4_WT_BF16 && w.kind != DSV4_WT_F32) {
        const char *dot = strrchr(full, '.');
        int q = w.kind == DSV4_WT_Q2 || w.kind == DSV4_WT_Q3;
        dsv4_dtype sdt = q ? DSV4_DT_QS8 : DSV4_DT_F8_E8M0;
        snprintf(sname, sizeof sname, "%.*s.scale", (int)(dot - full), full);
        int64_t ns = w.kind == DSV4_WT_FP8 ? ((n + 127) / 128) * ((k + 127) / 128)
                   : n * (k / (w.kind == DSV4_WT_Q2 ? 64 : 32));
        if (w.kind == DSV4_WT_FP4)
            ns = n * ((k + 31) / 32);
        const dsv4_tensor *s = need(b, sname, ns);
        if (s && s->dtype != sdt)
            b->rc = dsv4_err_set(b->err, DSV4_E_MISMATCH, "tensor %s is %s, expected %s", sname,
                                 dsv4_dtype_name(s->dtype), dsv4_dtype_name(sdt));
        w.s = s ? s->data : NULL;
    }
    return w;
}

static void hc_bind(struct binder *b, dsv4_hc_w *h, const char *pre, const char *site, int64_t nout, int64_t nscale)
{
    const dsv4_config *c = b->c;
    char n[96];
    snprintf(n, sizeof n, "hc_%s_fn", site);
    h->fn = mat(b, pre, n, nout, c->hc_mult * c->dim);
    snprintf(n, sizeof n, "%%shc_%s_base", site);
    h->base = vec(b, n, pre, nout);
    snprintf(n, sizeof n, "%%shc_%s_scale", site);
    h->scale = vec(b, n, pre, nscale);
}

static void layer_bind(struct binder *b, dsv4_engine *e, int l)
{
    const dsv4_config *c = b->c;
    dsv4_layer_w *L = &e->layers[l];
    char pre[32], a[48], f[48];
    int mtp = l >= c->n_layers;
    if (mtp)
        snprintf(pre, sizeof pre, "mtp.%d.", (int)(l - c->n_layers));
    else
        snprintf(pre, sizeof pre, "layers.%d.", l);
    snprintf(a, sizeof a, "%sattn.", pre);
    snprintf(f, sizeof f, "%sffn.", pre);
    int64_t D = c->dim, H = c->n_heads, hd = c->head_dim, qr = c->q_lora_rank, hc = c->hc_mult;
    int64_t E = c->n_routed_experts, I = c->moe_inter_dim;
    L->ratio = c->compress_ratios[l];
    L->hash = !mtp && l < c->n_hash_layers;
    L->freqs = L->ratio ? e->freqs_comp : e->freqs_swa;
    L->attn_norm = vec(b, "%sattn_norm.weight", pre, D);
    L->ffn_norm = vec(b, "%sffn_norm.weight", pre, D);
    hc_bind(b, &L->hc_attn, pre, "attn", (2 + hc) * hc, 3);
    hc_bind(b, &L->hc_ffn, pre, "ffn", (2 + hc) * hc, 3);
    L->wq_a = mat(b, a, "wq_a.weight", qr, D);
    L->q_norm = vec(b, "%sq_norm.weight", a, qr);
    L->wq_b = mat(b, a, "wq_b.weight", H * hd, qr);
    L->wkv = mat(b, a, "wkv.weight", hd, D);
    L->kv_norm = vec(b, "%skv_norm.weight", a, hd);
    L->wo_a = mat(b, a, "wo_a.weight", c->o_groups * c->o_lora_rank, H * hd / c->o_groups);
    L->wo_b = mat(b, a, "wo_b.weight", D, c->o_groups * c->o_lora_rank);
    L->sink = vec(b, "%sattn_sink", a, H);
    if (L->ratio) {
        int64_t co = L->ratio == 4 ? 2 : 1;
        L->c_wkv = mat(b, a, "compressor.wkv.weight", co * hd, D);
        L->c_wgate = mat(b, a, "compressor.wgate.weight", co * hd, D);
        L->c_ape = vec(b, "%scompressor.ape", a, L->ratio * co * hd);
        L->c_norm = vec(b, "%scompressor.norm.weight", a, hd);
    }
    if (L->ratio == 4) {
        char ip[64];
        int64_t nih = c->index_n_heads, ihd = c->index_head_dim;
        snprintf(ip, sizeof ip, "%sindexer.", a);
        L->i_wq_b = mat(b, ip, "wq_b.weight", nih * ihd, qr);
        L->i_wproj = mat(b, ip, "weights_proj.weight", nih, D);
        L->ic_wkv = mat(b, ip, "compressor.wkv.weight", 2 * ihd, D);
        L->ic_wgate = mat(b, ip, "compressor.wgate.weight", 2 * ihd, D);
        L->ic_ape = vec(b, "%scompressor.ape", ip, 4 * 2 * ihd);
        L->ic_norm = vec(b, "%scompressor.norm.weight", ip, ihd);
    }
    L->gate = mat(b, f, "gate.weight", E, D);
    if (L->hash) {
        char n[96];
        snprintf(n, sizeof n, "%sgate.tid2eid", f);
        const dsv4_tensor *t = need(b, n, c->vocab_size * c->n_experts_per_tok);
        if (t && t->dtype != DSV4_DT_I64)
            b->rc = dsv4_err_set(b->err, DSV4_E_MISMATCH, "tensor %s is %s, expected I64", n, dsv4_dtype_name(t->dtype));
        L->tid2eid = t ? t->data : NULL;
    } else {
        L->gate_bias = vec(b, "%sgate.bias", f, E);
    }
    L->w1 = calloc((size_t)E, sizeof *L->w1);
    L->w2 = calloc((size_t)E, sizeof *L->w2);
    L->w3 = calloc((size_t)E, sizeof *L->w3);
    if (!L->w1 || !L->w2 || !L->w3) {
        if (!b->rc)
            b->rc = dsv4_err_set(b->err, DSV4_E_NOMEM, "out of memory");
        return;
    }
    for (int64_t x = 0; x < E && !b->rc; x++) {
        char ep[80];
        snprintf(ep, sizeof ep, "%sexperts.%lld.", f, (long long)x);
        L->w1[x] = mat(b, ep, "w1.weight", I, D);
        L->w2[x] = mat(b, ep, "w2.weight", D, I);
        L->w3[x] = mat(b, ep, "w3.weight", I, D);
    }
    if (c->n_shared_experts > 0) {
        char sp[64];
        snprintf(sp, sizeof sp, "%sshared_experts.", f);
        int64_t si = I * c->n_shared_experts;
        L->sw1 = mat(b, sp, "w1.weight", si, D);
        L->sw2 = mat(b, sp, "w2.weight", D, si);
        L->sw3 = mat(b, sp, "w3.weight", si, D);
    }
    if (mtp) {
        L->e_proj = mat(b, pre, "e_proj.weight", D, D);
        L->h_proj = mat(b, pre, "h_proj.weight", D, D);
        L->enorm = vec(b, "%senorm.weight", pre, D);
        L->hnorm = vec(b, "%shnorm.weight", pre, D);
        L->mnorm = vec(b, "%snorm.weight", pre, D);
        hc_bind(b, &L->hc_head, pre, "head", hc, 1);
    }
}

static void layer_free(dsv4_layer_w *L)
{
    float *v[] = { L->attn_norm, L->ffn_norm, L->hc_attn.base, L->hc_attn.scale, L->hc_ffn.base, L->hc_ffn.scale,
                   L->q_norm, L->kv_norm, L->sink, L->c_ape, L->c_norm, L->ic_ape, L->ic_norm, L->gate_bias,
                   L->enorm, L->hnorm, L->mnorm, L->hc_head.base, L->hc_head.scale };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        free(v[i]);
    free(L->w1);
    free(L->w2);
    free(L->w3);
}

void dsv4_engine_close(dsv4_engine *e)
{
    if (!e)
        return;
    for (int l = 0; e->layers && l < e->c.n_ratios; l++)
        layer_free(&e->layers[l]);
    free(e->layers);
    free(e->norm);
    free(e->hc_head.base);
    free(e->hc_head.scale);
    free(e->freqs_swa);
    free(e->freqs_comp);
    dsv4_pool_free(e->pool);
    free(e);
}

int dsv4_engine_open(dsv4_engine **out, const dsv4_config *cfg, dsv4_find_fn find, void *ctx, int threads,
                     dsv4_err *err)
{
    *out = NULL;
    if (cfg->head_dim > 4096 || cfg->rope_dim > cfg->head_dim || cfg->rope_dim > cfg->index_head_dim ||
        cfg->hc_mult > 16 || cfg->n_heads % cfg->o_groups || (cfg->index_head_dim & (cfg->index_head_dim - 1)))
        return dsv4_err_set(err, DSV4_E_UNSUPPORTED, "config dimensions not supported by the CPU engine");
    dsv4_engine *e = calloc(1, sizeof *e);
    if (!e)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    e->c = *cfg;
    int64_t rd = cfg->rope_dim;
    e->freqs_swa = malloc((size_t)rd / 2 * sizeof(float));
    e->freqs_comp = malloc((size_t)rd / 2 * sizeof(float));
    e->layers = calloc((size_t)cfg->n_ratios, sizeof *e->layers);
    if (!e->freqs_swa || !e->freqs_comp || !e->layers) {
        dsv4_engine_close(e);
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    }
    dsv4_rope_freqs(e->freqs_swa, rd, cfg->rope_theta, 0, 1, 0, 0, 0);
    dsv4_rope_freqs(e->freqs_comp, rd, cfg->compress_rope_theta, cfg->rope_factor > 1 && cfg->original_seq_len > 0,
                    cfg->rope_factor, (double)cfg->original_seq_len, cfg->beta_fast, cfg->beta_slow);
    struct binder b = { cfg, find, ctx, err, 0 };
    e->embed = mat(&b, "", "embed.weight", cfg->vocab_size, cfg->dim);
    e->head = mat(&b, "", "head.weight", cfg->vocab_size, cfg->dim);
    e->norm = vec(&b, "%snorm.weight", "", cfg->dim);
    hc_bind(&b, &e->hc_head, "", "head", cfg->hc_mult, 1);
    for (int l = 0; l < cfg->n_ratios && !b.rc; l++)
        layer_bind(&b, e, l);
    if (!b.rc && e->embed.kind != DSV4_WT_BF16 && e->embed.kind != DSV4_WT_F32)
        b.rc = dsv4_err_set(err, DSV4_E_MISMATCH, "embed.weight must be BF16 or F32");
    if (!b.rc)
        b.rc = dsv4_pool_new(&e->pool, threads, err);
    if (b.rc) {
        dsv4_engine_close(e);
        return b.rc;
    }
    *out = e;
    return 0;
}

static const dsv4_tensor *model_find(void *ctx, const char *name)
{
    return dsv4_model_find(ctx, name);
}

int dsv4_engine_open_model(dsv4_engine **out, const dsv4_model *m, int threads, dsv4_err *err)
{
    return dsv4_engine_open(out, dsv4_model_config(m), model_find, (void *)m, threads, err);
}

const dsv4_config *dsv4_engine_config(const dsv4_engine *e)
{
    return &e->c;
}

int dsv4_engine_threads(const dsv4_engine *e)
{
    return dsv4_pool_threads(e->pool);
}

/* ---- mHC (§4.2) ------------------------------------------------------------- */

/* mu[M, nout] = (fn z) * rsqrt(mean(z^2) + norm_eps), z = the flattened streams. */
static int hc_mix(dsv4_pool *pool, const dsv4_hc_w *h, const dsv4_hc_dims *d, const float *X, int64_t M, float *mu,
                  dsv4_err *err)
{
    int64_t n = d->hc * d->D, nout = h->fn.n;
    if (dsv4_linear(pool, &h->fn, X, M, mu, 0, err))
        return err->code;
    for (int64_t m = 0; m < M; m++) {
        const float *z = X + m * n;
        float rho = 1.0f / sqrtf(dsv4_mean_sq(z, n) + d->norm_eps);
        for (int64_t i = 0; i < nout; i++)
            mu[m * nout + i] *= rho;
    }
    return 0;
}

/* HCPre: x[M, D], post[M, hc], comb[M, hc, hc] from the streams X[M, hc, D]. */
int dsv4_hc_pre(dsv4_pool *pool, const dsv4_hc_w *h, const dsv4_hc_dims *d, const float *X, int64_t M, float *x,
                float *post, float *comb, dsv4_err *err)
{
    int64_t hc = d->hc, D = d->D, nout = (2 + hc) * hc;
    float eps = d->hc_eps;
    float *mu = malloc((size_t)(M * nout) * sizeof *mu);
    if (!mu)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    if (hc_mix(pool, h, d, X, M, mu, err)) {
        free(mu);
        return err->code;
    }
    for (int64_t m = 0; m < M; m++) {
        const float *u = mu + m * nout, *b = h->base, *a = h->scale;
        float pre[16], *po = post + m * hc, *C = comb + m * hc * hc;
        for (int64_t s = 0; s < hc; s++) {
            pre[s] = dsv4_sigmoid(u[s] * a[0] + b[s]) + eps;
            po[s] = 2.0f * dsv4_sigmoid(u[hc + s] * a[1] + b[hc + s]);
        }
        for (int64_t i = 0; i < hc * hc; i++)
            C[i] = u[2 * hc + i] * a[2] + b[2 * hc + i];
        /* Sinkhorn: row softmax + eps, column normalise, then (row, column) x (iters - 1) */
        for (int64_t j = 0; j < hc; j++) {
            float *row = C + j * hc, mx = -INFINITY, sum = 0.0f;
            for (int64_t k = 0; k < hc; k++)
                mx = row[k] > mx ? row[k] : mx;
            for (int64_t k = 0; k < hc; k++) {
                row[k] = expf(row[k] - mx);
                sum += row[k];
            }
            for (int64_t k = 0; k < hc; k++)
                row[k] = row[k] / sum + eps;
        }
        for (int64_t it = 0; it < d->iters; it++) {
            if (it > 0)
                for (int64_t j = 0; j < hc; j++) {
                    float sum = 0.0f;
                    for (int64_t k = 0; k < hc; k++)
                        sum += C[j * hc + k];
                    for (int64_t k = 0; k < hc; k++)
                        C[j * hc + k] /= sum + eps;
                }
            for (int64_t k = 0; k < hc; k++) {
                float sum = 0.0f;
                for (int64_t j = 0; j < hc; j++)
                    sum += C[j * hc + k];
                for (int64_t j = 0; j < hc; j++)
                    C[j * hc + k] /= sum + eps;
            }
        }
        const float *Xm = X + m * hc * D;
        for (int64_t i = 0; i < D; i++) {
            float acc = 0.0f;
            for (int64_t s = 0; s < hc; s++)
                acc += pre[s] * Xm[s * D + i];
            x[m * D + i] = dsv4_round_bf16(acc);
        }
    }
    free(mu);
    return 0;
}

/* HCPost: X'_k = bf16(post_k f + sum_j C_jk X_j), in place on X. */
void dsv4_hc_post(const dsv4_hc_dims *d, const float *f, float *X, int64_t M, const float *post, const float *comb)
{
    int64_t hc = d->hc, D = d->D;
    float nx[16];
    for (int64_t m = 0; m < M; m++) {
        float *Xm = X + m * hc * D;
        const float *C = comb + m * hc * hc, *po = post + m * hc;
        for (int64_t i = 0; i < D; i++) {
            for (int64_t k = 0; k < hc; k++) {
                float acc = 0.0f;
                for (int64_t j = 0; j < hc; j++)
                    acc += C[j * hc + k] * Xm[j * D + i];
                nx[k] = dsv4_round_bf16(po[k] * f[m * D + i] + acc);
            }
            for (int64_t k = 0; k < hc; k++)
                Xm[k * D + i] = nx[k];
        }
    }
}

/* HCHead + final RMSNorm: u[M, D]. */
int dsv4_hc_head(dsv4_pool *pool, const dsv4_hc_w *h, const dsv4_hc_dims *d, const float *nw, const float *X,
                 int64_t M, float *u, dsv4_err *err)
{
    int64_t hc = d->hc, D = d->D;
    float *mu = malloc((size_t)(M * hc) * sizeof *mu);
    if (!mu)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    if (hc_mix(pool, h, d, X, M, mu, err)) {
        free(mu);
        return err->code;
    }
    for (int64_t m = 0; m < M; m++) {
        float w[16];
        for (int64_t s = 0; s < hc; s++)
            w[s] = dsv4_sigmoid(mu[m * hc + s] * h->scale[0] + h->base[s]) + d->hc_eps;
        for (int64_t i = 0; i < D; i++) {
            float acc = 0.0f;
            for (int64_t s = 0; s < hc; s++)
                acc += w[s] * X[(m * hc + s) * D + i];
            u[m * D + i] = dsv4_round_bf16(acc);
        }
        dsv4_rmsnorm(u + m * D, nw, D, d->norm_eps, u + m * D);
    }
    free(mu);
    return 0;
}

/* The engine's mHC dimensions. */
static dsv4_hc_dims hc_dims(const dsv4_engine *e)
{
    dsv4_hc_dims d = { e->c.hc_mult, e->c.dim, (float)e->c.norm_eps, (float)e->c.hc_eps, e->c.hc_sinkhorn_iters };
    return d;
}

static int hc_pre(dsv4_engine *e, const dsv4_hc_w *h, const float *X, int64_t M, float *x, float *post,
                  float *comb, dsv4_err *err)
{
    dsv4_hc_dims d = hc_dims(e);
    return dsv4_hc_pre(e->pool, h, &d, X, M, x, post, comb, err);
}

static void hc_post(const dsv4_engine *e, const float *f, float *X, int64_t M, const float *post, const float *comb)
{
    dsv4_hc_dims d = hc_dims(e);
    dsv4_hc_post(&d, f, X, M, post, comb);
}

static int hc_head(dsv4_engine *e, const dsv4_hc_w *h, const float *nw, const float *X, int64_t M, float *u,
                   dsv4_err *err)
{
    dsv4_hc_dims d = hc_dims(e);
    return dsv4_hc_head(e->pool, h, &d, nw, X, M, u, err);
}

/* ---- blocks and the whole pass -------------------------------------------- */

static int block(dsv4_engine *e, int l, dsv4_kvstate *s, float *X, const uint32_t *tokens, int64_t M, int64_t pos0,
                 float *x, float *y, float *post, float *comb, dsv4_err *err)
{
    const dsv4_layer_w *L = &e->layers[l];
    int64_t D = e->c.dim;
    float eps = (float)e->c.norm_eps;
    if (hc_pre(e, &L->hc_attn, X, M, x, post, comb, err))
        return err->code;
    for (int64_t m = 0; m < M; m++)
        dsv4_rmsnorm(x + m * D, L->attn_norm, D, eps, x + m * D);
    if (dsv4_attn_chunk(e, l, s, x, M, pos0, y, err))
        return err->code;
    hc_post(e, y, X, M, post, comb);
    if (hc_pre(e, &L->hc_ffn, X, M, x, post, comb, err))
        return err->code;
    for (int64_t m = 0; m < M; m++)
        dsv4_rmsnorm(x + m * D, L->ffn_norm, D, eps, x + m * D);
    if (dsv4_moe_chunk(e, l, x, tokens, M, y, err))
        return err->code;
    hc_post(e, y, X, M, post, comb);
    return 0;
}

static int head_logits(dsv4_engine *e, const float *u, int64_t M, int mode, float *logits, dsv4_err *err)
{
    if (mode == DSV4_LOGITS_NONE)
        return 0;
    if (mode == DSV4_LOGITS_LAST)
        return dsv4_linear(e->pool, &e->head, u + (M - 1) * e->c.dim, 1, logits, 0, err);
    return dsv4_linear(e->pool, &e->head, u, M, logits, 0, err);
}

/* A run needs at least one token, each below vocab_size. */
int dsv4_check_tokens(const dsv4_config *c, const uint32_t *tokens, int64_t n, int64_t pos0, dsv4_err *err)
{
    if (n <= 0)
        return dsv4_err_set(err, DSV4_E_INVALID, "no tokens to run");
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] >= (uint64_t)c->vocab_size)
            return dsv4_err_set(err, DSV4_E_RANGE, "token %u at position %lld is not below vocab_size %lld",
                                tokens[i], (long long)(pos0 + i), (long long)c->vocab_size);
    return 0;
}

int dsv4_forward(dsv4_engine *e, dsv4_kvstate *s, const uint32_t *tokens, int64_t n, int logits_mode,
                 float *logits, float *hidden, dsv4_err *err)
{
    const dsv4_config *c = &e->c;
    int64_t D = c->dim, hc = c->hc_mult, pos0 = s->n_tokens;
    if (dsv4_check_tokens(c, tokens, n, pos0, err))
        return err->code;
    if (s->n_layers != c->n_layers || s->head_dim != c->head_dim || s->window != c->window)
        return dsv4_err_set(err, DSV4_E_MISMATCH, "the KV state was made for another model");
    if (pos0 + n > c->max_position)
        return dsv4_err_set(err, DSV4_E_RANGE, "position %lld is beyond max_position_embeddings %lld",
                            (long long)(pos0 + n - 1), (long long)c->max_position);
    float *X = malloc((size_t)(n * hc * D + 2 * n * D + n * hc + n * hc * hc) * sizeof *X);
    if (!X)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory for %lld tokens", (long long)n);
    float *x = X + n * hc * D, *y = x + n * D, *post = y + n * D, *comb = post + n * hc;
    int rc = 0;
    for (int64_t m = 0; m < n; m++) {
        dsv4_wt_row(&e->embed, tokens[m], x);
        for (int64_t s_ = 0; s_ < hc; s_++)
            memcpy(X + (m * hc + s_) * D, x, (size_t)D * sizeof *X);
    }
    for (int l = 0; l < c->n_layers && !rc; l++)
        rc = block(e, l, s, X, tokens, n, pos0, x, y, post, comb, err);
    if (!rc && hidden)
        memcpy(hidden, X, (size_t)(n * hc * D) * sizeof *X);
    if (!rc && logits_mode != DSV4_LOGITS_NONE) {
        rc = hc_head(e, &e->hc_head, e->norm, X, n, x, err);
        if (!rc)
            rc = head_logits(e, x, n, logits_mode, logits, err);
    }
    if (!rc)
        s->n_tokens += n;
    free(X);
    return rc;
}

int dsv4_engine_logits(dsv4_engine *e, const float *hidden, int64_t n, float *logits, dsv4_err *err)
{
    float *u = malloc((size_t)(n * e->c.dim) * sizeof *u);
    if (!u)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    int rc = hc_head(e, &e->hc_head, e->norm, hidden, n, u, err);
    if (!rc)
        rc = head_logits(e, u, n, DSV4_LOGITS_ALL, logits, err);
    free(u);
    return rc;
}

int dsv4_mtp_forward(dsv4_engine *e, dsv4_kvstate *s, const float *hidden, const uint32_t *next_tokens,
                     int64_t n, int logits_mode, float *logits, dsv4_err *err)
{
    const dsv4_config *c = &e->c;
    int64_t D = c->dim, hc = c->hc_mult, pos0 = s->n_mtp;
    int l = (int)c->n_layers;
    if (c->n_mtp_layers < 1)
        return dsv4_err_set(err, DSV4_E_UNSUPPORTED, "the model has no MTP block");
    if (dsv4_check_tokens(c, next_tokens, n, pos0, err))
        return err->code;
    const dsv4_layer_w *L = &e->layers[l];
    float eps = (float)c->norm_eps;
    float *X = malloc((size_t)(2 * n * hc * D + 2 * n * D + n * hc + n * hc * hc) * sizeof *X);
    if (!X)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory for %lld tokens", (long long)n);
    float *Xh = X + n * hc * D, *x = Xh + n * hc * D, *y = x + n * D, *post = y + n * D, *comb = post + n * hc;
    for (int64_t m = 0; m < n; m++) {
        dsv4_wt_row(&e->embed, next_tokens[m], x + m * D);
        dsv4_rmsnorm(x + m * D, L->enorm, D, eps, x + m * D);
    }
    for (int64_t r = 0; r < n * hc; r++)
        dsv4_rmsnorm(hidden + r * D, L->hnorm, D, eps, Xh + r * D);
    int rc = dsv4_linear_q(e->pool, &L->e_proj, x, n, y, err);
    if (!rc)
        rc = dsv4_linear_q(e->pool, &L->h_proj, Xh, n * hc, X, err);
    if (!rc)
        for (int64_t m = 0; m < n; m++)
            for (int64_t s_ = 0; s_ < hc; s_++)
                for (int64_t i = 0; i < D; i++)
                    X[(m * hc + s_) * D + i] = dsv4_round_bf16(y[m * D + i] + X[(m * hc + s_) * D + i]);
    if (!rc)
        rc = block(e, l, s, X, next_tokens, n, pos0, x, y, post, comb, err);
    if (!rc && logits_mode != DSV4_LOGITS_NONE) {
        rc = hc_head(e, &L->hc_head, L->mnorm, X, n, x, err);
        if (!rc)
            rc = head_logits(e, x, n, logits_mode, logits, err);
    }
    if (!rc)
        s->n_mtp += n;
    free(X);
    return rc;
}
