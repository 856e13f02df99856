/* bench_snap — KV snapshot sizes and speeds.
 *
 *   bench_snap [--tokens N] [--threads N] [--level L] [--quick]
 *
 *   1. the tiny fixture ($DSV4_FIXTURES or ../shared/fixtures, tiny-v4, every
 *      layer kind): a real 699-token prefill in the compact layout, saved;
 *   2. a synthetic full-width Flash state (tests/data/flash-config.json: 43
 *      layers + MTP, 512-d entries, 128-d indexer keys) holding N tokens
 *      (default 65536): every window slot, compressed entry and indexer key
 *      is a Gaussian vector with per-channel scales, encoded by the same
 *      dsv4_kv_pack / dsv4_ikey_pack the engine uses, so the FP8/FP4 codes
 *      and scales have the statistics zstd sees in practice (random weights
 *      give no better a proxy); compressor rows are Gaussian f32.
 *
 * For each: payload bytes (raw) and bytes written (zstd, level 1 unless --level), per token
 * amortised over the tokens and for one further token (compressed entries
 * and keys only, against spec/ARCH.md §9.1's 3,514 B/token for Flash), the
 * fixed part (windows, compressor rows, hidden streams, headers), and the
 * write and read speeds (raw bytes per second, single thread, to and from
 * a file in $TMPDIR) next to a single-thread memcpy of the same bytes.  Not
 * a test: exits 0 whatever the numbers. */
#include "config.h"
#include "convert.h"
#include "engine.h"
#include "kvstate.h"
#include "safetensors.h"
#include "snap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int opt_level = 0;   /* 0: the writer's default */
static int opt_threads = 0; /* 0: one per CPU */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int load_config(const char *path, dsv4_config *c)
{
    dsv4_err err = DSV4_ERR_INIT;
    char *txt = NULL;
    size_t len = 0;
    int rc = dsv4_read_file(path, 1 << 20, &txt, &len, &err) || dsv4_config_parse(c, txt, len, &err);
    if (rc)
        fprintf(stderr, "bench_snap: %s: %s\n", path, err.msg);
    free(txt);
    return rc ? -1 : 0;
}

/* Box-Muller from a 64-bit LCG: reproducible Gaussians. */
static double gauss(uint64_t *x)
{
    *x = *x * 6364136223846793005u + 1442695040888963407u;
    double a = ((*x >> 11) + 0.5) * 0x1p-53;
    *x = *x * 6364136223846793005u + 1442695040888963407u;
    double b = ((*x >> 11) + 0.5) * 0x1p-53;
    return sqrt(-2 * log(a)) * cos(6.283185307179586 * b);
}

/* Single-thread memcpy bandwidth over n bytes, best of 3 (bytes/s). */
static double memcpy_rate(size_t n)
{
    char *a = malloc(n), *b = malloc(n);
    double best = 0;
    if (!a || !b)
        goto out;
    memset(a, 1, n);
    memset(b, 2, n);
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        memcpy(b, a, n);
        double t = now() - t0;
        if (t > 0 && n / t > best)
            best = n / t;
    }
out:
    free(a);
    free(b);
    return best;
}

static void report(const char *name, const dsv4_config *c, const dsv4_kvstate *s, const uint32_t *tok,
                   const float *hid, double arch_per_token)
{
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_snap_stats st;
    dsv4_snap snap = DSV4_SNAP_INIT;
    static const uint8_t fp[32];
    const char *td = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/bench_snap.XXXXXX", td && *td ? td : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("bench_snap: mkstemp");
        return;
    }
    unlink(path);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int tn = opt_threads ? opt_threads : cpus > 0 ? (int)cpus : 1;
    double tw[2] = { 0, 0 }, tr[2] = { 0, 0 };
    for (int k = 0; k < 2; k++) {   /* one thread, then tn */
        dsv4_snap_wopts wo = DSV4_SNAP_WOPTS_INIT;
        dsv4_snap_ropts o = DSV4_SNAP_ROPTS_INIT;
        wo.level = opt_level;
        wo.threads = o.threads = k ? tn : 1;
        o.name = name;
        if (ftruncate(fd, 0) || lseek(fd, 0, SEEK_SET)) {
            perror("bench_snap: ftruncate");
            close(fd);
            return;
        }
        double t0 = now();
        if (dsv4_snap_write(fd, c, fp, s, tok, hid, &wo, &st, &err)) {
            printf("%s: write failed: %s\n", name, err.msg);
            close(fd);
            return;
        }
        fsync(fd);
        tw[k] = now() - t0;
        lseek(fd, 0, SEEK_SET);
        t0 = now();
        int rc = dsv4_snap_read(fd, &o, &snap, NULL, &err);
        tr[k] = now() - t0;
        if (rc) {
            printf("%s: read failed: %s\n", name, err.msg);
            close(fd);
            return;
        }
        dsv4_snap_release(&snap);
    }
    close(fd);

    int64_t n = s->n_tokens;
    uint64_t ent_raw = 0, fixed = st.raw;
    for (int l = 0; l < s->n_all; l++) {
        const dsv4_kv_layer *L = &s->layers[l];
        uint64_t e = (uint64_t)L->n_ent * (s->entry_bytes + (L->ratio == 4 ? s->ikey_bytes : 0));
        ent_raw += e;
        fixed -= e;
    }
    fixed -= (uint64_t)n * 4;   /* token ids: 4 bytes per token */
    uint64_t hdr = st.header_bytes + st.chunk_header_bytes + st.trailer_bytes;
    double mc = memcpy_rate(st.raw < ((size_t)1 << 30) ? (size_t)st.raw : (size_t)1 << 30);
    printf("%s: %lld tokens, layout %s\n", name, (long long)n, s->compact ? "compact" : "bf16");
    printf("  payload raw %llu bytes (%.1f/token), written %llu bytes (%.1f/token), zstd ratio %.3f\n",
           (unsigned long long)st.raw, (double)st.raw / n, (unsigned long long)st.stream_bytes,
           (double)st.stream_bytes / n, (double)st.raw / (double)st.frame);
    printf("  per further token: %.2f bytes of entries and indexer keys + 4 of token id "
           "(spec/ARCH.md 9.1: %.2f + 4)%s\n", dsv4_kv_bytes_per_token(s), arch_per_token,
           fabs(dsv4_kv_bytes_per_token(s) - arch_per_token) < 0.01 ? ": equal" : ": DIFFERENT");
    printf("  entries and keys %llu bytes; fixed: windows, compressor rows, hidden %llu bytes; headers %llu "
           "bytes (%.4f%% of the stream)\n", (unsigned long long)ent_raw, (unsigned long long)fixed,
           (unsigned long long)hdr, 100.0 * hdr / st.stream_bytes);
    printf("  one thread: write %.1f MB/s, read+verify %.1f MB/s (raw bytes, zstd level %d); single-thread "
           "memcpy %.0f MB/s: write %.3f, read %.3f of it\n", st.raw / tw[0] / 1e6, st.raw / tr[0] / 1e6,
           opt_level ? opt_level : 1, mc / 1e6, st.raw / tw[0] / mc, st.raw / tr[0] / mc);
    printf("  %d threads: write %.1f MB/s (%.2fx), read+verify %.1f MB/s (%.2fx); %d x single-thread memcpy: "
           "write %.3f, read %.3f of it\n", tn, st.raw / tw[1] / 1e6, tw[0] / tw[1], st.raw / tr[1] / 1e6,
           tr[0] / tr[1], tn, st.raw / tw[1] / (mc * tn), st.raw / tr[1] / (mc * tn));
}

static const dsv4_tensor *st_find(void *ctx, const char *name) { return dsv4_st_find(ctx, name); }

static void tiny(void)
{
    char path[512];
    const char *fx = getenv("DSV4_FIXTURES");
    dsv4_config c;
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_st *st = NULL, *gold = NULL;
    dsv4_engine *e = NULL;
    dsv4_kvstate *s = NULL;
    fx = fx && *fx ? fx : "../shared/fixtures";
    snprintf(path, sizeof path, "%s/tiny-v4/config.json", fx);
    if (load_config(path, &c))
        return;
    snprintf(path, sizeof path, "%s/tiny-v4", fx);
    if (dsv4_st_open(&st, path, NULL, NULL, &err)) {
        printf("tiny-v4: skipped (%s)\n", err.msg);
        return;
    }
    snprintf(path, sizeof path, "%s/tiny-v4/goldens.safetensors", fx);
    if (dsv4_st_open(&gold, path, NULL, NULL, &err) ||
        dsv4_engine_open(&e, &c, st_find, st, 0, &err) ||
        dsv4_kv_new(&s, &c, 1, &err)) {
        printf("tiny-v4: skipped (%s)\n", err.msg);
        goto out;
    }
    const dsv4_tensor *t = dsv4_st_find(gold, "tokens");
    int64_t n = t->shape[0] - 1, HD = c.hc_mult * c.dim;
    float *h = malloc((size_t)(n * HD) * sizeof *h);
    if (h && !dsv4_forward(e, s, t->data, n, DSV4_LOGITS_NONE, NULL, h, &err))
        report("tiny-v4", &c, s, t->data, h + (n - 1) * HD, 3 * (584 + 68) / 4.0 + 2 * 584 / 128.0);
    else
        printf("tiny-v4: prefill failed: %s\n", err.msg);
    free(h);
out:
    dsv4_kv_free(s);
    dsv4_engine_close(e);
    dsv4_st_close(gold);
    dsv4_st_close(st);
}

static void fill_vec(uint64_t *x, const float *sc, int64_t d, float *v)
{
    for (int64_t i = 0; i < d; i++)
        v[i] = (float)(gauss(x) * sc[i]);
}

static void flash(int64_t n)
{
    dsv4_config c;
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_kvstate *s = NULL;
    uint64_t x = 12345;
    if (load_config("tests/data/flash-config.json", &c) || dsv4_kv_new(&s, &c, 1, &err)) {
        printf("flash: skipped (%s)\n", err.msg);
        return;
    }
    int64_t hd = c.head_dim, ihd = c.index_head_dim, W = c.window;
    float *sc = malloc((size_t)hd * sizeof *sc), *v = malloc((size_t)hd * sizeof *v);
    uint32_t *tok = malloc((size_t)n * sizeof *tok);
    float *hid = malloc((size_t)(c.hc_mult * c.dim) * sizeof *hid);
    /* per-channel scales spanning ~2^-3..2^3, as after RMSNorm with learned weights */
    for (int64_t i = 0; i < hd; i++)
        sc[i] = (float)exp2(gauss(&x));
    for (int64_t i = 0; i < n; i++)
        tok[i] = (uint32_t)(x = x * 6364136223846793005u + 1442695040888963407u) % (uint32_t)c.vocab_size;
    for (int64_t i = 0; i < c.hc_mult * c.dim; i++)
        hid[i] = (float)gauss(&x);
    s->n_tokens = n;
    for (int l = 0; l < s->n_all; l++) {
        dsv4_kv_layer *L = &s->layers[l];
        int64_t pos = l < s->n_layers ? n : 0, w = pos < W ? pos : W;
        for (int64_t j = 0; j < w; j++) {
            fill_vec(&x, sc, hd, v);
            dsv4_kv_pack(s, v, L->win + (size_t)j * s->entry_bytes);
        }
        if (!L->ratio)
            continue;
        int64_t ne = pos / L->ratio;
        if (dsv4_kv_reserve(s, l, ne, &err)) {
            printf("flash: %s\n", err.msg);
            goto out;
        }
        for (int64_t j = 0; j < ne; j++) {
            fill_vec(&x, sc, hd, v);
            dsv4_kv_pack(s, v, L->ent + (size_t)j * s->entry_bytes);
            if (L->ratio == 4) {
                fill_vec(&x, sc, ihd, v);
                dsv4_ikey_pack(s, v, L->ikey + (size_t)j * s->ikey_bytes);
            }
        }
        L->n_ent = ne;
        for (int64_t i = 0; i < L->crows * L->cdim; i++) {
            L->ckv[i] = (float)gauss(&x);
            L->csc[i] = (float)gauss(&x);
        }
        for (int64_t i = 0; L->ikv && i < 8 * 2 * ihd; i++) {
            L->ikv[i] = (float)gauss(&x);
            L->isc[i] = (float)gauss(&x);
        }
    }
    report("flash (synthetic, full width)", &c, s, tok, hid, 21 * (584 + 68) / 4.0 + 20 * 584 / 128.0);
out:
    free(sc);
    free(v);
    free(tok);
    free(hid);
    dsv4_kv_free(s);
}

int main(int argc, char **argv)
{
    int64_t n = 65536;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc)
            n = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            opt_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--level") && i + 1 < argc)
            opt_level = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            n = 4096;
        else {
            fprintf(stderr, "usage: bench_snap [--tokens N] [--threads N] [--level L] [--quick]\n");
            return 1;
        }
    }
    if (n < 1) {
        fprintf(stderr, "bench_snap: --tokens must be at least 1\n");
        return 1;
    }
    tiny();
    flash(n);
    return 0;
}
