/* bench_cpu — CPU prefill and decode throughput of the dsv4 engine, next to
 * a simple memory-bandwidth bound.
 *
 *   bench_cpu [--threads N] [--quick] [--skip-flash] [--cache DIR] [--experts E]
 *
 * What it does, in order:
 *   1. memory bandwidth: a multi-threaded read of a buffer much larger than
 *      the caches (best of several passes), in GB/s (1 GB = 1e9 bytes);
 *   2. the tiny fixture ($DSV4_FIXTURES or ../shared/fixtures, tiny-v4):
 *      prefill of one 700-token chunk, then single-token decode steps;
 *   3. a synthetic full-width Flash model with ONE layer (a CSA layer with
 *      its indexer, 256 routed experts, full vocab embedding and head,
 *      no MTP block), written once by build/tools/dsv4-synth into
 *      .cache/bench/ (or $DSV4_BENCH_CACHE, --cache) and reused afterwards:
 *      prefill of one 64-token chunk, then decode steps.
 *
 * For decode it prints the bytes of weights one token reads (all non-routed
 * weights of the backbone layers, k/E of the routed experts with their
 * scales, the whole head, one embedding row, one tid2eid row on hash
 * layers; the MTP block is not run), the bound bandwidth / bytes-per-token
 * and measured / bound.  KV-state reads are not in the bound (they are small
 * at these contexts; the state's size is printed).  For prefill it prints
 * FLOPs per token (2 x the active parameters of the linears, the head once
 * per chunk since only the last position's logits are computed, plus an
 * estimate of attention and indexer scores) and the achieved GFLOP/s.
 *
 * Weights are pre-faulted (every page touched) before timing, so timings do
 * not include reading the checkpoint from disk.  Prefill: median of several
 * runs, each from an empty state.  Decode: median step time.  The KV state is
 * the compact (FP8/FP4) layout.  This is not a test: it exits 0 whatever the
 * speed (1 only on a usage error). */
#include "config.h"
#include "convert.h"
#include "engine.h"
#include "kvstate.h"
#include "pool.h"
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int opt_threads = 0, opt_quick = 0, opt_skip_flash = 0, opt_experts = 0;
static const char *opt_cache = NULL;
static double g_bw = 0.0;            /* GB/s measured */
static volatile uint64_t g_sink;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* MemAvailable in bytes (0 if unknown). */
static uint64_t mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return (uint64_t)kb * 1024u;
}

/* ---- memory bandwidth -------------------------------------------------- */

#define BW_CHUNK (4u << 20)

struct bw_job {
    const uint64_t *buf;
    size_t words_per_chunk, nwords;
    uint64_t *sums;      /* one per chunk (no shared accumulator) */
};

static void bw_read(void *ctx, int64_t i0, int64_t i1, int tid)
{
    struct bw_job *j = ctx;
    for (int64_t c = i0; c < i1; c++) {
        size_t a = (size_t)c * j->words_per_chunk, b = a + j->words_per_chunk;
        if (b > j->nwords)
            b = j->nwords;
        const uint64_t *p = j->buf;
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
        size_t i = a;
        for (; i + 8 <= b; i += 8) {
            s0 += p[i];
            s1 += p[i + 1];
            s2 += p[i + 2];
            s3 += p[i + 3];
            s4 += p[i + 4];
            s5 += p[i + 5];
            s6 += p[i + 6];
            s7 += p[i + 7];
        }
        for (; i < b; i++)
            s0 += p[i];
        j->sums[c] = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
    }
}

static void bench_bandwidth(void)
{
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_pool *pool;
    uint64_t avail = mem_available();
    size_t bytes = opt_quick ? (256u << 20) : (1024u << 20);
    int reps = opt_quick ? 6 : 10;
    if (avail && bytes > avail / 8)
        bytes = (size_t)(avail / 8) & ~(size_t)(BW_CHUNK - 1);
    if (bytes < (64u << 20))
        bytes = 64u << 20;
    if (dsv4_pool_new(&pool, opt_threads, &err)) {
        printf("bandwidth: skipped (%s)\n", err.msg);
        return;
    }
    uint64_t *buf = malloc(bytes);
    int64_t nchunks = (int64_t)((bytes + BW_CHUNK - 1) / BW_CHUNK);
    uint64_t *sums = calloc((size_t)nchunks, sizeof *sums);
    if (!buf || !sums) {
        printf("bandwidth: skipped (cannot allocate %zu MiB)\n", bytes >> 20);
        free(buf);
        free(sums);
        dsv4_pool_free(pool);
        return;
    }
    for (size_t i = 0; i < bytes / 8; i++)      /* touch every page, non-zero data */
        buf[i] = i * 0x9e3779b97f4a7c15ull;
    struct bw_job j = { buf, BW_CHUNK / 8, bytes / 8, sums };
    double best = 1e30, all[16];
    uint64_t check = 0;
    dsv4_pool_for(pool, nchunks, 1, bw_read, &j);   /* warm-up pass */
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        dsv4_pool_for(pool, nchunks, 1, bw_read, &j);
        double t = now() - t0;
        all[r] = t;
        if (t < best)
            best = t;
        for (int64_t c = 0; c < nchunks; c++)
            check += sums[c];
    }
    g_bw = (double)bytes / best / 1e9;
    g_sink = check;    /* keeps the reads */
    printf("bandwidth: %.1f GB/s read (best of %d passes over %zu MiB, median %.1f GB/s, %d thread%s)\n", g_bw, reps,
           bytes >> 20, (double)bytes / median(all, reps) / 1e9, dsv4_pool_threads(pool),
           dsv4_pool_threads(pool) == 1 ? "" : "s");
    free(buf);
    free(sums);
    dsv4_pool_free(pool);
}

/* ---- per-token costs from the config ----------------------------------- */

static uint64_t spec_bytes(const dsv4_tensor_spec *t)
{
    uint64_t n = dsv4_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++)
        n *= (uint64_t)t->shape[d];
    return n;
}

struct costs {
    double bytes_tok;        /* weight bytes one decoded token reads */
    double lin_flops_tok;    /* 2 x active linear params, excluding embedding and head */
    double head_flops;       /* 2 x vocab x dim */
    double ckpt_bytes;       /* everything on disk */
    double active_params;    /* active incl. embedding and head (per dsv4_config_params) */
};

static int costs_of(const dsv4_config *c, struct costs *o, dsv4_err *err)
{
    dsv4_tensor_spec *sp;
    size_t n;
    if (dsv4_config_tensors(c, &sp, &n, err))
        return err->code;
    memset(o, 0, sizeof *o);
    double kE = (double)c->n_experts_per_tok / (double)c->n_routed_experts;
    for (size_t i = 0; i < n; i++) {
        const dsv4_tensor_spec *t = &sp[i];
        double b = (double)spec_bytes(t), p = (double)t->logical_params;
        /* a routed expert's scale follows its weight in the inventory */
        int routed = t->routed || (t->role == DSV4_ROLE_SCALE && i > 0 && sp[i - 1].routed);
        o->ckpt_bytes += b;
        if (t->layer >= c->n_layers)
            continue;                          /* MTP block: not run by dsv4_forward */
        if (!strcmp(t->name, "embed.weight")) {
            o->bytes_tok += (double)c->dim * (double)dsv4_dtype_size(t->dtype);
        } else if (!strcmp(t->name, "head.weight")) {
            o->bytes_tok += b;
            o->head_flops = 2.0 * p;
        } else if (t->role == DSV4_ROLE_HASH_TABLE) {
            o->bytes_tok += (double)t->shape[1] * (double)dsv4_dtype_size(t->dtype);
        } else if (routed) {
            o->bytes_tok += b * kE;
            o->lin_flops_tok += 2.0 * p * kE;
        } else {
            o->bytes_tok += b;
            o->lin_flops_tok += 2.0 * p;
        }
    }
    dsv4_param_counts pc;
    dsv4_config_params(c, sp, n, &pc);
    o->active_params = (double)pc.active;
    free(sp);
    return 0;
}

/* Attention FLOPs of the query at position t (sees t + 1 positions), summed
 * over the backbone layers: 2·H·keys·(hd + hd) for scores and values, plus
 * 2·index_heads·index_head_dim per compressed entry scored by the indexer. */
static double attn_flops(const dsv4_config *c, int64_t t)
{
    double f = 0.0;
    for (int64_t l = 0; l < c->n_layers; l++) {
        int r = dsv4_config_ratio(c, l);
        int64_t keys = t + 1 < c->window ? t + 1 : c->window;
        if (r == 4) {
            int64_t nc = (t + 1) / 4;
            keys += nc < c->index_topk ? nc : c->index_topk;
            f += 2.0 * (double)c->index_n_heads * (double)c->index_head_dim * (double)nc;
        } else if (r == 128) {
            keys += (t + 1) / 128;
        }
        f += 4.0 * (double)c->n_heads * (double)c->head_dim * (double)keys;
    }
    return f;
}

static void fmt_bytes(double b, char *out, size_t cap)
{
    if (b >= 1e9)
        snprintf(out, cap, "%.2f GB", b / 1e9);
    else if (b >= 1e6)
        snprintf(out, cap, "%.1f MB", b / 1e6);
    else
        snprintf(out, cap, "%.1f kB", b / 1e3);
}

/* ---- running one model ------------------------------------------------- */

static const dsv4_tensor *st_find(void *ctx, const char *name) { return dsv4_st_find(ctx, name); }

/* Touch every page of every tensor so that timings exclude page faults and
 * disk reads.  Returns the bytes touched. */
static uint64_t prefault(const dsv4_st *st)
{
    volatile uint8_t sink = 0;
    uint64_t total = 0;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0)
        pg = 4096;
    for (size_t i = 0; i < dsv4_st_count(st); i++) {
        const dsv4_tensor *t = dsv4_st_tensor(st, i);
        const uint8_t *p = t->data;
        uint8_t acc = 0;
        for (uint64_t o = 0; o < t->nbytes; o += (uint64_t)pg)
            acc ^= p[o];
        if (t->nbytes)
            acc ^= p[t->nbytes - 1];
        sink ^= acc;
        total += t->nbytes;
    }
    (void)sink;
    return total;
}

static uint32_t argmax(const float *v, int64_t n)
{
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[b])
            b = i;
    return (uint32_t)b;
}

/* label: short name; dir: checkpoint folder; note: printed after the label */
static void bench_model(const char *label, const char *dir, int64_t chunk, int prefill_reps, int decode_steps,
                        const char *note)
{
    dsv4_err err = DSV4_ERR_INIT;
    char path[PATH_MAX], *json = NULL, b1[32], b2[32];
    size_t len;
    dsv4_config cfg;
    dsv4_st *st = NULL;
    dsv4_engine *e = NULL;
    dsv4_kvstate *s = NULL;
    struct costs co;
    uint32_t *toks = NULL;
    float *logits = NULL;
    double *tm = NULL;

    snprintf(path, sizeof path, "%s/config.json", dir);
    if (dsv4_read_file(path, 16u << 20, &json, &len, &err) || dsv4_config_parse(&cfg, json, len, &err) ||
        costs_of(&cfg, &co, &err)) {
        printf("%s: skipped (%s)\n", label, err.msg);
        goto out;
    }
    if (dsv4_st_open(&st, dir, NULL, NULL, &err)) {
        printf("%s: skipped (%s)\n", label, err.msg);
        goto out;
    }
    if (dsv4_engine_open(&e, &cfg, st_find, st, opt_threads, &err)) {
        printf("%s: skipped (%s)\n", label, err.msg);
        goto out;
    }
    {
        double t0 = now();
        uint64_t touched = prefault(st);
        fmt_bytes((double)touched, b1, sizeof b1);
        fmt_bytes(co.bytes_tok, b2, sizeof b2);
        printf("%s: %s; %lld layers, dim %lld, %lld experts (k=%lld), vocab %lld; %.3f B active params; "
               "%s of weights pre-faulted in %.1f s; %d thread%s\n",
               label, note, (long long)cfg.n_layers, (long long)cfg.dim, (long long)cfg.n_routed_experts,
               (long long)cfg.n_experts_per_tok, (long long)cfg.vocab_size, co.active_params / 1e9, b1,
               now() - t0, dsv4_engine_threads(e), dsv4_engine_threads(e) == 1 ? "" : "s");
    }

    int64_t V = cfg.vocab_size;
    toks = malloc((size_t)chunk * sizeof *toks);
    logits = malloc((size_t)V * sizeof *logits);
    tm = malloc((size_t)(prefill_reps + decode_steps + 1) * sizeof *tm);
    if (!toks || !logits || !tm) {
        printf("%s: skipped (out of memory)\n", label);
        goto out;
    }
    {   /* deterministic pseudo-random prompt, BOS first */
        uint64_t x = 0x243f6a8885a308d3ull;
        toks[0] = (uint32_t)cfg.bos_id;
        for (int64_t i = 1; i < chunk; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            toks[i] = (uint32_t)((x >> 33) % (uint64_t)(V > 2 ? V - 2 : V)) + (V > 2 ? 2 : 0);
        }
    }

    /* prefill: `prefill_reps` runs of one chunk from an empty state */
    for (int r = 0; r < prefill_reps; r++) {
        dsv4_kv_free(s);
        s = NULL;
        if (dsv4_kv_new(&s, &cfg, 1, &err)) {
            printf("%s: prefill failed (%s)\n", label, err.msg);
            goto out;
        }
        double t0 = now();
        if (dsv4_forward(e, s, toks, chunk, DSV4_LOGITS_LAST, logits, NULL, &err)) {
            printf("%s: prefill failed (%s)\n", label, err.msg);
            goto out;
        }
        tm[r] = now() - t0;
    }
    {
        double lo = tm[0], hi = tm[0];
        for (int r = 1; r < prefill_reps; r++) {
            lo = tm[r] < lo ? tm[r] : lo;
            hi = tm[r] > hi ? tm[r] : hi;
        }
        double t = median(tm, prefill_reps), fl = co.head_flops;
        for (int64_t p = 0; p < chunk; p++)
            fl += co.lin_flops_tok + attn_flops(&cfg, p);
        printf("%s prefill: %lld tokens in %.3f s (median of %d, range %.3f-%.3f s) = %.4g tokens/s; "
               "%.3f GFLOP/token = %.1f GFLOP/s\n",
               label, (long long)chunk, t, prefill_reps, lo, hi, (double)chunk / t, fl / (double)chunk / 1e9,
               fl / t / 1e9);
    }

    /* decode: single-token greedy steps after the prefill */
    {
        uint32_t tok = argmax(logits, V);
        int64_t ctx0 = s->n_tokens;
        double fl = 0.0;
        for (int i = 0; i < decode_steps; i++) {
            fl += co.lin_flops_tok + co.head_flops + attn_flops(&cfg, s->n_tokens);
            double t0 = now();
            if (dsv4_forward(e, s, &tok, 1, DSV4_LOGITS_LAST, logits, NULL, &err)) {
                printf("%s: decode failed (%s)\n", label, err.msg);
                goto out;
            }
            tm[i] = now() - t0;
            tok = argmax(logits, V);
        }
        double lo = tm[0], hi = tm[0];
        for (int i = 1; i < decode_steps; i++) {
            lo = tm[i] < lo ? tm[i] : lo;
            hi = tm[i] > hi ? tm[i] : hi;
        }
        double t = median(tm, decode_steps), meas = 1.0 / t;
        fmt_bytes(co.bytes_tok, b1, sizeof b1);
        fmt_bytes((double)dsv4_kv_bytes(s), b2, sizeof b2);
        printf("%s decode: %.2f ms/token (median of %d steps at context %lld-%lld, range %.2f-%.2f ms) = "
               "%.4g tokens/s; %.3f GFLOP/token = %.1f GFLOP/s\n",
               label, t * 1e3, decode_steps, (long long)ctx0, (long long)(ctx0 + decode_steps - 1), lo * 1e3,
               hi * 1e3, meas, fl / decode_steps / 1e9, fl / decode_steps / t / 1e9);
        if (g_bw > 0) {
            double bound = g_bw * 1e9 / co.bytes_tok;
            printf("%s decode bound: %s of weights read per token (KV state %s, not counted); "
                   "%.1f GB/s / %s = %.4g tokens/s; measured/bound = %.3f%s\n",
                   label, b1, b2, g_bw, b1, bound, meas / bound,
                   co.bytes_tok < 32e6 ? " (weights fit in the caches: the DRAM bound does not apply)" : "");
        } else {
            printf("%s decode bound: %s of weights read per token; no bandwidth measured\n", label, b1);
        }
    }
out:
    free(toks);
    free(logits);
    free(tm);
    dsv4_kv_free(s);
    if (e)
        dsv4_engine_close(e);
    if (st)
        dsv4_st_close(st);
    free(json);
}

/* ---- the synthetic Flash layer ----------------------------------------- */

/* Flash hyper-parameters (spec/ARCH.md §1) with `layers` backbone layers.
 * layers == 1: one CSA layer (ratio 4, with indexer, top-k routing), no hash
 * layers, no MTP block; otherwise the real Flash layout (hash layers 0-2,
 * ratios 0,0,4,128,...,4 and one MTP block). */
static void flash_json(char *out, size_t cap, int layers, int experts)
{
    char ratios[1024];
    size_t o = 0;
    int mtp = layers > 1;
    for (int l = 0; l < layers; l++) {
        int r = layers == 1 ? 4 : l < 2 ? 0 : (l % 2 == 0 ? 4 : 128);
        o += (size_t)snprintf(ratios + o, sizeof ratios - o, "%s%d", l ? ", " : "", r);
    }
    if (mtp)
        snprintf(ratios + o, sizeof ratios - o, ", 0");
    snprintf(out, cap,
             "{\n  \"architectures\": [\"DeepseekV4ForCausalLM\"], \"model_type\": \"deepseek_v4\", "
             "\"dsv4_synthetic\": true,\n"
             "  \"vocab_size\": 129280, \"hidden_size\": 4096, \"num_hidden_layers\": %d, "
             "\"num_attention_heads\": 64, \"num_key_value_heads\": 1, \"head_dim\": 512, \"qk_rope_head_dim\": 64, "
             "\"q_lora_rank\": 1024, \"o_groups\": 8, \"o_lora_rank\": 1024, \"sliding_window\": 128, "
             "\"n_routed_experts\": %d, \"n_shared_experts\": 1, \"num_experts_per_tok\": 6, "
             "\"moe_intermediate_size\": 2048, \"scoring_func\": \"sqrtsoftplus\", \"norm_topk_prob\": true, "
             "\"routed_scaling_factor\": 1.5, \"swiglu_limit\": 10.0, \"num_hash_layers\": %d, "
             "\"num_nextn_predict_layers\": %d, \"index_n_heads\": 64, \"index_head_dim\": 128, \"index_topk\": 512,\n"
             "  \"hc_mult\": 4, \"hc_sinkhorn_iters\": 20, \"hc_eps\": 1e-06, \"rms_norm_eps\": 1e-06, "
             "\"rope_theta\": 10000.0, \"compress_rope_theta\": 160000.0, "
             "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 16.0, \"original_max_position_embeddings\": 65536, "
             "\"beta_fast\": 32, \"beta_slow\": 1}, \"max_position_embeddings\": 1048576, \"bos_token_id\": 0, "
             "\"eos_token_id\": 1, \"tie_word_embeddings\": false, \"expert_dtype\": \"fp4\", "
             "\"quantization_config\": {\"activation_scheme\": \"dynamic\", \"fmt\": \"e4m3\", \"quant_method\": "
             "\"fp8\", \"scale_fmt\": \"ue8m0\", \"weight_block_size\": [128, 128]},\n"
             "  \"compress_ratios\": [%s]\n}\n",
             layers, experts, layers == 1 ? 0 : 3, mtp, ratios);
}

static int mkdirs(const char *p)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", p);
    for (char *q = tmp + 1; *q; q++)
        if (*q == '/') {
            *q = 0;
            if (mkdir(tmp, 0755) && errno != EEXIST)
                return -1;
            *q = '/';
        }
    return mkdir(tmp, 0755) && errno != EEXIST ? -1 : 0;
}

/* Remove a flat folder (what dsv4-synth writes has no subfolders). */
static void rm_flat(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[PATH_MAX];
    if (!d)
        return;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* build/tools/dsv4-synth beside this program's build/bench/, or from the cwd */
static void synth_path(char *out, size_t cap)
{
    char self[PATH_MAX - 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        char *sl = strrchr(self, '/');
        if (sl) {
            *sl = 0;
            snprintf(out, cap, "%s/../tools/dsv4-synth", self);
            if (access(out, X_OK) == 0)
                return;
        }
    }
    snprintf(out, cap, "build/tools/dsv4-synth");
}

static void bench_flash(void)
{
    dsv4_err err = DSV4_ERR_INIT;
    char json[8192], cache[PATH_MAX], dir[PATH_MAX + 32], tmp[PATH_MAX + 40], cfgp[PATH_MAX + 64];
    char synth[PATH_MAX + 32];
    char b1[32], b2[32], note[PATH_MAX + 320];
    dsv4_config cfg;
    struct costs co;
    const char *env = getenv("DSV4_BENCH_CACHE");
    int experts = 0;
    static const int tries[] = { 256, 128, 64, 32, 16, 8 };

    snprintf(cache, sizeof cache, "%s", opt_cache ? opt_cache : env && *env ? env : ".cache/bench");
    uint64_t avail = mem_available();
    /* full-width Flash decode bound for the record (the 43-layer model is not run) */
    flash_json(json, sizeof json, 43, 256);
    if (!dsv4_config_parse(&cfg, json, strlen(json), &err) && !costs_of(&cfg, &co, &err) && g_bw > 0) {
        fmt_bytes(co.bytes_tok, b1, sizeof b1);
        printf("flash-43L (full Flash, not run): %s of weights read per decoded token -> bound %.2f tokens/s at "
               "%.1f GB/s; %.2f GFLOP/token linear + head\n",
               b1, g_bw * 1e9 / co.bytes_tok, g_bw, (co.lin_flops_tok + co.head_flops) / 1e9);
    }

    /* choose the expert count: 256 when the checkpoint fits in memory (it is
     * read through the page cache) and on disk; a cached one is reused */
    for (size_t i = 0; i < sizeof tries / sizeof *tries; i++) {
        int E = tries[i];
        if (opt_experts && E != opt_experts)
            continue;
        snprintf(dir, sizeof dir, "%s/flash-1L-E%d", cache, E);
        flash_json(json, sizeof json, 1, E);
        if (dsv4_config_parse(&cfg, json, strlen(json), &err) || costs_of(&cfg, &co, &err)) {
            printf("flash-1L: skipped (%s)\n", err.msg);
            return;
        }
        snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
        int cached = file_exists(cfgp);
        int fits_mem = !avail || co.ckpt_bytes + (2u << 30) < 0.8 * (double)avail;
        if (cached && (fits_mem || opt_experts)) {
            experts = E;
            break;
        }
        if (!fits_mem && !opt_experts)
            continue;
        struct statvfs vf;
        mkdirs(cache);
        if (statvfs(cache, &vf) == 0 && (double)vf.f_bavail * (double)vf.f_frsize < co.ckpt_bytes + (1u << 30)) {
            fmt_bytes(co.ckpt_bytes, b1, sizeof b1);
            printf("flash-1L: %d experts need %s on disk, not free under %s\n", E, b1, cache);
            continue;
        }
        experts = E;
        break;
    }
    if (!experts) {
        fmt_bytes((double)avail, b1, sizeof b1);
        printf("flash-1L: skipped (no expert count fits: %s of memory available)\n", b1);
        return;
    }
    snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
    if (!file_exists(cfgp)) {
        FILE *f;
        synth_path(synth, sizeof synth);
        if (access(synth, X_OK)) {
            printf("flash-1L: skipped (%s not built: run make)\n", synth);
            return;
        }
        if (mkdirs(cache)) {
            printf("flash-1L: skipped (cannot create %s: %s)\n", cache, strerror(errno));
            return;
        }
        snprintf(tmp, sizeof tmp, "%s.tmp", dir);
        rm_flat(tmp);
        snprintf(cfgp, sizeof cfgp, "%s/flash-1L-E%d.json", cache, experts);
        if (!(f = fopen(cfgp, "w")) || fputs(json, f) < 0 || fclose(f)) {
            printf("flash-1L: skipped (cannot write %s)\n", cfgp);
            return;
        }
        fmt_bytes(co.ckpt_bytes, b1, sizeof b1);
        printf("flash-1L: writing a %s synthetic checkpoint to %s (once; reused afterwards)\n", b1, dir);
        fflush(stdout);
        double t0 = now();
        pid_t pid = fork();
        if (pid == 0) {
            execl(synth, synth, "--config", cfgp, "--seed", "1", "-o", tmp, (char *)NULL);
            _exit(127);
        }
        int stt = 0;
        if (pid < 0 || waitpid(pid, &stt, 0) < 0 || !WIFEXITED(stt) || WEXITSTATUS(stt)) {
            printf("flash-1L: skipped (dsv4-synth failed)\n");
            rm_flat(tmp);
            return;
        }
        if (rename(tmp, dir)) {
            printf("flash-1L: skipped (cannot rename %s: %s)\n", tmp, strerror(errno));
            rm_flat(tmp);
            return;
        }
        printf("flash-1L: checkpoint written in %.1f s\n", now() - t0);
    }
    fmt_bytes(co.ckpt_bytes, b2, sizeof b2);
    snprintf(note, sizeof note, "synthetic Flash, one full-width CSA layer + embedding + head (%s, %s)", dir, b2);
    if (experts != 256) {
        size_t o = strlen(note);
        snprintf(note + o, sizeof note - o, "; experts SCALED DOWN to %d %s (bytes/token nearly unchanged: k/E)",
                 experts, opt_experts ? "by --experts" : "to fit memory");
    }
    bench_model("flash-1L", dir, opt_quick ? 16 : 64, opt_quick ? 1 : 3, opt_quick ? 3 : 8, note);
}

/* ---- main -------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "threads", required_argument, NULL, 't' }, { "quick", no_argument, NULL, 'q' },
        { "skip-flash", no_argument, NULL, 's' },    { "cache", required_argument, NULL, 'c' },
        { "experts", required_argument, NULL, 'e' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "t:qsc:e:h", opts, NULL)) != -1) {
        switch (ch) {
        case 't': opt_threads = atoi(optarg); break;
        case 'q': opt_quick = 1; break;
        case 's': opt_skip_flash = 1; break;
        case 'c': opt_cache = optarg; break;
        case 'e':
            opt_experts = atoi(optarg);
            if (opt_experts != 256 && opt_experts != 128 && opt_experts != 64 && opt_experts != 32 &&
                opt_experts != 16 && opt_experts != 8) {
                fprintf(stderr, "bench_cpu: --experts is one of 256 128 64 32 16 8\n");
                return 1;
            }
            break;
        case 'h':
            printf("usage: bench_cpu [--threads N] [--quick] [--skip-flash] [--cache DIR] [--experts E]\n"
                   "CPU prefill/decode tokens/s on the tiny fixture and a synthetic one-layer Flash model,\n"
                   "against a memory-bandwidth bound.  Env: DSV4_FIXTURES, DSV4_BENCH_CACHE.\n");
            return 0;
        default:
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bench_cpu: unexpected argument '%s'\n", argv[optind]);
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    printf("bench_cpu: %ld CPUs online, --threads %d%s%s%s\n", ncpu, opt_threads,
           opt_threads <= 0 ? " (one per CPU)" : "", opt_quick ? ", --quick" : "",
           opt_skip_flash ? ", --skip-flash" : "");
    bench_bandwidth();

    const char *fx = getenv("DSV4_FIXTURES");
    char tiny[PATH_MAX];
    snprintf(tiny, sizeof tiny, "%s/tiny-v4", fx && *fx ? fx : "../shared/fixtures");
    bench_model("tiny", tiny, 700, opt_quick ? 1 : 3, opt_quick ? 8 : 32, "reference fixture tiny-v4");

    if (opt_skip_flash)
        printf("flash-1L: skipped (--skip-flash)\n");
    else
        bench_flash();
    return 0;
}
