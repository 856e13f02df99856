/* codec — the number formats of DeepSeek-V4 checkpoints and of the reference
 * numerics (spec/ARCH.md §3, §10): bf16, e4m3 (OCP "fn"), e8m0 scales, packed
 * e2m1 (FP4, low nibble = even element), block dequantisation, and the
 * quantisation simulations the reference applies to activations and KV.
 *
 * Pure functions, no allocation, thread-safe.  Conversions to a narrow format
 * round to nearest even; e4m3 and e2m1 saturate (no infinities). */
#ifndef DSV4_CODEC_H
#define DSV4_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* bf16: upper 16 bits of an IEEE f32. */
float    dsv4_bf16_to_f32(uint16_t h);
uint16_t dsv4_f32_to_bf16(float f);           /* RNE as torch; NaN -> 0x7fc0 (quiet) */
float    dsv4_round_bf16(float f);            /* f32 -> bf16 -> f32 */

/* e4m3 (OCP fn): bias 7, max 448, no inf, 0x7f/0xff = NaN, subnormals. */
float    dsv4_e4m3_to_f32(uint8_t c);
uint8_t  dsv4_f32_to_e4m3(float f);           /* RNE, saturating to +-448; NaN -> 0x7f */

/* e8m0 scale byte b: 2^(b-127); 255 = NaN. */
float    dsv4_e8m0_to_f32(uint8_t b);

/* e2m1 nibble (bit3 sign, 2 exp bits, 1 mantissa bit): 0,.5,1,1.5,2,3,4,6. */
float    dsv4_e2m1_to_f32(uint8_t nibble);    /* only the low 4 bits are used */
uint8_t  dsv4_f32_to_e2m1(float f);           /* RNE on the grid, saturating to +-6; NaN -> +6 */

/* Smallest power of two >= p for p > 0 (the "ue8m0" scale of ARCH.md §3.2,
 * computed from the float bits: 2^(E(p) + [mantissa(p) != 0])).  The sign is
 * ignored; a subnormal p gives the exact answer (not the reference's 2^-126,
 * a case its amax floors rule out); 0 -> 0, inf -> inf, NaN -> NaN, and
 * p > 2^127 -> inf. */
float    dsv4_pow2_ceil(float p);

/* Dequantise rows [r0, r1) of an FP8 weight W[N,K] (e4m3 codes, row-major)
 * with E8M0 block scales S[ceil(N/128), ceil(K/128)] into out[(r1-r0)*K]. */
void dsv4_dequant_fp8_rows(const uint8_t *w, const uint8_t *s, int64_t n, int64_t k,
                           int64_t r0, int64_t r1, float *out);

/* Dequantise rows [r0, r1) of a packed FP4 weight (logical [N,K], bytes
 * [N, K/2], low nibble = even k) with E8M0 scales S[N, K/32] into out.
 * (For K not a multiple of 32 / 2 the rows are ceil(K/2) bytes and
 * ceil(K/32) scales; the checkpoint never has such K.) */
void dsv4_dequant_fp4_rows(const uint8_t *w, const uint8_t *s, int64_t n, int64_t k,
                           int64_t r0, int64_t r1, float *out);

/* ARCH.md §3.2: quantise one row x[k] (values already bf16-representable)
 * to e4m3 codes q[k] with one power-of-two scale per `block` columns
 * (scales[ceil(k/block)], amax floor 1e-4, max 448).  block = 128 for GEMM
 * inputs; the last block may be short.  block <= 0 means one block for the
 * whole row (likewise in the two simulations below). */
void dsv4_act_quant_row(const float *x, int64_t k, int block, uint8_t *q, float *scales);

/* ARCH.md §3.5: in-place FP8 simulation with power-of-two scales per
 * `block` (64 for KV) on x[0..n): x = bf16(e4m3(x/s) * s). */
void dsv4_fp8_sim(float *x, int64_t n, int block);

/* ARCH.md §3.6: in-place FP4 simulation, block 32, amax floor 6*2^-126. */
void dsv4_fp4_sim(float *x, int64_t n, int block);

/* ARCH.md §3.7: in-place Hadamard rotation (Sylvester order, scaled by
 * 1/sqrt(n)), n a power of two (otherwise x is left unchanged); f32 compute
 * with the reference's butterfly order, result rounded to bf16. */
void dsv4_hadamard_bf16(float *x, int n);
/* The same rotation done as a bf16 matmul: sums rounded to bf16, then the
 * scale applied and rounded again. */
void dsv4_hadamard_bf16_2r(float *x, int n);

#endif
