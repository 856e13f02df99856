// ops — the small per-row and element-wise ops of the forward pass (API and
// exactness in lib/gpu_ops.h; CPU references in lib/ops.c, codec.c,
// kvstate.c, engine.c, attn.c).
//
// Every f32 operation that the CPU does is done here once, in the CPU's
// order, with __fmul_rn/__fadd_rn where nvcc could otherwise contract a
// multiply and an add into an FMA (the CPU build never fuses: -std=c11 sets
// -ffp-contract=off).  Division and sqrtf are IEEE (no -use_fast_math, so
// -prec-div and -prec-sqrt stay on).  The format conversions are
// kernels/common.cuh's bit-level twins of lib/codec.c.
//
// All of these are memory-bound and small next to the GEMMs (a few bytes
// per element read and written once).  Per-row ops give a row to a block
// (rmsnorm, head_rms, Hadamard, pack) or a quantisation block to a warp (the
// sims); element-wise ops are grid-stride loops.  What would make them
// faster: fusing them into their neighbours (norm into the GEMM epilogue,
// rope + pack after the KV norm) to save a pass over the activations, and
// vector loads; at decode sizes they are launch-latency bound.
#include "common.cuh"
#include "kvcodec.cuh"
#include "meansq.cuh"
#include "gpu_ops.h"

namespace {

using namespace dsv4k;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;

unsigned grid_for(int64_t work, int per_block = kThreads)
{
    int64_t b = (work + per_block - 1) / per_block;
    return (unsigned)(b < kMaxBlocks ? b : kMaxBlocks);
}

int bad(dsv4_err *err, const char *op, const char *what, long long v)
{
    return dsv4_err_set(err, DSV4_E_INVALID, "%s: bad %s %lld", op, what, v);
}

int null_ptr(dsv4_err *err, const char *op, const char *what)
{
    return dsv4_err_set(err, DSV4_E_INVALID, "%s: null %s pointer", op, what);
}

// ---- norms ------------------------------------------------------------------

// One block per row.  mode 0: y = bf16(w * (x * r)); mode 1: out[row] = mean_sq.
__global__ void rmsnorm_k(const float *x, const float *__restrict__ w, int64_t n, float eps, float *y,
                          float *out, int mode)
{
    DSV4_DYN_SMEM(float, scratch);
    const int64_t row = blockIdx.x;
    const float *xr = x + row * n;
    float ms = sum_sq_row(xr, n, scratch) / (float)n;      // dsv4_mean_sq
    if (mode == 1) {
        if (threadIdx.x == 0)
            out[row] = ms;
        return;
    }
    float r = 1.0f / sqrtf(__fadd_rn(ms, eps));
    float *yr = y + row * n;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        yr[i] = round_bf16(__fmul_rn(w[i], __fmul_rn(xr[i], r)));
}

// One block per row: dsv4_head_rms_bf16.  The CPU sums the bf16 squares in
// double sequentially; a tree of double adds gives the same double whenever
// the sum is exact (bf16 squares have 8 significant bits, so it is whenever
// the largest term is within 2^(45 - log2 n) of the smallest nonzero one:
// 2^36 for a 512-dim head), and so the same f32 after the rounding.
__global__ void head_rms_k(float *q, int64_t n, float eps)
{
    __shared__ double scratch[32];
    float *qr = q + (int64_t)blockIdx.x * n;
    double ss = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        ss += (double)round_bf16(__fmul_rn(qr[i], qr[i]));
    ss = block_sum(ss, scratch);
    float mean = round_bf16((float)ss / (float)n);
    float r = round_bf16(1.0f / sqrtf(round_bf16(__fadd_rn(mean, eps))));
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        qr[i] = round_bf16(__fmul_rn(qr[i], r));
}

// ---- RoPE -------------------------------------------------------------------

// One thread per (token, group of kHeadsPerThread vectors, pair): the angle
// and its cos/sin are computed once per token and pair and used for the
// group's vectors (the q heads of a token share them).  The CPU takes
// cosf/sinf of the f32 angle; the double cos/sin rounded to f32 is the
// correctly rounded value (the GPU's f32 sinf/cosf have up to 2 ulp error,
// glibc's 0.56).
constexpr int64_t kHeadsPerThread = 8;

__global__ void rope_k(float *x, int64_t M, int64_t nh, int64_t hd, int64_t half, const float *__restrict__ freqs,
                       int64_t pos0, const int64_t *__restrict__ positions, int inverse)
{
    const int64_t ng = (nh + kHeadsPerThread - 1) / kHeadsPerThread, total = M * ng * half;
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
        int64_t i = t % half, mg = t / half, m = mg / ng, h0 = (mg - m * ng) * kHeadsPerThread;
        int64_t h1 = h0 + kHeadsPerThread < nh ? h0 + kHeadsPerThread : nh;
        int64_t pos = positions ? positions[m] : pos0 + m;
        float phi = __fmul_rn((float)pos, freqs[i]);
        float c = (float)cos((double)phi), s = (float)sin((double)phi);
        if (inverse)
            s = -s;
        for (int64_t h = h0; h < h1; h++) {
            float *p = x + (m * nh + h) * hd + hd - 2 * half + 2 * i;
            float a = p[0], b = p[1];
            p[0] = round_bf16(__fadd_rn(__fmul_rn(a, c), -__fmul_rn(b, s)));
            p[1] = round_bf16(__fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c)));
        }
    }
}

// ---- sims and Hadamard ------------------------------------------------------------

// One warp per quantisation block (rows * nb of them), codec.c's block_scale
// and fp8_sim / fp4_sim.  The amax skips NaNs as the CPU's `a > amax`.
template <bool FP4>
__global__ void sim_k(float *x, int64_t n, int64_t bl, int64_t nb, int64_t total)
{
    const int lane = threadIdx.x & 31;
    const int64_t wstep = (int64_t)gridDim.x * (blockDim.x >> 5);
    for (int64_t q = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; q < total; q += wstep) {
        int64_t r = q / nb, b = q - r * nb, len = n - b * bl < bl ? n - b * bl : bl;
        float *p = x + r * n + b * bl;
        float amax = 0.0f;
        for (int64_t i = lane; i < len; i += 32) {
            float a = fabsf(p[i]);
            amax = a > amax ? a : amax;
        }
        amax = warp_max(amax);
        float s = FP4 ? fp4_scale(amax) : fp8_scale(amax);
        for (int64_t i = lane; i < len; i += 32) {
            float v = FP4 ? e2m1_f32(f32_e2m1(p[i] / s)) : e4m3_f32(f32_e4m3(p[i] / s));
            p[i] = round_bf16(__fmul_rn(v, s));
        }
    }
}

// One block per row of n (power of two) in dynamic shared memory: codec.c's
// butterflies, strides 1, 2, 4, ..., one f32 add or subtract each.
__global__ void hadamard_k(float *x, int n, float scale, int round_sums)
{
    DSV4_DYN_SMEM(float, sm);
    float *xr = x + (int64_t)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        sm[i] = xr[i];
    __syncthreads();
    for (int h = 1; h < n; h *= 2) {
        for (int t = threadIdx.x; t < n / 2; t += blockDim.x) {
            int j = (t / h) * 2 * h + t % h;
            float a = sm[j], b = sm[j + h];
            sm[j] = __fadd_rn(a, b);
            sm[j + h] = __fadd_rn(a, -b);
        }
        __syncthreads();
    }
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        xr[i] = round_bf16(__fmul_rn(round_sums ? round_bf16(sm[i]) : sm[i], scale));
}

// ---- KV vectors and indexer keys ------------------------------------------------------

__device__ __forceinline__ void put_bf16(float *v, uint8_t *o)
{
    uint32_t h = bf16_bits(*v);
    *v = bf16_f32(h);
    o[0] = (uint8_t)h;
    o[1] = (uint8_t)(h >> 8);
}

__device__ __forceinline__ uint8_t pow2_byte(float s)
{
    return (uint8_t)(__float_as_uint(s) >> 23);
}

// One block per row: dsv4_kv_pack.  Compact: a warp per 64-dim FP8 block of
// the non-rope dims, then the rope dims as bf16, then zero padding.
__global__ void kv_pack_k(float *x, kv_layout L, uint8_t *out, int64_t stride)
{
    const int64_t row = blockIdx.x;
    float *v = x + row * L.hd;
    uint8_t *o = out + row * stride;
    if (!L.compact) {
        for (int i = threadIdx.x; i < L.hd; i += blockDim.x)
            put_bf16(v + i, o + 2 * i);
        return;
    }
    const int rd = L.rd, nd = L.hd - rd, nb = (nd + 63) / 64;
    const int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    uint8_t *codes = o + 2 * rd, *sb = codes + nd;
    for (int b = threadIdx.x >> 5; b < nb; b += nw) {
        int i0 = b * 64, len = nd - i0 < 64 ? nd - i0 : 64;
        float amax = 0.0f;
        for (int i = lane; i < len; i += 32) {
            float a = fabsf(v[i0 + i]);
            amax = a > amax ? a : amax;
        }
        float s = fp8_scale(warp_max(amax));
        for (int i = lane; i < len; i += 32) {
            uint32_t c = f32_e4m3(v[i0 + i] / s);
            codes[i0 + i] = (uint8_t)c;
            v[i0 + i] = __fmul_rn(e4m3_f32(c), s);   // exact: 4 significant bits
        }
        if (lane == 0)
            sb[b] = pow2_byte(s);
    }
    for (int i = threadIdx.x; i < rd; i += blockDim.x)
        put_bf16(v + nd + i, o + 2 * i);
    for (int i = 2 * rd + nd + nb + threadIdx.x; i < L.entry_bytes; i += blockDim.x)
        o[i] = 0;
}

// One block per row: dsv4_ikey_pack.  Compact: a warp per 32-dim FP4 block;
// the even lane packs its code with its odd neighbour's (high nibble).
__global__ void ikey_pack_k(float *x, kv_layout L, uint8_t *out, int64_t stride)
{
    const int64_t row = blockIdx.x;
    const int n = L.ihd;
    float *v = x + row * n;
    uint8_t *o = out + row * stride;
    if (!L.compact) {
        for (int i = threadIdx.x; i < n; i += blockDim.x)
            put_bf16(v + i, o + 2 * i);
        return;
    }
    const int lane = threadIdx.x & 31, nw = blockDim.x >> 5, nblk = (n + 31) / 32;
    uint8_t *sb = o + n / 2;
    for (int b = threadIdx.x >> 5; b < nblk; b += nw) {   // warp-uniform
        int i = b * 32 + lane;
        bool ok = i < n;
        float xv = ok ? v[i] : 0.0f;
        float a = fabsf(xv), amax = a > 0.0f ? a : 0.0f;   // NaN -> 0, as `a > amax`
        float sc = fp4_scale(warp_max(amax));
        uint32_t c = f32_e2m1(xv / sc);
        uint32_t hi = __shfl_down_sync(0xffffffffu, c, 1);
        if (ok) {
            v[i] = __fmul_rn(e2m1_f32(c), sc);
            if (!(i & 1))
                o[i / 2] = (uint8_t)(c | (i + 1 < n ? hi << 4 : 0u));
        }
        if (lane == 0)
            sb[b] = pow2_byte(sc);
    }
}

__global__ void kv_unpack_k(const uint8_t *in, int64_t stride, int64_t rows, kv_layout L, float *x, int ikey)
{
    const int64_t d = ikey ? L.ihd : L.hd, total = rows * d, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
        int64_t r = t / d;
        int i = (int)(t - r * d);
        const uint8_t *e = in + r * stride;
        x[t] = ikey ? ikey_elem(L, e, i) : kv_elem(L, e, i);
    }
}

// ---- embedding and element-wise glue ---------------------------------------------------

__global__ void embed_k(const uint32_t *__restrict__ tokens, int64_t M, const void *weight, int f32, int64_t vocab,
                        int64_t D, int64_t copies, float *out, int32_t *badflag)
{
    const int64_t total = M * D, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
        int64_t m = t / D, i = t - m * D;
        uint32_t tok = tokens[m];
        float v;
        if (tok >= (uint64_t)vocab) {
            v = __uint_as_float(0x7fc00000u);
            if (badflag)
                *badflag = 1;
        } else if (f32) {
            v = static_cast<const float *>(weight)[(int64_t)tok * D + i];
        } else {
            v = bf16_f32(static_cast<const uint16_t *>(weight)[(int64_t)tok * D + i]);
        }
        for (int64_t c = 0; c < copies; c++)
            out[(m * copies + c) * D + i] = v;
    }
}

// op 0: round; 1: scale and round
__global__ void round_k(float *x, int64_t n, float scale, int op)
{
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < n; t += step)
        x[t] = round_bf16(op ? __fmul_rn(x[t], scale) : x[t]);
}

__global__ void add_rows_k(float *g, int64_t M, int64_t n, const float *__restrict__ a, int64_t r, int64_t pos0)
{
    const int64_t total = M * n, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
        int64_t m = t / n, i = t - m * n;
        g[t] = __fadd_rn(g[t], a[((pos0 + m) % r) * n + i]);
    }
}

__global__ void add_bcast_k(float *X, const float *__restrict__ y, int64_t M, int64_t copies, int64_t n)
{
    const int64_t total = M * copies * n, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
        int64_t m = t / (copies * n), i = t % n;
        X[t] = round_bf16(__fadd_rn(y[m * n + i], X[t]));
    }
}

// ---- argument checks ----------------------------------------------------------------

int check_rows(const char *op, int64_t rows, int64_t n, dsv4_err *err)
{
    if (rows < 0 || rows > INT32_MAX)
        return bad(err, op, "row count", rows);
    if (n < 1 || n > INT32_MAX)
        return bad(err, op, "row length", n);
    return 0;
}

int check_layout(const char *op, const dsv4_cu_kv_layout *L, int ikey, kv_layout *out, dsv4_err *err)
{
    if (!L)
        return null_ptr(err, op, "layout");
    if (L->compact != 0 && L->compact != 1)
        return bad(err, op, "layout compact flag", L->compact);
    if (L->head_dim < 1)
        return bad(err, op, "head_dim", L->head_dim);
    if (L->rope_dim < 0 || L->rope_dim > L->head_dim)
        return bad(err, op, "rope_dim", L->rope_dim);
    if (L->index_head_dim < 2 || L->index_head_dim & 1)
        return bad(err, op, "index_head_dim (must be even)", L->index_head_dim);
    int64_t nd = L->head_dim - L->rope_dim;
    int64_t need = L->compact ? 2 * L->rope_dim + nd + (nd + 63) / 64 : 2 * (int64_t)L->head_dim;
    int64_t ineed = L->compact ? L->index_head_dim / 2 + (L->index_head_dim + 31) / 32 : 2 * (int64_t)L->index_head_dim;
    if (L->entry_bytes < need)
        return bad(err, op, "entry_bytes (too small for the layout)", L->entry_bytes);
    if (ikey && L->ikey_bytes < ineed)
        return bad(err, op, "ikey_bytes (too small for the layout)", L->ikey_bytes);
    *out = kv_layout{ L->compact, L->head_dim, L->rope_dim, L->index_head_dim, L->entry_bytes, L->ikey_bytes };
    return 0;
}

int pack(const char *op, float *x, int64_t rows, const dsv4_cu_kv_layout *L, uint8_t *out, int64_t stride, int ikey,
         cudaStream_t st, dsv4_err *err)
{
    kv_layout K;
    int rc = check_layout(op, L, ikey, &K, err);
    if (rc)
        return rc;
    if (rows < 0 || rows > INT32_MAX)
        return bad(err, op, "row count", rows);
    if (stride < (ikey ? K.ikey_bytes : K.entry_bytes))
        return bad(err, op, "output stride (below the entry size)", stride);
    if (!rows)
        return 0;
    if (!x || !out)
        return null_ptr(err, op, !x ? "x" : "output");
    if (ikey) {
        DSV4_LAUNCH(ikey_pack_k, (unsigned)rows, 128, 0, st, x, K, out, stride);
    } else {
        DSV4_LAUNCH(kv_pack_k, (unsigned)rows, kThreads, 0, st, x, K, out, stride);
    }
    return DSV4_CU_LAUNCHED(ikey ? "ikey_pack_k" : "kv_pack_k", st, err);
}

int unpack(const char *op, const uint8_t *in, int64_t stride, int64_t rows, const dsv4_cu_kv_layout *L, float *x,
           int ikey, cudaStream_t st, dsv4_err *err)
{
    kv_layout K;
    int rc = check_layout(op, L, ikey, &K, err);
    if (rc)
        return rc;
    if (rows < 0)
        return bad(err, op, "row count", rows);
    if (stride < (ikey ? K.ikey_bytes : K.entry_bytes))
        return bad(err, op, "input stride (below the entry size)", stride);
    if (!rows)
        return 0;
    if (!x || !in)
        return null_ptr(err, op, !x ? "x" : "input");
    DSV4_LAUNCH(kv_unpack_k, grid_for(rows * (ikey ? K.ihd : K.hd)), kThreads, 0, st, in, stride, rows, K, x, ikey);
    return DSV4_CU_LAUNCHED("kv_unpack_k", st, err);
}

template <bool FP4>
int sim(const char *op, float *x, int64_t rows, int64_t n, int block, cudaStream_t st, dsv4_err *err)
{
    int rc = check_rows(op, rows, n, err);
    if (rc || !rows)
        return rc;
    if (!x)
        return null_ptr(err, op, "x");
    int64_t bl = block > 0 ? block : n, nb = (n + bl - 1) / bl, total = rows * nb;
    auto k = sim_k<FP4>;
    DSV4_LAUNCH(k, grid_for(total * 32), kThreads, 0, st, x, n, bl, nb, total);
    return DSV4_CU_LAUNCHED(op, st, err);
}

int norm(const char *op, const float *x, const float *w, int64_t rows, int64_t n, float eps, float *y, float *out,
         int mode, cudaStream_t st, dsv4_err *err)
{
    int rc = check_rows(op, rows, n, err);
    if (rc)
        return rc;
    if (n > DSV4_CU_NORM_MAX_N)
        return bad(err, op, "row length (above DSV4_CU_NORM_MAX_N)", n);
    if (!rows)
        return 0;
    if (!x || (mode == 0 && (!w || !y)) || (mode == 1 && !out))
        return null_ptr(err, op, !x ? "x" : mode == 1 ? "output" : !w ? "weight" : "y");
    size_t smem = (size_t)sumsq_scratch_floats(n) * sizeof(float);
    if (smem > 48 * 1024)   // DSV4_CU_NORM_MAX_N keeps it below the default limit
        return dsv4_err_set(err, DSV4_E_BUG, "%s: %zu bytes of shared memory for n = %lld", op, smem, (long long)n);
    DSV4_LAUNCH(rmsnorm_k, (unsigned)rows, kThreads, smem, st, x, w, n, eps, y, out, mode);
    return DSV4_CU_LAUNCHED(mode ? "rmsnorm_k (mean_sq)" : "rmsnorm_k", st, err);
}

int elementwise_n(const char *op, const void *x, int64_t n, dsv4_err *err)
{
    if (n < 0)
        return bad(err, op, "element count", n);
    if (n && !x)
        return null_ptr(err, op, "x");
    return 0;
}

} // namespace

extern "C" int dsv4_cu_rmsnorm(const float *x, const float *w, int64_t rows, int64_t n, float eps, float *y,
                               dsv4_stream s, dsv4_err *err)
{
    return norm("dsv4_cu_rmsnorm", x, w, rows, n, eps, y, NULL, 0, s, err);
}

extern "C" int dsv4_cu_mean_sq(const float *x, int64_t rows, int64_t n, float *out, dsv4_stream s, dsv4_err *err)
{
    return norm("dsv4_cu_mean_sq", x, NULL, rows, n, 0.0f, NULL, out, 1, s, err);
}

extern "C" int dsv4_cu_head_rms_bf16(float *q, int64_t rows, int64_t n, float eps, dsv4_stream s, dsv4_err *err)
{
    const char *op = "dsv4_cu_head_rms_bf16";
    int rc = check_rows(op, rows, n, err);
    if (rc || !rows)
        return rc;
    if (!q)
        return null_ptr(err, op, "q");
    DSV4_LAUNCH(head_rms_k, (unsigned)rows, 128, 0, s, q, n, eps);
    return DSV4_CU_LAUNCHED("head_rms_k", s, err);
}

extern "C" int dsv4_cu_rope(float *x, int64_t M, int64_t nh, int64_t hd, int64_t rd, const float *freqs, int64_t pos0,
                            const int64_t *positions, int inverse, dsv4_stream s, dsv4_err *err)
{
    const char *op = "dsv4_cu_rope";
    if (M < 0)
        return bad(err, op, "token count", M);
    if (nh < 1)
        return bad(err, op, "vector count per token", nh);
    if (hd < 1)
        return bad(err, op, "vector length", hd);
    if (rd < 0 || rd > hd || rd & 1)
        return bad(err, op, "rope_dim (must be even and <= the vector length)", rd);
    if (!positions && (pos0 < 0 || pos0 > INT64_MAX - M))
        return bad(err, op, "pos0", pos0);
    if (!M || !rd)
        return 0;
    if (!x || !freqs)
        return null_ptr(err, op, !x ? "x" : "freqs");
    int64_t half = rd / 2, ng = (nh + kHeadsPerThread - 1) / kHeadsPerThread;
    DSV4_LAUNCH(rope_k, grid_for(M * ng * half), kThreads, 0, s, x, M, nh, hd, half, freqs, pos0, positions,
                inverse ? 1 : 0);
    return DSV4_CU_LAUNCHED("rope_k", s, err);
}

extern "C" int dsv4_cu_fp8_sim(float *x, int64_t rows, int64_t n, int block, dsv4_stream s, dsv4_err *err)
{
    return sim<false>("dsv4_cu_fp8_sim", x, rows, n, block, s, err);
}

extern "C" int dsv4_cu_fp4_sim(float *x, int64_t rows, int64_t n, int block, dsv4_stream s, dsv4_err *err)
{
    return sim<true>("dsv4_cu_fp4_sim", x, rows, n, block, s, err);
}

extern "C" int dsv4_cu_hadamard(float *x, int64_t rows, int n, int round_sums, dsv4_stream s, dsv4_err *err)
{
    const char *op = "dsv4_cu_hadamard";
    int rc = check_rows(op, rows, n, err);
    if (rc)
        return rc;
    if (n > 8192 || (n & (n - 1)))
        return bad(err, op, "length (must be a power of two <= 8192)", n);
    if (!rows)
        return 0;
    if (!x)
        return null_ptr(err, op, "x");
    float scale = (float)pow((double)n, -0.5);   // as codec.c: Python's n ** -0.5
    int threads = n / 2 < 32 ? 32 : n / 2 > kThreads ? kThreads : n / 2;
    DSV4_LAUNCH(hadamard_k, (unsigned)rows, threads, (size_t)n * sizeof(float), s, x, n, scale, round_sums ? 1 : 0);
    return DSV4_CU_LAUNCHED("hadamard_k", s, err);
}

extern "C" int dsv4_cu_kv_pack(float *x, int64_t rows, const dsv4_cu_kv_layout *L, uint8_t *out, int64_t out_stride,
                               dsv4_stream s, dsv4_err *err)
{
    return pack("dsv4_cu_kv_pack", x, rows, L, out, out_stride, 0, s, err);
}

extern "C" int dsv4_cu_ikey_pack(float *x, int64_t rows, const dsv4_cu_kv_layout *L, uint8_t *out,
                                 int64_t out_stride, dsv4_stream s, dsv4_err *err)
{
    return pack("dsv4_cu_ikey_pack", x, rows, L, out, out_stride, 1, s, err);
}

extern "C" int dsv4_cu_kv_unpack(const uint8_t *in, int64_t in_stride, int64_t rows, const dsv4_cu_kv_layout *L,
                                 float *x, dsv4_stream s, dsv4_err *err)
{
    return unpack("dsv4_cu_kv_unpack", in, in_stride, rows, L, x, 0, s, err);
}

extern "C" int dsv4_cu_ikey_unpack(const uint8_t *in, int64_t in_stride, int64_t rows, const dsv4_cu_kv_layout *L,
                                   float *x, dsv4_stream s, dsv4_err *err)
{
    return unpack("dsv4_cu_ikey_unpack", in, in_stride, rows, L, x, 1, s, err);
}

extern "C" int dsv4_cu_embed(const uint32_t *tokens, int64_t M, const void *weight, int wtype, int64_t vocab,
                             int64_t D, int64_t copies, float *out, int32_t *badflag, dsv4_stream s, dsv4_err *err)
{
    const char *op = "dsv4_cu_embed";
    if (wtype != DSV4_CU_EMBED_BF16 && wtype != DSV4_CU_EMBED_F32)
        return bad(err, op, "weight type", wtype);
    if (M < 0)
        return bad(err, op, "token count", M);
    if (vocab < 1)
        return bad(err, op, "vocab size", vocab);
    if (D < 1)
        return bad(err, op, "embedding width", D);
    if (copies < 1)
        return bad(err, op, "copy count", copies);
    if (!M)
        return 0;
    if (!tokens || !weight || !out)
        return null_ptr(err, op, !tokens ? "tokens" : !weight ? "weight" : "output");
    if ((uintptr_t)weight & (wtype == DSV4_CU_EMBED_F32 ? 3 : 1))
        return dsv4_err_set(err, DSV4_E_INVALID, "%s: weight pointer is not aligned to its element", op);
    DSV4_LAUNCH(embed_k, grid_for(M * D), kThreads, 0, s, tokens, M, weight, wtype == DSV4_CU_EMBED_F32 ? 1 : 0,
                vocab, D, copies, out, badflag);
    return DSV4_CU_LAUNCHED("embed_k", s, err);
}

extern "C" int dsv4_cu_round_bf16(float *x, int64_t n, dsv4_stream s, dsv4_err *err)
{
    int rc = elementwise_n("dsv4_cu_round_bf16", x, n, err);
    if (rc || !n)
        return rc;
    DSV4_LAUNCH(round_k, grid_for(n), kThreads, 0, s, x, n, 1.0f, 0);
    return DSV4_CU_LAUNCHED("round_k", s, err);
}

extern "C" int dsv4_cu_scale_round_bf16(float *x, int64_t n, float scale, dsv4_stream s, dsv4_err *err)
{
    int rc = elementwise_n("dsv4_cu_scale_round_bf16", x, n, err);
    if (rc || !n)
        return rc;
    DSV4_LAUNCH(round_k, grid_for(n), kThreads, 0, s, x, n, scale, 1);
    return DSV4_CU_LAUNCHED("round_k", s, err);
}

extern "C" int dsv4_cu_add_rows(float *g, int64_t M, int64_t n, const float *a, int64_t r, int64_t pos0,
                                dsv4_stream s, dsv4_err *err)
{
    const char *op = "dsv4_cu_add_rows";
    if (M < 0)
        return bad(err, op, "row count", M);
    if (n < 0)
        return bad(err, op, "row length", n);
    if (r < 1)
        return bad(err, op, "ratio", r);
    if (pos0 < 0)
        return bad(err, op, "pos0", pos0);
    if (!M || !n)
        return 0;
    if (!g || !a)
        return null_ptr(err, op, !g ? "g" : "a");
    DSV4_LAUNCH(add_rows_k, grid_for(M * n), kThreads, 0, s, g, M, n, a, r, pos0);
    return DSV4_CU_LAUNCHED("add_rows_k", s, err);
}

extern "C" int dsv4_cu_add_bcast_bf16(float *X, const float *y, int64_t M, int64_t copies, int64_t n, dsv4_stream s,
                                      dsv4_err *err)
{
    const char *op = "dsv4_cu_add_bcast_bf16";
    if (M < 0)
        return bad(err, op, "row count", M);
    if (copies < 1)
        return bad(err, op, "copy count", copies);
    if (n < 0)
        return bad(err, op, "row length", n);
    if (!M || !n)
        return 0;
    if (!X || !y)
        return null_ptr(err, op, !X ? "X" : "y");
    DSV4_LAUNCH(add_bcast_k, grid_for(M * copies * n), kThreads, 0, s, X, y, M, copies, n);
    return DSV4_CU_LAUNCHED("add_bcast_k", s, err);
}
