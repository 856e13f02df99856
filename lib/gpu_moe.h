/* gpu_moe — the MoE sub-layer on the GPU (kernels/moe.cu), mirroring
 * lib/moe.c (dsv4_moe_chunk and its steps dsv4_moe_route, dsv4_moe_experts;
 * spec/ARCH.md §6): f32 router GEMM, sqrt-softplus scores, top-k with a
 * selection-only bias or hash routing through tid2eid, weights renormalised
 * x route_scale, routed experts (FP4, FP8, or dsv4-quant's Q2/Q3 weights of
 * lib/quant.h) and the shared expert
 * as clamped SwiGLU (w1, w3 -> SwiGLU x weight -> bf16 -> e4m3 per 128 ->
 * w2), combined per token in the CPU's order.
 *
 * Pointers are DEVICE pointers unless named host_; the layer struct itself
 * is a host struct.  Calls are asynchronous on stream st (NULL = default);
 * they return 0 or a negative DSV4_E_* (DSV4_E_INVALID naming the op and the
 * bad value).  M = 0 does nothing.  Requirements: D and I multiples of 128
 * (true of every DeepSeek-V4 checkpoint), 1 <= K <= E.
 *
 * Numerics and tolerance vs the CPU:
 *  - gate: bit-identical to dsv4_linear (the same double partial sums in
 *    the same order: one thread per output).
 *  - quant: bit-identical to dsv4_act_quant_row (block 128).
 *  - GEMMs (w1, w3, w2 of routed and shared experts): bit-identical to
 *    dsv4_linear_q: each output is one thread doing the CPU's arithmetic in
 *    the CPU's order (exact integer dot per scale group, times the f32
 *    product of the two scales, summed in double group after group; Q2/Q3:
 *    integer levels per 64/32-column block, times the QS8 scale).
 *  - expf/log1pf/sqrtf: the emulator uses glibc's, as the CPU, so emulated
 *    results are bit-identical; a real GPU's expf and log1pf differ from
 *    glibc by up to 2 ulp, so scores and routing weights may differ in the
 *    last bits (ids differ only at near-ties of a few ulp), and a SwiGLU
 *    output may round to the neighbouring bf16.  The GPU tests allow 1e-6
 *    relative on weights and 2^-7 relative (one bf16 step of the largest
 *    value) on the sub-layer output.
 *  - combination: each token sums its routed outputs in increasing expert
 *    id order (repeats in selection order), then the shared expert, in f32,
 *    then bf16: no atomics, so the result never depends on timing.
 * Thread-safety: a workspace serves one call at a time. */
#ifndef DSV4_GPU_MOE_H
#define DSV4_GPU_MOE_H

#include <stddef.h>
#include <stdint.h>

#include "gpu.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One MoE layer's weights on the device. */
typedef struct dsv4_cu_moe_layer {
    int64_t dim, n_experts, topk, inter;   /* D, E, K, I (config's moe_inter_dim) */
    float route_scale, swiglu_limit;       /* (float) of the config values, as the CPU uses them */
    dsv4_wt gate;                          /* [E, D], BF16 or F32 */
    const float *gate_bias;                /* [E]; required unless tid2eid is set */
    const uint8_t *tid2eid;                /* I64 [n_vocab, K]: set = hash layer (bias unused) */
    int64_t n_vocab;                       /* rows of tid2eid */
    /* Routed experts: DEVICE arrays of E views each (an upload of the CPU's
     * dsv4_layer_w w1/w2/w3 arrays with their w and s pointing at device
     * copies); only .w and .s are read there: the kind is expert_kind
     * (DSV4_WT_FP4, DSV4_WT_FP8, DSV4_WT_Q2 or DSV4_WT_Q3) for all, the shapes w1[e], w3[e] [I, D],
     * w2[e] [D, I]. */
    const dsv4_wt *w1, *w2, *w3;
    int expert_kind;
    /* Shared expert (host views of device bytes), FP8, FP4, Q2 or Q3 (sw1
     * and sw3 of one kind; dsv4-quant's fit-80g makes them Q3): sw1, sw3
     * [I, D], sw2 [D, I] (one shared expert: n_shared_experts = 1);
     * sw1.kind == DSV4_WT_NONE: no shared expert. */
    dsv4_wt sw1, sw2, sw3;
} dsv4_cu_moe_layer;

/* q[m, k] e4m3 codes and s[m, ceil(k/128)] scales of x[m, k] per 128
 * columns: bit-identical to dsv4_act_quant_row(x + i*k, k, 128, ...) per row
 * (any k >= 1; the last block may be short). */
int dsv4_cu_moe_quant(const float *x, int64_t m, int64_t k, uint8_t *q, float *s, dsv4_stream st,
                      dsv4_err *err);

/* Router logits logits[M, E] = xn[M, D] . gate^T in f32, unrounded, as
 * dsv4_linear(pool, &L->gate, xn, M, logits, 0) (bit-identical). */
int dsv4_cu_moe_gate(const dsv4_cu_moe_layer *L, const float *xn, int64_t M, float *logits, dsv4_stream st,
                     dsv4_err *err);

/* dsv4_moe_route: sc[M, E] holds the logits on entry and the scores
 * sqrt(softplus) on return; sel[M, K] expert ids, wsel[M, K] weights.  Hash
 * layers read tid2eid[tokens[m]] (tokens: [M] device, ignored otherwise); a
 * token >= n_vocab or an id outside [0, E) (the CPU's DSV4_E_FORMAT) gives
 * that token ids -1 and NaN weights and sets *status = 1 when status is
 * non-NULL (device int the caller zeroes); the experts then give NaN for
 * the token. */
int dsv4_cu_moe_route(const dsv4_cu_moe_layer *L, float *sc, const uint32_t *tokens, int64_t M, int32_t *sel,
                      float *wsel, int32_t *status, dsv4_stream st, dsv4_err *err);

/* Device workspace bytes that dsv4_cu_moe_experts / dsv4_cu_moe_chunk need
 * for M tokens (0 for bad arguments). */
size_t dsv4_cu_moe_experts_workspace(const dsv4_cu_moe_layer *L, int64_t M);
size_t dsv4_cu_moe_chunk_workspace(const dsv4_cu_moe_layer *L, int64_t M);

/* dsv4_moe_experts from the quantised input: xq[M, D] e4m3 codes and
 * xs[M, D/128] scales (dsv4_act_quant_row of xn), routing sel/wsel [M, K]
 * (an id outside [0, E) makes that token's output NaN); out[M, D] f32
 * holding bf16 values.  ws: ws_bytes >= dsv4_cu_moe_experts_workspace. */
int dsv4_cu_moe_experts(const dsv4_cu_moe_layer *L, const uint8_t *xq, const float *xs, const int32_t *sel,
                        const float *wsel, int64_t M, float *out, void *ws, size_t ws_bytes, dsv4_stream st,
                        dsv4_err *err);

/* The whole sub-layer, dsv4_moe_chunk: xn[M, D] (bf16 values, the router's
 * input), its quantisation xq/xs (both NULL: computed here), tokens[M]
 * (hash layers), out[M, D]; status as in dsv4_cu_moe_route (may be NULL).
 * ws: ws_bytes >= dsv4_cu_moe_chunk_workspace. */
int dsv4_cu_moe_chunk(const dsv4_cu_moe_layer *L, const float *xn, const uint8_t *xq, const float *xs,
                      const uint32_t *tokens, int64_t M, float *out, int32_t *status, void *ws,
                      size_t ws_bytes, dsv4_stream st, dsv4_err *err);

#ifdef __cplusplus
}
#endif

#endif
