/* GPU dequantisation (kernels/dequant.cu) against the CPU reference
 * (dsv4_dequant_fp8_rows / dsv4_dequant_fp4_rows in lib/codec.c).
 *
 * Tolerance: none.  Dequantisation is exact in f32 (see kernels/dequant.cu),
 * so f32 results must match bit for bit, except that any NaN matches any NaN
 * (the GPU multiply returns its own canonical NaN); bf16 results must equal
 * dsv4_f32_to_bf16 of the reference, NaN included.  Inputs cover all 256 e4m3
 * codes and all 256 FP4 byte values under every E8M0 scale 0..255 (255 = NaN,
 * 0 = 2^-127 giving f32 subnormals), random data on model shapes and on shapes
 * that are not multiples of 128/32/4/2, row ranges, misaligned pointers (the
 * element-wise kernels), tensors of >= 2^32 elements (64-bit indexing) and
 * argument errors.
 *
 * Exits 77 ("skipped: no CUDA device") without a GPU or in a CPU-only build.
 * --perf also prints the throughput of the model-sized cases. */
#include <stdio.h>

#if !DSV4_HAVE_CUDA
int main(void)
{
    printf("skipped: no CUDA device (built without CUDA)\n");
    return 77;
}
#else

#include "../unit/test.h"

#include <stdint.h>
#include <time.h>

#include "codec.h"
#include "gpu.h"

static uint64_t lcg_state = 0x9e3779b97f4a7c15ull;

static uint32_t lcg_next(void)
{
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(lcg_state >> 32);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(99);
    }
    return p;
}

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Scale bytes: uniform 0..255 (NaN and the extremes included) or a band
 * around 2^0 like real checkpoints. */
enum { SC_ALL, SC_REAL };

static void fill_scales(uint8_t *s, int64_t n, int mode)
{
    for (int64_t i = 0; i < n; i++)
        s[i] = mode == SC_ALL ? (uint8_t)lcg_next() : (uint8_t)(112 + lcg_next() % 24);
}

static void fill_codes(uint8_t *w, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        w[i] = (uint8_t)(lcg_next() >> 13);
}

/* Compares rows [r0, r1) of GPU output got (f32 or bf16) with ref (f32);
 * returns the number of mismatches, printing the first few. */
static int64_t compare(const char *what, const float *ref, const void *got, int out_type,
                       int64_t rows, int64_t k, int64_t r0)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < rows * k; i++) {
        int ok;
        uint32_t gb, rb;
        if (out_type == DSV4_DQ_F32) {
            float g = ((const float *)got)[i];
            gb = f2u(g); rb = f2u(ref[i]);
            ok = gb == rb || (g != g && ref[i] != ref[i]);
        } else {
            gb = ((const uint16_t *)got)[i]; rb = dsv4_f32_to_bf16(ref[i]);
            ok = gb == rb;
        }
        if (!ok && bad++ < 5)
            fprintf(stderr, "%s: row %lld col %lld: got 0x%08x, want 0x%08x\n", what,
                    (long long)(r0 + i / k), (long long)(i % k), gb, rb);
    }
    return bad;
}

/* Runs rows [r0, r1) of [n, k] through dsv4_cu_dequant_host for both output
 * types and compares with the reference; returns 1 when all matched. */
static int run_case(int fmt, const uint8_t *w, const uint8_t *s, int64_t n, int64_t k,
                    int64_t r0, int64_t r1)
{
    int64_t rows = r1 - r0, cnt = rows * k;
    float *ref = xmalloc((size_t)cnt * sizeof *ref);
    void *got = xmalloc((size_t)cnt * sizeof(float));
    char what[96];
    int ok = 1;
    if (fmt == DSV4_DQ_FP8)
        dsv4_dequant_fp8_rows(w, s, n, k, r0, r1, ref);
    else
        dsv4_dequant_fp4_rows(w, s, n, k, r0, r1, ref);
    for (int ot = DSV4_DQ_F32; ot <= DSV4_DQ_BF16; ot++) {
        dsv4_err err = DSV4_ERR_INIT;
        dsv4_dequant_args a = { fmt, ot, n, k, r0, r1, w, s, got };
        snprintf(what, sizeof what, "%s [%lld,%lld] rows [%lld,%lld) -> %s",
                 fmt == DSV4_DQ_FP8 ? "fp8" : "fp4", (long long)n, (long long)k,
                 (long long)r0, (long long)r1, ot == DSV4_DQ_F32 ? "f32" : "bf16");
        memset(got, 0xa5, (size_t)cnt * sizeof(float));
        int rc = dsv4_cu_dequant_host(&a, &err);
        if (rc) {
            fprintf(stderr, "%s: %s\n", what, err.msg);
            ok = 0;
            continue;
        }
        int64_t bad = compare(what, ref, got, ot, rows, k, r0);
        if (bad) {
            fprintf(stderr, "%s: %lld of %lld values differ\n", what, (long long)bad, (long long)cnt);
            ok = 0;
        }
    }
    free(ref);
    free(got);
    return ok;
}

static int run_random(int fmt, int64_t n, int64_t k, int64_t r0, int64_t r1, int scale_mode)
{
    int64_t wb = dsv4_dequant_wbytes(fmt, n, k), sb = dsv4_dequant_sbytes(fmt, n, k);
    uint8_t *w = xmalloc((size_t)wb), *s = xmalloc((size_t)sb);
    fill_codes(w, wb);
    fill_scales(s, sb, scale_mode);
    int ok = run_case(fmt, w, s, n, k, r0, r1);
    free(w);
    free(s);
    return ok;
}

/* Every (e4m3 code, scale byte) pair: 16x16 blocks of 128x128 take the 256
 * scale bytes, and every block holds every code 64 times in shifting
 * positions. */
TEST(fp8_all_codes_all_scales)
{
    int64_t n = 2048, k = 2048;
    uint8_t *w = xmalloc((size_t)(n * k)), *s = xmalloc(256);
    for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < k; c++)
            w[r * k + c] = (uint8_t)(c + 7 * r);
    for (int i = 0; i < 256; i++)
        s[i] = (uint8_t)i;
    CHECK(run_case(DSV4_DQ_FP8, w, s, n, k, 0, n));
    free(w);
    free(s);
}

/* Every FP4 byte (both nibbles) with every scale byte: row r has 64 groups of
 * 32 codes, group g has scale (r + g) & 255 and its 16 bytes are 16
 * consecutive byte values. */
TEST(fp4_all_codes_all_scales)
{
    int64_t n = 256, k = 2048, kb = k / 2, ks = k / 32;
    uint8_t *w = xmalloc((size_t)(n * kb)), *s = xmalloc((size_t)(n * ks));
    for (int64_t r = 0; r < n; r++) {
        for (int64_t j = 0; j < kb; j++)
            w[r * kb + j] = (uint8_t)(j + 16 * r);
        for (int64_t g = 0; g < ks; g++)
            s[r * ks + g] = (uint8_t)(r + g);
    }
    CHECK(run_case(DSV4_DQ_FP4, w, s, n, k, 0, n));
    free(w);
    free(s);
}

static const int64_t fp8_shapes[][2] = {
    { 1, 1 }, { 1, 16 }, { 1, 127 }, { 3, 128 }, { 2, 129 }, { 127, 129 }, { 128, 128 },
    { 129, 257 }, { 200, 1000 }, { 257, 4100 }, { 130, 4096 }, { 1, 7168 },
    { 1024, 7168 },                              /* a wq_b-like weight */
};

TEST(fp8_random_shapes)
{
    for (size_t i = 0; i < sizeof fp8_shapes / sizeof fp8_shapes[0]; i++) {
        int64_t n = fp8_shapes[i][0], k = fp8_shapes[i][1];
        CHECK(run_random(DSV4_DQ_FP8, n, k, 0, n, SC_ALL));
        CHECK(run_random(DSV4_DQ_FP8, n, k, 0, n, SC_REAL));
    }
}

static const int64_t fp4_shapes[][2] = {
    { 1, 1 }, { 1, 2 }, { 3, 31 }, { 2, 33 }, { 5, 62 }, { 7, 64 }, { 9, 96 }, { 1, 100 },
    { 129, 4097 }, { 3, 4128 }, { 1, 4096 },
    { 2048, 4096 },                              /* a routed-expert w1-like weight */
};

TEST(fp4_random_shapes)
{
    for (size_t i = 0; i < sizeof fp4_shapes / sizeof fp4_shapes[0]; i++) {
        int64_t n = fp4_shapes[i][0], k = fp4_shapes[i][1];
        CHECK(run_random(DSV4_DQ_FP4, n, k, 0, n, SC_ALL));
        CHECK(run_random(DSV4_DQ_FP4, n, k, 0, n, SC_REAL));
    }
}

/* Row ranges: output row 0 is weight row r0; FP8 scale rows follow r / 128
 * of the whole weight, not of the range. */
TEST(row_ranges)
{
    CHECK(run_random(DSV4_DQ_FP8, 300, 300, 5, 133, SC_ALL));
    CHECK(run_random(DSV4_DQ_FP8, 300, 256, 127, 129, SC_ALL));
    CHECK(run_random(DSV4_DQ_FP8, 300, 256, 299, 300, SC_REAL));
    CHECK(run_random(DSV4_DQ_FP4, 100, 256, 17, 60, SC_ALL));
    CHECK(run_random(DSV4_DQ_FP4, 100, 77, 99, 100, SC_ALL));
}

/* Misaligned device pointers (odd w, out off 16 bytes) must take the
 * element-wise kernels and still be right; the aligned run of the same data
 * takes the vector ones. */
TEST(misaligned_pointers)
{
    for (int fmt = DSV4_DQ_FP8; fmt <= DSV4_DQ_FP4; fmt++) {
        int64_t n = 130, k = 256;
        int64_t wb = dsv4_dequant_wbytes(fmt, n, k), sb = dsv4_dequant_sbytes(fmt, n, k);
        uint8_t *w = xmalloc((size_t)wb), *s = xmalloc((size_t)sb);
        float *ref = xmalloc((size_t)(n * k) * sizeof *ref), *got = xmalloc((size_t)(n * k) * sizeof *got);
        void *dw = NULL, *ds = NULL, *dout = NULL;
        dsv4_err err = DSV4_ERR_INIT;
        fill_codes(w, wb);
        fill_scales(s, sb, SC_ALL);
        if (fmt == DSV4_DQ_FP8)
            dsv4_dequant_fp8_rows(w, s, n, k, 0, n, ref);
        else
            dsv4_dequant_fp4_rows(w, s, n, k, 0, n, ref);
        int rc = dsv4_cu_alloc(&dw, (size_t)wb + 16, &err);
        if (!rc) rc = dsv4_cu_alloc(&ds, (size_t)sb, &err);
        if (!rc) rc = dsv4_cu_alloc(&dout, (size_t)(n * k) * 4 + 16, &err);
        for (int off = 0; !rc && off <= 1; off++) {
            uint8_t *w_dev = (uint8_t *)dw + off;
            float *o_dev = (float *)dout + off;
            dsv4_dequant_args a = { fmt, DSV4_DQ_F32, n, k, 0, n, w_dev, ds, o_dev };
            rc = dsv4_cu_upload(w_dev, w, (size_t)wb, &err);
            if (!rc) rc = dsv4_cu_upload(ds, s, (size_t)sb, &err);
            if (!rc) rc = dsv4_cu_dequant(&a, NULL, &err);
            if (!rc) rc = dsv4_cu_sync(NULL, &err);
            if (!rc) rc = dsv4_cu_download(got, o_dev, (size_t)(n * k) * 4, &err);
            if (!rc)
                CHECK(compare(off ? "misaligned" : "aligned", ref, got, DSV4_DQ_F32, n, k, 0) == 0);
        }
        if (rc)
            fprintf(stderr, "misaligned_pointers: %s\n", err.msg);
        CHECK(rc == 0);
        dsv4_cu_free(dw);
        dsv4_cu_free(ds);
        dsv4_cu_free(dout);
        free(w);
        free(s);
        free(ref);
        free(got);
    }
}

/* Tensors of >= 2^32 elements take the 64-bit index kernels: the last rows
 * of a [2^20 + 128, 4096] weight, through the device API (only those rows are
 * uploaded; the host buffer's other pages are never touched).  Skipped with a
 * note when the GPU or host cannot hold the weight. */
static void wide_case(int fmt, int ot)
{
    int64_t n = ((int64_t)1 << 20) + 128, k = 4096, r0 = n - 200, r1 = n - 3, rows = r1 - r0;
    int64_t wb = dsv4_dequant_wbytes(fmt, n, k), sb = dsv4_dequant_sbytes(fmt, n, k);
    int64_t rowb = wb / n, esz = ot == DSV4_DQ_F32 ? 4 : 2;
    uint8_t *w = malloc((size_t)wb), *s = xmalloc((size_t)sb);
    float *ref = xmalloc((size_t)(rows * k) * sizeof *ref);
    void *got = xmalloc((size_t)(rows * k) * 4);
    void *dw = NULL, *ds = NULL, *dout = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    int rc = w ? dsv4_cu_alloc(&dw, (size_t)wb, &err) : DSV4_E_NOMEM;
    if (rc) {
        fprintf(stderr, "note: wide case not run: %s\n", w ? err.msg : "no host memory");
        goto out;
    }
    fill_codes(w + r0 * rowb, rows * rowb);
    fill_scales(s, sb, SC_ALL);
    if (fmt == DSV4_DQ_FP8)
        dsv4_dequant_fp8_rows(w, s, n, k, r0, r1, ref);
    else
        dsv4_dequant_fp4_rows(w, s, n, k, r0, r1, ref);
    dsv4_dequant_args a = { fmt, ot, n, k, r0, r1, dw, NULL, NULL };
    rc = dsv4_cu_alloc(&ds, (size_t)sb, &err);
    if (!rc) rc = dsv4_cu_alloc(&dout, (size_t)(rows * k * esz), &err);
    if (!rc) rc = dsv4_cu_upload((uint8_t *)dw + r0 * rowb, w + r0 * rowb, (size_t)(rows * rowb), &err);
    if (!rc) rc = dsv4_cu_upload(ds, s, (size_t)sb, &err);
    a.s = ds;
    a.out = dout;
    if (!rc) rc = dsv4_cu_dequant(&a, NULL, &err);
    if (!rc) rc = dsv4_cu_sync(NULL, &err);
    if (!rc) rc = dsv4_cu_download(got, dout, (size_t)(rows * k * esz), &err);
    if (rc)
        fprintf(stderr, "wide case: %s\n", err.msg);
    CHECK(rc == 0);
    if (!rc)
        CHECK(compare(fmt == DSV4_DQ_FP8 ? "wide fp8" : "wide fp4", ref, got, ot, rows, k, r0) == 0);
out:
    dsv4_cu_free(dw);
    dsv4_cu_free(ds);
    dsv4_cu_free(dout);
    free(w);
    free(s);
    free(ref);
    free(got);
}

TEST(wide_tensors)
{
    if (dsv4_cu_emulated()) {       /* 2^32 elements: hours on the CPU */
        fprintf(stderr, "note: wide case not run on the emulated device\n");
        return;
    }
    wide_case(DSV4_DQ_FP8, DSV4_DQ_F32);
    wide_case(DSV4_DQ_FP4, DSV4_DQ_BF16);
}

TEST(empty_and_bad_arguments)
{
    uint8_t w[4] = { 0 }, s[4] = { 0 };
    float out[4];
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_dequant_args a = { DSV4_DQ_FP8, DSV4_DQ_F32, 2, 2, 1, 1, w, s, out };
    CHECK_EQ_INT(dsv4_cu_dequant_host(&a, &err), 0);            /* no rows */
    a.r0 = 0; a.r1 = 2; a.k = 0;
    CHECK_EQ_INT(dsv4_cu_dequant_host(&a, &err), 0);            /* no columns */
    a.k = 2; a.r1 = 3;
    CHECK_EQ_INT(dsv4_cu_dequant(&a, NULL, &err), DSV4_E_INVALID);
    CHECK(strstr(err.msg, "out of range") != NULL);
    a.r1 = 2; a.r0 = -1;
    CHECK_EQ_INT(dsv4_cu_dequant(&a, NULL, &err), DSV4_E_INVALID);
    a.r0 = 0; a.fmt = 3;
    CHECK_EQ_INT(dsv4_cu_dequant(&a, NULL, &err), DSV4_E_INVALID);
    CHECK(strstr(err.msg, "format") != NULL);
    a.fmt = DSV4_DQ_FP4; a.out_type = 7;
    CHECK_EQ_INT(dsv4_cu_dequant(&a, NULL, &err), DSV4_E_INVALID);
    a.out_type = DSV4_DQ_BF16; a.s = NULL;
    CHECK_EQ_INT(dsv4_cu_dequant(&a, NULL, &err), DSV4_E_INVALID);
    CHECK(strstr(err.msg, "scale") != NULL);
    a.s = s; a.n = INT64_MAX / 2; a.k = 1 << 20; a.r1 = 1;
    CHECK_EQ_INT(dsv4_cu_dequant(&a, NULL, &err), DSV4_E_RANGE);
    CHECK_EQ_INT(dsv4_cu_dequant(NULL, NULL, &err), DSV4_E_INVALID);
}

/* A CUDA failure comes back as DSV4_E_CUDA with the runtime's text, and the
 * context stays usable. */
TEST(cuda_error_reported)
{
    void *p = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    CHECK_EQ_INT(dsv4_cu_alloc(&p, (size_t)1 << 60, &err), DSV4_E_CUDA);
    CHECK(p == NULL);
    CHECK_EQ_INT(err.code, DSV4_E_CUDA);
    CHECK(strstr(err.msg, "cudaMalloc") != NULL);
    CHECK(strstr(err.msg, "memory") != NULL);
    CHECK_EQ_INT(dsv4_cu_alloc(&p, 64, &err), 0);
    dsv4_cu_free(p);
    CHECK_EQ_INT(dsv4_cu_sync(NULL, &err), 0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Throughput on model-sized weights, device-resident (bytes read + written). */
static void perf(void)
{
    static const struct { int fmt; int64_t n, k; } cases[] = {
        { DSV4_DQ_FP8, 7168, 4096 }, { DSV4_DQ_FP4, 2048, 7168 }, { DSV4_DQ_FP4, 7168, 2048 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int ot = DSV4_DQ_F32; ot <= DSV4_DQ_BF16; ot++) {
            int fmt = cases[i].fmt;
            int64_t n = cases[i].n, k = cases[i].k;
            size_t wb = (size_t)dsv4_dequant_wbytes(fmt, n, k), sb = (size_t)dsv4_dequant_sbytes(fmt, n, k);
            size_t ob = (size_t)(n * k) * (ot == DSV4_DQ_F32 ? 4 : 2);
            void *dw = NULL, *ds = NULL, *dout = NULL;
            dsv4_err err = DSV4_ERR_INIT;
            int rc = dsv4_cu_alloc(&dw, wb, &err);
            if (!rc) rc = dsv4_cu_alloc(&ds, sb, &err);
            if (!rc) rc = dsv4_cu_alloc(&dout, ob, &err);
            dsv4_dequant_args a = { fmt, ot, n, k, 0, n, dw, ds, dout };
            double t = 0;
            int iters = 50;
            for (int it = -5; !rc && it < iters; it++) {
                if (it == 0) {
                    rc = dsv4_cu_sync(NULL, &err);
                    t = now_s();
                }
                if (!rc) rc = dsv4_cu_dequant(&a, NULL, &err);
            }
            if (!rc) rc = dsv4_cu_sync(NULL, &err);
            t = now_s() - t;
            if (rc)
                printf("perf: %s\n", err.msg);
            else
                printf("perf: %s [%lld,%lld] -> %s: %.1f us, %.0f GB/s\n", fmt == DSV4_DQ_FP8 ? "fp8" : "fp4",
                       (long long)n, (long long)k, ot == DSV4_DQ_F32 ? "f32" : "bf16", t / iters * 1e6,
                       (double)(wb + sb + ob) * iters / t * 1e-9);
            dsv4_cu_free(dw);
            dsv4_cu_free(ds);
            dsv4_cu_free(dout);
        }
    }
}

struct test_case test_cases[] = {
    T(fp8_all_codes_all_scales), T(fp4_all_codes_all_scales), T(fp8_random_shapes),
    T(fp4_random_shapes), T(row_ranges), T(misaligned_pointers), T(wide_tensors), T(empty_and_bad_arguments),
    T(cuda_error_reported), { NULL, NULL }
};

int main(int argc, char **argv)
{
    int ndev = dsv4_cu_device_count();
    if (ndev <= 0) {
        printf("skipped: no CUDA device\n");
        return 77;
    }
    int pass = 0, fail = 0;
    for (struct test_case *t = test_cases; t->name; t++) {
        test_cur_failed = 0;
        t->fn();
        if (test_cur_failed) {
            fail++;
            fprintf(stderr, "FAIL %s\n", t->name);
        } else {
            pass++;
        }
    }
    if (argc > 1 && !strcmp(argv[1], "--perf"))
        perf();
    printf("%d passed, %d failed\n", pass, fail);
    (void)test_failed_checks;
    return fail ? 1 : 0;
}

#endif
