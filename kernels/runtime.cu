// runtime — host-side facts about the CUDA runtime this build links.
// Kept tiny on purpose: it is what proves, in every CI build, that kernels/
// compiles and links; the op kernels live beside it, one .cu per op family.
#include <cuda_runtime.h>

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
    if (cudaGetDeviceCount(&n) != cudaSuccess)
        return 0;
    return n;
}
