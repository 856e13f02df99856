/* pool — a fixed set of worker threads for data-parallel loops.
 *
 * dsv4_pool_for splits [0, n) into chunks of at least `grain` items and runs
 * fn on them from the workers and the calling thread, returning when all are
 * done.  Chunks are handed out in order from an atomic counter, so which
 * thread computes which chunk varies between runs: callers must make each
 * item's result independent of that (no shared accumulators), which keeps
 * the engine's results bit-identical for any thread count.
 *
 * Ownership: the caller owns the pool; free it with dsv4_pool_free.  One
 * dsv4_pool_for at a time per pool (the engine serialises its calls). */
#ifndef DSV4_POOL_H
#define DSV4_POOL_H

#include <stdint.h>

#include "err.h"

typedef struct dsv4_pool dsv4_pool;

/* fn(ctx, i0, i1, tid): process items [i0, i1); tid in [0, threads). */
typedef void (*dsv4_pool_fn)(void *ctx, int64_t i0, int64_t i1, int tid);

/* threads <= 0: one per online CPU. */
int  dsv4_pool_new(dsv4_pool **out, int threads, dsv4_err *err);
void dsv4_pool_free(dsv4_pool *p);
int  dsv4_pool_threads(const dsv4_pool *p);
void dsv4_pool_for(dsv4_pool *p, int64_t n, int64_t grain, dsv4_pool_fn fn, void *ctx);

#endif
