/* config: parsing, validation errors, the derived inventory and the
 * parameter counts of the real Flash and Pro configs (spec/ARCH.md §11). */
#include "test.h"
#include "config.h"
#include "convert.h"

#include <stdint.h>

#define COMMON \
    "\"num_key_value_heads\": 1, \"head_dim\": 512, \"qk_rope_head_dim\": 64, \"sliding_window\": 128, " \
    "\"n_shared_experts\": 1, \"num_experts_per_tok\": 6, \"scoring_func\": \"sqrtsoftplus\", " \
    "\"norm_topk_prob\": true, \"swiglu_limit\": 10.0, \"num_hash_layers\": 3, \"num_nextn_predict_layers\": 1, " \
    "\"index_n_heads\": 64, \"index_head_dim\": 128, \"hc_mult\": 4, \"hc_sinkhorn_iters\": 20, \"hc_eps\": 1e-06, " \
    "\"rms_norm_eps\": 1e-06, \"rope_theta\": 10000.0, \"compress_rope_theta\": 160000.0, " \
    "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 16.0, \"original_max_position_embeddings\": 65536, " \
    "\"beta_fast\": 32, \"beta_slow\": 1}, \"max_position_embeddings\": 1048576, \"bos_token_id\": 0, " \
    "\"eos_token_id\": 1, \"expert_dtype\": \"fp4\", \"quantization_config\": {\"activation_scheme\": \"dynamic\", " \
    "\"fmt\": \"e4m3\", \"quant_method\": \"fp8\", \"scale_fmt\": \"ue8m0\", \"weight_block_size\": [128, 128]}"

static void build(char *out, size_t cap, int flash)
{
    int n = flash ? 43 : 61;
    size_t o = (size_t)snprintf(out, cap,
        flash ? "{\"vocab_size\": 129280, \"hidden_size\": 4096, \"num_hidden_layers\": 43, "
                "\"num_attention_heads\": 64, \"q_lora_rank\": 1024, \"o_groups\": 8, \"o_lora_rank\": 1024, "
                "\"n_routed_experts\": 256, \"moe_intermediate_size\": 2048, \"routed_scaling_factor\": 1.5, "
                "\"index_topk\": 512, " COMMON ", \"compress_ratios\": ["
              : "{\"vocab_size\": 129280, \"hidden_size\": 7168, \"num_hidden_layers\": 61, "
                "\"num_attention_heads\": 128, \"q_lora_rank\": 1536, \"o_groups\": 16, \"o_lora_rank\": 1024, "
                "\"n_routed_experts\": 384, \"moe_intermediate_size\": 3072, \"routed_scaling_factor\": 2.5, "
                "\"index_topk\": 1024, " COMMON ", \"compress_ratios\": [");
    for (int l = 0; l < n; l++) {
        int r = flash ? (l < 2 ? 0 : l % 2 == 0 ? 4 : 128) : (l < 2 ? 128 : l % 2 == 0 ? 4 : 128);
        o += (size_t)snprintf(out + o, cap - o, "%d, ", r);
    }
    snprintf(out + o, cap - o, "0]}");
}

static void counts(int flash, dsv4_param_counts *pc, size_t *n_tensors, int *dt_hist)
{
    char text[8192];
    dsv4_config c;
    dsv4_tensor_spec *s;
    size_t n;
    dsv4_err err = DSV4_ERR_INIT;
    build(text, sizeof text, flash);
    CHECK(dsv4_config_parse(&c, text, strlen(text), &err) == 0);
    CHECK(dsv4_config_tensors(&c, &s, &n, &err) == 0);
    dsv4_config_params(&c, s, n, pc);
    *n_tensors = n;
    for (size_t i = 0; i < n; i++)
        dt_hist[s[i].dtype]++;
    free(s);
}

TEST(flash_counts)
{
    dsv4_param_counts pc;
    size_t n;
    int h[DSV4_DT_COUNT] = { 0 };
    counts(1, &pc, &n, h);
    /* ARCH.md §2 / §11: 69,187 tensors; dtype histogram; exact total */
    CHECK_EQ_INT(n, 69187);
    CHECK_EQ_INT(h[DSV4_DT_F8_E4M3], 375);
    CHECK_EQ_INT(h[DSV4_DT_I8], 33792);
    CHECK_EQ_INT(h[DSV4_DT_BF16], 433);
    CHECK_EQ_INT(h[DSV4_DT_F32], 417);
    CHECK_EQ_INT(h[DSV4_DT_I64], 3);
    CHECK_EQ_INT(pc.total, 290942289362LL);
    CHECK_NEAR(pc.backbone / 1e9, 284.33, 0.005);
    CHECK_NEAR(pc.mtp / 1e9, 6.61, 0.005);
    CHECK_NEAR(pc.routed / 1e9, 277.03, 0.005);
    CHECK_NEAR(pc.active / 1e9, 13.80, 0.005);
    CHECK_NEAR(pc.active_no_embed / 1e9, 13.27, 0.005);
}

TEST(pro_counts)
{
    dsv4_param_counts pc;
    size_t n;
    int h[DSV4_DT_COUNT] = { 0 };
    counts(0, &pc, &n, h);
    CHECK_EQ_INT(n, 145116);
    CHECK_EQ_INT(pc.total, 1598837347742LL);
    CHECK_NEAR(pc.backbone / 1e9, 1572.997, 0.0005);
    CHECK_NEAR(pc.mtp / 1e9, 25.84, 0.005);
    CHECK_NEAR(pc.routed / 1e9, 1547.40, 0.005);
    CHECK_NEAR(pc.active / 1e9, 49.78, 0.005);
    CHECK_NEAR(pc.active_no_embed / 1e9, 48.85, 0.005);
}

TEST(fixture_config)
{
    char path[1024], *text;
    size_t len;
    dsv4_config c;
    dsv4_err err = DSV4_ERR_INIT;
    snprintf(path, sizeof path, "%s/tiny-v4/config.json", test_fixtures());
    CHECK(dsv4_read_file(path, 1 << 20, &text, &len, &err) == 0);
    CHECK(dsv4_config_parse(&c, text, len, &err) == 0);
    CHECK_EQ_INT(c.n_layers, 6);
    CHECK_EQ_INT(c.n_ratios, 7);
    CHECK_EQ_INT(c.compress_ratios[2], 128);
    CHECK_EQ_INT(c.n_hash_layers, 2);
    CHECK_NEAR(c.rope_factor, 16, 0);
    CHECK_EQ_INT(c.original_seq_len, 65536);
    CHECK(c.expert_fp4);
    free(text);
}

static int parse_err(const char *json, const char *needle)
{
    dsv4_config c;
    dsv4_err err = DSV4_ERR_INIT;
    int rc = dsv4_config_parse(&c, json, strlen(json), &err);
    if (rc == 0 || !strstr(err.msg, needle)) {
        fprintf(stderr, "  got rc %d msg '%s', wanted '%s'\n", rc, err.msg, needle);
        return 0;
    }
    return 1;
}

TEST(config_errors)
{
    char text[8192], bad[9000];
    build(text, sizeof text, 1);
    CHECK(parse_err("[1, 2]", "not a JSON object"));
    CHECK(parse_err("{\"vocab_size\": 10", "line 1"));
    /* wrong type, missing key, wrong ratios count, bad ratio */
    snprintf(bad, sizeof bad, "%s", text);
    memcpy(strstr(bad, "\"hidden_size\": 4096"), "\"hidden_size\": \"x\" ", 19);
    CHECK(parse_err(bad, "hidden_size"));
    snprintf(bad, sizeof bad, "%s", text);
    memcpy(strstr(bad, "\"num_hidden_layers\": 43"), "\"num_hidden_layers\": 42", 23);
    CHECK(parse_err(bad, "compress_ratios has 44 entries"));
    snprintf(bad, sizeof bad, "%s", text);
    memcpy(strstr(bad, "[0, 0, 4"), "[0, 0, 5", 8);
    CHECK(parse_err(bad, "compress_ratios[2]"));
    snprintf(bad, sizeof bad, "%s", text);
    memcpy(strstr(bad, "\"vocab_size\""), "\"vocab_sizz\"", 12);
    CHECK(parse_err(bad, "vocab_size"));
}

TEST_MAIN(T(flash_counts), T(pro_counts), T(fixture_config), T(config_errors))
