// compress — the CSA / HCA / indexer compressors on the GPU (spec/ARCH.md
// §5.3, §9); API and tolerance in lib/gpu_comp.h, CPU reference
// dsv4_comp_tokens in lib/attn.c.
//
// The CPU pushes tokens one by one into the state rows and pools a block
// when its last token arrives.  Here the chunk is processed all at once:
//  1. comp_entries: one block per entry j completed by the chunk.  The
//     slots it pools are read where the sequential CPU would have them at
//     that moment: a token >= pos0 from the chunk's k, g (+ ape), an
//     earlier one of the partial block from the state's current-block rows,
//     one of the block before (CSA) from the state's previous-block rows
//     (which hold kv = 0, g = -inf before entry 0).  Pool (per channel, f32
//     exp, double sums in slot order as the CPU), then bf16, RMSNorm (the
//     CPU's summation order, one thread), RoPE at j*r, the indexer's
//     Hadamard (butterflies in shared memory, same f32 sums), and pack.
//  2. comp_state: the state rows as the CPU leaves them after the chunk:
//     each current-block row takes the last chunk token of its slot; for
//     CSA the previous-block rows take the last completed block's tokens
//     (read from the old current-block rows first when they precede pos0).
// Chunk invariance follows: the entries read exactly the values the CPU
// reads, and the state is the CPU's final state.
//
// Bounds: comp_entries reads c*r*d (k, g) floats per entry (twice for the
// pooling's two passes, from L1/L2), ~3 expf per slot and channel; the
// serial RMSNorm sum (d adds) and the per-channel slot loops are latency
// bound.  Decode completes at most one entry per layer per token, so this
// is noise next to the GEMMs; prefill runs one block per entry.  Faster: a
// warp-parallel version of the RMSNorm order, keeping the exp values in
// shared memory instead of recomputing them.
#include "comp.cuh"
#include "kvcodec.cuh"

#include "gpu_comp.h"

namespace {

using namespace dsv4k;

constexpr int kThreads = 256;

struct CompP {
    int64_t r, c, d, cd, rd, M, pos0;
    float eps, hscale;        // hscale: f32(d^-0.5) computed on the host as the CPU does
    int ikey, hadamard_2r;    // the Hadamard variant: bf16 state rounds the sums
    const float *k, *g, *ape, *norm, *freqs;
    float *kv, *sc;
    uint8_t *out;
    int64_t bytes;
    kv_layout L;
};

// k and g (ape included) of the token in slot s of block jb, column col, as
// the sequential CPU would have them when it pools a block of this chunk.
__device__ __forceinline__ void slot_val(const CompP &p, int64_t jb, int64_t s, int64_t col, float &kk,
                                         float &gg)
{
    int64_t t = jb * p.r + s, b = p.pos0 / p.r;
    if (t >= p.pos0) {
        int64_t i = (t - p.pos0) * p.cd + col;
        kk = p.k[i];
        gg = p.g[i] + p.ape[s * p.cd + col];
        return;
    }
    int64_t row = jb == b ? (p.c == 2 ? p.r : 0) + s : s;   // else jb == b - 1 (CSA only)
    kk = p.kv[row * p.cd + col];
    gg = p.sc[row * p.cd + col];
}

// Slot i of entry j's pool: CSA slots 0..r-1 are block j-1's A halves,
// r..2r-1 block j's B halves; HCA slot i is block j's token i.
__device__ __forceinline__ void pool_slot(const CompP &p, int64_t j, int64_t i, int64_t ch, float &kk, float &gg)
{
    if (p.c == 2) {
        if (i < p.r)
            slot_val(p, j - 1, i, ch, kk, gg);
        else
            slot_val(p, j, i - p.r, p.d + ch, kk, gg);
    } else {
        slot_val(p, j, i, ch, kk, gg);
    }
}

__global__ void __launch_bounds__(kThreads) comp_entries(CompP p)
{
    DSV4_DYN_SMEM(float, x);          // [d] the entry, then [d/32 + 2] scale scratch
    __shared__ float rinv;
    float *scr = x + p.d;
    int tid = threadIdx.x, nt = blockDim.x;
    int64_t j = p.pos0 / p.r + blockIdx.x, d = p.d;
    int64_t nslot = p.c == 2 ? 2 * p.r : p.r;

    // pool (comp_pool) and round to bf16 (entry_finish)
    for (int64_t ch = tid; ch < d; ch += nt) {
        float kk, gg, mx = -INFINITY;
        for (int64_t i = 0; i < nslot; i++) {
            pool_slot(p, j, i, ch, kk, gg);
            mx = gg > mx ? gg : mx;
        }
        double sum = 0.0;
        for (int64_t i = 0; i < nslot; i++) {
            pool_slot(p, j, i, ch, kk, gg);
            sum = dadd_rn(sum, (double)expf(gg - mx));
        }
        float fs = (float)sum;
        double acc = 0.0;
        for (int64_t i = 0; i < nslot; i++) {
            pool_slot(p, j, i, ch, kk, gg);
            acc = dadd_rn(acc, dmul_rn((double)(expf(gg - mx) / fs), (double)kk));
        }
        x[ch] = round_bf16((float)acc);
    }
    __syncthreads();
    // RMSNorm (dsv4_rmsnorm): 1 / sqrt(sum / n + eps), then w * (x * r)
    if (tid == 0)
        rinv = 1.0f / sqrtf(sum_sq_cpu(x, d) / (float)d + p.eps);
    __syncthreads();
    for (int64_t i = tid; i < d; i += nt)
        x[i] = round_bf16(mul_rn(p.norm[i], mul_rn(x[i], rinv)));
    __syncthreads();
    // RoPE of the last rd dims at the block start (dsv4_rope, not inverse)
    float *xr = x + d - p.rd;
    float pos = (float)(j * p.r);
    for (int64_t i = tid; i < p.rd / 2; i += nt) {
        float phi = mul_rn(pos, p.freqs[i]);
        float c = cosf(phi), s = sinf(phi);
        float a = xr[2 * i], b = xr[2 * i + 1];
        xr[2 * i] = round_bf16(sub_rn(mul_rn(a, c), mul_rn(b, s)));
        xr[2 * i + 1] = round_bf16(add_rn(mul_rn(a, s), mul_rn(b, c)));
    }
    __syncthreads();
    uint8_t *out = p.out + (size_t)j * (size_t)p.bytes;
    if (!p.ikey) {
        kv_pack_block(p.L, x, scr, out);
        return;
    }
    // the indexer's Hadamard (codec.c hadamard): strides 1, 2, 4, ...; n a power of two
    if (d > 0 && !(d & (d - 1))) {
        for (int64_t h = 1; h < d; h *= 2) {
            for (int64_t q = tid; q < d / 2; q += nt) {
                int64_t i = (q / h) * 2 * h + q % h;
                float a = x[i], b = x[i + h];
                x[i] = a + b;
                x[i + h] = a - b;
            }
            __syncthreads();
        }
        for (int64_t i = tid; i < d; i += nt)
            x[i] = round_bf16(mul_rn(p.hadamard_2r ? round_bf16(x[i]) : x[i], p.hscale));
        __syncthreads();
    }
    ikey_pack_block(p.L, x, scr, out);
}

// One thread per (slot s, column col) of the current-block rows; for CSA the
// same thread also writes the previous-block row s, so that it reads the
// old row r + s before anyone overwrites it.
__global__ void __launch_bounds__(kThreads) comp_state(CompP p)
{
    int64_t n = p.r * p.cd;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t s = e / p.cd, col = e % p.cd, last = p.pos0 + p.M - 1;
        int64_t cur = (p.c == 2 ? p.r : 0) + s;
        float pk = 0.0f, pg = 0.0f;
        int64_t jl = (p.pos0 + p.M) / p.r - 1;            // last completed block
        int prev = p.c == 2 && jl >= p.pos0 / p.r;       // the chunk completed one
        if (prev)
            slot_val(p, jl, s, col, pk, pg);
        int64_t tl = last - ((last - s) % p.r + p.r) % p.r;   // last chunk token of slot s
        if (tl >= p.pos0) {
            int64_t i = (tl - p.pos0) * p.cd + col;
            p.kv[cur * p.cd + col] = p.k[i];
            p.sc[cur * p.cd + col] = p.g[i] + p.ape[s * p.cd + col];
        }
        if (prev) {
            p.kv[s * p.cd + col] = pk;
            p.sc[s * p.cd + col] = pg;
        }
    }
}

} // namespace

extern "C" size_t dsv4_cu_comp_bytes(int compact, int ikey, int64_t d, int64_t rope_dim)
{
    int64_t nd = d - rope_dim;
    if (ikey)
        return (size_t)(compact ? d / 2 + (d + 31) / 32 : 2 * d);
    return (size_t)(compact ? (2 * rope_dim + nd + (nd + 63) / 64 + 7) / 8 * 8 : 2 * d);
}

extern "C" int dsv4_cu_compress(dsv4_cu_comp_args *a, dsv4_stream s, dsv4_err *err)
{
    if (!a)
        return dsv4_err_set(err, DSV4_E_INVALID, "compress: no arguments");
    if (a->ratio != 4 && a->ratio != 128)
        return dsv4_err_set(err, DSV4_E_INVALID, "compress: ratio %d is not 4 or 128", a->ratio);
    if (a->ikey && a->ratio != 4)
        return dsv4_err_set(err, DSV4_E_INVALID, "compress: the indexer's compressor has ratio 4, not %d",
                            a->ratio);
    if (a->d < 2 || a->d > 4096 || (a->ikey && a->d % 2))
        return dsv4_err_set(err, DSV4_E_INVALID, "compress: entry dims %lld", (long long)a->d);
    if (a->rope_dim < 0 || a->rope_dim > a->d || a->rope_dim % 2)
        return dsv4_err_set(err, DSV4_E_INVALID, "compress: rope_dim %lld", (long long)a->rope_dim);
    if (a->M < 0 || a->pos0 < 0)
        return dsv4_err_set(err, DSV4_E_INVALID, "compress: M %lld, pos0 %lld", (long long)a->M,
                            (long long)a->pos0);
    if (a->M > 0 && (!a->k || !a->g || !a->ape || !a->norm || !a->kv || !a->sc || !a->out ||
                     (a->rope_dim && !a->freqs)))
        return dsv4_err_set(err, DSV4_E_INVALID, "compress: null pointer");
    int64_t r = a->ratio, c = r == 4 ? 2 : 1;
    int64_t n_new = (a->pos0 + a->M) / r - a->pos0 / r;
    a->n_ent_after = (a->pos0 + a->M) / r;
    if (a->M == 0)
        return 0;
    CompP p;
    p.r = r;
    p.c = c;
    p.d = a->d;
    p.cd = c * a->d;
    p.rd = a->rope_dim;
    p.M = a->M;
    p.pos0 = a->pos0;
    p.eps = a->eps;
    p.hscale = (float)pow((double)a->d, -0.5);
    p.ikey = a->ikey;
    p.hadamard_2r = !a->compact;
    p.k = a->k;
    p.g = a->g;
    p.ape = a->ape;
    p.norm = a->norm;
    p.freqs = a->freqs;
    p.kv = a->kv;
    p.sc = a->sc;
    p.out = a->out;
    p.bytes = (int64_t)dsv4_cu_comp_bytes(a->compact, a->ikey, a->d, a->rope_dim);
    p.L.compact = a->compact;
    p.L.hd = (int)a->d;
    p.L.rd = (int)a->rope_dim;
    p.L.ihd = (int)a->d;
    p.L.entry_bytes = (int)p.bytes;
    p.L.ikey_bytes = (int)p.bytes;
    cudaStream_t st = (cudaStream_t)s;
    if (n_new > 0) {
        size_t smem = (size_t)(a->d + a->d / 32 + 2) * sizeof(float);
        if (smem > 48 * 1024)
            DSV4_CU_TRY(cudaFuncSetAttribute(comp_entries, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                        err);
        DSV4_LAUNCH(comp_entries, (unsigned)n_new, kThreads, smem, st, p);
        if (int rc = DSV4_CU_LAUNCHED("comp_entries", st, err))
            return rc;
    }
    int64_t n = r * p.cd, blocks = (n + kThreads - 1) / kThreads;
    DSV4_LAUNCH(comp_state, (unsigned)(blocks < 4096 ? blocks : 4096), kThreads, 0, st, p);
    return DSV4_CU_LAUNCHED("comp_state", st, err);
}
