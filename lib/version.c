#include "version.h"
#include "err.h"

#include <sodium.h>
#include <stdio.h>
#include <zstd.h>

#ifndef DSV4_HAVE_CUDA
#define DSV4_HAVE_CUDA 0
#endif
#if DSV4_HAVE_CUDA
int dsv4_cu_runtime_version(void);   /* kernels/runtime.cu */
#endif

void dsv4_build_info(char *info, size_t cap)
{
#if DSV4_HAVE_CUDA
    int rt = dsv4_cu_runtime_version();
    snprintf(info, cap, "zstd %s, libsodium %s, CUDA backend: built (runtime %d.%d)",
             ZSTD_versionString(), sodium_version_string(), rt / 1000, (rt % 1000) / 10);
#else
    snprintf(info, cap, "zstd %s, libsodium %s, CUDA backend: not built",
             ZSTD_versionString(), sodium_version_string());
#endif
}

int dsv4_init(void)
{
    return sodium_init() < 0 ? DSV4_E_BUG : 0;
}
