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

/* Arguments of a forward call: at least one token, each below vocab_size
 * (pos0 names the position in the message). */
int dsv4_check_tokens(const dsv4_config *c, const uint32_t *tokens, int64_t n, int64_t pos0, dsv4_err *err);

/* Attention sub-layer of layer l for xn[M, D] at positions pos0.. (also
 * updates the layer's window, compressor and indexer state); out[M, D]. */
/* Sparse attention with the sink (ARCH.md §5.5, §5.6) for tasks [i0, i1) of
 * a batch of tokens, task = token * H + head (a dsv4_pool_for body; tid
 * picks the scratch rows).  Window vectors are win[p - wbase] for positions
 * p >= wbase; compressed vectors cent are HCA's [n][hd] (all visible ones)
 * or CSA's [token][topk][hd] (each token's nsel selections, decoded).  Also
 * the reference of the GPU kernel (tests/kernels/test_attn.c). */
struct dsv4_att_job {
    int64_t H, hd, W, rd;
    const float *sink;       /* [H] */
    const float *freqs;      /* rope table [rd/2] */
    const float *q;          /* [M, H*hd] */
    const float *win;        /* window vectors [(pos0 + M) - wbase][hd] */
    int64_t wbase, pos0;
    const float *cent;       /* compressed vectors: HCA [n][hd] shared; CSA [M][topk][hd] */
    const int64_t *nsel;     /* CSA: selections per token */
    int64_t topk;
    int ratio;
    float *o;                /* [M, H*hd] */
    int64_t maxslots;        /* >= W + the most compressed slots of a token */
    float *ssc;              /* [threads, maxslots] */
    const float **svp;       /* [threads, maxslots] */
};
void dsv4_att_tasks(void *ctx, int64_t i0, int64_t i1, int tid);

int dsv4_attn_chunk(dsv4_engine *e, int l, dsv4_kvstate *s, const float *xn, int64_t M, int64_t pos0,
                    float *out, dsv4_err *err);
/* One compressor of a layer (ARCH.md §5.3): the main one (d = head_dim,
 * c = 2 for ratio 4, 1 for ratio 128) or the indexer's (d = index_head_dim,
 * r = 4, c = 2, ikey = 1).  Exposed for the GPU kernel tests. */
typedef struct dsv4_comp {
    const float *ape, *norm, *freqs;  /* ape[r][c*d], norm[d], RoPE table[rope_dim/2] */
    float *kv, *sc;                   /* state rows [c*r][c*d] (k and gate score) */
    int64_t r, d, c, rope_dim;
    float eps;
    int ikey;                         /* 1: Hadamard + dsv4_ikey_pack, 0: dsv4_kv_pack */
} dsv4_comp;
/* g[M, c*d] += ape[(pos0 + m) % r]. */
void dsv4_comp_ape(const dsv4_comp *C, float *g, int64_t M, int64_t pos0);
/* Push the projections k, g[M, c*d] (ape included) of positions pos0.. into
 * the state; each completed entry j is finished and packed at
 * out + j * (ikey ? ikey_bytes : entry_bytes).  ent: scratch [d].  Returns
 * the number of entries completed. */
int64_t dsv4_comp_tokens(dsv4_comp *C, const dsv4_kvstate *s, const float *k, const float *g, int64_t M,
                         int64_t pos0, uint8_t *out, float *ent);
/* The lightning indexer's scores and top-k (ARCH.md §5.4) for the
 * processed queries qi[M, nih, ihd] and weights w[M, nih] of positions
 * pos0.. against the keys ikey[n_ent]: sel[M, topk] (descending score, ties
 * to the lower index), nsel[M].  scratch: [n_ent + index_head_dim].
 * Exposed for the GPU kernel tests (dsv4_attn_chunk runs it in parallel). */
void dsv4_index_rows(const dsv4_kvstate *s, const uint8_t *ikey, int64_t n_ent, int64_t nih, const float *qi,
                     const float *w, int64_t M, int64_t pos0, int64_t topk, int32_t *sel, int64_t *nsel,
                     float *scratch);
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
