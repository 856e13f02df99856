// common — device-side number formats and reductions shared by the .cu files
// of kernels/.  Each conversion is the bit-level twin of its CPU reference in
// lib/codec.c (same integer arithmetic on the IEEE bits, no conversion
// instruction whose rounding or NaN handling could differ), so a kernel that
// converts gives the CPU's bits.  Denormals must be kept: kernels/ is never
// built with -ftz=true or --use_fast_math.
#ifndef DSV4_KERNELS_COMMON_CUH
#define DSV4_KERNELS_COMMON_CUH

#include "gpu.h"

namespace dsv4k {

// ---- formats (lib/codec.c) ------------------------------------------------

// e8m0 scale byte: 2^(b-127); 0 -> 2^-127 (subnormal); 255 -> NaN.
__device__ __forceinline__ float e8m0_f32(uint32_t b)
{
    if (b == 0)
        return __uint_as_float(0x00400000u);
    if (b == 255)
        return __uint_as_float(0x7fc00000u);
    return __uint_as_float(b << 23);
}

// e4m3 (OCP fn): bias 7, exponent 0 is subnormal (m * 2^-9), S.1111.111 NaN.
__device__ __forceinline__ float e4m3_f32(uint32_t c)
{
    uint32_t sign = (c & 0x80u) << 24, em = c & 0x7fu;
    if (em == 0x7fu)
        return __uint_as_float(sign | 0x7fc00000u);
    if (em < 8u)                                 // 0 or subnormal, exact in f32
        return __uint_as_float(sign | __float_as_uint((float)em * 0.001953125f));
    return __uint_as_float(sign | ((em << 20) + (120u << 23)));   // rebias 7 -> 127
}

// dsv4_f32_to_e4m3: RNE, saturating to +-448, NaN -> 0x7f.
__device__ __forceinline__ uint32_t f32_e4m3(float f)
{
    uint32_t u = __float_as_uint(f);
    uint32_t sign = (u >> 24) & 0x80u;
    u &= 0x7fffffffu;
    if (u > 0x7f800000u)
        return 0x7fu;
    if (u >= 0x43e00000u)
        return sign | 0x7eu;
    if (u >= 0x3c800000u) {
        u -= (uint32_t)(127 - 7) << 23;
        u += 0x7ffffu + ((u >> 20) & 1u);
        return sign | ((u >> 20) & 0xffu);
    }
    uint32_t e = u >> 23;
    uint32_t mant = (u & 0x7fffffu) | (e ? 0x800000u : 0u);
    uint32_t shift = 141u - (e ? e : 1u);
    if (shift > 24u)
        return sign;
    uint32_t q = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    q += rem > half || (rem == half && (q & 1u));
    return sign | q;
}

// e2m1 nibble: bit 3 sign, bits 2..1 exponent (bias 1), bit 0 mantissa.
__device__ __forceinline__ float e2m1_f32(uint32_t c)
{
    uint32_t em = c & 7u;
    uint32_t mag = em >= 2u ? (em << 22) + (126u << 23) : (em ? 0x3f000000u : 0u);
    return __uint_as_float(mag | ((c & 8u) << 28));
}

// dsv4_f32_to_e2m1: RNE on the grid, saturating to +-6, NaN -> +6.
__device__ __forceinline__ uint32_t f32_e2m1(float f)
{
    uint32_t sign = (__float_as_uint(f) >> 28) & 8u;
    float a = fabsf(f);
    uint32_t c;
    if (a != a)
        return 7u;
    if (a <= 0.25f)      c = 0;
    else if (a < 0.75f)  c = 1;
    else if (a <= 1.25f) c = 2;
    else if (a < 1.75f)  c = 3;
    else if (a <= 2.5f)  c = 4;
    else if (a < 3.5f)   c = 5;
    else if (a <= 5.0f)  c = 6;
    else                 c = 7;
    return sign | c;
}

// dsv4_f32_to_bf16 bits: RNE on the bits, NaN -> 0x7fc0.
__device__ __forceinline__ uint32_t bf16_bits(float f)
{
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return 0x7fc0u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}
__device__ __forceinline__ float bf16_f32(uint32_t h) { return __uint_as_float(h << 16); }
__device__ __forceinline__ float round_bf16(float f) { return bf16_f32(bf16_bits(f)); }

// dsv4_pow2_ceil: 2^(E(p) + [mantissa != 0]); subnormal p exact.
__device__ __forceinline__ float pow2_ceil(float p)
{
    uint32_t u = __float_as_uint(p) & 0x7fffffffu;
    if (u == 0 || u >= 0x7f800000u)
        return __uint_as_float(u | (u > 0x7f800000u ? 0x00400000u : 0u));
    uint32_t e = u >> 23, m = u & 0x7fffffu;
    if (e == 0)
        return __uint_as_float(m == 1 ? 1u : 1u << (32 - __clz(m - 1)));
    return __uint_as_float((e + (m != 0)) << 23);
}

// Scale of one quantisation block from its amax (codec.c block_scale):
// FP8: floor 1e-4, 1/448; FP4: floor 6 * 2^-126, 1/6.
__device__ __forceinline__ float fp8_scale(float amax)
{
    return pow2_ceil((amax > 1e-4f ? amax : 1e-4f) * (1.0f / 448.0f));
}
__device__ __forceinline__ float fp4_scale(float amax)
{
    const float fl = 0x1.8p-124f;            // 6 * 2^-126
    return pow2_ceil((amax > fl ? amax : fl) * (1.0f / 6.0f));
}

// ---- reductions -------------------------------------------------------------
// Fixed shapes (butterflies over the full warp), so the result does not depend
// on timing; every lane gets the result.  All 32 lanes must call.

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum(double v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide sum / max for blockDim.x a multiple of 32 (<= 1024), one
// dimension; every thread must call; scratch holds 32 values of T and is
// reused, so calls are separated by the __syncthreads inside.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T *scratch)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0)
        scratch[w] = v;
    __syncthreads();
    T r = lane < nw ? scratch[lane] : (T)0;
    return warp_sum(r);
}
__device__ __forceinline__ float block_max(float v, float *scratch)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0)
        scratch[w] = v;
    __syncthreads();
    float r = lane < nw ? scratch[lane] : -INFINITY;
    return warp_max(r);
}

} // namespace dsv4k

#endif
