// indexer — the lightning indexer's scores and top-k on the GPU
// (spec/ARCH.md §5.4); API and tolerance in lib/gpu_comp.h, CPU reference
// dsv4_index_rows (idx_rows) in lib/attn.c.
//
// idx_scores: grid (key tiles, M rows), 8 warps per block.  The row's
// queries [nih][ihd] (padded rows: conflict-free) and weights sit in shared
// memory; each warp decodes one key into shared memory, lane h computes
// head h's dot product with the CPU's four double partial sums (the f32
// products are exact in double, so FMAs round like the CPU's mul + add), then
// lane 0 adds the bf16 head terms in head order in f32, as the CPU.
//
// idx_topk: one block per row (1024 threads for rows longer than 8192).
// Keys are (score, index) pairs ordered by score then lower index; an
// MSB-first radix select over the 32-bit order-preserving image of the
// score finds the k-th best score T (4 passes over the row's scores,
// histograms in shared memory); all scores > T are taken, then the
// lowest-index scores == T by an ordered block scan; a bitonic sort of the
// (<= topk) candidates on the 64-bit key (score image << 32 | ~index) gives
// the CPU's order, ties included.
//
// Bounds: scores read n_ent keys per row (ikey_bytes each, from L2 across
// rows) and do nih*ihd FP64 FMAs per key and row: FP64-bound in prefill
// (H100/H200: ~34 TFLOP/s of non-tensor FP64), fine for decode.  Faster:
// many rows per block sharing each decoded key; in the compact layout both
// sides are e2m1 x 2^s per 32 dims, so per-block integer (IMMA) dot
// products summed exactly would give the same f32 result whenever the
// CPU's double sum is exact (scale spread < ~2^40); f32 or bf16 tensor-core
// dots give up bit-exactness.  The top-k reads the row's scores 5 times (4 radix
// passes + the gather) with one block per row: a decode row at n_ent = 2^18
// is ~5 MB of L2 reads on one SM; split rows across blocks to go faster.
#include "comp.cuh"
#include "kvcodec.cuh"

#include "gpu_comp.h"

namespace {

using namespace dsv4k;

constexpr int kWarps = 8, kThreads = kWarps * 32, kKeysPerBlock = 64;

struct IdxP {
    int64_t nih, ihd, M, pos0, topk, n_ent;
    const float *qi, *w;
    const uint8_t *ikeys;
    float *scores;
    int32_t *sel, *nsel;
    kv_layout L;
};

__global__ void __launch_bounds__(kThreads) idx_scores(IdxP p)
{
    DSV4_DYN_SMEM(float, q);                  // [nih][ihd + 1], w [nih], keys [kWarps][ihd], terms [kWarps][nih]
    int64_t m = blockIdx.y, t = p.pos0 + m, nvis = (t + 1) / 4;
    int64_t j0 = (int64_t)blockIdx.x * kKeysPerBlock;
    if (j0 >= nvis)
        return;                               // the whole block: no barrier reached
    int64_t nih = p.nih, ihd = p.ihd, qs = ihd + 1;
    float *w = q + nih * qs, *keys = w + nih, *terms = keys + kWarps * ihd;
    int tid = threadIdx.x, lane = tid & 31, wp = tid >> 5;
    for (int64_t i = tid; i < nih * ihd; i += kThreads)
        q[(i / ihd) * qs + i % ihd] = p.qi[m * nih * ihd + i];
    for (int64_t h = tid; h < nih; h += kThreads)
        w[h] = p.w[m * nih + h];
    __syncthreads();
    float *key = keys + wp * ihd, *term = terms + wp * nih;
    int64_t j1 = j0 + kKeysPerBlock < nvis ? j0 + kKeysPerBlock : nvis;
    for (int64_t j = j0 + wp; j < j1; j += kWarps) {
        const uint8_t *kb = p.ikeys + (size_t)j * (size_t)p.L.ikey_bytes;
        for (int64_t i = lane; i < ihd; i += 32)
            key[i] = ikey_elem(p.L, kb, (int)i);
        __syncwarp();
        for (int64_t h = lane; h < nih; h += 32) {
            const float *qh = q + h * qs;
            double s[4] = {0.0, 0.0, 0.0, 0.0};
            int64_t i = 0;
            // f32 x f32 is exact in double, so an FMA rounds like the CPU's
            // separate multiply and add (and costs one FP64 instruction)
            for (; i + 4 <= ihd; i += 4)
                for (int u = 0; u < 4; u++)
                    s[u] = fma((double)qh[i + u], (double)key[i + u], s[u]);
            for (; i < ihd; i++)
                s[0] = fma((double)qh[i], (double)key[i], s[0]);
            float dv = round_bf16((float)((s[0] + s[2]) + (s[1] + s[3])));
            dv = dv > 0.0f ? dv : 0.0f;
            term[h] = round_bf16(mul_rn(dv, w[h]));
        }
        __syncwarp();
        if (lane == 0) {
            float acc = 0.0f;
            for (int64_t h = 0; h < nih; h++)
                acc = add_rn(acc, term[h]);
            p.scores[m * p.n_ent + j] = round_bf16(acc);
        }
        __syncwarp();
    }
}

// Order-preserving image of a score (+0 and -0 equal, as the CPU compares).
__device__ __forceinline__ uint32_t ord(float f)
{
    uint32_t u = __float_as_uint(f == 0.0f ? 0.0f : f);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

__device__ __forceinline__ uint64_t sort_key(uint32_t o, int64_t j)
{
    return (uint64_t)o << 32 | (uint32_t)~(uint32_t)j;
}

template <int kTopThreads>
__global__ void __launch_bounds__(kTopThreads) idx_topk(IdxP p)
{
    DSV4_DYN_SMEM(uint64_t, buf);             // [pow2 >= topk] candidates
    __shared__ uint32_t hist[256];
    __shared__ uint32_t wsum[kTopThreads / 32];
    __shared__ uint32_t s_prefix, s_need, s_cnt, s_taken;
    int tid = threadIdx.x, lane = tid & 31, wp = tid >> 5;
    int64_t m = blockIdx.x, t = p.pos0 + m, nvis = (t + 1) / 4;
    int64_t k = nvis < p.topk ? nvis : p.topk;
    const float *sc = p.scores + m * p.n_ent;
    int32_t *sel = p.sel + m * p.topk;
    if (tid == 0)
        p.nsel[m] = (int32_t)k;
    for (int64_t i = k + tid; i < p.topk; i += kTopThreads)
        sel[i] = -1;
    if (k == 0)
        return;                               // uniform
    if (k == nvis) {
        for (int64_t j = tid; j < nvis; j += kTopThreads)
            buf[j] = sort_key(ord(sc[j]), j);
    } else {
        // radix select: T = the k-th largest image; need = how many == T to take
        uint32_t prefix = 0, mask = 0, need = (uint32_t)k;
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int b = tid; b < 256; b += kTopThreads)
                hist[b] = 0;
            __syncthreads();
            for (int64_t j = tid; j < nvis; j += kTopThreads) {
                uint32_t o = ord(sc[j]);
                if ((o & mask) == prefix)
                    atomicAdd(&hist[(o >> shift) & 255u], 1u);
            }
            __syncthreads();
            if (tid == 0) {
                uint32_t rem = need;
                int b = 255;
                for (; b > 0 && hist[b] < rem; b--)
                    rem -= hist[b];
                s_prefix = prefix | (uint32_t)b << shift;
                s_need = rem;
            }
            __syncthreads();
            prefix = s_prefix;
            need = s_need;
            mask |= 255u << shift;
            __syncthreads();                  // hist and s_* are rewritten next pass
        }
        const uint32_t T = prefix;
        uint32_t ngt = (uint32_t)k - need;    // scores > T, all taken
        if (tid == 0) {
            s_cnt = 0;
            s_taken = 0;
        }
        __syncthreads();
        for (int64_t j = tid; j < nvis; j += kTopThreads) {
            uint32_t o = ord(sc[j]);
            if (o > T)
                buf[atomicAdd(&s_cnt, 1u)] = sort_key(o, j);
        }
        // the `need` lowest indices with image T, by an ordered scan in tiles
        for (int64_t base = 0; base < nvis; base += kTopThreads) {
            int64_t j = base + tid;
            int f = j < nvis && ord(sc[j]) == T;
            unsigned bal = __ballot_sync(0xffffffffu, f);
            if (lane == 0)
                wsum[wp] = (uint32_t)__popc(bal);
            __syncthreads();
            uint32_t before = s_taken, tot = 0;
            for (int i = 0; i < kTopThreads / 32; i++) {
                if (i == wp)
                    before += tot;
                tot += wsum[i];
            }
            before += (uint32_t)__popc(bal & ((1u << lane) - 1u));
            if (f && before < need)
                buf[ngt + before] = sort_key(T, j);
            __syncthreads();
            if (tid == 0)
                s_taken += tot;
            __syncthreads();
            if (s_taken >= need)
                break;                        // uniform: all read the same value
        }
    }
    int Pk = 1;                               // this row's sort size (<= P)
    while (Pk < k)
        Pk <<= 1;
    for (int64_t i = k + tid; i < Pk; i += kTopThreads)
        buf[i] = 0;                           // below every real key
    __syncthreads();
    // bitonic sort, descending
    for (int size = 2; size <= Pk; size <<= 1)
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = tid; i < Pk; i += kTopThreads) {
                int o = i ^ stride;
                if (o > i) {
                    uint64_t a = buf[i], b = buf[o];
                    bool desc = (i & size) == 0;
                    if (desc ? a < b : a > b) {
                        buf[i] = b;
                        buf[o] = a;
                    }
                }
            }
            __syncthreads();
        }
    for (int64_t i = tid; i < k; i += kTopThreads)
        sel[i] = (int32_t)~(uint32_t)buf[i];
}

} // namespace

extern "C" int dsv4_cu_index_topk(const dsv4_cu_index_args *a, dsv4_stream s, dsv4_err *err)
{
    if (!a)
        return dsv4_err_set(err, DSV4_E_INVALID, "index_topk: no arguments");
    if (a->nih < 1 || a->nih > 1024 || a->ihd < 2 || a->ihd > 4096 || a->ihd % 2)
        return dsv4_err_set(err, DSV4_E_INVALID, "index_topk: %lld heads of %lld dims", (long long)a->nih,
                            (long long)a->ihd);
    if (a->topk < 1 || a->topk > 4096)
        return dsv4_err_set(err, DSV4_E_INVALID, "index_topk: topk %lld is not in 1..4096", (long long)a->topk);
    if (a->M < 0 || a->pos0 < 0 || a->M > 65535)
        return dsv4_err_set(err, DSV4_E_INVALID, "index_topk: M %lld, pos0 %lld", (long long)a->M,
                            (long long)a->pos0);
    if (a->n_ent < (a->pos0 + a->M) / 4 || a->n_ent > ((int64_t)1 << 31) - 1)
        return dsv4_err_set(err, DSV4_E_INVALID, "index_topk: %lld keys, the rows see up to %lld",
                            (long long)a->n_ent, (long long)((a->pos0 + a->M) / 4));
    if (a->M == 0)
        return 0;
    if (!a->qi || !a->w || !a->sel || !a->nsel || !a->scores || (a->n_ent && !a->ikeys))
        return dsv4_err_set(err, DSV4_E_INVALID, "index_topk: null pointer");
    IdxP p;
    p.nih = a->nih;
    p.ihd = a->ihd;
    p.M = a->M;
    p.pos0 = a->pos0;
    p.topk = a->topk;
    p.n_ent = a->n_ent;
    p.qi = a->qi;
    p.w = a->w;
    p.ikeys = a->ikeys;
    p.scores = a->scores;
    p.sel = a->sel;
    p.nsel = a->nsel;
    p.L.compact = a->compact;
    p.L.hd = 0;
    p.L.rd = 0;
    p.L.ihd = (int)a->ihd;
    p.L.entry_bytes = 0;
    p.L.ikey_bytes = (int)dsv4_cu_comp_bytes(a->compact, 1, a->ihd, 0);
    cudaStream_t st = (cudaStream_t)s;
    int64_t nvis_max = (a->pos0 + a->M) / 4;
    if (nvis_max > 0) {
        size_t smem = (size_t)(a->nih * (a->ihd + 1) + a->nih + kWarps * (a->ihd + a->nih)) * sizeof(float);
        if (smem > 227 * 1024)
            return dsv4_err_set(err, DSV4_E_UNSUPPORTED, "index_topk: %lld heads of %lld dims need %zu bytes of "
                                "shared memory", (long long)a->nih, (long long)a->ihd, smem);
        if (smem > 48 * 1024)
            DSV4_CU_TRY(cudaFuncSetAttribute(idx_scores, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                        err);
        dim3 grid((unsigned)((nvis_max + kKeysPerBlock - 1) / kKeysPerBlock), (unsigned)a->M);
        DSV4_LAUNCH(idx_scores, grid, kThreads, smem, st, p);
        if (int rc = DSV4_CU_LAUNCHED("idx_scores", st, err))
            return rc;
    }
    int P = 1;
    while (P < a->topk)
        P <<= 1;
    // long rows get a bigger block: the passes over the row are its cost
    if (nvis_max > 8192) {
        auto kern = idx_topk<1024>;
        DSV4_LAUNCH(kern, (unsigned)a->M, 1024, (size_t)P * sizeof(uint64_t), st, p);
    } else {
        auto kern = idx_topk<256>;
        DSV4_LAUNCH(kern, (unsigned)a->M, 256, (size_t)P * sizeof(uint64_t), st, p);
    }
    return DSV4_CU_LAUNCHED("idx_topk", st, err);
}
