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

// Switching fibers: swapcontext saves and restores the signal mask with a
// system call each time, which dominated the emulator's run time; on x86-64
// a six-register switch does the same job for code that never changes the
// signal mask or the FP control words between switches.  Under ASan each
// switch is announced with the sanitizer's fiber calls, so that it follows
// the stacks (it only warns about, and may misread, swapcontext).
#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifndef EMU_ASAN
#define EMU_ASAN 0
#endif
#if EMU_ASAN
extern "C" void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
extern "C" void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old, size_t *size_old);
extern "C" void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#endif
#if defined(__x86_64__) && !defined(DSV4_EMU_UCONTEXT)
#define EMU_FAST_SWITCH 1
extern "C" void dsv4_emu_switch(void **save_sp, void *load_sp);
asm(".text\n"
    ".globl dsv4_emu_switch\n"
    ".type dsv4_emu_switch,@function\n"
    "dsv4_emu_switch:\n"
    "    pushq %rbp\n    pushq %rbx\n    pushq %r12\n    pushq %r13\n    pushq %r14\n    pushq %r15\n"
    "    movq %rsp, (%rdi)\n"
    "    movq %rsi, %rsp\n"
    "    popq %r15\n    popq %r14\n    popq %r13\n    popq %r12\n    popq %rbx\n    popq %rbp\n"
    "    ret\n"
    ".size dsv4_emu_switch, .-dsv4_emu_switch\n");
#else
#define EMU_FAST_SWITCH 0
#endif

namespace dsv4_emu {
namespace {

enum { RUN, AT_BLOCK, AT_WARP, DONE };

struct Fiber {
#if EMU_FAST_SWITCH
    void *sp;
    char *stack;                         // its stack's lowest byte (ASan's bookkeeping)
#else
    ucontext_t ctx;
#endif
    int state;
    unsigned mask;                       // AT_WARP: the lanes it waits for
    uint3 tid;                           // its threadIdx
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
#if EMU_FAST_SWITCH
    void *sched_sp = nullptr;
    const void *sched_bottom = nullptr; // the scheduler's stack, as ASan reports it
    size_t sched_size = 0;
#endif
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
    threadIdx = b.fib[i].tid;
}

// Switch from the running fiber (or the scheduler) to the other side.
void to_sched(Fiber &f)
{
#if EMU_FAST_SWITCH
#if EMU_ASAN
    void *fake = nullptr;
    Block *b = cur_block;
    __sanitizer_start_switch_fiber(f.state == DONE ? nullptr : &fake, b->sched_bottom, b->sched_size);
    dsv4_emu_switch(&f.sp, b->sched_sp);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    dsv4_emu_switch(&f.sp, cur_block->sched_sp);
#endif
#else
    if (swapcontext(&f.ctx, &cur_block->sched) != 0)
        die("swapcontext failed");
#endif
}

void to_fiber(Block &b, Fiber &f)
{
#if EMU_FAST_SWITCH
#if EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, f.stack, kStack);
    dsv4_emu_switch(&b.sched_sp, f.sp);
    __sanitizer_finish_switch_fiber(fake, &b.sched_bottom, &b.sched_size);
#else
    dsv4_emu_switch(&b.sched_sp, f.sp);
#endif
#else
    if (swapcontext(&b.sched, &f.ctx) != 0)
        die("swapcontext failed");
#endif
}

void fiber_main()
{
    Block *b = cur_block;
#if EMU_FAST_SWITCH && EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &b->sched_bottom, &b->sched_size);
#endif
    (*b->body)();
    b->fib[b->cur].state = DONE;
#if EMU_FAST_SWITCH
    to_sched(b->fib[b->cur]);            // never resumed
    die("finished fiber resumed");
#endif                                   // (ucontext: uc_link returns to the scheduler)
}

void fiber_init(Block &b, Fiber &f, char *stack, int i)
{
#if EMU_FAST_SWITCH
    // The first switch pops six zero registers and "returns" into
    // fiber_main with the stack aligned as after a call.  The tops are
    // staggered: stacks kStack apart would all map to the same cache sets.
    uintptr_t top = ((uintptr_t)stack + kStack - (uintptr_t)(i % 97) * 320) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = nullptr;                     // fiber_main's own return address (never used)
    *--sp = (void *)fiber_main;
    for (int r = 0; r < 6; r++)
        *--sp = nullptr;
    f.sp = sp;
    f.stack = stack;
#if EMU_ASAN
    // A finished fiber's last frames (fiber_main, to_sched, near the top)
    // never returned: clear their redzones before the stack serves another
    // thread.  Every deeper frame returned and cleared its own.
    __asan_unpoison_memory_region((char *)top - 16384, (size_t)(stack + kStack - ((char *)top - 16384)));
#endif
#else
    if (getcontext(&f.ctx) != 0)
        die("getcontext failed");
    f.ctx.uc_stack.ss_sp = stack;
    f.ctx.uc_stack.ss_size = kStack;
    f.ctx.uc_link = &b.sched;
    makecontext(&f.ctx, fiber_main, 0);
#endif
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
    to_sched(f);
}

// Releases the lanes of the warp at w0 whose warp barrier is complete
// (every live lane of their mask waits at one); true when any was.
bool release_warp(Block &b, int w0)
{
    int wn = b.n - w0 < 32 ? b.n - w0 : 32;
    unsigned live = 0, waiting = 0;
    for (int l = 0; l < wn; l++) {
        int st = b.fib[w0 + l].state;
        if (st != DONE)
            live |= 1u << l;
        if (st == AT_WARP)
            waiting |= 1u << l;
    }
    unsigned go = 0;
    for (int l = 0; l < wn; l++)
        if ((waiting >> l & 1u) && (b.fib[w0 + l].mask & live & ~waiting) == 0)
            go |= 1u << l;
    for (int l = 0; l < wn; l++)
        if (go >> l & 1u)
            b.fib[w0 + l].state = RUN;
    return go != 0;
}

// Runs the warp at w0 until none of its lanes can go on by itself (all
// done, at __syncthreads, or at a warp barrier that waits for others).
void run_warp(Block &b, int w0)
{
    int wn = b.n - w0 < 32 ? b.n - w0 : 32;
    for (;;) {
        bool ran = false;
        for (int i = w0; i < w0 + wn; i++)
            if (b.fib[i].state == RUN) {
                b.cur = i;
                set_coords(b, i);
                to_fiber(b, b.fib[i]);
                ran = true;
            }
        if (!ran || !release_warp(b, w0))
            return;
    }
}

void run_block(Block &b)
{
    char *st = get_stacks();
    unsigned bx = blockDim.x, by = blockDim.y;
    for (int i = 0; i < b.n; i++) {
        Fiber &f = b.fib[i];
        fiber_init(b, f, st + (size_t)i * kStack, i);
        f.state = RUN;
        f.mask = 0;
        f.tid = {(unsigned)i % bx, ((unsigned)i / bx) % by, (unsigned)i / (bx * by)};
    }
    // Warps run one after another to their next __syncthreads (warp barriers
    // are settled inside the warp); then the block barrier opens.
    for (;;) {
        for (int w0 = 0; w0 < b.n; w0 += 32)
            run_warp(b, w0);
        bool all_done = true, any = false;
        for (int i = 0; i < b.n; i++) {
            if (b.fib[i].state == AT_WARP) {        // waits for lanes that never come
                set_coords(b, i);
                die("deadlock: a warp operation waits for lanes that have finished or wait elsewhere");
            }
            all_done &= b.fib[i].state == DONE;
        }
        if (all_done)
            return;
        for (int i = 0; i < b.n; i++)
            if (b.fib[i].state == AT_BLOCK) {
                b.fib[i].state = RUN;
                any = true;
            }
        if (!any) {
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
    // the emulated device has the host's memory, no more
    if (n > (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE)) {
        *p = nullptr;
        return cudaErrorMemoryAllocation;
    }
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
cudaError_t cudaMemcpy2DAsync(void *d, size_t dp, const void *s, size_t sp, size_t w, size_t h,
                              cudaMemcpyKind, cudaStream_t)
{
    if (w > dp || w > sp)
        return cudaErrorInvalidValue;
    for (size_t r = 0; r < h; r++)
        memmove((char *)d + r * dp, (const char *)s + r * sp, w);
    return cudaSuccess;
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
