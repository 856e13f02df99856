/* GPU sparse attention with the sink (kernels/attn.cu) against the CPU's
 * dsv4_att_tasks (lib/attn.c), fed as dsv4_attn_chunk feeds it: window
 * vectors from the ring (slot p % W) for positions before pos0 and from the
 * chunk's new packed entries after, compressed entries all visible (HCA) or
 * each token's selection (CSA), unpacked with dsv4_kv_unpack.
 *
 * Tolerance (lib/gpu_attn.h): outputs are bf16 values; a value may differ
 * from the CPU's by at most 2 bf16 ulps (of max(|ref|, 2^-8 of the row's
 * largest): the inverse RoPE after the rounding can cancel), and at most
 * 0.2 % of the values (or 2) may differ at all; the log prints the count.  The
 * max error relative to the largest output is printed too (bound 2^-7).
 * Random data for every ratio (0, 4, 128), both layouts, positions near the
 * start (t < W), CSA with nsel < topk and nsel = 0, HCA with thousands of
 * entries, tiny-v4 and Flash dimensions, split decode with and without a
 * workspace, an awkward shape (H = 12, hd = 192), the ring update, and
 * argument errors. */
#include "ktest.h"

#if DSV4_HAVE_CUDA

#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "codec.h"
#include "engine_impl.h"
#include "gpu_attn.h"
#include "kvstate.h"
#include "ops.h"

struct acase {
    const char *name;
    int64_t H, hd, rd, W, topk;
    int ratio, compact;
    int64_t pos0, M;
    int nsel_mode;          /* CSA: 0 all visible up to topk, 1 random fewer */
    int use_ws;             /* give the split workspace */
};

static void fake_state(dsv4_kvstate *s, const struct acase *c)
{
    memset(s, 0, sizeof *s);
    s->compact = c->compact;
    s->head_dim = c->hd;
    s->rope_dim = c->rd;
    s->window = c->W;
    s->entry_bytes = (size_t)dsv4_cu_attn_entry_bytes(c->compact, c->hd, c->rd);
}

/* n random packed entries (values like normed KV: rms ~1, bf16 rope dims) */
static void random_entries(kt_rng *r, const dsv4_kvstate *s, uint8_t *out, int64_t n)
{
    float *x = kt_malloc((size_t)s->head_dim * sizeof *x);
    for (int64_t i = 0; i < n; i++) {
        kt_fill_norm(r, x, s->head_dim, 1.0f);
        dsv4_kv_pack(s, x, out + (size_t)i * s->entry_bytes);
    }
    free(x);
}

/* Mismatches of got vs ref (both bf16 values): returns the count, fails the
 * test for a value more than 2 bf16 ulps off or too many of them. */
static void check_out(const char *what, const float *got, const float *ref, int64_t rows, int64_t hd)
{
    int64_t bad = 0, far = 0, n = rows * hd;
    for (int64_t r = 0; r < rows; r++) {
        double rmax = 0.0;
        for (int64_t d = 0; d < hd; d++)
            rmax = fmax(rmax, fabs(ref[r * hd + d]));
        for (int64_t d = 0; d < hd; d++) {
            float g = got[r * hd + d], f = ref[r * hd + d];
            if (g == f)
                continue;
            bad++;
            double mag = fmax(fabs(f), rmax / 256.0);
            double ulp = ldexp(1.0, ilogb(mag > 0 ? mag : 1e-30) - 7);
            if (!(fabs((double)g - f) <= 2 * ulp)) {
                if (far < 5)
                    fprintf(stderr, "  [%lld,%lld] got %.9g ref %.9g\n", (long long)r, (long long)d, g, f);
                far++;
            }
        }
    }
    printf("  %-40s %lld of %lld values differ (%.2g%%), %lld beyond 2 bf16 ulps\n", what, (long long)bad,
           (long long)n, 100.0 * (double)bad / (double)n, (long long)far);
    KT_CLOSE(what, got, ref, n, 1.0 / 128);
    if (far || bad > (n / 500 > 2 ? n / 500 : 2)) {
        fprintf(stderr, "%s: %lld values differ, %lld beyond 2 ulps\n", what, (long long)bad, (long long)far);
        test_failed_checks++;
        test_cur_failed = 1;
    }
}

static void run_case(const struct acase *c, uint64_t seed)
{
    kt_rng r = kt_seed(seed);
    dsv4_kvstate s;
    fake_state(&s, c);
    int64_t H = c->H, hd = c->hd, rd = c->rd, W = c->W, M = c->M, pos0 = c->pos0, eb = (int64_t)s.entry_bytes;
    int64_t n_ent = c->ratio ? (pos0 + M) / c->ratio : 0, topk = c->ratio == 4 ? c->topk : 0;

    float *q = kt_malloc((size_t)(M * H * hd) * sizeof *q), *sink = kt_malloc((size_t)H * sizeof *sink);
    float *freqs = kt_malloc((size_t)(rd / 2 + 1) * sizeof *freqs);
    for (int64_t i = 0; i < M * H * hd; i++)
        q[i] = dsv4_round_bf16(kt_norm(&r, 1.5f));    /* scores ~N(0, 1.5^2): a peaked softmax */
    for (int64_t h = 0; h < H; h++)
        sink[h] = kt_unif(&r, -3.0f, 3.0f);
    dsv4_rope_freqs(freqs, rd, 160000.0, 1, 16.0, 65536.0, 32.0, 1.0);
    uint8_t *ring = kt_malloc((size_t)(W * eb)), *kvnew = kt_malloc((size_t)(M * eb));
    uint8_t *ent = kt_malloc((size_t)((n_ent ? n_ent : 1) * eb));
    random_entries(&r, &s, ring, W);
    random_entries(&r, &s, kvnew, M);
    random_entries(&r, &s, ent, n_ent);
    int32_t *sel = kt_malloc((size_t)(M * (topk ? topk : 1)) * sizeof *sel);
    int32_t *nsel = kt_malloc((size_t)M * sizeof *nsel);
    int64_t *nsel64 = kt_malloc((size_t)M * sizeof *nsel64);
    int32_t *perm = kt_malloc((size_t)(n_ent + 1) * sizeof *perm);
    for (int64_t m = 0; m < M && c->ratio == 4; m++) {
        int64_t nv = (pos0 + m + 1) / 4, k = nv < topk ? nv : topk;
        if (c->nsel_mode && k > 0)
            k = (int64_t)(kt_u32(&r) % (uint32_t)(k + 1));   /* 0 .. k */
        for (int64_t j = 0; j < nv; j++)
            perm[j] = (int32_t)j;
        for (int64_t j = 0; j < k; j++) {   /* partial Fisher-Yates: k distinct visible entries */
            int64_t o = j + (int64_t)(kt_u32(&r) % (uint32_t)(nv - j));
            int32_t tmp = perm[j];
            perm[j] = perm[o];
            perm[o] = tmp;
            sel[m * topk + j] = perm[j];
        }
        for (int64_t j = k; j < topk; j++)
            sel[m * topk + j] = -1;   /* the GPU must not look past nsel */
        nsel[m] = (int32_t)k;
        nsel64[m] = k;
    }

    /* the CPU reference, with its inputs prepared as dsv4_attn_chunk does */
    int64_t wbase = pos0 - (W - 1) > 0 ? pos0 - (W - 1) : 0, nwin = pos0 + M - wbase;
    float *win = kt_malloc((size_t)(nwin * hd) * sizeof *win);
    for (int64_t p = wbase; p < pos0 + M; p++)
        dsv4_kv_unpack(&s, p >= pos0 ? kvnew + (p - pos0) * eb : ring + (p % W) * eb, win + (p - wbase) * hd);
    int64_t ncent = c->ratio == 4 ? M * topk : n_ent;
    float *cent = kt_malloc((size_t)((ncent ? ncent : 1) * hd) * sizeof *cent);
    if (c->ratio == 4) {
        for (int64_t m = 0; m < M; m++)
            for (int64_t j = 0; j < nsel64[m]; j++)
                dsv4_kv_unpack(&s, ent + sel[m * topk + j] * eb, cent + (m * topk + j) * hd);
    } else {
        for (int64_t j = 0; j < n_ent; j++)
            dsv4_kv_unpack(&s, ent + j * eb, cent + j * hd);
    }
    int64_t maxslots = W + (c->ratio == 4 ? topk : n_ent);
    float *ssc = kt_malloc((size_t)maxslots * sizeof *ssc);
    const float **svp = kt_malloc((size_t)maxslots * sizeof *svp);
    float *ref = kt_malloc((size_t)(M * H * hd) * sizeof *ref), *got = kt_malloc((size_t)(M * H * hd) * sizeof *got);
    struct dsv4_att_job J = { H, hd, W, rd, sink, freqs, q, win, wbase, pos0, cent,
                              c->ratio == 4 ? nsel64 : NULL, topk, c->ratio, ref, maxslots, ssc, svp };
    dsv4_att_tasks(&J, 0, M * H, 0);

    /* the GPU */
    dsv4_attn_args a = { 0 };
    a.M = M, a.H = H, a.hd = hd, a.rd = rd, a.W = W, a.pos0 = pos0, a.ratio = c->ratio, a.compact = c->compact;
    a.q = kt_dev(q, (size_t)(M * H * hd) * sizeof *q);
    a.ring = kt_dev(ring, (size_t)(W * eb));
    a.kvnew = kt_dev(kvnew, (size_t)(M * eb));
    a.ent = kt_dev(ent, (size_t)((n_ent ? n_ent : 1) * eb));
    a.n_ent = n_ent;
    a.sel = kt_dev(sel, (size_t)(M * (topk ? topk : 1)) * sizeof *sel);
    a.nsel = kt_dev(nsel, (size_t)M * sizeof *nsel);
    a.topk = topk;
    a.sink = kt_dev(sink, (size_t)H * sizeof *sink);
    a.freqs = kt_dev(freqs, (size_t)(rd / 2 + 1) * sizeof *freqs);
    a.o = kt_dev(NULL, (size_t)(M * H * hd) * sizeof *got);
    size_t wsb = dsv4_cu_attn_ws_bytes(&a);
    if (c->use_ws && wsb) {
        a.ws = kt_dev(NULL, wsb);
        a.ws_bytes = wsb;
    }
    dsv4_err err = DSV4_ERR_INIT;
    KT_OK(dsv4_cu_attn(&a, NULL, &err), &err);
    if (!kt_get(got, a.o, (size_t)(M * H * hd) * sizeof *got)) {
        char what[160];
        snprintf(what, sizeof what, "%s%s", c->name, a.ws ? " (split)" : "");
        check_out(what, got, ref, M * H, hd);
    }

    dsv4_cu_free((void *)a.q);
    dsv4_cu_free((void *)a.ring);
    dsv4_cu_free((void *)a.kvnew);
    dsv4_cu_free((void *)a.ent);
    dsv4_cu_free((void *)a.sel);
    dsv4_cu_free((void *)a.nsel);
    dsv4_cu_free((void *)a.sink);
    dsv4_cu_free((void *)a.freqs);
    dsv4_cu_free(a.o);
    dsv4_cu_free(a.ws);
    free(q), free(sink), free(freqs), free(ring), free(kvnew), free(ent), free(sel), free(nsel), free(nsel64);
    free(perm), free(win), free(cent), free(ssc), free((void *)svp), free(ref), free(got);
}

/* tiny-v4: H 4, hd 512, rope 64, W 128, topk 32 */
#define TINY 4, 512, 64, 128, 32

TEST(tiny_window_only)
{
    int emu = ktest_emulated();
    const struct acase cs[] = {
        { "r0 compact pos0 0 M 5", TINY, 0, 1, 0, 5, 0, 0 },
        { "r0 bf16 pos0 100 M 30 (crosses W)", TINY, 0, 0, 100, emu ? 30 : 300, 0, 0 },
        { "r0 compact decode pos0 700", TINY, 0, 1, 700, 1, 0, 1 },
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++)
        run_case(&cs[i], 100 + i);
}

TEST(tiny_csa)
{
    int emu = ktest_emulated();
    const struct acase cs[] = {
        { "r4 compact pos0 0 M 20 (nsel grows)", TINY, 4, 1, 0, emu ? 20 : 200, 0, 0 },
        { "r4 bf16 pos0 200 M 7 nsel<topk", TINY, 4, 0, 200, 7, 1, 0 },
        { "r4 compact decode pos0 517 nsel<topk", TINY, 4, 1, 517, 1, 1, 1 },
        { "r4 bf16 decode pos0 999", TINY, 4, 0, 999, 1, 0, 1 },
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++)
        run_case(&cs[i], 200 + i);
}

TEST(tiny_hca)
{
    int emu = ktest_emulated();
    const struct acase cs[] = {
        { "r128 compact pos0 100 M 30", TINY, 128, 1, 100, emu ? 30 : 300, 0, 0 },
        { "r128 bf16 pos0 300 M 3", TINY, 128, 0, 300, 3, 0, 0 },
        { "r128 compact decode n_ent 2000", TINY, 128, 1, 128 * 2000 + 5, 1, 0, 1 },
        { "r128 bf16 decode n_ent 2000 no ws", TINY, 128, 0, 128 * 2000 + 127, 1, 0, 0 },
        { "r128 compact M 4 n_ent ~3000", TINY, 128, 1, 128 * 3000 - 2, emu ? 4 : 64, 0, 0 },
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++)
        run_case(&cs[i], 300 + i);
}

/* Flash: H 64, hd 512, rope 64, W 128, topk 512 */
#define FLASH 64, 512, 64, 128, 512

TEST(flash)
{
    int emu = ktest_emulated();
    const struct acase cs[] = {
        { "flash r4 compact decode nsel 512", FLASH, 4, 1, 5000, 1, 0, 1 },
        { "flash r4 compact decode nsel 512 no ws", FLASH, 4, 1, 5003, 1, 0, 0 },
        { "flash r4 bf16 decode nsel<topk", FLASH, 4, 0, 3001, 1, 1, 1 },
        { "flash r128 compact decode", FLASH, 128, 1, 128 * 40 + 17, 1, 0, 1 },
        { "flash r0 bf16 decode t < W", FLASH, 0, 0, 50, 1, 0, 1 },
        { "flash r4 compact prefill", FLASH, 4, 1, 2040, emu ? 2 : 64, 0, 1 },
        { "flash r128 bf16 prefill", FLASH, 128, 0, 120, emu ? 2 : 200, 0, 1 },
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++)
        run_case(&cs[i], 400 + i);
}

TEST(awkward_shapes)
{
    static const struct acase cs[] = {
        /* H not a multiple of 8, hd not a multiple of 256 or 64, small window */
        { "H 12 hd 192 rope 32 W 8 r4", 12, 192, 32, 8, 5, 4, 1, 3, 9, 1, 1 },
        { "H 12 hd 192 rope 32 W 8 r4 bf16", 12, 192, 32, 8, 5, 4, 0, 30, 2, 0, 1 },
        { "H 9 hd 1024 rope 0 W 3 r128", 9, 1024, 0, 3, 1, 128, 1, 250, 9, 0, 1 },
        { "H 1 hd 2 rope 2 W 1 r0", 1, 2, 2, 1, 1, 0, 0, 7, 3, 0, 1 },
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++)
        run_case(&cs[i], 500 + i);
}

/* dsv4_cu_win_store vs the CPU's ring update (bit-exact) */
TEST(win_store)
{
    static const int64_t shapes[][3] = {   /* W, pos0, M */
        { 128, 0, 5 }, { 128, 120, 20 }, { 128, 300, 1 }, { 128, 7, 500 }, { 8, 13, 8 }, { 1, 4, 3 }, { 128, 0, 0 },
    };
    kt_rng r = kt_seed(7);
    const int64_t eb = 584;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        int64_t W = shapes[i][0], pos0 = shapes[i][1], M = shapes[i][2];
        uint8_t *ring = kt_malloc((size_t)(W * eb)), *kvnew = kt_malloc((size_t)((M ? M : 1) * eb));
        uint8_t *got = kt_malloc((size_t)(W * eb));
        kt_fill_bytes(&r, ring, W * eb);
        kt_fill_bytes(&r, kvnew, M * eb);
        uint8_t *dring = kt_dev(ring, (size_t)(W * eb)), *dnew = kt_dev(kvnew, (size_t)((M ? M : 1) * eb));
        for (int64_t p = pos0 + M - W > pos0 ? pos0 + M - W : pos0; p < pos0 + M; p++)
            memcpy(ring + (p % W) * eb, kvnew + (p - pos0) * eb, (size_t)eb);
        dsv4_err err = DSV4_ERR_INIT;
        KT_OK(dsv4_cu_win_store(dring, dnew, eb, W, pos0, M, NULL, &err), &err);
        if (!kt_get(got, dring, (size_t)(W * eb)))
            CHECK(memcmp(got, ring, (size_t)(W * eb)) == 0);
        dsv4_cu_free(dring);
        dsv4_cu_free(dnew);
        free(ring), free(kvnew), free(got);
    }
}

TEST(argument_errors)
{
    float *d = kt_dev(NULL, 4096);
    dsv4_attn_args good = { 0 };
    good.M = 1, good.H = 4, good.hd = 512, good.rd = 64, good.W = 128, good.pos0 = 0, good.compact = 1;
    good.q = d, good.kvnew = (const uint8_t *)d, good.sink = d, good.freqs = d, good.o = d;
    dsv4_attn_args a;
    dsv4_err err = DSV4_ERR_INIT;
#define BAD(stmt) do { a = good; stmt; err = (dsv4_err)DSV4_ERR_INIT; \
    CHECK(dsv4_cu_attn(&a, NULL, &err) == DSV4_E_INVALID); CHECK(err.msg[0] != 0); } while (0)
    CHECK(dsv4_cu_attn(NULL, NULL, &err) == DSV4_E_INVALID);
    BAD(a.hd = 2048);
    BAD(a.hd = 511);
    BAD(a.rd = 66 * 8);
    BAD(a.rd = 3);
    BAD(a.W = 0);
    BAD(a.H = 0);
    BAD(a.M = -1);
    BAD(a.ratio = 5);
    BAD(a.compact = 2);
    BAD(a.q = NULL);
    BAD(a.freqs = NULL);
    BAD(a.H = 65536);
    BAD(a.pos0 = 10);                               /* needs the ring */
    BAD(a.ratio = 128; a.pos0 = 0; a.M = 128);      /* n_ent 0 < 1 */
    BAD(a.ratio = 4);                               /* no sel / nsel / topk */
#undef BAD
    a = good;
    a.M = 0, a.q = NULL;
    CHECK(dsv4_cu_attn(&a, NULL, &err) == 0);      /* nothing to do */
    CHECK(dsv4_cu_win_store(NULL, NULL, 584, 0, 0, 1, NULL, &err) == DSV4_E_INVALID);
    CHECK(dsv4_cu_win_store(NULL, (const uint8_t *)d, 584, 128, 0, 1, NULL, &err) == DSV4_E_INVALID);
    dsv4_cu_free(d);
}

/* DSV4_ATTN_PERF=1 on a real device: times Flash-shaped decode and prefill
 * (the data are not checked here; the cases above check them). */
static void perf_one(const char *what, int ratio, int64_t M, int64_t pos0)
{
    const int64_t H = 64, hd = 512, rd = 64, W = 128, topk = 512, eb = dsv4_cu_attn_entry_bytes(1, hd, rd);
    int64_t n_ent = ratio ? (pos0 + M) / ratio : 0;
    kt_rng r = kt_seed(9);
    uint8_t *ent = kt_malloc((size_t)((n_ent + W + M) * eb));
    float *q = kt_malloc((size_t)(M * H * hd) * sizeof *q), *sink = kt_malloc((size_t)H * sizeof *sink);
    int32_t *sel = kt_malloc((size_t)(M * topk) * sizeof *sel), *nsel = kt_malloc((size_t)M * sizeof *nsel);
    float freqs[32];
    dsv4_kvstate s;
    struct acase c = { "", H, hd, rd, W, topk, ratio, 1, pos0, M, 0, 1 };
    fake_state(&s, &c);
    random_entries(&r, &s, ent, n_ent + W + M);
    kt_fill_norm(&r, q, M * H * hd, 1.0f);
    kt_fill_norm(&r, sink, H, 1.0f);
    dsv4_rope_freqs(freqs, rd, 160000.0, 1, 16.0, 65536.0, 32.0, 1.0);
    for (int64_t m = 0; m < M; m++) {
        int64_t nv = (pos0 + m + 1) / 4;
        nsel[m] = (int32_t)(nv < topk ? nv : topk);
        for (int64_t j = 0; j < topk; j++)
            sel[m * topk + j] = (int32_t)(nv ? (int64_t)(kt_u32(&r) % (uint32_t)nv) : 0);
    }
    dsv4_attn_args a = { 0 };
    a.M = M, a.H = H, a.hd = hd, a.rd = rd, a.W = W, a.pos0 = pos0, a.ratio = ratio, a.compact = 1;
    uint8_t *dent = kt_dev(ent, (size_t)((n_ent + W + M) * eb));
    a.ent = dent, a.ring = dent + n_ent * eb, a.kvnew = dent + (n_ent + W) * eb, a.n_ent = n_ent;
    a.q = kt_dev(q, (size_t)(M * H * hd) * sizeof *q);
    a.sel = kt_dev(sel, (size_t)(M * topk) * sizeof *sel);
    a.nsel = kt_dev(nsel, (size_t)M * sizeof *nsel);
    a.topk = topk;
    a.sink = kt_dev(sink, (size_t)H * sizeof *sink);
    a.freqs = kt_dev(freqs, sizeof freqs);
    a.o = kt_dev(NULL, (size_t)(M * H * hd) * sizeof(float));
    a.ws_bytes = dsv4_cu_attn_ws_bytes(&a);
    a.ws = a.ws_bytes ? kt_dev(NULL, a.ws_bytes) : NULL;
    dsv4_err err = DSV4_ERR_INIT;
    KT_OK(dsv4_cu_attn(&a, NULL, &err), &err);
    KT_OK(dsv4_cu_sync(NULL, &err), &err);
    int reps = M == 1 ? 200 : 10;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < reps; i++)
        KT_OK(dsv4_cu_attn(&a, NULL, &err), &err);
    KT_OK(dsv4_cu_sync(NULL, &err), &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) / reps;
    printf("  perf %-28s M %-5lld %9.1f us/call  %8.2f us/token\n", what, (long long)M, us, us / (double)M);
    dsv4_cu_free(dent), dsv4_cu_free((void *)a.q), dsv4_cu_free((void *)a.sel), dsv4_cu_free((void *)a.nsel);
    dsv4_cu_free((void *)a.sink), dsv4_cu_free((void *)a.freqs), dsv4_cu_free(a.o), dsv4_cu_free(a.ws);
    free(ent), free(q), free(sink), free(sel), free(nsel);
}

TEST(perf)
{
    if (ktest_emulated() || !getenv("DSV4_ATTN_PERF")) {
        printf("  (set DSV4_ATTN_PERF=1 on a GPU to time Flash shapes)\n");
        return;
    }
    perf_one("flash CSA decode", 4, 1, 100000);
    perf_one("flash HCA decode 1M ctx", 128, 1, 1 << 20);
    perf_one("flash SWA decode", 0, 1, 100000);
    perf_one("flash CSA prefill", 4, 4096, 0);
    perf_one("flash HCA prefill", 128, 4096, 0);
}

#endif

KTEST_MAIN(T(tiny_window_only), T(tiny_csa), T(tiny_hca), T(flash), T(awkward_shapes), T(win_store),
           T(argument_errors), T(perf))
