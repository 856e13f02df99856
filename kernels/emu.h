// emu — runs the CUDA C of kernels/ on the CPU, so that every kernel's
// indexing, synchronisation and arithmetic is checked against the CPU ops on
// machines without a GPU (CI).  A .cu file is compiled as C++ with this
// header forced in (-include kernels/emu.h, -DDSV4_CU_EMU=1); the emulated
// build is build/emu/ (Makefile).
//
// What it models: a launch runs its blocks one after another; the threads of
// a block are fibers (ucontext) on one OS thread, switched only at
// __syncthreads and the warp operations (__shfl*_sync, __syncwarp,
// __ballot_sync ...), which wait for every live thread of the block or of
// the warp's mask.  __shared__ variables are function statics, shared by the
// fibers of the running block.  Device memory is host memory (cudaMalloc is
// an aligned malloc), so ASan and valgrind see out-of-bounds kernel accesses.
// Streams, events and asynchronous copies complete at once.
//
// What it does not model: warp-synchronous code without the _sync
// intrinsics (that is undefined on Volta and later anyway and may pass here),
// races between threads that do not synchronise (fibers never interleave
// between switch points), the GPU's rounding of approximate intrinsics
// (__expf, rsqrtf: the C library's functions are used), timing and memory
// limits.  The real-device tests (make check-gpu) remain the authority.
#ifndef DSV4_EMU_H
#define DSV4_EMU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <type_traits>

// ---- qualifiers ----------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// A block's shared memory: one copy for the running block's fibers.
#define __shared__ static

// ---- built-in types and variables ------------------------------------------
struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
    constexpr dim3(uint3 u) : x(u.x), y(u.y), z(u.z) {}
};
struct __align__(8) float2 { float x, y; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(8) int2 { int x, y; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(8) uint2 { unsigned x, y; };
struct __align__(16) uint4 { unsigned x, y, z, w; };
struct __align__(4) uchar4 { unsigned char x, y, z, w; };
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return {x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

// The running thread's coordinates; set by the scheduler before it resumes
// a fiber.  Thread-local so that host threads may run launches concurrently.
extern thread_local uint3 threadIdx, blockIdx;
extern thread_local dim3 blockDim, gridDim;
static const int warpSize = 32;

// ---- the scheduler (kernels/emu.cc) ----------------------------------------
namespace dsv4_emu {
// Runs body once per thread of every block of grid x block, with dyn_smem
// bytes of dynamic shared memory per block.  Aborts with a message on a
// deadlock (threads waiting at different barriers) or a bad configuration,
// as a GPU would fail the launch.
void launch(dim3 grid, dim3 block, size_t dyn_smem, const std::function<void()> &body);
unsigned char *dyn_smem();                 // the running block's dynamic shared memory
void sync_block();                         // __syncthreads
void sync_warp(unsigned mask);             // waits for the live lanes of mask
uint64_t *warp_slots();                    // 32 exchange slots of the caller's warp
unsigned warp_live();                      // lanes of the caller's warp that have not returned
unsigned lane();
}

#define DSV4_EMU_LAUNCH(kernel, grid, block, smem, stream, ...) \
    ::dsv4_emu::launch(dim3(grid), dim3(block), (size_t)(smem), [&] { kernel(__VA_ARGS__); })

static inline void __syncthreads(void) { dsv4_emu::sync_block(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) { dsv4_emu::sync_warp(mask); }
static inline void __threadfence(void) {}
static inline void __threadfence_block(void) {}

// Warp exchange: publish, wait for the mask, read, wait again so that no
// lane overwrites its slot before every lane has read.
namespace dsv4_emu {
template <typename T> static inline T exchange(unsigned mask, T v, unsigned src_lane)
{
    static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
    uint64_t *slot = warp_slots(), bits = 0;
    memcpy(&bits, &v, sizeof v);
    slot[lane()] = bits;
    sync_warp(mask);
    T r;
    memcpy(&r, &slot[src_lane & 31u], sizeof r);
    sync_warp(mask);
    return r;
}
}

template <typename T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32)
{
    unsigned l = dsv4_emu::lane(), base = l & ~(unsigned)(width - 1);
    return dsv4_emu::exchange(mask, v, base + ((unsigned)src & (unsigned)(width - 1)));
}
template <typename T> static inline T __shfl_xor_sync(unsigned mask, T v, int lm, int width = 32)
{
    unsigned l = dsv4_emu::lane(), s = l ^ (unsigned)lm;
    if ((s & ~(unsigned)(width - 1)) != (l & ~(unsigned)(width - 1)))
        s = l;
    return dsv4_emu::exchange(mask, v, s);
}
template <typename T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32)
{
    unsigned l = dsv4_emu::lane(), s = l + d;
    if ((s & ~(unsigned)(width - 1)) != (l & ~(unsigned)(width - 1)))
        s = l;
    return dsv4_emu::exchange(mask, v, s);
}
template <typename T> static inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32)
{
    unsigned l = dsv4_emu::lane();
    unsigned s = (l & (unsigned)(width - 1)) >= d ? l - d : l;
    return dsv4_emu::exchange(mask, v, s);
}
static inline unsigned __ballot_sync(unsigned mask, int pred)
{
    uint64_t *slot = dsv4_emu::warp_slots();
    slot[dsv4_emu::lane()] = pred != 0;
    dsv4_emu::sync_warp(mask);
    unsigned r = 0, live = mask & dsv4_emu::warp_live();
    for (unsigned i = 0; i < 32; i++)
        if ((live >> i & 1u) && slot[i])
            r |= 1u << i;
    dsv4_emu::sync_warp(mask);
    return r;
}
// The lanes of mask whose v equals this lane's (bitwise).
template <typename T> static inline unsigned __match_any_sync(unsigned mask, T v)
{
    static_assert(sizeof(T) <= 8, "__match_any_sync compares at most 8 bytes");
    uint64_t *slot = dsv4_emu::warp_slots(), bits = 0;
    memcpy(&bits, &v, sizeof v);
    slot[dsv4_emu::lane()] = bits;
    dsv4_emu::sync_warp(mask);
    unsigned r = 0, live = mask & dsv4_emu::warp_live();
    for (unsigned i = 0; i < 32; i++)
        if ((live >> i & 1u) && slot[i] == bits)
            r |= 1u << i;
    dsv4_emu::sync_warp(mask);
    return r;
}
static inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
static inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, !pred) == 0; }
static inline unsigned __activemask(void) { return 0xffffffffu; }

// ---- atomics (fibers never interleave inside one) ---------------------------
template <typename T> static inline T atomicAdd(T *p, T v) { T o = *p; *p = o + v; return o; }
template <typename T> static inline T atomicSub(T *p, T v) { T o = *p; *p = o - v; return o; }
template <typename T> static inline T atomicMax(T *p, T v) { T o = *p; if (v > o) *p = v; return o; }
template <typename T> static inline T atomicMin(T *p, T v) { T o = *p; if (v < o) *p = v; return o; }
template <typename T> static inline T atomicExch(T *p, T v) { T o = *p; *p = v; return o; }
template <typename T> static inline T atomicOr(T *p, T v) { T o = *p; *p = o | v; return o; }
template <typename T> static inline T atomicAnd(T *p, T v) { T o = *p; *p = o & v; return o; }
template <typename T> static inline T atomicCAS(T *p, T cmp, T v) { T o = *p; if (o == cmp) *p = v; return o; }

// ---- intrinsics ---------------------------------------------------------------
static inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
static inline float __int_as_float(int u) { float f; memcpy(&f, &u, 4); return f; }
static inline int __float_as_int(float f) { int u; memcpy(&u, &f, 4); return u; }
static inline double __longlong_as_double(long long u) { double f; memcpy(&f, &u, 8); return f; }
static inline long long __double_as_longlong(double f) { long long u; memcpy(&u, &f, 8); return u; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
// __expf, __logf, __sinf, __cosf, __powf: glibc declares and defines them itself.
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
static inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
static inline int __float2int_rz(float x) { return (int)x; }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(unsigned x) { return x ? __builtin_clz(x) : 32; }
static inline int __clzll(unsigned long long x) { return x ? __builtin_clzll(x) : 64; }
static inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }
static inline unsigned __brev(unsigned x)
{
    unsigned r = 0;
    for (int i = 0; i < 32; i++)
        r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s)
{
    uint64_t v = (uint64_t)y << 32 | x;
    unsigned r = 0;
    for (int i = 0; i < 4; i++)
        r |= (unsigned)((v >> (8 * ((s >> (4 * i)) & 7u))) & 0xffu) << (8 * i);
    return r;
}
template <typename T> static inline T __ldg(const T *p) { return *p; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline long min(long a, long b) { return a < b ? a : b; }
static inline long max(long a, long b) { return a > b ? a : b; }
static inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
static inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }

// ---- runtime API (the subset kernels/ uses) ----------------------------------
typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorNoDevice = 100
} cudaError_t;
typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3, cudaMemcpyDefault = 4
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t n);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t st = 0);
cudaError_t cudaMemcpy2DAsync(void *d, size_t dp, const void *s, size_t sp, size_t w, size_t h,
                              cudaMemcpyKind k, cudaStream_t st = 0);
cudaError_t cudaMemset(void *d, int v, size_t n);
cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t st = 0);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaRuntimeGetVersion(int *v);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
template <typename F> static inline cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int) { return cudaSuccess; }

#endif
