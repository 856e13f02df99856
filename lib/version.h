/* version — software and format versions, and what this build contains.
 * The software version and the file-format versions move independently:
 * readers accept any minor of a known major. */
#ifndef DSV4_VERSION_H
#define DSV4_VERSION_H

#include <stddef.h>

#define DSV4_VERSION_MAJOR 0
#define DSV4_VERSION_MINOR 1
#define DSV4_VERSION_PATCH 0
#define DSV4_VERSION_STRING "0.1.0"

#define DSV4_MODEL_FORMAT_MAJOR 1   /* .dsv4 model file, dsv4-model(5) */
#define DSV4_MODEL_FORMAT_MINOR 0
#define DSV4_KV_FORMAT_MAJOR 1      /* .kv snapshot, dsv4-snapshot(5) */
#define DSV4_KV_FORMAT_MINOR 0
#define DSV4_TOKS_FORMAT_MAJOR 1    /* token stream, dsv4-tokens(5) */
#define DSV4_TOKS_FORMAT_MINOR 0

/* One line into out: library versions (zstd, libsodium) and the CUDA
 * backend (runtime version) or "not built".  Does not touch the GPU. */
void dsv4_build_info(char *out, size_t cap);

/* One-time process initialisation (libsodium).  Safe to call many times;
 * returns 0 or DSV4_E_BUG if libsodium cannot initialise. */
int dsv4_init(void);

#endif
