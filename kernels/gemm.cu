// gemm — the dense linear layers (lib/gpu_gemm.h): activation quantisation,
// dsv4_linear_q and dsv4_linear on the GPU.  CPU references: lib/ops.c
// (dsv4_linear_q, dsv4_linear), lib/codec.c (dsv4_act_quant_row); numerics
// in spec/ARCH.md §3.2–3.4.
//
// Structure of the sums, as on the CPU: products of codes are summed per
// weight block (FP8: 128 columns, FP4: 32-column groups, Q2/Q3: their 64-
// and 32-column blocks of integer levels; BF16/F32 under linear_q: 128
// columns of scale 1), each block sum is multiplied by the activation scale
// times the weight scale — both powers of two for FP8/FP4, so that multiply
// is exact; a Q2/Q3 scale is 2^(e/4), one more f32 rounding per block — and
// added to an f32 accumulator.  The CPU accumulates
// in double and rounds once; here f32 partial sums are formed in another
// order, so results differ by f32 rounding (bounded in the test), and after
// bf16 rounding a small fraction of outputs differ by one bf16 ulp.
//
// Kernels:
//  - act_quant: one 128-thread block per (row, quantisation block); bit-exact
//    (amax by fmaxf, which skips NaN as the CPU's `a > amax` does; x / s is an
//    IEEE division by a power of two).
//  - gemv<KIND, QUANT, VEC>: one warp per output row, 8 rows per block, up
//    to 8 rows of x per pass (grid.y walks further rows).  Each lane takes
//    16-byte chunks of the weight row (16 FP8 codes, 32 FP4 codes, 8 bf16, 4
//    f32, one 64-weight Q2 block: never straddling a scale block; Q3: one
//    12-byte block of 32 weights, three u32 loads), so every weight byte is
//    read once per 8 rows of x, in coalesced warp loads (Q3: 384 bytes).
//    Q2/Q3 decode their levels with shifts and masks (quant.cuh); at 2.125
//    and 3.25 bits per weight the ALU work per byte is higher than FP4's, and
//    the per-lane e4m3 decode of x dominates — staging x as f32 in shared
//    memory matters more for them.  Bound: weight bytes
//    (decode is bandwidth-bound).  Faster: x staged in shared memory as f32
//    (now re-read from L1 and decoded per output row), more loads in flight
//    per lane, split-k for small n.
//  - fp8_mma: FP8 weights x FP8 codes on tensor cores for M > 8: 64x64
//    output tiles, 4 warps each owning 16 rows x 64 columns; per 128-column
//    k block the codes of both operands are staged in shared memory, four
//    m16n8k32 steps sum the block in f32, then the block sum is scaled into
//    the running accumulator (ARCH.md §3.3 two-level accumulation).  Bound:
//    FP8 tensor FLOPs at large M, but this simple kernel (no cp.async
//    pipeline, no ldmatrix, one k block in flight) is far from peak; faster:
//    double-buffered cp.async stages, larger tiles, wgmma on sm_90.
//    The fragment layouts follow the PTX ISA (mma .m16n8k32, .e4m3) and are
//    checked here only against the emulated twin (mma_e4m3 below).
#include "common.cuh"
#include "gpu_gemm.h"
#include "quant.cuh"

#include <stdlib.h>
#include <string.h>

namespace {

using dsv4k::bf16_f32;
using dsv4k::e2m1_f32;
using dsv4k::e4m3_f32;
using dsv4k::e8m0_f32;

// ---- activation quantisation ------------------------------------------------

constexpr int kAqThreads = 128;

// Row blockIdx.x of x, its block blockIdx.y of bl columns.
__global__ void act_quant_kernel(const float *__restrict__ x, int64_t k, int64_t bl, int64_t nb,
                                 uint8_t *__restrict__ q, float *__restrict__ scales)
{
    __shared__ float red[32];
    const int64_t row = blockIdx.x, b0 = (int64_t)blockIdx.y * bl;
    const int64_t len = k - b0 < bl ? k - b0 : bl;
    const float *xr = x + row * k + b0;
    float amax = 0.0f;
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x)
        amax = fmaxf(amax, fabsf(xr[i]));
    amax = dsv4k::block_max(amax, red);
    const float s = dsv4k::fp8_scale(amax);
    uint8_t *qr = q + row * k + b0;
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x)
        qr[i] = (uint8_t)dsv4k::f32_e4m3(xr[i] / s);
    if (threadIdx.x == 0)
        scales[row * nb + blockIdx.y] = s;
}

int act_quant(const float *x, int64_t M, int64_t k, int block, uint8_t *q, float *scales,
              cudaStream_t st, dsv4_err *err)
{
    if (M < 0 || k < 0)
        return dsv4_err_set(err, DSV4_E_INVALID, "act_quant: bad shape [%lld, %lld]", (long long)M,
                            (long long)k);
    if (M > INT32_MAX)
        return dsv4_err_set(err, DSV4_E_RANGE, "act_quant: %lld rows", (long long)M);
    if (M == 0 || k == 0)
        return 0;
    if (!x || !q || !scales)
        return dsv4_err_set(err, DSV4_E_INVALID, "act_quant: null %s pointer",
                            !x ? "input" : !q ? "code" : "scale");
    const int64_t bl = block > 0 ? block : k, nb = (k + bl - 1) / bl;
    if (nb > 65535)
        return dsv4_err_set(err, DSV4_E_RANGE, "act_quant: %lld blocks per row (at most 65535)", (long long)nb);
    DSV4_LAUNCH(act_quant_kernel, dim3((unsigned)M, (unsigned)nb), kAqThreads, 0, st, x, k, bl, nb, q,
                scales);
    return DSV4_CU_LAUNCHED("act_quant", st, err);
}

// ---- GEMV (SIMT, every kind) ------------------------------------------------

constexpr int kWarps = 8;     // output rows per block
constexpr int kMB = 8;        // rows of x per pass

// Columns per 16-byte weight chunk.
template <int KIND> struct chunk_cols;
template <> struct chunk_cols<DSV4_WT_FP8>  { static constexpr int v = 16; };
template <> struct chunk_cols<DSV4_WT_FP4>  { static constexpr int v = 32; };
template <> struct chunk_cols<DSV4_WT_BF16> { static constexpr int v = 8; };
template <> struct chunk_cols<DSV4_WT_F32>  { static constexpr int v = 4; };
template <> struct chunk_cols<DSV4_WT_Q2>   { static constexpr int v = 64; };   // one block, 16 bytes
template <> struct chunk_cols<DSV4_WT_Q3>   { static constexpr int v = 32; };   // one block, 12 bytes

// Bytes of one weight row of k columns (Q2/Q3: k a multiple of the block).
template <int KIND> __device__ __forceinline__ int64_t row_bytes(int64_t k)
{
    return KIND == DSV4_WT_FP8 ? k : KIND == DSV4_WT_FP4 ? (k + 1) / 2 : KIND == DSV4_WT_BF16 ? 2 * k
         : KIND == DSV4_WT_F32 ? 4 * k : KIND == DSV4_WT_Q2 ? k / 4 : k / 32 * 12;
}
// Columns per weight scale along k (0: none, or FP8's 128x128 blocks).
template <int KIND> struct scale_group { static constexpr int v = KIND == DSV4_WT_FP4 ? 32 : KIND == DSV4_WT_Q2 ? 64
                                                                : KIND == DSV4_WT_Q3 ? 32 : 0; };

__device__ __forceinline__ uint32_t ld_u32(const uint8_t *p)
{
    return (uint32_t)__ldg(p) | (uint32_t)__ldg(p + 1) << 8 | (uint32_t)__ldg(p + 2) << 16 |
           (uint32_t)__ldg(p + 3) << 24;
}

// Levels of a Q2 (64) or Q3 (32) block at p (VEC: p 16-byte (Q2) or 4-byte
// (Q3) aligned, read as words; else byte by byte).
template <int KIND, bool VEC>
__device__ __forceinline__ void load_qblock(const uint8_t *__restrict__ p, float *o)
{
    if constexpr (KIND == DSV4_WT_Q2) {
        uint32_t w[4];
        if constexpr (VEC) {
            const uint4 u = __ldg(reinterpret_cast<const uint4 *>(p));
            w[0] = u.x; w[1] = u.y; w[2] = u.z; w[3] = u.w;
        } else {
#pragma unroll
            for (int j = 0; j < 4; j++)
                w[j] = ld_u32(p + 4 * j);
        }
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int i = 0; i < 16; i++)
                o[16 * j + i] = (float)dsv4k::q2_level(w[j], i);
    } else {
        uint32_t w[3];
#pragma unroll
        for (int j = 0; j < 3; j++)
            w[j] = VEC ? __ldg(reinterpret_cast<const uint32_t *>(p) + j) : ld_u32(p + 4 * j);
#pragma unroll
        for (int i = 0; i < 32; i++)
            o[i] = (float)dsv4k::q3_level(w[0], w[1], w[2], i);
    }
}

__device__ __forceinline__ void u32_e4m3x4(uint32_t u, float *o)
{
    o[0] = e4m3_f32(u & 0xffu);
    o[1] = e4m3_f32((u >> 8) & 0xffu);
    o[2] = e4m3_f32((u >> 16) & 0xffu);
    o[3] = e4m3_f32(u >> 24);
}
__device__ __forceinline__ void u32_e2m1x8(uint32_t u, float *o)
{
#pragma unroll
    for (int i = 0; i < 8; i++)
        o[i] = e2m1_f32((u >> (4 * i)) & 15u);
}

// Codes (FP8/FP4) or values (BF16/F32) of columns c0 .. c0+C-1 of the weight
// row wr; columns >= k read as 0 (scalar path only: VEC means k % C == 0
// and 16-byte aligned rows, so a chunk is whole).
template <int KIND, bool VEC>
__device__ __forceinline__ void load_chunk(const uint8_t *__restrict__ wr, int64_t c0, int64_t k, float *o)
{
    constexpr int C = chunk_cols<KIND>::v;
    if constexpr (KIND == DSV4_WT_Q2 || KIND == DSV4_WT_Q3) {
        (void)k;    // k is a multiple of the block: a chunk is one whole block
        load_qblock<KIND, VEC>(wr + c0 / C * (KIND == DSV4_WT_Q2 ? 16 : 12), o);
    } else if constexpr (VEC) {
        const uint4 u = __ldg(reinterpret_cast<const uint4 *>(
            wr + (KIND == DSV4_WT_FP8 ? c0 : KIND == DSV4_WT_FP4 ? c0 / 2 : KIND == DSV4_WT_BF16 ? c0 * 2 : c0 * 4)));
        const uint32_t w[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
        for (int i = 0; i < 4; i++) {
            if (KIND == DSV4_WT_FP8)
                u32_e4m3x4(w[i], o + 4 * i);
            else if (KIND == DSV4_WT_FP4)
                u32_e2m1x8(w[i], o + 8 * i);
            else if (KIND == DSV4_WT_BF16) {
                o[2 * i] = bf16_f32(w[i] & 0xffffu);
                o[2 * i + 1] = bf16_f32(w[i] >> 16);
            } else
                o[i] = __uint_as_float(w[i]);
        }
    } else {
#pragma unroll
        for (int i = 0; i < C; i++) {
            const int64_t c = c0 + i;
            float v = 0.0f;
            if (c < k) {
                if (KIND == DSV4_WT_FP8)
                    v = e4m3_f32(__ldg(wr + c));
                else if (KIND == DSV4_WT_FP4)
                    v = e2m1_f32(__ldg(wr + c / 2) >> (4 * (c & 1)));
                else if (KIND == DSV4_WT_BF16)
                    v = bf16_f32(__ldg(wr + 2 * c) | (uint32_t)__ldg(wr + 2 * c + 1) << 8);
                else
                    v = __ldg(reinterpret_cast<const float *>(wr) + c);
            }
            o[i] = v;
        }
    }
}

// y[m, r] for rows r = blockIdx.x * kWarps + warp and m in [m0, m0 + kMB).
// QUANT: xq = e4m3 codes [M, k], sa = scales [M, ceil(k/128)] (linear_q);
// else xf = f32 inputs [M, k] (linear).
template <int KIND, bool QUANT, bool VEC>
__global__ void __launch_bounds__(kWarps * 32)
gemv_kernel(const uint8_t *__restrict__ w, const uint8_t *__restrict__ s, int64_t n, int64_t k,
            const uint8_t *__restrict__ xq, const float *__restrict__ sa, const float *__restrict__ xf,
            int64_t M, float *__restrict__ y, int round)
{
    constexpr int C = chunk_cols<KIND>::v;
    const int lane = threadIdx.x & 31;
    const int64_t r = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
    if (r >= n)
        return;             // whole warp: no block barriers below
    const int64_t m0 = (int64_t)blockIdx.y * kMB;
    const int mc = (int)(M - m0 < kMB ? M - m0 : kMB);
    constexpr int G = scale_group<KIND>::v;
    const int64_t kb = (k + 127) / 128, ks = G ? (k + G - 1) / G : 0;
    const uint8_t *wr = w + r * row_bytes<KIND>(k);
    const uint8_t *sr = KIND == DSV4_WT_FP8 ? s + (r / 128) * kb : G ? s + r * ks : s;
    float acc[kMB];
#pragma unroll
    for (int m = 0; m < kMB; m++)
        acc[m] = 0.0f;
    const int64_t nchunks = (k + C - 1) / C;
    for (int64_t j = lane; j < nchunks; j += 32) {
        const int64_t c0 = j * C;
        float wv[C];
        load_chunk<KIND, VEC>(wr, c0, k, wv);
        float ws = KIND == DSV4_WT_FP8 ? e8m0_f32(__ldg(sr + c0 / 128))
                 : KIND == DSV4_WT_FP4 ? e8m0_f32(__ldg(sr + c0 / 32))
                 : G ? dsv4k::qs8_f32(__ldg(sr + c0 / G)) : 1.0f;
        if (!QUANT && G && KIND != DSV4_WT_FP4) {
            // Q2/Q3 under linear: the CPU's dequantised weights level * d
            // (rounded per weight, d is no power of two), then the dot
#pragma unroll
            for (int i = 0; i < C; i++)
                wv[i] *= ws;
            ws = 1.0f;
        }
        const int cn = (int)(k - c0 < C ? k - c0 : C);
#pragma unroll
        for (int m = 0; m < kMB; m++) {
            if (m >= mc)
                break;
            const int64_t xo = (m0 + m) * k + c0;
            float p = 0.0f;
            if (QUANT) {
#pragma unroll
                for (int i = 0; i < C; i++)
                    if (i < cn)
                        p = fmaf(wv[i], e4m3_f32(__ldg(xq + xo + i)), p);   // exact products
                // sa is a power of two, so sa * ws is exact; for FP8/FP4 ws
                // is one too and p * (sa * ws) exact; a Q2/Q3 scale is not,
                // so that product rounds once per block (f32 tolerance)
                p *= __ldg(sa + (m0 + m) * kb + c0 / 128) * ws;
            } else {
#pragma unroll
                for (int i = 0; i < C; i++)
                    if (i < cn)
                        p = fmaf(wv[i], __ldg(xf + xo + i), p);
                p *= ws;     // code * 2^e summed = (sum of codes * x) * 2^e, exactly
            }
            acc[m] += p;
        }
    }
#pragma unroll
    for (int m = 0; m < kMB; m++) {
        const float v = dsv4k::warp_sum(acc[m]);
        if (m < mc && lane == 0)
            y[(m0 + m) * n + r] = round ? dsv4k::round_bf16(v) : v;
    }
}

template <int KIND, bool QUANT>
int launch_gemv_vec(bool vec, const dsv4_wt *W, const uint8_t *xq, const float *sa, const float *xf,
                    int64_t M, float *y, int round, cudaStream_t st, dsv4_err *err)
{
    const dim3 grid((unsigned)((W->n + kWarps - 1) / kWarps), (unsigned)((M + kMB - 1) / kMB));
    if (vec) {
        auto kern = gemv_kernel<KIND, QUANT, true>;
        DSV4_LAUNCH(kern, grid, kWarps * 32, 0, st, W->w, W->s, W->n, W->k, xq, sa, xf, M, y, round);
    } else {
        auto kern = gemv_kernel<KIND, QUANT, false>;
        DSV4_LAUNCH(kern, grid, kWarps * 32, 0, st, W->w, W->s, W->n, W->k, xq, sa, xf, M, y, round);
    }
    return DSV4_CU_LAUNCHED("gemv", st, err);
}

template <bool QUANT>
int launch_gemv(const dsv4_wt *W, const uint8_t *xq, const float *sa, const float *xf, int64_t M,
                float *y, int round, cudaStream_t st, dsv4_err *err)
{
    const int64_t k = W->k;
    const bool al = ((uintptr_t)W->w & 15u) == 0;
    switch (W->kind) {
    case DSV4_WT_FP8:
        return launch_gemv_vec<DSV4_WT_FP8, QUANT>(al && k % 16 == 0, W, xq, sa, xf, M, y, round, st, err);
    case DSV4_WT_FP4:
        return launch_gemv_vec<DSV4_WT_FP4, QUANT>(al && k % 32 == 0, W, xq, sa, xf, M, y, round, st, err);
    case DSV4_WT_BF16:
        return launch_gemv_vec<DSV4_WT_BF16, QUANT>(al && k % 8 == 0, W, xq, sa, xf, M, y, round, st, err);
    case DSV4_WT_Q2:   // rows of k / 4 bytes, k a multiple of 64: 16-byte aligned with the base
        return launch_gemv_vec<DSV4_WT_Q2, QUANT>(al, W, xq, sa, xf, M, y, round, st, err);
    case DSV4_WT_Q3:   // 12-byte blocks: word loads need a 4-byte aligned base
        return launch_gemv_vec<DSV4_WT_Q3, QUANT>(((uintptr_t)W->w & 3u) == 0, W, xq, sa, xf, M, y, round, st,
                                                  err);
    default:
        return launch_gemv_vec<DSV4_WT_F32, QUANT>(al && k % 4 == 0, W, xq, sa, xf, M, y, round, st, err);
    }
}

// ---- FP8 x FP8 on tensor cores ------------------------------------------------

// d += A B for one m16n8k32 tile, A 16x32 row-major e4m3, B 32x8 column-major
// e4m3, f32 accumulate.  Fragments (PTX ISA, "Matrix Fragments for
// mma.m16n8k32", .e4m3), with g = lane >> 2, t = lane & 3 and element i of
// a register in byte i (low to high):
//   a[0] = A[g][4t..4t+3]      a[1] = A[g+8][4t..4t+3]
//   a[2] = A[g][16+4t..+3]     a[3] = A[g+8][16+4t..+3]
//   b[0] = B[4t..4t+3][g]      b[1] = B[16+4t..+3][g]
//   d[0], d[1] = D[g][2t], D[g][2t+1];  d[2], d[3] = D[g+8][2t], D[g+8][2t+1]
// All 32 lanes must call it together (.sync.aligned).
__device__ __forceinline__ void mma_e4m3(float d[4], const uint32_t a[4], const uint32_t b[2])
{
#ifdef DSV4_CU_EMU
    // Gather every lane's fragments through the warp's exchange slots (8
    // bytes per lane per round), then compute this lane's four outputs.  The
    // products of e4m3 values are exact in f32; the sum of the 32 products
    // is formed in double and rounded once, then added to d.  The hardware's
    // internal accumulation order and width are not specified by PTX (and
    // are reportedly narrower than f32 on sm_90), so a real GPU may differ
    // in the last bits: the test's tolerance covers f32-level differences.
    uint64_t *slot = dsv4_emu::warp_slots();
    const unsigned me = dsv4_emu::lane();
    uint64_t lo[32], hi[32], bb[32];
    slot[me] = (uint64_t)a[0] | (uint64_t)a[1] << 32;
    dsv4_emu::sync_warp(0xffffffffu);
    memcpy(lo, slot, sizeof lo);
    dsv4_emu::sync_warp(0xffffffffu);
    slot[me] = (uint64_t)a[2] | (uint64_t)a[3] << 32;
    dsv4_emu::sync_warp(0xffffffffu);
    memcpy(hi, slot, sizeof hi);
    dsv4_emu::sync_warp(0xffffffffu);
    slot[me] = (uint64_t)b[0] | (uint64_t)b[1] << 32;
    dsv4_emu::sync_warp(0xffffffffu);
    memcpy(bb, slot, sizeof bb);
    dsv4_emu::sync_warp(0xffffffffu);
    uint8_t A[16][32], B[32][8];
    for (unsigned l = 0; l < 32; l++) {
        const unsigned g = l >> 2, t = l & 3;
        for (unsigned i = 0; i < 4; i++) {
            A[g][4 * t + i] = (uint8_t)(lo[l] >> (8 * i));
            A[g + 8][4 * t + i] = (uint8_t)(lo[l] >> (32 + 8 * i));
            A[g][16 + 4 * t + i] = (uint8_t)(hi[l] >> (8 * i));
            A[g + 8][16 + 4 * t + i] = (uint8_t)(hi[l] >> (32 + 8 * i));
            B[4 * t + i][g] = (uint8_t)(bb[l] >> (8 * i));
            B[16 + 4 * t + i][g] = (uint8_t)(bb[l] >> (32 + 8 * i));
        }
    }
    const unsigned g = me >> 2, t = me & 3;
    for (int i = 0; i < 4; i++) {
        const unsigned row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
        double sum = 0.0;
        for (int kk = 0; kk < 32; kk++)
            sum += (double)e4m3_f32(A[row][kk]) * (double)e4m3_f32(B[kk][col]);
        d[i] += (float)sum;
    }
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 890
    (void)a; (void)b; (void)d;
    __trap();        // the host never picks this path below sm_89
#else
    asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

constexpr int kTM = 64, kTN = 64, kTK = 128;
constexpr int kLds = kTK + 16;       // smem row stride: fragment loads hit 32 distinct banks
constexpr int kMmaThreads = 128;

// Rows [r0, r0 + 64) x columns [c0, c0 + 128) of a [rows, k] code matrix into
// smem (stride kLds); outside the matrix reads as code 0 (= +0).
template <bool VEC>
__device__ __forceinline__ void stage_tile(const uint8_t *__restrict__ src, int64_t rows, int64_t k, int64_t r0,
                                           int64_t c0, uint8_t *dst)
{
#pragma unroll
    for (int i = 0; i < kTM * kTK / 16 / kMmaThreads; i++) {
        const int idx = threadIdx.x + i * kMmaThreads, tr = idx >> 3, tc = (idx & 7) * 16;
        const int64_t gr = r0 + tr, gc = c0 + tc;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (gr < rows && gc < k) {
            const uint8_t *p = src + gr * k + gc;
            if (VEC) {
                v = __ldg(reinterpret_cast<const uint4 *>(p));
            } else {
                uint32_t wd[4] = { 0, 0, 0, 0 };
                for (int b = 0; b < 16 && gc + b < k; b++)
                    wd[b >> 2] |= (uint32_t)__ldg(p + b) << (8 * (b & 3));
                v = make_uint4(wd[0], wd[1], wd[2], wd[3]);
            }
        }
        *reinterpret_cast<uint4 *>(dst + tr * kLds + tc) = v;
    }
}

// y[m, r] = bf16(sum_b (sum_{c in b} q[m,c] W[r,c]) * sa[m,b] * S[r/128, b])
// for the 64x64 tile (blockIdx.y, blockIdx.x).
template <bool VEC>
__global__ void __launch_bounds__(kMmaThreads)
fp8_mma_kernel(const uint8_t *__restrict__ w, const uint8_t *__restrict__ s, int64_t n, int64_t k,
               const uint8_t *__restrict__ xq, const float *__restrict__ sa, int64_t M, float *__restrict__ y)
{
    __shared__ __align__(16) uint8_t As[kTM * kLds];
    __shared__ __align__(16) uint8_t Bs[kTN * kLds];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int64_t m0 = (int64_t)blockIdx.y * kTM, n0 = (int64_t)blockIdx.x * kTN;
    const int64_t kb = (k + kTK - 1) / kTK;
    const int64_t mlo = m0 + warp * 16 + g, mhi = mlo + 8;
    const uint8_t *srow = s + (n0 / 128) * kb;     // 64-row tiles never straddle a 128-row scale block
    float acc[8][4];
#pragma unroll
    for (int j = 0; j < 8; j++)
        acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    for (int64_t b = 0; b < kb; b++) {
        __syncthreads();                             // previous block's fragments read
        stage_tile<VEC>(xq, M, k, m0, b * kTK, As);
        stage_tile<VEC>(w, n, k, n0, b * kTK, Bs);
        __syncthreads();
        float part[8][4];
#pragma unroll
        for (int j = 0; j < 8; j++)
            part[j][0] = part[j][1] = part[j][2] = part[j][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < kTK / 32; ks++) {
            const uint8_t *ar = As + (warp * 16 + g) * kLds + ks * 32 + 4 * t;
            uint32_t a[4];
            a[0] = *reinterpret_cast<const uint32_t *>(ar);
            a[1] = *reinterpret_cast<const uint32_t *>(ar + 8 * kLds);
            a[2] = *reinterpret_cast<const uint32_t *>(ar + 16);
            a[3] = *reinterpret_cast<const uint32_t *>(ar + 8 * kLds + 16);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const uint8_t *br = Bs + (8 * j + g) * kLds + ks * 32 + 4 * t;
                uint32_t bf[2];
                bf[0] = *reinterpret_cast<const uint32_t *>(br);
                bf[1] = *reinterpret_cast<const uint32_t *>(br + 16);
                mma_e4m3(part[j], a, bf);
            }
        }
        // scales are powers of two: part * scale is exact
        const float sw = e8m0_f32(__ldg(srow + b));
        const float slo = mlo < M ? __ldg(sa + mlo * kb + b) * sw : 0.0f;
        const float shi = mhi < M ? __ldg(sa + mhi * kb + b) * sw : 0.0f;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            acc[j][0] += part[j][0] * slo;
            acc[j][1] += part[j][1] * slo;
            acc[j][2] += part[j][2] * shi;
            acc[j][3] += part[j][3] * shi;
        }
    }
#pragma unroll
    for (int j = 0; j < 8; j++) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int64_t m = i < 2 ? mlo : mhi, c = n0 + 8 * j + 2 * t + (i & 1);
            if (m < M && c < n)
                y[m * n + c] = dsv4k::round_bf16(acc[j][i]);
        }
    }
}

// Whether the tensor-core path may run: sm_89+ (probed once) and not forced
// off by DSV4_GEMM_SIMT=1 (read at every call, so a test can compare both).
bool mma_allowed()
{
    const char *e = getenv("DSV4_GEMM_SIMT");
    if (e && *e && strcmp(e, "0") != 0)
        return false;
    static int ok = -1;
    if (ok < 0) {
        int v = 1;
#ifndef DSV4_CU_EMU
        int dev = 0, cmaj = 0, cmin = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&cmaj, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&cmin, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess ||
            cmaj * 10 + cmin < 89)
            v = 0;
#endif
        ok = v;
    }
    return ok != 0;
}

// ---- argument checks ----------------------------------------------------------

int check_w(const char *op, const dsv4_wt *W, int64_t M, const float *y, dsv4_err *err)
{
    if (!W)
        return dsv4_err_set(err, DSV4_E_INVALID, "%s: no weight", op);
    const bool q = W->kind == DSV4_WT_Q2 || W->kind == DSV4_WT_Q3;
    if (W->kind != DSV4_WT_FP8 && W->kind != DSV4_WT_FP4 && W->kind != DSV4_WT_BF16 && W->kind != DSV4_WT_F32 && !q)
        return dsv4_err_set(err, DSV4_E_INVALID, "%s: weight kind %d", op, W->kind);
    if (q && W->k % (W->kind == DSV4_WT_Q2 ? 64 : 32))
        return dsv4_err_set(err, DSV4_E_INVALID, "%s: %s weight with k = %lld (a multiple of its block %d)", op,
                            W->kind == DSV4_WT_Q2 ? "Q2" : "Q3", (long long)W->k, W->kind == DSV4_WT_Q2 ? 64 : 32);
    if (W->n < 0 || W->k < 0 || M < 0)
        return dsv4_err_set(err, DSV4_E_INVALID, "%s: bad shape: weight [%lld, %lld], %lld rows", op,
                            (long long)W->n, (long long)W->k, (long long)M);
    if (W->n > (int64_t)kWarps * 0x7fffffff || M > (int64_t)kMB * 65535)
        return dsv4_err_set(err, DSV4_E_RANGE, "%s: %lld outputs x %lld rows is too large", op,
                            (long long)W->n, (long long)M);
    if (W->n > 0 && M > 0 && (!y || (W->k > 0 && (!W->w || ((W->kind == DSV4_WT_FP8 || W->kind == DSV4_WT_FP4 || q) && !W->s)))))
        return dsv4_err_set(err, DSV4_E_INVALID, "%s: null %s pointer", op,
                            !y ? "output" : !W->w ? "weight" : "weight scale");
    return 0;
}

int linear_q_pre(const dsv4_wt *W, const uint8_t *q, const float *sa, int64_t M, float *y,
                 cudaStream_t st, dsv4_err *err)
{
    if (W->kind == DSV4_WT_FP8 && M > kMB && mma_allowed()) {
        const dim3 grid((unsigned)((W->n + kTN - 1) / kTN), (unsigned)((M + kTM - 1) / kTM));
        const bool vec = W->k % 16 == 0 && ((uintptr_t)W->w & 15u) == 0 && ((uintptr_t)q & 15u) == 0;
        if (vec) {
            auto kern = fp8_mma_kernel<true>;
            DSV4_LAUNCH(kern, grid, kMmaThreads, 0, st, W->w, W->s, W->n, W->k, q, sa, M, y);
        } else {
            auto kern = fp8_mma_kernel<false>;
            DSV4_LAUNCH(kern, grid, kMmaThreads, 0, st, W->w, W->s, W->n, W->k, q, sa, M, y);
        }
        return DSV4_CU_LAUNCHED("fp8_mma", st, err);
    }
    return launch_gemv<true>(W, q, sa, nullptr, M, y, 1, st, err);
}

// Zero outputs for k == 0 (every sum is empty), as the CPU gives.
int zero_out(float *y, int64_t M, int64_t n, cudaStream_t st, dsv4_err *err)
{
    DSV4_CU_TRY(cudaMemsetAsync(y, 0, (size_t)(M * n) * sizeof(float), st), err);
    return 0;
}

size_t scales_off(int64_t M, int64_t k)
{
    return ((size_t)(M * k) + 15u) & ~(size_t)15u;
}

} // namespace

extern "C" int dsv4_cu_act_quant(const float *x, int64_t M, int64_t k, int block, uint8_t *q, float *scales,
                                 dsv4_stream s, dsv4_err *err)
{
    return act_quant(x, M, k, block, q, scales, s, err);
}

extern "C" size_t dsv4_cu_linear_q_scratch(int64_t M, int64_t k)
{
    if (M <= 0 || k <= 0)
        return 0;
    return scales_off(M, k) + (size_t)(M * ((k + 127) / 128)) * sizeof(float);
}

extern "C" int dsv4_cu_linear_q_pre(const dsv4_wt *W, const uint8_t *q, const float *scales, int64_t M,
                                    float *y, dsv4_stream s, dsv4_err *err)
{
    int rc = check_w("linear_q", W, M, y, err);
    if (rc || M == 0 || W->n == 0)
        return rc;
    if (W->k == 0)
        return zero_out(y, M, W->n, s, err);
    if (!q || !scales)
        return dsv4_err_set(err, DSV4_E_INVALID, "linear_q: null %s pointer", !q ? "code" : "scale");
    return linear_q_pre(W, q, scales, M, y, s, err);
}

extern "C" int dsv4_cu_linear_q(const dsv4_wt *W, const float *x, int64_t M, float *y, void *scratch,
                                dsv4_stream s, dsv4_err *err)
{
    int rc = check_w("linear_q", W, M, y, err);
    if (rc || M == 0 || W->n == 0)
        return rc;
    if (W->k == 0)
        return zero_out(y, M, W->n, s, err);
    if (!x)
        return dsv4_err_set(err, DSV4_E_INVALID, "linear_q: null input pointer");
    void *own = nullptr;
    if (!scratch) {
        if ((rc = dsv4_cu_alloc(&own, dsv4_cu_linear_q_scratch(M, W->k), err)))
            return rc;
        scratch = own;
    }
    uint8_t *q = static_cast<uint8_t *>(scratch);
    float *sa = reinterpret_cast<float *>(q + scales_off(M, W->k));
    rc = act_quant(x, M, W->k, 128, q, sa, s, err);
    if (!rc)
        rc = linear_q_pre(W, q, sa, M, y, s, err);
    if (own) {
        // cudaFree waits for the device, so the launches above are done with it
        dsv4_cu_free(own);
    }
    return rc;
}

extern "C" int dsv4_cu_linear(const dsv4_wt *W, const float *x, int64_t M, float *y, int round_bf16,
                              dsv4_stream s, dsv4_err *err)
{
    int rc = check_w("linear", W, M, y, err);
    if (rc || M == 0 || W->n == 0)
        return rc;
    if (W->k == 0)
        return zero_out(y, M, W->n, s, err);
    if (!x)
        return dsv4_err_set(err, DSV4_E_INVALID, "linear: null input pointer");
    return launch_gemv<false>(W, nullptr, nullptr, x, M, y, round_bf16 ? 1 : 0, s, err);
}
