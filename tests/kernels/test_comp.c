/* GPU compressors and lightning indexer (kernels/compress.cu,
 * kernels/indexer.cu, lib/gpu_comp.h) against the CPU (dsv4_comp_tokens,
 * dsv4_index_rows in lib/attn.c).
 *
 * Compressors: random projections, ape, norm weights and the layer's YaRN
 * RoPE table; a sequence of T tokens is fed in one chunk and in several
 * chunks of varied sizes (1 token, block-straddling ones) and, for ratio 4,
 * one token at a time (decode), on the CPU and the GPU, and after every
 * chunk the state rows (kv, score) and every packed entry must match the
 * CPU bit for bit, for CSA (ratio 4, c = 2), HCA
 * (ratio 128) and the indexer's compressor, both layouts, the model's dims
 * (head_dim 512 / rope 64 / index 128, tiny and Flash alike) and awkward
 * ones (d = 200, rope 16: a short FP8 block; index dims 96 and 80, not
 * powers of two: no Hadamard, 80 with a short FP4 block), plus zero norm
 * weights (all-zero FP4 blocks).
 * Bit-exactness holds in the emulated build (glibc expf/sinf/cosf on both
 * sides); on a GPU CUDA's expf/sinf/cosf may differ by an ulp and flip a
 * bf16 rounding, so there the test reports the mismatching bytes and
 * bounds the decoded entries' error instead (see lib/gpu_comp.h).
 *
 * Indexer: random FP4-simulated queries, bf16 weights, keys packed by
 * dsv4_ikey_pack; scores must equal the CPU formula bit for bit, and sel /
 * nsel must equal dsv4_index_rows (descending score, ties to the lower
 * index) for n_ent from 1 to a few thousand, rows whose visible count is
 * below, at and above topk, many equal scores (repeated keys, all-zero
 * weights).  Argument errors are checked. */
#include "ktest.h"

#if DSV4_HAVE_CUDA
#include <math.h>

#include "codec.h"
#include "engine_impl.h"
#include "gpu_comp.h"
#include "kvstate.h"
#include "ops.h"

static dsv4_kvstate fake_state(int compact, int64_t hd, int64_t rd, int64_t ihd)
{
    dsv4_kvstate s;
    memset(&s, 0, sizeof s);
    s.compact = compact;
    s.head_dim = hd;
    s.rope_dim = rd;
    s.index_head_dim = ihd;
    dsv4_config c;
    memset(&c, 0, sizeof c);
    c.head_dim = hd;
    c.rope_dim = rd;
    c.index_head_dim = ihd;
    dsv4_kv_sizes(&c, compact, &s.entry_bytes, &s.ikey_bytes);
    return s;
}

/* Decodes n entries of both sides and returns the relative error (GPU runs). */
static double entry_err(const dsv4_kvstate *s, int ikey, int64_t d, const uint8_t *got, const uint8_t *ref,
                        int64_t n, size_t bytes)
{
    float *a = kt_malloc((size_t)d * sizeof *a), *b = kt_malloc((size_t)d * sizeof *b);
    double worst = 0.0;
    for (int64_t j = 0; j < n; j++) {
        if (ikey) {
            dsv4_ikey_unpack(s, got + j * bytes, a);
            dsv4_ikey_unpack(s, ref + j * bytes, b);
        } else {
            dsv4_kv_unpack(s, got + j * bytes, a);
            dsv4_kv_unpack(s, ref + j * bytes, b);
        }
        double e = kt_relerr(a, b, d);
        worst = e > worst ? e : worst;
    }
    free(a);
    free(b);
    return worst;
}

/* One compressor case: T tokens fed as the chunks sizes[0..nch). */
static void comp_case(int ratio, int ikey, int compact, int64_t d, int64_t rd, int64_t T, const int64_t *sizes,
                      int nch, int zero_norm, uint64_t seed)
{
    kt_rng R = kt_seed(seed);
    int64_t c = ratio == 4 ? 2 : 1, cd = c * d, rows = c * ratio;
    dsv4_kvstate s = ikey ? fake_state(compact, 64, 0, d) : fake_state(compact, d, rd, 128);
    size_t bytes = ikey ? s.ikey_bytes : s.entry_bytes;
    CHECK_EQ_INT(bytes, dsv4_cu_comp_bytes(compact, ikey, d, rd));
    float *k = kt_malloc((size_t)(T * cd) * sizeof *k), *g = kt_malloc((size_t)(T * cd) * sizeof *g);
    float *ga = kt_malloc((size_t)(T * cd) * sizeof *ga);
    float *ape = kt_malloc((size_t)(ratio * cd) * sizeof *ape), *nw = kt_malloc((size_t)d * sizeof *nw);
    float *freqs = kt_malloc((size_t)(rd / 2 + 1) * sizeof *freqs);
    kt_fill_norm(&R, k, T * cd, 1.0f);
    kt_fill_norm(&R, g, T * cd, 1.5f);
    kt_fill_norm(&R, ape, ratio * cd, 0.5f);
    for (int64_t i = 0; i < d; i++)
        nw[i] = zero_norm && i < 40 ? 0.0f : 1.0f + kt_norm(&R, 0.2f);
    dsv4_rope_freqs(freqs, rd, 160000.0, 1, 16.0, 65536.0, 32.0, 1.0);
    float *ckv = kt_malloc((size_t)(rows * cd) * sizeof *ckv), *csc = kt_malloc((size_t)(rows * cd) * sizeof *csc);
    for (int64_t i = 0; i < rows * cd; i++)
        ckv[i] = 0.0f, csc[i] = -INFINITY;
    int64_t nmax = T / ratio + 1;
    uint8_t *ref = kt_malloc((size_t)nmax * bytes), *got = kt_malloc((size_t)nmax * bytes);
    float *ent = kt_malloc((size_t)d * sizeof *ent);
    float *hkv = kt_malloc((size_t)(rows * cd) * sizeof *hkv), *hsc = kt_malloc((size_t)(rows * cd) * sizeof *hsc);
    float *dk = kt_dev(k, (size_t)(T * cd) * sizeof *k), *dg = kt_dev(g, (size_t)(T * cd) * sizeof *g);
    float *dape = kt_dev(ape, (size_t)(ratio * cd) * sizeof *ape), *dnw = kt_dev(nw, (size_t)d * sizeof *nw);
    float *dfr = kt_dev(freqs, (size_t)(rd / 2 + 1) * sizeof *freqs);
    float *dkv = kt_dev(ckv, (size_t)(rows * cd) * sizeof *ckv), *dsc = kt_dev(csc, (size_t)(rows * cd) * sizeof *csc);
    uint8_t *dout = kt_dev(NULL, (size_t)nmax * bytes);
    dsv4_comp C = { ape, nw, freqs, ckv, csc, ratio, d, c, rd, 1e-6f, ikey };
    memcpy(ga, g, (size_t)(T * cd) * sizeof *g);
    int64_t pos = 0, n_ent = 0, bad_state = 0, bad_ent = 0;
    double eerr = 0.0;
    for (int ci = 0; ci < nch && pos < T; ci++) {
        int64_t M = sizes[ci] < T - pos ? sizes[ci] : T - pos;
        dsv4_comp_ape(&C, ga + pos * cd, M, pos);
        n_ent += dsv4_comp_tokens(&C, &s, k + pos * cd, ga + pos * cd, M, pos, ref, ent);
        dsv4_err err = DSV4_ERR_INIT;
        dsv4_cu_comp_args a = { ratio, ikey, compact, d, rd, 1e-6f, M, pos, dk + pos * cd, dg + pos * cd,
                                dape, dnw, dfr, dkv, dsc, dout, -1 };
        KT_OK(dsv4_cu_compress(&a, NULL, &err), &err);
        CHECK_EQ_INT(a.n_ent_after, (pos + M) / ratio);
        pos += M;
        size_t sb = (size_t)(rows * cd) * sizeof *hkv;
        if (kt_get(hkv, dkv, sb) || kt_get(hsc, dsc, sb) || kt_get(got, dout, (size_t)nmax * bytes))
            break;
        bad_state += kt_mismatch(hkv, ckv, rows * cd) + kt_mismatch(hsc, csc, rows * cd);
        for (size_t i = 0; i < (size_t)n_ent * bytes; i++)
            bad_ent += got[i] != ref[i];
        double e = entry_err(&s, ikey, d, got, ref, n_ent, bytes);
        eerr = e > eerr ? e : eerr;
    }
    CHECK_EQ_INT(n_ent, T / ratio);
    printf("  %s r=%d %s d=%lld rope=%lld T=%lld in %d chunks%s: %lld entries, state mismatches %lld, "
           "entry byte mismatches %lld, decoded rel err %.3g\n", ikey ? "indexer" : "main", ratio,
           compact ? "compact" : "bf16", (long long)d, (long long)rd, (long long)T, nch,
           zero_norm ? " (zero norm)" : "",
           (long long)n_ent, (long long)bad_state, (long long)bad_ent, eerr);
    CHECK_EQ_INT(bad_state, 0);
    if (ktest_emulated()) {
        CHECK_EQ_INT(bad_ent, 0);
        CHECK(eerr == 0.0);
    } else {
        /* expf/sinf/cosf ulps flip a bf16 rounding now and then: a bf16 ulp
         * (2^-8) of a value, or one FP8 step (<= 1/8 of the block's scale
         * range) / FP4 step (<= 1/3), relative to the entry's largest value */
        CHECK(eerr <= (ikey && compact ? 0.5 : compact ? 0.15 : 0.01));
    }
    free(k); free(g); free(ga); free(ape); free(nw); free(freqs); free(ckv); free(csc); free(ref); free(got);
    free(ent); free(hkv); free(hsc);
    dsv4_cu_free(dk); dsv4_cu_free(dg); dsv4_cu_free(dape); dsv4_cu_free(dnw); dsv4_cu_free(dfr);
    dsv4_cu_free(dkv); dsv4_cu_free(dsc); dsv4_cu_free(dout);
}

static void comp_both(int ratio, int ikey, int64_t d, int64_t rd, int64_t T, int zero_norm, uint64_t seed)
{
    int64_t one[1] = { T };
    int64_t many[16] = { 1, 3, 2, 5, 4, 7, 1, 13, 6, 129, 2, 127, 40, 300, 64, 100000 };
    int64_t ones[64];   /* decode: one token at a time */
    for (int i = 0; i < 64; i++)
        ones[i] = 1;
    for (int compact = 0; compact <= 1; compact++) {
        comp_case(ratio, ikey, compact, d, rd, T, one, 1, zero_norm, seed);
        comp_case(ratio, ikey, compact, d, rd, T, many, 16, zero_norm, seed);
        if (ratio == 4 && T <= 64)
            comp_case(ratio, ikey, compact, d, rd, T, ones, (int)T, zero_norm, seed);
    }
}

TEST(csa_compressor)
{
    comp_both(4, 0, 512, 64, ktest_emulated() ? 27 : 203, 0, 1);
    comp_both(4, 0, 200, 16, 23, 0, 2);
}

TEST(hca_compressor)
{
    comp_both(128, 0, 512, 64, ktest_emulated() ? 300 : 700, 0, 3);
    comp_both(128, 0, 200, 16, 260, 0, 4);
}

TEST(indexer_compressor)
{
    comp_both(4, 1, 128, 64, ktest_emulated() ? 31 : 203, 0, 5);
    comp_both(4, 1, 128, 64, 17, 1, 6);
    comp_both(4, 1, 64, 32, 14, 0, 7);
    comp_both(4, 1, 96, 32, 14, 0, 8);
    comp_both(4, 1, 80, 16, 13, 0, 9);   /* a short FP4 block */
}

TEST(compress_args)
{
    dsv4_err err = DSV4_ERR_INIT;
    float dummy[4];
    uint8_t db[4];
    dsv4_cu_comp_args a = { 4, 0, 1, 512, 64, 1e-6f, 1, 0, dummy, dummy, dummy, dummy, dummy, dummy, dummy, db, 0 };
    dsv4_cu_comp_args b = a;
    b.ratio = 8;
    CHECK_EQ_INT(dsv4_cu_compress(&b, NULL, &err), DSV4_E_INVALID);
    CHECK(strstr(err.msg, "ratio 8") != NULL);
    b = a, b.ikey = 1, b.ratio = 128;
    CHECK_EQ_INT(dsv4_cu_compress(&b, NULL, &err), DSV4_E_INVALID);
    b = a, b.rope_dim = 513;
    CHECK_EQ_INT(dsv4_cu_compress(&b, NULL, &err), DSV4_E_INVALID);
    b = a, b.M = -1;
    CHECK_EQ_INT(dsv4_cu_compress(&b, NULL, &err), DSV4_E_INVALID);
    b = a, b.k = NULL;
    CHECK_EQ_INT(dsv4_cu_compress(&b, NULL, &err), DSV4_E_INVALID);
    CHECK_EQ_INT(dsv4_cu_compress(NULL, NULL, &err), DSV4_E_INVALID);
    b = a, b.M = 0, b.pos0 = 9;    /* nothing to do */
    CHECK_EQ_INT(dsv4_cu_compress(&b, NULL, &err), 0);
    CHECK_EQ_INT(b.n_ent_after, 2);
}

/* ---- indexer ------------------------------------------------------------ */

enum { KEYS_RANDOM, KEYS_REPEAT, W_ZERO };

static void index_case(int compact, int64_t nih, int64_t ihd, int64_t topk, int64_t n_ent, int64_t M, int mode,
                       uint64_t seed)
{
    kt_rng R = kt_seed(seed);
    dsv4_kvstate s = fake_state(compact, 64, 0, ihd);
    if (M > 4 * n_ent + 3)
        M = 4 * n_ent + 3;
    int64_t pos0 = 4 * n_ent + 3 - M - (int64_t)(kt_u32(&R) % 3);   /* the last rows see every key */
    pos0 = pos0 > 0 ? pos0 : 0;
    float *qi = kt_malloc((size_t)(M * nih * ihd) * sizeof *qi), *w = kt_malloc((size_t)(M * nih) * sizeof *w);
    uint8_t *keys = kt_malloc((size_t)(n_ent ? n_ent : 1) * s.ikey_bytes);
    float *v = kt_malloc((size_t)ihd * sizeof *v);
    kt_fill_norm(&R, qi, M * nih * ihd, 1.0f);
    if (compact)
        for (int64_t i = 0; i < M * nih; i++)
            dsv4_fp4_sim(qi + i * ihd, ihd, 32);
    else
        for (int64_t i = 0; i < M * nih * ihd; i++)
            qi[i] = dsv4_round_bf16(qi[i]);
    for (int64_t i = 0; i < M * nih; i++)
        w[i] = mode == W_ZERO ? 0.0f : dsv4_round_bf16(kt_norm(&R, 0.1f) + 0.02f);
    for (int64_t j = 0; j < n_ent; j++) {
        if (mode == KEYS_REPEAT && j >= 5) {
            memcpy(keys + j * s.ikey_bytes, keys + (j % 5) * s.ikey_bytes, s.ikey_bytes);
            continue;
        }
        kt_fill_norm(&R, v, ihd, 0.3f);
        dsv4_ikey_pack(&s, v, keys + j * s.ikey_bytes);
    }
    /* CPU reference */
    int32_t *rsel = kt_malloc((size_t)(M * topk) * sizeof *rsel), *gsel = kt_malloc((size_t)(M * topk) * sizeof *gsel);
    int64_t *rn = kt_malloc((size_t)M * sizeof *rn);
    int32_t *gn = kt_malloc((size_t)M * sizeof *gn);
    float *scr = kt_malloc((size_t)(n_ent + ihd) * sizeof *scr);
    float *rsc = kt_malloc((size_t)(M * (n_ent ? n_ent : 1)) * sizeof *rsc);
    float *gsc = kt_malloc((size_t)(M * (n_ent ? n_ent : 1)) * sizeof *gsc);
    dsv4_index_rows(&s, keys, n_ent, nih, qi, w, M, pos0, topk, rsel, rn, scr);
    for (int64_t m = 0; m < M; m++) {   /* the scores, as idx_rows computes them */
        int64_t nvis = (pos0 + m + 1) / 4;
        for (int64_t j = 0; j < nvis; j++) {
            dsv4_ikey_unpack(&s, keys + j * s.ikey_bytes, v);
            float acc = 0.0f;
            for (int64_t h = 0; h < nih; h++) {
                float dd = dsv4_round_bf16(dsv4_dot(qi + (m * nih + h) * ihd, v, ihd));
                dd = dd > 0.0f ? dd : 0.0f;
                acc += dsv4_round_bf16(dd * w[m * nih + h]);
            }
            rsc[m * n_ent + j] = dsv4_round_bf16(acc);
        }
    }
    float *dq = kt_dev(qi, (size_t)(M * nih * ihd) * sizeof *qi), *dw = kt_dev(w, (size_t)(M * nih) * sizeof *w);
    uint8_t *dkeys = kt_dev(keys, (size_t)(n_ent ? n_ent : 1) * s.ikey_bytes);
    float *dsc = kt_dev(NULL, (size_t)(M * (n_ent ? n_ent : 1)) * sizeof *dsc);
    int32_t *dsel = kt_dev(NULL, (size_t)(M * topk) * sizeof *dsel), *dn = kt_dev(NULL, (size_t)M * sizeof *dn);
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_cu_index_args a = { compact, nih, ihd, M, pos0, topk, n_ent, dq, dw, dkeys, dsc, dsel, dn };
    KT_OK(dsv4_cu_index_topk(&a, NULL, &err), &err);
    int64_t bad_sc = 0, bad_sel = 0, ties = 0;
    if (!kt_get(gsc, dsc, (size_t)(M * (n_ent ? n_ent : 1)) * sizeof *gsc) &&
        !kt_get(gsel, dsel, (size_t)(M * topk) * sizeof *gsel) && !kt_get(gn, dn, (size_t)M * sizeof *gn)) {
        for (int64_t m = 0; m < M; m++) {
            int64_t nvis = (pos0 + m + 1) / 4;
            bad_sc += kt_mismatch(gsc + m * n_ent, rsc + m * n_ent, nvis);
            CHECK_EQ_INT(gn[m], rn[m]);
            for (int64_t i = 0; i < topk; i++) {
                if (i < rn[m]) {
                    bad_sel += gsel[m * topk + i] != rsel[m * topk + i];
                    ties += i > 0 && rsc[m * n_ent + rsel[m * topk + i]] == rsc[m * n_ent + rsel[m * topk + i - 1]];
                } else {
                    bad_sel += gsel[m * topk + i] != -1;
                }
            }
        }
    }
    printf("  %s nih=%lld topk=%lld n_ent=%lld rows %lld..%lld%s: score mismatches %lld, selection mismatches "
           "%lld (%lld tied neighbours)\n", compact ? "compact" : "bf16", (long long)nih, (long long)topk,
           (long long)n_ent, (long long)pos0, (long long)(pos0 + M - 1),
           mode == KEYS_REPEAT ? " repeated keys" : mode == W_ZERO ? " zero weights" : "", (long long)bad_sc,
           (long long)bad_sel, (long long)ties);
    CHECK_EQ_INT(bad_sc, 0);
    CHECK_EQ_INT(bad_sel, 0);
    free(qi); free(w); free(keys); free(v); free(rsel); free(gsel); free(rn); free(gn); free(scr); free(rsc);
    free(gsc);
    dsv4_cu_free(dq); dsv4_cu_free(dw); dsv4_cu_free(dkeys); dsv4_cu_free(dsc); dsv4_cu_free(dsel);
    dsv4_cu_free(dn);
}

TEST(index_tiny)
{
    /* tiny-v4: 4 heads, topk 32 */
    int64_t ns[] = { 1, 2, 7, 31, 32, 33, 100, 1000, 3001 };
    for (int compact = 0; compact <= 1; compact++)
        for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
            index_case(compact, 4, 128, 32, ns[i], ns[i] < 40 ? 2 * ns[i] + 9 : 6, KEYS_RANDOM, 10 + i);
    index_case(1, 4, 128, 32, 600, 5, KEYS_REPEAT, 30);
    index_case(0, 4, 128, 32, 2000, 5, KEYS_REPEAT, 31);
    index_case(1, 4, 128, 32, 777, 5, W_ZERO, 32);
    index_case(1, 3, 64, 5, 50, 40, KEYS_RANDOM, 33);   /* odd sizes */
    index_case(1, 4, 128, 32, 9000, 2, KEYS_REPEAT, 34);   /* the 1024-thread top-k */
    index_case(0, 2, 32, 100, 8500, 2, KEYS_RANDOM, 35);
}

TEST(index_flash)
{
    /* Flash: 64 heads, topk 512 */
    int emu = ktest_emulated();
    int64_t ns[] = { 1, 100, 511, 512, 513, 1500, 4000 };
    for (int compact = 0; compact <= 1; compact++)
        for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
            index_case(compact, 64, 128, 512, ns[i], emu ? 2 : 16, KEYS_RANDOM, 40 + i);
    index_case(1, 64, 128, 512, 2500, 3, KEYS_REPEAT, 50);
    index_case(1, 64, 128, 512, 1200, 2, W_ZERO, 51);
    if (!emu) {
        index_case(1, 64, 128, 512, 1 << 18, 4, KEYS_RANDOM, 52);
        index_case(1, 64, 128, 2048, 1 << 18, 4, KEYS_REPEAT, 53);
        index_case(0, 64, 128, 512, 100000, 64, KEYS_RANDOM, 54);
    }
}

TEST(index_args)
{
    dsv4_err err = DSV4_ERR_INIT;
    float f[4];
    uint8_t b[4];
    int32_t i[4];
    dsv4_cu_index_args a = { 1, 4, 128, 1, 7, 32, 2, f, f, b, f, i, i };
    dsv4_cu_index_args c = a;
    c.topk = 0;
    CHECK_EQ_INT(dsv4_cu_index_topk(&c, NULL, &err), DSV4_E_INVALID);
    CHECK(strstr(err.msg, "topk 0") != NULL);
    c = a, c.n_ent = 1;    /* position 7 sees 2 keys */
    CHECK_EQ_INT(dsv4_cu_index_topk(&c, NULL, &err), DSV4_E_INVALID);
    c = a, c.ihd = 7;
    CHECK_EQ_INT(dsv4_cu_index_topk(&c, NULL, &err), DSV4_E_INVALID);
    c = a, c.qi = NULL;
    CHECK_EQ_INT(dsv4_cu_index_topk(&c, NULL, &err), DSV4_E_INVALID);
    CHECK_EQ_INT(dsv4_cu_index_topk(NULL, NULL, &err), DSV4_E_INVALID);
    c = a, c.M = 0;
    CHECK_EQ_INT(dsv4_cu_index_topk(&c, NULL, &err), 0);
}

#endif

KTEST_MAIN(T(csa_compressor), T(hca_compressor), T(indexer_compressor), T(compress_args), T(index_tiny),
           T(index_flash), T(index_args))
