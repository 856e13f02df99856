// meansq — the sum of squares of a row in exactly the order of lib/ops.c's
// sum_sq (PyTorch's vectorised CPU sum: 32 column accumulators over groups of
// 32 elements, summed in chunks of `step` groups through a 4-level cascade,
// then the 8-wide and scalar tails), so that dsv4_mean_sq, and everything
// normalised by it (RMSNorm, mHC's rsqrt(mean(z^2))), is bit-identical on the
// GPU.  Shared by kernels/ops.cu and any kernel that needs mean(x^2).
//
// Parallel form of the same sums: lane k of a warp owns column k; the chunks
// (each a sequential sum of `step` groups from 0, as the CPU's acc[0]) are
// spread over the block's warps and stored; warp 0 then replays the cascade
// over the stored chunk sums in order.  Every f32 operation is one of the
// CPU's, with __fadd_rn/__fmul_rn so nvcc does not contract them into FMAs.
#ifndef DSV4_KERNELS_MEANSQ_CUH
#define DSV4_KERNELS_MEANSQ_CUH

#include "common.cuh"

namespace dsv4k {

struct sumsq_plan {
    int64_t nv, groups;   // 8-vectors, 32-groups (= nv / 4)
    int lp;               // log2(step)
    int64_t step, nch;    // groups per chunk, full chunks
};

__host__ __device__ inline sumsq_plan sumsq_plan_for(int64_t n)
{
    sumsq_plan p;
    p.nv = n / 8;
    p.groups = p.nv / 4;
    int b = 0;
    while (p.groups > 1 && ((int64_t)1 << b) < p.groups)
        b++;
    p.lp = b / 4 > 4 ? b / 4 : 4;
    p.step = (int64_t)1 << p.lp;
    p.nch = p.groups / p.step;
    return p;
}

// Floats of scratch (shared memory) sum_sq_row needs for a row of n.
__host__ __device__ inline int64_t sumsq_scratch_floats(int64_t n)
{
    return (sumsq_plan_for(n).nch + 1) * 32 + 32;
}

// Sum of x[i]^2 (f32) over x[0..n) in sum_sq's order; every thread of the
// block (blockDim.x a multiple of 32) must call; all get the result.
// scratch: sumsq_scratch_floats(n) floats of shared memory, free again when
// the call returns.
__device__ inline float sum_sq_row(const float *__restrict__ x, int64_t n, float *scratch)
{
    const sumsq_plan p = sumsq_plan_for(n);
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float *fin = scratch + (p.nch + 1) * 32;
    // chunk c < nch: groups [c*step, (c+1)*step); chunk nch: the leftover groups
    for (int64_t c = w; c <= p.nch; c += nw) {
        int64_t g0 = c * p.step, g1 = c < p.nch ? g0 + p.step : p.groups;
        float a = 0.0f;
        for (int64_t g = g0; g < g1; g++) {
            float v = x[g * 32 + lane];
            a = __fadd_rn(a, __fmul_rn(v, v));
        }
        scratch[c * 32 + lane] = a;
    }
    __syncthreads();
    if (w == 0) {
        // the cascade: acc[1] += acc[0] after every chunk, acc[1] -> acc[2]
        // when the group count is a multiple of step^2, acc[2] -> acc[3] at step^3
        const int64_t mask = p.step - 1;
        float a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
        for (int64_t c = 0; c < p.nch; c++) {
            int64_t i = (c + 1) * p.step;
            a1 = __fadd_rn(a1, scratch[c * 32 + lane]);
            if (i & (mask << p.lp))
                continue;
            a2 = __fadd_rn(a2, a1);
            a1 = 0.0f;
            if (i & (mask << (2 * p.lp)))
                continue;
            a3 = __fadd_rn(a3, a2);
            a2 = 0.0f;
        }
        float a0 = scratch[p.nch * 32 + lane];
        a0 = __fadd_rn(a0, a1);
        a0 = __fadd_rn(a0, a2);
        a0 = __fadd_rn(a0, a3);
        for (int64_t v = p.groups * 4; v < p.nv; v++)     // 8-vectors after the last group
            if (lane < 8) {
                float t = x[v * 8 + lane];
                a0 = __fadd_rn(a0, __fmul_rn(t, t));
            }
        float t1 = __shfl_sync(0xffffffffu, a0, (lane + 8) & 31);
        float t2 = __shfl_sync(0xffffffffu, a0, (lane + 16) & 31);
        float t3 = __shfl_sync(0xffffffffu, a0, (lane + 24) & 31);
        a0 = __fadd_rn(__fadd_rn(__fadd_rn(a0, t1), t2), t3);  // lanes 0..7 matter
        float s = 0.0f;
        for (int64_t t = p.nv * 8; t < n; t++) {
            float v = x[t];
            s = __fadd_rn(s, __fmul_rn(v, v));
        }
        for (int l = 0; l < 8; l++)
            s = __fadd_rn(s, __shfl_sync(0xffffffffu, a0, l));
        if (lane == 0)
            fin[0] = s;
    }
    __syncthreads();
    float s = fin[0];
    __syncthreads();   // scratch may be reused after the return
    return s;
}

} // namespace dsv4k

#endif
