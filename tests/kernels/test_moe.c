/* GPU MoE sub-layer (kernels/moe.cu, lib/gpu_moe.h) against the CPU's
 * lib/moe.c: dsv4_act_quant_row (quant), dsv4_linear (gate), dsv4_moe_route,
 * dsv4_moe_experts and dsv4_moe_chunk, on random layers with Flash-like
 * shapes scaled down (FP4 routed + FP8 shared experts and the reverse, hash
 * and top-k routing, repeated ids in a hash row) and on the real MoE
 * weights of ../shared/fixtures/tiny-v4 (hash layers 0-1, top-k layers, the
 * MTP block's MoE).
 *
 * Tolerance: on the emulated device everything is bit-exact (the kernels do
 * the CPU's arithmetic step for step; expf/log1pf are glibc's there).  On a
 * real GPU, quant, gate and the expert GEMMs remain bit-exact but expf and
 * log1pf may differ from glibc by an ulp or two: scores and weights get
 * 1e-6 relative, ids must match, and outputs that went through SwiGLU get
 * 2^-7 relative (one bf16 step of the largest value). */
#include "ktest.h"

#if DSV4_HAVE_CUDA

#include "codec.h"
#include "config.h"
#include "convert.h"
#include "engine_impl.h"
#include "gpu_moe.h"
#include "quant.h"
#include "safetensors.h"

static int emu(void) { return ktest_emulated(); }

/* ---- device copies of a CPU layer ---------------------------------------- */

/* Byte sizes of a view's codes and scales (gpu.h's dequant sizes for FP8/FP4;
 * Q2/Q3 as lib/quant.h lays them out). */
static size_t wbytes(const dsv4_wt *w)
{
    if (w->kind == DSV4_WT_BF16 || w->kind == DSV4_WT_F32)
        return (size_t)(w->n * w->k * (w->kind == DSV4_WT_BF16 ? 2 : 4));
    if (w->kind == DSV4_WT_Q2 || w->kind == DSV4_WT_Q3)
        return (size_t)(w->n * (w->kind == DSV4_WT_Q2 ? w->k / 4 : w->k / 32 * 12));
    return (size_t)dsv4_dequant_wbytes(w->kind == DSV4_WT_FP8 ? DSV4_DQ_FP8 : DSV4_DQ_FP4, w->n, w->k);
}
static size_t sbytes(const dsv4_wt *w)
{
    if (w->kind == DSV4_WT_Q2 || w->kind == DSV4_WT_Q3)
        return (size_t)(w->n * (w->k / (w->kind == DSV4_WT_Q2 ? 64 : 32)));
    if (w->kind != DSV4_WT_FP8 && w->kind != DSV4_WT_FP4)
        return 0;
    return (size_t)dsv4_dequant_sbytes(w->kind == DSV4_WT_FP8 ? DSV4_DQ_FP8 : DSV4_DQ_FP4, w->n, w->k);
}

struct dl {
    dsv4_cu_moe_layer L;
    void *p[4096];
    int np;
};

static void *dl_up(struct dl *d, const void *host, size_t n)
{
    void *p = kt_dev(host, n);
    d->p[d->np++] = p;
    return p;
}
static dsv4_wt dl_wt(struct dl *d, const dsv4_wt *w)
{
    dsv4_wt v = *w;
    v.w = dl_up(d, w->w, wbytes(w));
    v.s = sbytes(w) ? dl_up(d, w->s, sbytes(w)) : NULL;
    return v;
}
static const dsv4_wt *dl_table(struct dl *d, const dsv4_wt *w, int64_t E)
{
    dsv4_wt *h = kt_malloc((size_t)E * sizeof *h);
    for (int64_t x = 0; x < E; x++)
        h[x] = dl_wt(d, &w[x]);
    const dsv4_wt *t = dl_up(d, h, (size_t)E * sizeof *h);
    free(h);
    return t;
}
static void dl_make(struct dl *d, const dsv4_config *c, const dsv4_layer_w *L)
{
    memset(d, 0, sizeof *d);
    int64_t E = c->n_routed_experts, K = c->n_experts_per_tok;
    d->L.dim = c->dim;
    d->L.n_experts = E;
    d->L.topk = K;
    d->L.inter = c->moe_inter_dim;
    d->L.route_scale = (float)c->route_scale;
    d->L.swiglu_limit = (float)c->swiglu_limit;
    d->L.gate = dl_wt(d, &L->gate);
    if (L->hash) {
        d->L.tid2eid = dl_up(d, L->tid2eid, (size_t)(c->vocab_size * K * 8));
        d->L.n_vocab = c->vocab_size;
    } else {
        d->L.gate_bias = dl_up(d, L->gate_bias, (size_t)E * 4);
    }
    d->L.w1 = dl_table(d, L->w1, E);
    d->L.w2 = dl_table(d, L->w2, E);
    d->L.w3 = dl_table(d, L->w3, E);
    d->L.expert_kind = L->w1[0].kind;
    if (c->n_shared_experts > 0) {
        d->L.sw1 = dl_wt(d, &L->sw1);
        d->L.sw2 = dl_wt(d, &L->sw2);
        d->L.sw3 = dl_wt(d, &L->sw3);
    }
}
static void dl_free(struct dl *d)
{
    for (int i = 0; i < d->np; i++)
        dsv4_cu_free(d->p[i]);
    d->np = 0;
}

/* ---- random layers (a CPU engine of one MoE layer) ------------------------- */

struct rl {
    dsv4_engine e;
    dsv4_layer_w L;
    void *own[2048];
    int nown;
};

static void *rl_own(struct rl *r, size_t n)
{
    void *p = kt_malloc(n);
    r->own[r->nown++] = p;
    return p;
}

/* Random weight of kind [n, k]: codes random (no NaN codes), scales in a
 * band (base + 0..4) chosen so that activations stay O(1). */
static void rl_wt(struct rl *r, kt_rng *g, dsv4_wt *w, int kind, int64_t n, int64_t k, int base)
{
    w->kind = kind;
    w->n = n;
    w->k = k;
    size_t wb = wbytes(w), sb = sbytes(w);
    uint8_t *pw = rl_own(r, wb), *ps = rl_own(r, sb ? sb : 1);
    w->w = pw;
    w->s = ps;
    if (kind == DSV4_WT_Q2 || kind == DSV4_WT_Q3) {
        /* dsv4-quant's encoding of random rows of about the FP4 weights'
         * size at this band (rms of e2m1 codes ~2.9, mid-band scale) */
        int fmt = kind == DSV4_WT_Q2 ? DSV4_QF_Q2 : DSV4_QF_Q3;
        size_t rb = wb / (size_t)n, rs = sb / (size_t)n;
        float *row = kt_malloc((size_t)k * sizeof *row);
        for (int64_t i = 0; i < n; i++) {
            kt_fill_norm(g, row, k, ldexpf(2.9f, base - 125));
            dsv4_quant_row(fmt, row, k, pw + (size_t)i * rb, ps + (size_t)i * rs);
        }
        free(row);
        return;
    }
    kt_fill_bytes(g, pw, (int64_t)wb);
    if (kind == DSV4_WT_FP8)
        for (size_t i = 0; i < wb; i++)
            if ((pw[i] & 0x7f) == 0x7f)
                pw[i] ^= 1;
    for (size_t i = 0; i < sb; i++)
        ps[i] = (uint8_t)(base + kt_u32(g) % 5);
    w->w = pw;
    w->s = ps;
}

/* One expert's weights share one allocation per matrix kind. */
static void rl_make(struct rl *r, kt_rng *g, int64_t D, int64_t E, int64_t K, int64_t I, int kind_r, int kind_s,
                    int hash, int gate_f32, int64_t vocab)
{
    memset(r, 0, sizeof *r);
    dsv4_config *c = &r->e.c;
    c->dim = D;
    c->n_routed_experts = E;
    c->n_experts_per_tok = K;
    c->moe_inter_dim = I;
    c->n_shared_experts = kind_s ? 1 : 0;
    c->route_scale = 1.5;
    c->swiglu_limit = 10.0;
    c->vocab_size = vocab;
    r->e.layers = &r->L;
    dsv4_layer_w *L = &r->L;
    L->hash = hash;
    /* gate: logits of sd ~2 for O(1) inputs */
    L->gate.kind = gate_f32 ? DSV4_WT_F32 : DSV4_WT_BF16;
    L->gate.n = E;
    L->gate.k = D;
    uint8_t *gw = rl_own(r, wbytes(&L->gate));
    for (int64_t i = 0; i < E * D; i++) {
        float v = kt_norm(g, 2.0f / sqrtf((float)D));
        if (gate_f32)
            memcpy(gw + 4 * i, &v, 4);
        else {
            uint16_t h = dsv4_f32_to_bf16(v);
            memcpy(gw + 2 * i, &h, 2);
        }
    }
    L->gate.w = gw;
    if (hash) {
        int64_t *t = rl_own(r, (size_t)(vocab * K * 8));
        for (int64_t i = 0; i < vocab * K; i++)
            t[i] = kt_u32(g) % E;
        t[1] = t[0];   /* token 0 picks one expert twice */
        L->tid2eid = (const uint8_t *)t;
    } else {
        float *b = rl_own(r, (size_t)E * 4);
        for (int64_t i = 0; i < E; i++)
            b[i] = dsv4_round_bf16(kt_unif(g, -0.3f, 0.3f));
        b[E - 1] = b[E - 2];   /* equal biases: ties resolve to the lower id */
        L->gate_bias = b;
    }
    L->w1 = rl_own(r, (size_t)E * sizeof *L->w1);
    L->w2 = rl_own(r, (size_t)E * sizeof *L->w2);
    L->w3 = rl_own(r, (size_t)E * sizeof *L->w3);
    /* e4m3 codes are up to 448 (x2^9 scale, ~2^-9 avg), e2m1 up to 6 */
    int b_in = kind_r == DSV4_WT_FP8 ? 113 : 121, b_out = kind_r == DSV4_WT_FP8 ? 114 : 122;
    for (int64_t x = 0; x < E; x++) {
        rl_wt(r, g, &L->w1[x], kind_r, I, D, b_in);
        rl_wt(r, g, &L->w3[x], kind_r, I, D, b_in);
        rl_wt(r, g, &L->w2[x], kind_r, D, I, b_out);
    }
    if (kind_s) {
        int si = kind_s == DSV4_WT_FP8 ? 113 : 121, so = kind_s == DSV4_WT_FP8 ? 114 : 122;
        rl_wt(r, g, &L->sw1, kind_s, I, D, si);
        rl_wt(r, g, &L->sw3, kind_s, I, D, si);
        rl_wt(r, g, &L->sw2, kind_s, D, I, so);
    }
}
static void rl_free(struct rl *r)
{
    for (int i = 0; i < r->nown; i++)
        free(r->own[i]);
    r->nown = 0;
}

/* ---- helpers ----------------------------------------------------------------- */

static float *rand_x(kt_rng *g, int64_t n, float sd)
{
    float *x = kt_malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++)
        x[i] = dsv4_round_bf16(kt_norm(g, sd));
    return x;
}

/* Sub-layer outputs: bit-exact on the emulator, one bf16 step on a GPU. */
static void cmp_out(const char *what, const float *got, const float *ref, int64_t n)
{
    /* a meaningful reference: finite, mostly nonzero (NaN would match NaN) */
    int64_t fin = 0, nz = 0;
    for (int64_t i = 0; i < n; i++) {
        fin += isfinite(ref[i]) != 0;
        nz += ref[i] != 0.0f;
    }
    CHECK_EQ_INT(fin, n);
    CHECK(nz >= n / 2);
    if (emu()) {
        int64_t bad = kt_mismatch(got, ref, n);
        if (bad)
            fprintf(stderr, "  %s: %lld of %lld values differ\n", what, (long long)bad, (long long)n);
        CHECK_EQ_INT(bad, 0);
    }
    KT_CLOSE(what, got, ref, n, emu() ? 0.0 : 1.0 / 128);
}

/* ---- quant --------------------------------------------------------------------- */

TEST(quant_matches_cpu)
{
    kt_rng g = kt_seed(1);
    int64_t shapes[][2] = { { 1, 128 }, { 3, 200 }, { 2, 1 }, { 4, 2048 }, { 1, 7168 } };
    for (int t = 0; t < 5; t++) {
        int64_t m = shapes[t][0], k = shapes[t][1], kb = (k + 127) / 128;
        float *x = kt_malloc((size_t)(m * k) * 4);
        for (int64_t i = 0; i < m * k; i++)
            x[i] = dsv4_round_bf16(kt_norm(&g, ldexpf(1.0f, (int)(i / 128 % 9) * 3 - 12)));
        if (k >= 200) {
            for (int64_t i = 0; i < 128; i++)
                x[i] = 0.0f;              /* an all-zero block: amax floor */
            x[130] = NAN;                  /* NaN skipped by amax, coded 0x7f */
            x[131] = 1e30f;                /* saturates */
            x[132] = -3e-45f;              /* subnormal */
        }
        uint8_t *q = kt_malloc((size_t)(m * k)), *qr = kt_malloc((size_t)(m * k));
        float *s = kt_malloc((size_t)(m * kb) * 4), *sr = kt_malloc((size_t)(m * kb) * 4);
        for (int64_t i = 0; i < m; i++)
            dsv4_act_quant_row(x + i * k, k, 128, qr + i * k, sr + i * kb);
        float *dx = kt_dev(x, (size_t)(m * k) * 4);
        uint8_t *dq = kt_dev(NULL, (size_t)(m * k));
        float *ds = kt_dev(NULL, (size_t)(m * kb) * 4);
        dsv4_err err = DSV4_ERR_INIT;
        KT_OK(dsv4_cu_moe_quant(dx, m, k, dq, ds, NULL, &err), &err);
        if (!kt_get(q, dq, (size_t)(m * k)) && !kt_get(s, ds, (size_t)(m * kb) * 4)) {
            int64_t bad = 0;
            for (int64_t i = 0; i < m * k; i++)
                bad += q[i] != qr[i];
            printf("  quant %lld x %lld: %lld code and %lld scale mismatches\n", (long long)m, (long long)k,
                   (long long)bad, (long long)kt_mismatch(s, sr, m * kb));
            CHECK_EQ_INT(bad, 0);
            CHECK_EQ_INT(kt_mismatch(s, sr, m * kb), 0);
        }
        dsv4_cu_free(dx);
        dsv4_cu_free(dq);
        dsv4_cu_free(ds);
        free(x);
        free(q);
        free(qr);
        free(s);
        free(sr);
    }
}

/* ---- gate and route ---------------------------------------------------------------- */

TEST(gate_matches_cpu)
{
    kt_rng g = kt_seed(2);
    for (int f32 = 0; f32 < 2; f32++) {
        struct rl r;
        int64_t D = f32 ? 384 : 4096, E = f32 ? 16 : 256, M = f32 ? 5 : 3;
        rl_make(&r, &g, D, E, 6, 128, DSV4_WT_FP4, 0, 0, f32, 16);
        struct dl d;
        memset(&d, 0, sizeof d);
        d.L.dim = D;
        d.L.n_experts = E;
        d.L.topk = 6;
        d.L.inter = 128;
        d.L.gate = dl_wt(&d, &r.L.gate);
        d.L.gate_bias = dl_up(&d, r.L.gate_bias, (size_t)E * 4);
        d.L.expert_kind = DSV4_WT_FP4;
        d.L.w1 = d.L.w2 = d.L.w3 = (const dsv4_wt *)d.L.gate_bias;   /* not read by the gate */
        float *x = rand_x(&g, M * D, 1.0f), *ref = kt_malloc((size_t)(M * E) * 4), *got = kt_malloc((size_t)(M * E) * 4);
        dsv4_err err = DSV4_ERR_INIT;
        CHECK_EQ_INT(dsv4_linear(NULL, &r.L.gate, x, M, ref, 0, &err), 0);
        float *dx = dl_up(&d, x, (size_t)(M * D) * 4), *dy = dl_up(&d, NULL, (size_t)(M * E) * 4);
        KT_OK(dsv4_cu_moe_gate(&d.L, dx, M, dy, NULL, &err), &err);
        if (!kt_get(got, dy, (size_t)(M * E) * 4)) {
            printf("  gate %s [%lld, %lld] x %lld: %lld mismatches\n", f32 ? "F32" : "BF16", (long long)E,
                   (long long)D, (long long)M, (long long)kt_mismatch(got, ref, M * E));
            CHECK_EQ_INT(kt_mismatch(got, ref, M * E), 0);
        }
        free(x);
        free(ref);
        free(got);
        dl_free(&d);
        rl_free(&r);
    }
}

/* Routing of M tokens from random logits (with ties, values > 20 and a NaN
 * row) vs dsv4_moe_route; hash layers with a bad id as well. */
static void route_case(int hash, int64_t E, int64_t M, uint64_t seed)
{
    kt_rng g = kt_seed(seed);
    int64_t K = 6, vocab = 50;
    struct rl r;
    rl_make(&r, &g, 128, E, K, 128, DSV4_WT_FP4, 0, hash, 0, vocab);
    struct dl d;
    dl_make(&d, &r.e.c, &r.L);
    float *lg = kt_malloc((size_t)(M * E) * 4), *sc = kt_malloc((size_t)(M * E) * 4);
    for (int64_t i = 0; i < M * E; i++)
        lg[i] = kt_norm(&g, 3.0f);
    lg[0] = lg[1] = 2.5f;
    if (M > 1)   /* a tie of score + bias (equal biases there): the lower id first */
        lg[E + E - 1] = lg[E + E - 2] = 15.0f;
    if (M > 2) {
        lg[E + 3] = 25.0f;                          /* above softplus' threshold */
        lg[2 * E + 0] = NAN;                        /* the first index NaN: picked first */
        lg[2 * E + 5] = NAN;
    }
    uint32_t *tok = kt_malloc((size_t)M * 4);
    for (int64_t m = 0; m < M; m++)
        tok[m] = kt_u32(&g) % (uint32_t)vocab;
    tok[0] = 0;                                    /* the row with a repeated id */
    int32_t *sel = kt_malloc((size_t)(M * K) * 4), *gsel = kt_malloc((size_t)(M * K) * 4);
    float *w = kt_malloc((size_t)(M * K) * 4), *gw = kt_malloc((size_t)(M * K) * 4);
    float *gsc = kt_malloc((size_t)(M * E) * 4);
    memcpy(sc, lg, (size_t)(M * E) * 4);
    dsv4_err err = DSV4_ERR_INIT;
    CHECK_EQ_INT(dsv4_moe_route(&r.e, 0, sc, tok, M, sel, w, &err), 0);
    float *dsc = dl_up(&d, lg, (size_t)(M * E) * 4);
    uint32_t *dtok = dl_up(&d, tok, (size_t)M * 4);
    int32_t *dsel = dl_up(&d, NULL, (size_t)(M * K) * 4), zero = 0;
    float *dw = dl_up(&d, NULL, (size_t)(M * K) * 4);
    int32_t *dst = dl_up(&d, &zero, 4), st = -1;
    KT_OK(dsv4_cu_moe_route(&d.L, dsc, dtok, M, dsel, dw, dst, NULL, &err), &err);
    if (!kt_get(gsel, dsel, (size_t)(M * K) * 4) && !kt_get(gw, dw, (size_t)(M * K) * 4) &&
        !kt_get(gsc, dsc, (size_t)(M * E) * 4) && !kt_get(&st, dst, 4)) {
        int64_t badid = 0;
        for (int64_t i = 0; i < M * K; i++)
            badid += sel[i] != gsel[i];
        printf("  route %s E=%lld M=%lld: %lld id mismatches\n", hash ? "hash" : "top-k", (long long)E, (long long)M,
               (long long)badid);
        CHECK_EQ_INT(badid, 0);
        CHECK_EQ_INT(st, 0);
        if (emu()) {
            CHECK_EQ_INT(kt_mismatch(gsc, sc, M * E), 0);
            CHECK_EQ_INT(kt_mismatch(gw, w, M * K), 0);
        }
        KT_CLOSE("scores", gsc, sc, M * E, emu() ? 0.0 : 1e-6);
        KT_CLOSE("weights", gw, w, M * K, emu() ? 0.0 : 1e-6);
    }
    if (hash) {
        /* an out-of-range id: the CPU fails, the GPU flags the token */
        int64_t *t = (int64_t *)r.L.tid2eid;
        t[tok[M - 1] * K + 2] = E;
        memcpy(sc, lg, (size_t)(M * E) * 4);
        CHECK(dsv4_moe_route(&r.e, 0, sc, tok, M, sel, w, &err) == DSV4_E_FORMAT);
        d.L.tid2eid = dl_up(&d, t, (size_t)(vocab * K * 8));
        kt_poison(dw, (size_t)(M * K) * 4);
        dsv4_cu_upload(dsc, lg, (size_t)(M * E) * 4, &err);
        KT_OK(dsv4_cu_moe_route(&d.L, dsc, dtok, M, dsel, dw, dst, NULL, &err), &err);
        if (!kt_get(gsel, dsel, (size_t)(M * K) * 4) && !kt_get(gw, dw, (size_t)(M * K) * 4) && !kt_get(&st, dst, 4)) {
            CHECK_EQ_INT(st, 1);
            CHECK_EQ_INT(gsel[(M - 1) * K + 2], -1);
            CHECK(isnan(gw[(M - 1) * K]));
            CHECK(!isnan(gw[0]));
        }
    }
    free(lg);
    free(sc);
    free(gsc);
    free(tok);
    free(sel);
    free(gsel);
    free(w);
    free(gw);
    dl_free(&d);
    rl_free(&r);
}

TEST(route_matches_cpu)
{
    route_case(0, 16, 7, 3);
    route_case(0, 256, 3, 4);
    route_case(0, 40, 1, 5);
    route_case(1, 16, 9, 6);
    route_case(1, 256, 4, 7);
}

/* ---- experts and the whole chunk on random layers ---------------------------------- */

/* The GPU chunk (and experts step) vs dsv4_moe_chunk on a random layer. */
static void random_case(int64_t D, int64_t E, int64_t I, int64_t M, int kind_r, int kind_s, int hash, uint64_t seed)
{
    kt_rng g = kt_seed(seed);
    int64_t K = 6, vocab = 64;
    struct rl r;
    rl_make(&r, &g, D, E, K, I, kind_r, kind_s, hash, 0, vocab);
    struct dl d;
    dl_make(&d, &r.e.c, &r.L);
    float *x = rand_x(&g, M * D, 1.0f), *ref = kt_malloc((size_t)(M * D) * 4), *got = kt_malloc((size_t)(M * D) * 4);
    uint32_t *tok = kt_malloc((size_t)M * 4);
    for (int64_t m = 0; m < M; m++)
        tok[m] = kt_u32(&g) % (uint32_t)vocab;
    tok[0] = 0;
    dsv4_err err = DSV4_ERR_INIT;
    CHECK_EQ_INT(dsv4_moe_chunk(&r.e, 0, x, tok, M, ref, &err), 0);

    /* the quantised input from the CPU, as the dense family will give it */
    int64_t kb = D / 128;
    uint8_t *q = kt_malloc((size_t)(M * D));
    float *qs = kt_malloc((size_t)(M * kb) * 4);
    for (int64_t m = 0; m < M; m++)
        dsv4_act_quant_row(x + m * D, D, 128, q + m * D, qs + m * kb);
    float *dx = dl_up(&d, x, (size_t)(M * D) * 4), *dout = dl_up(&d, NULL, (size_t)(M * D) * 4);
    uint8_t *dq = dl_up(&d, q, (size_t)(M * D));
    float *dqs = dl_up(&d, qs, (size_t)(M * kb) * 4);
    uint32_t *dtok = dl_up(&d, tok, (size_t)M * 4);
    size_t wsb = dsv4_cu_moe_chunk_workspace(&d.L, M);
    CHECK(wsb > 0);
    void *ws = dl_up(&d, NULL, wsb);
    char what[160];
    snprintf(what, sizeof what, "chunk %s D=%lld E=%lld I=%lld M=%lld %s/%s", hash ? "hash" : "top-k", (long long)D,
             (long long)E, (long long)I, (long long)M,
             kind_r == DSV4_WT_FP4 ? "FP4" : kind_r == DSV4_WT_Q2 ? "Q2" : kind_r == DSV4_WT_Q3 ? "Q3" : "FP8",
             kind_s == DSV4_WT_FP8 ? "FP8" : kind_s == DSV4_WT_Q3 ? "Q3" : kind_s == DSV4_WT_Q2 ? "Q2" : kind_s ? "FP4" : "none");
    KT_OK(dsv4_cu_moe_chunk(&d.L, dx, dq, dqs, dtok, M, dout, NULL, ws, wsb, NULL, &err), &err);
    if (!kt_get(got, dout, (size_t)(M * D) * 4))
        cmp_out(what, got, ref, M * D);

    /* the experts step alone, from the CPU's routing */
    float *lg = kt_malloc((size_t)(M * E) * 4), *w = kt_malloc((size_t)(M * K) * 4);
    int32_t *sel = kt_malloc((size_t)(M * K) * 4);
    CHECK_EQ_INT(dsv4_linear(NULL, &r.L.gate, x, M, lg, 0, &err), 0);
    CHECK_EQ_INT(dsv4_moe_route(&r.e, 0, lg, tok, M, sel, w, &err), 0);
    CHECK_EQ_INT(dsv4_moe_experts(&r.e, 0, x, sel, w, M, ref, &err), 0);
    int32_t *dsel = dl_up(&d, sel, (size_t)(M * K) * 4);
    float *dw = dl_up(&d, w, (size_t)(M * K) * 4);
    kt_poison(dout, (size_t)(M * D) * 4);
    KT_OK(dsv4_cu_moe_experts(&d.L, dq, dqs, dsel, dw, M, dout, ws, dsv4_cu_moe_experts_workspace(&d.L, M), NULL, &err),
          &err);
    snprintf(what, sizeof what, "  experts step (M=%lld)", (long long)M);
    if (!kt_get(got, dout, (size_t)(M * D) * 4))
        cmp_out(what, got, ref, M * D);
    free(lg);
    free(w);
    free(sel);
    free(x);
    free(q);
    free(qs);
    free(ref);
    free(got);
    free(tok);
    dl_free(&d);
    rl_free(&r);
}

TEST(experts_random_layers)
{
    /* Flash: D 4096, E 256, I 2048 (FP4 routed, FP8 shared); scaled down */
    int64_t D = emu() ? 256 : 1024, I = emu() ? 128 : 512, E = emu() ? 16 : 64;
    random_case(D, E, I, 1, DSV4_WT_FP4, DSV4_WT_FP8, 0, 10);
    random_case(D, E, I, 5, DSV4_WT_FP4, DSV4_WT_FP8, 1, 11);
    random_case(D, E, I, emu() ? 21 : 77, DSV4_WT_FP4, DSV4_WT_FP8, 0, 12);
    random_case(D, E, I, 9, DSV4_WT_FP8, DSV4_WT_FP4, 1, 13);
    random_case(D, E, I, 3, DSV4_WT_FP4, 0, 0, 14);
    random_case(384, 8, 256, 2, DSV4_WT_FP8, DSV4_WT_FP8, 0, 15);
    if (!emu())
        random_case(4096, 16, 2048, 1, DSV4_WT_FP4, DSV4_WT_FP8, 0, 16);   /* Flash's expert shapes */
}

/* dsv4-quant's Q2/Q3 routed experts (lib/quant.h encodings), M = 1, 3, 9,
 * with FP8, FP4, Q3 or no shared expert, top-k and hash routing. */
TEST(experts_quant_formats)
{
    int64_t D = emu() ? 256 : 1024, I = emu() ? 128 : 512, E = emu() ? 16 : 64;
    random_case(D, E, I, 1, DSV4_WT_Q2, DSV4_WT_FP8, 0, 20);
    random_case(D, E, I, 3, DSV4_WT_Q2, DSV4_WT_FP4, 1, 21);
    random_case(D, E, I, 9, DSV4_WT_Q2, 0, 0, 22);
    random_case(D, E, I, 1, DSV4_WT_Q3, DSV4_WT_FP8, 1, 23);
    random_case(D, E, I, 3, DSV4_WT_Q3, DSV4_WT_FP8, 0, 24);
    random_case(D, E, I, 9, DSV4_WT_Q3, DSV4_WT_FP4, 0, 25);
    random_case(384, 8, 256, 2, DSV4_WT_Q3, 0, 1, 26);
    /* dsv4-quant's fit-80g: Q2 routed, Q3 shared experts */
    random_case(D, E, I, 1, DSV4_WT_Q2, DSV4_WT_Q3, 0, 29);
    random_case(D, E, I, 9, DSV4_WT_Q2, DSV4_WT_Q3, 1, 30);
    if (!emu()) {
        random_case(4096, 16, 2048, 1, DSV4_WT_Q2, DSV4_WT_FP8, 0, 27);   /* Flash's expert shapes */
        random_case(4096, 16, 2048, 6, DSV4_WT_Q3, DSV4_WT_FP8, 0, 28);
    }
}

/* A NaN input value (e4m3 code 0x7f) makes its token's outputs NaN, as on
 * the CPU; the other tokens are unaffected. */
TEST(nan_input_propagates)
{
    kt_rng g = kt_seed(50);
    int64_t D = 256, E = 8, K = 6, I = 128, M = 3;
    struct rl r;
    rl_make(&r, &g, D, E, K, I, DSV4_WT_FP4, DSV4_WT_FP8, 0, 0, 4);
    struct dl d;
    dl_make(&d, &r.e.c, &r.L);
    float *x = rand_x(&g, M * D, 1.0f), *ref = kt_malloc((size_t)(M * D) * 4), *got = kt_malloc((size_t)(M * D) * 4);
    float *lg = kt_malloc((size_t)(M * E) * 4), *w = kt_malloc((size_t)(M * K) * 4), *qs = kt_malloc((size_t)(M * 2) * 4);
    int32_t *sel = kt_malloc((size_t)(M * K) * 4);
    uint8_t *q = kt_malloc((size_t)(M * D));
    uint32_t tok[3] = { 0, 1, 2 };
    dsv4_err err = DSV4_ERR_INIT;
    CHECK_EQ_INT(dsv4_linear(NULL, &r.L.gate, x, M, lg, 0, &err), 0);
    CHECK_EQ_INT(dsv4_moe_route(&r.e, 0, lg, tok, M, sel, w, &err), 0);
    x[D + 200] = NAN;
    CHECK_EQ_INT(dsv4_moe_experts(&r.e, 0, x, sel, w, M, ref, &err), 0);
    for (int64_t m = 0; m < M; m++)
        dsv4_act_quant_row(x + m * D, D, 128, q + m * D, qs + m * 2);
    CHECK(q[D + 200] == 0x7f);
    uint8_t *dq = dl_up(&d, q, (size_t)(M * D));
    float *dqs = dl_up(&d, qs, (size_t)(M * 2) * 4), *dw = dl_up(&d, w, (size_t)(M * K) * 4);
    float *dout = dl_up(&d, NULL, (size_t)(M * D) * 4);
    int32_t *dsel = dl_up(&d, sel, (size_t)(M * K) * 4);
    size_t wsb = dsv4_cu_moe_experts_workspace(&d.L, M);
    void *ws = dl_up(&d, NULL, wsb);
    KT_OK(dsv4_cu_moe_experts(&d.L, dq, dqs, dsel, dw, M, dout, ws, wsb, NULL, &err), &err);
    if (!kt_get(got, dout, (size_t)(M * D) * 4)) {
        int64_t nans = 0;
        for (int64_t i = D; i < 2 * D; i++)
            nans += isnan(got[i]) != 0;
        CHECK_EQ_INT(nans, D);
        cmp_out("token 0", got, ref, D);
        cmp_out("token 2", got + 2 * D, ref + 2 * D, D);
    }
    free(x);
    free(ref);
    free(got);
    free(lg);
    free(w);
    free(qs);
    free(sel);
    free(q);
    dl_free(&d);
    rl_free(&r);
}

/* The combination's order matters under cancellation: expert outputs
 * y = (2^24 c, c, c, -2^24 c) for experts 0..3 (FP8 weights all 1.0 codes,
 * w2 scales 2^24 apart, expert 3 negated), hash row (1, 2, 0, 3), equal
 * routing weights (zero gate).  Summed in id order or in selection order
 * the roundings differ (the mutation test of the combine order fails). */
TEST(combine_order_under_cancellation)
{
    kt_rng g = kt_seed(40);
    int64_t D = 128, I = 128, E = 4, K = 4, M = 2;
    struct rl r;
    rl_make(&r, &g, D, E, K, I, DSV4_WT_FP8, 0, 1, 0, 1);
    r.e.c.n_experts_per_tok = K;
    memset((void *)r.L.gate.w, 0, (size_t)(E * D * 2));
    int64_t *t = (int64_t *)r.L.tid2eid, ids[4] = { 1, 2, 0, 3 };
    memcpy(t, ids, sizeof ids);
    for (int x = 0; x < E; x++) {
        dsv4_wt *w[3] = { &r.L.w1[x], &r.L.w3[x], &r.L.w2[x] };
        for (int j = 0; j < 3; j++) {
            memset((void *)w[j]->w, j == 2 && x == 3 ? 0xb8 : 0x38, wbytes(w[j]));
            memset((void *)w[j]->s, j < 2 ? 120 : x == 0 || x == 3 ? 124 : 100, sbytes(w[j]));
        }
    }
    struct dl d;
    dl_make(&d, &r.e.c, &r.L);
    float *x = kt_malloc((size_t)(M * D) * 4), *ref = kt_malloc((size_t)(M * D) * 4), *got = kt_malloc((size_t)(M * D) * 4);
    for (int64_t i = 0; i < M * D; i++)
        x[i] = 1.0f;
    uint32_t tok[2] = { 0, 0 };
    dsv4_err err = DSV4_ERR_INIT;
    CHECK_EQ_INT(dsv4_moe_chunk(&r.e, 0, x, tok, M, ref, &err), 0);
    float *dx = dl_up(&d, x, (size_t)(M * D) * 4), *dout = dl_up(&d, NULL, (size_t)(M * D) * 4);
    uint32_t *dtok = dl_up(&d, tok, sizeof tok);
    size_t wsb = dsv4_cu_moe_chunk_workspace(&d.L, M);
    void *ws = dl_up(&d, NULL, wsb);
    KT_OK(dsv4_cu_moe_chunk(&d.L, dx, NULL, NULL, dtok, M, dout, NULL, ws, wsb, NULL, &err), &err);
    if (!kt_get(got, dout, (size_t)(M * D) * 4)) {
        printf("  cpu out[0] %g, gpu out[0] %g\n", ref[0], got[0]);
        CHECK_EQ_INT(kt_mismatch(got, ref, M * D), 0);
    }
    free(x);
    free(ref);
    free(got);
    dl_free(&d);
    rl_free(&r);
}

/* ---- the tiny-v4 fixture's real MoE weights ------------------------------------------ */

static const dsv4_tensor *st_find(void *ctx, const char *name) { return dsv4_st_find(ctx, name); }

TEST(chunk_matches_cpu_on_fixture)
{
    char path[512];
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_config cfg;
    char *txt = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/tiny-v4/config.json", test_fixtures());
    if (dsv4_read_file(path, 1 << 20, &txt, &len, &err) || dsv4_config_parse(&cfg, txt, len, &err)) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        free(txt);
        CHECK(!"fixture config");
        return;
    }
    free(txt);
    dsv4_st *st = NULL;
    dsv4_engine *e = NULL;
    snprintf(path, sizeof path, "%s/tiny-v4", test_fixtures());
    if (dsv4_st_open(&st, path, NULL, NULL, &err) || dsv4_engine_open(&e, &cfg, st_find, st, 1, &err)) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        CHECK(!"fixture opens");
        dsv4_st_close(st);
        return;
    }
    kt_rng g = kt_seed(20);
    int64_t D = cfg.dim;
    int layers[] = { 0, 1, 2, 5, (int)cfg.n_layers };   /* hash, hash, top-k, top-k, MTP */
    int64_t Ms[] = { 1, 7, 40 };
    for (int li = 0; li < 5; li++) {
        struct dl d;
        dl_make(&d, &e->c, &e->layers[layers[li]]);
        CHECK_EQ_INT(d.L.tid2eid != NULL, layers[li] < cfg.n_hash_layers);
        for (int mi = 0; mi < 3; mi++) {
            int64_t M = Ms[mi];
            float *x = rand_x(&g, M * D, 1.0f), *ref = kt_malloc((size_t)(M * D) * 4),
                  *got = kt_malloc((size_t)(M * D) * 4);
            uint32_t *tok = kt_malloc((size_t)M * 4);
            for (int64_t m = 0; m < M; m++)
                tok[m] = kt_u32(&g) % (uint32_t)cfg.vocab_size;
            CHECK_EQ_INT(dsv4_moe_chunk(e, layers[li], x, tok, M, ref, &err), 0);
            float *dx = kt_dev(x, (size_t)(M * D) * 4), *dout = kt_dev(NULL, (size_t)(M * D) * 4);
            uint32_t *dtok = kt_dev(tok, (size_t)M * 4);
            int32_t zero = 0, stv = -1, *dst = kt_dev(&zero, 4);
            size_t wsb = dsv4_cu_moe_chunk_workspace(&d.L, M);
            void *ws = kt_dev(NULL, wsb);
            KT_OK(dsv4_cu_moe_chunk(&d.L, dx, NULL, NULL, dtok, M, dout, dst, ws, wsb, NULL, &err), &err);
            char what[96];
            snprintf(what, sizeof what, "tiny-v4 layer %d M=%lld", layers[li], (long long)M);
            if (!kt_get(got, dout, (size_t)(M * D) * 4) && !kt_get(&stv, dst, 4)) {
                CHECK_EQ_INT(stv, 0);
                cmp_out(what, got, ref, M * D);
            }
            dsv4_cu_free(dx);
            dsv4_cu_free(dout);
            dsv4_cu_free(dtok);
            dsv4_cu_free(dst);
            dsv4_cu_free(ws);
            free(x);
            free(ref);
            free(got);
            free(tok);
        }
        dl_free(&d);
    }
    dsv4_engine_close(e);
    dsv4_st_close(st);
}

/* ---- argument errors ---------------------------------------------------------------- */

TEST(bad_arguments)
{
    kt_rng g = kt_seed(30);
    struct rl r;
    rl_make(&r, &g, 256, 8, 6, 128, DSV4_WT_FP4, DSV4_WT_FP8, 0, 0, 8);
    struct dl d;
    dl_make(&d, &r.e.c, &r.L);
    dsv4_err err = DSV4_ERR_INIT;
    int64_t M = 2;
    size_t wsb = dsv4_cu_moe_chunk_workspace(&d.L, M);
    void *ws = dl_up(&d, NULL, wsb);
    float *x = dl_up(&d, NULL, (size_t)(M * 256) * 4), *out = dl_up(&d, NULL, (size_t)(M * 256) * 4);
    dsv4_cu_moe_layer L = d.L;
    CHECK_EQ_INT(dsv4_cu_moe_chunk(&L, x, NULL, NULL, NULL, 0, out, NULL, ws, wsb, NULL, &err), 0);
    CHECK_EQ_INT(dsv4_cu_moe_chunk(&L, x, NULL, NULL, NULL, -1, out, NULL, ws, wsb, NULL, &err), DSV4_E_INVALID);
    CHECK(strstr(err.msg, "dsv4_cu_moe_chunk") != NULL);
    CHECK_EQ_INT(dsv4_cu_moe_chunk(&L, x, NULL, NULL, NULL, M, out, NULL, ws, wsb - 1, NULL, &err), DSV4_E_INVALID);
    CHECK(strstr(err.msg, "workspace") != NULL);
    CHECK_EQ_INT(dsv4_cu_moe_chunk(&L, NULL, NULL, NULL, NULL, M, out, NULL, ws, wsb, NULL, &err), DSV4_E_INVALID);
    CHECK_EQ_INT(dsv4_cu_moe_chunk(&L, x, (uint8_t *)ws, NULL, NULL, M, out, NULL, ws, wsb, NULL, &err),
                 DSV4_E_INVALID);
    L.dim = 200;
    CHECK_EQ_INT(dsv4_cu_moe_chunk(&L, x, NULL, NULL, NULL, M, out, NULL, ws, wsb, NULL, &err), DSV4_E_INVALID);
    CHECK(strstr(err.msg, "dim") != NULL);
    CHECK_EQ_INT(dsv4_cu_moe_experts_workspace(&L, M), 0);
    L = d.L;
    L.topk = 9;
    CHECK_EQ_INT(dsv4_cu_moe_gate(&L, x, M, out, NULL, &err), DSV4_E_INVALID);
    CHECK(strstr(err.msg, "topk") != NULL);
    L = d.L;
    L.gate.kind = DSV4_WT_FP4;
    CHECK_EQ_INT(dsv4_cu_moe_gate(&L, x, M, out, NULL, &err), DSV4_E_INVALID);
    L = d.L;
    L.gate_bias = NULL;
    CHECK_EQ_INT(dsv4_cu_moe_route(&L, out, NULL, M, (int32_t *)ws, out, NULL, NULL, &err), DSV4_E_INVALID);
    L = d.L;
    L.expert_kind = DSV4_WT_BF16;
    CHECK_EQ_INT(dsv4_cu_moe_experts(&L, (uint8_t *)ws, x, (int32_t *)ws, x, M, out, ws, wsb, NULL, &err),
                 DSV4_E_INVALID);
    L = d.L;
    L.sw3.kind = DSV4_WT_FP4;     /* sw1 is FP8: the up kernel needs one kind */
    CHECK_EQ_INT(dsv4_cu_moe_experts(&L, (uint8_t *)ws, x, (int32_t *)ws, x, M, out, ws, wsb, NULL, &err),
                 DSV4_E_INVALID);
    CHECK(strstr(err.msg, "w3 kind") != NULL);
    L = d.L;
    L.sw2.n = 128;
    CHECK_EQ_INT(dsv4_cu_moe_experts(&L, (uint8_t *)ws, x, (int32_t *)ws, x, M, out, ws, wsb, NULL, &err),
                 DSV4_E_INVALID);
    L = d.L;
    CHECK_EQ_INT(dsv4_cu_moe_experts(&L, (uint8_t *)ws + 1, x, (int32_t *)ws, x, M, out, ws, wsb, NULL, &err),
                 DSV4_E_INVALID);
    CHECK_EQ_INT(dsv4_cu_moe_quant(x, 2, 0, (uint8_t *)ws, out, NULL, &err), DSV4_E_INVALID);
    CHECK_EQ_INT(dsv4_cu_moe_quant(x, 0, 128, NULL, NULL, NULL, &err), 0);
    CHECK_EQ_INT(dsv4_cu_moe_gate(NULL, x, M, out, NULL, &err), DSV4_E_INVALID);
    dl_free(&d);
    rl_free(&r);
}

KTEST_MAIN(T(quant_matches_cpu), T(gate_matches_cpu), T(route_matches_cpu), T(experts_random_layers), T(experts_quant_formats),
           T(nan_input_propagates), T(combine_order_under_cancellation), T(chunk_matches_cpu_on_fixture), T(bad_arguments))

#else
KTEST_MAIN()
#endif
