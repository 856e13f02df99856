// sample — dsv4_sample (lib/sample.c) on the GPU, one block per row of
// logits; the API and its guarantees are in lib/gpu_sample.h.
//
// The kernel follows sample.c step by step so that every sum is taken in
// the CPU's order (see the comment at the top of sample.c):
//   scan     NaN (lowest id), max, argmax (lowest id), any +inf: block
//            reductions, exact;
//   top-k    (0 < k < vocab) the candidates for the k best (a histogram of
//            the keys' top 16 bits picks them) sorted by (logit desc, id
//            asc) with a block bitonic sort of 64-bit keys, the first k
//            weighted and summed in that order by one thread, then the cuts;
//   buckets  (otherwise) the weights bucketed by their top 16 bits; each
//            bucket's mass summed in id order (warp 0 walks the vocab 32
//            tokens at a time, one lane per distinct bucket adding its
//            tokens in lane order onto the bucket's running sum in shared
//            memory), the sums above each bucket from the top down, and a
//            bucket that a cut falls into gathered, sorted and summed from
//            the sum above it, as gather() does.
// The control flow after the scan is block-uniform: every thread evaluates
// the same small decisions from shared/global state, and the parallel steps
// (weights, gathers, sorts, first-index searches) are done by all threads.
//
// Cost and what bounds it: reading the logits is 0.5 MB per row at 129k
// tokens; the serial parts dominate: the mass walk (vocab/32 steps of warp 0,
// each a handful of shared-memory operations), the top-down bucket sums (up
// to 16k dependent adds by one thread) and the top-k path's full sort
// (log2(P)^2/2 passes over P = 2^17 keys) and its k-long serial prefix sum.
// Faster: a radix select of the top k before sorting only those k, and
// rows of a batch spread over more SMs per row.  The one GPU-specific
// rounding is CUDA's double exp (<= 1 ulp from glibc's), see gpu_sample.h.
#include "common.cuh"
#include "gpu_sample.h"

#include <stdlib.h>

namespace {

constexpr int kBShift = 48;
constexpr int kNB = (int)(0x3ff0000000000000ull >> kBShift) + 1;   // bucket of 1.0 is the last
constexpr int64_t kNone = INT64_MAX;
constexpr int kMaxThreads = 512;

struct Pos {
    int b;
    int64_t j;
};

struct Shared {           // the block's small shared state
    int64_t red[32];      // reduction scratch
    float redf[32];
    int gb;               // bucket held sorted in keys/cum, or -1
    int64_t gn;           // its token count
    int n;                // gather counter
    int fb;               // first_reaching's bucket, walk_bins' bin
    int64_t above;        // walk_bins' count above it
    int lo;               // lowest non-empty bucket
    int bug;
};

// The per-row scratch (global memory).
struct Row {
    const float *l;
    int64_t V;
    double *w;            // [V] weights by id (buckets) or by sorted index (top-k)
    double *cum;          // [V] running sums of the held sorted list
    uint64_t *keys;       // [P] sort keys
    int *cnt;             // [kNB] tokens per bucket
    double *above;        // [kNB] sum of the buckets above b
    double *mass;         // [kNB] (shared memory) weight sum per bucket, id order
    int *hist;            // [512] top-k: keys per bin of their top 8, then next 8 bits
};

__device__ __forceinline__ int64_t imin64(int64_t a, int64_t b) { return a < b ? a : b; }

__device__ __forceinline__ int64_t pow2_at_least(int64_t n)
{
    int64_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

__device__ __forceinline__ int bucket_of(double w)
{
    return (int)((unsigned long long)__double_as_longlong(w) >> kBShift);
}

// Descending keys give sample.c's order: higher logit first, then lower id.
// -0 is keyed as +0 (they compare equal there); 0 is below every real key.
__device__ __forceinline__ uint64_t sort_key(float l, uint32_t id)
{
    uint32_t b = __float_as_uint(l == 0.0f ? 0.0f : l);
    b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
    return ((uint64_t)b << 32) | (uint32_t)~id;
}
__device__ __forceinline__ uint32_t key_id(uint64_t k) { return ~(uint32_t)k; }

// sample.c weight(); exp is CUDA's on a GPU (see the file comment).
__device__ __forceinline__ double weight(float l, double m, double t, bool ninf)
{
    if (ninf)
        return l == INFINITY ? 1.0 : 0.0;
    return exp(((double)l - m) / t);
}

__device__ __forceinline__ uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// dsv4_sample_uniform: integer mixing, then an exact conversion.
__device__ __forceinline__ double uniform(uint64_t seed, int64_t pos)
{
    uint64_t z = mix64(mix64(seed ^ 0x6a09e667f3bcc909ull) + (uint64_t)pos * 0x9e3779b97f4a7c15ull);
    return (double)(z >> 11) * 0x1.0p-53;
}

__device__ int64_t block_min_i64(int64_t v, int64_t *scratch)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1)
        v = imin64(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0)
        scratch[w] = v;
    __syncthreads();
    int64_t r = lane < nw ? scratch[lane] : kNone;
    for (int o = 16; o > 0; o >>= 1)
        r = imin64(r, __shfl_xor_sync(0xffffffffu, r, o));
    return r;
}

// The first j in [0, n) with f(j), or kNone; every thread calls.
template <class F>
__device__ int64_t first_true(int64_t n, F f, Shared &S)
{
    int64_t best = kNone;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
        if (f(j)) {
            best = j;
            break;
        }
    return block_min_i64(best, S.red);
}

// Bitonic sort of a[P] (P a power of two), descending.
__device__ void sort_desc(uint64_t *a, int64_t P)
{
    for (int64_t k = 2; k <= P; k <<= 1)
        for (int64_t j = k >> 1; j > 0; j >>= 1) {
            for (int64_t i = threadIdx.x; i < P; i += blockDim.x) {
                int64_t p = i ^ j;
                if (p > i) {
                    uint64_t x = a[i], y = a[p];
                    if ((i & k) == 0 ? x < y : x > y) {
                        a[i] = y;
                        a[p] = x;
                    }
                }
            }
            __syncthreads();
        }
}

// sample.c gather(): bucket b's tokens sorted into keys[0, gn), running sums
// from above[b] in cum, the last one above[b] + mass[b].
__device__ void gather(const Row &R, int b, Shared &S)
{
    if (S.gb == b)
        return;
    if (threadIdx.x == 0)
        S.n = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < R.V; i += blockDim.x) {
        double w = R.w[i];
        if (w > 0 && bucket_of(w) == b)
            R.keys[atomicAdd(&S.n, 1)] = sort_key(R.l[i], (uint32_t)i);
    }
    __syncthreads();
    const int64_t n = S.n, P = pow2_at_least(n);
    for (int64_t i = n + threadIdx.x; i < P; i += blockDim.x)
        R.keys[i] = 0;
    __syncthreads();
    sort_desc(R.keys, P);
    if (threadIdx.x == 0) {
        double c = R.above[b];
        for (int64_t j = 0; j < n; j++) {
            c += R.w[key_id(R.keys[j])];
            R.cum[j] = c;
        }
        if (n)
            R.cum[n - 1] = R.above[b] + R.mass[b];
        S.gb = b;
        S.gn = n;
    }
    __syncthreads();
}

__device__ double cum_at(const Row &R, Pos p, Shared &S)
{
    if (p.j == 0)
        return R.above[p.b];
    if (p.j == R.cnt[p.b])
        return R.above[p.b] + R.mass[p.b];
    gather(R, p.b, S);
    return R.cum[p.j - 1];
}

// sample.c first_reaching(): the shortest prefix within e whose running
// sum is >= thr (strict: > thr), or e.  One thread finds the first whole
// bucket from the top that reaches thr; e's own (partial) bucket last.
__device__ Pos first_reaching(const Row &R, Pos e, int hi, double thr, bool strict, Shared &S)
{
    if (threadIdx.x == 0) {
        int fb = -1;
        for (int b = hi; b > e.b; b--)
            if (R.cnt[b]) {
                double end = R.above[b] + R.mass[b];
                if (strict ? end > thr : end >= thr) {
                    fb = b;
                    break;
                }
            }
        S.fb = fb;
    }
    __syncthreads();
    int b = S.fb;
    int64_t lim;
    __syncthreads();     // S.fb read by all before anyone rewrites it
    if (b < 0) {
        b = e.b;
        lim = e.j;
        if (lim == 0)
            return e;
        double end = cum_at(R, e, S);
        if (!(strict ? end > thr : end >= thr))
            return e;
    } else {
        lim = R.cnt[b];
    }
    gather(R, b, S);
    const double *cum = R.cum;
    int64_t j = first_true(lim, [=](int64_t k) { return strict ? cum[k] > thr : cum[k] >= thr; }, S);
    return j == kNone ? Pos{ b, lim } : Pos{ b, j + 1 };
}

// The bucket path (sample_buckets); returns the token or -1 (internal error).
__device__ int64_t sample_buckets(Row &R, double m, double t, bool ninf, double top_p, double min_p, double u,
                                  Shared &S)
{
    const int hi = bucket_of(1.0);
    for (int64_t b = threadIdx.x; b < kNB; b += blockDim.x) {
        R.mass[b] = 0.0;
        R.cnt[b] = 0;
    }
    if (threadIdx.x == 0) {
        S.lo = kNB;
        S.gb = -1;
    }
    __syncthreads();
    for (int64_t i = threadIdx.x; i < R.V; i += blockDim.x) {
        double w = weight(R.l[i], m, t, ninf);
        R.w[i] = w;
        if (w > 0) {
            int b = bucket_of(w);
            atomicAdd(&R.cnt[b], 1);
            atomicMin(&S.lo, b);
        }
    }
    __syncthreads();
    // Masses in id order: each bucket's running sum gets its tokens of a
    // 32-token group in lane order, added by the group's lowest lane.
    if (threadIdx.x < 32) {
        const unsigned lane = threadIdx.x;
        for (int64_t base = 0; base < R.V; base += 32) {
            int64_t i = base + lane;
            double w = i < R.V ? R.w[i] : 0.0;
            int b = w > 0 ? bucket_of(w) : -1;
            unsigned same = __match_any_sync(0xffffffffu, b);
            if (b >= 0 && (same & ((1u << lane) - 1u)) == 0) {
                double acc = R.mass[b];
                for (unsigned s = same; s; s &= s - 1)
                    acc += R.w[base + __ffs(s) - 1];
                R.mass[b] = acc;
            }
            __syncwarp();
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int lo = S.lo;
        S.bug = lo > hi || R.cnt[hi] == 0;    // the top token has w = 1 exactly
        if (!S.bug) {
            R.above[hi] = 0;
            for (int b = hi; b > lo; b--)
                R.above[b - 1] = R.above[b] + R.mass[b];
        }
    }
    __syncthreads();
    if (S.bug)
        return -1;
    const int lo = S.lo;
    Pos e = { lo, R.cnt[lo] };
    if (top_p < 1)
        e = first_reaching(R, e, hi, top_p * cum_at(R, e, S), false, S);
    if (min_p > 0) {
        double cut = min_p;
        int bc = bucket_of(cut);
        if (bc >= lo) {
            int64_t j = 0;
            if (R.cnt[bc]) {
                gather(R, bc, S);
                const double *w = R.w;
                const uint64_t *keys = R.keys;
                int64_t f = first_true(S.gn, [=](int64_t k) { return !(w[key_id(keys[k])] >= cut); }, S);
                j = f == kNone ? S.gn : f;
            }
            if (bc > e.b || (bc == e.b && j < e.j))
                e = Pos{ bc, j };
        }
    }
    Pos p = first_reaching(R, e, hi, u * cum_at(R, e, S), true, S);
    if (p.j == 0)
        return -1;
    gather(R, p.b, S);
    return key_id(R.keys[p.j - 1]);
}

// Warp 0 walks h[256] from the top bin down: S.fb = the first bin where
// the count from the top reaches need (need <= the total), S.above = the
// count of the bins above it.  Every thread calls.
__device__ void walk_bins(const int *h, int64_t need, Shared &S)
{
    if (threadIdx.x < 32) {
        const int lane = threadIdx.x;
        int64_t acc = 0;
        for (int top = 255; top >= 0; top -= 32) {
            int64_t c = h[top - lane], run = c;
            for (int o = 1; o < 32; o <<= 1) {
                int64_t v = __shfl_up_sync(0xffffffffu, run, o);
                if (lane >= o)
                    run += v;
            }
            unsigned hit = __ballot_sync(0xffffffffu, acc + run >= need);
            int64_t before = __shfl_sync(0xffffffffu, run - c, hit ? __ffs(hit) - 1 : 0);
            if (hit) {
                if (lane == 0) {
                    S.fb = top - (__ffs(hit) - 1);
                    S.above = acc + before;
                }
                break;
            }
            acc += __shfl_sync(0xffffffffu, run, 31);
        }
    }
    __syncthreads();
}

// The top-k path (sample_topk), 0 < k < V.  The k best keys all lie in the
// bins (top 16 key bits, found in two 8-bit levels) at or above the highest
// bin where the count from the top reaches k; only those are sorted.
__device__ int64_t sample_topk(Row &R, int64_t k, double m, double t, bool ninf, double top_p, double min_p,
                               double u, Shared &S)
{
    for (int64_t i = threadIdx.x; i < 512; i += blockDim.x)
        R.hist[i] = 0;
    if (threadIdx.x == 0)
        S.n = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < R.V; i += blockDim.x)
        atomicAdd(&R.hist[sort_key(R.l[i], (uint32_t)i) >> 56], 1);
    __syncthreads();
    walk_bins(R.hist, k, S);
    const uint64_t coarse = (uint64_t)S.fb;
    const int64_t above = S.above;
    for (int64_t i = threadIdx.x; i < R.V; i += blockDim.x) {
        uint64_t key = sort_key(R.l[i], (uint32_t)i);
        if (key >> 56 == coarse)
            atomicAdd(&R.hist[256 + ((key >> 48) & 255)], 1);
    }
    __syncthreads();      // every thread has read S.fb and S.above
    walk_bins(R.hist + 256, k - above, S);
    const uint64_t lowest = coarse << 8 | (uint64_t)S.fb;
    for (int64_t i = threadIdx.x; i < R.V; i += blockDim.x) {
        uint64_t key = sort_key(R.l[i], (uint32_t)i);
        if (key >> 48 >= lowest)
            R.keys[atomicAdd(&S.n, 1)] = key;
    }
    __syncthreads();
    const int64_t n = S.n, P = pow2_at_least(n);   // n >= k
    for (int64_t i = n + threadIdx.x; i < P; i += blockDim.x)
        R.keys[i] = 0;
    __syncthreads();
    sort_desc(R.keys, P);
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x)
        R.w[j] = weight(R.l[key_id(R.keys[j])], m, t, ninf);
    __syncthreads();
    if (threadIdx.x == 0) {
        double c = 0;
        for (int64_t j = 0; j < k; j++) {
            c += R.w[j];
            R.cum[j] = c;
        }
    }
    __syncthreads();
    const double *w = R.w, *cum = R.cum;
    int64_t r = k;
    if (top_p < 1) {
        double thr = top_p * cum[k - 1];
        int64_t j = first_true(k, [=](int64_t q) { return cum[q] >= thr; }, S);
        if (j != kNone)
            r = j + 1;
    }
    if (min_p > 0) {
        double cut = min_p * w[0];
        int64_t j = first_true(r, [=](int64_t q) { return !(w[q] >= cut); }, S);
        if (j != kNone)
            r = j;
    }
    double target = u * cum[r - 1];
    int64_t j = first_true(r, [=](int64_t q) { return cum[q] > target; }, S);
    return key_id(R.keys[j == kNone ? r - 1 : j]);
}

struct Params {
    const float *logits;
    int64_t ld, V, P;
    double t, top_p, min_p;
    int64_t top_k;
    const uint64_t *seed;
    const int64_t *pos;
    const double *u;
    uint32_t *token;
    int64_t *status;
    unsigned char *ws;
    size_t ws_row;
};

__global__ void __launch_bounds__(kMaxThreads) sample_rows(Params a)
{
    DSV4_DYN_SMEM(double, mass);
    __shared__ Shared S;
    const int64_t r = blockIdx.x, V = a.V;
    const float *l = a.logits + r * a.ld;
    double u = 0;
    if (a.t > 0) {
        u = a.u ? a.u[r] : uniform(a.seed[r], a.pos[r]);
        if (!(u >= 0 && u < 1)) {
            if (threadIdx.x == 0)
                a.status[r] = -2;
            return;
        }
    }
    // scan: lowest NaN, max, lowest argmax, any +inf
    int64_t nan_i = kNone, inf_i = kNone;
    float mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
        float v = l[i];
        if (isnan(v)) {
            nan_i = imin64(nan_i, i);
        } else {
            mx = v > mx ? v : mx;
            if (v == INFINITY)
                inf_i = imin64(inf_i, i);
        }
    }
    nan_i = block_min_i64(nan_i, S.red);
    if (nan_i != kNone) {
        if (threadIdx.x == 0)
            a.status[r] = nan_i + 1;
        return;
    }
    mx = dsv4k::block_max(mx, S.redf);
    if (mx == -INFINITY) {
        if (threadIdx.x == 0)
            a.status[r] = -1;
        return;
    }
    const float mxv = mx;
    const int64_t am = first_true(V, [=](int64_t i) { return l[i] == mxv; }, S);
    if (a.t == 0) {
        if (threadIdx.x == 0) {
            a.token[r] = (uint32_t)am;
            a.status[r] = 0;
        }
        return;
    }
    const bool ninf = block_min_i64(inf_i, S.red) != kNone;
    const double m = (double)l[am];
    unsigned char *ws = a.ws + (size_t)r * a.ws_row;
    Row R;
    R.l = l;
    R.V = V;
    R.w = reinterpret_cast<double *>(ws);
    R.cum = R.w + V;
    R.keys = reinterpret_cast<uint64_t *>(R.cum + V);
    R.above = reinterpret_cast<double *>(R.keys + a.P);
    R.cnt = reinterpret_cast<int *>(R.above + kNB);
    R.hist = R.cnt + kNB;
    R.mass = mass;
    int64_t tok;
    if (a.top_k > 0 && a.top_k < V)
        tok = sample_topk(R, a.top_k, m, a.t, ninf, a.top_p, a.min_p, u, S);
    else
        tok = sample_buckets(R, m, a.t, ninf, a.top_p, a.min_p, u, S);
    if (threadIdx.x == 0) {
        a.token[r] = tok < 0 ? 0 : (uint32_t)tok;
        a.status[r] = tok < 0 ? -3 : 0;
    }
}

int64_t pow2_host(int64_t n)
{
    int64_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

size_t row_bytes(int64_t V)
{
    size_t n = (size_t)(2 * V + pow2_host(V) + kNB) * 8 + (size_t)(kNB + 512) * 4;
    return (n + 255) & ~(size_t)255;     // every row's doubles aligned
}

constexpr size_t kSmem = (size_t)kNB * sizeof(double);

} // namespace

struct dsv4_cu_sampler {
    int64_t vocab, max_rows;
    size_t row;
    unsigned char *ws;
};

extern "C" int dsv4_cu_sampler_new(dsv4_cu_sampler **out, int64_t vocab, int64_t max_rows, dsv4_err *err)
{
    *out = NULL;
    if (vocab < 1 || vocab > INT32_MAX)
        return dsv4_err_set(err, DSV4_E_INVALID, "cu_sampler: vocab %lld is not in [1, 2^31)", (long long)vocab);
    if (max_rows < 1 || max_rows > INT32_MAX)
        return dsv4_err_set(err, DSV4_E_INVALID, "cu_sampler: max_rows %lld is not in [1, 2^31)",
                            (long long)max_rows);
    dsv4_cu_sampler *s = (dsv4_cu_sampler *)calloc(1, sizeof *s);
    if (!s)
        return dsv4_err_set(err, DSV4_E_NOMEM, "cu_sampler: out of memory");
    s->vocab = vocab;
    s->max_rows = max_rows;
    s->row = row_bytes(vocab);
    int rc = dsv4_cu_alloc((void **)&s->ws, s->row * (size_t)max_rows, err);
    if (rc) {
        free(s);
        return rc;
    }
    cudaError_t e = cudaFuncSetAttribute(sample_rows, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)kSmem);
    if (e != cudaSuccess) {
        dsv4_cu_free(s->ws);
        free(s);
        return dsv4_cu_fail(e, "cudaFuncSetAttribute(sample_rows)", __FILE__, __LINE__, err);
    }
    *out = s;
    return 0;
}

extern "C" void dsv4_cu_sampler_free(dsv4_cu_sampler *s)
{
    if (!s)
        return;
    dsv4_cu_free(s->ws);
    free(s);
}

extern "C" int dsv4_cu_sample(dsv4_cu_sampler *s, const dsv4_cu_sample_args *a, const dsv4_sample_opts *o,
                              dsv4_stream st, dsv4_err *err)
{
    int rc;
    if (!s || !a)
        return dsv4_err_set(err, DSV4_E_INVALID, "cu_sample: missing sampler or arguments");
    if ((rc = dsv4_sample_check(o, err)) < 0)
        return rc;
    if (a->rows < 0 || a->rows > s->max_rows)
        return dsv4_err_set(err, DSV4_E_INVALID, "cu_sample: rows %lld is not in [0, %lld]", (long long)a->rows,
                            (long long)s->max_rows);
    if (a->ld < s->vocab)
        return dsv4_err_set(err, DSV4_E_INVALID, "cu_sample: ld %lld < vocab %lld", (long long)a->ld,
                            (long long)s->vocab);
    if (a->rows == 0)
        return 0;
    if (!a->logits || !a->token || !a->status)
        return dsv4_err_set(err, DSV4_E_INVALID, "cu_sample: missing logits, token or status");
    if (o->temperature > 0 && !a->u && (!a->seed || !a->pos))
        return dsv4_err_set(err, DSV4_E_INVALID, "cu_sample: missing draws (u, or seed and pos)");
    Params p;
    p.logits = a->logits;
    p.ld = a->ld;
    p.V = s->vocab;
    p.P = pow2_host(s->vocab);
    p.t = o->temperature;
    p.top_p = o->top_p;
    p.min_p = o->min_p;
    p.top_k = o->top_k;
    p.seed = a->seed;
    p.pos = a->pos;
    p.u = a->u;
    p.token = a->token;
    p.status = a->status;
    p.ws = s->ws;
    p.ws_row = s->row;
    // Fewer threads for small vocabularies: the serial steps do not shrink.
    int64_t th = pow2_host(s->vocab) / 8;
    th = th < 64 ? 64 : th > kMaxThreads ? kMaxThreads : th;
    cudaStream_t cs = (cudaStream_t)st;
    DSV4_LAUNCH(sample_rows, (unsigned)a->rows, (unsigned)th, kSmem, cs, p);
    return DSV4_CU_LAUNCHED("sample_rows", cs, err);
}

extern "C" int dsv4_cu_sample_status(int64_t status, int64_t vocab, dsv4_err *err)
{
    if (status == 0)
        return 0;
    if (status > 0)
        return dsv4_err_set(err, DSV4_E_RANGE, "logit of token %lld is NaN", (long long)(status - 1));
    if (status == -1)
        return dsv4_err_set(err, DSV4_E_RANGE, "all %lld logits are -inf", (long long)vocab);
    if (status == -2)
        return dsv4_err_set(err, DSV4_E_INVALID, "sample: draw u must be in [0, 1)");
    return dsv4_err_set(err, DSV4_E_BUG, "cu_sample: internal error (status %lld)", (long long)status);
}
