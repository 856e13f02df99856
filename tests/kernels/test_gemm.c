/* The dense linear layers on the GPU (kernels/gemm.cu, lib/gpu_gemm.h)
 * against the CPU: dsv4_act_quant_row (lib/codec.c), dsv4_linear_q and
 * dsv4_linear (lib/ops.c).
 *
 * Tolerances:
 *  - act_quant: bit-exact codes and scales (NaN, inf, saturation, zero
 *    blocks and subnormals included).
 *  - linear_q (bf16 outputs): the CPU sums in double, the GPU in f32 in
 *    another order, so an output whose exact value lies near a bf16 rounding
 *    boundary may round the other way: every output must be within 1 bf16
 *    ulp of the CPU's, and at most 1 % of them may differ (measured: far
 *    fewer; printed per case).
 *  - linear with f32 output: relative error (max |diff| / max |ref|) below
 *    2e-6 — a few f32 ulps, the f32-vs-double accumulation difference;
 *    with bf16 rounding as linear_q.
 * The FP8 cases with M > 8 run both the tensor-core kernel and the SIMT one
 * (DSV4_GEMM_SIMT=1; emulated: only the smaller cases).  Emulated runs use
 * smaller model shapes.  The mma fragment layouts are checked only against
 * the emulated twin of the instruction until a run on a real GPU. */
#include "ktest.h"

#if DSV4_HAVE_CUDA

#include "codec.h"
#include "gpu_gemm.h"
#include "ops.h"
#include "quant.h"

static kt_rng rng;

/* Host weight of kind [n, k] with plausible values (no NaN codes). */
typedef struct hw {
    dsv4_wt h, d;       /* host view, device view */
    size_t wb, sb;
} hw;

static hw make_w(int kind, int64_t n, int64_t k)
{
    hw W;
    memset(&W, 0, sizeof W);
    W.h.kind = kind;
    W.h.n = n;
    W.h.k = k;
    uint8_t *w = NULL, *s = NULL;
    if (kind == DSV4_WT_FP8) {
        W.wb = (size_t)(n * k);
        W.sb = (size_t)(((n + 127) / 128) * ((k + 127) / 128));
        w = kt_malloc(W.wb);
        for (size_t i = 0; i < W.wb; i++) {
            uint8_t c = (uint8_t)(kt_u32(&rng) >> 13);
            w[i] = (c & 0x7f) == 0x7f ? 0x7e : c;
        }
    } else if (kind == DSV4_WT_FP4) {
        W.wb = (size_t)(n * ((k + 1) / 2));
        W.sb = (size_t)(n * ((k + 31) / 32));
        w = kt_malloc(W.wb);
        kt_fill_bytes(&rng, w, (int64_t)W.wb);
    } else if (kind == DSV4_WT_BF16) {
        W.wb = (size_t)(n * k) * 2;
        w = kt_malloc(W.wb);
        for (int64_t i = 0; i < n * k; i++) {
            uint16_t b = dsv4_f32_to_bf16(kt_norm(&rng, 0.05f));
            w[2 * i] = (uint8_t)b;
            w[2 * i + 1] = (uint8_t)(b >> 8);
        }
    } else if (kind == DSV4_WT_Q2 || kind == DSV4_WT_Q3) {
        /* dsv4-quant's encoding of random rows (k a multiple of the block) */
        int fmt = kind == DSV4_WT_Q2 ? DSV4_QF_Q2 : DSV4_QF_Q3;
        const dsv4_qfmt_info *q = dsv4_qfmt_get(fmt);
        int64_t nb = k / q->block;
        W.wb = (size_t)(n * nb * q->block_bytes);
        W.sb = (size_t)(n * nb);
        w = kt_malloc(W.wb);
        s = kt_malloc(W.sb);
        float *row = kt_malloc((size_t)k * sizeof *row);
        for (int64_t r = 0; r < n; r++) {
            kt_fill_norm(&rng, row, k, 0.05f);
            dsv4_quant_row(fmt, row, k, w + r * nb * q->block_bytes, s + r * nb);
        }
        free(row);
    } else {
        W.wb = (size_t)(n * k) * 4;
        w = kt_malloc(W.wb);
        kt_fill_norm(&rng, (float *)w, n * k, 0.05f);
    }
    if (W.sb && !s) {
        s = kt_malloc(W.sb);
        for (size_t i = 0; i < W.sb; i++)
            s[i] = (uint8_t)(116 + kt_u32(&rng) % 12);
    }
    W.h.w = w;
    W.h.s = s;
    W.d = W.h;
    W.d.w = kt_dev(w, W.wb);
    W.d.s = s ? kt_dev(s, W.sb) : NULL;
    return W;
}

static void free_w(hw *W)
{
    free((void *)W->h.w);
    free((void *)W->h.s);
    dsv4_cu_free((void *)W->d.w);
    dsv4_cu_free((void *)W->d.s);
}

static const char *kind_name(int kind)
{
    return kind == DSV4_WT_FP8 ? "fp8" : kind == DSV4_WT_FP4 ? "fp4" : kind == DSV4_WT_BF16 ? "bf16"
         : kind == DSV4_WT_Q2 ? "q2" : kind == DSV4_WT_Q3 ? "q3" : "f32";
}

static int ord_bf16(float f)
{
    uint16_t b = dsv4_f32_to_bf16(f);
    return b & 0x8000 ? -(int)(b & 0x7fff) : (int)b;
}

/* bf16 outputs: all within 1 ulp, at most max_frac of them differing. */
static void check_bf16(const char *what, const float *got, const float *ref, int64_t cnt, double max_frac)
{
    int64_t diff = 0, far = 0;
    for (int64_t i = 0; i < cnt; i++) {
        if (isnan(got[i]) || isnan(ref[i]) || got[i] != dsv4_round_bf16(got[i])) {
            if (far++ < 5)
                fprintf(stderr, "  [%lld] got %.9g ref %.9g\n", (long long)i, got[i], ref[i]);
            continue;
        }
        int d = abs(ord_bf16(got[i]) - ord_bf16(ref[i]));
        if (d > 1 && far++ < 5)
            fprintf(stderr, "  [%lld] got %.9g ref %.9g (%d ulps)\n", (long long)i, got[i], ref[i], d);
        diff += d != 0;
    }
    double frac = cnt ? (double)diff / (double)cnt : 0.0;
    printf("  %-40s %lld/%lld differ (%.3g%%, bound %.3g%%), rel err %.3g\n", what,
           (long long)diff, (long long)cnt, 100 * frac, 100 * max_frac, kt_relerr(got, ref, cnt));
    if (far || frac > max_frac) {
        fprintf(stderr, "%s: %lld outputs beyond 1 ulp or NaN, %.3g%% differ\n", what, (long long)far, 100 * frac);
        test_failed_checks++;
        test_cur_failed = 1;
    }
}

static float *rand_x(int64_t M, int64_t k)
{
    float *x = kt_malloc((size_t)(M * k) * sizeof *x);
    for (int64_t i = 0; i < M * k; i++)
        x[i] = dsv4_round_bf16(kt_norm(&rng, 1.0f));
    return x;
}

/* linear_q of a random [n, k] weight of kind on M random rows; for FP8
 * with M > 8 both kernels (on the emulator only for small n * M). */
static void run_q(int kind, int64_t n, int64_t k, int64_t M)
{
    hw W = make_w(kind, n, k);
    float *x = rand_x(M, k), *ref = kt_malloc((size_t)(M * n) * 4), *got = kt_malloc((size_t)(M * n) * 4);
    dsv4_err err = DSV4_ERR_INIT;
    KT_OK(dsv4_linear_q(NULL, &W.h, x, M, ref, &err), &err);
    float *dx = kt_dev(x, (size_t)(M * k) * 4), *dy = kt_dev(NULL, (size_t)(M * n) * 4);
    /* the emulator runs the SIMT kernel's many threads slowly: compare both
     * kernels there only on the smaller cases */
    int passes = kind == DSV4_WT_FP8 && M > 8 && (!ktest_emulated() || n * M <= 13000) ? 2 : 1;
    for (int p = 0; p < passes; p++) {
        char what[96];
        if (p)
            setenv("DSV4_GEMM_SIMT", "1", 1);
        snprintf(what, sizeof what, "linear_q %s [%lld,%lld] M=%lld%s", kind_name(kind), (long long)n,
                 (long long)k, (long long)M, passes == 2 ? (p ? " simt" : " mma") : "");
        kt_poison(dy, (size_t)(M * n) * 4);
        KT_OK(dsv4_cu_linear_q(&W.d, dx, M, dy, NULL, NULL, &err), &err);
        if (!kt_get(got, dy, (size_t)(M * n) * 4))
            check_bf16(what, got, ref, M * n, 0.01);
        unsetenv("DSV4_GEMM_SIMT");
    }
    dsv4_cu_free(dx);
    dsv4_cu_free(dy);
    free(x);
    free(ref);
    free(got);
    free_w(&W);
}

static void run_plain(int kind, int64_t n, int64_t k, int64_t M, int round)
{
    hw W = make_w(kind, n, k);
    float *x = rand_x(M, k), *ref = kt_malloc((size_t)(M * n) * 4), *got = kt_malloc((size_t)(M * n) * 4);
    dsv4_err err = DSV4_ERR_INIT;
    KT_OK(dsv4_linear(NULL, &W.h, x, M, ref, round, &err), &err);
    float *dx = kt_dev(x, (size_t)(M * k) * 4), *dy = kt_dev(NULL, (size_t)(M * n) * 4);
    char what[96];
    snprintf(what, sizeof what, "linear %s [%lld,%lld] M=%lld%s", kind_name(kind), (long long)n, (long long)k,
             (long long)M, round ? " bf16" : "");
    KT_OK(dsv4_cu_linear(&W.d, dx, M, dy, round, NULL, &err), &err);
    if (!kt_get(got, dy, (size_t)(M * n) * 4)) {
        if (round)
            check_bf16(what, got, ref, M * n, 0.01);
        else
            KT_CLOSE(what, got, ref, M * n, 2e-6);
    }
    dsv4_cu_free(dx);
    dsv4_cu_free(dy);
    free(x);
    free(ref);
    free(got);
    free_w(&W);
}

/* Bit-exact against dsv4_act_quant_row, with special values mixed in. */
static void run_aq(int64_t M, int64_t k, int block)
{
    int64_t bl = block > 0 ? block : k, nb = (k + bl - 1) / bl;
    float *x = rand_x(M, k);
    for (int64_t i = 0; i < M * k; i++) {
        uint32_t r = kt_u32(&rng) % 1000;
        if (r == 0) x[i] = NAN;
        else if (r == 1) x[i] = INFINITY;
        else if (r == 2) x[i] = -3e38f;
        else if (r == 3) x[i] = 1e-40f;           /* subnormal */
        else if (r < 10) x[i] *= 1e-3f;
    }
    if (M > 1)                                    /* a zero row: floored scale */
        memset(x + k, 0, (size_t)k * sizeof *x);
    uint8_t *rq = kt_malloc((size_t)(M * k)), *gq = kt_malloc((size_t)(M * k));
    float *rs = kt_malloc((size_t)(M * nb) * 4), *gs = kt_malloc((size_t)(M * nb) * 4);
    for (int64_t i = 0; i < M; i++)
        dsv4_act_quant_row(x + i * k, k, block, rq + i * k, rs + i * nb);
    float *dx = kt_dev(x, (size_t)(M * k) * 4);
    uint8_t *dq = kt_dev(NULL, (size_t)(M * k));
    float *ds = kt_dev(NULL, (size_t)(M * nb) * 4);
    dsv4_err err = DSV4_ERR_INIT;
    KT_OK(dsv4_cu_act_quant(dx, M, k, block, dq, ds, NULL, &err), &err);
    if (!kt_get(gq, dq, (size_t)(M * k)) && !kt_get(gs, ds, (size_t)(M * nb) * 4)) {
        int64_t bad = kt_mismatch(gs, rs, M * nb), badq = 0;
        for (int64_t i = 0; i < M * k; i++)
            if (gq[i] != rq[i] && badq++ < 5)
                fprintf(stderr, "  code [%lld] got 0x%02x ref 0x%02x (x %.9g)\n", (long long)i, gq[i], rq[i], x[i]);
        printf("  act_quant [%lld,%lld] block %d: %lld scale, %lld code mismatches\n", (long long)M, (long long)k,
               block, (long long)bad, (long long)badq);
        CHECK(bad == 0 && badq == 0);
    }
    dsv4_cu_free(dx);
    dsv4_cu_free(dq);
    dsv4_cu_free(ds);
    free(x);
    free(rq);
    free(gq);
    free(rs);
    free(gs);
}

TEST(act_quant)
{
    rng = kt_seed(1);
    run_aq(1, 128, 128);
    run_aq(3, 300, 128);
    run_aq(5, 1000, 64);
    run_aq(4, 77, 0);
    run_aq(2, 4096, 128);
    run_aq(2, 100, 32);
}

static const int kinds[] = { DSV4_WT_FP8, DSV4_WT_FP4, DSV4_WT_BF16, DSV4_WT_F32 };

/* Awkward shapes: k and n not multiples of the blocks, 1..129 rows. */
TEST(linear_q_awkward)
{
    rng = kt_seed(2);
    static const int64_t Ms[] = { 1, 3, 64, 129 };
    for (int ki = 0; ki < 4; ki++) {
        run_q(kinds[ki], 200, 300, 1);
        run_q(kinds[ki], 130, 260, 3);
        run_q(kinds[ki], 72, 1000, 8);
    }
    for (int mi = 0; mi < 4; mi++) {
        run_q(DSV4_WT_FP8, 200, 300, Ms[mi]);      /* scalar staging */
        run_q(DSV4_WT_FP8, 136, 384, Ms[mi]);      /* vector staging, n not a multiple of 64 */
    }
    run_q(DSV4_WT_FP4, 100, 66, 64);
    run_q(DSV4_WT_BF16, 64, 256, 129);
    run_q(DSV4_WT_FP8, 136, 7, 65);                /* k below one mma step */
}

TEST(linear_awkward)
{
    rng = kt_seed(3);
    for (int ki = 0; ki < 4; ki++) {
        run_plain(kinds[ki], 200, 300, 1, 0);
        run_plain(kinds[ki], 130, 257, 3, 1);
        run_plain(kinds[ki], 64, 512, 9, 0);
    }
    run_plain(DSV4_WT_F32, 33, 1, 2, 0);
}

/* Shapes of tiny-v4 (../shared/fixtures/tiny-v4/config.json: dim 128,
 * q_lora 128, 4 heads x 512, o_groups 2 x o_lora 128, 16 experts of 128,
 * vocab 1024) and, on a real device, of the Flash config. */
TEST(model_shapes)
{
    rng = kt_seed(4);
    int emu = ktest_emulated();
    run_q(DSV4_WT_FP8, 128, 128, 1);          /* wq_a */
    run_q(DSV4_WT_FP8, 2048, 128, 2);         /* wq_b */
    run_q(DSV4_WT_FP8, 512, 128, 64);         /* wkv, prefill */
    run_q(DSV4_WT_FP8, 128, 256, 64);         /* wo_b, prefill */
    run_q(DSV4_WT_FP4, 128, 128, 6);          /* expert w1 */
    run_q(DSV4_WT_FP4, 128, 128, 64);         /* expert w2 */
    run_plain(DSV4_WT_BF16, 256, 1024, 1, 1); /* wo_a */
    run_plain(DSV4_WT_F32, 1024, 128, 1, 0);  /* head */
    run_plain(DSV4_WT_F32, 16, 128, 4, 0);    /* router gate */
    if (emu) {
        /* Flash-like, cut down: wq_b [32768, 1024] -> [2048, 1024] */
        run_q(DSV4_WT_FP8, 2048, 1024, 1);
        run_q(DSV4_WT_FP8, 128, 1024, 64);
        run_q(DSV4_WT_FP4, 512, 4096, 2);
    } else {
        run_q(DSV4_WT_FP8, 32768, 1024, 1);   /* wq_b */
        run_q(DSV4_WT_FP8, 32768, 1024, 4);
        run_q(DSV4_WT_FP8, 32768, 1024, 128);
        run_q(DSV4_WT_FP8, 1024, 4096, 256);  /* wq_a */
        run_q(DSV4_WT_FP8, 4096, 8192, 64);   /* wo_b */
        run_q(DSV4_WT_FP4, 2048, 4096, 6);    /* expert w1 */
        run_q(DSV4_WT_FP4, 4096, 2048, 64);   /* expert w2 */
        run_plain(DSV4_WT_BF16, 8192, 4096, 1, 1);  /* wo_a (bf16) */
        run_plain(DSV4_WT_F32, 129280, 4096, 1, 0); /* head */
    }
}

/* Q2/Q3 weights (dsv4-quant's encoder): several shapes, M = 1, 3, 9 (the
 * GEMV's second pass over x), linear_q and linear, an unaligned weight
 * base (the byte-wise loads). */
TEST(quant_formats)
{
    rng = kt_seed(6);
    static const int64_t Ms[] = { 1, 3, 9 };
    for (int mi = 0; mi < 3; mi++) {
        run_q(DSV4_WT_Q2, 200, 320, Ms[mi]);
        run_q(DSV4_WT_Q2, 37, 64, Ms[mi]);
        run_q(DSV4_WT_Q3, 130, 288, Ms[mi]);
        run_q(DSV4_WT_Q3, 33, 32, Ms[mi]);
        run_plain(DSV4_WT_Q2, 96, 192, Ms[mi], 0);
        run_plain(DSV4_WT_Q3, 70, 224, Ms[mi], mi == 1);
    }
    /* tiny-v4 expert shapes and, cut down on the emulator, Flash ones */
    run_q(DSV4_WT_Q2, 128, 128, 6);
    run_q(DSV4_WT_Q3, 128, 128, 64);
    if (ktest_emulated()) {
        run_q(DSV4_WT_Q2, 256, 4096, 1);
        run_q(DSV4_WT_Q3, 512, 2048, 2);
    } else {
        run_q(DSV4_WT_Q2, 2048, 4096, 1);
        run_q(DSV4_WT_Q3, 2048, 4096, 6);
        run_q(DSV4_WT_Q3, 4096, 2048, 64);
    }
    /* a weight whose base is 1 byte off alignment: the byte-wise loads */
    for (int kind = DSV4_WT_Q2; kind <= DSV4_WT_Q3; kind++) {
        int64_t n = 40, k = 192, M = 3;
        hw W = make_w(kind, n, k);
        uint8_t *off = kt_dev(NULL, W.wb + 1);
        dsv4_err err = DSV4_ERR_INIT;
        KT_OK(dsv4_cu_upload(off + 1, W.h.w, W.wb, &err), &err);
        dsv4_wt Wd = W.d;
        Wd.w = off + 1;
        float *x = rand_x(M, k), *ref = kt_malloc((size_t)(M * n) * 4), *got = kt_malloc((size_t)(M * n) * 4);
        KT_OK(dsv4_linear_q(NULL, &W.h, x, M, ref, &err), &err);
        float *dx = kt_dev(x, (size_t)(M * k) * 4), *dy = kt_dev(NULL, (size_t)(M * n) * 4);
        kt_poison(dy, (size_t)(M * n) * 4);
        KT_OK(dsv4_cu_linear_q(&Wd, dx, M, dy, NULL, NULL, &err), &err);
        if (!kt_get(got, dy, (size_t)(M * n) * 4))
            check_bf16(kind == DSV4_WT_Q2 ? "linear_q q2 unaligned base" : "linear_q q3 unaligned base", got, ref,
                       M * n, 0.01);
        dsv4_cu_free(dx);
        dsv4_cu_free(dy);
        dsv4_cu_free(off);
        free(x);
        free(ref);
        free(got);
        free_w(&W);
    }
}

/* Codes and scales quantised once, reused (the MoE path). */
TEST(linear_q_pre)
{
    rng = kt_seed(5);
    int64_t n = 192, k = 384, M = 70;
    hw W = make_w(DSV4_WT_FP8, n, k);
    float *x = rand_x(M, k), *ref = kt_malloc((size_t)(M * n) * 4), *got = kt_malloc((size_t)(M * n) * 4);
    dsv4_err err = DSV4_ERR_INIT;
    KT_OK(dsv4_linear_q(NULL, &W.h, x, M, ref, &err), &err);
    float *dx = kt_dev(x, (size_t)(M * k) * 4), *dy = kt_dev(NULL, (size_t)(M * n) * 4);
    size_t sb = dsv4_cu_linear_q_scratch(M, k);
    uint8_t *scr = kt_dev(NULL, sb);
    uint8_t *dq = kt_dev(NULL, (size_t)(M * k));
    float *ds = kt_dev(NULL, (size_t)(M * 3) * 4);
    KT_OK(dsv4_cu_act_quant(dx, M, k, 128, dq, ds, NULL, &err), &err);
    KT_OK(dsv4_cu_linear_q_pre(&W.d, dq, ds, M, dy, NULL, &err), &err);
    if (!kt_get(got, dy, (size_t)(M * n) * 4))
        check_bf16("linear_q_pre fp8 [192,384] M=70", got, ref, M * n, 0.01);
    kt_poison(dy, (size_t)(M * n) * 4);
    KT_OK(dsv4_cu_linear_q(&W.d, dx, M, dy, scr, NULL, &err), &err);
    if (!kt_get(got, dy, (size_t)(M * n) * 4))
        check_bf16("linear_q caller scratch", got, ref, M * n, 0.01);
    dsv4_cu_free(dx);
    dsv4_cu_free(dy);
    dsv4_cu_free(scr);
    dsv4_cu_free(dq);
    dsv4_cu_free(ds);
    free(x);
    free(ref);
    free(got);
    free_w(&W);
}

TEST(arguments)
{
    dsv4_err err = DSV4_ERR_INIT;
    float *buf = kt_dev(NULL, 4096);
    dsv4_wt W = { DSV4_WT_FP8, 4, 4, (const uint8_t *)buf, (const uint8_t *)buf };
    CHECK_EQ_INT(dsv4_cu_linear_q(NULL, buf, 1, buf, NULL, NULL, &err), DSV4_E_INVALID);
    dsv4_wt bad = W;
    bad.kind = 42;
    CHECK_EQ_INT(dsv4_cu_linear_q(&bad, buf, 1, buf, NULL, NULL, &err), DSV4_E_INVALID);
    CHECK(strstr(err.msg, "linear_q") != NULL);
    bad.kind = DSV4_WT_Q2;      /* k = 4: not a multiple of Q2's block of 64 */
    CHECK_EQ_INT(dsv4_cu_linear(&bad, buf, 1, buf, 0, NULL, &err), DSV4_E_INVALID);
    CHECK(strstr(err.msg, "linear") != NULL && strstr(err.msg, "Q2") != NULL);
    bad.kind = DSV4_WT_Q3;
    bad.k = 48;
    CHECK_EQ_INT(dsv4_cu_linear_q(&bad, buf, 1, buf, NULL, NULL, &err), DSV4_E_INVALID);
    bad.k = 32;
    bad.s = NULL;
    CHECK_EQ_INT(dsv4_cu_linear_q(&bad, buf, 1, buf, NULL, NULL, &err), DSV4_E_INVALID);
    bad = W;
    bad.n = -1;
    CHECK_EQ_INT(dsv4_cu_linear(&bad, buf, 1, buf, 0, NULL, &err), DSV4_E_INVALID);
    CHECK_EQ_INT(dsv4_cu_linear(&W, buf, -2, buf, 0, NULL, &err), DSV4_E_INVALID);
    CHECK_EQ_INT(dsv4_cu_linear(&W, NULL, 1, buf, 0, NULL, &err), DSV4_E_INVALID);
    CHECK_EQ_INT(dsv4_cu_linear_q(&W, buf, 1, NULL, NULL, NULL, &err), DSV4_E_INVALID);
    bad = W;
    bad.s = NULL;
    CHECK_EQ_INT(dsv4_cu_linear_q(&bad, buf, 1, buf, NULL, NULL, &err), DSV4_E_INVALID);
    CHECK_EQ_INT(dsv4_cu_linear_q_pre(&W, NULL, buf, 1, buf, NULL, &err), DSV4_E_INVALID);
    CHECK_EQ_INT(dsv4_cu_act_quant(buf, 1, 4, 128, NULL, buf, NULL, &err), DSV4_E_INVALID);
    CHECK_EQ_INT(dsv4_cu_act_quant(buf, -1, 4, 128, (uint8_t *)buf, buf, NULL, &err), DSV4_E_INVALID);
    /* empty work is fine; k == 0 gives zeros as the CPU does */
    CHECK_EQ_INT(dsv4_cu_linear(&W, buf, 0, buf, 0, NULL, &err), 0);
    CHECK_EQ_INT(dsv4_cu_act_quant(buf, 0, 4, 128, NULL, NULL, NULL, &err), 0);
    dsv4_wt k0 = W;
    k0.k = 0;
    float z[8];
    kt_poison(buf, 32);
    CHECK_EQ_INT(dsv4_cu_linear_q(&k0, buf, 2, buf, NULL, NULL, &err), 0);
    if (!kt_get(z, buf, 32))
        for (int i = 0; i < 8; i++)
            CHECK(z[i] == 0.0f);
    dsv4_cu_free(buf);
}

#endif

KTEST_MAIN(T(act_quant), T(linear_q_awkward), T(linear_awkward), T(model_shapes), T(quant_formats), T(linear_q_pre), T(arguments))
