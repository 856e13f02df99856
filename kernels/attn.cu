// attn — sparse attention with the sink over the sliding window plus the
// compressed entries (spec/ARCH.md §5.5, §5.6, §5.7 step 1); the API and the
// tolerance are in lib/gpu_attn.h, the CPU reference is dsv4_att_tasks
// (lib/attn.c).
//
// Structure.  One block = one token, a group of kHG = 8 heads and a range
// of that token's slots (window slots first, then the compressed ones, as
// the CPU orders them).  All heads of a token attend the same stored KV
// vectors, so a block decodes each vector once for its 8 heads: in the
// score pass a warp takes one slot, each lane decodes hd/32 dims and keeps 8
// partial dot products, which one transposing butterfly (9 shuffles instead
// of 8 warp sums) reduces to one head per lane quad.  The slots go by chunks
// of kCH with an online softmax (running max, rescaled sums); the value
// pass gives each thread hd/256 dims of all 8 heads in registers and reads
// the chunk's vectors again (from L1/L2: a chunk is <= 64 KiB).  Sums are in
// double, like the CPU's dsv4_dot and its value accumulation, so the results
// differ from the CPU's only by the order of double sums, the online
// rescaling and the GPU's expf/sinf/cosf (see lib/gpu_attn.h).
//
// Parallelisation, by the bytes a block reads.  Prefill has M * H/8 blocks
// of all the slots of a (token, head group): each reads its q (8 * hd * 4 =
// 16 KiB for V4) and every visible vector (584 B compact).  Decode (M = 1)
// would have only H/8 = 8 blocks, so the slots are split across blocks
// (flash-decoding): nsplit ranges of >= kGran slots, aiming at ~2 blocks
// per SM of an H100/H200; each block reads 16 KiB of q and its 32+ vectors
// (Flash CSA decode: 640 slots -> 20 splits x 8 groups = 160 blocks of
// 16 KiB q + 18.7 KiB KV), writes f64 partial sums [hd] per head, and a
// second kernel combines them (one block per head).  All of it lives in L2;
// the KV of a token is read 8 times from L2, once from DRAM.
//
// What bounds it: decode is latency-bound (~0.4 MB of KV + 128 KiB of q per
// Flash token; two launches).  Prefill is bound by the f64 FMAs (2 * hd per
// slot per head for scores and values: ~84 MFLOP per Flash token, half of
// the f32 rate on H100/H200).  Faster: bf16/f32 tensor-core MMA for both
// products over tiles of tokens that share window slots (the reference
// rounds the probabilities to bf16 anyway), decoded KV tiles in shared
// memory instead of re-reading them, and one launch for decode with a
// last-block-done combine.
#include "kvcodec.cuh"
#include "gpu_attn.h"

namespace {

using dsv4k::kv_elem;
using dsv4k::kv_layout;
using dsv4k::round_bf16;

constexpr int kThreads = 256;    // 8 warps
constexpr int kHG = 8;           // heads per block = warps (warp w runs head w's softmax)
constexpr int kCH = 64;          // slots per chunk (= 2 per lane in the softmax step)
constexpr int kKD = 4;           // dims per thread in the value pass: hd <= kKD * kThreads
constexpr int kMaxHd = kKD * kThreads;
constexpr int kGran = 32;        // a split covers a multiple of kGran slots
constexpr int kMaxSplit = 64;
constexpr int64_t kTargetBlocks = 264;   // ~2 blocks per SM on H100/H200 (132 SMs)

struct attn_p {
    kv_layout L;
    int64_t M, H, hd, rd, W, pos0;
    int ratio;
    int64_t eb, n_ent, topk;
    float scale;                         // (float)hd^-0.5, as the CPU computes it
    const float *q;
    const uint8_t *ring, *kvnew, *ent;
    const int32_t *sel, *nsel;
    const float *sink, *freqs;
    float *o;
    int nsplit;
    double *pacc, *pl;                   // partials [M][H][nsplit]([hd])
    float *pm;
};

// Compressed slots of token m (position t).
__device__ __forceinline__ int64_t n_comp(const attn_p &P, int64_t m, int64_t t)
{
    if (P.ratio == 4) {
        int64_t n = P.nsel[m];
        return n < 0 ? 0 : n > P.topk ? P.topk : n;
    }
    return P.ratio ? (t + 1) / P.ratio : 0;   // <= n_ent (checked by the host)
}

// Stored vector of slot i of token m, or null for an empty window slot (and
// for a CSA selection outside [0, n_ent), which the CPU never produces).
__device__ __forceinline__ const uint8_t *slot_ptr(const attn_p &P, int64_t m, int64_t t, int64_t i)
{
    if (i < P.W) {
        int64_t p = (t - (P.W - 1) > 0 ? t - (P.W - 1) : 0) + i;
        if (p > t)
            return nullptr;
        if (p >= P.pos0)
            return P.kvnew + (p - P.pos0) * P.eb;
        return P.ring + (p % P.W) * P.eb;
    }
    int64_t j = i - P.W;
    if (P.ratio == 4) {
        int64_t e = P.sel[m * P.topk + j];
        return e >= 0 && e < P.n_ent ? P.ent + e * P.eb : nullptr;
    }
    return P.ent + j * P.eb;
}

// Sums v[h] over the warp for 8 values at once: halving exchanges (xor 16,
// 8, 4) leave lane l with the partial sum of head (l >> 2) & 7, two more
// steps finish it.  Fixed order: the result does not depend on timing.
__device__ __forceinline__ double reduce8(const double v[kHG], int lane)
{
    const unsigned full = 0xffffffffu;
    const bool b4 = lane & 16, b3 = lane & 8, b2 = lane & 4;
    double u[4], w[2];
#pragma unroll
    for (int k = 0; k < 4; k++)
        u[k] = (b4 ? v[k + 4] : v[k]) + __shfl_xor_sync(full, b4 ? v[k] : v[k + 4], 16);
#pragma unroll
    for (int k = 0; k < 2; k++)
        w[k] = (b3 ? u[k + 2] : u[k]) + __shfl_xor_sync(full, b3 ? u[k] : u[k + 2], 8);
    double x = (b2 ? w[1] : w[0]) + __shfl_xor_sync(full, b2 ? w[0] : w[1], 4);
    x += __shfl_xor_sync(full, x, 2);
    x += __shfl_xor_sync(full, x, 1);
    return x;
}

// ob holds `rows` outputs [hd] (bf16 values) of consecutive heads of token
// position t: inverse RoPE of the last rd dims, as dsv4_rope(inverse = 1)
// (products and sum rounded separately: no FMA contraction), then store to
// out.  Every thread of the block calls.
__device__ void rope_store(float *ob, int rows, int hd, int rd, int64_t t, const float *freqs, float *out)
{
    const int half = rd / 2;
    for (int i = threadIdx.x; i < rows * half; i += blockDim.x) {
        int r = i / half, j = i - r * half;
        float *x = ob + (int64_t)r * hd + (hd - rd) + 2 * j;
        float phi = __fmul_rn((float)t, freqs[j]);
        float c = cosf(phi), s = -sinf(phi);
        float a = x[0], b = x[1];
        x[0] = round_bf16(__fadd_rn(__fmul_rn(a, c), -__fmul_rn(b, s)));
        x[1] = round_bf16(__fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c)));
    }
    __syncthreads();
    for (int i = threadIdx.x; i < rows * hd; i += blockDim.x)
        out[i] = ob[i];
}

// grid (tokens, ceil(H / kHG), nsplit); dynamic shared memory kHG * hd floats.
__global__ void __launch_bounds__(kThreads) attn_part(attn_p P)
{
    DSV4_DYN_SMEM(float, qs);            // [kHG][hd]: q, at the end the outputs
    __shared__ float sc[kHG][kCH];       // scores, then their exponentials
    __shared__ const uint8_t *vp[kCH];
    __shared__ float alpha[kHG], mrun[kHG];
    __shared__ double lrun[kHG];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int split = blockIdx.z, hd = (int)P.hd;
    const int64_t h0 = (int64_t)blockIdx.y * kHG, m = blockIdx.x, t = P.pos0 + m;
    const int rows = (int)(P.H - h0 < kHG ? P.H - h0 : kHG);
    const int64_t nsl = P.W + n_comp(P, m, t);
    int64_t per = (nsl + P.nsplit - 1) / P.nsplit;
    per = (per + kGran - 1) / kGran * kGran;
    const int64_t s0 = split * per < nsl ? split * per : nsl, s1 = s0 + per < nsl ? s0 + per : nsl;

    const float *qm = P.q + (m * P.H + h0) * P.hd;
    for (int i = tid; i < kHG * hd; i += kThreads)
        qs[i] = i < rows * hd ? qm[i] : 0.0f;
    if (tid < kHG) {
        mrun[tid] = -INFINITY;
        lrun[tid] = 0.0;
    }
    double acc[kKD][kHG];
#pragma unroll
    for (int k = 0; k < kKD; k++)
#pragma unroll
        for (int h = 0; h < kHG; h++)
            acc[k][h] = 0.0;
    __syncthreads();

    for (int64_t c0 = s0; c0 < s1; c0 += kCH) {
        const int n = (int)(s1 - c0 < kCH ? s1 - c0 : kCH);
        // scores: one slot per warp at a time (v is uniform in the warp)
        for (int i = warp; i < kCH; i += kThreads / 32) {
            const uint8_t *v = i < n ? slot_ptr(P, m, t, c0 + i) : nullptr;
            if (v) {
                double d[kHG];
#pragma unroll
                for (int h = 0; h < kHG; h++)
                    d[h] = 0.0;
                for (int k = lane; k < hd; k += 32) {
                    double x = kv_elem(P.L, v, k);
#pragma unroll
                    for (int h = 0; h < kHG; h++)
                        d[h] = fma((double)qs[h * hd + k], x, d[h]);   // exact products, as dot_d
                }
                double r = reduce8(d, lane);
                if ((lane & 3) == 0)
                    sc[(lane >> 2) & 7][i] = __fmul_rn((float)r, P.scale);
            } else if (lane < kHG) {
                sc[lane][i] = -INFINITY;
            }
            if (lane == 0)
                vp[i] = v;
        }
        __syncthreads();
        // online softmax: warp w updates head w's running max and sum
        {
            const int h = warp;
            float a0 = sc[h][lane], a1 = sc[h][lane + 32];
            float mo = mrun[h], mn = fmaxf(mo, dsv4k::warp_max(fmaxf(a0, a1)));
            float e0 = a0 == -INFINITY ? 0.0f : expf(a0 - mn);
            float e1 = a1 == -INFINITY ? 0.0f : expf(a1 - mn);
            double cs = dsv4k::warp_sum((double)e0 + (double)e1);
            sc[h][lane] = e0;
            sc[h][lane + 32] = e1;
            if (lane == 0) {
                float al = mo == -INFINITY ? 0.0f : expf(mo - mn);   // 1 while the max holds
                alpha[h] = al;
                mrun[h] = mn;
                lrun[h] = lrun[h] * al + cs;
            }
        }
        __syncthreads();
        // values: thread owns dims tid + k * kThreads of all 8 heads
#pragma unroll
        for (int h = 0; h < kHG; h++) {
            double al = alpha[h];
            if (al != 1.0)
#pragma unroll
                for (int k = 0; k < kKD; k++)
                    acc[k][h] *= al;
        }
        for (int i = 0; i < n; i++) {
            const uint8_t *v = vp[i];
            if (!v)
                continue;
            double p[kHG];
#pragma unroll
            for (int h = 0; h < kHG; h++)
                p[h] = sc[h][i];
#pragma unroll
            for (int k = 0; k < kKD; k++) {
                int d = tid + k * kThreads;
                if (d < hd) {
                    double x = kv_elem(P.L, v, d);
#pragma unroll
                    for (int h = 0; h < kHG; h++)
                        acc[k][h] = fma(p[h], x, acc[k][h]);
                }
            }
        }
        __syncthreads();
    }

    if (P.nsplit > 1) {   // partial sums for attn_combine
#pragma unroll
        for (int h = 0; h < kHG; h++) {
            if (h >= rows)
                break;
            int64_t idx = ((m * P.H + h0 + h) * P.nsplit + split);
            if (tid == 0) {
                P.pm[idx] = mrun[h];
                P.pl[idx] = lrun[h];
            }
#pragma unroll
            for (int k = 0; k < kKD; k++) {
                int d = tid + k * kThreads;
                if (d < hd)
                    P.pacc[idx * P.hd + d] = acc[k][h];
            }
        }
        return;
    }
    // the whole softmax is here: o = acc / den, den with the sink (f32 as the CPU)
#pragma unroll
    for (int h = 0; h < kHG; h++) {
        if (h >= rows)
            break;
        float den = (float)lrun[h] + expf(P.sink[h0 + h] - mrun[h]);
#pragma unroll
        for (int k = 0; k < kKD; k++) {
            int d = tid + k * kThreads;
            if (d < hd)
                qs[h * hd + d] = round_bf16((float)(acc[k][h] / (double)den));
        }
    }
    __syncthreads();
    rope_store(qs, rows, hd, (int)P.rd, t, P.freqs, P.o + (m * P.H + h0) * P.hd);
}

// grid (tokens, H): merges the nsplit partial sums of one (token, head).
__global__ void __launch_bounds__(kThreads) attn_combine(attn_p P)
{
    DSV4_DYN_SMEM(float, ob);            // [hd]
    __shared__ float wsp[kMaxSplit];
    __shared__ float sden;
    const int tid = threadIdx.x, hd = (int)P.hd, ns = P.nsplit;
    const int64_t h = blockIdx.y, m = blockIdx.x, t = P.pos0 + m;
    const int64_t base = (m * P.H + h) * ns;
    if (tid == 0) {
        float mx = -INFINITY;
        for (int s = 0; s < ns; s++)
            mx = fmaxf(mx, P.pm[base + s]);
        double l = 0.0;
        for (int s = 0; s < ns; s++) {
            float ms = P.pm[base + s];
            wsp[s] = ms == -INFINITY ? 0.0f : expf(ms - mx);   // a split may have no slot
            l += P.pl[base + s] * wsp[s];
        }
        sden = (float)l + expf(P.sink[h] - mx);
    }
    __syncthreads();
    const double den = sden;
    for (int d = tid; d < hd; d += kThreads) {
        double a = 0.0;
        for (int s = 0; s < ns; s++)
            a = fma(P.pacc[(base + s) * P.hd + d], (double)wsp[s], a);
        ob[d] = round_bf16((float)(a / den));
    }
    __syncthreads();
    rope_store(ob, 1, hd, (int)P.rd, t, P.freqs, P.o + (m * P.H + h) * P.hd);
}

int64_t hgroups(const dsv4_attn_args *a) { return (a->H + kHG - 1) / kHG; }

int64_t max_slots(const dsv4_attn_args *a)
{
    return a->W + (a->ratio == 4 ? a->topk : a->ratio ? (a->pos0 + a->M) / a->ratio : 0);
}

size_t split_bytes(const dsv4_attn_args *a, int64_t ns)
{
    return ns <= 1 ? 0 : (size_t)(a->M * a->H * ns) * ((size_t)a->hd * 8 + 8 + 4);
}

// The split a call wants: enough blocks for the GPU when M * H/8 is small.
int64_t want_split(const dsv4_attn_args *a)
{
    int64_t blocks = a->M * hgroups(a);
    if (blocks >= kTargetBlocks)
        return 1;
    int64_t ns = (kTargetBlocks + blocks - 1) / blocks, bys = (max_slots(a) + kGran - 1) / kGran;
    ns = ns < bys ? ns : bys;
    return ns < kMaxSplit ? ns : kMaxSplit;
}

int check_args(const dsv4_attn_args *a, dsv4_err *err)
{
    if (!a)
        return dsv4_err_set(err, DSV4_E_INVALID, "attn: no arguments");
    if (a->M < 0 || a->H < 1 || a->W < 1 || a->pos0 < 0)
        return dsv4_err_set(err, DSV4_E_INVALID, "attn: bad M %lld, H %lld, W %lld or pos0 %lld",
                            (long long)a->M, (long long)a->H, (long long)a->W, (long long)a->pos0);
    if (a->hd < 2 || a->hd % 2 || a->hd > kMaxHd)
        return dsv4_err_set(err, DSV4_E_INVALID, "attn: head_dim %lld is not even in [2, %d]",
                            (long long)a->hd, kMaxHd);
    if (a->rd < 0 || a->rd % 2 || a->rd > a->hd)
        return dsv4_err_set(err, DSV4_E_INVALID, "attn: rope_dim %lld is not even in [0, head_dim]",
                            (long long)a->rd);
    if (a->ratio != 0 && a->ratio != 4 && a->ratio != 128)
        return dsv4_err_set(err, DSV4_E_INVALID, "attn: compression ratio %d is not 0, 4 or 128", a->ratio);
    if (a->compact != 0 && a->compact != 1)
        return dsv4_err_set(err, DSV4_E_INVALID, "attn: layout %d is not 0 (bf16) or 1 (compact)", a->compact);
    if (a->M == 0)
        return 0;
    const char *null = !a->q ? "q" : !a->o ? "output" : !a->kvnew ? "new KV" : !a->sink ? "sink"
                     : a->rd && !a->freqs ? "rope table" : a->pos0 > 0 && !a->ring ? "window ring" : NULL;
    if (null)
        return dsv4_err_set(err, DSV4_E_INVALID, "attn: null %s pointer", null);
    if (a->H > 65535 || a->M > INT32_MAX)   // grid y and x
        return dsv4_err_set(err, DSV4_E_INVALID, "attn: %lld heads or %lld tokens are too many",
                            (long long)a->H, (long long)a->M);
    if (a->ratio == 128 && a->n_ent < (a->pos0 + a->M) / 128)
        return dsv4_err_set(err, DSV4_E_INVALID, "attn: %lld compressed entries, the chunk sees %lld",
                            (long long)a->n_ent, (long long)((a->pos0 + a->M) / 128));
    if (a->ratio == 4 && (a->topk < 1 || a->n_ent < 0 || !a->sel || !a->nsel))
        return dsv4_err_set(err, DSV4_E_INVALID, "attn: CSA needs topk >= 1 (%lld), sel and nsel",
                            (long long)a->topk);
    if (a->ratio && a->n_ent > 0 && !a->ent)
        return dsv4_err_set(err, DSV4_E_INVALID, "attn: null compressed entries");
    return 0;
}

} // namespace

extern "C" int64_t dsv4_cu_attn_entry_bytes(int compact, int64_t hd, int64_t rd)
{
    int64_t nd = hd - rd;
    return compact ? (2 * rd + nd + (nd + 63) / 64 + 7) / 8 * 8 : 2 * hd;
}

extern "C" size_t dsv4_cu_attn_ws_bytes(const dsv4_attn_args *a)
{
    dsv4_err err = DSV4_ERR_INIT;
    if (check_args(a, &err) || a->M == 0)
        return 0;
    return split_bytes(a, want_split(a));
}

extern "C" int dsv4_cu_attn(const dsv4_attn_args *a, dsv4_stream s, dsv4_err *err)
{
    int rc = check_args(a, err);
    if (rc || a->M == 0)
        return rc;
    int64_t ns = want_split(a);
    while (ns > 1 && (!a->ws || split_bytes(a, ns) > a->ws_bytes))
        ns--;
    attn_p P;
    P.L.compact = a->compact;
    P.L.hd = (int)a->hd;
    P.L.rd = (int)a->rd;
    P.L.ihd = 0;
    P.eb = dsv4_cu_attn_entry_bytes(a->compact, a->hd, a->rd);
    P.L.entry_bytes = (int)P.eb;
    P.L.ikey_bytes = 0;
    P.M = a->M, P.H = a->H, P.hd = a->hd, P.rd = a->rd, P.W = a->W, P.pos0 = a->pos0;
    P.ratio = a->ratio, P.n_ent = a->n_ent, P.topk = a->topk;
    P.scale = (float)pow((double)a->hd, -0.5);
    P.q = a->q, P.ring = a->ring, P.kvnew = a->kvnew, P.ent = a->ent, P.sel = a->sel, P.nsel = a->nsel;
    P.sink = a->sink, P.freqs = a->freqs, P.o = a->o;
    P.nsplit = (int)ns;
    P.pacc = static_cast<double *>(a->ws);
    P.pl = ns > 1 ? P.pacc + a->M * a->H * ns * a->hd : nullptr;
    P.pm = ns > 1 ? reinterpret_cast<float *>(P.pl + a->M * a->H * ns) : nullptr;
    const size_t smem = (size_t)kHG * (size_t)a->hd * sizeof(float);
    cudaStream_t st = s;
    DSV4_LAUNCH(attn_part, dim3((unsigned)a->M, (unsigned)hgroups(a), (unsigned)ns), kThreads, smem, st, P);
    if ((rc = DSV4_CU_LAUNCHED("attn_part", st, err)) || ns == 1)
        return rc;
    DSV4_LAUNCH(attn_combine, dim3((unsigned)a->M, (unsigned)a->H), kThreads, (size_t)a->hd * sizeof(float), st, P);
    return DSV4_CU_LAUNCHED("attn_combine", st, err);
}

extern "C" int dsv4_cu_win_store(uint8_t *ring, const uint8_t *kvnew, int64_t entry_bytes, int64_t W, int64_t pos0,
                                 int64_t M, dsv4_stream s, dsv4_err *err)
{
    if (W < 1 || M < 0 || pos0 < 0 || entry_bytes < 1)
        return dsv4_err_set(err, DSV4_E_INVALID, "win_store: bad W %lld, M %lld, pos0 %lld or entry size %lld",
                            (long long)W, (long long)M, (long long)pos0, (long long)entry_bytes);
    if (M == 0)
        return 0;
    if (!ring || !kvnew)
        return dsv4_err_set(err, DSV4_E_INVALID, "win_store: null %s pointer", !ring ? "ring" : "new KV");
    int64_t p0 = pos0 + M - W > pos0 ? pos0 + M - W : pos0, n = pos0 + M - p0;
    int64_t first = p0 % W, n1 = n < W - first ? n : W - first;
    cudaStream_t st = s;
    DSV4_CU_TRY(cudaMemcpyAsync(ring + first * entry_bytes, kvnew + (p0 - pos0) * entry_bytes,
                                (size_t)(n1 * entry_bytes), cudaMemcpyDeviceToDevice, st), err);
    if (n > n1)
        DSV4_CU_TRY(cudaMemcpyAsync(ring, kvnew + (p0 - pos0 + n1) * entry_bytes, (size_t)((n - n1) * entry_bytes),
                                    cudaMemcpyDeviceToDevice, st), err);
    return 0;
}
