/* Unit tests for lib/sample.c.
 *
 * Expected results come from hand-made distributions (logits = log p, so the
 * probabilities after each filter are known in closed form), from the order
 * "higher logit first, then lower id" computed here by brute force, and from
 * a plain reference sampler below that normalises, fully sorts and filters
 * the vocabulary the obvious way. */
#include "test.h"

#include <stdint.h>

#include "sample.h"

static uint64_t lcg_state;

static uint32_t lcg_next(void)
{
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(lcg_state >> 32);
}

static double lcg_unit(void)
{
    return lcg_next() / 4294967296.0;
}

static dsv4_sample_opts opts(double t, double top_p, int64_t top_k, double min_p)
{
    dsv4_sample_opts o = { t, top_p, top_k, min_p };
    return o;
}

/* Sample or record a failed check and return UINT32_MAX. */
static uint32_t pick(dsv4_sampler *s, const float *logits, dsv4_sample_opts o, double u)
{
    dsv4_err err = DSV4_ERR_INIT;
    uint32_t tok = UINT32_MAX;
    int rc = dsv4_sample(s, logits, &o, u, &tok, &err);
    if (rc != 0) {
        fprintf(stderr, "dsv4_sample: %s\n", err.msg);
        CHECK_EQ_INT(rc, 0);
        return UINT32_MAX;
    }
    return tok;
}

static dsv4_sampler *new_sampler(int64_t vocab)
{
    dsv4_sampler *s = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    CHECK_EQ_INT(dsv4_sampler_new(&s, vocab, &err), 0);
    return s;
}

/* How many tokens come before t in the order: higher logit, then lower id. */
static int64_t rank_of(const float *l, int64_t n, uint32_t t)
{
    int64_t r = 0;
    for (int64_t i = 0; i < n; i++)
        r += l[i] > l[t] || (l[i] == l[t] && i < t);
    return r;
}

/* A hand-made distribution over 8 tokens, most likely first, and the ids
 * it is stored at (so that id order is not probability order). */
static const double P8[8] = { 0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.03, 0.02 };
static const uint32_t ID8[8] = { 5, 2, 7, 0, 3, 6, 1, 4 };

static void fill_p8(float *logits)
{
    for (int i = 0; i < 8; i++)
        logits[ID8[i]] = (float)(log(P8[i]) + 3.25);   /* an offset must not matter */
}

TEST(check)
{
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_sample_opts good[] = {
        DSV4_SAMPLE_OPTS_INIT, opts(0, 1, 0, 0), opts(2.5, 1e-9, 40, 1), opts(1e-300, 0.5, 1, 0.05),
    };
    struct { dsv4_sample_opts o; const char *name; } bad[] = {
        { opts(-0.1, 1, 0, 0), "temperature" },   { opts(INFINITY, 1, 0, 0), "temperature" },
        { opts(NAN, 1, 0, 0), "temperature" },    { opts(1, 0, 0, 0), "top_p" },
        { opts(1, -0.5, 0, 0), "top_p" },         { opts(1, 1.0000001, 0, 0), "top_p" },
        { opts(1, NAN, 0, 0), "top_p" },          { opts(1, 1, -1, 0), "top_k" },
        { opts(1, 1, 0, -0.01), "min_p" },        { opts(1, 1, 0, 1.5), "min_p" },
        { opts(1, 1, 0, NAN), "min_p" },
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK_EQ_INT(dsv4_sample_check(&good[i], &err), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = (dsv4_err)DSV4_ERR_INIT;
        CHECK_EQ_INT(dsv4_sample_check(&bad[i].o, &err), DSV4_E_INVALID);
        CHECK_EQ_INT(err.code, DSV4_E_INVALID);
        CHECK(strstr(err.msg, bad[i].name) != NULL);
    }
    CHECK_EQ_INT(dsv4_sample_check(NULL, &err), DSV4_E_INVALID);

    /* dsv4_sample checks too, and checks u when it is used */
    dsv4_sampler *s = new_sampler(3);
    float l[3] = { 0, 1, 2 };
    uint32_t tok = 99;
    CHECK_EQ_INT(dsv4_sample(s, l, &bad[3].o, 0.5, &tok, &err), DSV4_E_INVALID);
    dsv4_sample_opts o = DSV4_SAMPLE_OPTS_INIT;
    CHECK_EQ_INT(dsv4_sample(s, l, &o, 1.0, &tok, &err), DSV4_E_INVALID);
    CHECK_EQ_INT(dsv4_sample(s, l, &o, -0.25, &tok, &err), DSV4_E_INVALID);
    CHECK_EQ_INT(dsv4_sample(s, l, &o, NAN, &tok, &err), DSV4_E_INVALID);
    CHECK_EQ_INT(tok, 99);
    dsv4_sampler_free(s);

    dsv4_sampler *none = NULL;
    CHECK_EQ_INT(dsv4_sampler_new(&none, 0, &err), DSV4_E_INVALID);
    CHECK(none == NULL);
    dsv4_sampler_free(NULL);
}

TEST(uniform)
{
    enum { N = 200000 };
    double sum = 0, sum2 = 0, lag = 0, prev = 0.5;
    int64_t bins[16] = { 0 };
    for (int64_t p = 0; p < N; p++) {
        double u = dsv4_sample_uniform(12345, p);
        CHECK(u >= 0 && u < 1);
        CHECK(u * 0x1.0p53 == floor(u * 0x1.0p53));     /* a multiple of 2^-53 */
        sum += u;
        sum2 += u * u;
        lag += (u - 0.5) * (prev - 0.5);
        prev = u;
        bins[(int)(u * 16)]++;
    }
    double mean = sum / N, var = sum2 / N - mean * mean, chi2 = 0;
    CHECK_NEAR(mean, 0.5, 0.004);            /* sd of the mean: 0.00065 */
    CHECK_NEAR(var, 1.0 / 12, 0.002);
    CHECK_NEAR(lag / N, 0.0, 0.004);         /* lag-1 covariance, sd 0.00019 */
    for (int b = 0; b < 16; b++)
        chi2 += (bins[b] - N / 16.0) * (bins[b] - N / 16.0) / (N / 16.0);
    CHECK(chi2 < 45);                        /* 15 dof: p = 1e-4 */

    /* pure: the same (seed, pos) gives the same value, in any call order */
    double a[8];
    for (int p = 0; p < 8; p++)
        a[p] = dsv4_sample_uniform(7, p);
    for (int p = 7; p >= 4; p--)
        CHECK(dsv4_sample_uniform(7, p) == a[p]);
    for (int p = 0; p < 4; p++)
        CHECK(dsv4_sample_uniform(7, p) == a[p]);

    /* differs across seeds and positions: no repeats among 4 x 2000 draws,
     * including adjacent seeds and seed 0 */
    enum { M = 4 * 2000 };
    static double v[M];
    const uint64_t seeds[4] = { 0, 1, 2, 0x9e3779b97f4a7c15ull };
    for (int si = 0; si < 4; si++)
        for (int p = 0; p < 2000; p++)
            v[si * 2000 + p] = dsv4_sample_uniform(seeds[si], p - 1000);
    int dups = 0;
    for (int i = 0; i < M; i++)
        for (int j = i + 1; j < M; j++)
            dups += v[i] == v[j];
    CHECK_EQ_INT(dups, 0);
    /* seed s+golden must not be seed s shifted by one position */
    CHECK(dsv4_sample_uniform(0x9e3779b97f4a7c15ull, 0) != dsv4_sample_uniform(0, 1));
}

TEST(greedy)
{
    float l[6] = { 0.5f, 3.0f, -1.0f, 3.0f, 2.9f, -INFINITY };
    dsv4_sampler *s = new_sampler(6);
    /* argmax, lowest id on ties; u is not used (not even checked) */
    const double us[] = { 0, 0.3, 0.999999, 5.0, -1.0, NAN };
    for (size_t i = 0; i < sizeof us / sizeof us[0]; i++) {
        CHECK_EQ_INT(pick(s, l, opts(0, 1, 0, 0), us[i]), 1);
        CHECK_EQ_INT(pick(s, l, opts(0, 0.1, 3, 0.5), us[i]), 1);   /* filters do not change it */
    }
    l[4] = 3.5f;
    CHECK_EQ_INT(pick(s, l, opts(0, 1, 0, 0), 0.5), 4);
    l[5] = 3.5f;                                    /* a tie after the first */
    CHECK_EQ_INT(pick(s, l, opts(0, 1, 0, 0), 0.5), 4);
    l[0] = 3.5f;                                    /* a tie before it */
    CHECK_EQ_INT(pick(s, l, opts(0, 1, 0, 0), 0.5), 0);
    dsv4_sampler_free(s);

    /* one token */
    float one = -7;
    s = new_sampler(1);
    CHECK_EQ_INT(pick(s, &one, opts(0, 1, 0, 0), 0), 0);
    CHECK_EQ_INT(pick(s, &one, opts(1, 1, 0, 0), 0.99), 0);
    CHECK_EQ_INT(pick(s, &one, opts(1, 0.5, 1, 0.5), 0.99), 0);
    dsv4_sampler_free(s);
}

/* top_k = 1 is greedy for every u and temperature, ties included. */
TEST(topk1_is_greedy)
{
    enum { V = 1000 };
    static float l[V];
    dsv4_sampler *s = new_sampler(V);
    lcg_state = 11;
    for (int rep = 0; rep < 20; rep++) {
        for (int i = 0; i < V; i++)
            l[i] = (float)(lcg_next() % 64) * 0.25f;   /* many ties at the top */
        uint32_t g = pick(s, l, opts(0, 1, 0, 0), 0);
        CHECK_EQ_INT(rank_of(l, V, g), 0);
        for (int k = 0; k < 25; k++) {
            double u = dsv4_sample_uniform(rep, k);
            CHECK_EQ_INT(pick(s, l, opts(0.1 + rep * 0.5, 1, 1, 0), u), g);
        }
        CHECK_EQ_INT(pick(s, l, opts(1, 1, 1, 0), 0x1.fffffffffffffp-1), g);
    }
    dsv4_sampler_free(s);
}

/* top_k = k never returns a token outside the k most likely, and (with a
 * high temperature) reaches all k of them. */
TEST(topk_support)
{
    enum { V = 64 };
    float l[V];
    dsv4_sampler *s = new_sampler(V);
    lcg_state = 5;
    for (int i = 0; i < V; i++)
        l[i] = (float)(lcg_next() % 16);               /* ties across the cut */
    const int64_t ks[] = { 2, 5, 17, 40, 63 };
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
        int64_t k = ks[ki];
        int seen[V] = { 0 }, nseen = 0;
        for (int p = 0; p < 3000; p++) {
            uint32_t t = pick(s, l, opts(50, 1, k, 0), dsv4_sample_uniform(ki, p));
            if (t >= V) {
                CHECK(t < V);
                continue;
            }
            CHECK(rank_of(l, V, t) < k);
            nseen += !seen[t];
            seen[t] = 1;
        }
        CHECK_EQ_INT(nseen, k);
    }
    dsv4_sampler_free(s);
}

/* A tiny top_p keeps only the most likely token, on both code paths. */
TEST(topp_small)
{
    enum { V = 300 };
    float l[V];
    dsv4_sampler *s = new_sampler(V);
    lcg_state = 9;
    for (int i = 0; i < V; i++)
        l[i] = (float)(lcg_unit() * 4);
    uint32_t g = pick(s, l, opts(0, 1, 0, 0), 0);
    for (int p = 0; p < 200; p++) {
        double u = dsv4_sample_uniform(3, p);
        CHECK_EQ_INT(pick(s, l, opts(1.5, 1e-6, 0, 0), u), g);
        CHECK_EQ_INT(pick(s, l, opts(1.5, 1e-6, 50, 0), u), g);
    }
    /* and a top_p just above the top probability keeps exactly two */
    double z = 0, p0;
    for (int i = 0; i < V; i++)
        z += exp((double)l[i] - l[g]);
    p0 = 1 / z;
    int seen2 = 0;
    for (int p = 0; p < 400; p++) {
        uint32_t t = pick(s, l, opts(1, p0 * 1.0001, 0, 0), dsv4_sample_uniform(4, p));
        CHECK(rank_of(l, V, t) < 2);
        seen2 |= rank_of(l, V, t) == 1;
    }
    CHECK(seen2);
    dsv4_sampler_free(s);
}

/* Which tokens each option set can return, by sweeping u over [0, 1). */
static void support(dsv4_sampler *s, const float *l, dsv4_sample_opts o, int *seen, int n)
{
    memset(seen, 0, (size_t)n * sizeof *seen);
    for (int i = 0; i < 4000; i++) {
        uint32_t t = pick(s, l, o, (i + 0.5) / 4000);
        if (t < (uint32_t)n)
            seen[t] = 1;
        else
            CHECK(t < (uint32_t)n);
    }
}

/* The support as a bit mask over the ranks of P8 (bit r = P8[r]'s token). */
static unsigned support_mask(dsv4_sampler *s, const float *l, dsv4_sample_opts o)
{
    int seen[8];
    unsigned m = 0;
    support(s, l, o, seen, 8);
    for (int r = 0; r < 8; r++)
        m |= (unsigned)seen[ID8[r]] << r;
    return m;
}

TEST(filters_support)
{
    float l[8];
    dsv4_sampler *s = new_sampler(8);
    fill_p8(l);
    /* min_p: probability >= min_p * 0.30 */
    CHECK_EQ_INT(support_mask(s, l, opts(1, 1, 0, 0.3)), 0x1f);    /* >= .09: .30 .20 .15 .12 .10 */
    CHECK_EQ_INT(support_mask(s, l, opts(1, 1, 0, 0.45)), 0x07);   /* >= .135 */
    CHECK_EQ_INT(support_mask(s, l, opts(1, 1, 0, 0.34)), 0x0f);   /* >= .102: not .10 */
    CHECK_EQ_INT(support_mask(s, l, opts(1, 1, 0, 0.32)), 0x1f);   /* >= .096: .10 too */
    CHECK_EQ_INT(support_mask(s, l, opts(1, 1, 0, 0.05)), 0xff);
    CHECK_EQ_INT(support_mask(s, l, opts(1, 1, 0, 1)), 0x01);
    /* min-p is relative to the top probability, so temperature moves the cut:
     * at T = 2 the ratios are sqrt(p / .30), .12 -> 0.632 */
    CHECK_EQ_INT(support_mask(s, l, opts(2, 1, 0, 0.6)), 0x0f);
    /* min_p on the top-k path and after top-k */
    CHECK_EQ_INT(support_mask(s, l, opts(1, 1, 6, 0.32)), 0x1f);
    CHECK_EQ_INT(support_mask(s, l, opts(1, 1, 4, 0.05)), 0x0f);
    /* top-p: cumulative .30 .50 .65 .77 .87 */
    CHECK_EQ_INT(support_mask(s, l, opts(1, 0.6, 0, 0)), 0x07);
    CHECK_EQ_INT(support_mask(s, l, opts(1, 0.7, 0, 0)), 0x0f);
    CHECK_EQ_INT(support_mask(s, l, opts(1, 0.85, 0, 0)), 0x1f);
    /* top-p after top-k is renormalised over the k: of .77, .50 = .649 >= .6 */
    CHECK_EQ_INT(support_mask(s, l, opts(1, 0.6, 4, 0)), 0x03);
    CHECK_EQ_INT(support_mask(s, l, opts(1, 0.6, 7, 0)), 0x07);   /* .50/.98 < .6 */
    /* all three: top-4, top-p .9 of .77 -> 4 tokens, min-p .45 -> >= .135 */
    CHECK_EQ_INT(support_mask(s, l, opts(1, 0.9, 4, 0.45)), 0x07);
    /* top_k >= vocab is off */
    CHECK_EQ_INT(support_mask(s, l, opts(1, 1, 8, 0)), 0xff);
    CHECK_EQ_INT(support_mask(s, l, opts(1, 1, 1000, 0)), 0xff);
    dsv4_sampler_free(s);
}

/* Draw n tokens with u from dsv4_sample_uniform and compare the counts with
 * the probabilities q (indexed by rank in P8) by chi-square; a token with
 * q = 0 must never appear. */
static void freq_case(dsv4_sampler *s, const float *l, dsv4_sample_opts o, const double *q,
                      uint64_t seed, int line)
{
    enum { N = 20000 };
    int64_t cnt[8] = { 0 };
    double chi2 = 0;
    int df = -1;
    for (int64_t p = 0; p < N; p++) {
        uint32_t t = pick(s, l, o, dsv4_sample_uniform(seed, p));
        if (t < 8)
            cnt[t]++;
    }
    for (int r = 0; r < 8; r++) {
        int64_t c = cnt[ID8[r]];
        if (q[r] == 0) {
            if (c != 0)
                fprintf(stderr, "line %d: rank %d drawn %lld times, expected never\n", line, r,
                        (long long)c);
            CHECK_EQ_INT(c, 0);
            continue;
        }
        chi2 += (c - N * q[r]) * (c - N * q[r]) / (N * q[r]);
        df++;
    }
    if (!(chi2 < 30))      /* df <= 7: p < 1e-4 */
        fprintf(stderr, "line %d: chi-square %.2f with %d dof\n", line, chi2, df);
    CHECK(chi2 < 30);
}

/* q[r] proportional to P8[r]^(1/t) over ranks [0, keep), 0 beyond. */
static void expect(double *q, double t, int keep)
{
    double z = 0;
    for (int r = 0; r < 8; r++) {
        q[r] = r < keep ? pow(P8[r], 1 / t) : 0;
        z += q[r];
    }
    for (int r = 0; r < 8; r++)
        q[r] /= z;
}

TEST(frequencies)
{
    float l[8];
    double q[8];
    dsv4_sampler *s = new_sampler(8);
    fill_p8(l);
    expect(q, 1, 8);   freq_case(s, l, opts(1, 1, 0, 0), q, 1, __LINE__);
    expect(q, 0.5, 8); freq_case(s, l, opts(0.5, 1, 0, 0), q, 2, __LINE__);
    expect(q, 2, 8);   freq_case(s, l, opts(2, 1, 0, 0), q, 3, __LINE__);
    expect(q, 1, 3);   freq_case(s, l, opts(1, 1, 3, 0), q, 4, __LINE__);
    expect(q, 0.7, 5); freq_case(s, l, opts(0.7, 1, 5, 0), q, 5, __LINE__);
    expect(q, 1, 4);   freq_case(s, l, opts(1, 0.7, 0, 0), q, 6, __LINE__);
    /* T = 2: sqrt(p) normalised, cumulative .207 .377 .523 .654 .774 */
    expect(q, 2, 5);   freq_case(s, l, opts(2, 0.7, 0, 0), q, 7, __LINE__);
    expect(q, 1, 2);   freq_case(s, l, opts(1, 0.6, 4, 0), q, 8, __LINE__);
    expect(q, 1, 5);   freq_case(s, l, opts(1, 1, 0, 0.3), q, 9, __LINE__);
    expect(q, 1.3, 3); freq_case(s, l, opts(1.3, 0.5, 6, 0.1), q, 10, __LINE__);
    dsv4_sampler_free(s);
}

/* Cumulative boundaries of a sorted list of weights (the test's own sums). */
static void boundaries(const double *w, int n, double *b)
{
    double z = 0, c = 0;
    for (int i = 0; i < n; i++)
        z += w[i];
    for (int i = 0; i < n; i++) {
        c += w[i];
        b[i] = c / z;
    }
}

TEST(cut_points)
{
    /* four tokens, plus one at -inf so that top_k = 4 takes the top-k path
     * with the same distribution */
    float l[5] = { -1.5f, 0.25f, -INFINITY, 1.0f, -0.75f };
    const uint32_t order[4] = { 3, 1, 4, 0 };
    double w[4], b[4];
    dsv4_sampler *s = new_sampler(5);
    for (int i = 0; i < 4; i++)
        w[i] = exp((double)l[order[i]] - 1.0);
    boundaries(w, 4, b);
    const int64_t ks[2] = { 0, 4 };
    for (int ki = 0; ki < 2; ki++) {
        dsv4_sample_opts o = opts(1, 1, ks[ki], 0);
        CHECK_EQ_INT(pick(s, l, o, 0), order[0]);
        CHECK_EQ_INT(pick(s, l, o, 0x1.fffffffffffffp-1), order[3]);
        for (int i = 0; i < 3; i++) {
            CHECK_EQ_INT(pick(s, l, o, b[i] * (1 - 1e-12)), order[i]);
            CHECK_EQ_INT(pick(s, l, o, b[i] * (1 + 1e-12)), order[i + 1]);
        }
    }
    /* temperature 0.5: weights squared */
    for (int i = 0; i < 4; i++)
        w[i] = exp(((double)l[order[i]] - 1.0) / 0.5);
    boundaries(w, 4, b);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(pick(s, l, opts(0.5, 1, 0, 0), b[i] * (1 - 1e-12)), order[i]);
        CHECK_EQ_INT(pick(s, l, opts(0.5, 1, 0, 0), b[i] * (1 + 1e-12)), order[i + 1]);
    }
    /* top_p cuts after the first two; the rest is renormalised over them */
    double pick2 = w[0] / (w[0] + w[1]);
    double topp = (w[0] + w[1]) / (w[0] + w[1] + w[2] + w[3]);
    for (int ki = 0; ki < 2; ki++) {
        dsv4_sample_opts o = opts(0.5, topp * (1 - 1e-9), ks[ki], 0);
        CHECK_EQ_INT(pick(s, l, o, pick2 * (1 - 1e-12)), order[0]);
        CHECK_EQ_INT(pick(s, l, o, pick2 * (1 + 1e-12)), order[1]);
        CHECK_EQ_INT(pick(s, l, o, 0x1.fffffffffffffp-1), order[1]);
        o.top_p = topp * (1 + 1e-9);      /* just above: three tokens */
        CHECK_EQ_INT(pick(s, l, o, 0x1.fffffffffffffp-1), order[2]);
    }
    dsv4_sampler_free(s);

    /* ten equal logits (one weight bucket): the order is by id, each
     * takes a tenth; 20 more tokens at -inf around them */
    float e[30];
    for (int i = 0; i < 30; i++)
        e[i] = i % 3 == 1 ? 2.0f : -INFINITY;
    s = new_sampler(30);
    for (int ki = 0; ki < 2; ki++) {
        dsv4_sample_opts o = opts(0.8, 1, ki ? 29 : 0, 0);
        for (int j = 1; j < 10; j++) {
            CHECK_EQ_INT(pick(s, e, o, j / 10.0 * (1 - 1e-12)), 3 * (j - 1) + 1);
            CHECK_EQ_INT(pick(s, e, o, j / 10.0 * (1 + 1e-12)), 3 * j + 1);
        }
        CHECK_EQ_INT(pick(s, e, o, 0), 1);
        CHECK_EQ_INT(pick(s, e, o, 0x1.fffffffffffffp-1), 28);
    }
    dsv4_sampler_free(s);
}

TEST(infinities)
{
    float l[7] = { 1.0f, -INFINITY, INFINITY, 3.0f, -2.0f, INFINITY, 0.0f };
    dsv4_sampler *s = new_sampler(7);
    CHECK_EQ_INT(pick(s, l, opts(0, 1, 0, 0), 0.9), 2);
    /* sampling: the +inf tokens split the probability evenly, by id */
    for (int ki = 0; ki < 3; ki++) {
        int64_t k = ki == 0 ? 0 : ki == 1 ? 4 : 2;
        CHECK_EQ_INT(pick(s, l, opts(1, 1, k, 0), 0.0), 2);
        CHECK_EQ_INT(pick(s, l, opts(1, 1, k, 0), 0.4999), 2);
        CHECK_EQ_INT(pick(s, l, opts(1, 1, k, 0), 0.5001), 5);
        CHECK_EQ_INT(pick(s, l, opts(1, 1, k, 0), 0x1.fffffffffffffp-1), 5);
        CHECK_EQ_INT(pick(s, l, opts(1, 0.3, k, 0), 0.9), 2);       /* top-p: the first half */
        CHECK_EQ_INT(pick(s, l, opts(1, 1, k, 1), 0.9), 5);         /* min-p keeps both */
    }
    CHECK_EQ_INT(pick(s, l, opts(1, 1, 1, 0), 0.9), 2);
    dsv4_sampler_free(s);
}

TEST(errors)
{
    float l[10];
    dsv4_err err = DSV4_ERR_INIT;
    uint32_t tok = 77;
    dsv4_sample_opts greedy = opts(0, 1, 0, 0), samp = DSV4_SAMPLE_OPTS_INIT, topk = opts(1, 1, 3, 0);
    dsv4_sampler *s = new_sampler(10);
    for (int i = 0; i < 10; i++)
        l[i] = (float)i;
    l[7] = NAN;
    l[3] = -NAN;
    const dsv4_sample_opts *all[3] = { &greedy, &samp, &topk };
    for (int i = 0; i < 3; i++) {
        err = (dsv4_err)DSV4_ERR_INIT;
        CHECK_EQ_INT(dsv4_sample(s, l, all[i], 0.5, &tok, &err), DSV4_E_RANGE);
        CHECK_STR(err.msg, "logit of token 3 is NaN");
    }
    for (int i = 0; i < 10; i++)
        l[i] = -INFINITY;
    for (int i = 0; i < 3; i++) {
        err = (dsv4_err)DSV4_ERR_INIT;
        CHECK_EQ_INT(dsv4_sample(s, l, all[i], 0.5, &tok, &err), DSV4_E_RANGE);
        CHECK(strstr(err.msg, "-inf") != NULL);
    }
    CHECK_EQ_INT(tok, 77);
    /* one finite logit among -inf is fine */
    l[6] = -1e30f;
    CHECK_EQ_INT(pick(s, l, samp, 0.99), 6);
    CHECK_EQ_INT(pick(s, l, topk, 0.99), 6);
    CHECK_EQ_INT(pick(s, l, opts(1, 0.5, 0, 0.5), 0.99), 6);
    CHECK_EQ_INT(dsv4_sample(NULL, l, &samp, 0.5, &tok, &err), DSV4_E_INVALID);
    dsv4_sampler_free(s);
}

/* ---- against a plain reference on a vocabulary-sized row ---- */

struct ref_item { double p; uint32_t id; };

static int ref_cmp(const void *pa, const void *pb)
{
    const struct ref_item *a = pa, *b = pb;
    if (a->p != b->p)
        return a->p > b->p ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* The obvious implementation: normalised softmax, full sort, filters with
 * renormalisation, inverse CDF.  Writes one token per u. */
static void ref_sample(const float *l, int64_t n, dsv4_sample_opts o, const double *u, int nu,
                       uint32_t *out)
{
    struct ref_item *it = malloc((size_t)n * sizeof *it);
    double m = -INFINITY, z = 0;
    int64_t keep;
    for (int64_t i = 0; i < n; i++)
        m = l[i] > m ? l[i] : m;
    for (int64_t i = 0; i < n; i++) {
        it[i].p = exp(((double)l[i] - m) / o.temperature);
        it[i].id = (uint32_t)i;
        z += it[i].p;
    }
    for (int64_t i = 0; i < n; i++)
        it[i].p /= z;
    qsort(it, (size_t)n, sizeof *it, ref_cmp);
    keep = o.top_k > 0 && o.top_k < n ? o.top_k : n;
    if (o.top_p < 1) {
        double sk = 0, c = 0;
        for (int64_t j = 0; j < keep; j++)
            sk += it[j].p;
        for (int64_t j = 0; j < keep; j++) {
            c += it[j].p / sk;
            if (c >= o.top_p) {
                keep = j + 1;
                break;
            }
        }
    }
    if (o.min_p > 0) {
        int64_t j = 0;
        while (j < keep && it[j].p >= o.min_p * it[0].p)
            j++;
        keep = j;
    }
    double tot = 0;
    for (int64_t j = 0; j < keep; j++)
        tot += it[j].p;
    for (int k = 0; k < nu; k++) {
        double c = 0;
        out[k] = it[keep - 1].id;
        for (int64_t j = 0; j < keep; j++) {
            c += it[j].p / tot;
            if (c > u[k]) {
                out[k] = it[j].id;
                break;
            }
        }
    }
    free(it);
}

TEST(vocab_vs_reference)
{
    enum { V = 129280, NU = 16 };
    float *l = malloc(V * sizeof *l);
    dsv4_sampler *s = new_sampler(V);
    /* not u within ~1e-12 of 1: there the pick depends on how the sums round
     * (the tail tokens are below the last bits of the total) */
    double u[NU] = { 0, 1e-9, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999999, 1 - 1e-9 };
    uint32_t want[NU];
    int mismatches = 0, distinct = 0;
    for (int k = 10; k < NU; k++)
        u[k] = dsv4_sample_uniform(99, k);
    lcg_state = 2024;
    for (int64_t i = 0; i < V; i++) {
        /* a bell of spread ~3 around 0, a long tail, in steps of 1/32 so
         * that ties are common; a few -inf */
        double g = lcg_unit() + lcg_unit() + lcg_unit() + lcg_unit() - 2;
        l[i] = (float)(floor(g * 6 * 32) / 32);
        if (lcg_next() % 1000 == 0)
            l[i] = -INFINITY;
    }
    l[4321] = l[77777] = 13.0f;   /* a tied top (the bell ends at 12) */
    l[100] = 12.5f;
    const dsv4_sample_opts cases[] = {
        opts(1, 1, 0, 0),          opts(0.7, 1, 0, 0),         opts(1.5, 1, 0, 0),
        opts(1, 0.9, 0, 0),        opts(0.6, 0.95, 0, 0),      opts(1, 0.5, 0, 0),
        opts(1, 1, 50, 0),         opts(1, 1, 1, 0),           opts(2, 1, 5000, 0),
        opts(1, 1, 0, 0.05),       opts(3, 1, 0, 0.001),       opts(1.3, 0.95, 1000, 0.01),
        opts(1, 0.8, 40, 0),       opts(0.9, 0.99, 0, 0.02),   opts(1, 1, V - 1, 0),
        opts(1, 0.7, V + 5, 0),    opts(1e-3, 0.9, 0, 0),      opts(1e6, 0.3, 0, 0),
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint32_t seen[NU];
        int nd = 0;
        ref_sample(l, V, cases[c], u, NU, want);
        for (int k = 0; k < NU; k++) {
            uint32_t got = pick(s, l, cases[c], u[k]);
            if (got != want[k]) {
                fprintf(stderr, "case %zu u=%.17g: got %u, reference %u\n", c, u[k], got, want[k]);
                mismatches++;
            }
            int dup = 0;
            for (int j = 0; j < nd; j++)
                dup |= seen[j] == got;
            if (!dup)
                seen[nd++] = got;
        }
        distinct += nd;
    }
    CHECK_EQ_INT(mismatches, 0);
    CHECK(distinct > 100);     /* the cases do sample, not just take the top */
    free(l);
    dsv4_sampler_free(s);
}

TEST_MAIN(T(check), T(uniform), T(greedy), T(topk1_is_greedy), T(topk_support), T(topp_small),
          T(filters_support), T(frequencies), T(cut_points), T(infinities), T(errors),
          T(vocab_vs_reference))
