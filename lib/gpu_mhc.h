/* gpu_mhc — manifold-constrained hyper-connections (spec/ARCH.md §4.2) on the
 * GPU for M tokens at once: HCPre (mixing projection, Sinkhorn, sub-layer
 * input), HCPost (stream update) and HCHead (final collapse + RMSNorm).  The
 * CPU references are dsv4_hc_pre / dsv4_hc_post / dsv4_hc_head
 * (lib/engine.c, declared in lib/engine_impl.h), which the engine calls.
 *
 * Every pointer is a device pointer.  Layouts (row-major, dense):
 *   X     [M, hc, D]  the residual streams (f32 holding bf16 values)
 *   fn    [n_out, hc*D] F32 mixing weights of the site (dsv4_hc_w.fn):
 *         n_out = (2 + hc) * hc for HCPre, hc for HCHead
 *   base  [n_out], scale [3] (HCPre) or [1] (HCHead)
 *   mu    [M, n_out] f32 workspace owned by the caller (the projections)
 * The calls are asynchronous on stream s; they borrow the pointers for the
 * duration of the work.  Built only with DSV4_HAVE_CUDA.
 *
 * Rounding: each step rounds as the CPU does (the projection z.fn in double,
 * rounded to f32 once; mean(z^2) in the CPU's exact f32 summation order;
 * products and sums in f32 without contraction into FMA; bf16 at the same
 * points).  The differences that remain: the order of the double sum of the
 * projection (its f32 result differs only when the double sum lies within
 * ~1e-16 of an f32 rounding boundary) and the GPU's expf (<= 2 ulp from
 * glibc's) in the sigmoids and the Sinkhorn softmax.  Measured on the
 * emulator (glibc expf): bit-identical.  On a GPU, post/comb stay within
 * ~1e-6 relative, and an output element of x, X' or u may move by one bf16
 * ulp where an expf difference crosses a rounding boundary; the tests bound
 * the error at 1e-5 (post, comb) and 2^-7 of the largest |value| (bf16
 * outputs). */
#ifndef DSV4_GPU_MHC_H
#define DSV4_GPU_MHC_H

#include <stdint.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dsv4_cu_hc_w {      /* one mixing site, device pointers */
    const float *fn;               /* F32 [n_out, hc*D] */
    const float *base, *scale;     /* [n_out], [3] or [1] */
} dsv4_cu_hc_w;

typedef struct dsv4_cu_hc_dims {   /* as dsv4_hc_dims (engine_impl.h) */
    int64_t hc, D;                 /* 1 <= hc <= 16, D >= 1 */
    float norm_eps, hc_eps;        /* the config's eps values as f32 */
    int64_t iters;                 /* Sinkhorn iterations, >= 1 */
} dsv4_cu_hc_dims;

/* HCPre: x[M, D] (bf16 values), post[M, hc], comb[M, hc, hc] from X; uses
 * mu[M, (2+hc)*hc].  M = 0 does nothing. */
int dsv4_cu_hc_pre(const dsv4_cu_hc_w *w, const dsv4_cu_hc_dims *d, const float *X, int64_t M, float *mu,
                   float *x, float *post, float *comb, dsv4_stream s, dsv4_err *err);

/* HCPost in place on X[M, hc, D]: X'_k = bf16(post_k f + sum_j C_jk X_j)
 * with f[M, D] the sub-layer output, post/comb from dsv4_cu_hc_pre. */
int dsv4_cu_hc_post(const dsv4_cu_hc_dims *d, const float *f, float *X, int64_t M, const float *post,
                    const float *comb, dsv4_stream s, dsv4_err *err);

/* HCHead + final RMSNorm with weight nw[D]: u[M, D] (bf16 values); uses
 * mu[M, hc].  u must not alias X. */
int dsv4_cu_hc_head(const dsv4_cu_hc_w *w, const dsv4_cu_hc_dims *d, const float *nw, const float *X, int64_t M,
                    float *mu, float *u, dsv4_stream s, dsv4_err *err);

#ifdef __cplusplus
}
#endif

#endif
