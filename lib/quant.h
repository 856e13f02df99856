/* quant — the low-bit block formats that dsv4-quant re-encodes weights into
 * (dsv4-model(5), "Quantised weights"): Q2 and Q3, for matrices W[n, k]
 * stored row-major with blocks along k.
 *
 *   Q2: 64 weights per block, 16 bytes of 2-bit codes, 1 scale byte
 *       -> 2.125 bits per weight.  Level of code c: c - 2 (-2, -1, 0, 1).
 *   Q3: 32 weights per block, 12 bytes (8 bytes of low 2 bits, then 4 bytes
 *       of high bits), 1 scale byte -> 3.25 bits per weight.  Levels
 *       -6, -4, -2, -1, 0, 1, 2, 4 (a subset of twice the e2m1 grid, so
 *       FP4 blocks that use few magnitudes stay exact).
 *
 * Weight element i of a block (0-based along k) has its low two bits at bit
 * 2i of the block's first 8 (Q3) or 16 (Q2) bytes read as a little-endian
 * integer; Q3 adds its high bit at bit i of the last 4 bytes.  Codes and
 * scales are separate tensors (X.weight: [n, k/4] or [n, 3k/8] bytes;
 * X.scale: [n, k/B] QS8), so a row's codes are contiguous, 4-byte aligned
 * blocks and its scales one contiguous run: a GPU thread loads a u32 of
 * codes and unpacks 16 (Q2) or, with the high-bit word, 32 (Q3) weights with
 * shifts and masks.
 *
 * QS8 scale byte s: bit 7 is the sign of the block scale (a negative scale
 * mirrors the asymmetric level table), bits 6..0 an exponent e in quarter
 * octaves: |d| = 2^((e - 96) / 4), e = 0 meaning d = 0 (an all-zero block).
 * Weight = level(code) * d.
 *
 * Pure functions, no allocation, thread-safe, deterministic (no libm
 * transcendental decides a code). */
#ifndef DSV4_QUANT_H
#define DSV4_QUANT_H

#include <stdint.h>

enum dsv4_qfmt { DSV4_QF_Q2 = 0, DSV4_QF_Q3 = 1, DSV4_QF_COUNT };

typedef struct dsv4_qfmt_info {
    const char *name;    /* "Q2", "Q3" */
    int block;           /* weights per block (64, 32) */
    int block_bytes;     /* code bytes per block (16, 12) */
    int nlevels;
    const float *levels; /* [nlevels], in units of the block scale */
} dsv4_qfmt_info;

const dsv4_qfmt_info *dsv4_qfmt_get(int fmt);

/* Value of a QS8 scale byte (exact: a power of 2^(1/4) stored as f32). */
float dsv4_qs8_to_f32(uint8_t s);

/* Encode one row x[k] (k a multiple of the block size) into codes
 * (k / block * block_bytes bytes) and scales (k / block bytes).  Each block
 * gets the scale among nearby quarter-octave candidates and both signs that
 * minimises its squared error, codes nearest to x / d (ties to the smaller
 * level).  Non-finite inputs are treated as 0. */
void dsv4_quant_row(int fmt, const float *x, int64_t k, uint8_t *codes, uint8_t *scales);

/* Levels of a row's codes without the scales: out[k] = level(code). */
void dsv4_quant_levels(int fmt, const uint8_t *codes, int64_t k, float *out);

/* Dequantise rows [r0, r1) of W[n, k] into out[(r1 - r0) * k]. */
void dsv4_quant_dequant_rows(int fmt, const uint8_t *codes, const uint8_t *scales, int64_t k, int64_t r0,
                             int64_t r1, float *out);

#endif
