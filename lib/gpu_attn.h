/* gpu_attn — sparse attention with the sink on the GPU (kernels/attn.cu):
 * the sliding window plus the compressed entries of one layer, for a chunk
 * of M tokens at positions pos0 .. pos0+M-1 (spec/ARCH.md §5.5, §5.6, §5.7
 * step 1, §9).  Mirrors dsv4_att_tasks (lib/attn.c) and the way
 * dsv4_attn_chunk feeds it; built only when DSV4_HAVE_CUDA is 1.
 *
 * For token m (t = pos0 + m) and head h, the slots are
 *   window:      positions p = max(0, t-W+1) .. t; the vector of p is
 *                kvnew[p - pos0] when p >= pos0, else ring[p % W];
 *   compressed:  ratio 128 (HCA): entries 0 .. (t+1)/128 - 1 of ent;
 *                ratio 4 (CSA): entries sel[m][0 .. nsel[m]-1] of ent;
 *                ratio 0: none.
 * s_i = (q[m,h] . v_i) * hd^-0.5, mx = max_i s_i, and
 *   o[m,h] = bf16( sum_i e^(s_i-mx) v_i / (sum_i e^(s_i-mx) + e^(sink[h]-mx)) )
 * followed by the inverse RoPE of the last rd dims at position t (each
 * value rounded to bf16, as dsv4_rope(..., inverse = 1)).
 *
 * Stored vectors (ring, kvnew, ent) are packed entries of entry_bytes in the
 * layout of lib/kvstate.h (compact: FP8 codes + E8M0 + bf16 rope dims; or
 * bf16), read as dsv4_kv_unpack would decode them.  The CPU attends the new
 * tokens' vectors after dsv4_kv_pack simulated them in place, which are
 * exactly their packed values, so kvnew holds the chunk's packed entries.
 *
 * Tolerance vs the CPU: the scores and the value sums are accumulated in
 * double (as the CPU's), but the softmax runs online over chunks of slots
 * (and over blocks for split decode), so each weight may differ from the
 * CPU's by a few f32 ulps, and the GPU's expf / sinf / cosf are within 2
 * ulps of glibc's.  Before the final bf16 rounding the outputs agree to
 * ~1e-6 relative; after it, a small fraction of values differ by one bf16
 * ulp (emulated: at most 0.05 % per case, 0.005 % typical; the test allows
 * 0.2 % and 2 ulps).  Under the emulator the transcendental functions are
 * glibc's, so a real GPU may show a few more.
 *
 * All pointers are device pointers; the call borrows them until the stream
 * has run the launches.  Shapes and limits: hd even, <= 1024; rd even,
 * <= hd; W >= 1; 1 <= H <= 65535; M >= 0 (0 does nothing). */
#ifndef DSV4_GPU_ATTN_H
#define DSV4_GPU_ATTN_H

#include <stddef.h>
#include <stdint.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dsv4_attn_args {
    int64_t M, H, hd, rd;    /* tokens, heads, head_dim, rope_dim */
    int64_t W;               /* window (ring slots) */
    int64_t pos0;            /* position of token 0 */
    int ratio;               /* 0 (window only), 4 (CSA) or 128 (HCA) */
    int compact;             /* stored layout: 1 compact, 0 bf16 (lib/kvstate.h) */
    const float *q;          /* [M][H][hd] f32, already normed and roped */
    const uint8_t *ring;     /* window ring [W][entry_bytes], slot = position % W */
    const uint8_t *kvnew;    /* the chunk's packed entries [M][entry_bytes] */
    const uint8_t *ent;      /* compressed entries [n_ent][entry_bytes] (ratio > 0) */
    int64_t n_ent;           /* HCA: >= (pos0 + M) / 128; CSA: selections must be < n_ent */
    const int32_t *sel;      /* CSA: [M][topk] entry indices (only the first nsel[m] used) */
    const int32_t *nsel;     /* CSA: [M] selections per token, 0 .. topk */
    int64_t topk;            /* CSA: row stride of sel (index_topk) */
    const float *sink;       /* [H] sink logits (attn_sink) */
    const float *freqs;      /* [rd/2] the layer's rope table (dsv4_rope_freqs) */
    float *o;                /* [M][H][hd] f32 output (bf16 values) */
    void *ws;                /* workspace for split decode, or NULL */
    size_t ws_bytes;         /* its size */
} dsv4_attn_args;

/* Bytes of the stored vector of the layout (dsv4_kv_sizes' entry_bytes). */
int64_t dsv4_cu_attn_entry_bytes(int compact, int64_t hd, int64_t rd);

/* Workspace bytes dsv4_cu_attn wants for a's shape (0 when it would not
 * split the slots of a token across blocks).  With less (or ws NULL) the
 * call splits less, down to one block per (token, group of heads): the
 * results stay within the tolerance, only the speed changes. */
size_t dsv4_cu_attn_ws_bytes(const dsv4_attn_args *a);

/* Launch the attention of a's chunk on stream s (one or two kernels).
 * DSV4_E_INVALID for a bad argument (the message names it). */
int dsv4_cu_attn(const dsv4_attn_args *a, dsv4_stream s, dsv4_err *err);

/* Window ring update at the end of a chunk (as dsv4_attn_chunk does):
 * positions p = max(pos0, pos0+M-W) .. pos0+M-1 copy kvnew[p - pos0] into
 * ring[p % W] (entry_bytes each).  Asynchronous on s; kvnew and ring must
 * not overlap. */
int dsv4_cu_win_store(uint8_t *ring, const uint8_t *kvnew, int64_t entry_bytes, int64_t W, int64_t pos0,
                      int64_t M, dsv4_stream s, dsv4_err *err);

#ifdef __cplusplus
}
#endif

#endif
