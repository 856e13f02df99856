/* gpu_comp — the KV compressors and the lightning indexer on the GPU
 * (kernels/compress.cu, kernels/indexer.cu; spec/ARCH.md §5.3, §5.4, §9).
 * Built only when DSV4_HAVE_CUDA is 1.  All pointers are device pointers;
 * the argument structs themselves are host memory.  Launches are
 * asynchronous on stream s; the calls borrow every pointer for the call.
 *
 * Compressor (mirrors dsv4_comp_tokens in lib/attn.c: comp_push, comp_pool,
 * entry_finish, the Hadamard and dsv4_kv_pack / dsv4_ikey_pack): takes the
 * chunk's projections k, g [M, c*d] as dsv4_linear leaves them, BEFORE the
 * ape add (the kernel adds ape[t % r] to g), and the layer's state rows
 * kv, sc [c*r, c*d] (dsv4_kv_layer ckv/csc or ikv/isc), where c = 2 for
 * ratio 4 (overlapping CSA and the indexer's compressor) and 1 for ratio 128
 * (HCA).  Every entry j completed by positions pos0 .. pos0+M-1 (j in
 * [pos0/r, (pos0+M)/r)) is pooled, finished (bf16, RMSNorm, RoPE at j*r;
 * the indexer's also Hadamard) and packed at out + j * bytes, bytes the
 * layout's entry_bytes (ikey = 0) or ikey_bytes (ikey = 1) of
 * dsv4_kv_sizes; then the state rows are updated as the CPU leaves them.
 * Any chunking gives the same state and entries.  out must hold
 * (pos0+M)/r entries.  n_ent_after is set to (pos0+M)/r (the layer's new
 * n_ent) on success.
 *
 * Tolerance: bit-exact with the CPU in the emulated build.  On a GPU the
 * only differences come from expf (pooling weights), cosf/sinf (RoPE) whose
 * CUDA versions are not correctly rounded like glibc's (<= 2 ulp); the
 * rest (double sums in the CPU's order, the CPU's RMSNorm summation order,
 * unfused products, exact packing) is bit-exact.  So an entry may differ in
 * a bf16 ulp of a value now and then, and an FP8/FP4 code by one step.
 *
 * Indexer (mirrors dsv4_index_rows): for query row m at position
 * t = pos0 + m, score_j = bf16(sum_h bf16(relu(bf16(qi_h . key_j)) * w_h))
 * for j < nvis = (t+1)/4, then the min(topk, nvis) best j, descending
 * score, ties to the lower index, into sel[m, 0..nsel[m]) (the rest of the
 * row is -1).  qi [M, nih, ihd] f32 (after RoPE, Hadamard and, compact,
 * FP4 simulation), w [M, nih] f32 (scaled, bf16-rounded), ikeys
 * [n_ent][ikey_bytes] in the state's layout; n_ent >= (pos0+M)/4.  scores:
 * scratch [M, n_ent] f32 (the scores, kept for inspection; rows are
 * independent, so a long prefill can be run in row batches to bound it).  Bit-exact:
 * the dot products are summed in double in the CPU's order (the products
 * are exact in double), the head sum in f32 in head order; the selection
 * is exact for identical scores.  NaN scores are not supported. */
#ifndef DSV4_GPU_COMP_H
#define DSV4_GPU_COMP_H

#include <stddef.h>
#include <stdint.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dsv4_cu_comp_args {
    int ratio;              /* 4 (c = 2) or 128 (c = 1) */
    int ikey;               /* 1: the indexer's compressor (Hadamard, indexer keys) */
    int compact;            /* the state's layout (lib/kvstate.h) */
    int64_t d, rope_dim;    /* entry dims (head_dim or index_head_dim), rope dims (even, <= d) */
    float eps;              /* RMSNorm epsilon */
    int64_t M, pos0;        /* chunk of M >= 0 tokens at positions pos0.. */
    const float *k, *g;     /* [M, c*d] projections, before ape */
    const float *ape;       /* [r, c*d] */
    const float *norm;      /* [d] */
    const float *freqs;     /* [rope_dim/2] the layer's RoPE table */
    float *kv, *sc;         /* state rows [c*r, c*d], updated */
    uint8_t *out;           /* entries / keys [(pos0+M)/r][bytes] */
    int64_t n_ent_after;    /* out: (pos0+M)/r */
} dsv4_cu_comp_args;

/* Bytes of one packed entry (ikey = 0) or indexer key (ikey = 1) of d dims,
 * as dsv4_kv_sizes gives them. */
size_t dsv4_cu_comp_bytes(int compact, int ikey, int64_t d, int64_t rope_dim);

int dsv4_cu_compress(dsv4_cu_comp_args *a, dsv4_stream s, dsv4_err *err);

typedef struct dsv4_cu_index_args {
    int compact;
    int64_t nih, ihd;       /* index heads, index_head_dim */
    int64_t M, pos0, topk;  /* topk in 1..4096 */
    int64_t n_ent;          /* keys stored, >= (pos0+M)/4 */
    const float *qi;        /* [M, nih, ihd] */
    const float *w;         /* [M, nih] */
    const uint8_t *ikeys;   /* [n_ent][ikey_bytes] */
    float *scores;          /* scratch [M, n_ent] */
    int32_t *sel;           /* [M, topk] */
    int32_t *nsel;          /* [M] */
} dsv4_cu_index_args;

int dsv4_cu_index_topk(const dsv4_cu_index_args *a, dsv4_stream s, dsv4_err *err);

#ifdef __cplusplus
}
#endif

#endif
