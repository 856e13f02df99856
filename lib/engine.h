/* engine — the DeepSeek-V4 forward pass on the CPU (spec/ARCH.md §4–§8), with
 * the reference's numerics: prefill in chunks of any size from any position,
 * single-token decode, and the MTP draft block.
 *
 * Results do not depend on how a sequence is cut into chunks: feeding 700
 * tokens at once or 300 + 400 or one at a time gives the same logits and the
 * same dsv4_kvstate, bit for bit, and they do not depend on the thread count.
 *
 * Weights are read in place in their stored encodings through a lookup
 * callback (a .dsv4 model or a safetensors checkpoint); every dimension comes
 * from the config.  Ownership: the engine borrows the tensors (their owner
 * must outlive it) and owns its thread pool and small f32 copies of norm
 * weights.  One forward call at a time per engine. */
#ifndef DSV4_ENGINE_H
#define DSV4_ENGINE_H

#include <stdint.h>

#include "config.h"
#include "err.h"
#include "kvstate.h"
#include "model.h"
#include "tensor.h"

typedef struct dsv4_engine dsv4_engine;

/* Returns the tensor of that checkpoint name, or NULL. */
typedef const dsv4_tensor *(*dsv4_find_fn)(void *ctx, const char *name);

/* Bind every tensor the config implies (names, dtypes and shapes are checked;
 * an error names the first bad tensor).  threads <= 0: one per CPU. */
int  dsv4_engine_open(dsv4_engine **out, const dsv4_config *cfg, dsv4_find_fn find, void *ctx, int threads,
                      dsv4_err *err);
int  dsv4_engine_open_model(dsv4_engine **out, const dsv4_model *m, int threads, dsv4_err *err);
void dsv4_engine_close(dsv4_engine *e);
const dsv4_config *dsv4_engine_config(const dsv4_engine *e);
int  dsv4_engine_threads(const dsv4_engine *e);

enum dsv4_logits_mode {
    DSV4_LOGITS_NONE = 0,
    DSV4_LOGITS_LAST = 1,     /* logits: [vocab] of the chunk's last position */
    DSV4_LOGITS_ALL = 2       /* logits: [n, vocab] */
};

/* Run tokens[0..n) at positions s->n_tokens ... and advance the state.
 * hidden (may be NULL): [n, hc_mult, dim] residual streams after the last
 * layer (the MTP block's input).  Token ids must be < vocab_size.  On error
 * the state is unchanged only for argument errors; after a failure inside
 * the pass (out of memory) it must be discarded. */
int dsv4_forward(dsv4_engine *e, dsv4_kvstate *s, const uint32_t *tokens, int64_t n, int logits_mode,
                 float *logits, float *hidden, dsv4_err *err);

/* The logits of n positions from their last-layer residual streams
 * hidden[n, hc_mult, dim] (what dsv4_forward returns in hidden): the same
 * values, bit for bit, as dsv4_forward's logits for those positions.
 * logits: [n, vocab]. */
int dsv4_engine_logits(dsv4_engine *e, const float *hidden, int64_t n, float *logits, dsv4_err *err);

/* MTP draft block (ARCH.md §7) at positions s->n_mtp ...: row i combines the
 * backbone's last-layer streams hidden[i] (of position s->n_mtp + i) with
 * the embedding of next_tokens[i]; logits: [n, vocab] or the last row. */
int dsv4_mtp_forward(dsv4_engine *e, dsv4_kvstate *s, const float *hidden, const uint32_t *next_tokens,
                     int64_t n, int logits_mode, float *logits, dsv4_err *err);

#endif
