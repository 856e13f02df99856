/* cuengine_impl — what cuengine.c (weights, KV state) and cuforward.c (the
 * pass) share.  Internal to lib/; only in CUDA builds. */
#ifndef DSV4_CUENGINE_IMPL_H
#define DSV4_CUENGINE_IMPL_H

#include <stddef.h>

#include "cuengine.h"
#include "engine_impl.h"
#include "gpu.h"
#include "gpu_moe.h"
#include "gpu_sample.h"

/* Device scratch for one forward call, grown on demand (cuforward.c). */
typedef struct dsv4_cuscratch {
    void *p;
    size_t cap;
} dsv4_cuscratch;

struct dsv4_cuengine {
    dsv4_config c;
    dsv4_engine *cpu;        /* borrowed: config, host copies of the mHC scales */
    dsv4_engine w;           /* the same views with DEVICE pointers (w.pool unused) */
    void **allocs;           /* every device allocation of the weights */
    size_t n_allocs, cap_allocs;
    uint64_t bytes;
    dsv4_cu_moe_layer *moe;  /* [n_ratios] the MoE kernels' view of each layer */
    dsv4_cuscratch sc;
    float *last_lg;          /* [vocab] the last logits row computed (sampling) */
    int have_lg;
    dsv4_cu_sampler *smp;    /* made on the first sample */
    void *smp_io;            /* seed, pos, token, status of one draw */
};

/* A dsv4_kvstate whose buffers (win, ent, ikey, ckv, csc, ikv, isc) are
 * device memory; counters and capacities are host values. */
struct dsv4_cukv {
    dsv4_kvstate s;
};

int  dsv4_cukv_reserve(dsv4_cukv *d, int l, int64_t n, dsv4_err *err);
void dsv4_cuscratch_free(dsv4_cuscratch *sc);

#endif
