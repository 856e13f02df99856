/* gpu_gemm — the dense linear layers on the GPU (kernels/gemm.cu), the twins
 * of dsv4_linear_q / dsv4_linear (lib/ops.c) and dsv4_act_quant_row
 * (lib/codec.c); numerics in spec/ARCH.md §3.2–3.4, §10.
 *
 * Built only when DSV4_HAVE_CUDA is 1.  All pointers are DEVICE pointers,
 * including W->w and W->s of the weight view (a dsv4_wt of lib/ops.h whose
 * bytes live on the device, same layouts as on the CPU).  Layouts are row
 * major and dense: x [M, W->k], y [M, W->n]; y must not alias x.  The calls
 * launch on stream s (NULL = default) and return at once; they borrow every
 * pointer until the stream has run the work.  Returns 0 or a negative
 * DSV4_E_* (DSV4_E_INVALID naming the op and the bad value).
 *
 * Weight kinds: FP8, FP4, BF16, F32, and dsv4-quant's Q2 and Q3 (lib/quant.h;
 * k must be a multiple of their block, 64 or 32, else DSV4_E_INVALID), read
 * straight from their blocks.  Regimes: M <= 8 (decode) runs a GEMV
 * that reads every weight byte once; larger M runs the same SIMT kernel per
 * 8 rows of x, except FP8 weights in dsv4_cu_linear_q[_pre], which use FP8
 * tensor cores (mma.sync m16n8k32 e4m3, sm_89+) unless the environment has
 * DSV4_GEMM_SIMT=1.
 *
 * Tolerance vs the CPU (tests/kernels/test_gemm.c measures it): act_quant is
 * bit-exact.  The linears accumulate in f32 where the CPU accumulates in
 * double, in another order, so the f32 result differs by rounding (a few
 * f32 ulps of max |y| times a small factor growing with k); after rounding
 * to bf16 most outputs are identical and a small fraction (well under 1 %)
 * are one bf16 ulp apart.  Q2/Q3 scales are not powers of two, so their
 * block sums are rounded once more when scaled (f32 level, same bound);
 * under dsv4_cu_linear their weights are level x scale rounded to f32 as
 * the CPU's dequantised rows are. */
#ifndef DSV4_GPU_GEMM_H
#define DSV4_GPU_GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "gpu.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per row of x [M, k] and per block of `block` columns (block <= 0: the
 * whole row), the e4m3 codes q [M, k] and power-of-two scales
 * scales [M, ceil(k / block)] of dsv4_act_quant_row — bit-identical. */
int dsv4_cu_act_quant(const float *x, int64_t M, int64_t k, int block, uint8_t *q, float *scales,
                      dsv4_stream s, dsv4_err *err);

/* Bytes of scratch dsv4_cu_linear_q needs for M rows of k inputs (the
 * quantised input: codes, then 16-byte aligned f32 scales). */
size_t dsv4_cu_linear_q_scratch(int64_t M, int64_t k);

/* y = dsv4_linear_q(W, x): x quantised per 128 columns (dsv4_cu_act_quant),
 * products of codes summed per weight block (FP8: 128, FP4: 32, Q2: 64,
 * Q3: 32 columns of levels; BF16/F32: 128 with weight scale 1), scaled, accumulated over k in f32,
 * output rounded to bf16.  scratch: dsv4_cu_linear_q_scratch(M, W->k) bytes
 * of device memory, or NULL to allocate (and free) it inside the call. */
int dsv4_cu_linear_q(const dsv4_wt *W, const float *x, int64_t M, float *y, void *scratch,
                     dsv4_stream s, dsv4_err *err);

/* The same with x already quantised by dsv4_cu_act_quant(x, M, W->k, 128,
 * q, scales): q [M, W->k] e4m3 codes, scales [M, ceil(W->k / 128)]. */
int dsv4_cu_linear_q_pre(const dsv4_wt *W, const uint8_t *q, const float *scales, int64_t M, float *y,
                         dsv4_stream s, dsv4_err *err);

/* y = dsv4_linear(W, x): W x in f32 (FP8/FP4 weights used dequantised, no
 * input quantisation), rounded to bf16 when round_bf16. */
int dsv4_cu_linear(const dsv4_wt *W, const float *x, int64_t M, float *y, int round_bf16,
                   dsv4_stream s, dsv4_err *err);

#ifdef __cplusplus
}
#endif

#endif
