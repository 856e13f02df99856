/* test_mhc — kernels/mhc.cu (lib/gpu_mhc.h) against the CPU's mHC
 * (dsv4_hc_pre / dsv4_hc_post / dsv4_hc_head, lib/engine.c) on random
 * streams and weights, at the tiny fixture's and Flash's dimensions (hc 4,
 * D 128 / 4096) and awkward ones (hc 1, 3, 16; D not a multiple of 8 or of
 * the block size, so every tail of the f32 mean-square order is taken).
 * On the emulator (glibc's expf, as the CPU) everything must be bit-exact;
 * on a GPU, HCPost still must, the rest within the bounds of gpu_mhc.h. */
#include "ktest.h"

#if DSV4_HAVE_CUDA
#include "codec.h"
#include "engine_impl.h"
#include "gpu_mhc.h"

static void fill_bf16(kt_rng *r, float *x, int64_t n, float sd)
{
    kt_fill_norm(r, x, n, sd);
    for (int64_t i = 0; i < n; i++)
        x[i] = dsv4_round_bf16(x[i]);
}

/* One site's host weights and their device copies. */
struct site {
    float *fn, *base, *scale;
    dsv4_hc_w h;
    dsv4_cu_hc_w d;
};

static void site_new(struct site *s, kt_rng *r, int64_t nout, int64_t n, int nscale)
{
    s->fn = kt_malloc((size_t)(nout * n) * sizeof(float));
    s->base = kt_malloc((size_t)nout * sizeof(float));
    s->scale = kt_malloc((size_t)nscale * sizeof(float));
    kt_fill_norm(r, s->fn, nout * n, 1.0f / sqrtf((float)n));   /* mu ~ N(0, 1) */
    kt_fill_norm(r, s->base, nout, 1.0f);
    for (int i = 0; i < nscale; i++)
        s->scale[i] = kt_unif(r, 0.25f, 2.5f);
    s->h.fn = (dsv4_wt){ DSV4_WT_F32, nout, n, (const uint8_t *)s->fn, NULL };
    s->h.base = s->base;
    s->h.scale = s->scale;
    s->d.fn = kt_dev(s->fn, (size_t)(nout * n) * sizeof(float));
    s->d.base = kt_dev(s->base, (size_t)nout * sizeof(float));
    s->d.scale = kt_dev(s->scale, (size_t)nscale * sizeof(float));
}

static void site_free(struct site *s)
{
    free(s->fn);
    free(s->base);
    free(s->scale);
    dsv4_cu_free((void *)s->d.fn);
    dsv4_cu_free((void *)s->d.base);
    dsv4_cu_free((void *)s->d.scale);
}

static dsv4_hc_dims dims(int64_t hc, int64_t D)
{
    dsv4_hc_dims d = { hc, D, (float)1e-6, (float)1e-6, 20 };
    return d;
}

static dsv4_cu_hc_dims cu_dims(const dsv4_hc_dims *d)
{
    dsv4_cu_hc_dims c = { d->hc, d->D, d->norm_eps, d->hc_eps, d->iters };
    return c;
}

/* HCPre, then HCPost with the CPU's post/comb, at one size. */
static void pre_post(int64_t hc, int64_t D, int64_t M, uint64_t seed)
{
    kt_rng r = kt_seed(seed);
    int64_t n = hc * D, nout = (2 + hc) * hc;
    dsv4_hc_dims d = dims(hc, D);
    dsv4_cu_hc_dims cd = cu_dims(&d);
    dsv4_err err = DSV4_ERR_INIT;
    struct site s;
    site_new(&s, &r, nout, n, 3);
    float *X = kt_malloc((size_t)(M * n) * sizeof(float)), *f = kt_malloc((size_t)(M * D) * sizeof(float));
    /* streams of different scales, so rho and the gates vary per token */
    for (int64_t m = 0; m < M; m++)
        fill_bf16(&r, X + m * n, n, kt_unif(&r, 0.05f, 4.0f));
    fill_bf16(&r, f, M * D, 1.0f);
    float *x = kt_malloc((size_t)(M * D) * sizeof(float)), *post = kt_malloc((size_t)(M * hc) * sizeof(float));
    float *comb = kt_malloc((size_t)(M * hc * hc) * sizeof(float));
    float *gx = kt_malloc((size_t)(M * D) * sizeof(float)), *gpost = kt_malloc((size_t)(M * hc) * sizeof(float));
    float *gcomb = kt_malloc((size_t)(M * hc * hc) * sizeof(float)), *gX = kt_malloc((size_t)(M * n) * sizeof(float));
    KT_OK(dsv4_hc_pre(NULL, &s.h, &d, X, M, x, post, comb, &err), &err);

    float *dX = kt_dev(X, (size_t)(M * n) * sizeof(float)), *dmu = kt_dev(NULL, (size_t)(M * nout) * sizeof(float));
    float *dx = kt_dev(NULL, (size_t)(M * D) * sizeof(float)), *dpost = kt_dev(NULL, (size_t)(M * hc) * sizeof(float));
    float *dcomb = kt_dev(NULL, (size_t)(M * hc * hc) * sizeof(float));
    KT_OK(dsv4_cu_hc_pre(&s.d, &cd, dX, M, dmu, dx, dpost, dcomb, NULL, &err), &err);
    if (!kt_get(gx, dx, (size_t)(M * D) * sizeof(float)) && !kt_get(gpost, dpost, (size_t)(M * hc) * sizeof(float)) &&
        !kt_get(gcomb, dcomb, (size_t)(M * hc * hc) * sizeof(float))) {
        char what[96];
        int64_t bx = kt_mismatch(gx, x, M * D), bp = kt_mismatch(gpost, post, M * hc);
        int64_t bc = kt_mismatch(gcomb, comb, M * hc * hc);
        printf("  hc %lld D %lld M %lld: mismatches x %lld, post %lld, comb %lld\n", (long long)hc, (long long)D,
               (long long)M, (long long)bx, (long long)bp, (long long)bc);
        if (ktest_emulated())      /* glibc's expf on both sides: nothing may differ */
            CHECK_EQ_INT(bx + bp + bc, 0);
        snprintf(what, sizeof what, "hc_pre post (hc %lld D %lld M %lld)", (long long)hc, (long long)D, (long long)M);
        KT_CLOSE(what, gpost, post, M * hc, 1e-5);
        snprintf(what, sizeof what, "hc_pre comb (hc %lld D %lld M %lld)", (long long)hc, (long long)D, (long long)M);
        KT_CLOSE(what, gcomb, comb, M * hc * hc, 1e-5);
        snprintf(what, sizeof what, "hc_pre x (hc %lld D %lld M %lld)", (long long)hc, (long long)D, (long long)M);
        KT_CLOSE(what, gx, x, M * D, 4e-3);   /* one bf16 ulp of the largest */
    }

    /* HCPost from the same post/comb on both sides: every step is a
     * correctly rounded f32 op in the CPU's order, so bit-exact. */
    float *df = kt_dev(f, (size_t)(M * D) * sizeof(float));
    dsv4_cu_upload(dpost, post, (size_t)(M * hc) * sizeof(float), &err);
    dsv4_cu_upload(dcomb, comb, (size_t)(M * hc * hc) * sizeof(float), &err);
    dsv4_hc_post(&d, f, X, M, post, comb);
    KT_OK(dsv4_cu_hc_post(&cd, df, dX, M, dpost, dcomb, NULL, &err), &err);
    if (!kt_get(gX, dX, (size_t)(M * n) * sizeof(float))) {
        int64_t bad = kt_mismatch(gX, X, M * n);
        printf("  hc_post (hc %lld D %lld M %lld): %lld mismatches of %lld\n", (long long)hc, (long long)D,
               (long long)M, (long long)bad, (long long)(M * n));
        CHECK_EQ_INT(bad, 0);
    }
    dsv4_cu_free(dX); dsv4_cu_free(dmu); dsv4_cu_free(dx); dsv4_cu_free(dpost); dsv4_cu_free(dcomb); dsv4_cu_free(df);
    free(X); free(f); free(x); free(post); free(comb); free(gx); free(gpost); free(gcomb); free(gX);
    site_free(&s);
}

static void head(int64_t hc, int64_t D, int64_t M, uint64_t seed)
{
    kt_rng r = kt_seed(seed);
    int64_t n = hc * D;
    dsv4_hc_dims d = dims(hc, D);
    dsv4_cu_hc_dims cd = cu_dims(&d);
    dsv4_err err = DSV4_ERR_INIT;
    struct site s;
    site_new(&s, &r, hc, n, 1);
    float *X = kt_malloc((size_t)(M * n) * sizeof(float)), *nw = kt_malloc((size_t)D * sizeof(float));
    float *u = kt_malloc((size_t)(M * D) * sizeof(float)), *gu = kt_malloc((size_t)(M * D) * sizeof(float));
    for (int64_t m = 0; m < M; m++)
        fill_bf16(&r, X + m * n, n, kt_unif(&r, 0.05f, 4.0f));
    for (int64_t i = 0; i < D; i++)
        nw[i] = kt_unif(&r, 0.5f, 1.5f);
    KT_OK(dsv4_hc_head(NULL, &s.h, &d, nw, X, M, u, &err), &err);
    float *dX = kt_dev(X, (size_t)(M * n) * sizeof(float)), *dnw = kt_dev(nw, (size_t)D * sizeof(float));
    float *dmu = kt_dev(NULL, (size_t)(M * hc) * sizeof(float)), *du = kt_dev(NULL, (size_t)(M * D) * sizeof(float));
    KT_OK(dsv4_cu_hc_head(&s.d, &cd, dnw, dX, M, dmu, du, NULL, &err), &err);
    if (!kt_get(gu, du, (size_t)(M * D) * sizeof(float))) {
        char what[96];
        int64_t bad = kt_mismatch(gu, u, M * D);
        printf("  hc_head (hc %lld D %lld M %lld): %lld mismatches\n", (long long)hc, (long long)D, (long long)M,
               (long long)bad);
        if (ktest_emulated())
            CHECK_EQ_INT(bad, 0);
        snprintf(what, sizeof what, "hc_head u (hc %lld D %lld M %lld)", (long long)hc, (long long)D, (long long)M);
        KT_CLOSE(what, gu, u, M * D, 4e-3);
    }
    dsv4_cu_free(dX); dsv4_cu_free(dnw); dsv4_cu_free(dmu); dsv4_cu_free(du);
    free(X); free(nw); free(u); free(gu);
    site_free(&s);
}

TEST(pre_post_tiny)          /* tiny-v4: hc 4, dim 128 */
{
    pre_post(4, 128, 1, 1);
    pre_post(4, 128, 3, 2);
    pre_post(4, 128, 9, 3);
}

TEST(pre_post_flash)         /* Flash: hc 4, dim 4096 */
{
    pre_post(4, 4096, 1, 4);
    pre_post(4, 4096, ktest_emulated() ? 2 : 33, 5);
}

TEST(pre_post_awkward)
{
    pre_post(1, 1, 1, 6);
    pre_post(3, 100, 5, 7);      /* hc*D = 300: tails of 8-vectors and lone elements */
    pre_post(16, 37, 2, 8);      /* the largest hc, 288 projections */
    pre_post(2, 2100, 1, 9);     /* rows of 32 past the first cascade step */
    pre_post(4, 300, 4, 10);
}

TEST(head_sizes)
{
    head(4, 128, 1, 11);
    head(4, 128, 5, 12);
    head(4, 4096, ktest_emulated() ? 2 : 17, 13);
    head(1, 1, 1, 14);
    head(3, 1001, 3, 15);
    head(16, 64, 2, 16);
}

TEST(bad_arguments)
{
    dsv4_err err = DSV4_ERR_INIT;
    float *p = kt_dev(NULL, 64 * sizeof(float));
    dsv4_cu_hc_w w = { p, p, p };
    dsv4_cu_hc_dims d = { 4, 4, 1e-6f, 1e-6f, 20 };
    CHECK_EQ_INT(dsv4_cu_hc_pre(&w, &d, p, 0, p, p, p, p, NULL, &err), 0);   /* no tokens */
    d.hc = 0;
    CHECK_EQ_INT(dsv4_cu_hc_pre(&w, &d, p, 1, p, p, p, p, NULL, &err), DSV4_E_INVALID);
    CHECK(strstr(err.msg, "hc 0") != NULL);
    d.hc = 17;
    CHECK_EQ_INT(dsv4_cu_hc_post(&d, p, p, 1, p, p, NULL, &err), DSV4_E_INVALID);
    d.hc = 4; d.D = 0;
    CHECK_EQ_INT(dsv4_cu_hc_head(&w, &d, p, p, 1, p, p + 32, NULL, &err), DSV4_E_INVALID);
    CHECK(strstr(err.msg, "D 0") != NULL);
    d.D = 4;
    CHECK_EQ_INT(dsv4_cu_hc_pre(&w, &d, p, -1, p, p, p, p, NULL, &err), DSV4_E_INVALID);
    CHECK_EQ_INT(dsv4_cu_hc_post(&d, p, p, 65536, p, p, NULL, &err), DSV4_E_INVALID);
    d.iters = 0;
    CHECK_EQ_INT(dsv4_cu_hc_pre(&w, &d, p, 1, p, p, p, p, NULL, &err), DSV4_E_INVALID);
    CHECK(strstr(err.msg, "Sinkhorn") != NULL);
    d.iters = 20;
    CHECK_EQ_INT(dsv4_cu_hc_pre(&w, &d, NULL, 1, p, p, p, p, NULL, &err), DSV4_E_INVALID);
    CHECK_EQ_INT(dsv4_cu_hc_post(&d, p, NULL, 1, p, p, NULL, &err), DSV4_E_INVALID);
    CHECK_EQ_INT(dsv4_cu_hc_head(&w, &d, p, p, 1, p, p, NULL, &err), DSV4_E_INVALID);
    CHECK(strstr(err.msg, "alias") != NULL);
    CHECK_EQ_INT(dsv4_cu_hc_head(&w, NULL, p, p, 1, p, p + 32, NULL, &err), DSV4_E_INVALID);
    dsv4_cu_free(p);
}

KTEST_MAIN(T(pre_post_tiny), T(pre_post_flash), T(pre_post_awkward), T(head_sizes), T(bad_arguments))
#else
KTEST_MAIN(0)
#endif
