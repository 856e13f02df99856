// moe — the MoE sub-layer (lib/gpu_moe.h), the GPU twin of lib/moe.c.
//
// Pipeline of one chunk (each a kernel, all on one stream, no host sync):
//   quant   xn -> e4m3 codes + scales per 128 (when the caller has none)
//   gate    logits = xn . gate^T, f32, the CPU's double partial sums
//   route   sqrt-softplus scores, top-k (bias for selection only) or
//           tid2eid, renormalised weights x route_scale
//   plan    one block: tokens per expert, the grouped row of every
//           (token, k), tiles of TM rows of one expert, per-token sum order
//   up      per tile: w1 and w3 on the tile's gathered rows, clamped SwiGLU
//           x routing weight, bf16 -> h
//   quant   h -> e4m3 codes + scales per 128 (the w2 input)
//   down    per tile: w2 -> y (bf16 values)
//   combine per token and column: routed outputs in (expert id, k) order,
//           then the shared expert (its rows follow the routed ones), bf16
//
// Exactness: a product of an e4m3 and an e2m1 code is a multiple of 2^-10,
// of two e4m3 codes a multiple of 2^-18; the codes are turned into integers
// (x 2^9 for e4m3, x 2 for e2m1) and each 32-column group summed exactly in
// int32 (FP4: |sum| < 2^27) or int64 (FP8 blocks of 128), which is what
// the CPU's double dot of the group gives.  Q2/Q3 routed experts (dsv4-quant,
// lib/quant.h) are integer levels (|level| <= 6) times a QS8 block scale:
// level x (e4m3 x 2^9) summed over 32 columns stays below 2^26 in int32,
// and the block (Q2: 64 columns, Q3: 32) is scaled by the f32 product of
// the activation scale and the QS8 value, as the CPU does.  Group terms are scaled as the
// CPU scales them and summed in double in the CPU's order (one thread per
// output), so the GEMMs are bit-identical to dsv4_linear_q.
//
// Bounds: decode (M = 1) reads each selected expert's w1, w3 and w2 once
// (6 x 3 x I x D / 2 bytes for Flash FP4, ~38 MB, plus 25 MB of the FP8
// shared expert): memory-bound.  Each thread streams its own weight row 4
// bytes at a time (the warp's 32 rows meet in L1, 128-byte lines), and only
// (I or D) / GT x (experts + 1) blocks run: likely far from the bandwidth
// bound (not yet measured on a device).
// Prefill reuses each weight row for the TM rows of a tile held in shared
// memory; with CUDA-core integer dots it is compute-bound far below the
// tensor cores.  What would make it faster, in order: stage weight tiles
// through shared memory with coalesced 16-byte (cp.async) loads and several
// stages, fewer columns per block for decode (more blocks in flight); split
// k over warps (gives up the CPU's summation order: equal unless a row's
// double sum is inexact, i.e. its scale exponents span more than ~19
// binades); FP8 mma.sync for prefill (FP4 codes are exact in e4m3; the f32
// accumulation of a 32-group is exact while |sum| < 2^24 units, so needs a
// hi/lo split of the activation codes); a parallel plan (the single-thread
// tile loop is O(M K / TM + E)); fusing the h quantisation into the up
// kernel; the router with a split over D for decode (one thread runs a
// D/4-long dependent chain of double adds to keep the CPU's order).
#include "gpu_moe.h"
#include "common.cuh"
#include "quant.cuh"

#include <string.h>

namespace {
using namespace dsv4k;

constexpr int TM = 8;        // grouped rows per tile
// GEMM block threads = output columns per block: 128 gives decode (one tile
// per selected expert) (I or D) / 128 blocks per expert and two blocks per
// SM by registers (~170 per thread); not tuned on a device yet.
constexpr int GT = 128;
constexpr int PT = 256;      // plan block threads

__device__ __forceinline__ float qnan() { return __uint_as_float(0x7fc00000u); }

// e4m3 code -> value x 2^9, an integer in [-229376, 229376] (NaN codes are
// flagged separately).
__device__ __forceinline__ int e4m3_int(uint32_t c)
{
    int em = (int)(c & 0x7fu), e = em >> 3, m = em & 7;
    int v = e ? (8 + m) << (e - 1) : m;
    return (c & 0x80u) ? -v : v;
}
// e2m1 nibble -> value x 2: 0, 1, 2, 3, 4, 6, 8, 12.
__device__ __forceinline__ int e2m1_int(uint32_t c)
{
    int v = (int)((0xC8643210u >> (4 * (c & 7u))) & 15u);
    return (c & 8u) ? -v : v;
}
// Any byte of v an e4m3 NaN (x111 1111)?
__device__ __forceinline__ bool nan4(uint32_t v)
{
    uint32_t z = ~(v | 0x80808080u);   // bytes 0 where v's byte was a NaN code
    return ((z - 0x01010101u) & ~z & 0x80808080u) != 0;
}
__device__ __forceinline__ uint32_t ld4(const uint8_t *p, bool al)
{
    if (al)
        return *reinterpret_cast<const uint32_t *>(p);
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// ---- activation quantisation (dsv4_act_quant_row, block 128) ---------------
// One block of 128 threads per (row, 128 columns), flattened into grid.x.
__global__ void __launch_bounds__(128) quant_kernel(const float *x, int64_t k, uint8_t *q, float *s)
{
    __shared__ float red[32];
    int64_t kb = (k + 127) / 128, row = blockIdx.x / kb, blk = blockIdx.x % kb;
    int64_t c = blk * 128 + threadIdx.x;
    float v = c < k ? x[row * k + c] : 0.0f;
    float amax = block_max(fabsf(v), red);   // fmaxf skips NaN, as codec.c
    float sc = fp8_scale(amax);
    if (c < k)
        q[row * k + c] = (uint8_t)f32_e4m3(v / sc);   // exact division by 2^n
    if (threadIdx.x == 0)
        s[row * kb + blk] = sc;
}

// ---- router GEMM (dsv4_linear, no rounding) ----------------------------------
// One thread per (token, expert): the CPU's dot_d order (four double partial
// sums over i = 4j + r, tail into the first, (s0 + s2) + (s1 + s3)); products
// of two f32 are exact in double, so an FMA contraction changes nothing.
__global__ void gate_kernel(const uint8_t *w, int bf16, const float *x, int64_t D, int64_t E, float *out)
{
    DSV4_DYN_SMEM(float, xr);
    int64_t m = blockIdx.y;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
        xr[i] = x[m * D + i];
    __syncthreads();
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= E)
        return;
    double s[4] = { 0.0, 0.0, 0.0, 0.0 };
    int64_t i = 0;
    if (bf16) {
        const uint8_t *p = w + e * D * 2;
        for (; i + 4 <= D; i += 4)
            for (int j = 0; j < 4; j++)
                s[j] += (double)xr[i + j] * (double)bf16_f32(p[2 * (i + j)] | (uint32_t)p[2 * (i + j) + 1] << 8);
        for (; i < D; i++)
            s[0] += (double)xr[i] * (double)bf16_f32(p[2 * i] | (uint32_t)p[2 * i + 1] << 8);
    } else {
        const float *p = reinterpret_cast<const float *>(w) + e * D;
        for (; i + 4 <= D; i += 4)
            for (int j = 0; j < 4; j++)
                s[j] += (double)xr[i + j] * (double)p[i + j];
        for (; i < D; i++)
            s[0] += (double)xr[i] * (double)p[i];
    }
    out[m * E + e] = (float)((s[0] + s[2]) + (s[1] + s[3]));
}

// ---- routing (dsv4_moe_route) -----------------------------------------------
// One warp per token; the scores live in dynamic shared memory [E].
__global__ void __launch_bounds__(32) route_kernel(float *sc, const uint32_t *tokens, const float *bias,
                                                  const uint8_t *tid2eid, int64_t n_vocab, int E, int K,
                                                  float rs, int32_t *sel, float *wsel, int32_t *status)
{
    DSV4_DYN_SMEM(float, s);
    __shared__ int S[32];
    __shared__ int badtok;
    int lane = threadIdx.x;
    int64_t m = blockIdx.x;
    float *row = sc + m * E;
    for (int i = lane; i < E; i += 32) {
        float x = row[i];
        float sp = x > 20.0f ? x : log1pf(expf(x));   // torch's softplus threshold
        s[i] = sqrtf(sp);
        row[i] = s[i];
    }
    if (lane == 0)
        badtok = 0;
    __syncwarp();
    if (tid2eid) {
        if (lane == 0) {
            uint32_t t = tokens[m];
            for (int k = 0; k < K; k++) {
                int64_t id = -1;
                if ((int64_t)t < n_vocab) {
                    const uint8_t *p = tid2eid + ((size_t)t * (size_t)K + (size_t)k) * 8;
                    uint64_t u = 0;
                    for (int b = 0; b < 8; b++)
                        u |= (uint64_t)p[b] << (8 * b);
                    id = (int64_t)u;
                }
                if (id < 0 || id >= E) {
                    badtok = 1;
                    id = -1;
                }
                S[k] = (int)id;
            }
        }
        __syncwarp();
    } else {
        // CPU: best = the first free index, replaced by any later free index
        // with a strictly larger score + bias.  So: that first index when its
        // value is NaN (nothing beats it), else the lowest index of the
        // largest non-NaN value.
        for (int k = 0; k < K; k++) {
            int first = 0x7fffffff, bi = -1;
            float bv = 0.0f;
            for (int i = lane; i < E; i += 32) {
                bool taken = false;
                for (int j = 0; j < k; j++)
                    taken |= S[j] == i;
                if (taken)
                    continue;
                first = first < i ? first : i;
                float v = s[i] + bias[i];
                if (v == v && (bi < 0 || v > bv)) {
                    bi = i;
                    bv = v;
                }
            }
            for (int o = 16; o > 0; o >>= 1) {
                int of = __shfl_xor_sync(0xffffffffu, first, o);
                float ov = __shfl_xor_sync(0xffffffffu, bv, o);
                int oi = __shfl_xor_sync(0xffffffffu, bi, o);
                first = of < first ? of : first;
                if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) {
                    bi = oi;
                    bv = ov;
                }
            }
            float vf = s[first] + bias[first];   // first < E: K <= E
            if (lane == 0)
                S[k] = (vf != vf || bi < 0) ? first : bi;
            __syncwarp();
        }
    }
    if (lane == 0) {
        float sum = 0.0f;
        for (int k = 0; k < K; k++)
            sum += S[k] >= 0 ? s[S[k]] : 0.0f;
        for (int k = 0; k < K; k++) {
            sel[m * K + k] = S[k];
            wsel[m * K + k] = badtok ? qnan() : s[S[k]] / sum * rs;
        }
        if (badtok && status)
            *status = 1;
    }
}

// ---- plan: grouping by expert ------------------------------------------------
// tiles: [0] count, then e[tmax], first grouped row[tmax], rows[tmax].
// Positions inside an expert's rows follow the atomics' order; that only
// moves rows, never changes a value (rows are computed independently and
// combined per token in a fixed order).
__global__ void __launch_bounds__(PT) plan_kernel(const int32_t *sel, const float *wsel, int64_t M, int K, int E,
                                                  int shared, int64_t tmax, int32_t *cnt, int32_t *slot,
                                                  int32_t *pos, int32_t *rowsrc, float *roww, int32_t *order,
                                                  int32_t *tiles)
{
    int64_t R = M * K;
    for (int e = threadIdx.x; e <= E; e += blockDim.x)
        cnt[e] = 0;
    __syncthreads();
    for (int64_t a = threadIdx.x; a < R; a += blockDim.x) {
        int e = sel[a];
        slot[a] = e >= 0 && e < E ? atomicAdd(&cnt[e], 1) : -1;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int32_t off = 0, nt = 0;
        int32_t *te = tiles + 1, *tr = tiles + 1 + tmax, *tn = tiles + 1 + 2 * tmax;
        for (int e = 0; e < E; e++) {
            int32_t c = cnt[e];
            cnt[e] = off;
            for (int32_t r = 0; r < c; r += TM, nt++) {
                te[nt] = e;
                tr[nt] = off + r;
                tn[nt] = c - r < TM ? c - r : TM;
            }
            off += c;
        }
        cnt[E] = off;
        if (shared)
            for (int64_t r = 0; r < M; r += TM, nt++) {
                te[nt] = E;
                tr[nt] = (int32_t)(R + r);
                tn[nt] = (int32_t)(M - r < TM ? M - r : TM);
            }
        tiles[0] = nt;
    }
    __syncthreads();
    for (int64_t a = threadIdx.x; a < R; a += blockDim.x) {
        int32_t p = slot[a] >= 0 ? cnt[sel[a]] + slot[a] : -1;
        pos[a] = p;
        if (p >= 0) {
            rowsrc[p] = (int32_t)(a / K);
            roww[p] = wsel[a];
        }
    }
    if (shared)
        for (int64_t m = threadIdx.x; m < M; m += blockDim.x) {
            rowsrc[R + m] = (int32_t)m;
            roww[R + m] = 1.0f;   // v * 1.0f == v: the CPU's unweighted shared expert
        }
    // each token's k in (expert id, k) order: the CPU's summation order
    for (int64_t m = threadIdx.x; m < M; m += blockDim.x) {
        int32_t *o = order + m * K;
        const int32_t *sm = sel + m * K;
        for (int k = 0; k < K; k++) {
            int j = k;
            while (j > 0 && sm[o[j - 1]] > sm[k]) {
                o[j] = o[j - 1];
                j--;
            }
            o[j] = k;
        }
    }
}

// ---- grouped GEMM over one tile --------------------------------------------
struct gemm_args {
    const dsv4_wt *tab_a, *tab_b;   // routed: device tables [E] (tab_b: w3, up only)
    dsv4_wt sh_a, sh_b;             // shared expert (tile expert index E)
    int kind_r, E;
    const int32_t *tiles;
    int64_t tmax;
    const int32_t *rowsrc;          // input row of a grouped row; NULL = itself
    const uint8_t *xq;              // input codes [*, kin]
    const float *xs;                // input scales [*, kin / 128]
    int64_t kin, nout;
    const float *roww;              // routing weight per grouped row (up)
    float lim;                      // swiglu_limit (up)
    float *out;                     // [grouped rows, nout]
};

// Weight encodings of the GEMM tiles (template tags).
constexpr int K_FP4 = 0, K_FP8 = 1, K_Q2 = 2, K_Q3 = 3;

// 32 weight columns [c0, c0 + 32) of row n as integers (value x 2 for e2m1,
// x 2^9 for e4m3, the level for Q2/Q3); returns whether an e4m3 code among
// them is NaN.
template <int KT>
__device__ __forceinline__ bool load32(const uint8_t *w, int64_t n, int64_t kin, int64_t c0, bool al, int *wi)
{
    bool nan = false;
    if (KT == K_Q2) {
        // a row is kin / 4 bytes, 8 bytes (two words of 16 codes) per 32 columns
        const uint8_t *p = w + n * (kin / 4) + c0 / 4;
#pragma unroll
        for (int j = 0; j < 2; j++) {
            uint32_t v = ld4(p + 4 * j, al);
#pragma unroll
            for (int b = 0; b < 16; b++)
                wi[16 * j + b] = q2_level(v, b);
        }
        return false;
    }
    if (KT == K_Q3) {
        // one 12-byte block per 32 columns: low pairs (two words), high bits
        const uint8_t *p = w + n * (kin / 32 * 12) + c0 / 32 * 12;
        uint32_t lo0 = ld4(p, al), lo1 = ld4(p + 4, al), hi = ld4(p + 8, al);
#pragma unroll
        for (int b = 0; b < 32; b++)
            wi[b] = q3_level(lo0, lo1, hi, b);
        return false;
    }
    if (KT == K_FP8) {
        const uint8_t *p = w + n * kin + c0;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            uint32_t v = ld4(p + 4 * j, al);
            nan |= nan4(v);
#pragma unroll
            for (int b = 0; b < 4; b++)
                wi[4 * j + b] = e4m3_int((v >> (8 * b)) & 0xffu);
        }
        return nan;
    }
    const uint8_t *p = w + n * (kin / 2) + c0 / 2;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        uint32_t v = ld4(p + 4 * j, al);
#pragma unroll
        for (int b = 0; b < 8; b++)
            wi[8 * j + b] = e2m1_int((v >> (4 * b)) & 15u);
    }
    return nan;
}

// d[r] += the exact integer dot of columns [c0, c0 + 32) of tile row r.
template <int FP8>
__device__ __forceinline__ void dot32(const uint32_t *xa, const int *lut, int nr, int64_t kin, int64_t c0,
                                      const int *wi, long long *d)
{
#pragma unroll
    for (int r = 0; r < TM; r++) {
        if (r >= nr)
            break;
        const uint32_t *a = xa + (r * kin + c0) / 4;   // the same address in every lane: a broadcast
        long long d8 = 0;
        int d4 = 0;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            uint32_t v = a[j];
#pragma unroll
            for (int b = 0; b < 4; b++) {
                int av = lut[(v >> (8 * b)) & 0xffu];
                if (FP8)
                    d8 += (long long)av * wi[4 * j + b];
                else
                    d4 += av * wi[4 * j + b];   // |sum of 32| < 2^27
            }
        }
        d[r] += FP8 ? d8 : (long long)d4;
    }
}

// One output column per thread, k in the CPU's order: per scale group (FP4:
// 32 columns, the weight's group; FP8: 128, the weight's block; Q2: 64, Q3:
// 32, their blocks) the exact dot, times (double)(activation scale x weight
// scale), added to a double accumulator group after group: the CPU's
// arithmetic step for step.
template <int UP, int KT>
__device__ void gemm_tile(const gemm_args &a, const uint8_t *wA, const uint8_t *sA, const uint8_t *wB,
                          const uint8_t *sB, int64_t r0, int nr, const uint32_t *xa, const int *lut,
                          const float *xsc)
{
    int64_t n = (int64_t)blockIdx.x * GT + threadIdx.x;
    if (n >= a.nout)
        return;
    bool al = ((uintptr_t)wA & 3) == 0 && (!UP || ((uintptr_t)wB & 3) == 0);
    constexpr bool FP8 = KT == K_FP8;
    const int GW = FP8 ? 128 : KT == K_Q2 ? 64 : 32;
    const double mult = FP8 ? 0x1p-18 : KT == K_FP4 ? 0x1p-10 : 0x1p-9;   // the integer dots' unit
    int64_t kin = a.kin, kb = kin / 128;
    double accA[TM], accB[TM];
#pragma unroll
    for (int r = 0; r < TM; r++)
        accA[r] = accB[r] = 0.0;
    for (int64_t c0 = 0; c0 < kin; c0 += GW) {
        long long dA[TM], dB[TM];
        bool nanA = false, nanB = false;
#pragma unroll
        for (int r = 0; r < TM; r++)
            dA[r] = dB[r] = 0;
        for (int c = 0; c < GW; c += 32) {
            int wi[32];
            nanA |= load32<KT>(wA, n, kin, c0 + c, al, wi);
            dot32<FP8>(xa, lut, nr, kin, c0 + c, wi, dA);
            if (UP) {
                nanB |= load32<KT>(wB, n, kin, c0 + c, al, wi);
                dot32<FP8>(xa, lut, nr, kin, c0 + c, wi, dB);
            }
        }
        float swA, swB = 0.0f;
        if (FP8) {
            swA = e8m0_f32(sA[(n / 128) * kb + c0 / 128]);
            if (UP)
                swB = e8m0_f32(sB[(n / 128) * kb + c0 / 128]);
        } else if (KT == K_FP4) {
            swA = e8m0_f32(sA[n * (kin / 32) + c0 / 32]);
            if (UP)
                swB = e8m0_f32(sB[n * (kin / 32) + c0 / 32]);
        } else {
            swA = qs8_f32(sA[n * (kin / GW) + c0 / GW]);   // dsv4_qs8_to_f32, bit-identical
            if (UP)
                swB = qs8_f32(sB[n * (kin / GW) + c0 / GW]);
        }
        swA = nanA ? qnan() : swA;
        swB = nanB ? qnan() : swB;
#pragma unroll
        for (int r = 0; r < TM; r++) {
            if (r >= nr)
                break;
            float xs = xsc[r * kb + c0 / 128];
            accA[r] += (double)dA[r] * mult * (double)(xs * swA);
            if (UP)
                accB[r] += (double)dB[r] * mult * (double)(xs * swB);
        }
    }
#pragma unroll
    for (int r = 0; r < TM; r++) {
        if (r >= nr)
            break;
        int64_t row = r0 + r;
        float v;
        if (UP) {
            // lib/moe.c swiglu: the same operations in the same order
            float gv = round_bf16((float)accA[r]), uv = round_bf16((float)accB[r]), lim = a.lim;
            float gi = gv < lim ? gv : lim;
            float ui = uv < -lim ? -lim : uv > lim ? lim : uv;
            v = gi / (1.0f + expf(-gi)) * ui;
            v *= a.roww[row];
        } else {
            v = (float)accA[r];
        }
        a.out[row * a.nout + n] = round_bf16(v);
    }
}

template <int UP>
__global__ void __launch_bounds__(GT) gemm_kernel(gemm_args a)
{
    DSV4_DYN_SMEM(uint8_t, sm);
    __shared__ int lut[256];
    int t = blockIdx.y;
    if (t >= a.tiles[0])
        return;   // whole block: more tiles were launched than the plan made
    int e = a.tiles[1 + t];
    int64_t r0 = a.tiles[1 + a.tmax + t];
    int nr = a.tiles[1 + 2 * a.tmax + t];
    int64_t kin = a.kin, kb = kin / 128;
    uint32_t *xa = reinterpret_cast<uint32_t *>(sm);        // [TM, kin] codes
    float *xsc = reinterpret_cast<float *>(sm + TM * kin);  // [TM, kb] scales
    for (int i = threadIdx.x; i < 256; i += blockDim.x)
        lut[i] = e4m3_int((uint32_t)i);
    for (int64_t i = threadIdx.x; i < nr * kin / 4; i += blockDim.x) {
        int64_t r = i / (kin / 4), c = i % (kin / 4);
        int64_t src = a.rowsrc ? a.rowsrc[r0 + r] : r0 + r;
        xa[i] = reinterpret_cast<const uint32_t *>(a.xq + src * kin)[c];
    }
    for (int64_t i = threadIdx.x; i < nr * kb; i += blockDim.x) {
        int64_t r = i / kb, b = i % kb;
        int64_t src = a.rowsrc ? a.rowsrc[r0 + r] : r0 + r;
        xsc[i] = a.xs[src * kb + b];
    }
    __syncthreads();
    // a NaN activation code makes its block's terms NaN, as on the CPU
    for (int64_t i = threadIdx.x; i < nr * kb; i += blockDim.x) {
        bool nan = false;
        for (int j = 0; j < 32; j++)
            nan |= nan4(xa[i * 32 + j]);
        if (nan)
            xsc[i] = qnan();
    }
    __syncthreads();
    bool sh = e >= a.E;
    int kind = sh ? a.sh_a.kind : a.kind_r;
    const uint8_t *wA = sh ? a.sh_a.w : a.tab_a[e].w, *sA = sh ? a.sh_a.s : a.tab_a[e].s;
    const uint8_t *wB = NULL, *sB = NULL;
    if (UP) {
        wB = sh ? a.sh_b.w : a.tab_b[e].w;
        sB = sh ? a.sh_b.s : a.tab_b[e].s;
    }
    if (kind == DSV4_WT_FP8)
        gemm_tile<UP, K_FP8>(a, wA, sA, wB, sB, r0, nr, xa, lut, xsc);
    else if (kind == DSV4_WT_Q2)
        gemm_tile<UP, K_Q2>(a, wA, sA, wB, sB, r0, nr, xa, lut, xsc);
    else if (kind == DSV4_WT_Q3)
        gemm_tile<UP, K_Q3>(a, wA, sA, wB, sB, r0, nr, xa, lut, xsc);
    else
        gemm_tile<UP, K_FP4>(a, wA, sA, wB, sB, r0, nr, xa, lut, xsc);
}

// ---- combination ----------------------------------------------------------------
__global__ void __launch_bounds__(256) combine_kernel(const float *y, const int32_t *pos, const int32_t *order,
                                                      int64_t M, int K, int64_t D, int64_t R, int shared,
                                                      float *out)
{
    int64_t m = blockIdx.y, d = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (d >= D)
        return;
    float acc = 0.0f;
    for (int j = 0; j < K; j++) {
        int32_t p = pos[m * K + order[m * K + j]];
        acc = p < 0 ? qnan() : acc + y[(int64_t)p * D + d];
    }
    if (shared)
        acc += y[(R + m) * D + d];
    out[m * D + d] = round_bf16(acc);
}

// ---- host side --------------------------------------------------------------------

int bad(dsv4_err *err, const char *op, const char *what, long long v)
{
    return dsv4_err_set(err, DSV4_E_INVALID, "%s: bad %s (%lld)", op, what, v);
}

int check_layer(const dsv4_cu_moe_layer *L, const char *op, dsv4_err *err)
{
    if (!L)
        return dsv4_err_set(err, DSV4_E_INVALID, "%s: NULL layer", op);
    if (L->dim <= 0 || L->dim % 128)
        return bad(err, op, "dim (a positive multiple of 128)", L->dim);
    if (L->inter <= 0 || L->inter % 128)
        return bad(err, op, "inter (a positive multiple of 128)", L->inter);
    if (L->n_experts <= 0 || L->n_experts > (1 << 20))
        return bad(err, op, "n_experts", L->n_experts);
    if (L->topk <= 0 || L->topk > 32 || L->topk > L->n_experts)
        return bad(err, op, "topk (1..min(32, n_experts))", L->topk);
    if ((L->gate.kind != DSV4_WT_BF16 && L->gate.kind != DSV4_WT_F32) || !L->gate.w)
        return bad(err, op, "gate kind (BF16 or F32 with bytes)", L->gate.kind);
    if (L->gate.n != L->n_experts || L->gate.k != L->dim)
        return bad(err, op, "gate rows (must be n_experts)", L->gate.n);
    if (L->tid2eid ? L->n_vocab <= 0 : !L->gate_bias)
        return bad(err, op, L->tid2eid ? "n_vocab" : "gate_bias (NULL without tid2eid)", L->n_vocab);
    if (L->expert_kind != DSV4_WT_FP4 && L->expert_kind != DSV4_WT_FP8 && L->expert_kind != DSV4_WT_Q2 &&
        L->expert_kind != DSV4_WT_Q3)
        return bad(err, op, "expert_kind (FP4, FP8, Q2 or Q3)", L->expert_kind);
    if (!L->w1 || !L->w2 || !L->w3)
        return dsv4_err_set(err, DSV4_E_INVALID, "%s: NULL routed expert table", op);
    if (L->sw1.kind != DSV4_WT_NONE) {
        const dsv4_wt *s[3] = { &L->sw1, &L->sw3, &L->sw2 };
        for (int i = 0; i < 3; i++) {
            int64_t n = i < 2 ? L->inter : L->dim, k = i < 2 ? L->dim : L->inter;
            if ((s[i]->kind != DSV4_WT_FP4 && s[i]->kind != DSV4_WT_FP8 && s[i]->kind != DSV4_WT_Q2 &&
                 s[i]->kind != DSV4_WT_Q3) || !s[i]->w || !s[i]->s)
                return bad(err, op, "shared expert weight kind (FP4, FP8, Q2 or Q3 with bytes)", s[i]->kind);
            // the up kernel reads sw1 and sw3 as one kind (sw1's)
            if (i == 1 && s[1]->kind != s[0]->kind)
                return bad(err, op, "shared expert w3 kind (must be w1's)", s[1]->kind);
            if (s[i]->n != n || s[i]->k != k)
                return bad(err, op, "shared expert weight rows", s[i]->n);
        }
    }
    return 0;
}

// The experts' workspace, carved in 256-byte pieces.
struct ws_layout {
    size_t cnt, slot, pos, rowsrc, roww, order, tiles, h, hq, hs, y, total;
    int64_t tmax, rows;
};

ws_layout layout(const dsv4_cu_moe_layer *L, int64_t M)
{
    ws_layout w;
    int64_t K = L->topk, E = L->n_experts, R = M * K, I = L->inter, D = L->dim;
    int shared = L->sw1.kind != DSV4_WT_NONE;
    w.rows = R + (shared ? M : 0);
    w.tmax = (R + TM - 1) / TM + (E < R ? E : R) + (shared ? (M + TM - 1) / TM : 0) + 1;
    size_t o = 0;
    auto take = [&](size_t n) { size_t p = o; o += (n + 255) / 256 * 256; return p; };
    w.cnt = take((size_t)(E + 1) * 4);
    w.slot = take((size_t)R * 4);
    w.pos = take((size_t)R * 4);
    w.rowsrc = take((size_t)w.rows * 4);
    w.roww = take((size_t)w.rows * 4);
    w.order = take((size_t)R * 4);
    w.tiles = take((size_t)(1 + 3 * w.tmax) * 4);
    w.h = take((size_t)(w.rows * I) * 4);
    w.hq = take((size_t)(w.rows * I));
    w.hs = take((size_t)(w.rows * (I / 128)) * 4);
    w.y = take((size_t)(w.rows * D) * 4);
    w.total = o;
    return w;
}

int quant_launch(const float *x, int64_t m, int64_t k, uint8_t *q, float *s, cudaStream_t st, dsv4_err *err)
{
    if (m == 0)
        return 0;
    DSV4_LAUNCH(quant_kernel, (unsigned)(m * ((k + 127) / 128)), 128, 0, st, x, k, q, s);
    return DSV4_CU_LAUNCHED("moe quant", st, err);
}

int gemm_launch(int up, const gemm_args &a, cudaStream_t st, dsv4_err *err)
{
    size_t smem = (size_t)TM * a.kin + (size_t)TM * (a.kin / 128) * 4;
    dim3 grid((unsigned)((a.nout + GT - 1) / GT), (unsigned)a.tmax);
    if (up) {
        auto k = gemm_kernel<1>;
        if (smem > 48 * 1024)
            DSV4_CU_TRY(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem), err);
        DSV4_LAUNCH(k, grid, GT, smem, st, a);
        return DSV4_CU_LAUNCHED("moe up (w1, w3, SwiGLU)", st, err);
    }
    auto k = gemm_kernel<0>;
    if (smem > 48 * 1024)
        DSV4_CU_TRY(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem), err);
    DSV4_LAUNCH(k, grid, GT, smem, st, a);
    return DSV4_CU_LAUNCHED("moe down (w2)", st, err);
}

} // namespace

extern "C" {

int dsv4_cu_moe_quant(const float *x, int64_t m, int64_t k, uint8_t *q, float *s, dsv4_stream st, dsv4_err *err)
{
    if (k <= 0 || k > ((int64_t)1 << 31))
        return bad(err, "dsv4_cu_moe_quant", "columns", k);
    if (m < 0 || m * ((k + 127) / 128) > INT32_MAX)
        return bad(err, "dsv4_cu_moe_quant", "rows (rows x blocks must fit a grid)", m);
    if (m && (!x || !q || !s))
        return dsv4_err_set(err, DSV4_E_INVALID, "dsv4_cu_moe_quant: NULL pointer");
    return quant_launch(x, m, k, q, s, (cudaStream_t)st, err);
}

int dsv4_cu_moe_gate(const dsv4_cu_moe_layer *L, const float *xn, int64_t M, float *logits, dsv4_stream st,
                     dsv4_err *err)
{
    int rc = check_layer(L, "dsv4_cu_moe_gate", err);
    if (rc)
        return rc;
    if (M < 0 || M > 65535)
        return bad(err, "dsv4_cu_moe_gate", "M (0..65535)", M);
    if (M == 0)
        return 0;
    if (!xn || !logits)
        return dsv4_err_set(err, DSV4_E_INVALID, "dsv4_cu_moe_gate: NULL pointer");
    size_t smem = (size_t)L->dim * 4;
    if (smem > 48 * 1024)
        DSV4_CU_TRY(cudaFuncSetAttribute(gate_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem), err);
    dim3 grid((unsigned)((L->n_experts + 63) / 64), (unsigned)M);
    DSV4_LAUNCH(gate_kernel, grid, 64, smem, (cudaStream_t)st, L->gate.w, L->gate.kind == DSV4_WT_BF16, xn, L->dim,
                L->n_experts, logits);
    return DSV4_CU_LAUNCHED("moe gate", (cudaStream_t)st, err);
}

int dsv4_cu_moe_route(const dsv4_cu_moe_layer *L, float *sc, const uint32_t *tokens, int64_t M, int32_t *sel,
                      float *wsel, int32_t *status, dsv4_stream st, dsv4_err *err)
{
    int rc = check_layer(L, "dsv4_cu_moe_route", err);
    if (rc)
        return rc;
    if (M < 0 || M > ((int64_t)1 << 31) - 1)
        return bad(err, "dsv4_cu_moe_route", "M", M);
    if (M == 0)
        return 0;
    if (!sc || !sel || !wsel || (L->tid2eid && !tokens))
        return dsv4_err_set(err, DSV4_E_INVALID, "dsv4_cu_moe_route: NULL pointer");
    DSV4_LAUNCH(route_kernel, (unsigned)M, 32, (size_t)L->n_experts * 4, (cudaStream_t)st, sc, tokens,
                L->gate_bias, L->tid2eid, L->n_vocab, (int)L->n_experts, (int)L->topk, L->route_scale, sel, wsel,
                status);
    return DSV4_CU_LAUNCHED("moe route", (cudaStream_t)st, err);
}

size_t dsv4_cu_moe_experts_workspace(const dsv4_cu_moe_layer *L, int64_t M)
{
    dsv4_err err = DSV4_ERR_INIT;
    if (check_layer(L, "", &err) || M < 0 || M > 65535)
        return 0;
    return layout(L, M).total;
}

size_t dsv4_cu_moe_chunk_workspace(const dsv4_cu_moe_layer *L, int64_t M)
{
    size_t ex = dsv4_cu_moe_experts_workspace(L, M);
    if (!ex)
        return 0;
    auto up = [](size_t n) { return (n + 255) / 256 * 256; };
    int64_t E = L->n_experts, K = L->topk, D = L->dim;
    return ex + up((size_t)(M * E) * 4) + 2 * up((size_t)(M * K) * 4) + up((size_t)(M * D)) +
           up((size_t)(M * (D / 128)) * 4);
}

int dsv4_cu_moe_experts(const dsv4_cu_moe_layer *L, const uint8_t *xq, const float *xs, const int32_t *sel,
                        const float *wsel, int64_t M, float *out, void *ws, size_t ws_bytes, dsv4_stream st,
                        dsv4_err *err)
{
    const char *op = "dsv4_cu_moe_experts";
    int rc = check_layer(L, op, err);
    if (rc)
        return rc;
    if (M < 0 || M > 65535)
        return bad(err, op, "M (0..65535)", M);
    if (M == 0)
        return 0;
    if (!xq || !xs || !sel || !wsel || !out || !ws)
        return dsv4_err_set(err, DSV4_E_INVALID, "%s: NULL pointer", op);
    if ((uintptr_t)xq & 3)
        return dsv4_err_set(err, DSV4_E_INVALID, "%s: xq not 4-byte aligned", op);
    ws_layout w = layout(L, M);
    if (w.tmax > 65535)
        return bad(err, op, "M (too many tiles for one call: split the chunk)", M);
    if (ws_bytes < w.total)
        return bad(err, op, "workspace bytes (too small)", (long long)ws_bytes);
    cudaStream_t s = (cudaStream_t)st;
    uint8_t *b = (uint8_t *)ws;
    int32_t *cnt = (int32_t *)(b + w.cnt), *slot = (int32_t *)(b + w.slot), *pos = (int32_t *)(b + w.pos);
    int32_t *rowsrc = (int32_t *)(b + w.rowsrc), *order = (int32_t *)(b + w.order), *tiles = (int32_t *)(b + w.tiles);
    float *roww = (float *)(b + w.roww), *h = (float *)(b + w.h), *hs = (float *)(b + w.hs), *y = (float *)(b + w.y);
    uint8_t *hq = b + w.hq;
    int shared = L->sw1.kind != DSV4_WT_NONE;
    int64_t D = L->dim, I = L->inter, K = L->topk;

    DSV4_LAUNCH(plan_kernel, 1, PT, 0, s, sel, wsel, M, (int)K, (int)L->n_experts, shared, w.tmax, cnt, slot, pos,
                rowsrc, roww, order, tiles);
    if ((rc = DSV4_CU_LAUNCHED("moe plan", s, err)))
        return rc;
    gemm_args a;
    memset(&a, 0, sizeof a);
    a.tab_a = L->w1;
    a.tab_b = L->w3;
    a.sh_a = L->sw1;
    a.sh_b = L->sw3;
    a.kind_r = L->expert_kind;
    a.E = (int)L->n_experts;
    a.tiles = tiles;
    a.tmax = w.tmax;
    a.rowsrc = rowsrc;
    a.xq = xq;
    a.xs = xs;
    a.kin = D;
    a.nout = I;
    a.roww = roww;
    a.lim = L->swiglu_limit;
    a.out = h;
    if ((rc = gemm_launch(1, a, s, err)) || (rc = quant_launch(h, w.rows, I, hq, hs, s, err)))
        return rc;
    a.tab_a = L->w2;
    a.tab_b = NULL;
    a.sh_a = L->sw2;
    a.rowsrc = NULL;
    a.xq = hq;
    a.xs = hs;
    a.kin = I;
    a.nout = D;
    a.out = y;
    if ((rc = gemm_launch(0, a, s, err)))
        return rc;
    DSV4_LAUNCH(combine_kernel, dim3((unsigned)((D + 255) / 256), (unsigned)M), 256, 0, s, y, pos, order, M, (int)K, D,
                M * K, shared, out);
    return DSV4_CU_LAUNCHED("moe combine", s, err);
}

int dsv4_cu_moe_chunk(const dsv4_cu_moe_layer *L, const float *xn, const uint8_t *xq, const float *xs,
                      const uint32_t *tokens, int64_t M, float *out, int32_t *status, void *ws, size_t ws_bytes,
                      dsv4_stream st, dsv4_err *err)
{
    const char *op = "dsv4_cu_moe_chunk";
    int rc = check_layer(L, op, err);
    if (rc)
        return rc;
    if (M < 0 || M > 65535)
        return bad(err, op, "M (0..65535)", M);
    if (M == 0)
        return 0;
    if (!xn || !out || !ws || (!xq != !xs) || (L->tid2eid && !tokens))
        return dsv4_err_set(err, DSV4_E_INVALID, "%s: NULL pointer (xq and xs: both or neither)", op);
    size_t need = dsv4_cu_moe_chunk_workspace(L, M);
    if (ws_bytes < need)
        return bad(err, op, "workspace bytes (too small)", (long long)ws_bytes);
    size_t ex = dsv4_cu_moe_experts_workspace(L, M);
    int64_t E = L->n_experts, K = L->topk, D = L->dim;
    uint8_t *b = (uint8_t *)ws + ex;
    auto up = [](size_t n) { return (n + 255) / 256 * 256; };
    float *logit = (float *)b;
    b += up((size_t)(M * E) * 4);
    int32_t *sel = (int32_t *)b;
    b += up((size_t)(M * K) * 4);
    float *wsel = (float *)b;
    b += up((size_t)(M * K) * 4);
    if (!xq) {
        uint8_t *q = b;
        float *qs = (float *)(b + up((size_t)(M * D)));
        if ((rc = dsv4_cu_moe_quant(xn, M, D, q, qs, st, err)))
            return rc;
        xq = q;
        xs = qs;
    }
    if ((rc = dsv4_cu_moe_gate(L, xn, M, logit, st, err)) ||
        (rc = dsv4_cu_moe_route(L, logit, tokens, M, sel, wsel, status, st, err)))
        return rc;
    return dsv4_cu_moe_experts(L, xq, xs, sel, wsel, M, out, ws, ex, st, err);
}

} // extern "C"
