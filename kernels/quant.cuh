// quant.cuh — device decoding of the Q2/Q3 block formats of lib/quant.h
// (dsv4-quant), shared by kernels/gemm.cu and kernels/moe.cu.
//
//   Q2: 64 weights per block in 16 bytes (4 little-endian u32 of 16 2-bit
//       codes each); level = code - 2.
//   Q3: 32 weights per block in 12 bytes: u32 lo0 (weights 0..15), lo1
//       (16..31) of low 2-bit pairs, u32 hi with bit i the high bit of
//       weight i; levels -6 -4 -2 -1 0 1 2 4.
//   QS8 scale byte: bit 7 sign, bits 6..0 e: |d| = 2^((e - 96) / 4), e = 0: 0.
// All bit-identical to lib/quant.c (the scale is quarter[e & 3] times an
// exact power of two, as ldexpf gives it there).
#ifndef DSV4_KERNELS_QUANT_CUH
#define DSV4_KERNELS_QUANT_CUH

#include <stdint.h>

namespace dsv4k {

// dsv4_qs8_to_f32: quarter[e & 3] * 2^((e >> 2) - 24), exact (the power of
// two is a normal f32 for every e in 1..127, the product stays normal).
__device__ __forceinline__ float qs8_f32(uint32_t s)
{
    const uint32_t e = s & 0x7fu;
    if (!e)
        return 0.0f;
    const uint32_t f = e & 3u;
    const float q = f == 0 ? 1.0f : f == 1 ? 1.18920711500272106672f : f == 2 ? 1.41421356237309504880f
                                                                        : 1.68179283050742908606f;
    const float d = q * __uint_as_float((uint32_t)(127 + (int)(e >> 2) - 24) << 23);
    return (s & 0x80u) ? -d : d;
}

// Level of Q2 weight i (0..15) of a code word.
__device__ __forceinline__ int q2_level(uint32_t w, int i)
{
    return (int)((w >> (2 * i)) & 3u) - 2;
}

// Level of a Q3 code 0..7: the nibbles of 0xA8765420 are level + 6.
__device__ __forceinline__ int q3_level_of(uint32_t c)
{
    return (int)((0xA8765420u >> (4 * c)) & 15u) - 6;
}

// Level of Q3 weight i (0..31) of a block's words lo0, lo1, hi.
__device__ __forceinline__ int q3_level(uint32_t lo0, uint32_t lo1, uint32_t hi, int i)
{
    const uint32_t lo = i < 16 ? lo0 : lo1;
    return q3_level_of(((lo >> (2 * (i & 15))) & 3u) | (((hi >> i) & 1u) << 2));
}

} // namespace dsv4k

#endif
