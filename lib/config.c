/* config — V4 hyper-parameters and the derived tensor inventory (see config.h). */
#include "config.h"
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int get_i64(const dsv4_json *j, const char *key, int64_t *v, int required, int64_t def, dsv4_err *err)
{
    int rc = dsv4_json_get_i64(j, key, v, err);
    if (rc == DSV4_E_NOTFOUND && !required) {
        *v = def;
        return 0;
    }
    return rc ? dsv4_err_prefix(err, "config.json") : 0;
}

static int get_f64(const dsv4_json *j, const char *key, double *v, int required, double def, dsv4_err *err)
{
    int rc = dsv4_json_get_f64(j, key, v, err);
    if (rc == DSV4_E_NOTFOUND && !required) {
        *v = def;
        return 0;
    }
    return rc ? dsv4_err_prefix(err, "config.json") : 0;
}

#define REQ_I(key, field) do { if ((rc = get_i64(j, key, &c->field, 1, 0, err))) goto out; } while (0)
#define OPT_I(key, field, def) do { if ((rc = get_i64(j, key, &c->field, 0, def, err))) goto out; } while (0)
#define REQ_F(key, field) do { if ((rc = get_f64(j, key, &c->field, 1, 0, err))) goto out; } while (0)
#define OPT_F(key, field, def) do { if ((rc = get_f64(j, key, &c->field, 0, def, err))) goto out; } while (0)
#define BAD(...) do { rc = dsv4_err_set(err, DSV4_E_FORMAT, "config.json: " __VA_ARGS__); goto out; } while (0)

int dsv4_config_parse(dsv4_config *c, const char *text, size_t len, dsv4_err *err)
{
    dsv4_json *j = NULL;
    const dsv4_json *v, *rs;
    int rc;
    memset(c, 0, sizeof *c);
    rc = dsv4_json_parse(&j, text, len, 0, err);
    if (rc)
        return dsv4_err_prefix(err, "config.json");
    if (j->type != DSV4_JSON_OBJECT)
        BAD("not a JSON object");
    REQ_I("vocab_size", vocab_size);
    REQ_I("hidden_size", dim);
    REQ_I("num_hidden_layers", n_layers);
    REQ_I("num_attention_heads", n_heads);
    OPT_I("num_key_value_heads", n_kv_heads, 1);
    REQ_I("head_dim", head_dim);
    REQ_I("qk_rope_head_dim", rope_dim);
    REQ_I("q_lora_rank", q_lora_rank);
    REQ_I("o_groups", o_groups);
    REQ_I("o_lora_rank", o_lora_rank);
    REQ_I("sliding_window", window);
    REQ_I("n_routed_experts", n_routed_experts);
    OPT_I("n_shared_experts", n_shared_experts, 1);
    REQ_I("num_experts_per_tok", n_experts_per_tok);
    REQ_I("moe_intermediate_size", moe_inter_dim);
    OPT_I("num_hash_layers", n_hash_layers, 0);
    OPT_I("num_nextn_predict_layers", n_mtp_layers, 0);
    REQ_I("index_n_heads", index_n_heads);
    REQ_I("index_head_dim", index_head_dim);
    REQ_I("index_topk", index_topk);
    REQ_I("hc_mult", hc_mult);
    OPT_I("hc_sinkhorn_iters", hc_sinkhorn_iters, 20);
    OPT_I("max_position_embeddings", max_position, 1048576);
    OPT_I("bos_token_id", bos_id, 0);
    OPT_I("eos_token_id", eos_id, 1);
    OPT_F("routed_scaling_factor", route_scale, 1.0);
    OPT_F("swiglu_limit", swiglu_limit, 0.0);
    OPT_F("hc_eps", hc_eps, 1e-6);
    OPT_F("rms_norm_eps", norm_eps, 1e-6);
    REQ_F("rope_theta", rope_theta);
    OPT_F("compress_rope_theta", compress_rope_theta, c->rope_theta);
    c->norm_topk_prob = 1;
    if ((v = dsv4_json_get(j, "norm_topk_prob")) && (rc = dsv4_json_get_bool(j, "norm_topk_prob", &c->norm_topk_prob, err)))
        goto out;
    snprintf(c->score_func, sizeof c->score_func, "sqrtsoftplus");
    if ((v = dsv4_json_get(j, "scoring_func"))) {
        if (v->type != DSV4_JSON_STRING || v->len >= sizeof c->score_func)
            BAD("\"scoring_func\" must be a short string");
        memcpy(c->score_func, v->str, v->len + 1);
    }
    if (strcmp(c->score_func, "sqrtsoftplus") && strcmp(c->score_func, "softmax") && strcmp(c->score_func, "sigmoid"))
        BAD("unknown scoring_func \"%s\"", c->score_func);
    /* YaRN (ARCH.md §3.8); absent rope_scaling means no YaRN */
    c->rope_factor = 1;
    c->beta_fast = 32;
    c->beta_slow = 1;
    c->original_seq_len = 0;
    if ((rs = dsv4_json_get(j, "rope_scaling")) && rs->type == DSV4_JSON_OBJECT) {
        if ((rc = get_f64(rs, "factor", &c->rope_factor, 0, 1, err)) ||
            (rc = get_i64(rs, "original_max_position_embeddings", &c->original_seq_len, 0, 0, err)) ||
            (rc = get_f64(rs, "beta_fast", &c->beta_fast, 0, 32, err)) ||
            (rc = get_f64(rs, "beta_slow", &c->beta_slow, 0, 1, err)))
            goto out;
    } else if (rs && rs->type != DSV4_JSON_NULL) {
        BAD("\"rope_scaling\" must be an object or null");
    }
    c->expert_fp4 = 1;
    if ((v = dsv4_json_get(j, "expert_dtype"))) {
        if (v->type != DSV4_JSON_STRING || (strcmp(v->str, "fp4") && strcmp(v->str, "fp8")))
            BAD("\"expert_dtype\" must be \"fp4\" or \"fp8\"");
        c->expert_fp4 = !strcmp(v->str, "fp4");
    }
    c->block_n = c->block_k = 128;
    if ((v = dsv4_json_get(j, "quantization_config")) && v->type == DSV4_JSON_OBJECT) {
        const dsv4_json *q = dsv4_json_get(v, "quant_method"), *b = dsv4_json_get(v, "weight_block_size"),
                        *sf = dsv4_json_get(v, "scale_fmt");
        if (q && (q->type != DSV4_JSON_STRING || strcmp(q->str, "fp8")))
            BAD("quantization_config.quant_method must be \"fp8\"");
        if (sf && (sf->type != DSV4_JSON_STRING || strcmp(sf->str, "ue8m0")))
            BAD("quantization_config.scale_fmt must be \"ue8m0\"");
        if (b) {
            if (b->type != DSV4_JSON_ARRAY || b->len != 2 || !b->items[0].is_int || !b->items[1].is_int)
                BAD("quantization_config.weight_block_size must be [n, k]");
            c->block_n = (int64_t)b->items[0].num;
            c->block_k = (int64_t)b->items[1].num;
            if (c->block_n != 128 || c->block_k != 128)
                BAD("weight_block_size [%lld, %lld] is not supported (only [128, 128])",
                    (long long)c->block_n, (long long)c->block_k);
        }
    } else {
        BAD("no \"quantization_config\" object (an FP8 checkpoint is expected)");
    }
    v = dsv4_json_get(j, "compress_ratios");
    if (!v || v->type != DSV4_JSON_ARRAY)
        BAD("\"compress_ratios\" missing or not an array");
    /* sanity of the numbers before deriving anything from them */
    if (c->n_layers < 1 || c->n_layers + c->n_mtp_layers > DSV4_MAX_LAYERS || c->n_mtp_layers < 0)
        BAD("num_hidden_layers %lld / num_nextn_predict_layers %lld out of range",
            (long long)c->n_layers, (long long)c->n_mtp_layers);
    if ((int64_t)v->len != c->n_layers + c->n_mtp_layers)
        BAD("compress_ratios has %zu entries, expected num_hidden_layers + num_nextn_predict_layers = %lld",
            v->len, (long long)(c->n_layers + c->n_mtp_layers));
    c->n_ratios = (int)v->len;
    for (size_t i = 0; i < v->len; i++) {
        const dsv4_json *r = &v->items[i];
        if (r->type != DSV4_JSON_NUMBER || !r->is_int || (r->num != 0 && r->num != 4 && r->num != 128))
            BAD("compress_ratios[%zu] must be 0, 4 or 128", i);
        c->compress_ratios[i] = (int)r->num;
    }
    if (c->vocab_size < 2 || c->vocab_size > (1 << 24))
        BAD("vocab_size %lld out of range", (long long)c->vocab_size);
    if (c->dim < 128 || c->dim % 128)
        BAD("hidden_size %lld must be a positive multiple of 128", (long long)c->dim);
    if (c->head_dim % 64 || c->rope_dim <= 0 || c->rope_dim > c->head_dim || c->rope_dim % 2 ||
        (c->head_dim - c->rope_dim) % 64)
        BAD("head_dim %lld / qk_rope_head_dim %lld not supported", (long long)c->head_dim, (long long)c->rope_dim);
    if (c->n_heads < 1 || c->o_groups < 1 || c->n_heads % c->o_groups)
        BAD("num_attention_heads %lld must be a multiple of o_groups %lld", (long long)c->n_heads,
            (long long)c->o_groups);
    if (c->n_kv_heads != 1)
        BAD("num_key_value_heads must be 1 (shared K=V)");
    if (c->q_lora_rank < 128 || c->q_lora_rank % 128 || c->o_lora_rank < 1 || c->moe_inter_dim < 128 ||
        c->moe_inter_dim % 128 || c->window < 1 || c->hc_mult < 1 || c->hc_mult > 16)
        BAD("q_lora_rank, o_lora_rank, moe_intermediate_size, sliding_window or hc_mult out of range");
    if (c->n_routed_experts < 1 || c->n_experts_per_tok < 1 || c->n_experts_per_tok > c->n_routed_experts ||
        c->n_shared_experts < 0 || c->n_shared_experts > 1)
        BAD("expert counts out of range (routed %lld, per token %lld, shared %lld)",
            (long long)c->n_routed_experts, (long long)c->n_experts_per_tok, (long long)c->n_shared_experts);
    if (c->n_hash_layers < 0 || c->n_hash_layers > c->n_layers)
        BAD("num_hash_layers %lld out of range", (long long)c->n_hash_layers);
    if (c->index_n_heads < 1 || c->index_head_dim < c->rope_dim || c->index_head_dim % 32 || c->index_topk < 1)
        BAD("indexer sizes out of range");
    /* Ceilings far above any DeepSeek-V4 size (a model file carries its own
     * config.json, which may lie): products of a few sizes, as buffers are
     * sized, then stay far from overflowing int64. */
    if (c->dim > 65536 || c->head_dim > 65536 || c->n_heads > 65536 || c->q_lora_rank > 65536 ||
        c->o_lora_rank > 65536 || c->moe_inter_dim > 65536 || c->window > 65536 || c->n_routed_experts > 65536 ||
        c->index_n_heads > 65536 || c->index_head_dim > 65536 || c->index_topk > 65536)
        BAD("a size above 65536 (hidden_size %lld, head_dim %lld, num_attention_heads %lld, ...)",
            (long long)c->dim, (long long)c->head_dim, (long long)c->n_heads);
    if (c->hc_sinkhorn_iters < 0 || c->hc_sinkhorn_iters > 1000 || c->max_position < 1 ||
        c->max_position > (1 << 26))
        BAD("hc_sinkhorn_iters %lld or max_position_embeddings %lld out of range", (long long)c->hc_sinkhorn_iters,
            (long long)c->max_position);
    rc = 0;
out:
    dsv4_json_free(j);
    return rc;
}

/* ---- tensor inventory (ARCH.md §2) ---- */

struct inv {
    dsv4_tensor_spec *v;
    size_t n, cap;
    int oom;
};

static void add(struct inv *s, int layer, int role, dsv4_dtype dt, int64_t params, int routed,
                int64_t d0, int64_t d1, const char *fmt, ...) __attribute__((format(printf, 9, 10)));
static void add(struct inv *s, int layer, int role, dsv4_dtype dt, int64_t params, int routed,
                int64_t d0, int64_t d1, const char *fmt, ...)
{
    dsv4_tensor_spec *t;
    va_list ap;
    if (s->oom)
        return;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 1024;
        dsv4_tensor_spec *p = realloc(s->v, nc * sizeof *p);
        if (!p) {
            s->oom = 1;
            return;
        }
        s->v = p;
        s->cap = nc;
    }
    t = &s->v[s->n++];
    memset(t, 0, sizeof *t);
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->dtype = dt;
    t->ndim = d1 < 0 ? 1 : 2;
    t->shape[0] = d0;
    t->shape[1] = d1 < 0 ? 0 : d1;
    t->role = role;
    t->layer = layer;
    t->logical_params = params;
    t->routed = routed;
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* An FP8 linear [n, k] with its 128x128 block scales. */
static void fp8(struct inv *s, int layer, int64_t n, int64_t k, const char *pre, const char *name)
{
    add(s, layer, DSV4_ROLE_FP8_WEIGHT, DSV4_DT_F8_E4M3, n * k, 0, n, k, "%s%s.weight", pre, name);
    add(s, layer, DSV4_ROLE_SCALE, DSV4_DT_F8_E8M0, 0, 0, cdiv(n, 128), cdiv(k, 128), "%s%s.scale", pre, name);
}

/* A routed-expert linear, logical [n, k]: packed FP4 [n, k/2] + scales [n, k/32]. */
static void expert(const dsv4_config *c, struct inv *s, int layer, int64_t n, int64_t k, const char *pre,
                   const char *name, int routed)
{
    if (c->expert_fp4) {
        add(s, layer, DSV4_ROLE_FP4_WEIGHT, DSV4_DT_I8, n * k, routed, n, k / 2, "%s%s.weight", pre, name);
        add(s, layer, DSV4_ROLE_SCALE, DSV4_DT_F8_E8M0, 0, 0, n, k / 32, "%s%s.scale", pre, name);
    } else {
        add(s, layer, DSV4_ROLE_FP8_WEIGHT, DSV4_DT_F8_E4M3, n * k, routed, n, k, "%s%s.weight", pre, name);
        add(s, layer, DSV4_ROLE_SCALE, DSV4_DT_F8_E8M0, 0, 0, cdiv(n, 128), cdiv(k, 128), "%s%s.scale", pre, name);
    }
}

static void block(const dsv4_config *c, struct inv *s, int layer, const char *pre, int hash)
{
    const int64_t D = c->dim, hd = c->head_dim, H = c->n_heads, G = c->o_groups, hc = c->hc_mult;
    const int64_t mix = (2 + hc) * hc, I = c->moe_inter_dim, E = c->n_routed_experts;
    const int r = c->compress_ratios[layer];
    char p[64];
    add(s, layer, 0, DSV4_DT_BF16, D, 0, D, -1, "%sattn_norm.weight", pre);
    add(s, layer, 0, DSV4_DT_BF16, D, 0, D, -1, "%sffn_norm.weight", pre);
    for (int f = 0; f < 2; f++) {
        const char *w = f ? "ffn" : "attn";
        add(s, layer, 0, DSV4_DT_F32, mix * hc * D, 0, mix, hc * D, "%shc_%s_fn", pre, w);
        add(s, layer, 0, DSV4_DT_F32, mix, 0, mix, -1, "%shc_%s_base", pre, w);
        add(s, layer, 0, DSV4_DT_F32, 3, 0, 3, -1, "%shc_%s_scale", pre, w);
    }
    snprintf(p, sizeof p, "%sattn.", pre);
    fp8(s, layer, c->q_lora_rank, D, p, "wq_a");
    add(s, layer, 0, DSV4_DT_BF16, c->q_lora_rank, 0, c->q_lora_rank, -1, "%sq_norm.weight", p);
    fp8(s, layer, H * hd, c->q_lora_rank, p, "wq_b");
    fp8(s, layer, hd, D, p, "wkv");
    add(s, layer, 0, DSV4_DT_BF16, hd, 0, hd, -1, "%skv_norm.weight", p);
    fp8(s, layer, G * c->o_lora_rank, H * hd / G, p, "wo_a");
    fp8(s, layer, D, G * c->o_lora_rank, p, "wo_b");
    add(s, layer, 0, DSV4_DT_F32, H, 0, H, -1, "%sattn_sink", p);
    if (r) {
        const int64_t co = r == 4 ? 2 : 1;
        add(s, layer, 0, DSV4_DT_BF16, co * hd * D, 0, co * hd, D, "%scompressor.wkv.weight", p);
        add(s, layer, 0, DSV4_DT_BF16, co * hd * D, 0, co * hd, D, "%scompressor.wgate.weight", p);
        add(s, layer, 0, DSV4_DT_F32, r * co * hd, 0, r, co * hd, "%scompressor.ape", p);
        add(s, layer, 0, DSV4_DT_BF16, hd, 0, hd, -1, "%scompressor.norm.weight", p);
    }
    if (r == 4) {
        const int64_t ih = c->index_n_heads, id = c->index_head_dim;
        char ip[80];
        snprintf(ip, sizeof ip, "%sindexer.", p);
        fp8(s, layer, ih * id, c->q_lora_rank, ip, "wq_b");
        add(s, layer, 0, DSV4_DT_BF16, ih * D, 0, ih, D, "%sweights_proj.weight", ip);
        add(s, layer, 0, DSV4_DT_BF16, 2 * id * D, 0, 2 * id, D, "%scompressor.wkv.weight", ip);
        add(s, layer, 0, DSV4_DT_BF16, 2 * id * D, 0, 2 * id, D, "%scompressor.wgate.weight", ip);
        add(s, layer, 0, DSV4_DT_F32, 4 * 2 * id, 0, 4, 2 * id, "%scompressor.ape", ip);
        add(s, layer, 0, DSV4_DT_BF16, id, 0, id, -1, "%scompressor.norm.weight", ip);
    }
    snprintf(p, sizeof p, "%sffn.", pre);
    add(s, layer, 0, DSV4_DT_BF16, E * D, 0, E, D, "%sgate.weight", p);
    if (hash)
        add(s, layer, DSV4_ROLE_HASH_TABLE, DSV4_DT_I64, 0, 0, c->vocab_size, c->n_experts_per_tok,
            "%sgate.tid2eid", p);
    else
        add(s, layer, 0, DSV4_DT_F32, E, 0, E, -1, "%sgate.bias", p);
    for (int64_t e = 0; e < E; e++) {
        char ep[96];
        snprintf(ep, sizeof ep, "%sexperts.%lld.", p, (long long)e);
        expert(c, s, layer, I, D, ep, "w1", 1);
        expert(c, s, layer, D, I, ep, "w2", 1);
        expert(c, s, layer, I, D, ep, "w3", 1);
    }
    if (c->n_shared_experts) {
        char sp[96];
        snprintf(sp, sizeof sp, "%sshared_experts.", p);
        fp8(s, layer, I, D, sp, "w1");
        fp8(s, layer, D, I, sp, "w2");
        fp8(s, layer, I, D, sp, "w3");
    }
}

int dsv4_config_tensors(const dsv4_config *c, dsv4_tensor_spec **specs, size_t *n, dsv4_err *err)
{
    struct inv s = { 0 };
    const int64_t D = c->dim, V = c->vocab_size, hc = c->hc_mult;
    add(&s, -1, 0, DSV4_DT_BF16, V * D, 0, V, D, "embed.weight");
    add(&s, -1, 0, DSV4_DT_BF16, V * D, 0, V, D, "head.weight");
    add(&s, -1, 0, DSV4_DT_BF16, D, 0, D, -1, "norm.weight");
    add(&s, -1, 0, DSV4_DT_F32, hc * hc * D, 0, hc, hc * D, "hc_head_fn");
    add(&s, -1, 0, DSV4_DT_F32, hc, 0, hc, -1, "hc_head_base");
    add(&s, -1, 0, DSV4_DT_F32, 1, 0, 1, -1, "hc_head_scale");
    for (int l = 0; l < c->n_layers; l++) {
        char pre[32];
        snprintf(pre, sizeof pre, "layers.%d.", l);
        block(c, &s, l, pre, l < c->n_hash_layers);
    }
    for (int k = 0; k < c->n_mtp_layers; k++) {
        int layer = (int)c->n_layers + k;
        char pre[32];
        snprintf(pre, sizeof pre, "mtp.%d.", k);
        block(c, &s, layer, pre, 0);
        fp8(&s, layer, D, D, pre, "e_proj");
        fp8(&s, layer, D, D, pre, "h_proj");
        add(&s, layer, 0, DSV4_DT_BF16, D, 0, D, -1, "%senorm.weight", pre);
        add(&s, layer, 0, DSV4_DT_BF16, D, 0, D, -1, "%shnorm.weight", pre);
        add(&s, layer, 0, DSV4_DT_BF16, D, 0, D, -1, "%snorm.weight", pre);
        add(&s, layer, 0, DSV4_DT_F32, hc * hc * D, 0, hc, hc * D, "%shc_head_fn", pre);
        add(&s, layer, 0, DSV4_DT_F32, hc, 0, hc, -1, "%shc_head_base", pre);
        add(&s, layer, 0, DSV4_DT_F32, 1, 0, 1, -1, "%shc_head_scale", pre);
    }
    if (s.oom) {
        free(s.v);
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    }
    *specs = s.v;
    *n = s.n;
    return 0;
}

void dsv4_config_params(const dsv4_config *c, const dsv4_tensor_spec *specs, size_t n, dsv4_param_counts *pc)
{
    int64_t routed_backbone = 0, embed = c->vocab_size * c->dim;
    memset(pc, 0, sizeof *pc);
    for (size_t i = 0; i < n; i++) {
        const dsv4_tensor_spec *t = &specs[i];
        int mtp = t->layer >= c->n_layers;
        pc->total += t->logical_params;
        if (mtp)
            pc->mtp += t->logical_params;
        else if (t->routed)
            routed_backbone += t->logical_params;
    }
    pc->backbone = pc->total - pc->mtp;
    pc->routed = routed_backbone;
    /* active: all non-routed backbone weights + k/E of the routed ones */
    pc->active = pc->backbone - routed_backbone + routed_backbone / c->n_routed_experts * c->n_experts_per_tok;
    pc->active_no_embed = pc->active - embed;
}

int dsv4_genconfig_parse(dsv4_genconfig *g, const char *text, size_t len, dsv4_err *err)
{
    dsv4_json *j = NULL;
    const dsv4_json *e;
    int rc;
    memset(g, 0, sizeof *g);
    g->do_sample = -1;
    if ((rc = dsv4_json_parse(&j, text, len, 0, err)))
        return dsv4_err_prefix(err, "generation_config.json");
    if (j->type != DSV4_JSON_OBJECT) {
        rc = dsv4_err_set(err, DSV4_E_FORMAT, "generation_config.json: not a JSON object");
        goto out;
    }
    if ((e = dsv4_json_get(j, "eos_token_id")) && e->type != DSV4_JSON_NULL) {
        size_t n = e->type == DSV4_JSON_ARRAY ? e->len : 1;
        for (size_t i = 0; i < n && g->n_eos < DSV4_GEN_MAX_EOS; i++) {
            const dsv4_json *x = e->type == DSV4_JSON_ARRAY ? dsv4_json_at(e, i) : e;
            if (x->type != DSV4_JSON_NUMBER || !x->is_int || x->num < 0 || x->num > 4294967295.0) {
                rc = dsv4_err_set(err, DSV4_E_FORMAT, "generation_config.json: eos_token_id is not a token id "
                                  "or a list of them");
                goto out;
            }
            g->eos[g->n_eos++] = (int64_t)x->num;
        }
    }
#define OPT(key, call, flag) \
    if (dsv4_json_get(j, key) && dsv4_json_get(j, key)->type != DSV4_JSON_NULL) { \
        if ((rc = call)) { dsv4_err_prefix(err, "generation_config.json"); goto out; } \
        flag = 1; \
    }
    OPT("temperature", dsv4_json_get_f64(j, "temperature", &g->temperature, err), g->has_temperature)
    OPT("top_p", dsv4_json_get_f64(j, "top_p", &g->top_p, err), g->has_top_p)
    OPT("top_k", dsv4_json_get_i64(j, "top_k", &g->top_k, err), g->has_top_k)
#undef OPT
    if (dsv4_json_get(j, "do_sample") && (rc = dsv4_json_get_bool(j, "do_sample", &g->do_sample, err))) {
        dsv4_err_prefix(err, "generation_config.json");
        goto out;
    }
    rc = 0;
out:
    dsv4_json_free(j);
    return rc;
}
