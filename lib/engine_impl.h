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

/* mHC (ARCH.md §4.2) outside an engine, for the engine and the GPU kernels'
 * tests: hc streams of width D; eps values as the engine casts them to f32. */
typedef struct dsv4_hc_dims {
    int64_t hc, D;
    float norm_eps, hc_eps;
    int64_t iters;                /* Sinkhorn iterations */
} dsv4_hc_dims;
/* HCPre: x[M, D], post[M, hc], comb[M, hc, hc] from the streams X[M, hc, D]. */
int dsv4_hc_pre(dsv4_pool *pool, const dsv4_hc_w *h, const dsv4_hc_dims *d, const float *X, int64_t M, float *x,
                float *post, float *comb, dsv4_err *err);
/* HCPost: X'_k = bf16(post_k f + sum_j C_jk X_j), in place on X[M, hc, D]. */
void dsv4_hc_post(const dsv4_hc_dims *d, const float *f, float *X, int64_t M, const float *post, const float *comb);
/* HCHead + final RMSNorm with weight nw[D]: u[M, D]. */
int dsv4_hc_head(dsv4_pool *pool, const dsv4_hc_w *h, const dsv4_hc_dims *d, const float *nw, const float *X,
                 int64_t M, float *u, dsv4_err *err);

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

#endif
