/* test_sample — kernels/sample.cu (lib/gpu_sample.h) against dsv4_sample
 * (lib/sample.c): the same logits, options and draw must give the same
 * token.  Thousands of random rows at small vocabularies and the tiny
 * fixture's (1024), a few at the real one (129280); logit styles with many
 * equal values, -inf, +inf, +-0, flat rows and wide ranges whose weights
 * underflow; every filter path (top-k below the vocab, the bucket path, top-p,
 * min-p), draws at the edges of [0, 1) and on exact cumulative boundaries,
 * temperature edge cases, and the per-row errors. */
#include "ktest.h"

#if DSV4_HAVE_CUDA
#include "gpu_sample.h"
#include "sample.h"

enum { S_NORMAL, S_TIES, S_NEGINF, S_POSINF, S_FLAT, S_ZEROS, S_WIDE, S_COUNT };

static void fill_row(kt_rng *r, float *l, int64_t V, int style)
{
    float sd = kt_unif(r, 0.3f, 8.0f), c = kt_unif(r, -5.0f, 5.0f);
    for (int64_t i = 0; i < V; i++) {
        uint32_t x = kt_u32(r);
        switch (style) {
        case S_NORMAL: l[i] = kt_norm(r, sd); break;
        case S_TIES:   l[i] = (float)(x % 5) * 0.75f - 1.0f; break;
        case S_NEGINF: l[i] = x % 3 ? -INFINITY : kt_norm(r, sd); break;
        case S_POSINF: l[i] = x % 97 == 0 ? INFINITY : kt_norm(r, sd); break;
        case S_FLAT:   l[i] = c; break;
        case S_ZEROS:  l[i] = x % 4 == 0 ? -0.0f : x % 4 == 1 ? 0.0f : -(float)(x % 7); break;
        default:       l[i] = kt_norm(r, 40.0f); break;
        }
    }
    if (style == S_NEGINF)          /* at least one finite logit */
        l[kt_u32(r) % V] = kt_norm(r, sd);
}

static dsv4_sample_opts random_opts(kt_rng *r, int64_t V)
{
    /* 5e-324 and 1e-300: every weight but the top ones underflows to 0;
     * 1e300: every weight rounds to 1 (a flat row) */
    static const double temps[] = { 1e-3, 0.3, 0.7, 1.0, 1.0, 1.7, 50.0, 1e6, 5e-324, 1e-300, 1e300 };
    static const double tops[] = { 1.0, 1.0, 0.95, 0.9, 0.5, 0.1, 1e-6 };
    static const double mins[] = { 0.0, 0.0, 0.01, 0.05, 0.3, 1.0 };
    int64_t ks[] = { 0, 0, 1, 2, 7, 40, V - 1, V, V + 3 };
    dsv4_sample_opts o = DSV4_SAMPLE_OPTS_INIT;
    o.temperature = temps[kt_u32(r) % 11];
    o.top_p = tops[kt_u32(r) % 7];
    o.min_p = mins[kt_u32(r) % 6];
    o.top_k = ks[kt_u32(r) % 9];
    if (o.top_k < 0)
        o.top_k = 0;
    return o;
}

struct dev {
    float *logits;
    uint64_t *seed;
    int64_t *pos, *status;
    double *u;
    uint32_t *token;
};

static struct dev dev_new(int64_t rows, int64_t ld)
{
    struct dev d;
    d.logits = kt_dev(NULL, (size_t)(rows * ld) * sizeof(float));
    d.seed = kt_dev(NULL, (size_t)rows * 8);
    d.pos = kt_dev(NULL, (size_t)rows * 8);
    d.status = kt_dev(NULL, (size_t)rows * 8);
    d.u = kt_dev(NULL, (size_t)rows * 8);
    d.token = kt_dev(NULL, (size_t)rows * 4);
    return d;
}

static void dev_free(struct dev *d)
{
    dsv4_cu_free(d->logits); dsv4_cu_free(d->seed); dsv4_cu_free(d->pos);
    dsv4_cu_free(d->status); dsv4_cu_free(d->u); dsv4_cu_free(d->token);
}

/* Runs `batches` launches of `rows` random rows of V tokens (ld = V + pad),
 * one random option set per launch (or *fixed), and compares every token
 * with the CPU's.  use_u: pass the draws as u (edge values) instead of
 * seed/pos.  Returns the number of rows compared. */
static int64_t run_rows(int64_t V, int64_t rows, int batches, uint64_t seed, const dsv4_sample_opts *fixed, int use_u)
{
    kt_rng r = kt_seed(seed);
    int64_t ld = V + (int64_t)(seed % 3), n = 0, bad = 0;
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_sampler *cs = NULL;
    dsv4_cu_sampler *gs = NULL;
    KT_OK(dsv4_sampler_new(&cs, V, &err), &err);
    KT_OK(dsv4_cu_sampler_new(&gs, V, rows, &err), &err);
    if (!cs || !gs)
        return 0;
    struct dev d = dev_new(rows, ld);
    float *l = kt_malloc((size_t)(rows * ld) * sizeof(float));
    uint64_t *sd = kt_malloc((size_t)rows * 8);
    int64_t *pos = kt_malloc((size_t)rows * 8), *st = kt_malloc((size_t)rows * 8);
    double *u = kt_malloc((size_t)rows * 8);
    uint32_t *tok = kt_malloc((size_t)rows * 4);
    for (int bt = 0; bt < batches; bt++) {
        dsv4_sample_opts o = fixed ? *fixed : random_opts(&r, V);
        for (int64_t i = 0; i < rows; i++) {
            fill_row(&r, l + i * ld, V, (int)(kt_u32(&r) % S_COUNT));
            for (int64_t c = V; c < ld; c++)
                l[i * ld + c] = NAN;            /* padding must not be read */
            sd[i] = (uint64_t)kt_u32(&r) << 32 | kt_u32(&r);
            pos[i] = (int64_t)(kt_u32(&r) % 100000) - 10;
            if (use_u) {
                uint32_t x = kt_u32(&r) % 4;
                u[i] = x == 0 ? 0.0 : x == 1 ? 1.0 - 0x1.0p-53 : (double)(kt_u32(&r) % 16) / 16.0;
            } else {
                u[i] = dsv4_sample_uniform(sd[i], pos[i]);
            }
        }
        dsv4_cu_upload(d.logits, l, (size_t)(rows * ld) * sizeof(float), &err);
        dsv4_cu_upload(d.seed, sd, (size_t)rows * 8, &err);
        dsv4_cu_upload(d.pos, pos, (size_t)rows * 8, &err);
        dsv4_cu_upload(d.u, u, (size_t)rows * 8, &err);
        kt_poison(d.token, (size_t)rows * 4);
        kt_poison(d.status, (size_t)rows * 8);
        dsv4_cu_sample_args a = { d.logits, rows, ld, d.seed, d.pos, use_u ? d.u : NULL, d.token, d.status };
        KT_OK(dsv4_cu_sample(gs, &a, &o, NULL, &err), &err);
        if (kt_get(tok, d.token, (size_t)rows * 4) || kt_get(st, d.status, (size_t)rows * 8))
            break;
        for (int64_t i = 0; i < rows; i++) {
            uint32_t want = 0;
            int rc = dsv4_sample(cs, l + i * ld, &o, u[i], &want, &err);
            n++;
            if (rc != 0 || st[i] != 0 || tok[i] != want) {
                if (bad < 5)
                    fprintf(stderr, "  V %lld row %lld (T %g k %lld p %g min_p %g u %.17g): gpu %u status %lld, "
                            "cpu %u rc %d\n", (long long)V, (long long)i, o.temperature, (long long)o.top_k,
                            o.top_p, o.min_p, u[i], tok[i], (long long)st[i], want, rc);
                bad++;
            }
        }
    }
    printf("  vocab %lld: %lld rows, %lld tokens differ\n", (long long)V, (long long)n, (long long)bad);
    CHECK_EQ_INT(bad, 0);
    free(l); free(sd); free(pos); free(st); free(u); free(tok);
    dev_free(&d);
    dsv4_sampler_free(cs);
    dsv4_cu_sampler_free(gs);
    return n;
}

TEST(small_vocabs)
{
    static const int64_t vs[] = { 1, 2, 3, 17, 100, 257 };
    for (int i = 0; i < 6; i++)
        run_rows(vs[i], 16, ktest_emulated() ? 8 : 200, 100 + (uint64_t)i, NULL, 0);
}

TEST(tiny_vocab)                  /* tiny-v4: vocab_size 1024 */
{
    run_rows(1024, 32, ktest_emulated() ? 10 : 300, 7, NULL, 0);
}

TEST(edge_draws)                  /* u = 0, 1 - 2^-53, k/16 (on boundaries of flat rows) */
{
    run_rows(16, 32, ktest_emulated() ? 8 : 100, 8, NULL, 1);
    run_rows(1024, 16, ktest_emulated() ? 4 : 100, 9, NULL, 1);
}

TEST(greedy)
{
    dsv4_sample_opts o = DSV4_SAMPLE_OPTS_INIT;
    o.temperature = 0;
    run_rows(1, 8, 2, 10, &o, 0);
    run_rows(33, 64, 5, 11, &o, 0);
    run_rows(1024, 32, 5, 12, &o, 0);
}

TEST(real_vocab)                  /* 129280 tokens */
{
    const int64_t V = 129280;
    dsv4_sample_opts o = DSV4_SAMPLE_OPTS_INIT;
    int em = ktest_emulated();
    run_rows(V, 2, 1, 20, &o, 0);                 /* plain temperature 1: buckets */
    o.top_k = 50; o.top_p = 0.9;
    run_rows(V, 2, 1, 21, &o, 0);                 /* top-k path */
    o.top_k = 0; o.top_p = 0.95; o.min_p = 0.02; o.temperature = 0.7;
    run_rows(V, 2, 1, 22, &o, 0);
    o.temperature = 0;
    run_rows(V, 2, 1, 23, &o, 0);
    run_rows(V, em ? 4 : 64, em ? 2 : 20, 24, NULL, 0);   /* random options */
}

TEST(row_errors)
{
    const int64_t V = 40, rows = 5;
    dsv4_err err = DSV4_ERR_INIT, cerr = DSV4_ERR_INIT;
    dsv4_sampler *cs = NULL;
    dsv4_cu_sampler *gs = NULL;
    KT_OK(dsv4_sampler_new(&cs, V, &err), &err);
    KT_OK(dsv4_cu_sampler_new(&gs, V, rows, &err), &err);
    if (!cs || !gs)
        return;
    float l[5 * 40];
    for (int i = 0; i < rows * V; i++)
        l[i] = (float)(i % 7);
    l[0 * V + 13] = NAN; l[0 * V + 31] = NAN;      /* row 0: NaN at 13 */
    for (int i = 0; i < V; i++)
        l[1 * V + i] = -INFINITY;                  /* row 1: all -inf */
    l[3 * V + 39] = NAN;                           /* row 3: NaN at 39 */
    double u[5] = { 0.5, 0.5, 1.0, 0.25, NAN };    /* rows 2 and 4: bad draws */
    struct dev d = dev_new(rows, V);
    dsv4_cu_upload(d.logits, l, sizeof l, &err);
    dsv4_cu_upload(d.u, u, sizeof u, &err);
    dsv4_sample_opts o = DSV4_SAMPLE_OPTS_INIT;
    dsv4_cu_sample_args a = { d.logits, rows, V, NULL, NULL, d.u, d.token, d.status };
    int64_t st[5];
    KT_OK(dsv4_cu_sample(gs, &a, &o, NULL, &err), &err);
    if (!kt_get(st, d.status, sizeof st))
        for (int i = 0; i < rows; i++) {
            uint32_t t;
            int crc = dsv4_sample(cs, l + i * V, &o, u[i], &t, &cerr);
            int grc = dsv4_cu_sample_status(st[i], V, &err);
            CHECK_EQ_INT(grc, crc);
            if (crc && strcmp(err.msg, cerr.msg) && crc != DSV4_E_INVALID)
                fprintf(stderr, "  row %d: gpu '%s' cpu '%s'\n", i, err.msg, cerr.msg), test_cur_failed = 1;
        }
    CHECK_EQ_INT(st[0], 14);
    CHECK_EQ_INT(st[1], -1);
    CHECK_EQ_INT(st[2], -2);
    /* bad arguments */
    o.top_p = 0;
    CHECK_EQ_INT(dsv4_cu_sample(gs, &a, &o, NULL, &err), DSV4_E_INVALID);
    CHECK(strstr(err.msg, "top_p") != NULL);
    o.top_p = 1;
    a.rows = rows + 1;
    CHECK_EQ_INT(dsv4_cu_sample(gs, &a, &o, NULL, &err), DSV4_E_INVALID);
    a.rows = rows; a.ld = V - 1;
    CHECK_EQ_INT(dsv4_cu_sample(gs, &a, &o, NULL, &err), DSV4_E_INVALID);
    CHECK(strstr(err.msg, "ld") != NULL);
    a.ld = V; a.u = NULL;
    CHECK_EQ_INT(dsv4_cu_sample(gs, &a, &o, NULL, &err), DSV4_E_INVALID);
    a.rows = 0;
    CHECK_EQ_INT(dsv4_cu_sample(gs, &a, &o, NULL, &err), 0);
    CHECK_EQ_INT(dsv4_cu_sample(NULL, &a, &o, NULL, &err), DSV4_E_INVALID);
    dsv4_cu_sampler *bad = NULL;
    CHECK_EQ_INT(dsv4_cu_sampler_new(&bad, 0, 1, &err), DSV4_E_INVALID);
    CHECK_EQ_INT(dsv4_cu_sampler_new(&bad, 10, 0, &err), DSV4_E_INVALID);
    CHECK(bad == NULL);
    dev_free(&d);
    dsv4_sampler_free(cs);
    dsv4_cu_sampler_free(gs);
}

KTEST_MAIN(T(small_vocabs), T(tiny_vocab), T(edge_draws), T(greedy), T(real_vocab), T(row_errors))
#else
KTEST_MAIN(0)
#endif
