/* config — the DeepSeek-V4 hyper-parameters from a Hugging Face config.json
 * (spec/ARCH.md §1) and everything derived from them: the expected tensor
 * inventory (names, shapes, dtypes, §2) and parameter counts (§11).
 *
 * Every dimension of the engine comes from here; nothing assumes Flash, Pro
 * or fixture sizes.  A dsv4_config is a plain value (no pointers): copy it
 * freely.  Thread-safe (pure functions). */
#ifndef DSV4_CONFIG_H
#define DSV4_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tensor.h"

#define DSV4_MAX_LAYERS 256   /* compress_ratios entries (layers + MTP) */

typedef struct dsv4_config {
    int64_t vocab_size, dim, n_layers, n_heads, n_kv_heads, head_dim, rope_dim;
    int64_t q_lora_rank, o_groups, o_lora_rank, window;
    int64_t n_routed_experts, n_shared_experts, n_experts_per_tok, moe_inter_dim;
    int64_t n_hash_layers, n_mtp_layers;
    int64_t index_n_heads, index_head_dim, index_topk;
    int64_t hc_mult, hc_sinkhorn_iters;
    int64_t original_seq_len, max_position, bos_id, eos_id;
    double route_scale, swiglu_limit, hc_eps, norm_eps;
    double rope_theta, compress_rope_theta, rope_factor, beta_fast, beta_slow;
    int norm_topk_prob;
    int expert_fp4;            /* routed experts packed e2m1 (1) or e4m3 (0) */
    int64_t block_n, block_k;  /* FP8 weight block [128, 128] */
    char score_func[32];       /* "sqrtsoftplus" */
    int n_ratios;              /* n_layers + n_mtp_layers */
    int compress_ratios[DSV4_MAX_LAYERS];
} dsv4_config;

/* Parse config.json text.  Missing required keys, wrong types and values the
 * engine cannot run (e.g. compress_ratios of the wrong length, ratios other
 * than 0/4/128, head_dim not a multiple of 64) are errors naming the key. */
int dsv4_config_parse(dsv4_config *c, const char *json, size_t len, dsv4_err *err);

/* Sampling defaults from a generation_config.json (all optional there). */
#define DSV4_GEN_MAX_EOS 8
typedef struct dsv4_genconfig {
    int n_eos;                         /* end-of-sequence ids (eos_token_id: a number or a list) */
    int64_t eos[DSV4_GEN_MAX_EOS];
    int has_temperature, has_top_p, has_top_k, do_sample;   /* do_sample: -1 absent */
    double temperature, top_p;
    int64_t top_k;
} dsv4_genconfig;

/* Parse generation_config.json text; keys that are absent leave their has_*
 * flag 0 (n_eos 0).  Wrong types are DSV4_E_FORMAT naming the key. */
int dsv4_genconfig_parse(dsv4_genconfig *g, const char *json, size_t len, dsv4_err *err);

/* Layer l's ratio; l == n_layers is the (first) MTP block. */
static inline int dsv4_config_ratio(const dsv4_config *c, int64_t l) { return c->compress_ratios[l]; }

/* Expected tensors. */
enum dsv4_role {
    DSV4_ROLE_OTHER = 0,
    DSV4_ROLE_FP8_WEIGHT,   /* e4m3 with a .scale sibling of 128x128 blocks */
    DSV4_ROLE_FP4_WEIGHT,   /* packed e2m1 (I8) with a .scale sibling of 1x32 groups */
    DSV4_ROLE_SCALE,        /* E8M0 scale of the weight named without ".scale" */
    DSV4_ROLE_HASH_TABLE    /* tid2eid: expert ids, must lie in [0, n_routed_experts) */
};

typedef struct dsv4_tensor_spec {
    char name[96];
    dsv4_dtype dtype;
    int ndim;
    int64_t shape[DSV4_MAX_DIMS];
    int role;
    int layer;              /* -1 global, 0..n_layers-1, n_layers + k for mtp.k */
    int64_t logical_params; /* elements counted as parameters (FP4: 2 per byte; 0 for scales/tables) */
    int routed;             /* 1 for routed-expert weights (active: k of E per token) */
} dsv4_tensor_spec;

/* Fill *specs (malloc'd, caller frees) with every tensor the config implies,
 * in checkpoint order: global, layers.0.., mtp.0.. */
int dsv4_config_tensors(const dsv4_config *c, dsv4_tensor_spec **specs, size_t *n, dsv4_err *err);

typedef struct dsv4_param_counts {
    int64_t total;          /* everything incl. MTP */
    int64_t backbone;       /* total without MTP */
    int64_t mtp;
    int64_t routed;         /* routed experts (all layers incl. MTP) */
    int64_t active;         /* per token, incl. embed and head, excl. MTP */
    int64_t active_no_embed;/* the model-card "active" figure */
} dsv4_param_counts;

void dsv4_config_params(const dsv4_config *c, const dsv4_tensor_spec *specs, size_t n, dsv4_param_counts *pc);

#endif
