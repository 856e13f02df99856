/* safetensors — read Hugging Face safetensors checkpoints (one file, or a
 * folder of shards with model.safetensors.index.json) through mmap, and write
 * single files (for the synthetic-checkpoint generator and tests).
 *
 * Reader invariants: the header is at most 100 MB and valid JSON; every dtype
 * is known; shapes have at most DSV4_MAX_DIMS non-negative dims; every
 * [begin, end) lies inside the data buffer, matches numel x dtype size, and
 * no two ranges overlap.  Nothing is copied: tensor data points into the
 * mappings, valid until dsv4_st_close.
 *
 * Problems: with a report callback, problems that concern one shard or one
 * tensor (missing or truncated shard, tensor listed in the index but absent,
 * bad header entry) are reported one by one and the affected tensors left out,
 * so a checker can list them all; without one, the first problem is returned
 * as an error.  Read-only after open; safe to share between threads. */
#ifndef DSV4_SAFETENSORS_H
#define DSV4_SAFETENSORS_H

#include <stdio.h>

#include "err.h"
#include "tensor.h"

typedef struct dsv4_st dsv4_st;

/* subject: the file or tensor name; msg: what is wrong (no trailing newline) */
typedef void (*dsv4_report_fn)(void *ctx, const char *subject, const char *msg);

/* path: a .safetensors file, or a folder with model.safetensors.index.json
 * (or a single model.safetensors). */
int  dsv4_st_open(dsv4_st **out, const char *path, dsv4_report_fn report, void *ctx, dsv4_err *err);
void dsv4_st_close(dsv4_st *st);

size_t dsv4_st_count(const dsv4_st *st);
const dsv4_tensor *dsv4_st_tensor(const dsv4_st *st, size_t i);    /* sorted by name */
const dsv4_tensor *dsv4_st_find(const dsv4_st *st, const char *name); /* NULL if absent */
const char *dsv4_st_file_of(const dsv4_st *st, size_t i);           /* shard path of tensor i */
/* Names listed in the index whose tensor could not be read (reported). */
size_t dsv4_st_missing_count(const dsv4_st *st);
uint64_t dsv4_st_total_bytes(const dsv4_st *st);                     /* sum of tensor bytes */

/* Writer: declare every tensor, then begin (writes the header), then write
 * each tensor's bytes in declaration order, then end.  Borrows f. */
typedef struct dsv4_stw dsv4_stw;
int  dsv4_stw_new(dsv4_stw **out, dsv4_err *err);
int  dsv4_stw_add(dsv4_stw *w, const char *name, dsv4_dtype dt, int ndim, const int64_t *shape, dsv4_err *err);
int  dsv4_stw_begin(dsv4_stw *w, FILE *f, dsv4_err *err);
int  dsv4_stw_write(dsv4_stw *w, const void *data, size_t n, dsv4_err *err);
int  dsv4_stw_end(dsv4_stw *w, dsv4_err *err);
void dsv4_stw_free(dsv4_stw *w);

#endif
