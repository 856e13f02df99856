/* engine_impl — weights and helpers shared by the parts of the CPU forward
 * pass (engine.c, attn.c, moe.c).  Internal to lib/. */
#ifndef DSV4_ENGINE_IMPL_H
#define DSV4_ENGINE_IMPL_H

#include "engine.h"
#include "ops.h"
#include "pool.h"

typedef struct dsv4_hc_w {        /* one mHC mixing site */
    dsv4_wt fn;                   /* F32 [n_out, hc*D] */
    float *base, *scale;          /* [n_out], [3 or 1] */
} dsv4_hc_w;

typedef struct dsv4_layer_w {
    int ratio, hash;
    const float *freqs;           /* rope table of this layer [rope_dim/2] */
    float *attn_norm, *ffn_norm;
    dsv4_hc_w hc_attn, hc_ffn;
    /* attention */
    dsv4_wt wq_a, wq_b, wkv, wo_a, wo_b;
    float *q_norm, *kv_norm, *sink;
    /* compressor (ratio > 0) */
    dsv4_wt c_wkv, c_wgate;
    float *c_ape, *c_norm;
    /* indexer (ratio 4) */
    dsv4_wt i_wq_b, i_wproj, ic_wkv, ic_wgate;
    float *ic_ape, *ic_norm;
    /* MoE */
    dsv4_wt gate;
    float *gate_bias;             /* NULL on hash layers */
    const uint8_t *tid2eid;       /* I64 [vocab, k] on hash layers */
    dsv4_wt *w1, *w2, *w3;        /* [n_routed_experts] */
    dsv4_wt sw1, sw2, sw3;
    /* MTP extras */
    dsv4_wt e_proj, h_proj;
    float *enorm, *hnorm, *mnorm;
    dsv4_hc_w hc_head;
} dsv4_layer_w;

struct dsv4_engine {
    dsv4_config c;
    dsv4_pool *pool;
    dsv4_wt embed, head;
    float *norm;
    dsv4_hc_w hc_head;
    dsv4_layer_w *layers;         /* [n_ratios]: backbone then MTP blocks */
    float *freqs_swa, *freqs_comp;
};

/* Attention sub-layer of layer l for xn[M, D] at positions pos0.. (also
 * updates the layer's window, compressor and indexer state); out[M, D]. */
int dsv4_attn_chunk(dsv4_engine *e, int l, dsv4_kvstate *s, const float *xn, int64_t M, int64_t pos0,
                    float *out, dsv4_err *err);
/* MoE sub-layer of layer l for xn[M, D] with the tokens' ids; out[M, D]. */
int dsv4_moe_chunk(dsv4_engine *e, int l, const float *xn, const uint32_t *tokens, int64_t M, float *out,
                   dsv4_err *err);
/* Its two steps after the router's f32 GEMM sc[M, E] = xn gate^T
 * (dsv4_linear, no rounding): routing turns sc into scores in place and picks
 * sel[M, K] with weights wsel[M, K] (ARCH.md §6 steps 2-4); the experts step
 * computes out[M, D] from xn and that routing (steps 5-6).  Exposed for the
 * GPU kernels' tests (tests/kernels/test_moe.c). */
int dsv4_moe_route(const dsv4_engine *e, int l, float *sc, const uint32_t *tokens, int64_t M, int32_t *sel,
                   float *wsel, dsv4_err *err);
int dsv4_moe_experts(dsv4_engine *e, int l, const float *xn, const int32_t *sel, const float *wsel, int64_t M,
                     float *out, dsv4_err *err);

#endif
