/* model — the .dsv4 model file (format: dsv4-model(5), man/dsv4-model.5):
 * writer (streaming, tensor by tensor, bounded memory) and reader (mmap).
 *
 * Layout: a 4096-byte header region (signature, versions, offsets, model
 * fingerprint, BLAKE2b-256 of the metadata region and of the header), the
 * metadata region (blob table, blobs such as config.json and tokenizer.json
 * verbatim, tensor directory with a BLAKE2b-256 per tensor), then tensor data,
 * each tensor aligned to 4096 bytes in its native encoding.
 *
 * Ownership: dsv4_model owns its mapping; tensor views, blob pointers and the
 * config borrow from it and die with dsv4_model_close.  A model is read-only
 * after open and may be shared between threads. */
#ifndef DSV4_MODEL_H
#define DSV4_MODEL_H

#include <stdint.h>

#include "config.h"
#include "err.h"
#include "safetensors.h"
#include "tensor.h"

#define DSV4_MODEL_ALIGN 4096
#define DSV4_FINGERPRINT_BYTES 32
/* incompat_features bits (dsv4-model(5)): a reader refuses a file with a bit
 * it does not know. */
#define DSV4_MODEL_INCOMPAT_QBLOCK 1u   /* tensors in the Q2/Q3 block formats */
#define DSV4_MODEL_INCOMPAT_KNOWN  DSV4_MODEL_INCOMPAT_QBLOCK

typedef struct dsv4_model dsv4_model;

/* Open and validate structure: signature, major version, header and metadata
 * checksums, directory bounds, config.json.  Tensor data is not hashed here
 * (see dsv4_model_verify). */
int  dsv4_model_open(dsv4_model **out, const char *path, dsv4_err *err);
void dsv4_model_close(dsv4_model *m);

const dsv4_config *dsv4_model_config(const dsv4_model *m);
size_t dsv4_model_count(const dsv4_model *m);
const dsv4_tensor *dsv4_model_tensor(const dsv4_model *m, size_t i);   /* directory order */
const dsv4_tensor *dsv4_model_find(const dsv4_model *m, const char *name);
/* Named blob ("config.json", "tokenizer.json", "generation_config.json", ...);
 * returns NULL (and *len = 0) when absent. */
const char *dsv4_model_blob(const dsv4_model *m, const char *name, size_t *len);
size_t dsv4_model_blob_count(const dsv4_model *m);
const char *dsv4_model_blob_name(const dsv4_model *m, size_t i);
const uint8_t *dsv4_model_fingerprint(const dsv4_model *m);      /* 32 bytes */
void dsv4_model_fingerprint_hex(const dsv4_model *m, char out[2 * DSV4_FINGERPRINT_BYTES + 1]);
uint64_t dsv4_model_file_bytes(const dsv4_model *m);
void dsv4_model_version(const dsv4_model *m, int *major, int *minor);
const char *dsv4_model_path(const dsv4_model *m);

/* Progress callback for long work: done/total bytes. */
typedef void (*dsv4_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Hash every tensor and compare with the directory; each mismatch is
 * reported (subject = tensor name).  Returns the number of mismatches, or a
 * negative error. */
int dsv4_model_verify(const dsv4_model *m, dsv4_report_fn report, void *rctx,
                      dsv4_progress_fn progress, void *pctx, dsv4_err *err);

/* A named blob to embed. */
typedef struct dsv4_blob {
    const char *name;     /* at most 39 bytes */
    const void *data;
    size_t len;
} dsv4_blob;

/* Write a model file to fd (a regular file: the header is written last with
 * pwrite) from the given tensors (views: data borrowed) and blobs; blobs must
 * include "config.json".  Tensors are written in the order given.  Per-tensor
 * hook `each` (may be NULL) sees every tensor just before it is written (used
 * to run value checks in the same pass); a caller that owns the views may let
 * the hook produce the tensor's data then (data is read after the hook
 * returns; nbytes must not change), so a re-encoded file is written in
 * bounded memory.  Returns 0 or an error. */
typedef int (*dsv4_tensor_hook)(void *ctx, const dsv4_tensor *t, dsv4_err *err);
int dsv4_model_write(int fd, const dsv4_tensor *const *tensors, size_t n, const dsv4_blob *blobs, size_t nblobs,
                     dsv4_tensor_hook each, void *hctx, dsv4_progress_fn progress, void *pctx,
                     uint8_t fingerprint_out[DSV4_FINGERPRINT_BYTES], dsv4_err *err);

#endif
