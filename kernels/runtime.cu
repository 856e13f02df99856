// runtime — host-side facts about the CUDA runtime this build links, device
// memory and transfers, and the error plumbing every kernel file shares
// (DSV4_CU_TRY / DSV4_CU_LAUNCHED in lib/gpu.h).  The op kernels live beside
// it, one .cu per op family.
#include "gpu.h"

#include <stdlib.h>

extern "C" int dsv4_cu_runtime_version(void)
{
    int v = 0;
    if (cudaRuntimeGetVersion(&v) != cudaSuccess)
        return 0;
    return v;
}

extern "C" int dsv4_cu_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();             // "no device" is not an error for later calls
        return 0;
    }
    return n;
}

extern "C" int dsv4_cu_emulated(void)
{
#ifdef DSV4_CU_EMU
    return 1;
#else
    return 0;
#endif
}

extern "C" int dsv4_cu_fail(cudaError_t e, const char *what, const char *file, int line,
                            dsv4_err *err)
{
    return dsv4_err_set(err, DSV4_E_CUDA, "%s: %s (%s) at %s:%d", what, cudaGetErrorString(e),
                        cudaGetErrorName(e), file, line);
}

extern "C" int dsv4_cu_launched(const char *kernel, cudaStream_t s, const char *file, int line,
                                dsv4_err *err)
{
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return dsv4_cu_fail(e, kernel, file, line, err);
    const char *sync = getenv("DSV4_CUDA_SYNC");
    if (sync && *sync && *sync != '0') {
        e = cudaStreamSynchronize(s);
        if (e != cudaSuccess)
            return dsv4_cu_fail(e, kernel, file, line, err);
    }
    return 0;
}

extern "C" int dsv4_cu_alloc(void **p, size_t n, dsv4_err *err)
{
    *p = NULL;
    if (n == 0)
        return 0;
    cudaError_t e = cudaMalloc(p, n);
    if (e != cudaSuccess) {
        *p = NULL;
        cudaGetLastError();             // allocation failures are not sticky; clear them
        dsv4_cu_fail(e, "cudaMalloc", __FILE__, __LINE__, err);
        return dsv4_err_prefix(err, "allocating %zu bytes of device memory", n);
    }
    return 0;
}

extern "C" void dsv4_cu_free(void *p)
{
    if (p)
        cudaFree(p);
}

extern "C" int dsv4_cu_upload(void *dev, const void *host, size_t n, dsv4_err *err)
{
    if (n)
        DSV4_CU_TRY(cudaMemcpy(dev, host, n, cudaMemcpyHostToDevice), err);
    return 0;
}

extern "C" int dsv4_cu_download(void *host, const void *dev, size_t n, dsv4_err *err)
{
    if (n)
        DSV4_CU_TRY(cudaMemcpy(host, dev, n, cudaMemcpyDeviceToHost), err);
    return 0;
}

extern "C" int dsv4_cu_copy(void *dst, const void *src, size_t n, dsv4_err *err)
{
    if (n)
        DSV4_CU_TRY(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToDevice), err);
    return 0;
}

extern "C" int dsv4_cu_copy2d(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                              size_t height, dsv4_err *err)
{
    if (width && height)
        DSV4_CU_TRY(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, cudaMemcpyDeviceToDevice, 0),
                    err);
    return 0;
}

extern "C" int dsv4_cu_sync(dsv4_stream s, dsv4_err *err)
{
    DSV4_CU_TRY(cudaStreamSynchronize(s), err);
    return 0;
}
