/* cuengine — weights and KV state on the device (see cuengine.h); the
 * forward pass itself is in cuforward.c. */
#include "cuengine.h"

#if !DSV4_HAVE_CUDA

static int no_cuda(dsv4_err *err)
{
    return dsv4_err_set(err, DSV4_E_UNSUPPORTED,
                        "this build has no CUDA backend (rebuild with ./configure --with-cuda)");
}
int dsv4_cu_available(void) { return 0; }
int dsv4_cuengine_open(dsv4_cuengine **out, dsv4_engine *cpu, dsv4_cu_progress_fn progress, void *pctx,
                       dsv4_err *err)
{
    *out = 0;
    return no_cuda(err);
}
void dsv4_cuengine_close(dsv4_cuengine *g) {}
uint64_t dsv4_cuengine_bytes(const dsv4_cuengine *g) { return 0; }
int dsv4_cukv_new(dsv4_cukv **out, const dsv4_config *c, int compact, dsv4_err *err)
{
    *out = 0;
    return no_cuda(err);
}
void dsv4_cukv_free(dsv4_cukv *d) {}
int dsv4_cukv_upload(dsv4_cukv *d, const dsv4_kvstate *h, dsv4_err *err) { return no_cuda(err); }
int dsv4_cukv_download(const dsv4_cukv *d, dsv4_kvstate *h, dsv4_err *err) { return no_cuda(err); }
int64_t dsv4_cukv_tokens(const dsv4_cukv *d) { return 0; }
int dsv4_cuforward(dsv4_cuengine *g, dsv4_cukv *s, const uint32_t *tokens, int64_t n, int logits_mode,
                   float *logits, float *hidden, dsv4_err *err)
{
    return no_cuda(err);
}
int dsv4_cuengine_logits(dsv4_cuengine *g, const float *hidden, int64_t n, float *logits, dsv4_err *err)
{
    return no_cuda(err);
}
int dsv4_cumtp_forward(dsv4_cuengine *g, dsv4_cukv *s, const float *hidden, const uint32_t *next_tokens,
                       int64_t n, int logits_mode, float *logits, dsv4_err *err)
{
    return no_cuda(err);
}
int dsv4_cuengine_sample(dsv4_cuengine *g, const dsv4_sample_opts *o, uint64_t seed, int64_t pos, uint32_t *token,
                         dsv4_err *err)
{
    return no_cuda(err);
}

#else

#include "cuengine_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

int dsv4_cu_available(void)
{
    return dsv4_cu_device_count() > 0;
}

/* ---- weights ----------------------------------------------------------------- */

/* Bytes of the codes and of the scales of a weight view (ops.h kinds). */
static void wt_bytes(const dsv4_wt *W, size_t *wb, size_t *sb)
{
    size_t n = (size_t)W->n, k = (size_t)W->k;
    *wb = *sb = 0;
    switch (W->kind) {
    case DSV4_WT_FP8: *wb = n * k; *sb = ((n + 127) / 128) * ((k + 127) / 128); break;
    case DSV4_WT_FP4: *wb = n * ((k + 1) / 2); *sb = n * ((k + 31) / 32); break;
    case DSV4_WT_BF16: *wb = 2 * n * k; break;
    case DSV4_WT_F32: *wb = 4 * n * k; break;
    case DSV4_WT_Q2: *wb = n * k / 4; *sb = n * k / 64; break;
    case DSV4_WT_Q3: *wb = n * k * 3 / 8; *sb = n * k / 32; break;
    default: break;
    }
}

struct up {
    dsv4_cuengine *g;
    uint64_t done, total;
    dsv4_cu_progress_fn progress;
    void *pctx;
    int counting;                /* first pass: only add up the bytes */
    dsv4_err *err;
};

static int track(dsv4_cuengine *g, void *p, dsv4_err *err)
{
    if (g->n_allocs == g->cap_allocs) {
        size_t cap = g->cap_allocs ? 2 * g->cap_allocs : 256;
        void **a = realloc(g->allocs, cap * sizeof *a);
        if (!a) {
            dsv4_cu_free(p);
            return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        }
        g->allocs = a;
        g->cap_allocs = cap;
    }
    g->allocs[g->n_allocs++] = p;
    return 0;
}

/* A device copy of host[n bytes] (NULL for n = 0), freed with the engine. */
static int up_bytes(struct up *u, const void *host, size_t n, void **dev)
{
    *dev = NULL;
    if (u->counting) {
        u->total += n;
        return 0;
    }
    if (!n)
        return 0;
    if (dsv4_cu_alloc(dev, n, u->err) || track(u->g, *dev, u->err))
        return u->err->code;
    if (dsv4_cu_upload(*dev, host, n, u->err))
        return u->err->code;
    u->done += n;
    u->g->bytes += n;
    if (u->progress)
        u->progress(u->pctx, u->done, u->total);
    return 0;
}

static int up_wt(struct up *u, const dsv4_wt *src, dsv4_wt *dst)
{
    size_t wb, sb;
    void *w = NULL, *s = NULL;
    *dst = *src;
    if (src->kind == DSV4_WT_NONE || !src->w)
        return 0;
    wt_bytes(src, &wb, &sb);
    if (up_bytes(u, src->w, wb, &w) || (sb && up_bytes(u, src->s, sb, &s)))
        return u->err->code;
    dst->w = w;
    dst->s = s;
    return 0;
}

static int up_vec(struct up *u, const float *src, int64_t n, float **dst)
{
    void *d = NULL;
    *dst = NULL;
    if (!src)
        return 0;
    if (up_bytes(u, src, (size_t)n * sizeof(float), &d))
        return u->err->code;
    *dst = d;
    return 0;
}

static int up_hc(struct up *u, const dsv4_hc_w *src, dsv4_hc_w *dst, int64_t nscale)
{
    if (up_wt(u, &src->fn, &dst->fn) || up_vec(u, src->base, src->fn.n, &dst->base))
        return u->err->code;
    /* the scales are read by the host too (a few scalars): keep both */
    if (up_vec(u, src->scale, nscale, &dst->scale))
        return u->err->code;
    return 0;
}

static int up_layer(struct up *u, const dsv4_config *c, const dsv4_layer_w *S, dsv4_layer_w *L, int mtp)
{
    int64_t D = c->dim, hd = c->head_dim, H = c->n_heads, E = c->n_routed_experts;
    int rc = 0;
    L->ratio = S->ratio;
    L->hash = S->hash;
    rc = rc || up_vec(u, S->attn_norm, D, &L->attn_norm) || up_vec(u, S->ffn_norm, D, &L->ffn_norm);
    rc = rc || up_hc(u, &S->hc_attn, &L->hc_attn, 3) || up_hc(u, &S->hc_ffn, &L->hc_ffn, 3);
    rc = rc || up_wt(u, &S->wq_a, &L->wq_a) || up_wt(u, &S->wq_b, &L->wq_b) || up_wt(u, &S->wkv, &L->wkv);
    rc = rc || up_wt(u, &S->wo_a, &L->wo_a) || up_wt(u, &S->wo_b, &L->wo_b);
    rc = rc || up_vec(u, S->q_norm, c->q_lora_rank, &L->q_norm) || up_vec(u, S->kv_norm, hd, &L->kv_norm);
    rc = rc || up_vec(u, S->sink, H, &L->sink);
    if (S->ratio) {
        int64_t co = S->ratio == 4 ? 2 : 1;
        rc = rc || up_wt(u, &S->c_wkv, &L->c_wkv) || up_wt(u, &S->c_wgate, &L->c_wgate);
        rc = rc || up_vec(u, S->c_ape, S->ratio * co * hd, &L->c_ape) || up_vec(u, S->c_norm, hd, &L->c_norm);
    }
    if (S->ratio == 4) {
        int64_t ihd = c->index_head_dim;
        rc = rc || up_wt(u, &S->i_wq_b, &L->i_wq_b) || up_wt(u, &S->i_wproj, &L->i_wproj);
        rc = rc || up_wt(u, &S->ic_wkv, &L->ic_wkv) || up_wt(u, &S->ic_wgate, &L->ic_wgate);
        rc = rc || up_vec(u, S->ic_ape, 4 * 2 * ihd, &L->ic_ape) || up_vec(u, S->ic_norm, ihd, &L->ic_norm);
    }
    rc = rc || up_wt(u, &S->gate, &L->gate) || up_vec(u, S->gate_bias, E, &L->gate_bias);
    if (!rc && S->tid2eid) {
        void *d = NULL;
        rc = up_bytes(u, S->tid2eid, (size_t)(c->vocab_size * c->n_experts_per_tok) * 8, &d);
        L->tid2eid = d;
    }
    if (!rc && !u->counting) {
        L->w1 = calloc((size_t)E, sizeof *L->w1);
        L->w2 = calloc((size_t)E, sizeof *L->w2);
        L->w3 = calloc((size_t)E, sizeof *L->w3);
        if (!L->w1 || !L->w2 || !L->w3)
            rc = dsv4_err_set(u->err, DSV4_E_NOMEM, "out of memory");
    }
    for (int64_t x = 0; !rc && x < E; x++) {
        dsv4_wt t;
        rc = up_wt(u, &S->w1[x], L->w1 ? &L->w1[x] : &t) || up_wt(u, &S->w2[x], L->w2 ? &L->w2[x] : &t) ||
             up_wt(u, &S->w3[x], L->w3 ? &L->w3[x] : &t);
    }
    rc = rc || up_wt(u, &S->sw1, &L->sw1) || up_wt(u, &S->sw2, &L->sw2) || up_wt(u, &S->sw3, &L->sw3);
    if (mtp) {
        rc = rc || up_wt(u, &S->e_proj, &L->e_proj) || up_wt(u, &S->h_proj, &L->h_proj);
        rc = rc || up_vec(u, S->enorm, D, &L->enorm) || up_vec(u, S->hnorm, D, &L->hnorm) ||
             up_vec(u, S->mnorm, D, &L->mnorm);
        rc = rc || up_hc(u, &S->hc_head, &L->hc_head, 1);
    }
    return rc ? u->err->code : 0;
}

/* The MoE kernels read the expert views from device arrays. */
static int moe_view(struct up *u, const dsv4_config *c, const dsv4_layer_w *L, dsv4_cu_moe_layer *m)
{
    int64_t E = c->n_routed_experts;
    void *a[3] = { NULL, NULL, NULL };
    const dsv4_wt *src[3] = { L->w1, L->w2, L->w3 };
    for (int i = 0; i < 3; i++)
        if (up_bytes(u, src[i], (size_t)E * sizeof(dsv4_wt), &a[i]))
            return u->err->code;
    if (u->counting)
        return 0;
    memset(m, 0, sizeof *m);
    m->dim = c->dim;
    m->n_experts = E;
    m->topk = c->n_experts_per_tok;
    m->inter = c->moe_inter_dim;
    m->route_scale = (float)c->route_scale;
    m->swiglu_limit = (float)c->swiglu_limit;
    m->gate = L->gate;
    m->gate_bias = L->gate_bias;
    m->tid2eid = L->tid2eid;
    m->n_vocab = c->vocab_size;
    m->w1 = a[0];
    m->w2 = a[1];
    m->w3 = a[2];
    m->expert_kind = E ? L->w1[0].kind : DSV4_WT_FP4;
    m->sw1 = L->sw1;
    m->sw2 = L->sw2;
    m->sw3 = L->sw3;
    for (int64_t x = 0; x < E; x++)
        if (L->w1[x].kind != m->expert_kind || L->w2[x].kind != m->expert_kind || L->w3[x].kind != m->expert_kind)
            return dsv4_err_set(u->err, DSV4_E_UNSUPPORTED,
                                "the GPU backend needs every routed expert in one encoding (expert %lld differs)",
                                (long long)x);
    if (m->expert_kind != DSV4_WT_FP4 && m->expert_kind != DSV4_WT_FP8 && m->expert_kind != DSV4_WT_Q2 &&
        m->expert_kind != DSV4_WT_Q3)
        return dsv4_err_set(u->err, DSV4_E_UNSUPPORTED, "the GPU backend has no kernel for BF16/F32 routed experts");
    return 0;
}

static int upload_all(struct up *u, dsv4_engine *cpu)
{
    dsv4_cuengine *g = u->g;
    const dsv4_config *c = &cpu->c;
    int64_t rd = c->rope_dim;
    if (up_wt(u, &cpu->embed, &g->w.embed) || up_wt(u, &cpu->head, &g->w.head) ||
        up_vec(u, cpu->norm, c->dim, &g->w.norm) || up_hc(u, &cpu->hc_head, &g->w.hc_head, 1) ||
        up_vec(u, cpu->freqs_swa, rd / 2, &g->w.freqs_swa) || up_vec(u, cpu->freqs_comp, rd / 2, &g->w.freqs_comp))
        return u->err->code;
    for (int l = 0; l < c->n_ratios; l++) {
        dsv4_layer_w *L = u->counting ? NULL : &g->w.layers[l];
        dsv4_layer_w tmp;
        memset(&tmp, 0, sizeof tmp);
        if (up_layer(u, c, &cpu->layers[l], L ? L : &tmp, l >= c->n_layers) ||
            moe_view(u, c, L ? L : &tmp, L ? &g->moe[l] : NULL))
            return u->err->code;
        if (L)
            L->freqs = L->ratio ? g->w.freqs_comp : g->w.freqs_swa;
    }
    return 0;
}

void dsv4_cuengine_close(dsv4_cuengine *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_allocs; i++)
        dsv4_cu_free(g->allocs[i]);
    free(g->allocs);
    for (int l = 0; g->w.layers && l < g->c.n_ratios; l++) {
        free(g->w.layers[l].w1);
        free(g->w.layers[l].w2);
        free(g->w.layers[l].w3);
    }
    free(g->w.layers);
    free(g->moe);
    dsv4_cuscratch_free(&g->sc);
    dsv4_cu_free(g->last_lg);
    dsv4_cu_free(g->smp_io);
    dsv4_cu_sampler_free(g->smp);
    free(g);
}

int dsv4_cuengine_open(dsv4_cuengine **out, dsv4_engine *cpu, dsv4_cu_progress_fn progress, void *pctx,
                       dsv4_err *err)
{
    *out = NULL;
    if (dsv4_cu_device_count() <= 0)
        return dsv4_err_set(err, DSV4_E_UNSUPPORTED, "no CUDA device found");
    dsv4_cuengine *g = calloc(1, sizeof *g);
    if (!g)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    g->cpu = cpu;
    g->c = cpu->c;
    g->w.c = cpu->c;
    g->w.layers = calloc((size_t)g->c.n_ratios, sizeof *g->w.layers);
    g->moe = calloc((size_t)g->c.n_ratios, sizeof *g->moe);
    if (!g->w.layers || !g->moe) {
        free(g->w.layers);
        free(g->moe);
        free(g);
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    }
    struct up u = { g, 0, 0, progress, pctx, 1, err };
    int rc = upload_all(&u, cpu);
    u.counting = 0;
    if (!rc)
        rc = upload_all(&u, cpu);
    if (!rc)
        rc = dsv4_cu_alloc((void **)&g->last_lg, (size_t)g->c.vocab_size * sizeof(float), err);
    if (rc) {
        dsv4_err_prefix(err, "uploading the weights to the GPU");
        dsv4_cuengine_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

uint64_t dsv4_cuengine_bytes(const dsv4_cuengine *g)
{
    return g ? g->bytes : 0;
}

/* ---- sampling ------------------------------------------------------------------- */

int dsv4_cuengine_sample(dsv4_cuengine *g, const dsv4_sample_opts *o, uint64_t seed, int64_t pos, uint32_t *token,
                         dsv4_err *err)
{
    struct io { uint64_t seed; int64_t pos, status; uint32_t token; } h = { seed, pos, 0, 0 };
    if (!g->have_lg)
        return dsv4_err_set(err, DSV4_E_INVALID, "no logits to sample from yet");
    if (!g->smp && (dsv4_cu_sampler_new(&g->smp, g->c.vocab_size, 1, err) ||
                    dsv4_cu_alloc(&g->smp_io, sizeof h, err)))
        return err->code;
    struct io *d = g->smp_io;
    dsv4_cu_sample_args a = { g->last_lg, 1, g->c.vocab_size, &d->seed, &d->pos, NULL, &d->token, &d->status };
    if (dsv4_cu_upload(d, &h, sizeof h, err) || dsv4_cu_sample(g->smp, &a, o, NULL, err) ||
        dsv4_cu_sync(NULL, err) || dsv4_cu_download(&h, d, sizeof h, err))
        return err->code;
    if (h.status)
        return dsv4_cu_sample_status(h.status, g->c.vocab_size, err);
    *token = h.token;
    return 0;
}

/* ---- KV state ------------------------------------------------------------------ */

void dsv4_cukv_free(dsv4_cukv *d)
{
    if (!d)
        return;
    for (int l = 0; d->s.layers && l < d->s.n_all; l++) {
        dsv4_kv_layer *L = &d->s.layers[l];
        void *p[] = { L->win, L->ent, L->ikey, L->ckv, L->csc, L->ikv, L->isc };
        for (size_t i = 0; i < sizeof p / sizeof *p; i++)
            dsv4_cu_free(p[i]);
    }
    free(d->s.layers);
    free(d);
}

/* Device rows [n] of the value v. */
static int dev_fill(float **dst, int64_t n, float v, dsv4_err *err)
{
    float *h = malloc((size_t)n * sizeof *h);
    void *d = NULL;
    if (!h)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++)
        h[i] = v;
    int rc = dsv4_cu_alloc(&d, (size_t)n * sizeof *h, err) || dsv4_cu_upload(d, h, (size_t)n * sizeof *h, err);
    free(h);
    *dst = d;
    return rc ? err->code : 0;
}

int dsv4_cukv_new(dsv4_cukv **out, const dsv4_config *c, int compact, dsv4_err *err)
{
    *out = NULL;
    dsv4_cukv *d = calloc(1, sizeof *d);
    if (!d)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    dsv4_kvstate *s = &d->s;
    dsv4_kv_shape(s, c, compact);
    s->layers = calloc((size_t)s->n_all, sizeof *s->layers);
    int rc = s->layers ? 0 : dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    for (int l = 0; !rc && l < s->n_all; l++) {
        dsv4_kv_layer *L = &s->layers[l];
        void *w = NULL;
        L->ratio = c->compress_ratios[l];
        rc = dsv4_cu_alloc(&w, (size_t)s->window * s->entry_bytes, err);
        L->win = w;
        if (rc || L->ratio == 0)
            continue;
        L->crows = L->ratio == 4 ? 8 : L->ratio;
        L->cdim = L->ratio == 4 ? 2 * c->head_dim : c->head_dim;
        rc = dev_fill(&L->ckv, L->crows * L->cdim, 0.0f, err) || dev_fill(&L->csc, L->crows * L->cdim, -INFINITY, err);
        if (!rc && L->ratio == 4)
            rc = dev_fill(&L->ikv, 8 * 2 * c->index_head_dim, 0.0f, err) ||
                 dev_fill(&L->isc, 8 * 2 * c->index_head_dim, -INFINITY, err);
    }
    if (rc) {
        dsv4_cukv_free(d);
        return err->code ? err->code : rc;
    }
    *out = d;
    return 0;
}

/* Room for n compressed entries in layer l, keeping the first n_ent. */
int dsv4_cukv_reserve(dsv4_cukv *d, int l, int64_t n, dsv4_err *err)
{
    dsv4_kv_layer *L = &d->s.layers[l];
    if (n <= L->cap)
        return 0;
    int64_t cap = L->cap ? L->cap : 64;
    while (cap < n)
        cap *= 2;
    void *e = NULL, *k = NULL;
    size_t eb = d->s.entry_bytes, kb = d->s.ikey_bytes;
    if (dsv4_cu_alloc(&e, (size_t)cap * eb, err))
        return err->code;
    if (L->ratio == 4 && dsv4_cu_alloc(&k, (size_t)cap * kb, err)) {
        dsv4_cu_free(e);
        return err->code;
    }
    if (L->n_ent && (dsv4_cu_copy(e, L->ent, (size_t)L->n_ent * eb, err) ||
                     (k && dsv4_cu_copy(k, L->ikey, (size_t)L->n_ent * kb, err)))) {
        dsv4_cu_free(e);
        dsv4_cu_free(k);
        return err->code;
    }
    dsv4_cu_free(L->ent);
    dsv4_cu_free(L->ikey);
    L->ent = e;
    L->ikey = k;
    L->cap = cap;
    return 0;
}

static int same_shape(const dsv4_kvstate *a, const dsv4_kvstate *b, dsv4_err *err)
{
    if (a->n_all != b->n_all || a->n_layers != b->n_layers || a->compact != b->compact ||
        a->window != b->window || a->head_dim != b->head_dim || a->entry_bytes != b->entry_bytes ||
        a->ikey_bytes != b->ikey_bytes)
        return dsv4_err_set(err, DSV4_E_MISMATCH, "the KV state was made for another model or layout");
    return 0;
}

int dsv4_cukv_upload(dsv4_cukv *d, const dsv4_kvstate *h, dsv4_err *err)
{
    dsv4_kvstate *s = &d->s;
    if (same_shape(s, h, err))
        return err->code;
    for (int l = 0; l < s->n_all; l++) {
        dsv4_kv_layer *L = &s->layers[l];
        const dsv4_kv_layer *H = &h->layers[l];
        size_t rows = (size_t)(L->crows * L->cdim) * sizeof(float);
        L->n_ent = 0;
        if (dsv4_cukv_reserve(d, l, H->n_ent, err) ||
            dsv4_cu_upload(L->win, H->win, (size_t)s->window * s->entry_bytes, err) ||
            dsv4_cu_upload(L->ent, H->ent, (size_t)H->n_ent * s->entry_bytes, err) ||
            (L->ratio == 4 && dsv4_cu_upload(L->ikey, H->ikey, (size_t)H->n_ent * s->ikey_bytes, err)) ||
            (L->ckv && (dsv4_cu_upload(L->ckv, H->ckv, rows, err) || dsv4_cu_upload(L->csc, H->csc, rows, err))) ||
            (L->ikv && (dsv4_cu_upload(L->ikv, H->ikv, (size_t)(16 * s->index_head_dim) * sizeof(float), err) ||
                        dsv4_cu_upload(L->isc, H->isc, (size_t)(16 * s->index_head_dim) * sizeof(float), err))))
            return err->code;
        L->n_ent = H->n_ent;
    }
    s->n_tokens = h->n_tokens;
    s->n_mtp = h->n_mtp;
    return 0;
}

int dsv4_cukv_download(const dsv4_cukv *d, dsv4_kvstate *h, dsv4_err *err)
{
    const dsv4_kvstate *s = &d->s;
    if (same_shape(s, h, err))
        return err->code;
    if (dsv4_cu_sync(NULL, err))
        return err->code;
    for (int l = 0; l < s->n_all; l++) {
        const dsv4_kv_layer *L = &s->layers[l];
        dsv4_kv_layer *H = &h->layers[l];
        size_t rows = (size_t)(L->crows * L->cdim) * sizeof(float);
        if (dsv4_kv_reserve(h, l, L->n_ent, err) ||
            dsv4_cu_download(H->win, L->win, (size_t)s->window * s->entry_bytes, err) ||
            dsv4_cu_download(H->ent, L->ent, (size_t)L->n_ent * s->entry_bytes, err) ||
            (L->ratio == 4 && dsv4_cu_download(H->ikey, L->ikey, (size_t)L->n_ent * s->ikey_bytes, err)) ||
            (L->ckv && (dsv4_cu_download(H->ckv, L->ckv, rows, err) || dsv4_cu_download(H->csc, L->csc, rows, err))) ||
            (L->ikv && (dsv4_cu_download(H->ikv, L->ikv, (size_t)(16 * s->index_head_dim) * sizeof(float), err) ||
                        dsv4_cu_download(H->isc, L->isc, (size_t)(16 * s->index_head_dim) * sizeof(float), err))))
            return err->code;
        H->n_ent = L->n_ent;
    }
    h->n_tokens = s->n_tokens;
    h->n_mtp = s->n_mtp;
    return 0;
}

int64_t dsv4_cukv_tokens(const dsv4_cukv *d)
{
    return d->s.n_tokens;
}

#endif
