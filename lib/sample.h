/* sample — choose the next token from a row of logits: greedy, or
 * temperature sampling with top-k, top-p (nucleus) and min-p filters, driven
 * by a caller-supplied uniform draw so that results are reproducible.
 *
 * The draw comes from dsv4_sample_uniform(seed, pos), a pure function of the
 * seed and the sequence position (no generator state to save): decoding 8
 * tokens in one go, or 4, saving, and 4 more, gives the same tokens.
 *
 * Ownership: a dsv4_sampler owns its scratch buffers (sized for one vocab);
 * free it with dsv4_sampler_free.  Not thread-safe: one sampler per thread.
 * dsv4_sample_check and dsv4_sample_uniform are pure and thread-safe. */
#ifndef DSV4_SAMPLE_H
#define DSV4_SAMPLE_H

#include <stdint.h>

#include "err.h"

typedef struct dsv4_sample_opts {
    double temperature;   /* 0 = greedy: argmax, the lowest id on ties (u not used) */
    double top_p;         /* keep the smallest set of most likely tokens whose probability sum >= top_p; 1 = off */
    int64_t top_k;        /* keep the k most likely tokens; 0 = off */
    double min_p;         /* drop tokens whose probability < min_p * the top probability; 0 = off */
} dsv4_sample_opts;
#define DSV4_SAMPLE_OPTS_INIT { 1.0, 1.0, 0, 0.0 }

/* Check ranges: temperature >= 0 and finite, 0 < top_p <= 1, top_k >= 0,
 * 0 <= min_p <= 1 (NaN fails every range).  0 or DSV4_E_INVALID naming the
 * option. */
int dsv4_sample_check(const dsv4_sample_opts *o, dsv4_err *err);

/* The uniform draw for the token at sequence position `pos` under `seed`:
 * a multiple of 2^-53 in [0, 1), a pure function of (seed, pos) (the seed
 * is mixed with splitmix64's finaliser, pos times the golden-ratio constant
 * added, and the sum mixed again).  Any pos is allowed. */
double dsv4_sample_uniform(uint64_t seed, int64_t pos);

/* Scratch for one sampler, sized for vocab (1 .. 2^32) tokens; reuse it for
 * every step (it holds about 32 bytes per token plus 0.4 MB). */
typedef struct dsv4_sampler dsv4_sampler;
int  dsv4_sampler_new(dsv4_sampler **out, int64_t vocab, dsv4_err *err);
void dsv4_sampler_free(dsv4_sampler *s);                  /* NULL is fine */

/* Choose *token from logits[vocab] with the draw u in [0, 1).
 *
 * temperature 0: the argmax, lowest id on ties, in one pass; u, top_k,
 * top_p and min_p are then not used (the argmax survives every filter).
 *
 * Otherwise, in double: weights w = exp((logit - max) / temperature) (the
 * top token has w = 1; probabilities are w / sum w).  Tokens are ordered by
 * decreasing logit, ties by lower id: that is decreasing probability, which
 * is strictly monotone in the logit.  Then
 *   top-k: keep the first k (k >= vocab: all);
 *   top-p: over those, keep the shortest prefix whose weight sum is
 *          >= top_p * their total (renormalised over the top-k survivors);
 *   min-p: of those, drop tokens with w < min_p * the top token's w;
 *   pick:  the first token where the running weight sum over the survivors
 *          exceeds u * their total.
 * A token whose weight underflows to 0 is never picked.  Sums are taken in
 * one fixed order (not always the sorted order, see sample.c), so the same
 * inputs always give the same token; a u within about 1e-12 (relative) of a
 * cumulative boundary may fall either side of it compared with another
 * summation order.
 *
 * +inf logits: the tokens with +inf share the probability equally and the
 * rest get 0 (the limit of the softmax); greedy takes the lowest id of them.
 *
 * Errors: a NaN logit is DSV4_E_RANGE ("logit of token N is NaN", the lowest
 * such N), all logits -inf is DSV4_E_RANGE, bad options or (temperature > 0)
 * u outside [0, 1) is DSV4_E_INVALID. */
int dsv4_sample(dsv4_sampler *s, const float *logits, const dsv4_sample_opts *o, double u,
                uint32_t *token, dsv4_err *err);

#endif
