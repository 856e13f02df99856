/* ops — the CPU numeric building blocks of the forward pass, with the
 * reference's numerics (spec/ARCH.md §3, §10.4).
 *
 * Activations are float arrays whose values are bf16-representable where
 * the reference holds bf16 tensors: every op that the reference ends with a
 * bf16 tensor rounds its output (dsv4_round_bf16).  Weights are read in
 * their stored encodings through dsv4_wt views and decoded row by row on the
 * fly; nothing expands a whole matrix.
 *
 * Threading: the linear ops split output rows over a dsv4_pool (NULL = the
 * calling thread).  Every output element is computed by one thread in a fixed
 * order, so results do not depend on the thread count.  Ownership: dsv4_wt
 * borrows its bytes (an mmapped model); the ops allocate only scratch. */
#ifndef DSV4_OPS_H
#define DSV4_OPS_H

#include <math.h>
#include <stdint.h>

#include "err.h"
#include "pool.h"
#include "tensor.h"

enum dsv4_wt_kind {
    DSV4_WT_NONE = 0,
    DSV4_WT_FP8,     /* e4m3 [n, k] + E8M0 scales [ceil(n/128), ceil(k/128)] */
    DSV4_WT_FP4,     /* packed e2m1 [n, k/2] (low nibble = even k) + E8M0 [n, k/32] */
    DSV4_WT_BF16,    /* [n, k] */
    DSV4_WT_F32,     /* [n, k] */
    DSV4_WT_Q2,      /* 2-bit codes, 16 bytes per 64 k + QS8 scales [n, k/64] (quant.h) */
    DSV4_WT_Q3       /* 3-bit codes, 12 bytes per 32 k + QS8 scales [n, k/32] (quant.h) */
};

typedef struct dsv4_wt {
    int kind;
    int64_t n, k;          /* logical rows (outputs) and columns (inputs) */
    const uint8_t *w;      /* borrowed */
    const uint8_t *s;      /* scales (FP8/FP4/Q2/Q3), borrowed */
} dsv4_wt;

/* The kind a weight stored as dt is computed as; DSV4_WT_NONE for a dtype
 * that is no weight encoding (scales, integers). */
int dsv4_wt_kind_of(dsv4_dtype dt);
/* Logical columns k of a 2-D weight of that kind with stored_cols columns
 * (FP4 packs 2 values per byte, Q2 4, Q3 8 per 3 bytes). */
int64_t dsv4_wt_cols(int kind, int64_t stored_cols);

/* Rows [r0, r0 + n) of W as a view of its own (for FP8, r0 must be a
 * multiple of 128: the scale blocks span 128 rows). */
dsv4_wt dsv4_wt_slice(const dsv4_wt *W, int64_t r0, int64_t n);

/* Decode logical row r of W into out[k] (f32 values of the stored weight,
 * block scales applied; exact). */
void dsv4_wt_row(const dsv4_wt *W, int64_t r, float *out);

/* y[m, n] = bf16( W x ) with the input quantised to e4m3 per 128 columns
 * (ARCH.md §3.2–3.4).  The products of codes are summed per 128-block (FP8)
 * or 32-group (FP4), scaled, and accumulated over k in double: the exact sum
 * the fixtures' f32 GEMM of dequantised operands rounds closest to.  Q2 and
 * Q3 weights (dsv4-quant) go the same way, their levels summed per block
 * (64 or 32) against the input codes.  BF16 and F32 weights here are
 * re-encodings of FP8 ones (dsv4-quant), so the input is quantised alike and
 * the products summed per 128 columns: the same result up to rounding.
 * x: [m, W->k], y: [m, W->n] (no aliasing). */
int dsv4_linear_q(dsv4_pool *pool, const dsv4_wt *W, const float *x, int64_t m, float *y, dsv4_err *err);

/* y[m, n] = W x in f32 (no input quantisation), rounded to bf16 when
 * round_bf16.  Any weight kind (FP8 and FP4 weights are used dequantised, as
 * the reference does for wo_a). */
int dsv4_linear(dsv4_pool *pool, const dsv4_wt *W, const float *x, int64_t m, float *y, int round_bf16,
                dsv4_err *err);

/* Dot product of f32 vectors accumulated in double (fixed order), rounded to
 * f32 once. */
float dsv4_dot(const float *a, const float *b, int64_t n);
/* mean(x^2) as the reference's x.square().mean(-1) rounds it. */
float dsv4_mean_sq(const float *x, int64_t n);

/* Weighted RMSNorm (ARCH.md §3.1): y = bf16(w * (x * rsqrt(mean(x^2) + eps))).
 * y may alias x. */
void dsv4_rmsnorm(const float *x, const float *w, int64_t n, float eps, float *y);

/* Weightless per-head RMS normalisation of q[n] in place, with the
 * reference's bf16 tensor ops (ARCH.md §5.1 step 3): squares rounded to
 * bf16, summed in double, mean, + eps, rsqrt and the product each rounded
 * to bf16. */
void dsv4_head_rms_bf16(float *q, int64_t n, float eps);

/* RoPE frequency table (ARCH.md §3.8): freqs[rd/2].  yarn: apply the YaRN
 * ramp with the given factor / original length / betas. */
void dsv4_rope_freqs(float *freqs, int64_t rd, double theta, int yarn, double factor,
                     double orig_len, double beta_fast, double beta_slow);

/* Rotate x[0..rd) (interleaved pairs) by position pos; inverse uses -sin.
 * Result rounded to bf16. */
void dsv4_rope(float *x, int64_t rd, const float *freqs, int64_t pos, int inverse);

static inline float dsv4_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

#endif
