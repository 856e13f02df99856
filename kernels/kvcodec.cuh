// kvcodec — device-side reads of the stored KV vectors and indexer keys, in
// both layouts of lib/kvstate.h (the twins of dsv4_kv_unpack and
// dsv4_ikey_unpack, exact: every value is a code times a power of two).
//
// Entry (head_dim hd, rope_dim rd, nd = hd - rd):
//   compact: [rd bf16 rope dims][nd e4m3 codes][ceil(nd/64) e8m0][pad to 8]
//            value i < nd = e4m3(code i) * 2^(scale[i/64]-127); i >= nd = bf16 rope dim i - nd
//   bf16:    [hd bf16]
// Indexer key (n dims):
//   compact: [n/2 bytes e2m1, low nibble = even dim][ceil(n/32) e8m0]
//   bf16:    [n bf16]
// Values come out in the CPU's dimension order: non-rope dims first, the
// rope dims last.
#ifndef DSV4_KERNELS_KVCODEC_CUH
#define DSV4_KERNELS_KVCODEC_CUH

#include "common.cuh"

namespace dsv4k {

struct kv_layout {
    int compact;              // 1: compact, 0: bf16
    int hd, rd;               // head_dim, rope_dim
    int ihd;                  // index_head_dim
    int entry_bytes, ikey_bytes;
};

__device__ __forceinline__ float ld_bf16(const uint8_t *p)
{
    return __uint_as_float((uint32_t)(p[0] | (uint32_t)p[1] << 8) << 16);
}

// Dimension i of the stored KV vector e.
__device__ __forceinline__ float kv_elem(const kv_layout &L, const uint8_t *e, int i)
{
    if (!L.compact)
        return ld_bf16(e + 2 * i);
    int nd = L.hd - L.rd;
    if (i >= nd)
        return ld_bf16(e + 2 * (i - nd));
    const uint8_t *codes = e + 2 * L.rd;
    return e4m3_f32(codes[i]) * e8m0_f32(codes[nd + i / 64]);
}

// Dimension i of the stored indexer key k.
__device__ __forceinline__ float ikey_elem(const kv_layout &L, const uint8_t *k, int i)
{
    if (!L.compact)
        return ld_bf16(k + 2 * i);
    uint32_t b = k[i >> 1];
    return e2m1_f32(i & 1 ? b >> 4 : b & 15u) * e8m0_f32(k[L.ihd / 2 + i / 32]);
}

} // namespace dsv4k

#endif
