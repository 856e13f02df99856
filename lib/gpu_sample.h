/* gpu_sample — the token choice of lib/sample.c (dsv4_sample) on the GPU for
 * one or many rows of logits: greedy, temperature, top-k, top-p, min-p,
 * driven by the draw dsv4_sample_uniform(seed, pos) computed on the device.
 *
 * Same semantics as sample.h, step for step: the kernel reproduces the CPU's
 * orders of summation (the top-k list summed in sorted order; otherwise the
 * weights bucketed by their top 16 bits, each bucket summed in id order, the
 * buckets from the top down, and a cut bucket sorted by (logit desc, id asc)
 * and summed from the buckets above it), so the same logits, options and
 * draw give the same token.  The one difference on a GPU: the weights
 * exp((logit - max) / T) come from CUDA's double exp (<= 1 ulp from glibc's),
 * so a draw or top-p/min-p threshold within ~1e-15 (relative) of a
 * cumulative boundary may fall on the other side; on the emulator (glibc's
 * exp) the tokens are identical, and the tests require that.
 *
 * Pointers in dsv4_cu_sample_args are device pointers.  A dsv4_cu_sampler
 * owns device scratch for up to max_rows rows of one vocab (24 to 32 bytes
 * per token plus 200 KB, per row); one call at a time per sampler.  The
 * kernel uses 128 KB of dynamic shared memory per block (one row). 
 *
 * Per-row status (the CPU's errors, reported per row since rows are
 * independent): 0 = token written; n + 1 = logit n is NaN (the lowest such
 * n; DSV4_E_RANGE on the CPU); -1 = all logits -inf (DSV4_E_RANGE); -2 =
 * the draw u[r] is not in [0, 1) (DSV4_E_INVALID); -3 = internal error
 * (DSV4_E_BUG).  dsv4_cu_sample_status turns one into the CPU's error. */
#ifndef DSV4_GPU_SAMPLE_H
#define DSV4_GPU_SAMPLE_H

#include <stdint.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

#include "sample.h"      /* a C header without its own extern "C" */

typedef struct dsv4_cu_sampler dsv4_cu_sampler;

/* Scratch for rows of vocab (1 .. 2^31 - 1) tokens, up to max_rows (>= 1)
 * rows per call. */
int  dsv4_cu_sampler_new(dsv4_cu_sampler **out, int64_t vocab, int64_t max_rows, dsv4_err *err);
void dsv4_cu_sampler_free(dsv4_cu_sampler *s);    /* NULL is fine */

typedef struct dsv4_cu_sample_args {
    const float *logits;      /* [rows, ld], row r at logits + r * ld */
    int64_t rows, ld;         /* 0 <= rows <= max_rows, ld >= vocab */
    const uint64_t *seed;     /* [rows]: u[r] = dsv4_sample_uniform(seed[r], pos[r]) */
    const int64_t *pos;       /* [rows] */
    const double *u;          /* [rows] the draws themselves, or NULL (then seed, pos) */
    uint32_t *token;          /* [rows] out */
    int64_t *status;          /* [rows] out: 0 or an error as above */
} dsv4_cu_sample_args;

/* dsv4_sample for every row with options o (host pointer, one set for all
 * rows; checked by dsv4_sample_check).  Temperature 0: the argmax, lowest id
 * on ties; the draw is not used (seed, pos, u may be NULL). */
int dsv4_cu_sample(dsv4_cu_sampler *s, const dsv4_cu_sample_args *a, const dsv4_sample_opts *o, dsv4_stream st,
                   dsv4_err *err);

/* A row's status as dsv4_sample reports it: 0, or the DSV4_E_* code with
 * the CPU's message (vocab for "all N logits are -inf"). */
int dsv4_cu_sample_status(int64_t status, int64_t vocab, dsv4_err *err);

#ifdef __cplusplus
}
#endif

#endif
