/* dsv4-synth — write a synthetic DeepSeek-V4 checkpoint in the official
 * Hugging Face layout (config.json, generation_config.json, safetensors
 * shards + model.safetensors.index.json) with RANDOM weights, for tests,
 * demos and full-width benchmarks without the real weights.
 *
 *   dsv4-synth [--preset tiny|flash|pro] [--config FILE] [--layers N]
 *              [--seed S] [--shard-size BYTES] -o DIR
 *
 * The weights are random: a model made from them produces meaningless text.
 * config.json carries "dsv4_synthetic": true and DIR/README.txt says so. */
#include "buf.h"
#include "codec.h"
#include "config.h"
#include "convert.h"
#include "json.h"
#include "safetensors.h"
#include "version.h"
#include "tool.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Hyper-parameters as in spec/ARCH.md §1 (compress_ratios built below). */
static const char flash_cfg[] =
    "\"vocab_size\": 129280, \"hidden_size\": 4096, \"num_hidden_layers\": 43, \"num_attention_heads\": 64, "
    "\"num_key_value_heads\": 1, \"head_dim\": 512, \"qk_rope_head_dim\": 64, \"q_lora_rank\": 1024, "
    "\"o_groups\": 8, \"o_lora_rank\": 1024, \"sliding_window\": 128, \"n_routed_experts\": 256, "
    "\"n_shared_experts\": 1, \"num_experts_per_tok\": 6, \"moe_intermediate_size\": 2048, "
    "\"scoring_func\": \"sqrtsoftplus\", \"norm_topk_prob\": true, \"routed_scaling_factor\": 1.5, "
    "\"swiglu_limit\": 10.0, \"num_hash_layers\": 3, \"num_nextn_predict_layers\": 1, \"index_n_heads\": 64, "
    "\"index_head_dim\": 128, \"index_topk\": 512";
static const char pro_cfg[] =
    "\"vocab_size\": 129280, \"hidden_size\": 7168, \"num_hidden_layers\": 61, \"num_attention_heads\": 128, "
    "\"num_key_value_heads\": 1, \"head_dim\": 512, \"qk_rope_head_dim\": 64, \"q_lora_rank\": 1536, "
    "\"o_groups\": 16, \"o_lora_rank\": 1024, \"sliding_window\": 128, \"n_routed_experts\": 384, "
    "\"n_shared_experts\": 1, \"num_experts_per_tok\": 6, \"moe_intermediate_size\": 3072, "
    "\"scoring_func\": \"sqrtsoftplus\", \"norm_topk_prob\": true, \"routed_scaling_factor\": 2.5, "
    "\"swiglu_limit\": 10.0, \"num_hash_layers\": 3, \"num_nextn_predict_layers\": 1, \"index_n_heads\": 64, "
    "\"index_head_dim\": 128, \"index_topk\": 1024";
static const char tiny_cfg[] =
    "\"vocab_size\": 1024, \"hidden_size\": 128, \"num_hidden_layers\": 6, \"num_attention_heads\": 4, "
    "\"num_key_value_heads\": 1, \"head_dim\": 512, \"qk_rope_head_dim\": 64, \"q_lora_rank\": 128, "
    "\"o_groups\": 2, \"o_lora_rank\": 128, \"sliding_window\": 128, \"n_routed_experts\": 16, "
    "\"n_shared_experts\": 1, \"num_experts_per_tok\": 6, \"moe_intermediate_size\": 128, "
    "\"scoring_func\": \"sqrtsoftplus\", \"norm_topk_prob\": true, \"routed_scaling_factor\": 1.5, "
    "\"swiglu_limit\": 10.0, \"num_hash_layers\": 2, \"num_nextn_predict_layers\": 1, \"index_n_heads\": 4, "
    "\"index_head_dim\": 128, \"index_topk\": 32";
static const char common_cfg[] =
    "\"hc_mult\": 4, \"hc_sinkhorn_iters\": 20, \"hc_eps\": 1e-06, \"rms_norm_eps\": 1e-06, "
    "\"rope_theta\": 10000.0, \"compress_rope_theta\": 160000.0, "
    "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 16.0, \"original_max_position_embeddings\": 65536, "
    "\"beta_fast\": 32, \"beta_slow\": 1}, \"max_position_embeddings\": 1048576, \"bos_token_id\": 0, "
    "\"eos_token_id\": 1, \"tie_word_embeddings\": false, \"expert_dtype\": \"fp4\", "
    "\"quantization_config\": {\"activation_scheme\": \"dynamic\", \"fmt\": \"e4m3\", \"quant_method\": \"fp8\", "
    "\"scale_fmt\": \"ue8m0\", \"weight_block_size\": [128, 128]}";

/* splitmix64: fast, seedable, good enough for random weights */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rng_unit(uint64_t *s) { return (float)((rng_next(s) >> 40) * (1.0 / 16777216.0)); }
/* approximately normal(0, 1): sum of 4 uniforms, rescaled */
static float rng_normal(uint64_t *s)
{
    float a = rng_unit(s) + rng_unit(s) + rng_unit(s) + rng_unit(s) - 2.0f;
    return a * 1.7320508f;
}

/* compress_ratios for a preset, truncated to `layers` backbone layers + MTP */
static void ratios(dsv4_buf *b, const char *preset, int layers)
{
    dsv4_buf_puts(b, "\"compress_ratios\": [");
    for (int l = 0; l < layers; l++) {
        int r;
        if (!strcmp(preset, "flash"))
            r = l < 2 ? 0 : (l % 2 == 0 ? 4 : 128);
        else if (!strcmp(preset, "pro"))
            r = l < 2 ? 128 : (l % 2 == 0 ? 4 : 128);
        else
            r = (int[]){ 0, 4, 128, 4, 128, 4 }[l % 6];
        dsv4_buf_printf(b, "%d, ", r);
    }
    dsv4_buf_puts(b, "0]");
}

/* Fill n bytes of tensor data for spec t, starting at element offset `first`. */
static void fill(const dsv4_config *c, const dsv4_tensor_spec *t, uint64_t *rng, uint8_t *out, size_t n)
{
    const char *nm = t->name;
    size_t i;
    switch (t->dtype) {
    case DSV4_DT_F8_E4M3:
        /* codes of N(0, 1) x 2^-? : the block scale carries the magnitude */
        for (i = 0; i < n; i++)
            out[i] = dsv4_f32_to_e4m3(rng_normal(rng) * 64.0f);
        break;
    case DSV4_DT_I8: /* packed FP4: uniform random nibbles */
        for (i = 0; i < n; i++)
            out[i] = (uint8_t)rng_next(rng);
        break;
    case DSV4_DT_F8_E8M0: {
        /* scale so that weights come out near N(0, 1/sqrt(fan_in)) */
        int fp4 = strstr(nm, ".experts.") != NULL;
        int base = fp4 ? 127 - 7 : 127 - 6 - 6;
        for (i = 0; i < n; i++)
            out[i] = (uint8_t)(base - (int)(rng_next(rng) % 2));
        break;
    }
    case DSV4_DT_BF16: {
        int is_norm = strstr(nm, "norm.weight") != NULL;
        float sd = strstr(nm, "embed") ? 1.0f : 1.0f / sqrtf((float)(t->ndim == 2 ? t->shape[1] : 1));
        for (i = 0; i + 1 < n; i += 2) {
            float v = is_norm ? 1.0f + 0.1f * rng_normal(rng) : sd * rng_normal(rng);
            uint16_t h = dsv4_f32_to_bf16(v);
            out[i] = (uint8_t)h;
            out[i + 1] = (uint8_t)(h >> 8);
        }
        break;
    }
    case DSV4_DT_F32: {
        float sd = strstr(nm, "attn_sink") ? 1.0f : strstr(nm, "_fn") ? 0.02f : strstr(nm, "_scale") ? 0.5f
                 : strstr(nm, "gate.bias") ? 0.01f : 0.1f;
        for (i = 0; i + 3 < n; i += 4) {
            float v = sd * rng_normal(rng);
            memcpy(out + i, &v, 4);   /* little-endian hosts only (as all of dsv4) */
        }
        break;
    }
    case DSV4_DT_I64: {
        /* tid2eid: k distinct expert ids per token, as a real table has
         * (the whole table fits one fill call: vocab x k x 8 bytes) */
        size_t k = (size_t)c->n_experts_per_tok, row = 8 * k;
        for (i = 0; i + row <= n; i += row)
            for (size_t j = 0; j < k; j++) {
                uint64_t e;
                int dup;
                do {
                    e = rng_next(rng) % (uint64_t)c->n_routed_experts;
                    dup = 0;
                    for (size_t q = 0; q < j; q++)
                        dup |= dsv4_le64_get(out + i + 8 * q) == e;
                } while (dup && k <= (size_t)c->n_routed_experts);
                dsv4_le64_put(out + i + 8 * j, e);
            }
        break;
    }
    default:
        memset(out, 0, n);
    }
}

static uint64_t spec_bytes(const dsv4_tensor_spec *t)
{
    uint64_t n = dsv4_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++)
        n *= (uint64_t)t->shape[d];
    return n;
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char p[4096];
    FILE *f;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (!(f = fopen(p, "w")) || fputs(text, f) < 0 || fclose(f))
        die("cannot write '%s': %s", p, strerror(errno));
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "preset", required_argument, NULL, 'p' }, { "config", required_argument, NULL, 'c' },
        { "layers", required_argument, NULL, 'l' }, { "seed", required_argument, NULL, 's' },
        { "shard-size", required_argument, NULL, 'S' }, { "output", required_argument, NULL, 'o' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 }
    };
    const char *preset = "tiny", *cfg_file = NULL, *out = NULL;
    int layers = -1, ch;
    uint64_t seed = 1, shard_size = 2ull << 30;
    dsv4_buf cfg = DSV4_BUF_INIT, idx = DSV4_BUF_INIT;
    dsv4_config c;
    dsv4_tensor_spec *spec;
    size_t ns;
    dsv4_err err = DSV4_ERR_INIT;
    while ((ch = getopt_long(argc, argv, "p:c:l:s:S:o:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'p': preset = optarg; break;
        case 'c': cfg_file = optarg; break;
        case 'l': layers = atoi(optarg); break;
        case 's': seed = strtoull(optarg, NULL, 0); break;
        case 'S': shard_size = strtoull(optarg, NULL, 0); break;
        case 'o': out = optarg; break;
        case 'h':
            printf("usage: dsv4-synth [--preset tiny|flash|pro] [--config FILE] [--layers N] [--seed S]\n"
                   "                  [--shard-size BYTES] -o DIR\n"
                   "Writes a checkpoint with RANDOM weights in the official layout.\n");
            return 0;
        default: return 2;
        }
    }
    if (!out)
        die("missing -o DIR");
    if (cfg_file) {
        char *text;
        size_t len;
        if (dsv4_read_file(cfg_file, 16u << 20, &text, &len, &err))
            die("%s", err.msg);
        dsv4_buf_append(&cfg, text, len);
        free(text);
        if (layers >= 0)
            die("--layers goes with --preset, not --config");
    } else {
        const char *body = !strcmp(preset, "flash") ? flash_cfg : !strcmp(preset, "pro") ? pro_cfg
                         : !strcmp(preset, "tiny") ? tiny_cfg : NULL;
        int full = !strcmp(preset, "flash") ? 43 : !strcmp(preset, "pro") ? 61 : 6;
        char *p;
        if (!body)
            die("unknown preset '%s' (tiny, flash, pro)", preset);
        if (layers < 0)
            layers = full;
        if (layers < 1 || layers > 200)
            die("--layers must be 1..200");
        dsv4_buf_printf(&cfg, "{\n  \"architectures\": [\"DeepseekV4ForCausalLM\"], \"model_type\": \"deepseek_v4\", "
                              "\"dsv4_synthetic\": true,\n  %s,\n  %s,\n  ", body, common_cfg);
        ratios(&cfg, preset, layers);
        dsv4_buf_puts(&cfg, "\n}\n");
        /* set num_hidden_layers / num_hash_layers to the truncated depth */
        p = strstr(cfg.data, "\"num_hidden_layers\": ");
        if (p) {
            char num[8];
            int w = snprintf(num, sizeof num, "%d", layers);
            char *e = p + strlen("\"num_hidden_layers\": ");
            size_t old = strspn(e, "0123456789");
            dsv4_buf nb = DSV4_BUF_INIT;
            dsv4_buf_append(&nb, cfg.data, (size_t)(e - cfg.data));
            dsv4_buf_append(&nb, num, (size_t)w);
            dsv4_buf_puts(&nb, e + old);
            dsv4_buf_release(&cfg);
            cfg = nb;
        }
        if (layers < 3 && (p = strstr(cfg.data, "\"num_hash_layers\": ")))
            p[strlen("\"num_hash_layers\": ")] = (char)('0' + (layers < 2 ? layers : 2));
    }
    if (dsv4_config_parse(&c, cfg.data, cfg.len, &err) || dsv4_config_tensors(&c, &spec, &ns, &err))
        die("%s", err.msg);
    if (mkdir(out, 0755) && errno != EEXIST)
        die("cannot create '%s': %s", out, strerror(errno));
    write_text(out, "config.json", cfg.data);
    write_text(out, "generation_config.json",
               "{\n  \"bos_token_id\": 0,\n  \"eos_token_id\": 1,\n  \"do_sample\": true,\n  \"temperature\": 1.0,\n"
               "  \"top_p\": 1.0\n}\n");
    write_text(out, "README.txt",
               "SYNTHETIC CHECKPOINT WITH RANDOM WEIGHTS, written by dsv4-synth for tests and benchmarks.\n"
               "It has the official DeepSeek-V4 layout, names, shapes and dtypes, but its output is meaningless.\n");

    /* plan shards in inventory order */
    {
        size_t *shard_of = malloc(ns * sizeof *shard_of), nshards = 1;
        uint64_t acc = 0, seedstate = seed;
        uint8_t *buf = malloc(64u << 20);
        if (!shard_of || !buf)
            die("out of memory");
        for (size_t i = 0; i < ns; i++) {
            uint64_t b = spec_bytes(&spec[i]);
            if (acc && acc + b > shard_size) {
                nshards++;
                acc = 0;
            }
            shard_of[i] = nshards - 1;
            acc += b;
        }
        dsv4_buf_puts(&idx, "{\n  \"metadata\": {\n    \"total_size\": ");
        {
            uint64_t tot = 0;
            for (size_t i = 0; i < ns; i++)
                tot += spec_bytes(&spec[i]);
            dsv4_buf_printf(&idx, "%llu\n  },\n  \"weight_map\": {", (unsigned long long)tot);
        }
        for (size_t s = 0, i = 0; s < nshards; s++) {
            char name[64], path[4096];
            dsv4_stw *w;
            FILE *f;
            size_t j;
            snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, nshards);
            snprintf(path, sizeof path, "%s/%s", out, name);
            if (dsv4_stw_new(&w, &err))
                die("%s", err.msg);
            for (j = i; j < ns && shard_of[j] == s; j++) {
                if (dsv4_stw_add(w, spec[j].name, spec[j].dtype, spec[j].ndim, spec[j].shape, &err))
                    die("%s", err.msg);
                dsv4_buf_printf(&idx, "%s\n    \"%s\": \"%s\"", j ? "," : "", spec[j].name, name);
            }
            if (!(f = fopen(path, "wb")) || dsv4_stw_begin(w, f, &err))
                die("cannot write '%s': %s", path, f ? err.msg : strerror(errno));
            for (; i < j; i++) {
                uint64_t left = spec_bytes(&spec[i]);
                while (left) {
                    size_t n = left > (64u << 20) ? (64u << 20) : (size_t)left;
                    fill(&c, &spec[i], &seedstate, buf, n);
                    if (dsv4_stw_write(w, buf, n, &err))
                        die("'%s': %s", path, err.msg);
                    left -= n;
                }
            }
            if (dsv4_stw_end(w, &err) || fclose(f))
                die("'%s': %s", path, err.msg[0] ? err.msg : strerror(errno));
            dsv4_stw_free(w);
        }
        dsv4_buf_puts(&idx, "\n  }\n}\n");
        write_text(out, "model.safetensors.index.json", idx.data);
        fprintf(stderr, "dsv4-synth: wrote '%s': %zu tensors in %zu shard%s (RANDOM weights)\n", out, ns, nshards,
                nshards == 1 ? "" : "s");
        free(shard_of);
        free(buf);
    }
    free(spec);
    dsv4_buf_release(&cfg);
    dsv4_buf_release(&idx);
    return 0;
}
