/* requant — re-encoding the tensors of a .dsv4 model file by rules (what
 * dsv4-quant runs): rules "GLOB=FORMAT" and named recipes, the per-tensor
 * plan with sizes, and the streaming rewrite with per-tensor error.
 *
 * A rule maps tensor names matching a glob (fnmatch(3), '*' crosses dots)
 * to a format: Q2, Q3 (quant.h), BF16, or copy.  The last matching rule
 * decides.  A rule applies to a weight; its X.scale sibling follows it (a
 * QS8 scale for Q2/Q3, none for BF16) and is never matched on its own.
 * Everything not re-encoded is copied bit-exactly.
 *
 * Ownership: a dsv4_qrules and a dsv4_qplan own their memory (free with
 * their _free); the plan borrows the tensor views it was built from.
 * Thread-safe per object; nothing global. */
#ifndef DSV4_REQUANT_H
#define DSV4_REQUANT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "model.h"
#include "pool.h"

enum dsv4_qtarget { DSV4_QT_COPY = 0, DSV4_QT_Q2, DSV4_QT_Q3, DSV4_QT_BF16, DSV4_QT_COUNT };

const char *dsv4_qtarget_name(int target);   /* "copy", "Q2", "Q3", "BF16" */

typedef struct dsv4_qrecipe {
    const char *name;
    const char *summary;        /* one line for --help */
    const char *rules;          /* rules separated by spaces */
} dsv4_qrecipe;

/* The built-in recipes, NULL-terminated. */
const dsv4_qrecipe *dsv4_qrecipes(void);

typedef struct dsv4_qrule {
    char *glob;
    int target;
    char *text;                 /* as given, for reports and metadata */
    size_t matched;             /* tensors it decided (set by planning) */
} dsv4_qrule;

typedef struct dsv4_qrules {
    dsv4_qrule *r;
    size_t n;
    char *recipes;              /* names of the recipes added, space-separated (or NULL) */
} dsv4_qrules;

#define DSV4_QRULES_INIT { NULL, 0, NULL }

/* Add one "GLOB=FORMAT" rule (FORMAT case-insensitive); a malformed rule or
 * an unknown format is DSV4_E_INVALID naming it. */
int dsv4_qrules_add(dsv4_qrules *r, const char *spec, dsv4_err *err);
/* Add a recipe's rules; DSV4_E_NOTFOUND for an unknown name. */
int dsv4_qrules_add_recipe(dsv4_qrules *r, const char *name, dsv4_err *err);
void dsv4_qrules_free(dsv4_qrules *r);

/* One output tensor of the plan. */
typedef struct dsv4_qitem {
    size_t src;                 /* input tensor index */
    size_t pair;                /* weight: its .scale, SIZE_MAX if none; scale: its weight */
    int target;                 /* DSV4_QT_COPY: copied as is */
    int is_scale;               /* the scale half of a re-encoded pair */
    int rule;                   /* deciding rule index, -1 */
    int64_t n, k;               /* logical matrix of a re-encoded weight */
    dsv4_tensor out;            /* the output view (data filled while writing) */
    char *name;                 /* owned name of a scale the plan adds, or NULL */
    size_t mate;                /* item index of the other half of a re-encoded pair, SIZE_MAX */
} dsv4_qitem;

typedef struct dsv4_qplan {
    dsv4_qitem *items;          /* output order = input order, dropped scales left out */
    size_t n;
    const dsv4_tensor *const *in;
    size_t n_in;
    uint64_t bytes_in, bytes_out;      /* all tensors */
    uint64_t q_bytes_in, q_bytes_out;  /* re-encoded weights with their scales */
    int64_t q_params;                  /* logical elements re-encoded */
    size_t n_requant;
} dsv4_qplan;

/* Build the plan for tensors in[n_in].  A rule that cannot apply to a
 * tensor it matches (format vs dtype or shape) is an error naming both; a
 * rule that matches nothing is reported as a warning (subject = rule). */
int dsv4_qplan_build(dsv4_qplan *p, const dsv4_qrules *r, const dsv4_tensor *const *in, size_t n_in,
                     dsv4_report_fn warn, void *wctx, dsv4_err *err);
void dsv4_qplan_free(dsv4_qplan *p);

/* Tensor views (data NULL) for the inventory a config implies, to plan
 * sizes without weights; *views and *store malloc'd, caller frees both. */
int dsv4_qplan_config_views(const dsv4_config *c, dsv4_tensor **store, const dsv4_tensor ***views, size_t *n,
                            dsv4_err *err);

/* Error of one re-encoded weight against its source values. */
typedef struct dsv4_qstat {
    const dsv4_qitem *item;
    double rmse, max_abs, rms_src;     /* rms of the source values, for relative error */
} dsv4_qstat;
typedef void (*dsv4_qstat_fn)(void *ctx, const dsv4_qstat *st);

typedef struct dsv4_requant_opts {
    const char *tool;           /* "dsv4-quant 0.1.0", recorded in quant.json */
    dsv4_pool *pool;            /* rows of a tensor in parallel (NULL = caller's thread) */
} dsv4_requant_opts;

/* Write the re-encoded model to fd (a regular file): tensors per the plan,
 * the source's blobs verbatim, and a "quant.json" blob with the source
 * fingerprint and the rules.  One weight (and its scale) is in memory at a
 * time.  stat (may be NULL) is called for each re-encoded weight. */
int dsv4_requant_write(const dsv4_model *src, dsv4_qplan *p, const dsv4_qrules *r, int fd,
                       const dsv4_requant_opts *o, dsv4_qstat_fn stat, void *sctx, dsv4_progress_fn progress,
                       void *pctx, uint8_t fingerprint[DSV4_FINGERPRINT_BYTES], dsv4_err *err);

#endif
