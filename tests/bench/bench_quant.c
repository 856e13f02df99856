/* bench_quant — the CPU linear kernel on one Flash routed-expert matrix
 * ([2048, 4096], w1/w3 shape) in each encoding the engine computes from:
 * FP4 (as released), Q3 and Q2 (dsv4-quant).  For a decode step (1 input
 * row) and a prefill chunk (64 rows) it prints the time per call, the
 * weight bytes read and the rate in GB/s and GFLOP/s, and the ratios to FP4.
 * Weights are random FP4 values; the Q2/Q3 ones are re-encoded from them.
 * Not a test: it exits 0 whatever the speed.
 *
 *   bench_quant [--threads N] */
#include "codec.h"
#include "ops.h"
#include "pool.h"
#include "quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { N = 2048, K = 4096 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double time_linear(dsv4_pool *pool, const dsv4_wt *W, const float *x, int64_t m, float *y)
{
    dsv4_err err = DSV4_ERR_INIT;
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        if (dsv4_linear_q(pool, W, x, m, y, &err)) {
            fprintf(stderr, "bench_quant: %s\n", err.msg);
            exit(1);
        }
        double t = now() - t0;
        best = t < best ? t : best;
    }
    return best;
}

int main(int argc, char **argv)
{
    int threads = 0;
    if (argc == 3 && !strcmp(argv[1], "--threads"))
        threads = atoi(argv[2]);
    else if (argc != 1) {
        fprintf(stderr, "usage: bench_quant [--threads N]\n");
        return 2;
    }
    dsv4_pool *pool = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    uint8_t *w4 = malloc((size_t)N * K / 2), *s4 = malloc((size_t)N * K / 32);
    uint8_t *c3 = malloc((size_t)N * K * 3 / 8), *s3 = malloc((size_t)N * K / 32);
    uint8_t *c2 = malloc((size_t)N * K / 4), *s2 = malloc((size_t)N * K / 64);
    float *row = malloc(K * sizeof *row), *x = malloc((size_t)64 * K * sizeof *x), *y = malloc((size_t)64 * N * sizeof *y);
    if (!w4 || !s4 || !c3 || !s3 || !c2 || !s2 || !row || !x || !y || dsv4_pool_new(&pool, threads, &err)) {
        fprintf(stderr, "bench_quant: out of memory\n");
        return 1;
    }
    srand(1);
    for (size_t i = 0; i < (size_t)N * K / 2; i++)
        w4[i] = (uint8_t)rand();
    for (size_t i = 0; i < (size_t)N * K / 32; i++)
        s4[i] = (uint8_t)(118 + rand() % 4);
    dsv4_wt W4 = { DSV4_WT_FP4, N, K, w4, s4 };
    for (int r = 0; r < N; r++) {
        dsv4_wt_row(&W4, r, row);
        dsv4_quant_row(DSV4_QF_Q3, row, K, c3 + (size_t)r * K * 3 / 8, s3 + (size_t)r * K / 32);
        dsv4_quant_row(DSV4_QF_Q2, row, K, c2 + (size_t)r * K / 4, s2 + (size_t)r * K / 64);
    }
    for (size_t i = 0; i < (size_t)64 * K; i++)
        x[i] = dsv4_round_bf16((float)rand() / RAND_MAX - 0.5f);
    struct { const char *name; dsv4_wt W; double bytes; } enc[3] = {
        { "FP4", W4, (double)N * K * 4.25 / 8 },
        { "Q3", { DSV4_WT_Q3, N, K, c3, s3 }, (double)N * K * 3.25 / 8 },
        { "Q2", { DSV4_WT_Q2, N, K, c2, s2 }, (double)N * K * 2.125 / 8 },
    };
    printf("linear_q on [%d, %d], %d threads\n", N, K, dsv4_pool_threads(pool));
    for (int m = 1; m <= 64; m *= 64) {
        double base = 0;
        for (int e = 0; e < 3; e++) {
            double t = time_linear(pool, &enc[e].W, x, m, y);
            if (!e)
                base = t;
            printf("  m=%-2d %-3s %8.3f ms  %6.2f MB  %6.2f GB/s  %7.2f GFLOP/s  x%.2f of FP4's time\n", m, enc[e].name,
                   1e3 * t, enc[e].bytes / 1e6, enc[e].bytes / t / 1e9, 2.0 * N * K * m / t / 1e9, t / base);
        }
    }
    dsv4_pool_free(pool);
    free(w4); free(s4); free(c3); free(s3); free(c2); free(s2); free(row); free(x); free(y);
    return 0;
}
