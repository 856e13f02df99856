/* quant — Q2/Q3 block formats (see quant.h, dsv4-model(5)). */
#include "quant.h"

#include <math.h>
#include <string.h>

static const float q2_levels[4] = { -2, -1, 0, 1 };
static const float q3_levels[8] = { -6, -4, -2, -1, 0, 1, 2, 4 };
/* Midpoints between neighbouring Q3 levels: a value above mid[j] is nearer level j+1. */
static const float q3_mid[7] = { -5, -3, -1.5f, -0.5f, 0.5f, 1.5f, 3 };

static const dsv4_qfmt_info infos[DSV4_QF_COUNT] = {
    [DSV4_QF_Q2] = { "Q2", 64, 16, 4, q2_levels },
    [DSV4_QF_Q3] = { "Q3", 32, 12, 8, q3_levels },
};

const dsv4_qfmt_info *dsv4_qfmt_get(int fmt)
{
    return fmt >= 0 && fmt < DSV4_QF_COUNT ? &infos[fmt] : NULL;
}

/* 2^(j/4), j = 0..3, rounded to f32: literal so that every platform decodes
 * a scale byte to the same float. */
static const float quarter[4] = { 1.0f, 1.18920711500272106672f, 1.41421356237309504880f, 1.68179283050742908606f };

float dsv4_qs8_to_f32(uint8_t s)
{
    int e = s & 0x7f;
    if (!e)
        return 0.0f;
    float d = ldexpf(quarter[e & 3], (e >> 2) - 24);
    return s & 0x80 ? -d : d;
}

/* Quarter-octave index of v > 0: the e with 2^((e-96)/4) <= v < 2^((e-95)/4),
 * from the float's bits (exact, no log2). */
static int quarter_index(float v)
{
    int E;
    float m = 2.0f * frexpf(v, &E);   /* v = m * 2^(E-1), m in [1, 2) */
    int f = m >= quarter[3] ? 3 : m >= quarter[2] ? 2 : m >= quarter[1] ? 1 : 0;
    return 96 + 4 * (E - 1) + f;
}

static int code_of(int fmt, float t)
{
    /* branch-free count of the level midpoints below t (vectorises); a tie
     * goes to the smaller level */
    if (fmt == DSV4_QF_Q2)
        return (t > -1.5f) + (t > -0.5f) + (t > 0.5f);
    return (t > q3_mid[0]) + (t > q3_mid[1]) + (t > q3_mid[2]) + (t > q3_mid[3]) + (t > q3_mid[4]) +
           (t > q3_mid[5]) + (t > q3_mid[6]);
}

static void put_codes(int fmt, const uint8_t *c, uint8_t *out)
{
    int B = infos[fmt].block;
    memset(out, 0, (size_t)infos[fmt].block_bytes);
    for (int i = 0; i < B; i++) {
        out[i / 4] |= (uint8_t)((c[i] & 3) << (2 * (i % 4)));
        if (fmt == DSV4_QF_Q3)
            out[8 + i / 8] |= (uint8_t)((c[i] >> 2) << (i % 8));
    }
}

static void quant_block(int fmt, const float *xin, uint8_t *codes, uint8_t *scale)
{
    const dsv4_qfmt_info *q = &infos[fmt];
    int B = q->block, zero = fmt == DSV4_QF_Q2 ? 2 : 4;
    float x[64], a = 0.0f;
    uint8_t c[64], best_c[64];
    for (int i = 0; i < B; i++) {
        x[i] = isfinite(xin[i]) ? xin[i] : 0.0f;
        a = fabsf(x[i]) > a ? fabsf(x[i]) : a;
    }
    memset(best_c, zero, sizeof best_c);
    *scale = 0;
    if (a > 0.0f) {
        /* candidates: a quarter octave around amax / (largest level
         * magnitude), one octave down (clipping the largest values can pay)
         * and one up, with both signs; keep the smallest squared error */
        float best = INFINITY;
        int e0 = quarter_index(a / (fmt == DSV4_QF_Q2 ? 2.0f : 6.0f));
        for (int sg = 0; sg < 2; sg++)
            for (int e = e0 - 4; e <= e0 + 4; e++) {
                if (e < 1 || e > 127)
                    continue;
                uint8_t s = (uint8_t)(e | (sg << 7));
                float d = dsv4_qs8_to_f32(s), inv = 1.0f / d, err = 0.0f;
                for (int i = 0; i < B; i++)
                    c[i] = (uint8_t)code_of(fmt, x[i] * inv);
                for (int i = 0; i < B; i++) {
                    float r = q->levels[c[i]] * d - x[i];
                    err += r * r;
                }
                if (err < best) {
                    best = err;
                    *scale = s;
                    memcpy(best_c, c, (size_t)B);
                }
            }
    }
    put_codes(fmt, best_c, codes);
}

void dsv4_quant_row(int fmt, const float *x, int64_t k, uint8_t *codes, uint8_t *scales)
{
    const dsv4_qfmt_info *q = &infos[fmt];
    for (int64_t b = 0; b < k / q->block; b++)
        quant_block(fmt, x + b * q->block, codes + b * q->block_bytes, scales + b);
}

void dsv4_quant_levels(int fmt, const uint8_t *codes, int64_t k, float *out)
{
    const dsv4_qfmt_info *q = &infos[fmt];
    for (int64_t b = 0; b < k / q->block; b++) {
        const uint8_t *p = codes + b * q->block_bytes;
        float *o = out + b * q->block;
        if (fmt == DSV4_QF_Q2) {
            for (int j = 0; j < 16; j++)
                for (int i = 0; i < 4; i++)
                    o[4 * j + i] = q2_levels[(p[j] >> (2 * i)) & 3];
            continue;
        }
        /* the block's 32 low-bit pairs and 32 high bits as two integers */
        uint64_t lo = 0;
        uint32_t hi = (uint32_t)p[8] | (uint32_t)p[9] << 8 | (uint32_t)p[10] << 16 | (uint32_t)p[11] << 24;
        for (int j = 7; j >= 0; j--)
            lo = lo << 8 | p[j];
        for (int i = 0; i < 32; i++)
            o[i] = q3_levels[((lo >> (2 * i)) & 3) | (((hi >> i) & 1) << 2)];
    }
}

void dsv4_quant_dequant_rows(int fmt, const uint8_t *codes, const uint8_t *scales, int64_t k, int64_t r0,
                             int64_t r1, float *out)
{
    const dsv4_qfmt_info *q = &infos[fmt];
    int64_t nb = k / q->block;
    for (int64_t r = r0; r < r1; r++) {
        float *o = out + (r - r0) * k;
        dsv4_quant_levels(fmt, codes + r * nb * q->block_bytes, k, o);
        for (int64_t b = 0; b < nb; b++) {
            float d = dsv4_qs8_to_f32(scales[r * nb + b]);
            for (int i = 0; i < q->block; i++)
                o[b * q->block + i] *= d;
        }
    }
}
