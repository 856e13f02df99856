// comp — device helpers of the compressor and indexer kernels
// (kernels/compress.cu, kernels/indexer.cu): arithmetic that must not be
// contracted into FMAs (so that it rounds like the CPU reference, which is
// built without FMA contraction), the CPU's exact RMSNorm sum order, and the
// per-entry packers, bit-exact twins of dsv4_kv_pack / dsv4_ikey_pack
// (lib/kvstate.c) for one vector held in shared memory.
#ifndef DSV4_KERNELS_COMP_CUH
#define DSV4_KERNELS_COMP_CUH

#include "common.cuh"
#include "kvcodec.cuh"

namespace dsv4k {

// Separately rounded f32 / f64 operations (nvcc contracts a*b+c into an FMA
// unless told not to; the _rn intrinsics are never contracted).
#ifdef DSV4_CU_EMU
__device__ __forceinline__ float mul_rn(float a, float b) { return a * b; }
__device__ __forceinline__ float add_rn(float a, float b) { return a + b; }
__device__ __forceinline__ float sub_rn(float a, float b) { return a - b; }
__device__ __forceinline__ double dmul_rn(double a, double b) { return a * b; }
__device__ __forceinline__ double dadd_rn(double a, double b) { return a + b; }
#else
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double dmul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double dadd_rn(double a, double b) { return __dadd_rn(a, b); }
#endif

// sum of x[i]^2 (f32 squares) in the order of lib/ops.c sum_sq (PyTorch's
// vectorised CPU sum: 8-lane vectors, 4-way ILP, a 4-level cascade), so
// that RMSNorm gives the CPU's bits.  One thread; O(n) serial adds (n <= a
// few thousand): ~n * 4 cycles of latency per entry.
__device__ inline float sum_sq_cpu(const float *x, int64_t n)
{
    int64_t nv = n / 8, rows = nv / 4;
    int cl = 0;
    while (rows > 1 && ((int64_t)1 << cl) < rows)
        cl++;
    int lp = cl / 4;
    lp = lp > 4 ? lp : 4;
    int64_t step = (int64_t)1 << lp, mask = step - 1;
    float acc[4][32];
    for (int a = 0; a < 4; a++)
        for (int k = 0; k < 32; k++)
            acc[a][k] = 0.0f;
    int64_t i = 0;
    while (i + step <= rows) {
        for (int64_t j = 0; j < step; j++, i++)
            for (int k = 0; k < 32; k++)
                acc[0][k] = add_rn(acc[0][k], mul_rn(x[i * 32 + k], x[i * 32 + k]));
        for (int lv = 1; lv < 4; lv++) {
            for (int k = 0; k < 32; k++) {
                acc[lv][k] = add_rn(acc[lv][k], acc[lv - 1][k]);
                acc[lv - 1][k] = 0.0f;
            }
            if (i & (mask << (lv * lp)))
                break;
        }
    }
    for (; i < rows; i++)
        for (int k = 0; k < 32; k++)
            acc[0][k] = add_rn(acc[0][k], mul_rn(x[i * 32 + k], x[i * 32 + k]));
    for (int lv = 1; lv < 4; lv++)
        for (int k = 0; k < 32; k++)
            acc[0][k] = add_rn(acc[0][k], acc[lv][k]);
    for (int64_t v = rows * 4; v < nv; v++)
        for (int l = 0; l < 8; l++)
            acc[0][l] = add_rn(acc[0][l], mul_rn(x[v * 8 + l], x[v * 8 + l]));
    for (int k = 1; k < 4; k++)
        for (int l = 0; l < 8; l++)
            acc[0][l] = add_rn(acc[0][l], acc[0][k * 8 + l]);
    float s = 0.0f;
    for (int64_t t = nv * 8; t < n; t++)
        s = add_rn(s, mul_rn(x[t], x[t]));
    for (int l = 0; l < 8; l++)
        s = add_rn(s, acc[0][l]);
    return s;
}

// dsv4_ikey_pack's block scale.  Not common.cuh's fp4_scale: its floor
// constant 1.763241526422e-37f is 0x1.ep-123, not 6 * 2^-126 = 0x1.8p-124,
// which changes the scale of blocks with amax below ~1.8e-37 (all-zero
// blocks among them).
__device__ __forceinline__ float ikey_scale(float amax)
{
    const float fl = 0x1.8p-124f;
    return pow2_ceil((amax > fl ? amax : fl) * (1.0f / 6.0f));
}

__device__ __forceinline__ void st_bf16(uint8_t *p, float v)
{
    uint32_t h = bf16_bits(v);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

// dsv4_kv_pack of x[hd] (shared memory, values bf16-representable as
// entry_finish leaves them) into out[entry_bytes]; every thread of the block
// calls.  sc: shared scratch of ceil(nd/64) floats.  Compact: the amax of
// each 64-block (order-free: max is exact), the power-of-two scale, e4m3
// codes of x / s (exact division), the rope dims as bf16, zero padding.
__device__ inline void kv_pack_block(const kv_layout &L, const float *x, float *sc, uint8_t *out)
{
    int tid = threadIdx.x, nt = blockDim.x;
    if (!L.compact) {
        for (int i = tid; i < L.hd; i += nt)
            st_bf16(out + 2 * i, x[i]);
        return;
    }
    int nd = L.hd - L.rd, nb = (nd + 63) / 64;
    for (int b = tid; b < nb; b += nt) {
        int e = (b + 1) * 64 < nd ? (b + 1) * 64 : nd;
        float amax = 0.0f;
        for (int i = b * 64; i < e; i++) {
            float a = fabsf(x[i]);
            amax = a > amax ? a : amax;
        }
        sc[b] = fp8_scale(amax);
    }
    __syncthreads();
    uint8_t *codes = out + 2 * L.rd, *sb = codes + nd;
    for (int i = tid; i < nd; i += nt)
        codes[i] = (uint8_t)f32_e4m3(x[i] / sc[i / 64]);
    for (int b = tid; b < nb; b += nt)
        sb[b] = (uint8_t)(__float_as_uint(sc[b]) >> 23);
    for (int i = tid; i < L.rd; i += nt)
        st_bf16(out + 2 * i, x[nd + i]);
    for (int i = 2 * L.rd + nd + nb + tid; i < L.entry_bytes; i += nt)
        out[i] = 0;
}

// dsv4_ikey_pack of x[ihd] (shared, ihd even) into out[ikey_bytes]; every
// thread calls.  sc: shared scratch of ceil(ihd/32) floats.  Compact: one
// power-of-two scale per 32 dims (amax floor 6 * 2^-126), e2m1 codes, low
// nibble = even dim, then the scale bytes.
__device__ inline void ikey_pack_block(const kv_layout &L, const float *x, float *sc, uint8_t *out)
{
    int tid = threadIdx.x, nt = blockDim.x, n = L.ihd;
    if (!L.compact) {
        for (int i = tid; i < n; i += nt)
            st_bf16(out + 2 * i, x[i]);
        return;
    }
    int nb = (n + 31) / 32;
    for (int b = tid; b < nb; b += nt) {
        int e = (b + 1) * 32 < n ? (b + 1) * 32 : n;
        float amax = 0.0f;
        for (int i = b * 32; i < e; i++) {
            float a = fabsf(x[i]);
            amax = a > amax ? a : amax;
        }
        sc[b] = ikey_scale(amax);
    }
    __syncthreads();
    for (int p = tid; p < n / 2; p += nt) {
        uint32_t lo = f32_e2m1(x[2 * p] / sc[(2 * p) / 32]);
        uint32_t hi = f32_e2m1(x[2 * p + 1] / sc[(2 * p + 1) / 32]);
        out[p] = (uint8_t)(lo | hi << 4);
    }
    for (int b = tid; b < nb; b += nt)
        out[n / 2 + b] = (uint8_t)(__float_as_uint(sc[b]) >> 23);
}

} // namespace dsv4k

#endif
