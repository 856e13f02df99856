/* cuengine — the DeepSeek-V4 forward pass on a CUDA device, step for step the
 * CPU engine's (engine.c, attn.c, moe.c) with the kernels of kernels/, and
 * the KV state kept on the device in the layouts of kvstate.h.
 *
 * The GPU engine is made from an open CPU engine, whose bound weight views
 * it uploads in their stored encodings (FP8/FP4/BF16/F32; nothing is
 * expanded) and whose config and RoPE tables it shares; the CPU engine must
 * outlive it.  The device KV state converts to and from a host dsv4_kvstate
 * byte for byte (the same compact entries, keys and compressor rows), which
 * is how snapshots are written from and read into the device: a snapshot
 * written by either backend resumes on the other.
 *
 * In a build without CUDA every call fails with DSV4_E_UNSUPPORTED and says
 * so; dsv4_cu_available() tells first.  Ownership: each object owns its
 * device memory; free with its _close/_free.  One forward call at a time per
 * engine. */
#ifndef DSV4_CUENGINE_H
#define DSV4_CUENGINE_H

#include <stdint.h>

#include "config.h"
#include "engine.h"
#include "err.h"
#include "kvstate.h"
#include "sample.h"

typedef struct dsv4_cuengine dsv4_cuengine;
typedef struct dsv4_cukv dsv4_cukv;

/* 1 when this build has the CUDA backend and a device is present. */
int dsv4_cu_available(void);

/* Upload the weights bound by cpu; progress (may be NULL) is called with
 * bytes done and total after each tensor. */
typedef void (*dsv4_cu_progress_fn)(void *ctx, uint64_t done, uint64_t total);
int  dsv4_cuengine_open(dsv4_cuengine **out, dsv4_engine *cpu, dsv4_cu_progress_fn progress, void *pctx,
                        dsv4_err *err);
void dsv4_cuengine_close(dsv4_cuengine *g);
/* Device bytes held by the weights. */
uint64_t dsv4_cuengine_bytes(const dsv4_cuengine *g);

/* A fresh device state for the engine's model (as dsv4_kv_new). */
int  dsv4_cukv_new(dsv4_cukv **out, const dsv4_config *c, int compact, dsv4_err *err);
void dsv4_cukv_free(dsv4_cukv *d);
/* Replace the device state by the host state h (same model and layout). */
int  dsv4_cukv_upload(dsv4_cukv *d, const dsv4_kvstate *h, dsv4_err *err);
/* Copy the device state into the host state h (made by dsv4_kv_new for the
 * same model and layout; its previous contents are replaced). */
int  dsv4_cukv_download(const dsv4_cukv *d, dsv4_kvstate *h, dsv4_err *err);
int64_t dsv4_cukv_tokens(const dsv4_cukv *d);

/* As dsv4_forward, on the device: tokens, logits and hidden are host memory. */
int dsv4_cuforward(dsv4_cuengine *g, dsv4_cukv *s, const uint32_t *tokens, int64_t n, int logits_mode,
                   float *logits, float *hidden, dsv4_err *err);
/* As dsv4_mtp_forward (the MTP draft block at positions s->n_mtp ...), on
 * the device: hidden, next_tokens and logits are host memory. */
int dsv4_cumtp_forward(dsv4_cuengine *g, dsv4_cukv *s, const float *hidden, const uint32_t *next_tokens,
                       int64_t n, int logits_mode, float *logits, dsv4_err *err);
/* As dsv4_engine_logits, on the device (host arrays). */
int dsv4_cuengine_logits(dsv4_cuengine *g, const float *hidden, int64_t n, float *logits, dsv4_err *err);


/* dsv4_sample on the device from the last logits row the engine computed
 * (the last position of the latest dsv4_cuforward with logits, or of
 * dsv4_cuengine_logits), with the draw dsv4_sample_uniform(seed, pos): the
 * same token as dsv4_sample on those logits (lib/gpu_sample.h). */
int dsv4_cuengine_sample(dsv4_cuengine *g, const dsv4_sample_opts *o, uint64_t seed, int64_t pos, uint32_t *token,
                         dsv4_err *err);

#endif
