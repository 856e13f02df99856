/* convert — Hugging Face V4 checkpoint folder -> .dsv4 model file, and the
 * validation of either kind of input (what dsv4-convert runs).
 *
 * A checkpoint folder holds config.json, optionally generation_config.json,
 * tokenizer.json and tokenizer_config.json, and the safetensors shards with
 * model.safetensors.index.json.  Conversion is lossless (native FP8/FP4
 * encodings kept), streams tensor by tensor, and refuses a checkpoint with
 * any problem: nothing is written unless everything checks out.
 * Thread-safe; nothing global. */
#ifndef DSV4_CONVERT_H
#define DSV4_CONVERT_H

#include "config.h"
#include "model.h"
#include "safetensors.h"

/* What a path is. */
enum { DSV4_INPUT_HF = 1, DSV4_INPUT_MODEL = 2 };
/* Returns DSV4_INPUT_HF (folder or .safetensors file), DSV4_INPUT_MODEL
 * (.dsv4 signature), or a negative error naming the path. */
int dsv4_input_kind(const char *path, dsv4_err *err);

typedef struct dsv4_convert_opts {
    const char *tokenizer_path;   /* tokenizer.json to embed instead of/in absence of the folder's (may be NULL) */
    const char *tool;             /* "dsv4-convert 0.1.0", recorded in dsv4.json */
} dsv4_convert_opts;

/* Convert hf_dir into fd (a regular file).  Every problem found is reported;
 * returns 0 when the file was written, the number of problems (> 0) when the
 * checkpoint is invalid (fd's content is then garbage: discard it), or a
 * negative error. */
int dsv4_convert(const char *hf_dir, int fd, const dsv4_convert_opts *o, dsv4_report_fn report, void *rctx,
                 dsv4_progress_fn progress, void *pctx, uint8_t fingerprint[DSV4_FINGERPRINT_BYTES], dsv4_err *err);

/* Validate an HF checkpoint or a .dsv4 file without writing anything; returns
 * the number of problems (0 = valid) or a negative error when the input
 * cannot be examined at all. */
int dsv4_check_input(const char *path, dsv4_report_fn report, void *rctx, dsv4_progress_fn progress, void *pctx,
                     dsv4_err *err);

/* Read a small file into memory (config.json & co): *data malloc'd and
 * NUL-terminated, caller frees.  DSV4_E_NOTFOUND if it does not exist. */
int dsv4_read_file(const char *path, size_t max, char **data, size_t *len, dsv4_err *err);

#endif
