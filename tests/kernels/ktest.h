/* ktest — what the GPU-vs-CPU kernel tests share: the runner (skips with 77
 * in a CPU-only build or without a device; on the emulated device it says
 * so), seeded random data, device buffers that are poisoned before each run
 * (so an output a kernel forgets to write shows as NaN), and the error
 * measure with its report.
 *
 * A test file: #include "ktest.h", TEST(...) cases using KT_* helpers, then
 * KTEST_MAIN(T(a), T(b), ...).  Emulated runs (ktest_emulated()) should use
 * smaller sizes: the emulator runs every GPU thread on one CPU core. */
#ifndef DSV4_KTEST_H
#define DSV4_KTEST_H

#include <stdio.h>

#if !DSV4_HAVE_CUDA
#define KTEST_MAIN(...) \
    int main(void) { printf("skipped: no CUDA device (built without CUDA)\n"); return 77; }
#else

#include "../unit/test.h"

#include <stdint.h>
#include <string.h>
#include <time.h>

#include "gpu.h"

static inline int ktest_emulated(void) { return dsv4_cu_emulated(); }

static inline double kt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- random data (a fixed seed per test: failures reproduce) ------------ */

typedef struct kt_rng { uint64_t s; } kt_rng;

static inline kt_rng kt_seed(uint64_t seed) { kt_rng r = { seed * 0x9e3779b97f4a7c15ull + 1 }; return r; }
static inline uint32_t kt_u32(kt_rng *r)
{
    r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(r->s >> 32);
}
/* uniform in [lo, hi) */
static inline float kt_unif(kt_rng *r, float lo, float hi)
{
    return lo + (hi - lo) * (float)(kt_u32(r) >> 8) * (1.0f / 16777216.0f);
}
/* roughly normal (sum of 4 uniforms), mean 0, sd sd */
static inline float kt_norm(kt_rng *r, float sd)
{
    float a = 0.0f;
    for (int i = 0; i < 4; i++)
        a += kt_unif(r, -1.0f, 1.0f);
    return a * sd * 0.8660254f;
}
static inline void kt_fill_norm(kt_rng *r, float *x, int64_t n, float sd)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = kt_norm(r, sd);
}
static inline void kt_fill_bytes(kt_rng *r, uint8_t *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (uint8_t)(kt_u32(r) >> 13);
}

static inline void *kt_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of host memory\n");
        exit(99);
    }
    return p;
}

/* ---- device buffers --------------------------------------------------------- */

/* Device copy of host[n bytes] (host may be NULL: poisoned, 0xff = f32 NaN). */
static inline void *kt_dev(const void *host, size_t n)
{
    void *d = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    if (dsv4_cu_alloc(&d, n, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(99);
    }
    if (host)
        dsv4_cu_upload(d, host, n, &err);
    else if (n) {
        void *p = kt_malloc(n);
        memset(p, 0xff, n);
        dsv4_cu_upload(d, p, n, &err);
        free(p);
    }
    return d;
}
/* Poison device memory d[n bytes] with 0xff (NaN) before a run. */
static inline void kt_poison(void *d, size_t n)
{
    void *p = kt_malloc(n);
    dsv4_err err = DSV4_ERR_INIT;
    memset(p, 0xff, n);
    dsv4_cu_upload(d, p, n, &err);
    free(p);
}
/* Synchronise the default stream and download n bytes; fails the test (and
 * returns 1) on a CUDA error. */
static inline int kt_get(void *host, const void *dev, size_t n)
{
    dsv4_err err = DSV4_ERR_INIT;
    if (dsv4_cu_sync(NULL, &err) || dsv4_cu_download(host, dev, n, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        test_cur_failed = 1;
        test_failed_checks++;
        return 1;
    }
    return 0;
}
/* A call returning 0 / DSV4_E_*: fails the test with the message otherwise. */
#define KT_OK(call, errp) do { int rc_ = (call); if (rc_) { \
    fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, (errp)->msg); \
    test_failed_checks++; test_cur_failed = 1; } } while (0)

/* ---- errors ----------------------------------------------------------------- */

/* max |got - ref| / max(max |ref|, tiny) over n values; NaN or inf in got
 * where ref is finite gives +inf (NaN never passes). */
static inline double kt_relerr(const float *got, const float *ref, int64_t n)
{
    double mx = 0.0, md = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double r = ref[i], g = got[i];
        if (isfinite(r) && !isfinite(g))
            return INFINITY;
        if (!isfinite(r))
            continue;
        mx = fabs(r) > mx ? fabs(r) : mx;
        md = fabs(g - r) > md ? fabs(g - r) : md;
    }
    return md / (mx > 1e-30 ? mx : 1e-30);
}
/* Checks kt_relerr <= tol and prints the measured error either way (the log
 * records how close each op is). */
#define KT_CLOSE(what, got, ref, n, tol) do { double e_ = kt_relerr((got), (ref), (n)); \
    printf("  %-40s rel err %.3g (bound %.3g)\n", (what), e_, (double)(tol)); \
    if (!(e_ <= (tol))) { fprintf(stderr, "%s:%d: %s: rel err %.3g > %.3g\n", __FILE__, __LINE__, \
        (what), e_, (double)(tol)); test_failed_checks++; test_cur_failed = 1; } } while (0)
/* Bit-exact comparison of n floats (any NaN matches any NaN). */
static inline int64_t kt_mismatch(const float *got, const float *ref, int64_t n)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (!(isnan(got[i]) && isnan(ref[i])) && memcmp(&got[i], &ref[i], 4)) {
            if (bad < 5)
                fprintf(stderr, "  [%lld] got %.9g ref %.9g\n", (long long)i, got[i], ref[i]);
            bad++;
        }
    return bad;
}

#define KTEST_MAIN(...) \
    struct test_case test_cases[] = { __VA_ARGS__, { NULL, NULL } }; \
    int main(void) { \
        if (dsv4_cu_device_count() <= 0) { printf("skipped: no CUDA device\n"); return 77; } \
        if (ktest_emulated()) printf("on the emulated device (kernels/emu.h)\n"); \
        int pass = 0, fail = 0; \
        for (struct test_case *t = test_cases; t->name; t++) { \
            test_cur_failed = 0; printf("%s\n", t->name); double t0_ = kt_now(); t->fn(); \
            printf("  (%.1f s)\n", kt_now() - t0_); \
            if (test_cur_failed) { fail++; fprintf(stderr, "FAIL %s\n", t->name); } else pass++; \
        } \
        printf("%d passed, %d failed\n", pass, fail); \
        (void)test_failed_checks; \
        return fail ? 1 : 0; \
    }

#endif
#endif
