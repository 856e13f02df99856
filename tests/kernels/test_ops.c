/* GPU per-row and element-wise ops (kernels/ops.cu, lib/gpu_ops.h) against
 * their CPU references (lib/ops.c, codec.c, kvstate.c, engine.c, attn.c).
 *
 * Bounds: bit-exact (kt_mismatch == 0, any NaN matching any NaN) for every
 * op except RoPE, whose cos/sin may differ from glibc's cosf/sinf by an f32
 * ulp: there every output must be within 1 bf16 ulp of the CPU's and at most
 * 1 + n/10^4 of n values may differ at all (0 measured so far).  Inputs are random f32 (not
 * bf16-rounded, so the order of every sum shows), with sizes that are 1,
 * odd, not multiples of the block/vector sizes, and model-like (Flash: dim
 * 4096, hc*dim 16384, head_dim 512, q_lora_rank 1024, index_head_dim 128),
 * plus NaN/inf/zero rows where an op defines them.  Output buffers are
 * poisoned; argument errors are checked.
 *
 * Exits 77 without a GPU or in a CPU-only build. */
#include "ktest.h"

#if DSV4_HAVE_CUDA

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "gpu_ops.h"
#include "kvstate.h"
#include "ops.h"

static dsv4_err kerr = DSV4_ERR_INIT;

static float *fdup(const float *x, int64_t n)
{
    float *p = kt_malloc((size_t)n * sizeof *p);
    memcpy(p, x, (size_t)n * sizeof *p);
    return p;
}

static void check_exact(const char *what, const float *got, const float *ref, int64_t n)
{
    int64_t bad = kt_mismatch(got, ref, n);
    printf("  %-44s %lld values, %lld differ (bound 0)\n", what, (long long)n, (long long)bad);
    if (bad) {
        test_failed_checks++;
        test_cur_failed = 1;
    }
}

/* rows of random f32 with a per-row scale spanning many binades */
static void fill_rows(kt_rng *r, float *x, int64_t rows, int64_t n)
{
    for (int64_t i = 0; i < rows; i++) {
        float sd = ldexpf(1.0f, (int)(kt_u32(r) % 40) - 20);
        kt_fill_norm(r, x + i * n, n, sd);
    }
}

/* ---- norms ----------------------------------------------------------------- */

static void rmsnorm_case(kt_rng *r, int64_t rows, int64_t n, int alias)
{
    float *x = kt_malloc((size_t)(rows * n) * sizeof *x), *w = kt_malloc((size_t)n * sizeof *w);
    fill_rows(r, x, rows, n);
    kt_fill_norm(r, w, n, 1.0f);
    if (rows > 2) {   /* a zero row (mean 0 -> rsqrt(eps)) and one with a NaN */
        memset(x + n, 0, (size_t)n * sizeof *x);
        x[2 * n + n / 2] = NAN;
    }
    float *ref = kt_malloc((size_t)(rows * n) * sizeof *ref), *got = kt_malloc((size_t)(rows * n) * sizeof *got);
    float *ms = kt_malloc((size_t)rows * sizeof *ms), *gms = kt_malloc((size_t)rows * sizeof *gms);
    for (int64_t i = 0; i < rows; i++) {
        dsv4_rmsnorm(x + i * n, w, n, 1e-6f, ref + i * n);
        ms[i] = dsv4_mean_sq(x + i * n, n);
    }
    float *dx = kt_dev(x, (size_t)(rows * n) * 4), *dw = kt_dev(w, (size_t)n * 4);
    float *dy = alias ? dx : kt_dev(NULL, (size_t)(rows * n) * 4), *dm = kt_dev(NULL, (size_t)rows * 4);
    KT_OK(dsv4_cu_mean_sq(dx, rows, n, dm, NULL, &kerr), &kerr);
    KT_OK(dsv4_cu_rmsnorm(dx, dw, rows, n, 1e-6f, dy, NULL, &kerr), &kerr);
    char what[96];
    if (!kt_get(gms, dm, (size_t)rows * 4)) {
        snprintf(what, sizeof what, "mean_sq %lld x %lld", (long long)rows, (long long)n);
        check_exact(what, gms, ms, rows);
    }
    if (!kt_get(got, dy, (size_t)(rows * n) * 4)) {
        snprintf(what, sizeof what, "rmsnorm %lld x %lld%s", (long long)rows, (long long)n, alias ? " in place" : "");
        check_exact(what, got, ref, rows * n);
    }
    dsv4_cu_free(dx);
    dsv4_cu_free(dw);
    if (!alias)
        dsv4_cu_free(dy);
    dsv4_cu_free(dm);
    free(x), free(w), free(ref), free(got), free(ms), free(gms);
}

TEST(rmsnorm)
{
    kt_rng r = kt_seed(1);
    /* 1..255: scalar/vector tails only; 256+: groups; 8192+: the second
     * cascade level; 131072+: the third */
    int64_t ns[] = { 1, 7, 8, 31, 100, 255, 256, 257, 300, 511, 1000, 1024, 4096, 4100, 7168, 8200, 16384, 28672 };
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
        rmsnorm_case(&r, ns[i] >= 4096 && ktest_emulated() ? 16 : 64, ns[i], (int)(i & 1));
    rmsnorm_case(&r, 8, 140000, 0);
    rmsnorm_case(&r, 1, DSV4_CU_NORM_MAX_N, 1);
    rmsnorm_case(&r, ktest_emulated() ? 8 : 256, 4096, 1);
}

TEST(head_rms)
{
    kt_rng r = kt_seed(2);
    int64_t ns[] = { 1, 33, 128, 512, 1000 };
    for (size_t c = 0; c < sizeof ns / sizeof *ns; c++) {
        int64_t n = ns[c], rows = n == 512 ? (ktest_emulated() ? 64 : 1024) : 7;
        float *x = kt_malloc((size_t)(rows * n) * 4), *ref = kt_malloc((size_t)(rows * n) * 4);
        float *got = kt_malloc((size_t)(rows * n) * 4);
        fill_rows(&r, x, rows, n);
        for (int64_t i = 0; i < rows * n; i++)
            x[i] = dsv4_round_bf16(x[i]);   /* q is bf16 in the model */
        memcpy(ref, x, (size_t)(rows * n) * 4);
        for (int64_t i = 0; i < rows; i++)
            dsv4_head_rms_bf16(ref + i * n, n, 1e-6f);
        float *dx = kt_dev(x, (size_t)(rows * n) * 4);
        KT_OK(dsv4_cu_head_rms_bf16(dx, rows, n, 1e-6f, NULL, &kerr), &kerr);
        if (!kt_get(got, dx, (size_t)(rows * n) * 4)) {
            char what[64];
            snprintf(what, sizeof what, "head_rms_bf16 %lld x %lld", (long long)rows, (long long)n);
            check_exact(what, got, ref, rows * n);
        }
        dsv4_cu_free(dx);
        free(x), free(ref), free(got);
    }
}

/* ---- RoPE ------------------------------------------------------------------ */

/* got within 1 bf16 ulp of ref, elementwise, and few values differing at all */
static void check_bf16_ulp(const char *what, const float *got, const float *ref, int64_t n)
{
    int64_t diff = 0, bad = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!memcmp(&got[i], &ref[i], 4))
            continue;
        diff++;
        double ulp = ldexp(1.0, ilogb(ref[i] == 0 ? 1e-38f : ref[i]) - 7);
        if (!(fabs((double)got[i] - ref[i]) <= ulp)) {
            if (bad < 5)
                fprintf(stderr, "  [%lld] got %.9g ref %.9g\n", (long long)i, got[i], ref[i]);
            bad++;
        }
    }
    /* a flip of an f32 cos/sin ulp rarely survives the bf16 rounding: more
     * than 1 in 10^4 differing values means a real error (a position off by
     * one gives ~1 in 100) */
    int64_t allow = 1 + n / 10000;
    printf("  %-44s %lld values, %lld differ by 1 bf16 ulp (bound %lld), %lld more (bound 0)\n", what, (long long)n,
           (long long)(diff - bad), (long long)allow, (long long)bad);
    if (bad || diff > allow) {
        test_failed_checks++;
        test_cur_failed = 1;
    }
}

static void rope_case(kt_rng *r, int64_t M, int64_t nh, int64_t hd, int64_t rd, int yarn, int64_t pos0, int use_pos,
                      int inverse)
{
    float *freqs = kt_malloc((size_t)(rd / 2 + 1) * 4);
    if (yarn)
        dsv4_rope_freqs(freqs, rd, 160000.0, 1, 16.0, 65536.0, 32.0, 1.0);
    else
        dsv4_rope_freqs(freqs, rd, 10000.0, 0, 1, 0, 0, 0);
    int64_t n = M * nh * hd;
    float *x = kt_malloc((size_t)n * 4), *ref, *got = kt_malloc((size_t)n * 4);
    int64_t *pos = kt_malloc((size_t)M * 8);
    kt_fill_norm(r, x, n, 1.0f);
    for (int64_t i = 0; i < n; i++)
        x[i] = dsv4_round_bf16(x[i]);
    for (int64_t m = 0; m < M; m++)
        pos[m] = use_pos ? (int64_t)(kt_u32(r) % 1048576) / 4 * 4 : pos0 + m;
    ref = fdup(x, n);
    for (int64_t m = 0; m < M; m++)
        for (int64_t h = 0; h < nh; h++)
            dsv4_rope(ref + (m * nh + h) * hd + hd - rd, rd, freqs, pos[m], inverse);
    float *dx = kt_dev(x, (size_t)n * 4), *df = kt_dev(freqs, (size_t)(rd / 2 + 1) * 4);
    int64_t *dp = kt_dev(pos, (size_t)M * 8);
    KT_OK(dsv4_cu_rope(dx, M, nh, hd, rd, df, pos0, use_pos ? dp : NULL, inverse, NULL, &kerr), &kerr);
    if (!kt_get(got, dx, (size_t)n * 4)) {
        char what[96];
        snprintf(what, sizeof what, "rope %lldx%lldx%lld rd %lld%s%s%s", (long long)M, (long long)nh, (long long)hd,
                 (long long)rd, yarn ? " yarn" : "", use_pos ? " positions" : "", inverse ? " inverse" : "");
        check_bf16_ulp(what, got, ref, n);
    }
    dsv4_cu_free(dx), dsv4_cu_free(df), dsv4_cu_free(dp);
    free(freqs), free(x), free(ref), free(got), free(pos);
}

TEST(rope)
{
    kt_rng r = kt_seed(3);
    int emu = ktest_emulated();
    rope_case(&r, 1, 1, 64, 64, 0, 0, 0, 0);
    rope_case(&r, 5, 3, 10, 6, 1, 7, 0, 0);
    rope_case(&r, emu ? 8 : 64, emu ? 16 : 64, 512, 64, 1, 1000, 0, 0);      /* q heads */
    rope_case(&r, emu ? 8 : 64, emu ? 16 : 64, 512, 64, 0, 123456, 0, 1);    /* attention output */
    rope_case(&r, 37, 1, 512, 64, 1, 1048000, 0, 0);                         /* kv, late positions */
    rope_case(&r, 33, 1, 128, 64, 1, 0, 1, 0);                               /* compressor entries at j*r */
    rope_case(&r, 20, 4, 128, 64, 1, 5, 0, 0);                               /* indexer q */
    rope_case(&r, 3, 11, 20, 16, 1, 0, 1, 1);                               /* heads not a multiple of 8 */
}

/* ---- sims and Hadamard -------------------------------------------------------- */

static void sim_case(kt_rng *r, int fp4, int64_t rows, int64_t n, int block)
{
    float *x = kt_malloc((size_t)(rows * n) * 4), *got = kt_malloc((size_t)(rows * n) * 4);
    fill_rows(r, x, rows, n);
    if (rows > 3) {   /* a zero row, a NaN, an inf, a huge value */
        memset(x, 0, (size_t)n * 4);
        x[n + n / 3] = NAN;
        x[2 * n] = INFINITY;
        x[3 * n + n - 1] = 3e38f;
    }
    if (rows > 5) {   /* blocks below the scale floors: FP4 6 * 2^-126, FP8 1e-4 */
        for (int64_t i = 0; i < n; i++) {
            x[4 * n + i] = kt_unif(r, -1e-37f, 1e-37f);
            x[5 * n + i] = kt_unif(r, -2e-4f, 2e-4f);
        }
    }
    float *ref = fdup(x, rows * n);
    for (int64_t i = 0; i < rows; i++)
        (fp4 ? dsv4_fp4_sim : dsv4_fp8_sim)(ref + i * n, n, block);
    float *dx = kt_dev(x, (size_t)(rows * n) * 4);
    KT_OK((fp4 ? dsv4_cu_fp4_sim : dsv4_cu_fp8_sim)(dx, rows, n, block, NULL, &kerr), &kerr);
    if (!kt_get(got, dx, (size_t)(rows * n) * 4)) {
        char what[64];
        snprintf(what, sizeof what, "%s_sim %lld x %lld block %d", fp4 ? "fp4" : "fp8", (long long)rows, (long long)n,
                 block);
        check_exact(what, got, ref, rows * n);
    }
    dsv4_cu_free(dx);
    free(x), free(got), free(ref);
}

TEST(sims)
{
    kt_rng r = kt_seed(4);
    for (int fp4 = 0; fp4 < 2; fp4++) {
        sim_case(&r, fp4, 1, 1, 32);
        sim_case(&r, fp4, 9, 100, 32);
        sim_case(&r, fp4, 9, 448, 64);
        sim_case(&r, fp4, 6, 1000, 0);
        sim_case(&r, fp4, 7, 130, 128);
        sim_case(&r, fp4, ktest_emulated() ? 64 : 4096, 128, 32);   /* indexer q heads */
    }
}

TEST(hadamard)
{
    kt_rng r = kt_seed(5);
    int ns[] = { 1, 2, 4, 32, 64, 128, 512, 8192 };
    for (int rs = 0; rs < 2; rs++)
        for (size_t c = 0; c < sizeof ns / sizeof *ns; c++) {
            int n = ns[c];
            int64_t rows = n == 128 ? (ktest_emulated() ? 64 : 4096) : n == 8192 ? 2 : 5;
            float *x = kt_malloc((size_t)(rows * n) * 4), *got = kt_malloc((size_t)(rows * n) * 4);
            fill_rows(&r, x, rows, n);
            float *ref = fdup(x, rows * n);
            for (int64_t i = 0; i < rows; i++)
                (rs ? dsv4_hadamard_bf16_2r : dsv4_hadamard_bf16)(ref + i * n, n);
            float *dx = kt_dev(x, (size_t)(rows * n) * 4);
            KT_OK(dsv4_cu_hadamard(dx, rows, n, rs, NULL, &kerr), &kerr);
            if (!kt_get(got, dx, (size_t)(rows * n) * 4)) {
                char what[64];
                snprintf(what, sizeof what, "hadamard%s %lld x %d", rs ? "_2r" : "", (long long)rows, n);
                check_exact(what, got, ref, rows * n);
            }
            dsv4_cu_free(dx);
            free(x), free(got), free(ref);
        }
}

/* ---- KV vectors and indexer keys ----------------------------------------------- */

static void kv_case(kt_rng *r, int compact, int hd, int rd, int ihd, int64_t rows, int extra_stride)
{
    dsv4_kvstate s;
    memset(&s, 0, sizeof s);
    s.compact = compact;
    s.head_dim = hd;
    s.rope_dim = rd;
    s.index_head_dim = ihd;
    int64_t nd = hd - rd;
    if (compact) {
        s.entry_bytes = (size_t)(2 * rd + nd + (nd + 63) / 64 + 7) / 8 * 8;
        s.ikey_bytes = (size_t)(ihd / 2 + (ihd + 31) / 32);
    } else {
        s.entry_bytes = (size_t)(2 * hd);
        s.ikey_bytes = (size_t)(2 * ihd);
    }
    dsv4_cu_kv_layout L = { compact, hd, rd, ihd, (int)s.entry_bytes, (int)s.ikey_bytes };
    int64_t es = (int64_t)s.entry_bytes + extra_stride, ks = (int64_t)s.ikey_bytes + extra_stride;
    float *x = kt_malloc((size_t)(rows * hd) * 4), *k = kt_malloc((size_t)(rows * ihd) * 4);
    fill_rows(r, x, rows, hd);
    fill_rows(r, k, rows, ihd);
    for (int64_t i = 0; i < rows * hd; i++)   /* KV vectors are bf16 when packed */
        x[i] = dsv4_round_bf16(x[i]);
    if (rows > 2 && hd > 3) {
        x[hd + 3] = NAN;
        memset(k + ihd, 0, (size_t)ihd * 4);
        k[2 * ihd + 1] = NAN;
        for (int64_t i = 0; i < ihd; i++)   /* below the FP4 scale floor 6 * 2^-126 */
            k[i] = kt_unif(r, -1e-37f, 1e-37f);
    }
    float *xr = fdup(x, rows * hd), *kr = fdup(k, rows * ihd);
    uint8_t *eref = kt_malloc((size_t)(rows * es)), *kref = kt_malloc((size_t)(rows * ks));
    uint8_t *egot = kt_malloc((size_t)(rows * es)), *kgot = kt_malloc((size_t)(rows * ks));
    memset(eref, 0xff, (size_t)(rows * es));
    memset(kref, 0xff, (size_t)(rows * ks));
    for (int64_t i = 0; i < rows; i++) {
        dsv4_kv_pack(&s, xr + i * hd, eref + i * es);
        dsv4_ikey_pack(&s, kr + i * ihd, kref + i * ks);
    }
    float *dx = kt_dev(x, (size_t)(rows * hd) * 4), *dk = kt_dev(k, (size_t)(rows * ihd) * 4);
    uint8_t *de = kt_dev(NULL, (size_t)(rows * es)), *dke = kt_dev(NULL, (size_t)(rows * ks));
    KT_OK(dsv4_cu_kv_pack(dx, rows, &L, de, es, NULL, &kerr), &kerr);
    KT_OK(dsv4_cu_ikey_pack(dk, rows, &L, dke, ks, NULL, &kerr), &kerr);
    float *got = kt_malloc((size_t)(rows * (hd > ihd ? hd : ihd)) * 4);
    char what[96];
    const char *lay = compact ? "compact" : "bf16";
    if (!kt_get(got, dx, (size_t)(rows * hd) * 4)) {
        snprintf(what, sizeof what, "kv_pack %s %lld x %d/%d (x)", lay, (long long)rows, hd, rd);
        check_exact(what, got, xr, rows * hd);
    }
    if (!kt_get(egot, de, (size_t)(rows * es))) {
        int64_t bad = 0;
        for (int64_t i = 0; i < rows; i++)
            bad += memcmp(egot + i * es, eref + i * es, s.entry_bytes) != 0;
        printf("  kv_pack %s %lld x %d/%d: %lld entries differ (bound 0)\n", lay, (long long)rows, hd, rd,
               (long long)bad);
        if (bad)
            test_failed_checks++, test_cur_failed = 1;
    }
    if (!kt_get(got, dk, (size_t)(rows * ihd) * 4)) {
        snprintf(what, sizeof what, "ikey_pack %s %lld x %d (x)", lay, (long long)rows, ihd);
        check_exact(what, got, kr, rows * ihd);
    }
    if (!kt_get(kgot, dke, (size_t)(rows * ks))) {
        int64_t bad = 0;
        for (int64_t i = 0; i < rows; i++)
            bad += memcmp(kgot + i * ks, kref + i * ks, s.ikey_bytes) != 0;
        printf("  ikey_pack %s %lld x %d: %lld keys differ (bound 0)\n", lay, (long long)rows, ihd, (long long)bad);
        if (bad)
            test_failed_checks++, test_cur_failed = 1;
    }
    /* unpack the CPU's bytes (random filler in the padding) */
    float *uref = kt_malloc((size_t)(rows * hd) * 4), *ukref = kt_malloc((size_t)(rows * ihd) * 4);
    for (int64_t i = 0; i < rows; i++) {
        dsv4_kv_unpack(&s, eref + i * es, uref + i * hd);
        dsv4_ikey_unpack(&s, kref + i * ks, ukref + i * ihd);
    }
    uint8_t *de2 = kt_dev(eref, (size_t)(rows * es)), *dk2 = kt_dev(kref, (size_t)(rows * ks));
    float *du = kt_dev(NULL, (size_t)(rows * hd) * 4), *duk = kt_dev(NULL, (size_t)(rows * ihd) * 4);
    KT_OK(dsv4_cu_kv_unpack(de2, es, rows, &L, du, NULL, &kerr), &kerr);
    KT_OK(dsv4_cu_ikey_unpack(dk2, ks, rows, &L, duk, NULL, &kerr), &kerr);
    if (!kt_get(got, du, (size_t)(rows * hd) * 4)) {
        snprintf(what, sizeof what, "kv_unpack %s %lld x %d/%d", lay, (long long)rows, hd, rd);
        check_exact(what, got, uref, rows * hd);
    }
    if (!kt_get(got, duk, (size_t)(rows * ihd) * 4)) {
        snprintf(what, sizeof what, "ikey_unpack %s %lld x %d", lay, (long long)rows, ihd);
        check_exact(what, got, ukref, rows * ihd);
    }
    dsv4_cu_free(dx), dsv4_cu_free(dk), dsv4_cu_free(de), dsv4_cu_free(dke);
    dsv4_cu_free(de2), dsv4_cu_free(dk2), dsv4_cu_free(du), dsv4_cu_free(duk);
    free(x), free(k), free(xr), free(kr), free(eref), free(kref), free(egot), free(kgot), free(got);
    free(uref), free(ukref);
}

TEST(kv_codec)
{
    kt_rng r = kt_seed(6);
    int64_t big = ktest_emulated() ? 40 : 2048;
    for (int compact = 0; compact < 2; compact++) {
        kv_case(&r, compact, 512, 64, 128, big, 0);      /* the model's layout */
        kv_case(&r, compact, 512, 64, 128, 3, 24);       /* strided rows */
        kv_case(&r, compact, 100, 10, 50, 5, 0);         /* odd sizes: partial 64- and 32-blocks */
        kv_case(&r, compact, 1, 0, 2, 3, 1);
        kv_case(&r, compact, 64, 64, 34, 1, 0);
    }
}

/* ---- embedding and element-wise glue ------------------------------------------------ */

TEST(embed)
{
    kt_rng r = kt_seed(7);
    int64_t vocab = 1000, D = ktest_emulated() ? 300 : 4096, M = 17, hc = 4;
    uint32_t tok[17];
    for (int64_t m = 0; m < M; m++)
        tok[m] = kt_u32(&r) % (uint32_t)vocab;
    tok[3] = 0, tok[4] = (uint32_t)vocab - 1;
    for (int f32 = 0; f32 < 2; f32++) {
        size_t wb = (size_t)(vocab * D) * (f32 ? 4 : 2);
        uint8_t *w = kt_malloc(wb);
        kt_fill_bytes(&r, w, (int64_t)wb);
        dsv4_wt W = { f32 ? DSV4_WT_F32 : DSV4_WT_BF16, vocab, D, w, NULL };
        float *ref = kt_malloc((size_t)(M * hc * D) * 4), *got = kt_malloc((size_t)(M * hc * D) * 4);
        for (int64_t m = 0; m < M; m++) {
            dsv4_wt_row(&W, tok[m], ref + m * hc * D);
            for (int64_t c = 1; c < hc; c++)
                memcpy(ref + (m * hc + c) * D, ref + m * hc * D, (size_t)D * 4);
        }
        void *dw = kt_dev(w, wb);
        uint32_t *dt = kt_dev(tok, sizeof tok);
        float *dout = kt_dev(NULL, (size_t)(M * hc * D) * 4);
        int32_t zero = 0, flag = -1, *dbad = kt_dev(&zero, 4);
        KT_OK(dsv4_cu_embed(dt, M, dw, f32 ? DSV4_CU_EMBED_F32 : DSV4_CU_EMBED_BF16, vocab, D, hc, dout, dbad, NULL,
                            &kerr), &kerr);
        if (!kt_get(got, dout, (size_t)(M * hc * D) * 4) && !kt_get(&flag, dbad, 4)) {
            check_exact(f32 ? "embed f32 x4 copies" : "embed bf16 x4 copies", got, ref, M * hc * D);
            CHECK(flag == 0);
        }
        /* out-of-range tokens: NaN rows, the flag set, nothing read out of bounds */
        uint32_t badtok[3] = { 5, (uint32_t)vocab, 0xffffffffu };
        uint32_t *dbt = kt_dev(badtok, sizeof badtok);
        KT_OK(dsv4_cu_embed(dbt, 3, dw, f32, vocab, D, 1, dout, dbad, NULL, &kerr), &kerr);
        if (!kt_get(got, dout, (size_t)(3 * D) * 4) && !kt_get(&flag, dbad, 4)) {
            CHECK(flag == 1);
            dsv4_wt_row(&W, 5, ref);
            CHECK(kt_mismatch(got, ref, D) == 0);
            int nan_ok = 1;
            for (int64_t i = D; i < 3 * D; i++)
                nan_ok &= isnan(got[i]) != 0;
            CHECK(nan_ok);
        }
        dsv4_cu_free(dw), dsv4_cu_free(dt), dsv4_cu_free(dout), dsv4_cu_free(dbad), dsv4_cu_free(dbt);
        free(w), free(ref), free(got);
    }
}

TEST(elementwise)
{
    kt_rng r = kt_seed(8);
    int64_t n = ktest_emulated() ? 30001 : 3000001;
    float *x = kt_malloc((size_t)n * 4), *ref = kt_malloc((size_t)n * 4), *got = kt_malloc((size_t)n * 4);
    fill_rows(&r, x, 1, n);
    x[0] = NAN, x[1] = INFINITY, x[2] = -0.0f, x[3] = 3.4e38f, x[4] = 1e-40f;
    float *dx = kt_dev(x, (size_t)n * 4);
    for (int64_t i = 0; i < n; i++)
        ref[i] = dsv4_round_bf16(x[i]);
    KT_OK(dsv4_cu_round_bf16(dx, n, NULL, &kerr), &kerr);
    if (!kt_get(got, dx, (size_t)n * 4))
        check_exact("round_bf16", got, ref, n);
    float ws = (float)(pow(128.0, -0.5) * pow(64.0, -0.5));
    kt_poison(dx, (size_t)n * 4);
    dsv4_cu_upload(dx, x, (size_t)n * 4, &kerr);
    for (int64_t i = 0; i < n; i++)
        ref[i] = dsv4_round_bf16(x[i] * ws);
    KT_OK(dsv4_cu_scale_round_bf16(dx, n, ws, NULL, &kerr), &kerr);
    if (!kt_get(got, dx, (size_t)n * 4))
        check_exact("scale_round_bf16", got, ref, n);
    dsv4_cu_free(dx);

    /* ape add: g[M, cd] += ape[(pos0 + m) % r] */
    int64_t M = 37, cd = 1024, rr = 4, pos0 = 6;
    float *g = kt_malloc((size_t)(M * cd) * 4), *a = kt_malloc((size_t)(rr * cd) * 4);
    fill_rows(&r, g, M, cd);
    fill_rows(&r, a, rr, cd);
    float *gref = fdup(g, M * cd), *ggot = kt_malloc((size_t)(M * cd) * 4);
    for (int64_t m = 0; m < M; m++)
        for (int64_t i = 0; i < cd; i++)
            gref[m * cd + i] += a[((pos0 + m) % rr) * cd + i];
    float *dg = kt_dev(g, (size_t)(M * cd) * 4), *da = kt_dev(a, (size_t)(rr * cd) * 4);
    KT_OK(dsv4_cu_add_rows(dg, M, cd, da, rr, pos0, NULL, &kerr), &kerr);
    if (!kt_get(ggot, dg, (size_t)(M * cd) * 4))
        check_exact("add_rows (ape, r 4)", ggot, gref, M * cd);

    /* MTP: X[m, c, :] = bf16(y[m] + X[m, c]) */
    int64_t hc = 4, D = 300;
    float *X = kt_malloc((size_t)(M * hc * D) * 4), *y = kt_malloc((size_t)(M * D) * 4);
    fill_rows(&r, X, M * hc, D);
    fill_rows(&r, y, M, D);
    float *Xref = fdup(X, M * hc * D), *Xgot = kt_malloc((size_t)(M * hc * D) * 4);
    for (int64_t m = 0; m < M; m++)
        for (int64_t c = 0; c < hc; c++)
            for (int64_t i = 0; i < D; i++)
                Xref[(m * hc + c) * D + i] = dsv4_round_bf16(y[m * D + i] + Xref[(m * hc + c) * D + i]);
    float *dX = kt_dev(X, (size_t)(M * hc * D) * 4), *dy = kt_dev(y, (size_t)(M * D) * 4);
    KT_OK(dsv4_cu_add_bcast_bf16(dX, dy, M, hc, D, NULL, &kerr), &kerr);
    if (!kt_get(Xgot, dX, (size_t)(M * hc * D) * 4))
        check_exact("add_bcast_bf16 (MTP streams)", Xgot, Xref, M * hc * D);
    dsv4_cu_free(dg), dsv4_cu_free(da), dsv4_cu_free(dX), dsv4_cu_free(dy);
    free(x), free(ref), free(got), free(g), free(a), free(gref), free(ggot), free(X), free(y), free(Xref), free(Xgot);
}

/* ---- argument errors ------------------------------------------------------------ */

TEST(errors)
{
    dsv4_err e = DSV4_ERR_INIT;
    float *d = kt_dev(NULL, 4096);
    uint8_t *b = kt_dev(NULL, 4096);
    dsv4_cu_kv_layout L = { 1, 512, 64, 128, 584, 68 };
    CHECK(dsv4_cu_rmsnorm(d, d, 1, 0, 1e-6f, d, NULL, &e) == DSV4_E_INVALID);
    CHECK(strstr(e.msg, "dsv4_cu_rmsnorm") != NULL);
    CHECK(dsv4_cu_rmsnorm(d, d, -1, 8, 1e-6f, d, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_rmsnorm(d, NULL, 1, 8, 1e-6f, d, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_rmsnorm(d, d, 1, DSV4_CU_NORM_MAX_N + 1, 1e-6f, d, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_rmsnorm(NULL, NULL, 0, 8, 1e-6f, NULL, NULL, &e) == 0);   /* nothing to do */
    CHECK(dsv4_cu_mean_sq(d, 1, 8, NULL, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_head_rms_bf16(d, 1, 0, 1e-6f, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_rope(d, 1, 1, 64, 63, d, 0, NULL, 0, NULL, &e) == DSV4_E_INVALID);
    CHECK(strstr(e.msg, "rope_dim") != NULL);
    CHECK(dsv4_cu_rope(d, 1, 1, 64, 128, d, 0, NULL, 0, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_rope(d, 1, 0, 64, 64, d, 0, NULL, 0, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_rope(d, 1, 1, 64, 64, d, -1, NULL, 0, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_rope(d, 1, 1, 64, 64, NULL, 0, NULL, 0, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_fp8_sim(d, 1, 0, 64, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_fp4_sim(NULL, 1, 8, 32, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_hadamard(d, 1, 96, 0, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_hadamard(d, 1, 16384, 0, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_kv_pack(d, 1, &L, b, 583, NULL, &e) == DSV4_E_INVALID);      /* stride < entry */
    CHECK(strstr(e.msg, "stride") != NULL);
    CHECK(dsv4_cu_kv_pack(d, 1, NULL, b, 584, NULL, &e) == DSV4_E_INVALID);
    L.entry_bytes = 500;
    CHECK(dsv4_cu_kv_pack(d, 1, &L, b, 584, NULL, &e) == DSV4_E_INVALID);      /* entry too small */
    L.entry_bytes = 584;
    L.rope_dim = 600;
    CHECK(dsv4_cu_kv_unpack(b, 584, 1, &L, d, NULL, &e) == DSV4_E_INVALID);
    L.rope_dim = 64;
    L.index_head_dim = 127;
    CHECK(dsv4_cu_ikey_pack(d, 1, &L, b, 68, NULL, &e) == DSV4_E_INVALID);
    L.index_head_dim = 128;
    CHECK(dsv4_cu_ikey_unpack(b, 67, 1, &L, d, NULL, &e) == DSV4_E_INVALID);
    L.compact = 2;
    CHECK(dsv4_cu_kv_pack(d, 1, &L, b, 584, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_embed((uint32_t *)b, 1, d, 7, 10, 4, 1, d, NULL, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_embed((uint32_t *)b, 1, d, DSV4_CU_EMBED_BF16, 10, 4, 0, d, NULL, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_embed((uint32_t *)b, 1, b + 1, DSV4_CU_EMBED_BF16, 10, 4, 1, d, NULL, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_round_bf16(NULL, 5, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_scale_round_bf16(d, -1, 1.0f, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_add_rows(d, 1, 4, d, 0, 0, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_add_rows(d, 1, 4, d, 4, -3, NULL, &e) == DSV4_E_INVALID);
    CHECK(dsv4_cu_add_bcast_bf16(d, d, 1, 0, 4, NULL, &e) == DSV4_E_INVALID);
    dsv4_cu_free(d);
    dsv4_cu_free(b);
}

#endif

KTEST_MAIN(T(rmsnorm), T(head_rms), T(rope), T(sims), T(hadamard), T(kv_codec), T(embed), T(elementwise), T(errors))
