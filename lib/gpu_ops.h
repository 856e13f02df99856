/* gpu_ops — the small per-row and element-wise ops of the forward pass on the
 * GPU (kernels/ops.cu): norms, RoPE, the FP8/FP4 simulations, the Hadamard
 * rotation, KV / indexer-key packing, the embedding lookup and the
 * element-wise glue of engine.c / attn.c.  Each call mirrors one CPU function
 * (named below) over many rows in one launch.
 *
 * Conventions (as lib/gpu.h): all pointers are DEVICE pointers (none here is
 * a host pointer); calls are asynchronous on stream s (NULL = default) and
 * borrow their pointers for the duration of the work; they return 0 or a
 * negative DSV4_E_* and fill err (DSV4_E_INVALID names the op and the bad
 * value).  rows = 0 (or n = 0 where noted) launches nothing and returns 0.
 * Rows are dense and row-major unless a stride is given.  In-place ops
 * modify x; "y may alias x" is said where it holds.
 *
 * Exactness vs the CPU (the tests in tests/kernels/test_ops.c check these):
 *   bit-exact: every op except the two below (the conversions, the sims,
 *     pack/unpack, the embedding, the adds and roundings, rmsnorm and
 *     mean_sq, whose sum reproduces dsv4_mean_sq's order exactly, the
 *     Hadamard butterflies, and head_rms_bf16 whenever its double sum of
 *     bf16 squares is exact: always when the squares of a row span less
 *     than 2^(45 - log2 n), 2^36 for n = 512; beyond that the sums may
 *     differ in the last double bit, which almost never survives the
 *     rounding to f32 and bf16).
 *   dsv4_cu_rope: cos/sin are (float)cos((double)phi), the correctly rounded
 *     value almost always; the CPU's glibc cosf/sinf are within 0.56 ulp, so
 *     an output may differ by 1 bf16 ulp where the two disagree and the
 *     product lands on a rounding boundary (never seen in the tests; bound
 *     tested: 1 bf16 ulp of the value). */
#ifndef DSV4_GPU_OPS_H
#define DSV4_GPU_OPS_H

#include <stdint.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- norms (lib/ops.c) -------------------------------------------------- */

/* y[r, :] = bf16(w * (x[r, :] * (1 / sqrtf(mean_sq(x[r, :]) + eps)))) for
 * r < rows: dsv4_rmsnorm per row; w: f32 [n]; x, y: f32 [rows, n]; y may
 * alias x.  1 <= n <= DSV4_CU_NORM_MAX_N. */
#define DSV4_CU_NORM_MAX_N 163840   /* the sum's scratch stays below 48 KiB of shared memory */
int dsv4_cu_rmsnorm(const float *x, const float *w, int64_t rows, int64_t n, float eps, float *y,
                    dsv4_stream s, dsv4_err *err);
/* out[r] = dsv4_mean_sq(x[r, :], n) (f32 [rows]), e.g. for mHC's
 * rsqrt(mean(z^2) + eps).  1 <= n <= DSV4_CU_NORM_MAX_N. */
int dsv4_cu_mean_sq(const float *x, int64_t rows, int64_t n, float *out, dsv4_stream s, dsv4_err *err);
/* dsv4_head_rms_bf16 on each row of q [rows, n] in place (the per-head
 * weightless norm of the query, rows = tokens x heads).  1 <= n. */
int dsv4_cu_head_rms_bf16(float *q, int64_t rows, int64_t n, float eps, dsv4_stream s, dsv4_err *err);

/* ---- RoPE (lib/ops.c dsv4_rope) --------------------------------------- */

/* For m < M and h < nh: dsv4_rope(x + (m*nh + h)*hd + hd - rd, rd, freqs,
 * pos, inverse) with pos = pos0 + m, or pos = positions[m] when positions
 * (int64 [M]) is not NULL.  freqs: f32 [rd/2] from dsv4_rope_freqs.
 * rd even, 0 <= rd <= hd (0: nothing to do), nh >= 1, pos0 >= 0 (the
 * position is converted to f32 as the CPU does, rounding beyond 2^24). */
int dsv4_cu_rope(float *x, int64_t M, int64_t nh, int64_t hd, int64_t rd, const float *freqs, int64_t pos0,
                 const int64_t *positions, int inverse, dsv4_stream s, dsv4_err *err);

/* ---- quantisation simulations and the Hadamard rotation (lib/codec.c) --- */

/* dsv4_fp8_sim / dsv4_fp4_sim(x[r, :], n, block) for each row of x [rows, n]
 * in place; block <= 0 means one block per row. */
int dsv4_cu_fp8_sim(float *x, int64_t rows, int64_t n, int block, dsv4_stream s, dsv4_err *err);
int dsv4_cu_fp4_sim(float *x, int64_t rows, int64_t n, int block, dsv4_stream s, dsv4_err *err);
/* dsv4_hadamard_bf16 (round_sums = 0) or dsv4_hadamard_bf16_2r (1) on each
 * row of x [rows, n] in place; n a power of two, 1 <= n <= 8192. */
int dsv4_cu_hadamard(float *x, int64_t rows, int n, int round_sums, dsv4_stream s, dsv4_err *err);

/* ---- stored KV vectors and indexer keys (lib/kvstate.c) ----------------- */

/* A KV state's layout: the fields of dsv4_kvstate that the codecs read, in
 * the order of kernels/kvcodec.cuh's dsv4k::kv_layout (entry_bytes and
 * ikey_bytes as dsv4_kv_sizes gives them; larger is allowed). */
typedef struct dsv4_cu_kv_layout {
    int compact;              /* 1: FP8/FP4 compact, 0: bf16 */
    int head_dim, rope_dim;   /* KV vector */
    int index_head_dim;       /* indexer key (even) */
    int entry_bytes, ikey_bytes;
} dsv4_cu_kv_layout;

/* rows x dsv4_kv_pack: x [rows, head_dim] is simulated in place exactly as
 * dsv4_kv_pack does it (compact: FP8 sim of the non-rope dims, block 64;
 * bf16: rounded) and row r is encoded to out + r * out_stride bytes
 * (entry_bytes of it, padding zeroed; out_stride >= entry_bytes). */
int dsv4_cu_kv_pack(float *x, int64_t rows, const dsv4_cu_kv_layout *L, uint8_t *out, int64_t out_stride,
                    dsv4_stream s, dsv4_err *err);
/* rows x dsv4_kv_unpack: x[r, :head_dim] from in + r * in_stride. */
int dsv4_cu_kv_unpack(const uint8_t *in, int64_t in_stride, int64_t rows, const dsv4_cu_kv_layout *L, float *x,
                      dsv4_stream s, dsv4_err *err);
/* rows x dsv4_ikey_pack: x [rows, index_head_dim] in place (compact: FP4
 * sim, block 32), row r to out + r * out_stride (ikey_bytes of it). */
int dsv4_cu_ikey_pack(float *x, int64_t rows, const dsv4_cu_kv_layout *L, uint8_t *out, int64_t out_stride,
                      dsv4_stream s, dsv4_err *err);
/* rows x dsv4_ikey_unpack. */
int dsv4_cu_ikey_unpack(const uint8_t *in, int64_t in_stride, int64_t rows, const dsv4_cu_kv_layout *L, float *x,
                        dsv4_stream s, dsv4_err *err);

/* ---- embedding (lib/engine.c dsv4_forward) ---------------------------- */

enum { DSV4_CU_EMBED_BF16 = 0, DSV4_CU_EMBED_F32 = 1 };
/* out[m, c, :] = row tokens[m] of the embedding weight [vocab, D] (bf16 bits
 * or f32, exact as dsv4_wt_row) for c < copies (copies = hc_mult gives the
 * forward pass's initial streams X; 1 gives x).  tokens: u32 [M].  A token
 * >= vocab reads nothing: its rows are NaN and, when bad (int32, device) is
 * not NULL, *bad is set to 1 (it is never cleared; zero it first). */
int dsv4_cu_embed(const uint32_t *tokens, int64_t M, const void *weight, int wtype, int64_t vocab, int64_t D,
                  int64_t copies, float *out, int32_t *bad, dsv4_stream s, dsv4_err *err);

/* ---- element-wise glue (lib/attn.c, engine.c, moe.c) ------------------- */

/* x[i] = round_bf16(x[i]) for i < n (compressor entries before the norm, the
 * MoE output). */
int dsv4_cu_round_bf16(float *x, int64_t n, dsv4_stream s, dsv4_err *err);
/* x[i] = round_bf16(x[i] * scale) (the indexer head weights: scale =
 * (float)(ihd^-0.5 * nih^-0.5) computed on the host in double). */
int dsv4_cu_scale_round_bf16(float *x, int64_t n, float scale, dsv4_stream s, dsv4_err *err);
/* g[m, i] += a[(pos0 + m) % r, i] for m < M, i < n (comp_project's ape add;
 * a: f32 [r, n]; pos0 >= 0, r >= 1). */
int dsv4_cu_add_rows(float *g, int64_t M, int64_t n, const float *a, int64_t r, int64_t pos0, dsv4_stream s,
                     dsv4_err *err);
/* X[m, c, i] = round_bf16(y[m, i] + X[m, c, i]) for c < copies (the MTP
 * block's e_proj + h_proj sum into its streams). */
int dsv4_cu_add_bcast_bf16(float *X, const float *y, int64_t M, int64_t copies, int64_t n, dsv4_stream s,
                           dsv4_err *err);

#ifdef __cplusplus
}
#endif

#endif
