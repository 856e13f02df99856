/* check — validation of a checkpoint's tensors against its config: the
 * inventory (missing, extra, misnamed, misshapen, mistyped tensors) and the
 * values (NaN/Inf in float tensors, NaN codes in e4m3 weights, scale bytes
 * that are NaN or out of the plausible range, hash-routing tables pointing
 * outside the expert range).
 *
 * Each problem goes to the report callback (subject = tensor name); the
 * functions return the number of problems found, or a negative error.  Views
 * are borrowed.  Thread-safe. */
#ifndef DSV4_CHECK_H
#define DSV4_CHECK_H

#include "config.h"
#include "safetensors.h"
#include "tensor.h"

/* Plausible E8M0 scale bytes: 2^-64 .. 2^32.  255 is NaN in E8M0. */
#define DSV4_SCALE_MIN_BYTE 63
#define DSV4_SCALE_MAX_BYTE 159

/* reencoded: also accept what dsv4-quant writes (a model file with a
 * quant.json blob): FP8/FP4/BF16/F32 matrices as Q2, Q3 or BF16 of the same
 * logical shape with QS8 scales, or none for BF16, and F32 tensors as BF16. */
int dsv4_check_inventory(const dsv4_config *c, const dsv4_tensor *const *views, size_t n, int reencoded,
                         dsv4_report_fn report, void *ctx, dsv4_err *err);
int dsv4_check_values(const dsv4_config *c, const dsv4_tensor *t, dsv4_report_fn report, void *ctx);

#endif
