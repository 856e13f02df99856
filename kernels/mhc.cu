// mhc — manifold-constrained hyper-connections (spec/ARCH.md §4.2) for M
// tokens; the API and the tolerance are in lib/gpu_mhc.h, the CPU references
// are dsv4_hc_pre / dsv4_hc_post / dsv4_hc_head in lib/engine.c.
//
// Kernels:
//   hc_dots    mu[m, r] = (float) sum_c fn[r, c] * z_m[c] in double: the
//              skinny GEMM (n_out = 24 or 4 rows of hc*D); one block per
//              (row, tile of kTM tokens), so each weight row is read once
//              per tile.  Bound: the weight bytes (n_out*hc*D*4, 1.5 MB for
//              Flash) plus the streams re-read per row from L2.  With M = 1
//              only n_out blocks run; splitting hc*D over blocks (with a
//              fixed-order combine of the double partials) would fill the
//              GPU.
//   hc_pre_fin one block per token: rho from mean(z^2) (one warp, in the
//              CPU's f32 order), the gates and Sinkhorn (one thread, hc^2
//              values), then x over D (all threads).
//   hc_post    one thread per (token, column i): reads hc values, writes hc.
//   hc_head_fin one block per token: rho, the hc weights, u, then RMSNorm
//              of u (mean(u^2) again in the CPU's order).
// Memory-bound except the serial Sinkhorn (~2*iters*hc^2 dependent f32
// ops per token, a few µs at hc = 4).
//
// Float rounding: products and sums use __fmul_rn/__fadd_rn where the CPU
// writes a*b + c, so nvcc cannot contract them into an FMA the CPU does not
// do; expf may differ from glibc's by up to 2 ulp (see gpu_mhc.h).
#include "common.cuh"
#include "gpu_mhc.h"

namespace {

constexpr int kThreads = 256;
constexpr int kTM = 4;        // tokens per hc_dots block

using dsv4k::round_bf16;

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

__device__ __forceinline__ int ceil_log2(int64_t x)
{
    int b = 0;
    while (x > 1 && ((int64_t)1 << b) < x)
        b++;
    return b;
}

// Sum of the f32 squares of x[n], bit-identical to lib/ops.c sum_sq: the
// CPU's 32 accumulator columns are the 32 lanes (lane k holds acc[*][k]);
// every branch is uniform over the warp.  All 32 lanes call; all get it.
__device__ float sum_sq_warp(const float *x, int64_t n)
{
    const unsigned full = 0xffffffffu;
    const int k = threadIdx.x & 31;
    int64_t nv = n / 8, rows = nv / 4;
    int lp = ceil_log2(rows) / 4;
    lp = lp > 4 ? lp : 4;
    int64_t step = (int64_t)1 << lp, mask = step - 1;
    float acc[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
    int64_t i = 0;
    while (i + step <= rows) {
        for (int64_t j = 0; j < step; j++, i++) {
            float v = x[i * 32 + k];
            acc[0] = __fadd_rn(acc[0], __fmul_rn(v, v));
        }
        for (int lv = 1; lv < 4; lv++) {
            acc[lv] = __fadd_rn(acc[lv], acc[lv - 1]);
            acc[lv - 1] = 0.0f;
            if (i & (mask << (lv * lp)))
                break;
        }
    }
    for (; i < rows; i++) {
        float v = x[i * 32 + k];
        acc[0] = __fadd_rn(acc[0], __fmul_rn(v, v));
    }
    for (int lv = 1; lv < 4; lv++)
        acc[0] = __fadd_rn(acc[0], acc[lv]);
    for (int64_t v = rows * 4; v < nv; v++)
        if (k < 8) {
            float e = x[v * 8 + k];
            acc[0] = __fadd_rn(acc[0], __fmul_rn(e, e));
        }
    // acc[0][l] += acc[0][8+l], then [16+l], then [24+l] (lanes >= 8 unchanged)
    float a8 = __shfl_sync(full, acc[0], (k + 8) & 31);
    float a16 = __shfl_sync(full, acc[0], (k + 16) & 31);
    float a24 = __shfl_sync(full, acc[0], (k + 24) & 31);
    if (k < 8)
        acc[0] = __fadd_rn(__fadd_rn(__fadd_rn(acc[0], a8), a16), a24);
    float s = 0.0f;
    for (int64_t t = nv * 8; t < n; t++) {
        float e = x[t];
        s = __fadd_rn(s, __fmul_rn(e, e));
    }
    for (int l = 0; l < 8; l++)
        s = __fadd_rn(s, __shfl_sync(full, acc[0], l));
    return s;
}

// rho = 1 / sqrt(mean(z^2) + eps) of z[n], computed by warp 0 and shared.
__device__ float block_rho(const float *z, int64_t n, float eps, float *slot)
{
    if (threadIdx.x < 32) {
        float ss = sum_sq_warp(z, n);
        if (threadIdx.x == 0)
            *slot = 1.0f / sqrtf(ss / (float)n + eps);
    }
    __syncthreads();
    return *slot;
}

// mu[m, r] = (float) dot(fn[r], X[m]) in double, for the kTM tokens of the
// block's tile.  Products of two f32 are exact in double; the sum's order
// (strided per thread, then the block tree) differs from the CPU's.
__global__ void hc_dots(const float *__restrict__ fn, const float *__restrict__ X, int64_t n, int64_t M,
                        int64_t nout, float *__restrict__ mu)
{
    __shared__ double red[32];
    const int64_t r = blockIdx.x, m0 = (int64_t)blockIdx.y * kTM;
    const int64_t mt = M - m0 < kTM ? M - m0 : kTM;
    const float *w = fn + r * n;
    double acc[kTM];
#pragma unroll
    for (int t = 0; t < kTM; t++)
        acc[t] = 0.0;
    for (int64_t c = threadIdx.x; c < n; c += blockDim.x) {
        double wv = (double)__ldg(w + c);
#pragma unroll
        for (int t = 0; t < kTM; t++)
            if (t < mt)
                acc[t] += wv * (double)__ldg(X + (m0 + t) * n + c);
    }
#pragma unroll
    for (int t = 0; t < kTM; t++) {
        double s = dsv4k::block_sum(acc[t], red);
        if (threadIdx.x == 0 && t < mt)
            mu[(m0 + t) * nout + r] = (float)s;
    }
}

// HCPre after the projections: one block per token.
__global__ void hc_pre_fin(const float *__restrict__ X, const float *__restrict__ mu,
                           const float *__restrict__ base, const float *__restrict__ scale, int64_t hc,
                           int64_t D, float norm_eps, float eps, int64_t iters, float *__restrict__ x,
                           float *__restrict__ post, float *__restrict__ comb)
{
    __shared__ float rho_s, pre[16];
    const int64_t m = blockIdx.x, nout = (2 + hc) * hc;
    const float *Xm = X + m * hc * D;
    float rho = block_rho(Xm, hc * D, norm_eps, &rho_s);
    if (threadIdx.x == 0) {
        float u[16 * 18];
        const float *b = base, *a = scale;
        float *po = post + m * hc, *C = comb + m * hc * hc;
        for (int64_t i = 0; i < nout; i++)
            u[i] = __fmul_rn(mu[m * nout + i], rho);
        for (int64_t s = 0; s < hc; s++) {
            pre[s] = sigmoid(__fadd_rn(__fmul_rn(u[s], a[0]), b[s])) + eps;
            po[s] = 2.0f * sigmoid(__fadd_rn(__fmul_rn(u[hc + s], a[1]), b[hc + s]));
        }
        float c[256];
        for (int64_t i = 0; i < hc * hc; i++)
            c[i] = __fadd_rn(__fmul_rn(u[2 * hc + i], a[2]), b[2 * hc + i]);
        // Sinkhorn: row softmax + eps, column normalise, then (row, column) x (iters - 1)
        for (int64_t j = 0; j < hc; j++) {
            float *row = c + j * hc, mx = -INFINITY, sum = 0.0f;
            for (int64_t k = 0; k < hc; k++)
                mx = row[k] > mx ? row[k] : mx;
            for (int64_t k = 0; k < hc; k++) {
                row[k] = expf(row[k] - mx);
                sum += row[k];
            }
            for (int64_t k = 0; k < hc; k++)
                row[k] = row[k] / sum + eps;
        }
        for (int64_t it = 0; it < iters; it++) {
            if (it > 0)
                for (int64_t j = 0; j < hc; j++) {
                    float sum = 0.0f;
                    for (int64_t k = 0; k < hc; k++)
                        sum += c[j * hc + k];
                    for (int64_t k = 0; k < hc; k++)
                        c[j * hc + k] /= sum + eps;
                }
            for (int64_t k = 0; k < hc; k++) {
                float sum = 0.0f;
                for (int64_t j = 0; j < hc; j++)
                    sum += c[j * hc + k];
                for (int64_t j = 0; j < hc; j++)
                    c[j * hc + k] /= sum + eps;
            }
        }
        for (int64_t i = 0; i < hc * hc; i++)
            C[i] = c[i];
    }
    __syncthreads();
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        float acc = 0.0f;
        for (int64_t s = 0; s < hc; s++)
            acc = __fadd_rn(acc, __fmul_rn(pre[s], Xm[s * D + i]));
        x[m * D + i] = round_bf16(acc);
    }
}

// HCPost: one thread per (token, column i), in place.
__global__ void hc_post(const float *__restrict__ f, float *X, int64_t hc, int64_t D,
                        const float *__restrict__ post, const float *__restrict__ comb)
{
    const int64_t m = blockIdx.y, i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= D)
        return;
    float *Xm = X + m * hc * D;
    const float *C = comb + m * hc * hc, *po = post + m * hc;
    float xs[16], nx[16];
    for (int64_t j = 0; j < hc; j++)
        xs[j] = Xm[j * D + i];
    const float fi = f[m * D + i];
    for (int64_t k = 0; k < hc; k++) {
        float acc = 0.0f;
        for (int64_t j = 0; j < hc; j++)
            acc = __fadd_rn(acc, __fmul_rn(__ldg(C + j * hc + k), xs[j]));
        nx[k] = round_bf16(__fadd_rn(__fmul_rn(__ldg(po + k), fi), acc));
    }
    for (int64_t k = 0; k < hc; k++)
        Xm[k * D + i] = nx[k];
}

// HCHead after the projections, then RMSNorm: one block per token.
__global__ void hc_head_fin(const float *__restrict__ X, const float *__restrict__ mu,
                            const float *__restrict__ base, const float *__restrict__ scale,
                            const float *__restrict__ nw, int64_t hc, int64_t D, float norm_eps, float eps,
                            float *__restrict__ u)
{
    __shared__ float rho_s, r_s, w[16];
    const int64_t m = blockIdx.x;
    const float *Xm = X + m * hc * D;
    float *um = u + m * D;
    float rho = block_rho(Xm, hc * D, norm_eps, &rho_s);
    if (threadIdx.x == 0)
        for (int64_t s = 0; s < hc; s++)
            w[s] = sigmoid(__fadd_rn(__fmul_rn(__fmul_rn(mu[m * hc + s], rho), scale[0]), base[s])) + eps;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        float acc = 0.0f;
        for (int64_t s = 0; s < hc; s++)
            acc = __fadd_rn(acc, __fmul_rn(w[s], Xm[s * D + i]));
        um[i] = round_bf16(acc);
    }
    __syncthreads();    // u visible to warp 0's mean
    float r = block_rho(um, D, norm_eps, &r_s);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
        um[i] = round_bf16(__fmul_rn(nw[i], __fmul_rn(um[i], r)));
}

int check_dims(const char *op, const dsv4_cu_hc_dims *d, int64_t M, dsv4_err *err)
{
    if (!d)
        return dsv4_err_set(err, DSV4_E_INVALID, "%s: dims missing", op);
    if (d->hc < 1 || d->hc > 16)
        return dsv4_err_set(err, DSV4_E_INVALID, "%s: hc %lld is not in [1, 16]", op, (long long)d->hc);
    if (d->D < 1)
        return dsv4_err_set(err, DSV4_E_INVALID, "%s: D %lld < 1", op, (long long)d->D);
    if (M < 0 || M > 65535)
        return dsv4_err_set(err, DSV4_E_INVALID, "%s: M %lld is not in [0, 65535]", op, (long long)M);
    return 0;
}

int launch_dots(const float *fn, const float *X, int64_t n, int64_t M, int64_t nout, float *mu,
                cudaStream_t st, dsv4_err *err)
{
    dim3 grid((unsigned)nout, (unsigned)((M + kTM - 1) / kTM));
    DSV4_LAUNCH(hc_dots, grid, kThreads, 0, st, fn, X, n, M, nout, mu);
    return DSV4_CU_LAUNCHED("hc_dots", st, err);
}

} // namespace

extern "C" int dsv4_cu_hc_pre(const dsv4_cu_hc_w *w, const dsv4_cu_hc_dims *d, const float *X, int64_t M,
                              float *mu, float *x, float *post, float *comb, dsv4_stream s, dsv4_err *err)
{
    int rc = check_dims("hc_pre", d, M, err);
    if (rc)
        return rc;
    if (d->iters < 1)
        return dsv4_err_set(err, DSV4_E_INVALID, "hc_pre: Sinkhorn iterations %lld < 1", (long long)d->iters);
    if (M == 0)
        return 0;
    if (!w || !w->fn || !w->base || !w->scale || !X || !mu || !x || !post || !comb)
        return dsv4_err_set(err, DSV4_E_INVALID, "hc_pre: missing pointer");
    cudaStream_t st = (cudaStream_t)s;
    const int64_t hc = d->hc, nout = (2 + hc) * hc;
    if ((rc = launch_dots(w->fn, X, hc * d->D, M, nout, mu, st, err)))
        return rc;
    DSV4_LAUNCH(hc_pre_fin, (unsigned)M, kThreads, 0, st, X, mu, w->base, w->scale, hc, d->D, d->norm_eps,
                d->hc_eps, d->iters, x, post, comb);
    return DSV4_CU_LAUNCHED("hc_pre_fin", st, err);
}

extern "C" int dsv4_cu_hc_post(const dsv4_cu_hc_dims *d, const float *f, float *X, int64_t M, const float *post,
                               const float *comb, dsv4_stream s, dsv4_err *err)
{
    int rc = check_dims("hc_post", d, M, err);
    if (rc)
        return rc;
    if (M == 0)
        return 0;
    if (!f || !X || !post || !comb)
        return dsv4_err_set(err, DSV4_E_INVALID, "hc_post: missing pointer");
    cudaStream_t st = (cudaStream_t)s;
    dim3 grid((unsigned)((d->D + kThreads - 1) / kThreads), (unsigned)M);
    DSV4_LAUNCH(hc_post, grid, kThreads, 0, st, f, X, d->hc, d->D, post, comb);
    return DSV4_CU_LAUNCHED("hc_post", st, err);
}

extern "C" int dsv4_cu_hc_head(const dsv4_cu_hc_w *w, const dsv4_cu_hc_dims *d, const float *nw, const float *X,
                               int64_t M, float *mu, float *u, dsv4_stream s, dsv4_err *err)
{
    int rc = check_dims("hc_head", d, M, err);
    if (rc)
        return rc;
    if (M == 0)
        return 0;
    if (!w || !w->fn || !w->base || !w->scale || !nw || !X || !mu || !u)
        return dsv4_err_set(err, DSV4_E_INVALID, "hc_head: missing pointer");
    if (u == X)
        return dsv4_err_set(err, DSV4_E_INVALID, "hc_head: u aliases X");
    cudaStream_t st = (cudaStream_t)s;
    const int64_t hc = d->hc;
    if ((rc = launch_dots(w->fn, X, hc * d->D, M, hc, mu, st, err)))
        return rc;
    DSV4_LAUNCH(hc_head_fin, (unsigned)M, kThreads, 0, st, X, mu, w->base, w->scale, nw, hc, d->D, d->norm_eps,
                d->hc_eps, u);
    return DSV4_CU_LAUNCHED("hc_head_fin", st, err);
}
