/* gpu — the C API of the CUDA kernels in kernels/ (built only when
 * DSV4_HAVE_CUDA is 1; a CPU-only build has none of these symbols, so callers
 * guard their use with #if DSV4_HAVE_CUDA).
 *
 * Conventions (STYLE.md §4.4–4.6): every fallible call returns 0 or a
 * negative DSV4_E_* and fills the caller's dsv4_err; CUDA failures are
 * DSV4_E_CUDA with the runtime's text, the failed call and file:line.
 * Pointers named "device" must come from dsv4_cu_alloc (or cudaMalloc); the
 * calls borrow every pointer for the duration of the call only.  Kernel
 * launches are asynchronous on the given stream (NULL = the default stream):
 * an error inside a kernel may surface at the next dsv4_cu_sync; set
 * DSV4_CUDA_SYNC=1 to synchronise after every launch when bisecting a fault.
 * Thread-safety: as the CUDA runtime (any thread, one device). */
#ifndef DSV4_GPU_H
#define DSV4_GPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "err.h"

/* Same type as cudaStream_t, usable from C without the CUDA headers. */
typedef struct CUstream_st *dsv4_stream;

/* ---- runtime (kernels/runtime.cu) ------------------------------------- */

int  dsv4_cu_runtime_version(void);      /* e.g. 13000; 0 when unknown */
int  dsv4_cu_device_count(void);         /* 0 when no device or no driver */
/* 1 in the emulated build (kernels/emu.h: the kernels run on the CPU, for
 * tests), 0 on a real device.  Tests use it to pick smaller cases. */
int  dsv4_cu_emulated(void);

int  dsv4_cu_alloc(void **p, size_t n, dsv4_err *err);   /* device memory; n = 0 gives NULL */
void dsv4_cu_free(void *p);                              /* NULL is fine */
int  dsv4_cu_upload(void *dev, const void *host, size_t n, dsv4_err *err);
int  dsv4_cu_download(void *host, const void *dev, size_t n, dsv4_err *err);
int  dsv4_cu_copy(void *dst, const void *src, size_t n, dsv4_err *err);  /* device to device */
/* height rows of width bytes, device to device, rows dpitch / spitch bytes apart. */
int  dsv4_cu_copy2d(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                    dsv4_err *err);
int  dsv4_cu_sync(dsv4_stream s, dsv4_err *err);         /* waits for s; reports kernel faults */

/* ---- dequantisation (kernels/dequant.cu) ------------------------------ */

/* Input formats (spec/ARCH.md §10.2). */
enum {
    DSV4_DQ_FP8 = 1,  /* e4m3 codes W[n,k], E8M0 scales S[ceil(n/128), ceil(k/128)] */
    DSV4_DQ_FP4 = 2   /* packed e2m1 bytes [n, ceil(k/2)] (low nibble = even k),
                         E8M0 scales S[n, ceil(k/32)] */
};
/* Output element types. */
enum {
    DSV4_DQ_F32  = 0, /* bit-identical to dsv4_dequant_fp8_rows / _fp4_rows (codec.h) */
    DSV4_DQ_BF16 = 1  /* dsv4_f32_to_bf16 of the f32 value (RNE; NaN -> 0x7fc0) */
};

/* Rows [r0, r1) of the logical weight [n, k] go to out[(r1-r0) * k] (row
 * major, dense).  w and s point at row 0 of the whole tensor, as the
 * reference functions in codec.h take them. */
typedef struct dsv4_dequant_args {
    int fmt;            /* DSV4_DQ_FP8 or DSV4_DQ_FP4 */
    int out_type;       /* DSV4_DQ_F32 or DSV4_DQ_BF16 */
    int64_t n, k;       /* logical shape */
    int64_t r0, r1;     /* 0 <= r0 <= r1 <= n */
    const uint8_t *w;   /* codes */
    const uint8_t *s;   /* E8M0 scale bytes */
    void *out;          /* float or uint16_t (bf16 bits) */
} dsv4_dequant_args;

/* Byte sizes of the whole w and s tensors for fmt and [n, k]; 0 for a bad fmt. */
static inline int64_t dsv4_dequant_wbytes(int fmt, int64_t n, int64_t k)
{
    return fmt == DSV4_DQ_FP8 ? n * k : fmt == DSV4_DQ_FP4 ? n * ((k + 1) / 2) : 0;
}
static inline int64_t dsv4_dequant_sbytes(int fmt, int64_t n, int64_t k)
{
    return fmt == DSV4_DQ_FP8 ? ((n + 127) / 128) * ((k + 127) / 128)
         : fmt == DSV4_DQ_FP4 ? n * ((k + 31) / 32) : 0;
}

/* Launch on stream s with device pointers a->w, a->s, a->out.  Any shape and
 * alignment works; the fast path needs k % 4 == 0, w 4-byte (FP8) or 2-byte
 * (FP4) aligned and out 16-byte (f32) or 8-byte (bf16) aligned, which
 * cudaMalloc'd buffers are.  DSV4_E_INVALID / DSV4_E_RANGE for bad arguments. */
int dsv4_cu_dequant(const dsv4_dequant_args *a, dsv4_stream s, dsv4_err *err);

/* Convenience (tests, tools): a->w, a->s, a->out are HOST pointers; uploads
 * the whole w and s, runs dsv4_cu_dequant, downloads rows [r0, r1). */
int dsv4_cu_dequant_host(const dsv4_dequant_args *a, dsv4_err *err);

#ifdef __cplusplus
}
#endif

/* ---- for the .cu files of kernels/ only ------------------------------- */
#if defined(__CUDACC__) || (defined(DSV4_CU_EMU) && defined(__cplusplus))
#ifdef DSV4_CU_EMU
#include "emu.h"
#else
#include <cuda_runtime.h>
#endif

/* Fill err with DSV4_E_CUDA for error e from `what` at file:line; returns it. */
extern "C" int dsv4_cu_fail(cudaError_t e, const char *what, const char *file, int line,
                            dsv4_err *err);
/* After a launch: cudaGetLastError, plus a stream sync when DSV4_CUDA_SYNC=1. */
extern "C" int dsv4_cu_launched(const char *kernel, cudaStream_t s, const char *file, int line,
                                dsv4_err *err);

#define DSV4_CU_TRY(expr, err) do { cudaError_t e_ = (expr); \
    if (e_ != cudaSuccess) return dsv4_cu_fail(e_, #expr, __FILE__, __LINE__, (err)); } while (0)
#define DSV4_CU_LAUNCHED(name, s, err) dsv4_cu_launched((name), (s), __FILE__, __LINE__, (err))

/* Every launch goes through DSV4_LAUNCH so that the emulated build
 * (kernels/emu.h) can run it; kernel must be one macro argument (give a
 * template instance a local name first).  Then check with DSV4_CU_LAUNCHED. */
/* Dynamic shared memory inside a kernel: DSV4_DYN_SMEM(float, buf); declares
 * `float *buf` at the launch's dynamic shared memory (16-byte aligned). */
#ifdef DSV4_CU_EMU
#define DSV4_LAUNCH(kernel, grid, block, smem, stream, ...) \
    DSV4_EMU_LAUNCH(kernel, grid, block, smem, stream, __VA_ARGS__)
#define DSV4_DYN_SMEM(type, name) type *name = reinterpret_cast<type *>(::dsv4_emu::dyn_smem())
#else
#define DSV4_LAUNCH(kernel, grid, block, smem, stream, ...) \
    kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#define DSV4_DYN_SMEM(type, name) extern __shared__ __align__(16) unsigned char dsv4_dyn_smem_[]; \
    type *name = reinterpret_cast<type *>(dsv4_dyn_smem_)
#endif
#endif

#endif
