/* ops — CPU building blocks of the forward pass (see ops.h). */
#include "ops.h"
#include "codec.h"
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int qfmt(const dsv4_wt *W)
{
    return W->kind == DSV4_WT_Q2 ? DSV4_QF_Q2 : DSV4_QF_Q3;
}

static int is_q(const dsv4_wt *W)
{
    return W->kind == DSV4_WT_Q2 || W->kind == DSV4_WT_Q3;
}

int dsv4_wt_kind_of(dsv4_dtype dt)
{
    switch (dt) {
    case DSV4_DT_F8_E4M3: return DSV4_WT_FP8;
    case DSV4_DT_I8:      return DSV4_WT_FP4;
    case DSV4_DT_BF16:    return DSV4_WT_BF16;
    case DSV4_DT_F32:     return DSV4_WT_F32;
    case DSV4_DT_Q2:      return DSV4_WT_Q2;
    case DSV4_DT_Q3:      return DSV4_WT_Q3;
    default:              return DSV4_WT_NONE;
    }
}

int64_t dsv4_wt_cols(int kind, int64_t stored_cols)
{
    switch (kind) {
    case DSV4_WT_FP4: return stored_cols * 2;
    case DSV4_WT_Q2:  return stored_cols * 4;
    case DSV4_WT_Q3:  return stored_cols * 8 / 3;
    default:          return stored_cols;
    }
}

dsv4_wt dsv4_wt_slice(const dsv4_wt *W, int64_t r0, int64_t n)
{
    dsv4_wt v = *W;
    size_t k = (size_t)W->k, r = (size_t)r0;
    v.n = n;
    switch (W->kind) {
    case DSV4_WT_FP8:
        v.w = W->w + r * k;
        v.s = W->s + (r / 128) * ((k + 127) / 128);
        break;
    case DSV4_WT_FP4:
        v.w = W->w + r * ((k + 1) / 2);
        v.s = W->s + r * ((k + 31) / 32);
        break;
    case DSV4_WT_BF16: v.w = W->w + r * k * 2; break;
    case DSV4_WT_F32:  v.w = W->w + r * k * 4; break;
    case DSV4_WT_Q2:
    case DSV4_WT_Q3: {
        const dsv4_qfmt_info *q = dsv4_qfmt_get(qfmt(W));
        v.w = W->w + r * (k / (size_t)q->block) * (size_t)q->block_bytes;
        v.s = W->s + r * (k / (size_t)q->block);
        break;
    }
    }
    return v;
}

void dsv4_wt_row(const dsv4_wt *W, int64_t r, float *out)
{
    int64_t k = W->k;
    switch (W->kind) {
    case DSV4_WT_FP8:
        dsv4_dequant_fp8_rows(W->w, W->s, W->n, k, r, r + 1, out);
        break;
    case DSV4_WT_FP4:
        dsv4_dequant_fp4_rows(W->w, W->s, W->n, k, r, r + 1, out);
        break;
    case DSV4_WT_BF16: {
        const uint8_t *p = W->w + (size_t)r * (size_t)k * 2;
        for (int64_t i = 0; i < k; i++)
            out[i] = dsv4_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    }
    case DSV4_WT_F32:
        memcpy(out, W->w + (size_t)r * (size_t)k * 4, (size_t)k * 4);
        break;
    case DSV4_WT_Q2:
    case DSV4_WT_Q3:
        dsv4_quant_dequant_rows(qfmt(W), W->w, W->s, k, r, r + 1, out);
        break;
    default:
        memset(out, 0, (size_t)k * sizeof *out);
    }
}

/* Exempt from UBSan (not ASan, which still checks every load): this loop is
 * most of a forward pass, its only arithmetic is on indices below n, and
 * UBSan's per-load pointer checks made sanitized test runs 3x slower. */
__attribute__((no_sanitize("undefined")))
static double dot_d(const float *a, const float *b, int64_t n)
{
    /* double partial sums: the result is (nearly always) the exact sum of
     * the f32 products, which any careful f32 reduction of the reference
     * also lands on, so the bf16 roundings downstream agree with it far
     * more often than after a plain f32 accumulation */
    double s[4] = { 0 };
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; j++)
            s[j] += (double)a[i + j] * b[i + j];
    for (; i < n; i++)
        s[0] += (double)a[i] * b[i];
    return (s[0] + s[2]) + (s[1] + s[3]);
}

float dsv4_dot(const float *a, const float *b, int64_t n)
{
    return (float)dot_d(a, b, n);
}

static int ceil_log2(int64_t x)
{
    int b = 0;
    while (x > 1 && ((int64_t)1 << b) < x)
        b++;
    return b;
}

/* Sum of the f32-rounded squares of x[n] in the order of PyTorch's
 * vectorised CPU sum over a contiguous row (8-lane vectors, 4-way ILP, a
 * 4-level cascade over long rows).  The reference's x.square().mean(-1)
 * rounds like this far more often than like a sequential or an exact sum. */
static float sum_sq(const float *x, int64_t n)
{
#define LD(i) (x[i] * x[i])
    int64_t nv = n / 8, rows = nv / 4;
    int lp = ceil_log2(rows) / 4;
    lp = lp > 4 ? lp : 4;
    int64_t step = (int64_t)1 << lp, mask = step - 1;
    float acc[4][32];
    memset(acc, 0, sizeof acc);
    int64_t i = 0;
    while (i + step <= rows) {
        for (int64_t j = 0; j < step; j++, i++)
            for (int k = 0; k < 32; k++)
                acc[0][k] += LD(i * 32 + k);
        for (int lv = 1; lv < 4; lv++) {
            for (int k = 0; k < 32; k++) {
                acc[lv][k] += acc[lv - 1][k];
                acc[lv - 1][k] = 0.0f;
            }
            if (i & (mask << (lv * lp)))
                break;
        }
    }
    for (; i < rows; i++)
        for (int k = 0; k < 32; k++)
            acc[0][k] += LD(i * 32 + k);
    for (int lv = 1; lv < 4; lv++)
        for (int k = 0; k < 32; k++)
            acc[0][k] += acc[lv][k];
    for (int64_t v = rows * 4; v < nv; v++)
        for (int l = 0; l < 8; l++)
            acc[0][l] += LD(v * 8 + l);
    for (int k = 1; k < 4; k++)
        for (int l = 0; l < 8; l++)
            acc[0][l] += acc[0][k * 8 + l];
    float s = 0.0f;
    for (int64_t t = nv * 8; t < n; t++)
        s += LD(t);
    for (int l = 0; l < 8; l++)
        s += acc[0][l];
    return s;
#undef LD
}

/* Raw codes of weight row r without scales (the scales apply per block). */
static void raw_row(const dsv4_wt *W, int64_t r, float *out)
{
    int64_t k = W->k;
    if (W->kind == DSV4_WT_FP8) {
        const uint8_t *p = W->w + (size_t)r * (size_t)k;
        for (int64_t i = 0; i < k; i++)
            out[i] = dsv4_e4m3_to_f32(p[i]);
    } else if (is_q(W)) {
        dsv4_wt row = dsv4_wt_slice(W, r, 1);
        dsv4_quant_levels(qfmt(W), row.w, k, out);
    } else {
        const uint8_t *p = W->w + (size_t)r * (size_t)((k + 1) / 2);
        for (int64_t i = 0; i + 1 < k; i += 2) {
            out[i] = dsv4_e2m1_to_f32(p[i / 2] & 15);
            out[i + 1] = dsv4_e2m1_to_f32(p[i / 2] >> 4);
        }
        if (k & 1)
            out[k - 1] = dsv4_e2m1_to_f32(p[k / 2] & 15);
    }
}

struct lin_job {
    const dsv4_wt *W;
    const float *x;      /* [m, k]: quantised values (codes) or plain inputs */
    const float *sa;     /* [m, ceil(k/128)] activation scales, or NULL */
    int64_t m;
    float *y;
    int round;
    float *scratch;      /* [threads, k + k/32 + 1]: a weight row, its group scales */
};

static void lin_rows(void *ctx, int64_t r0, int64_t r1, int tid)
{
    struct lin_job *j = ctx;
    const dsv4_wt *W = j->W;
    int64_t k = W->k, kb = (k + 127) / 128;
    float *w = j->scratch + (size_t)tid * (size_t)(k + k / 32 + 1);
    for (int64_t r = r0; r < r1; r++) {
        if (!j->sa) {
            dsv4_wt_row(W, r, w);
            for (int64_t i = 0; i < j->m; i++) {
                float v = dsv4_dot(j->x + i * k, w, k);
                j->y[i * W->n + r] = j->round ? dsv4_round_bf16(v) : v;
            }
            continue;
        }
        int plain = W->kind == DSV4_WT_BF16 || W->kind == DSV4_WT_F32;
        if (plain)
            dsv4_wt_row(W, r, w);   /* values, as if one block of scale 1 per 128 */
        else
            raw_row(W, r, w);
        if (W->kind == DSV4_WT_FP8 || plain) {
            const uint8_t *sr = plain ? NULL : W->s + (r / 128) * kb;
            for (int64_t i = 0; i < j->m; i++) {
                const float *xi = j->x + i * k, *si = j->sa + i * kb;
                double acc = 0.0;
                for (int64_t b = 0; b < kb; b++) {
                    int64_t c0 = b * 128, len = k - c0 < 128 ? k - c0 : 128;
                    acc += dot_d(xi + c0, w + c0, len) * (double)(si[b] * (plain ? 1.0f : dsv4_e8m0_to_f32(sr[b])));
                }
                j->y[i * W->n + r] = dsv4_round_bf16((float)acc);
            }
        } else {
            /* FP4, Q2, Q3: one scale per group of G along k, input scales per 128 */
            int64_t G = is_q(W) ? dsv4_qfmt_get(qfmt(W))->block : 32, ks = (k + G - 1) / G;
            const uint8_t *sr = W->s + r * ks;
            float *ws = w + k;   /* the row's group scales, decoded once */
            for (int64_t g = 0; g < ks; g++)
                ws[g] = is_q(W) ? dsv4_qs8_to_f32(sr[g]) : dsv4_e8m0_to_f32(sr[g]);
            for (int64_t i = 0; i < j->m; i++) {
                const float *xi = j->x + i * k, *si = j->sa + i * kb;
                double acc = 0.0;
                for (int64_t g = 0; g < ks; g++) {
                    int64_t c0 = g * G, len = k - c0 < G ? k - c0 : G;
                    acc += dot_d(xi + c0, w + c0, len) * (double)(si[c0 / 128] * ws[g]);
                }
                j->y[i * W->n + r] = dsv4_round_bf16((float)acc);
            }
        }
    }
}

/* Rows of output per task: enough work to amortise the row decode. */
static int64_t row_grain(int64_t m, int64_t k)
{
    int64_t work = m * k;
    return work >= 65536 ? 1 : (65536 + work - 1) / (work ? work : 1);
}

static int run_rows(dsv4_pool *pool, struct lin_job *j, dsv4_err *err)
{
    int64_t k = j->W->k;
    j->scratch = malloc((size_t)dsv4_pool_threads(pool) * (size_t)(k + k / 32 + 1) * sizeof(float));
    if (!j->scratch)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory for weight-row scratch");
    dsv4_pool_for(pool, j->W->n, row_grain(j->m, k), lin_rows, j);
    free(j->scratch);
    return 0;
}

int dsv4_linear_q(dsv4_pool *pool, const dsv4_wt *W, const float *x, int64_t m, float *y, dsv4_err *err)
{
    if (W->kind == DSV4_WT_NONE)
        return dsv4_err_set(err, DSV4_E_BUG, "linear with an unbound weight");
    int64_t k = W->k, kb = (k + 127) / 128;
    float *q = malloc((size_t)(m * k + m * kb) * sizeof *q);
    uint8_t *codes = malloc((size_t)k);
    if (!q || !codes) {
        free(q);
        free(codes);
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory for a %lld x %lld activation", (long long)m,
                            (long long)k);
    }
    float *sa = q + m * k;
    for (int64_t i = 0; i < m; i++) {
        dsv4_act_quant_row(x + i * k, k, 128, codes, sa + i * kb);
        for (int64_t c = 0; c < k; c++)
            q[i * k + c] = dsv4_e4m3_to_f32(codes[c]);
    }
    struct lin_job j = { W, q, sa, m, y, 1, NULL };
    int rc = run_rows(pool, &j, err);
    free(q);
    free(codes);
    return rc;
}

int dsv4_linear(dsv4_pool *pool, const dsv4_wt *W, const float *x, int64_t m, float *y, int round_bf16,
                dsv4_err *err)
{
    if (W->kind == DSV4_WT_NONE)
        return dsv4_err_set(err, DSV4_E_BUG, "linear with an unbound weight");
    struct lin_job j = { W, x, NULL, m, y, round_bf16, NULL };
    return run_rows(pool, &j, err);
}

float dsv4_mean_sq(const float *x, int64_t n)
{
    return sum_sq(x, n) / (float)n;
}

void dsv4_rmsnorm(const float *x, const float *w, int64_t n, float eps, float *y)
{
    float r = 1.0f / sqrtf(dsv4_mean_sq(x, n) + eps);
    for (int64_t i = 0; i < n; i++)
        y[i] = dsv4_round_bf16(w[i] * (x[i] * r));
}

void dsv4_head_rms_bf16(float *q, int64_t n, float eps)
{
    /* the reference does this with bf16 tensor ops (ARCH.md §5.1 step 3) */
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++)
        ss += dsv4_round_bf16(q[i] * q[i]);
    float mean = dsv4_round_bf16((float)ss / (float)n);
    float r = dsv4_round_bf16(1.0f / sqrtf(dsv4_round_bf16(mean + eps)));
    for (int64_t i = 0; i < n; i++)
        q[i] = dsv4_round_bf16(q[i] * r);
}

/* YaRN correction range as the reference computes it (Python floats). */
static double corr_dim(double rot, int64_t dim, double base, double len)
{
    return (double)dim * log(len / (rot * 2.0 * M_PI)) / (2.0 * log(base));
}

void dsv4_rope_freqs(float *freqs, int64_t rd, double theta, int yarn, double factor,
                     double orig_len, double beta_fast, double beta_slow)
{
    int64_t half = rd / 2;
    for (int64_t i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)rd;
        freqs[i] = 1.0f / powf((float)theta, e);
    }
    if (!yarn)
        return;
    double lo = floor(corr_dim(beta_fast, rd, theta, orig_len));
    double hi = ceil(corr_dim(beta_slow, rd, theta, orig_len));
    if (lo < 0)
        lo = 0;
    if (hi > (double)(rd - 1))
        hi = (double)(rd - 1);
    if (lo == hi)
        hi += 0.001;
    for (int64_t i = 0; i < half; i++) {
        float ramp = ((float)i - (float)lo) / ((float)hi - (float)lo);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        float smooth = 1.0f - ramp;
        freqs[i] = freqs[i] / (float)factor * (1.0f - smooth) + freqs[i] * smooth;
    }
}

void dsv4_rope(float *x, int64_t rd, const float *freqs, int64_t pos, int inverse)
{
    for (int64_t i = 0; i < rd / 2; i++) {
        float phi = (float)pos * freqs[i];
        float c = cosf(phi), s = sinf(phi);
        if (inverse)
            s = -s;
        float a = x[2 * i], b = x[2 * i + 1];
        x[2 * i] = dsv4_round_bf16(a * c - b * s);
        x[2 * i + 1] = dsv4_round_bf16(a * s + b * c);
    }
}
