// emu — the scheduler and runtime behind kernels/emu.h (what it models and
// what it does not is said there).  Built only into the emulated library
// (build/emu/), never by nvcc.
//
// The thread-locals below stand for the GPU's own registers and launch
// state; they are per host thread, so independent host threads may run
// launches at the same time.
#include "emu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

thread_local uint3 threadIdx, blockIdx;
thread_local dim3 blockDim, gridDim;

namespace dsv4_emu {
namespace {

enum { RUN, AT_BLOCK, AT_WARP, DONE };

struct Fiber {
    ucontext_t ctx;
    int state;
    unsigned mask;                       // AT_WARP: the lanes it waits for
};

// Fiber stacks: generous, since kernels keep per-thread arrays there and the
// emulated build is not optimised hard; the lowest page of each is a guard.
constexpr size_t kStack = 256 * 1024;
constexpr int kMaxThreads = 1024;
constexpr size_t kMaxDynSmem = 227 * 1024;   // sm_90's opt-in limit per block

struct Block {
    const std::function<void()> *body = nullptr;
    Fiber *fib = nullptr;
    int n = 0, cur = 0;
    ucontext_t sched;
    uint64_t slots[kMaxThreads];         // warp exchange, 32 per warp
    unsigned char *smem = nullptr;
};

thread_local Block *cur_block;
thread_local char *stacks;               // kMaxThreads stacks, made once per host thread
thread_local cudaError_t last_error = cudaSuccess;

[[noreturn]] void die(const char *what)
{
    fprintf(stderr, "dsv4 GPU emulator: %s (block %u,%u,%u thread %u,%u,%u)\n", what, blockIdx.x,
            blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z);
    abort();
}

void set_coords(const Block &b, int i)
{
    unsigned bx = blockDim.x, by = blockDim.y;
    threadIdx = {(unsigned)i % bx, ((unsigned)i / bx) % by, (unsigned)i / (bx * by)};
}

void fiber_main()
{
    Block *b = cur_block;
    (*b->body)();
    b->fib[b->cur].state = DONE;         // uc_link returns to the scheduler
}

char *get_stacks()
{
    if (stacks)
        return stacks;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *p = mmap(nullptr, kStack * kMaxThreads, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        die("cannot map fiber stacks");
    for (int i = 0; i < kMaxThreads; i++)
        mprotect((char *)p + (size_t)i * kStack, page, PROT_NONE);
    stacks = (char *)p;
    return stacks;
}

void yield(int state, unsigned mask)
{
    Block *b = cur_block;
    if (!b)
        die("barrier outside a kernel");
    Fiber &f = b->fib[b->cur];
    f.state = state;
    f.mask = mask;
    if (swapcontext(&f.ctx, &b->sched) != 0)
        die("swapcontext failed");
}

// Releases waiting threads; false when none can go (a deadlock).
bool release(Block &b)
{
    bool any = false;
    for (int w0 = 0; w0 < b.n; w0 += 32) {
        int wn = b.n - w0 < 32 ? b.n - w0 : 32;
        unsigned live = 0, waiting = 0;
        for (int l = 0; l < wn; l++) {
            int s = b.fib[w0 + l].state;
            if (s != DONE)
                live |= 1u << l;
            if (s == AT_WARP)
                waiting |= 1u << l;
        }
        unsigned go = 0;
        for (int l = 0; l < wn; l++)
            if ((waiting >> l & 1u) && (b.fib[w0 + l].mask & live & ~waiting) == 0)
                go |= 1u << l;
        for (int l = 0; l < wn; l++)
            if (go >> l & 1u)
                b.fib[w0 + l].state = RUN;
        any |= go != 0;
    }
    if (any)
        return true;
    for (int i = 0; i < b.n; i++)
        if (b.fib[i].state != DONE && b.fib[i].state != AT_BLOCK)
            return false;
    for (int i = 0; i < b.n; i++)
        if (b.fib[i].state == AT_BLOCK) {
            b.fib[i].state = RUN;
            any = true;
        }
    return any;
}

void run_block(Block &b)
{
    char *st = get_stacks();
    for (int i = 0; i < b.n; i++) {
        Fiber &f = b.fib[i];
        if (getcontext(&f.ctx) != 0)
            die("getcontext failed");
        f.ctx.uc_stack.ss_sp = st + (size_t)i * kStack;
        f.ctx.uc_stack.ss_size = kStack;
        f.ctx.uc_link = &b.sched;
        makecontext(&f.ctx, fiber_main, 0);
        f.state = RUN;
        f.mask = 0;
    }
    for (;;) {
        bool all_done = true;
        for (int i = 0; i < b.n; i++) {
            if (b.fib[i].state == RUN) {
                b.cur = i;
                set_coords(b, i);
                if (swapcontext(&b.sched, &b.fib[i].ctx) != 0)
                    die("swapcontext failed");
            }
            all_done &= b.fib[i].state == DONE;
        }
        if (all_done)
            return;
        if (!release(b)) {
            for (int i = 0; i < b.n; i++)
                if (b.fib[i].state != DONE) {
                    set_coords(b, i);
                    break;
                }
            die("deadlock: threads wait at different barriers (a __syncthreads or warp "
                "operation not reached by every thread it waits for)");
        }
    }
}

} // namespace

void launch(dim3 grid, dim3 block, size_t dyn, const std::function<void()> &body)
{
    uint64_t nt = (uint64_t)block.x * block.y * block.z;
    if (cur_block)
        die("kernel launched from inside a kernel");
    if (nt == 0 || nt > (uint64_t)kMaxThreads || block.z > 64 || grid.x == 0 || grid.y == 0 ||
        grid.z == 0 || grid.y > 65535 || grid.z > 65535 || dyn > kMaxDynSmem) {
        last_error = cudaErrorInvalidValue;
        return;
    }
    Block *b = new Block;
    Fiber *fib = new Fiber[nt];
    unsigned char *smem = dyn ? (unsigned char *)aligned_alloc(128, (dyn + 127) / 128 * 128) : nullptr;
    b->body = &body;
    b->fib = fib;
    b->n = (int)nt;
    gridDim = grid;
    blockDim = block;
    cur_block = b;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx = {x, y, z};
                if (smem) {
                    memset(smem, 0xff, dyn);     // uninitialised on a GPU: make reads of it show
                    b->smem = smem;
                }
                run_block(*b);
            }
    cur_block = nullptr;
    free(smem);
    delete[] fib;
    delete b;
}

unsigned char *dyn_smem()
{
    if (!cur_block)
        die("dynamic shared memory outside a kernel");
    return cur_block->smem;
}

void sync_block() { yield(AT_BLOCK, 0); }
void sync_warp(unsigned mask) { yield(AT_WARP, mask); }

uint64_t *warp_slots()
{
    Block *b = cur_block;
    if (!b)
        die("warp operation outside a kernel");
    return b->slots + (b->cur & ~31);
}

unsigned warp_live()
{
    Block *b = cur_block;
    int w0 = b->cur & ~31;
    unsigned live = 0;
    for (int l = 0; l < 32 && w0 + l < b->n; l++)
        if (b->fib[w0 + l].state != DONE)
            live |= 1u << l;
    return live;
}

unsigned lane() { return cur_block ? (unsigned)cur_block->cur & 31u : 0u; }

cudaError_t take_error()
{
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

cudaError_t peek_error() { return last_error; }

} // namespace dsv4_emu

// ---- runtime: device memory is host memory ------------------------------------

cudaError_t cudaMalloc(void **p, size_t n)
{
    *p = aligned_alloc(256, (n + 255) / 256 * 256);
    if (!*p)
        return cudaErrorMemoryAllocation;
    if (n <= ((size_t)256 << 20))        // a GPU gives garbage; make reads of it show as NaN
        memset(*p, 0xff, n);
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaMallocHost(void **p, size_t n)
{
    *p = aligned_alloc(256, (n + 255) / 256 * 256);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind)
{
    if (n)
        memmove(d, s, n);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t)
{
    return cudaMemcpy(d, s, n, k);
}
cudaError_t cudaMemset(void *d, int v, size_t n)
{
    if (n)
        memset(d, v, n);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t) { return cudaMemset(d, v, n); }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return dsv4_emu::peek_error(); }
cudaError_t cudaDeviceSynchronize(void) { return dsv4_emu::peek_error(); }
cudaError_t cudaStreamCreate(cudaStream_t *s)
{
    static char token;                   // any non-null handle
    *s = (cudaStream_t)(void *)&token;
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaGetLastError(void) { return dsv4_emu::take_error(); }
cudaError_t cudaPeekAtLastError(void) { return dsv4_emu::peek_error(); }
cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
cudaError_t cudaRuntimeGetVersion(int *v) { *v = 0; return cudaSuccess; }
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    *total_b = (size_t)sysconf(_SC_PHYS_PAGES) * page;
    *free_b = (size_t)sysconf(_SC_AVPHYS_PAGES) * page;
    return cudaSuccess;
}
const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument (emulated launch configuration)";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    }
    return "unknown error";
}
const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    }
    return "cudaErrorUnknown";
}
