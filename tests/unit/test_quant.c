/* Unit tests for lib/quant.c (the Q2/Q3 block formats) and for the linear
 * kernels that compute from them (lib/ops.c), against dequantise-then-compute
 * on random data.  Weights are drawn the way the routed experts are stored:
 * Gaussian values snapped to FP4 (e2m1) with a power-of-two scale per 32. */
#include "test.h"

#include <stdint.h>

#include "codec.h"
#include "ops.h"
#include "pool.h"
#include "quant.h"

static uint64_t rng = 88172645463325252ull;

static double urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static float gauss(void)
{
    double u = urand() + 1e-12, v = urand();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* n values like a routed-expert row: e2m1 codes times 2^e per 32. */
static void fp4_like(float *x, int64_t n, float sigma)
{
    for (int64_t g = 0; g < n; g += 32) {
        float a = 0.0f;
        for (int i = 0; i < 32; i++) {
            x[g + i] = gauss() * sigma;
            a = fabsf(x[g + i]) > a ? fabsf(x[g + i]) : a;
        }
        float s = dsv4_pow2_ceil(a / 6.0f);
        for (int i = 0; i < 32; i++)
            x[g + i] = dsv4_e2m1_to_f32(dsv4_f32_to_e2m1(x[g + i] / s)) * s;
    }
}

TEST(scale_bytes)
{
    CHECK(dsv4_qs8_to_f32(0) == 0.0f);
    CHECK(dsv4_qs8_to_f32(0x80) == 0.0f);
    CHECK(dsv4_qs8_to_f32(96) == 1.0f);
    CHECK(dsv4_qs8_to_f32(0x80 | 96) == -1.0f);
    CHECK(dsv4_qs8_to_f32(100) == 2.0f);
    CHECK(dsv4_qs8_to_f32(92) == 0.5f);
    CHECK_NEAR(dsv4_qs8_to_f32(97), pow(2.0, 0.25), 1e-7);
    CHECK_NEAR(dsv4_qs8_to_f32(1), pow(2.0, -23.75), 1e-13);
    CHECK_NEAR(dsv4_qs8_to_f32(127), pow(2.0, 7.75), 1e-4);
    CHECK_EQ_INT(dsv4_qfmt_get(DSV4_QF_Q2)->block, 64);
    CHECK_EQ_INT(dsv4_qfmt_get(DSV4_QF_Q3)->block_bytes, 12);
    CHECK(dsv4_qfmt_get(7) == NULL);
}

/* Packing: the documented bit positions, checked on a hand-made block. */
TEST(bit_layout)
{
    float x[64];
    uint8_t c[16], s[2];
    /* Q2: levels -2 -1 0 1 repeating, scale 1 -> codes 0 1 2 3 -> bytes 0xe4 */
    for (int i = 0; i < 64; i++)
        x[i] = (float)(i % 4) - 2.0f;
    dsv4_quant_row(DSV4_QF_Q2, x, 64, c, s);
    CHECK_EQ_INT(s[0], 96);
    for (int i = 0; i < 16; i++)
        CHECK_EQ_INT(c[i], 0xe4);
    /* Q3: element 0 = 4 (code 7), the rest 0 (code 4): low bits 3 then 0s, high bits all set */
    for (int i = 0; i < 32; i++)
        x[i] = i ? 0.0f : 4.0f;
    dsv4_quant_row(DSV4_QF_Q3, x, 32, c, s);
    CHECK_EQ_INT(s[0], 96);
    CHECK_EQ_INT(c[0], 3);
    for (int i = 1; i < 8; i++)
        CHECK_EQ_INT(c[i], 0);
    for (int i = 8; i < 12; i++)
        CHECK_EQ_INT(c[i], 0xff);
    /* an all-zero block: scale 0, zero-level codes */
    memset(x, 0, sizeof x);
    dsv4_quant_row(DSV4_QF_Q2, x, 64, c, s);
    CHECK_EQ_INT(s[0], 0);
    CHECK_EQ_INT(c[5], 0xaa);
}

/* Values on a format's grid come back exactly; requantising is idempotent. */
TEST(round_trip_exact)
{
    for (int fmt = 0; fmt < DSV4_QF_COUNT; fmt++) {
        const dsv4_qfmt_info *q = dsv4_qfmt_get(fmt);
        enum { K = 256 };
        float x[K], y[K], z[K];
        uint8_t c[K], s[K / 32], c2[K], s2[K / 32];
        for (int b = 0; b < K / q->block; b++) {
            float d = ldexpf(1.0f, -8 + b);
            for (int i = 0; i < q->block; i++)
                x[b * q->block + i] = q->levels[(int)(urand() * q->nlevels)] * d;
            x[b * q->block] = q->levels[0] * d;   /* pin the extreme level */
        }
        dsv4_quant_row(fmt, x, K, c, s);
        dsv4_quant_dequant_rows(fmt, c, s, K, 0, 1, y);
        int same = 1;
        for (int i = 0; i < K; i++)
            same &= x[i] == y[i];
        CHECK(same);
        dsv4_quant_row(fmt, y, K, c2, s2);
        dsv4_quant_dequant_rows(fmt, c2, s2, K, 0, 1, z);
        CHECK(!memcmp(y, z, sizeof y));
    }
}

/* Error on FP4-distributed weights: relative RMSE within the design bounds
 * (measured ~0.36 for Q2, ~0.16 for Q3) and never worse than the nearest
 * level with the plain amax scale. */
TEST(error_bounds)
{
    enum { K = 4096 };
    static float x[K], y[K];
    static uint8_t c[K], s[K / 32];
    fp4_like(x, K, 0.02f);
    for (int fmt = 0; fmt < DSV4_QF_COUNT; fmt++) {
        const dsv4_qfmt_info *q = dsv4_qfmt_get(fmt);
        dsv4_quant_row(fmt, x, K, c, s);
        dsv4_quant_dequant_rows(fmt, c, s, K, 0, 1, y);
        double se = 0, ss = 0, naive = 0;
        for (int b = 0; b < K / q->block; b++) {
            float a = 0.0f;
            for (int i = 0; i < q->block; i++)
                a = fabsf(x[b * q->block + i]) > a ? fabsf(x[b * q->block + i]) : a;
            float d = a / -q->levels[0];
            for (int i = 0; i < q->block; i++) {
                float v = x[b * q->block + i], best = 0.0f;
                for (int l = 0; l < q->nlevels; l++)
                    if (fabsf(q->levels[l] * d - v) < fabsf(best - v))
                        best = q->levels[l] * d;
                naive += (double)(best - v) * (best - v);
            }
        }
        for (int i = 0; i < K; i++) {
            se += (double)(y[i] - x[i]) * (y[i] - x[i]);
            ss += (double)x[i] * x[i];
        }
        double rel = sqrt(se / ss);
        fprintf(stderr, "%s: relative RMSE %.4f (amax-scaled nearest level: %.4f)\n", q->name, rel, sqrt(naive / ss));
        CHECK(rel < (fmt == DSV4_QF_Q2 ? 0.42 : 0.20));
        CHECK(se <= naive);
    }
}

/* dsv4_linear_q on Q2/Q3 weights equals dequantise-then-compute: the
 * dequantised matrix times the e4m3-quantised input, summed in double and
 * rounded to bf16 (within one bf16 step for the different summation order);
 * dsv4_linear likewise against the plain f32 product; thread count does not
 * change the result.  BF16 weights in dsv4_linear_q quantise the input too. */
TEST(kernels_vs_dequant)
{
    enum { N = 40, K = 384, M = 3 };
    static float w[N * K], wd[N * K], x[M * K], xq[M * K], sa[M * 3], y1[M * N], y2[M * N], y3[M * N];
    static uint8_t codes[N * K], scales[N * K / 32], qc[K];
    dsv4_pool *pool = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    CHECK(dsv4_pool_new(&pool, 3, &err) == 0);
    for (int fmt = 0; fmt < DSV4_QF_COUNT; fmt++) {
        const dsv4_qfmt_info *q = dsv4_qfmt_get(fmt);
        int64_t rb = K / q->block * q->block_bytes, nb = K / q->block;
        fp4_like(w, N * K, 0.05f);
        for (int r = 0; r < N; r++)
            dsv4_quant_row(fmt, w + r * K, K, codes + r * rb, scales + r * nb);
        dsv4_quant_dequant_rows(fmt, codes, scales, K, 0, N, wd);
        for (int i = 0; i < M * K; i++)
            x[i] = dsv4_round_bf16(gauss());
        for (int i = 0; i < M; i++) {
            dsv4_act_quant_row(x + i * K, K, 128, qc, sa + i * 3);
            for (int c = 0; c < K; c++)
                xq[i * K + c] = dsv4_e4m3_to_f32(qc[c]) * sa[i * 3 + c / 128];
        }
        dsv4_wt W = { fmt == DSV4_QF_Q2 ? DSV4_WT_Q2 : DSV4_WT_Q3, N, K, codes, scales };
        CHECK(dsv4_linear_q(NULL, &W, x, M, y1, &err) == 0);
        CHECK(dsv4_linear_q(pool, &W, x, M, y3, &err) == 0);
        CHECK(!memcmp(y1, y3, sizeof y1));
        int bad = 0, bad2 = 0;
        for (int i = 0; i < M; i++)
            for (int r = 0; r < N; r++) {
                double acc = 0, acc2 = 0;
                for (int c = 0; c < K; c++) {
                    acc += (double)xq[i * K + c] * wd[r * K + c];
                    acc2 += (double)x[i * K + c] * wd[r * K + c];
                }
                float ref = dsv4_round_bf16((float)acc), got = y1[i * N + r];
                if (fabsf(got - ref) > fabsf(ref) * (1.0f / 128) + 1e-30f)
                    bad++;
                y2[i * N + r] = (float)acc2;
            }
        CHECK_EQ_INT(bad, 0);
        CHECK(dsv4_linear(pool, &W, x, M, y3, 0, &err) == 0);
        for (int i = 0; i < M * N; i++)
            if (fabsf(y3[i] - y2[i]) > 1e-5f * (fabsf(y2[i]) + 1.0f))
                bad2++;
        CHECK_EQ_INT(bad2, 0);
        /* a row slice decodes the same rows */
        dsv4_wt S = dsv4_wt_slice(&W, 7, 5);
        float row[K];
        dsv4_wt_row(&S, 2, row);
        CHECK(!memcmp(row, wd + 9 * K, sizeof row));
    }
    /* a BF16 weight (dsv4-quant's re-encoding of an FP8 one) gets the same
     * input quantisation: compare with the quantised input times W */
    static uint8_t wb[N * K * 2];
    for (int i = 0; i < N * K; i++) {
        uint16_t h = dsv4_f32_to_bf16(w[i]);
        wb[2 * i] = (uint8_t)h;
        wb[2 * i + 1] = (uint8_t)(h >> 8);
        wd[i] = dsv4_bf16_to_f32(h);
    }
    dsv4_wt Wb = { DSV4_WT_BF16, N, K, wb, NULL };
    CHECK(dsv4_linear_q(pool, &Wb, x, M, y1, &err) == 0);
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int r = 0; r < N; r++) {
            double acc = 0;
            for (int c = 0; c < K; c++)
                acc += (double)xq[i * K + c] * wd[r * K + c];
            float ref = dsv4_round_bf16((float)acc);
            bad += fabsf(y1[i * N + r] - ref) > fabsf(ref) * (1.0f / 128);
        }
    CHECK_EQ_INT(bad, 0);
    dsv4_pool_free(pool);
}

TEST_MAIN(T(scale_bytes), T(bit_layout), T(round_trip_exact), T(error_bounds), T(kernels_vs_dequant))
