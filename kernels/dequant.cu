// dequant — block-scaled checkpoint weights to f32 or bf16 on the GPU
// (spec/ARCH.md §10.2); the API is in lib/gpu.h, the CPU reference is
// dsv4_dequant_fp8_rows / dsv4_dequant_fp4_rows in lib/codec.c.
//
//   FP8:  W[r,c] = e4m3(Wq[r,c]) * 2^(S[r/128, c/128] - 127)
//   FP4:  W[r,c] = e2m1(nibble c of row r) * 2^(S[r, c/32] - 127),
//         byte c/2 of the row, low nibble = even c
//
// Results are bit-identical to the reference: the codes are decoded from
// their bit fields (no lookup table, no conversion instruction whose NaN or
// subnormal handling could differ), and the one multiply is exact — a code
// has at most 4 significant bits and every nonzero product is >= 2^-136,
// inside the f32 subnormal range — except for overflow to inf, which
// round-to-nearest gives on both sides.  Only NaN payloads may differ (the
// GPU's multiply returns its canonical NaN).  Subnormal products need
// denormals kept: do not build kernels/ with -ftz=true or --use_fast_math.
//
// Memory-bound (writes are 4-8x the reads): the vector kernels give each
// thread groups of 4 outputs so that every warp store is one contiguous
// 512-byte (f32) or 256-byte (bf16) span; shapes or pointers that do not
// allow that take the element-wise kernels.  Grid-stride loops keep every
// shape, 1-row and very wide ones alike, on one launch.
#include "common.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;

using dsv4k::bf16_bits;
using dsv4k::e2m1_f32;
using dsv4k::e4m3_f32;
using dsv4k::e8m0_f32;

__device__ __forceinline__ void store1(float *o, float v) { *o = v; }
__device__ __forceinline__ void store1(uint16_t *o, float v) { *o = (uint16_t)bf16_bits(v); }

// 4 consecutive values to o (16-byte aligned for f32, 8 for bf16).
__device__ __forceinline__ void store4(float *o, float a, float b, float c, float d)
{
    *reinterpret_cast<float4 *>(o) = make_float4(a, b, c, d);
}

__device__ __forceinline__ void store4(uint16_t *o, float a, float b, float c, float d)
{
    *reinterpret_cast<uint2 *>(o) = make_uint2(bf16_bits(a) | (bf16_bits(b) << 16),
                                               bf16_bits(c) | (bf16_bits(d) << 16));
}

// The vector kernels treat rows [r0, r1) as one flat run of `chunks` groups
// of 4 elements (k % 4 == 0, so a group never straddles a row, a 128-column
// block or a 32-column group).  Thread `t` reads group t's codes (4 FP8
// bytes, or 2 FP4 bytes) and writes its 4 outputs, so each warp instruction
// touches one contiguous span; each thread keeps kUnroll groups in flight.
// I is uint32_t when the whole tensor has < 2^32 elements (cheaper division
// for the scale index), else uint64_t.
constexpr int kUnroll = 4;

// FP8: w4 = the codes of row r0 as 32-bit words.
template <typename T, typename I>
__global__ void fp8_vec4(const uint32_t *__restrict__ w4, const uint8_t *__restrict__ s, I k,
                         I r0, I chunks, T *__restrict__ out)
{
    const I kb = (k + 127) >> 7;
    const I step = (I)gridDim.x * blockDim.x * kUnroll;
    for (I base = (I)blockIdx.x * blockDim.x * kUnroll + threadIdx.x; base < chunks; base += step) {
        uint32_t q[kUnroll];
        float sc[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            I t = base + (I)u * blockDim.x;
            if (t < chunks) {
                I e = t * 4, i = e / k, c = e - i * k, r = r0 + i;
                q[u] = __ldg(w4 + t);
                sc[u] = e8m0_f32(__ldg(s + (r >> 7) * kb + (c >> 7)));
            }
        }
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            I t = base + (I)u * blockDim.x;
            if (t < chunks)
                store4(out + t * 4, __fmul_rn(e4m3_f32(q[u] & 0xffu), sc[u]),
                       __fmul_rn(e4m3_f32((q[u] >> 8) & 0xffu), sc[u]),
                       __fmul_rn(e4m3_f32((q[u] >> 16) & 0xffu), sc[u]),
                       __fmul_rn(e4m3_f32(q[u] >> 24), sc[u]));
        }
    }
}

// FP4: w2 = the packed bytes of row r0 as 16-bit words (rows are k/2 bytes,
// so the run is flat too); element j of a group is nibble j of its word.
template <typename T, typename I>
__global__ void fp4_vec4(const uint16_t *__restrict__ w2, const uint8_t *__restrict__ s, I k,
                         I r0, I chunks, T *__restrict__ out)
{
    const I ks = (k + 31) >> 5;
    const I step = (I)gridDim.x * blockDim.x * kUnroll;
    for (I base = (I)blockIdx.x * blockDim.x * kUnroll + threadIdx.x; base < chunks; base += step) {
        uint32_t q[kUnroll];
        float sc[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            I t = base + (I)u * blockDim.x;
            if (t < chunks) {
                I e = t * 4, i = e / k, c = e - i * k, r = r0 + i;
                q[u] = __ldg(w2 + t);
                sc[u] = e8m0_f32(__ldg(s + r * ks + (c >> 5)));
            }
        }
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            I t = base + (I)u * blockDim.x;
            if (t < chunks)
                store4(out + t * 4, __fmul_rn(e2m1_f32(q[u]), sc[u]),
                       __fmul_rn(e2m1_f32(q[u] >> 4), sc[u]),
                       __fmul_rn(e2m1_f32(q[u] >> 8), sc[u]),
                       __fmul_rn(e2m1_f32(q[u] >> 12), sc[u]));
        }
    }
}

// FP8, any shape: one thread = one element.
template <typename T>
__global__ void fp8_elem(const uint8_t *__restrict__ w, const uint8_t *__restrict__ s,
                         int64_t k, int64_t r0, int64_t rows, T *__restrict__ out)
{
    const int64_t kb = (k + 127) >> 7, total = rows * k;
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
        int64_t i = t / k, c = t - i * k, r = r0 + i;
        float sc = e8m0_f32(__ldg(s + (r >> 7) * kb + (c >> 7)));
        store1(out + t, __fmul_rn(e4m3_f32(__ldg(w + r * k + c)), sc));
    }
}

// FP4, any shape (rows of ceil(k/2) bytes, ceil(k/32) scales): one thread =
// one element.
template <typename T>
__global__ void fp4_elem(const uint8_t *__restrict__ w, const uint8_t *__restrict__ s,
                         int64_t k, int64_t r0, int64_t rows, T *__restrict__ out)
{
    const int64_t kbytes = (k + 1) >> 1, ks = (k + 31) >> 5, total = rows * k;
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
        int64_t i = t / k, c = t - i * k, r = r0 + i;
        uint32_t byte = __ldg(w + r * kbytes + (c >> 1));
        float sc = e8m0_f32(__ldg(s + r * ks + (c >> 5)));
        store1(out + t, __fmul_rn(e2m1_f32(byte >> (4 * (c & 1))), sc));
    }
}

template <typename T>
T *out_ptr(const dsv4_dequant_args *a)
{
    return static_cast<T *>(a->out);
}

unsigned grid_for(int64_t work)
{
    int64_t b = (work + kThreads - 1) / kThreads;
    return (unsigned)(b < kMaxBlocks ? b : kMaxBlocks);
}

bool aligned(const void *p, uintptr_t n)
{
    return ((uintptr_t)p & (n - 1)) == 0;
}

template <typename T, typename I>
void launch_vec(const dsv4_dequant_args *a, cudaStream_t st)
{
    const I k = (I)a->k, r0 = (I)a->r0, chunks = (I)((a->r1 - a->r0) * a->k / 4);
    const unsigned grid = grid_for(((int64_t)chunks + kUnroll - 1) / kUnroll);
    T *out = static_cast<T *>(a->out);
    if (a->fmt == DSV4_DQ_FP8) {
        auto kern = fp8_vec4<T, I>;
        DSV4_LAUNCH(kern, grid, kThreads, 0, st,
                    reinterpret_cast<const uint32_t *>(a->w + a->r0 * a->k), a->s, k, r0, chunks, out);
    } else {
        auto kern = fp4_vec4<T, I>;
        DSV4_LAUNCH(kern, grid, kThreads, 0, st,
                    reinterpret_cast<const uint16_t *>(a->w + a->r0 * (a->k / 2)), a->s, k, r0, chunks, out);
    }
}

template <typename T>
int launch(const dsv4_dequant_args *a, cudaStream_t st, dsv4_err *err)
{
    const int64_t rows = a->r1 - a->r0, k = a->k;
    const bool fp8 = a->fmt == DSV4_DQ_FP8;
    const bool vec = k % 4 == 0 && aligned(a->w, fp8 ? 4 : 2) && aligned(a->out, 4 * sizeof(T));
    const char *name;
    if (vec) {
        name = fp8 ? "fp8_vec4" : "fp4_vec4";
        if (a->n * k <= (int64_t)UINT32_MAX)
            launch_vec<T, uint32_t>(a, st);
        else
            launch_vec<T, uint64_t>(a, st);
    } else if (fp8) {
        name = "fp8_elem";
        auto kern = fp8_elem<T>;
        DSV4_LAUNCH(kern, grid_for(rows * k), kThreads, 0, st, a->w, a->s, k, a->r0, rows, out_ptr<T>(a));
    } else {
        name = "fp4_elem";
        auto kern = fp4_elem<T>;
        DSV4_LAUNCH(kern, grid_for(rows * k), kThreads, 0, st, a->w, a->s, k, a->r0, rows, out_ptr<T>(a));
    }
    return DSV4_CU_LAUNCHED(name, st, err);
}

int check_args(const dsv4_dequant_args *a, dsv4_err *err)
{
    if (!a)
        return dsv4_err_set(err, DSV4_E_INVALID, "dequant: no arguments");
    if (a->fmt != DSV4_DQ_FP8 && a->fmt != DSV4_DQ_FP4)
        return dsv4_err_set(err, DSV4_E_INVALID, "dequant: unknown input format %d", a->fmt);
    if (a->out_type != DSV4_DQ_F32 && a->out_type != DSV4_DQ_BF16)
        return dsv4_err_set(err, DSV4_E_INVALID, "dequant: unknown output type %d", a->out_type);
    if (a->n < 0 || a->k < 0 || a->r0 < 0 || a->r0 > a->r1 || a->r1 > a->n)
        return dsv4_err_set(err, DSV4_E_INVALID,
                            "dequant: rows [%lld, %lld) of a [%lld, %lld] weight are out of range",
                            (long long)a->r0, (long long)a->r1, (long long)a->n, (long long)a->k);
    if (a->k > 0 && a->n > INT64_MAX / 4 / a->k)
        return dsv4_err_set(err, DSV4_E_RANGE, "dequant: [%lld, %lld] weight is too large",
                            (long long)a->n, (long long)a->k);
    if (a->r1 > a->r0 && a->k > 0 && (!a->w || !a->s || !a->out))
        return dsv4_err_set(err, DSV4_E_INVALID, "dequant: null %s pointer",
                            !a->w ? "weight" : !a->s ? "scale" : "output");
    return 0;
}

} // namespace

extern "C" int dsv4_cu_dequant(const dsv4_dequant_args *a, dsv4_stream s, dsv4_err *err)
{
    int rc = check_args(a, err);
    if (rc || a->r1 == a->r0 || a->k == 0)
        return rc;
    return a->out_type == DSV4_DQ_F32 ? launch<float>(a, s, err) : launch<uint16_t>(a, s, err);
}

extern "C" int dsv4_cu_dequant_host(const dsv4_dequant_args *a, dsv4_err *err)
{
    int rc = check_args(a, err);
    if (rc || a->r1 == a->r0 || a->k == 0)
        return rc;
    size_t wb = (size_t)dsv4_dequant_wbytes(a->fmt, a->n, a->k);
    size_t sb = (size_t)dsv4_dequant_sbytes(a->fmt, a->n, a->k);
    size_t ob = (size_t)((a->r1 - a->r0) * a->k) * (a->out_type == DSV4_DQ_F32 ? 4 : 2);
    void *dw = NULL, *ds = NULL, *dout = NULL;
    dsv4_dequant_args d = *a;
    if ((rc = dsv4_cu_alloc(&dw, wb, err)) || (rc = dsv4_cu_alloc(&ds, sb, err)) ||
        (rc = dsv4_cu_alloc(&dout, ob, err)) || (rc = dsv4_cu_upload(dw, a->w, wb, err)) ||
        (rc = dsv4_cu_upload(ds, a->s, sb, err)))
        goto out;
    d.w = static_cast<const uint8_t *>(dw);
    d.s = static_cast<const uint8_t *>(ds);
    d.out = dout;
    if ((rc = dsv4_cu_dequant(&d, NULL, err)) || (rc = dsv4_cu_sync(NULL, err)) ||
        (rc = dsv4_cu_download(a->out, dout, ob, err)))
        goto out;
out:
    dsv4_cu_free(dout);
    dsv4_cu_free(ds);
    dsv4_cu_free(dw);
    return rc;
}
