/* Unit tests for lib/codec.c (spec/ARCH.md §3.2, §3.5–3.7, §10).
 *
 * Expected values are computed here independently of the library (bit-field
 * decoding, brute-force nearest-value searches in double precision) or were
 * computed with a Python model using exact rational arithmetic (noted as
 * "python" below; the pseudo-random vectors are regenerated here with the
 * same LCG and compared by an FNV-1a hash of the output bytes). */
#include "test.h"

#include <stdint.h>

#include "codec.h"

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static int same_bits(float a, float b)
{
    return f2u(a) == f2u(b);
}

/* Deterministic generator shared with the Python model. */
static uint64_t lcg_state;

static uint32_t lcg_next(void)
{
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(lcg_state >> 32);
}

/* A bf16 value with random sign, exponent field in [ebase, ebase+espan),
 * random 7-bit mantissa. */
static float rand_bf16(int ebase, int espan)
{
    uint32_t r = lcg_next();
    uint32_t sign = r >> 31, e = (uint32_t)ebase + (r >> 8) % (uint32_t)espan, m = r & 0x7f;
    return u2f(((sign << 15) | (e << 7) | m) << 16);
}

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

#define FNV_INIT 0xcbf29ce484222325ull

static uint64_t fnv_floats(uint64_t h, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = f2u(x[i]);
        unsigned char le[4] = { (unsigned char)u, (unsigned char)(u >> 8),
                                (unsigned char)(u >> 16), (unsigned char)(u >> 24) };
        h = fnv_bytes(h, le, 4);
    }
    return h;
}

/* e4m3 value from the bit fields; NaN for S.1111.111. */
static double e4m3_ref(unsigned c)
{
    double sign = (c & 0x80) ? -1.0 : 1.0;
    unsigned e = (c >> 3) & 15, m = c & 7;
    if (e == 15 && m == 7)
        return NAN;
    if (e == 0)
        return sign * ldexp((double)m, -9);
    return sign * ldexp(1.0 + m / 8.0, (int)e - 7);
}

/* Nearest e4m3 code by brute force (ties to the even code, saturating). */
static unsigned e4m3_nearest(double x)
{
    unsigned sign = signbit(x) ? 0x80 : 0;
    double a = fabs(x), best = INFINITY;
    unsigned bc = 0;
    if (a >= 448.0)
        return sign | 0x7e;
    for (unsigned c = 0; c < 0x7f; c++) {
        double d = fabs(a - e4m3_ref(c));
        if (d < best || (d == best && !(c & 1))) {
            best = d;
            bc = c;
        }
    }
    return sign | bc;
}

static const double e2m1_mag[8] = { 0, 0.5, 1, 1.5, 2, 3, 4, 6 };

/* ---- e4m3 ------------------------------------------------------------- */

TEST(e4m3_decode_all)
{
    for (unsigned c = 0; c < 256; c++) {
        double want = e4m3_ref(c);
        float got = dsv4_e4m3_to_f32((uint8_t)c);
        if (isnan(want))
            CHECK(isnan(got));
        else
            CHECK((double)got == want && !signbit(got) == !(c & 0x80));
    }
    CHECK(dsv4_e4m3_to_f32(0x7e) == 448.0f);
    CHECK(dsv4_e4m3_to_f32(0xfe) == -448.0f);
    CHECK(dsv4_e4m3_to_f32(0x01) == ldexpf(1.0f, -9));
    CHECK(dsv4_e4m3_to_f32(0x07) == 7.0f / 512.0f);
    CHECK(dsv4_e4m3_to_f32(0x08) == ldexpf(1.0f, -6));
    CHECK(dsv4_e4m3_to_f32(0x38) == 1.0f);
    CHECK(dsv4_e4m3_to_f32(0x3a) == 1.25f);
    CHECK(dsv4_e4m3_to_f32(0x78) == 256.0f);
    CHECK(isnan(dsv4_e4m3_to_f32(0x7f)));
    CHECK(isnan(dsv4_e4m3_to_f32(0xff)));
    CHECK(dsv4_e4m3_to_f32(0x80) == 0.0f && signbit(dsv4_e4m3_to_f32(0x80)));
}

TEST(e4m3_roundtrip)
{
    for (unsigned c = 0; c < 256; c++) {
        if ((c & 0x7f) == 0x7f)
            continue;
        CHECK_EQ_INT(dsv4_f32_to_e4m3(dsv4_e4m3_to_f32((uint8_t)c)), c);
    }
    CHECK_EQ_INT(dsv4_f32_to_e4m3(-0.0f), 0x80);
    CHECK_EQ_INT(dsv4_f32_to_e4m3(0.0f), 0x00);
}

TEST(e4m3_ties_to_even)
{
    /* Every midpoint between adjacent codes (subnormal ones, the 0x07/0x08
     * boundary, the top 0x7d/0x7e) goes to the even code; one f32 ulp either
     * side goes to the nearer code. */
    for (unsigned c = 0; c < 0x7e; c++) {
        float lo = (float)e4m3_ref(c), hi = (float)e4m3_ref(c + 1);
        float mid = (lo + hi) / 2;   /* exact: both have few significant bits */
        unsigned even = (c & 1) ? c + 1 : c;
        CHECK_EQ_INT(dsv4_f32_to_e4m3(mid), even);
        CHECK_EQ_INT(dsv4_f32_to_e4m3(-mid), even | 0x80);
        CHECK_EQ_INT(dsv4_f32_to_e4m3(nextafterf(mid, 0.0f)), c);
        CHECK_EQ_INT(dsv4_f32_to_e4m3(nextafterf(mid, 1000.0f)), c + 1);
    }
    CHECK_EQ_INT(dsv4_f32_to_e4m3(1.0625f), 0x38);            /* 1 | 1.125 */
    CHECK_EQ_INT(dsv4_f32_to_e4m3(1.1875f), 0x3a);            /* 1.125 | 1.25 */
    CHECK_EQ_INT(dsv4_f32_to_e4m3(ldexpf(1.0f, -10)), 0x00);  /* 0 | 2^-9 */
    CHECK_EQ_INT(dsv4_f32_to_e4m3(nextafterf(ldexpf(1.0f, -10), 1.0f)), 0x01);
    CHECK_EQ_INT(dsv4_f32_to_e4m3(-ldexpf(1.0f, -11)), 0x80); /* underflow keeps sign */
    CHECK_EQ_INT(dsv4_f32_to_e4m3(ldexpf(15.0f, -10)), 0x08); /* 7.5*2^-9 -> 2^-6 */
    CHECK_EQ_INT(dsv4_f32_to_e4m3(432.0f), 0x7e);             /* 416 | 448 */
    CHECK_EQ_INT(dsv4_f32_to_e4m3(ldexpf(1.0f, -140)), 0x00); /* f32 subnormal */
}

TEST(e4m3_saturation_nan)
{
    CHECK_EQ_INT(dsv4_f32_to_e4m3(1e9f), 0x7e);
    CHECK_EQ_INT(dsv4_f32_to_e4m3(-1e9f), 0xfe);
    CHECK_EQ_INT(dsv4_f32_to_e4m3(449.0f), 0x7e);
    CHECK_EQ_INT(dsv4_f32_to_e4m3(464.0f), 0x7e);
    CHECK_EQ_INT(dsv4_f32_to_e4m3(479.0f), 0x7e);
    CHECK_EQ_INT(dsv4_f32_to_e4m3(INFINITY), 0x7e);
    CHECK_EQ_INT(dsv4_f32_to_e4m3(-INFINITY), 0xfe);
    CHECK_EQ_INT(dsv4_f32_to_e4m3(NAN), 0x7f);
    CHECK_EQ_INT(dsv4_f32_to_e4m3(-NAN), 0x7f);
}

TEST(e4m3_random_vs_bruteforce)
{
    /* |x| in [2^-14, 2^10): |x - code| is exact in double there. */
    lcg_state = 11;
    for (int i = 0; i < 200000; i++) {
        uint32_t r = lcg_next();
        uint32_t e = 127 - 14 + (r >> 24) % 24;
        float x = u2f((r & 0x80000000u) | (e << 23) | (lcg_next() & 0x7fffffu));
        unsigned want = e4m3_nearest(x), got = dsv4_f32_to_e4m3(x);
        if (want != got) {
            fprintf(stderr, "x=%a want 0x%02x got 0x%02x\n", x, want, got);
            CHECK(want == got);
            break;
        }
    }
}

/* ---- e8m0 ------------------------------------------------------------- */

TEST(e8m0)
{
    CHECK(dsv4_e8m0_to_f32(0) == ldexpf(1.0f, -127));
    CHECK(f2u(dsv4_e8m0_to_f32(0)) == 0x00400000u);
    CHECK(dsv4_e8m0_to_f32(1) == ldexpf(1.0f, -126));
    CHECK(dsv4_e8m0_to_f32(127) == 1.0f);
    CHECK(dsv4_e8m0_to_f32(128) == 2.0f);
    CHECK(dsv4_e8m0_to_f32(120) == 1.0f / 128);
    CHECK(dsv4_e8m0_to_f32(254) == ldexpf(1.0f, 127));
    CHECK(isnan(dsv4_e8m0_to_f32(255)));
    for (int b = 0; b < 255; b++)
        CHECK((double)dsv4_e8m0_to_f32((uint8_t)b) == ldexp(1.0, b - 127));
}

/* ---- e2m1 ------------------------------------------------------------- */

TEST(e2m1_codes)
{
    for (unsigned c = 0; c < 16; c++) {
        double want = (c & 8 ? -1 : 1) * e2m1_mag[c & 7];
        float got = dsv4_e2m1_to_f32((uint8_t)c);
        CHECK((double)got == want && !signbit(got) == !(c & 8));
        CHECK((double)dsv4_e2m1_to_f32((uint8_t)(c | 0xa0)) == want);  /* high bits ignored */
        CHECK_EQ_INT(dsv4_f32_to_e2m1(got), c);                         /* -0 -> 8 */
    }
}

TEST(e2m1_ties_and_saturation)
{
    static const struct { float x; unsigned code; } cases[] = {
        { 0.25f, 0 }, { 0.75f, 2 }, { 1.25f, 2 }, { 1.75f, 4 },
        { 2.5f, 4 }, { 3.5f, 6 }, { 5.0f, 6 },
        { -0.25f, 8 }, { -0.75f, 10 }, { -1.25f, 10 }, { -1.75f, 12 },
        { -2.5f, 12 }, { -3.5f, 14 }, { -5.0f, 14 },
        { 0.2f, 0 }, { 0.26f, 1 }, { 0.74f, 1 }, { 1.3f, 3 }, { 2.6f, 5 },
        { 3.6f, 6 }, { 5.1f, 7 }, { 6.0f, 7 }, { 7.0f, 7 }, { 1e30f, 7 },
        { -100.0f, 15 }, { INFINITY, 7 }, { -INFINITY, 15 }, { -1e-30f, 8 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_EQ_INT(dsv4_f32_to_e2m1(cases[i].x), cases[i].code);
    CHECK_EQ_INT(dsv4_f32_to_e2m1(NAN), 7);
    /* brute force on a fine grid of points, ties to the even code */
    for (int i = -800; i <= 800; i++) {
        float x = (float)i / 100.0f;
        double a = fabs((double)x), best = INFINITY;
        unsigned bc = 0;
        for (unsigned c = 0; c < 8; c++) {
            double d = fabs(a - e2m1_mag[c]);
            if (d < best || (d == best && !(c & 1))) {
                best = d;
                bc = c;
            }
        }
        CHECK_EQ_INT(dsv4_f32_to_e2m1(x), bc | (signbit(x) ? 8u : 0u));
    }
}

/* ---- bf16 ------------------------------------------------------------- */

TEST(bf16_rne)
{
    CHECK_EQ_INT(dsv4_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ_INT(dsv4_f32_to_bf16(u2f(0x3f800001u)), 0x3f80);
    CHECK_EQ_INT(dsv4_f32_to_bf16(u2f(0x3f807fffu)), 0x3f80);
    CHECK_EQ_INT(dsv4_f32_to_bf16(u2f(0x3f808000u)), 0x3f80);   /* tie, even below */
    CHECK_EQ_INT(dsv4_f32_to_bf16(u2f(0x3f808001u)), 0x3f81);
    CHECK_EQ_INT(dsv4_f32_to_bf16(u2f(0x3f818000u)), 0x3f82);   /* tie, even above */
    CHECK_EQ_INT(dsv4_f32_to_bf16(u2f(0xbf818000u)), 0xbf82);
    CHECK_EQ_INT(dsv4_f32_to_bf16(u2f(0x3fff8000u)), 0x4000);   /* carry into exponent */
    CHECK_EQ_INT(dsv4_f32_to_bf16(u2f(0x7f7fffffu)), 0x7f80);   /* overflow to inf */
    CHECK_EQ_INT(dsv4_f32_to_bf16(u2f(0x7f7f8000u)), 0x7f80);
    CHECK_EQ_INT(dsv4_f32_to_bf16(u2f(0x7f7f7fffu)), 0x7f7f);
    CHECK_EQ_INT(dsv4_f32_to_bf16(u2f(0xff7fffffu)), 0xff80);
    CHECK_EQ_INT(dsv4_f32_to_bf16(INFINITY), 0x7f80);
    CHECK_EQ_INT(dsv4_f32_to_bf16(-INFINITY), 0xff80);
    CHECK_EQ_INT(dsv4_f32_to_bf16(-0.0f), 0x8000);
    CHECK_EQ_INT(dsv4_f32_to_bf16(u2f(0x00008000u)), 0x0000);   /* subnormal tie */
    CHECK_EQ_INT(dsv4_f32_to_bf16(u2f(0x00018000u)), 0x0002);
    CHECK_EQ_INT(dsv4_f32_to_bf16(NAN), 0x7fc0);
    CHECK(isnan(dsv4_bf16_to_f32(dsv4_f32_to_bf16(u2f(0x7f800001u)))));  /* signalling NaN */
    CHECK(isnan(dsv4_bf16_to_f32(dsv4_f32_to_bf16(u2f(0xffc00000u)))));
    CHECK(isnan(dsv4_round_bf16(NAN)));
    CHECK(dsv4_bf16_to_f32(0x3f80) == 1.0f);
    CHECK(dsv4_bf16_to_f32(0xc040) == -3.0f);
    CHECK(dsv4_round_bf16(u2f(0x3f818000u)) == u2f(0x3f820000u));
}

TEST(bf16_random_vs_bruteforce)
{
    lcg_state = 12;
    for (int i = 0; i < 200000; i++) {
        uint32_t u = lcg_next();
        if ((u & 0x7f800000u) == 0x7f800000u)
            continue;
        uint32_t lo = u & 0xffff0000u;
        double x = u2f(u), vlo = u2f(lo);
        /* the next bf16 away from zero; 2^128 stands in for inf */
        double vhi = (lo & 0x7fffffffu) == 0x7f7f0000u ? copysign(ldexp(1.0, 128), x)
                                                         : (double)u2f(lo + 0x10000u);
        double dlo = fabs(x - vlo), dhi = fabs(vhi - x);
        uint32_t want = (dlo < dhi || (dlo == dhi && !((lo >> 16) & 1))) ? lo >> 16 : (lo >> 16) + 1;
        if (dsv4_f32_to_bf16(u2f(u)) != want) {
            fprintf(stderr, "u=0x%08x want 0x%04x got 0x%04x\n", u, want, dsv4_f32_to_bf16(u2f(u)));
            CHECK(0);
            break;
        }
    }
}

/* ---- pow2_ceil -------------------------------------------------------- */

TEST(pow2_ceil)
{
    CHECK(dsv4_pow2_ceil(1.0f) == 1.0f);
    CHECK(dsv4_pow2_ceil(1.5f) == 2.0f);
    CHECK(dsv4_pow2_ceil(nextafterf(1.0f, 2.0f)) == 2.0f);
    CHECK(dsv4_pow2_ceil(nextafterf(1.0f, 0.0f)) == 1.0f);
    CHECK(dsv4_pow2_ceil(0.75f) == 1.0f);
    CHECK(dsv4_pow2_ceil(3e-7f) == ldexpf(1.0f, -21));
    CHECK(dsv4_pow2_ceil(1e-4f / 448) == ldexpf(1.0f, -22));
    CHECK(dsv4_pow2_ceil(ldexpf(1.0f, -126)) == ldexpf(1.0f, -126));
    CHECK(dsv4_pow2_ceil(u2f(0x00800001u)) == ldexpf(1.0f, -125));
    /* subnormal p: the exact smallest power of two */
    CHECK(dsv4_pow2_ceil(u2f(0x00000001u)) == ldexpf(1.0f, -149));
    CHECK(dsv4_pow2_ceil(u2f(0x00000003u)) == ldexpf(1.0f, -147));
    CHECK(dsv4_pow2_ceil(u2f(0x00400000u)) == ldexpf(1.0f, -127));
    CHECK(dsv4_pow2_ceil(u2f(0x00400001u)) == ldexpf(1.0f, -126));
    CHECK(dsv4_pow2_ceil(u2f(0x007fffffu)) == ldexpf(1.0f, -126));
    CHECK(dsv4_pow2_ceil(ldexpf(1.0f, 127)) == ldexpf(1.0f, 127));
    CHECK(isinf(dsv4_pow2_ceil(u2f(0x7f000001u))));
    CHECK(isinf(dsv4_pow2_ceil(INFINITY)));
    CHECK(isnan(dsv4_pow2_ceil(NAN)));
    CHECK(dsv4_pow2_ceil(0.0f) == 0.0f);
    CHECK(dsv4_pow2_ceil(-3.0f) == 4.0f);
    lcg_state = 13;
    for (int i = 0; i < 10000; i++) {
        float p = u2f(lcg_next() & 0x7effffffu);
        if (p == 0.0f)
            continue;
        double s = dsv4_pow2_ceil(p);
        int e;
        CHECK(frexp(s, &e) == 0.5 && s >= p && s / 2 < p);
    }
}

/* ---- block dequantisation -------------------------------------------- */

TEST(dequant_fp8_rows)
{
    enum { N = 200, K = 130, NB = 2, KB = 2 };
    static uint8_t w[N * K], s[NB * KB];
    static float out[N * K + 1];
    lcg_state = 14;
    for (int i = 0; i < N * K; i++)
        w[i] = (uint8_t)lcg_next();
    for (int i = 0; i < NB * KB; i++)
        s[i] = (uint8_t)(100 + i * 13);           /* 100, 113, 126, 139 */
    static const int ranges[][2] = { { 0, N }, { 127, 129 }, { 150, N }, { 5, 5 } };
    for (size_t t = 0; t < sizeof ranges / sizeof ranges[0]; t++) {
        int r0 = ranges[t][0], r1 = ranges[t][1];
        out[(r1 - r0) * K] = 12345.0f;           /* guard just past the end */
        dsv4_dequant_fp8_rows(w, s, N, K, r0, r1, out);
        CHECK(out[(r1 - r0) * K] == 12345.0f);
        int bad = 0;
        for (int r = r0; r < r1; r++)
            for (int k = 0; k < K; k++) {
                double want = e4m3_ref(w[r * K + k]) * ldexp(1.0, s[(r / 128) * KB + k / 128] - 127);
                float got = out[(r - r0) * K + k];
                if (isnan(want) ? !isnan(got) : (double)got != want)
                    bad++;
            }
        CHECK_EQ_INT(bad, 0);
    }
    /* scale extremes: 2^-127 and 2^127 */
    uint8_t w1[2] = { 0x01, 0x38 }, s1[1] = { 0 };
    float o1[2];
    dsv4_dequant_fp8_rows(w1, s1, 1, 2, 0, 1, o1);
    CHECK(o1[0] == ldexpf(1.0f, -136) && o1[1] == ldexpf(1.0f, -127));
    s1[0] = 254;
    dsv4_dequant_fp8_rows(w1, s1, 1, 2, 0, 1, o1);
    CHECK(o1[0] == ldexpf(1.0f, 118) && o1[1] == ldexpf(1.0f, 127));
}

TEST(dequant_fp4_nibble_order)
{
    /* one row, K = 64: two scale groups */
    uint8_t w[32], s[2] = { 127, 129 };
    float out[64];
    for (int j = 0; j < 32; j++)
        w[j] = (uint8_t)(0x21 + (j == 20 ? 0xd6 : 0));   /* low 1 (0.5), high 2 (1.0) */
    dsv4_dequant_fp4_rows(w, s, 1, 64, 0, 1, out);
    CHECK(out[0] == 0.5f && out[1] == 1.0f);              /* low nibble = even element */
    CHECK(out[30] == 0.5f && out[31] == 1.0f);
    CHECK(out[32] == 2.0f && out[33] == 4.0f);            /* second group: x4 */
    /* byte 20 = 0xf7: low 7 (+6), high 0xf (-6), scale 4 */
    CHECK(out[40] == 24.0f && out[41] == -24.0f);
    CHECK(out[63] == 4.0f);
}

TEST(dequant_fp4_rows)
{
    enum { N = 5, K = 96, KS = K / 32 };
    uint8_t w[N * K / 2], s[N * KS];
    float out[N * K];
    lcg_state = 15;
    for (int i = 0; i < N * K / 2; i++)
        w[i] = (uint8_t)lcg_next();
    for (int i = 0; i < N * KS; i++)
        s[i] = (uint8_t)(110 + lcg_next() % 30);
    dsv4_dequant_fp4_rows(w, s, N, K, 1, 4, out);
    int bad = 0;
    for (int r = 1; r < 4; r++)
        for (int k = 0; k < K; k++) {
            unsigned b = w[r * K / 2 + k / 2], c = (k & 1) ? b >> 4 : b & 15;
            double want = (c & 8 ? -1 : 1) * e2m1_mag[c & 7] * ldexp(1.0, s[r * KS + k / 32] - 127);
            bad += (double)out[(r - 1) * K + k] != want;
        }
    CHECK_EQ_INT(bad, 0);
}

/* ---- activation quantisation and simulations ------------------------- */

TEST(act_quant_handcrafted)
{
    float x[130] = { 0 };
    uint8_t q[130];
    float sc[2];
    /* block 0: amax 1 (a power of two) -> p = f32(1/448) -> s = 2^-8 */
    x[0] = 1.0f;
    x[1] = 0.296875f;           /* 76: tie between 72 and 80 -> 80 (0x6a) */
    x[2] = -0.5f;
    x[3] = ldexpf(1.0f, -10);   /* 0.25 */
    x[4] = ldexpf(3.0f, -17);   /* 3*2^-9: subnormal 0x03 */
    x[5] = ldexpf(1.0f, -18);   /* 2^-10: tie -> 0 */
    x[6] = -ldexpf(1.0f, -18);  /* -> -0 */
    /* block 1 (2 columns): amax 448 -> p = 448*f32(1/448) = 1.0 exactly -> s = 1 */
    x[128] = 448.0f;
    x[129] = -1.0f;
    dsv4_act_quant_row(x, 130, 128, q, sc);
    CHECK(sc[0] == 1.0f / 256 && sc[1] == 1.0f);
    static const uint8_t want0[7] = { 0x78, 0x6a, 0xf0, 0x28, 0x03, 0x00, 0x80 };
    for (int i = 0; i < 7; i++)
        CHECK_EQ_INT(q[i], want0[i]);
    for (int i = 7; i < 128; i++)
        CHECK_EQ_INT(q[i], 0);
    CHECK_EQ_INT(q[128], 0x7e);
    CHECK_EQ_INT(q[129], 0xb8);

    /* amax 450 -> p just above 1 -> s = 2 (python: 0x76 0x6e 0xbc) */
    float y[3] = { 450.0f, 225.0f, -3.0f };
    dsv4_act_quant_row(y, 3, 128, q, sc);
    CHECK(sc[0] == 2.0f);
    CHECK(q[0] == 0x76 && q[1] == 0x6e && q[2] == 0xbc);

    /* all zero: amax floored at 1e-4 -> p = 0x1.df595ap-23 -> s = 2^-22 */
    float z[128] = { 0 };
    dsv4_act_quant_row(z, 128, 128, q, sc);
    CHECK(sc[0] == ldexpf(1.0f, -22));
    int nz = 0;
    for (int i = 0; i < 128; i++)
        nz += q[i] != 0;
    CHECK_EQ_INT(nz, 0);

    /* below the floor: s = 2^-22 still (python: 0x48 0xc8 0x4c) */
    float t[3] = { ldexpf(1.0f, -20), -ldexpf(1.0f, -20), ldexpf(3.0f, -21) };
    dsv4_act_quant_row(t, 3, 128, q, sc);
    CHECK(sc[0] == ldexpf(1.0f, -22));
    CHECK(q[0] == 0x48 && q[1] == 0xc8 && q[2] == 0x4c);

    /* block <= 0: the whole row is one block */
    dsv4_act_quant_row(x, 130, 0, q, sc);
    CHECK(sc[0] == 1.0f && q[0] == 0x38);
}

TEST(act_quant_random)
{
    /* k = 710 (5 full blocks + 70), exponent range differs per block; block 2
     * lies below the amax floor.  Hash and scales from the python model. */
    static const int eb[6] = { 124, 107, 60, 132, 117, 127 };
    static const float want_s[6] = { 0x1p-3f, 0x1p-21f, 0x1p-22f, 0x1p5f, 0x1p-10f, 0x1p-1f };
    float x[710], sc[6];
    uint8_t q[710];
    lcg_state = 1;
    for (int i = 0; i < 710; i++)
        x[i] = rand_bf16(eb[i / 128], 8);
    dsv4_act_quant_row(x, 710, 128, q, sc);
    for (int b = 0; b < 6; b++)
        CHECK(sc[b] == want_s[b]);
    uint64_t h = fnv_floats(fnv_bytes(FNV_INIT, q, sizeof q), sc, 6);
    CHECK(h == 0xc19fd66e980760bcull);
    /* and every code against the brute-force encoder */
    int bad = 0;
    for (int i = 0; i < 710; i++)
        bad += q[i] != e4m3_nearest((double)x[i] / sc[i / 128]);
    CHECK_EQ_INT(bad, 0);
}

TEST(fp8_sim_handcrafted)
{
    float x[128] = { 0 };
    x[0] = 1.0f;                /* s = 2^-8 */
    x[1] = 0.296875f;           /* 76 -> 80 -> 0.3125 */
    x[2] = -0.5f;
    x[3] = ldexpf(1.0f, -10);
    x[4] = ldexpf(3.0f, -17);
    x[5] = ldexpf(1.0f, -18);   /* tie -> 0 */
    /* x[64..127] all zero */
    dsv4_fp8_sim(x, 128, 64);
    CHECK(x[0] == 1.0f && x[1] == 0.3125f && x[2] == -0.5f);
    CHECK(x[3] == ldexpf(1.0f, -10) && x[4] == ldexpf(3.0f, -17) && x[5] == 0.0f);
    int nz = 0;
    for (int i = 6; i < 128; i++)
        nz += x[i] != 0.0f || signbit(x[i]);
    CHECK_EQ_INT(nz, 0);

    /* below the 1e-4 floor, s = 2^-22 (python) */
    float t[5] = { ldexpf(1.0f, -20), ldexpf(5.0f, -24), ldexpf(17.0f, -28),
                   ldexpf(3.0f, -32), -ldexpf(17.0f, -28) };
    dsv4_fp8_sim(t, 5, 64);
    CHECK(t[0] == ldexpf(1.0f, -20));
    CHECK(t[1] == ldexpf(5.0f, -24));
    CHECK(t[2] == ldexpf(1.0f, -24));     /* 0.265625: tie -> 0.25 */
    CHECK(t[3] == ldexpf(1.0f, -30));     /* 1.5*2^-9: subnormal tie -> 2*2^-9 */
    CHECK(t[4] == -ldexpf(1.0f, -24));
}

TEST(fp8_sim_random)
{
    /* n = 448 (the KV non-rope dims), block 64; hash from the python model.
     * Block 2 is below the floor: its negative values become -0 (e4m3 0x80
     * times s keeps the sign, as in the reference). */
    static const int eb[7] = { 124, 110, 60, 132, 117, 127, 100 };
    float x[448];
    lcg_state = 2;
    for (int i = 0; i < 448; i++)
        x[i] = rand_bf16(eb[i / 64], 10);
    dsv4_fp8_sim(x, 448, 64);
    CHECK(fnv_floats(FNV_INIT, x, 448) == 0x1ca758ed3adf23a0ull);
    int bad = 0;
    for (int i = 0; i < 448; i++)
        bad += dsv4_round_bf16(x[i]) != x[i];
    CHECK_EQ_INT(bad, 0);
}

TEST(fp4_sim_handcrafted)
{
    float x[160] = { 0 };
    /* block 0: amax 6 -> p = 6*f32(1/6) rounds to 1.0 -> s = 1 */
    static const float b0[11] = { 6, 0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5, -5, -0.25f, 0.3125f };
    static const float w0[11] = { 6, 0, 1, 1, 2, 2, 4, 4, -4, -0.0f, 0.5f };
    memcpy(x, b0, sizeof b0);
    /* block 1: all zero */
    /* block 2: below the 6*2^-126 floor -> s = 2^-126 */
    x[64] = ldexpf(1.0f, -127);
    x[65] = ldexpf(3.0f, -128);
    x[66] = -ldexpf(1.0f, -128);
    /* block 3: amax 4 (a power of two) -> s = 1 */
    x[96] = 4;
    x[97] = -3;
    x[98] = 1.5f;
    x[99] = 0.6875f;
    /* block 4: amax 13 -> p = 13/6 -> s = 4 */
    x[128] = 13;
    x[129] = 5;                 /* 1.25 -> 1 -> 4 */
    x[130] = 7;                 /* 1.75 -> 2 -> 8 */
    x[131] = -11;               /* 2.75 -> 3 -> 12 */
    dsv4_fp4_sim(x, 160, 32);
    for (int i = 0; i < 11; i++)
        CHECK(same_bits(x[i], w0[i]));
    int nz = 0;
    for (int i = 11; i < 64; i++)
        nz += !same_bits(x[i], 0.0f);
    CHECK_EQ_INT(nz, 0);
    CHECK(x[64] == ldexpf(1.0f, -127));
    CHECK(x[65] == ldexpf(1.0f, -126));
    CHECK(same_bits(x[66], -0.0f));
    CHECK(x[96] == 4 && x[97] == -3 && x[98] == 1.5f && x[99] == 0.5f);
    CHECK(x[128] == 12 && x[129] == 4 && x[130] == 8 && x[131] == -12);

    /* amax 12 -> p = 12*f32(1/6) rounds to 2.0 -> s = 2 (python) */
    float y[6] = { 12, 5, 7, 9, 11, -3 };         /* /2: 2.5->2, 3.5->4, 4.5->4, 5.5->6 */
    dsv4_fp4_sim(y, 6, 32);
    CHECK(y[0] == 12 && y[1] == 4 && y[2] == 8 && y[3] == 8 && y[4] == 12 && y[5] == -3);
}

TEST(fp4_sim_random)
{
    static const int eb[4] = { 124, 60, 130, 110 };
    float x[128];
    lcg_state = 3;
    for (int i = 0; i < 128; i++)
        x[i] = rand_bf16(eb[i / 32], 6);
    dsv4_fp4_sim(x, 128, 32);
    CHECK(fnv_floats(FNV_INIT, x, 128) == 0xc7e8148b8a3432a9ull);
}

/* ---- Hadamard --------------------------------------------------------- */

TEST(hadamard_small)
{
    float a[4] = { 1, 2, 3, 4 };
    dsv4_hadamard_bf16(a, 4);                      /* H4 x = 10,-2,-4,0; x 1/2 */
    CHECK(a[0] == 5 && a[1] == -1 && a[2] == -2 && a[3] == 0);

    float b[2] = { 1, 2 };                         /* f32(2^-0.5) = 0x1.6a09e6p-1 */
    dsv4_hadamard_bf16(b, 2);
    CHECK(b[0] == 0x1.1p+1f && b[1] == -0x1.6ap-1f);   /* python */

    float c[1] = { 3.5f };
    dsv4_hadamard_bf16(c, 1);
    CHECK(c[0] == 3.5f);

    float d[8] = { 1, 0, 0, 0, 0, 0, 0, 0 };
    dsv4_hadamard_bf16(d, 8);
    for (int i = 0; i < 8; i++)
        CHECK(d[i] == 0x1.6ap-2f);                 /* bf16(f32(8^-0.5)) = 0x3eb5 */

    /* a basis vector picks out row j of H: (-1)^popcount(i & j) / sqrt(128) */
    float e[128] = { 0 };
    e[37] = 1;
    dsv4_hadamard_bf16(e, 128);
    int bad = 0;
    for (int i = 0; i < 128; i++)
        bad += e[i] != (__builtin_popcount(i & 37) & 1 ? -0x1.6ap-4f : 0x1.6ap-4f);
    CHECK_EQ_INT(bad, 0);

    float f[6] = { 1, 2, 3, 4, 5, 6 };             /* not a power of two: untouched */
    dsv4_hadamard_bf16(f, 6);
    CHECK(f[0] == 1 && f[5] == 6);
}

TEST(hadamard_involution)
{
    /* H H = n I, so two scaled transforms give x back up to the two bf16
     * roundings (each relative 2^-9 per element; H/sqrt(n) is orthogonal). */
    float e[4] = { 1, 0, 0, 0 };
    dsv4_hadamard_bf16(e, 4);
    dsv4_hadamard_bf16(e, 4);
    CHECK(e[0] == 1 && e[1] == 0 && e[2] == 0 && e[3] == 0);

    for (int n = 2; n <= 1024; n *= 2) {
        float x[1024], y[1024];
        lcg_state = 16 + (uint64_t)n;
        for (int i = 0; i < n; i++)
            x[i] = y[i] = rand_bf16(120, 10);
        dsv4_hadamard_bf16(y, n);
        dsv4_hadamard_bf16(y, n);
        double err = 0, norm = 0;
        for (int i = 0; i < n; i++) {
            err += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
            norm += (double)x[i] * x[i];
        }
        CHECK(sqrt(err) <= ldexp(1.0, -8) * sqrt(norm));
    }
}

TEST(hadamard_reference_order)
{
    /* n = 128 with x[0] = x[64] = 2^20 on top of values near 1: the big parts
     * cancel in outputs 64..127, so those depend on the order in which the f32
     * sums are formed.  The python model emulates fast_hadamard_transform
     * (16 threads x 8 elements: in-thread strides 1,2,4, then warp shuffles);
     * a butterfly with descending strides differs in 43 of the 128 outputs. */
    float x[128];
    lcg_state = 4;
    for (int i = 0; i < 128; i++)
        x[i] = rand_bf16(120, 10);
    x[0] = x[64] = 0x1p20f;
    dsv4_hadamard_bf16(x, 128);
    static const uint16_t want[8] = { 0xc023, 0xbff2, 0x3fb5, 0x3f73, 0x3f1e, 0x3d4c, 0xbf40, 0x4045 };
    for (int i = 0; i < 8; i++)
        CHECK_EQ_INT(dsv4_f32_to_bf16(x[64 + i]), want[i]);
    CHECK(fnv_floats(FNV_INIT, x, 128) == 0x17934ad325c95ffcull);
    int bad = 0;
    for (int i = 0; i < 128; i++)
        bad += dsv4_round_bf16(x[i]) != x[i];
    CHECK_EQ_INT(bad, 0);
}

TEST_MAIN(T(e4m3_decode_all), T(e4m3_roundtrip), T(e4m3_ties_to_even), T(e4m3_saturation_nan),
          T(e4m3_random_vs_bruteforce), T(e8m0), T(e2m1_codes), T(e2m1_ties_and_saturation),
          T(bf16_rne), T(bf16_random_vs_bruteforce), T(pow2_ceil), T(dequant_fp8_rows),
          T(dequant_fp4_nibble_order), T(dequant_fp4_rows), T(act_quant_handcrafted),
          T(act_quant_random), T(fp8_sim_handcrafted), T(fp8_sim_random), T(fp4_sim_handcrafted),
          T(fp4_sim_random), T(hadamard_small), T(hadamard_involution), T(hadamard_reference_order))
