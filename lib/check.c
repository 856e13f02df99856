/* check — checkpoint validation against the config (see check.h). */
#include "check.h"
#include "buf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_view(const void *a, const void *b)
{
    return strcmp((*(const dsv4_tensor *const *)a)->name, (*(const dsv4_tensor *const *)b)->name);
}

static int cmp_spec(const void *a, const void *b)
{
    return strcmp(((const dsv4_tensor_spec *)a)->name, ((const dsv4_tensor_spec *)b)->name);
}

/* A dsv4-quant re-encoding (check.h) of the tensor s describes; the engine
 * checks the exact scale count at load. */
static int reencoded(const dsv4_tensor_spec *s, const dsv4_tensor *t)
{
    if (s->role == DSV4_ROLE_SCALE)
        return t->dtype == DSV4_DT_QS8 && t->ndim == 2;
    int plain = s->role == DSV4_ROLE_OTHER && (s->dtype == DSV4_DT_BF16 || s->dtype == DSV4_DT_F32);
    if (plain && t->dtype == DSV4_DT_BF16 && s->dtype == DSV4_DT_F32 && t->ndim == s->ndim &&
        !memcmp(t->shape, s->shape, sizeof t->shape[0] * (size_t)s->ndim))
        return 1;
    if ((s->role != DSV4_ROLE_FP8_WEIGHT && s->role != DSV4_ROLE_FP4_WEIGHT && !plain) || s->ndim != 2 ||
        t->ndim != 2 || t->shape[0] != s->shape[0])
        return 0;
    int64_t k = s->shape[1] * (s->role == DSV4_ROLE_FP4_WEIGHT ? 2 : 1);
    return (t->dtype == DSV4_DT_Q2 && t->shape[1] * 4 == k) || (t->dtype == DSV4_DT_Q3 && t->shape[1] * 8 == 3 * k) ||
           (t->dtype == DSV4_DT_BF16 && t->shape[1] == k);
}

/* A scale that a weight re-encoded to BF16 no longer needs. */
static int scale_dropped(const dsv4_tensor_spec *s, const dsv4_tensor *const *v, size_t n)
{
    size_t l = strlen(s->name), lo = 0, hi = n;
    char w[128];
    if (s->role != DSV4_ROLE_SCALE || l < 6 || l > 100)
        return 0;
    snprintf(w, sizeof w, "%.*s.weight", (int)(l - 6), s->name);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(v[mid]->name, w);
        if (!c)
            return v[mid]->dtype == DSV4_DT_BF16;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

int dsv4_check_inventory(const dsv4_config *c, const dsv4_tensor *const *views, size_t n, int requant,
                         dsv4_report_fn report, void *ctx, dsv4_err *err)
{
    dsv4_tensor_spec *spec = NULL;
    const dsv4_tensor **v = NULL;
    size_t ns, i = 0, j = 0;
    int bad = 0, rc;
    if ((rc = dsv4_config_tensors(c, &spec, &ns, err)))
        return rc;
    v = malloc((n ? n : 1) * sizeof *v);
    if (!v) {
        free(spec);
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    }
    memcpy(v, views, n * sizeof *v);
    qsort(v, n, sizeof *v, cmp_view);
    qsort(spec, ns, sizeof *spec, cmp_spec);
    /* merge the two sorted lists */
    while (i < ns || j < n) {
        int d = i == ns ? 1 : j == n ? -1 : strcmp(spec[i].name, v[j]->name);
        char msg[256], want[96], got[96];
        if (d < 0 && requant && scale_dropped(&spec[i], v, n)) {
            i++;
        } else if (d < 0) {
            dsv4_shape_str(spec[i].shape, spec[i].ndim, want, sizeof want);
            snprintf(msg, sizeof msg, "missing (expected %s %s)", dsv4_dtype_name(spec[i].dtype), want);
            report(ctx, spec[i].name, msg);
            bad++;
            i++;
        } else if (d > 0 && requant && v[j]->dtype == DSV4_DT_QS8) {
            j++;    /* the scale dsv4-quant adds to a re-encoded BF16/F32 matrix */
        } else if (d > 0) {
            report(ctx, v[j]->name, "unexpected tensor (not implied by config.json)");
            bad++;
            j++;
        } else {
            int shape_ok = spec[i].ndim == v[j]->ndim;
            if (requant && reencoded(&spec[i], v[j])) {
                i++;
                j++;
                continue;
            }
            for (int k = 0; shape_ok && k < spec[i].ndim; k++)
                shape_ok = spec[i].shape[k] == v[j]->shape[k];
            if (spec[i].dtype != v[j]->dtype) {
                snprintf(msg, sizeof msg, "dtype %s, expected %s", dsv4_dtype_name(v[j]->dtype),
                         dsv4_dtype_name(spec[i].dtype));
                report(ctx, v[j]->name, msg);
                bad++;
            }
            if (!shape_ok) {
                dsv4_shape_str(spec[i].shape, spec[i].ndim, want, sizeof want);
                dsv4_shape_str(v[j]->shape, v[j]->ndim, got, sizeof got);
                snprintf(msg, sizeof msg, "shape %s, expected %s", got, want);
                report(ctx, v[j]->name, msg);
                bad++;
            }
            i++;
            j++;
        }
    }
    free(v);
    free(spec);
    return bad;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !memcmp(s + a - b, suf, b);
}

int dsv4_check_values(const dsv4_config *c, const dsv4_tensor *t, dsv4_report_fn report, void *ctx)
{
    const uint8_t *p = t->data;
    uint64_t n = t->nbytes / (dsv4_dtype_size(t->dtype) ? dsv4_dtype_size(t->dtype) : 1);
    uint64_t nan = 0, inf = 0, lo = 0, hi = 0, first = UINT64_MAX;
    char msg[200];
    int bad = 0;
    switch (t->dtype) {
    case DSV4_DT_BF16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t b = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
            if ((b & 0x7f80) == 0x7f80) {
                if (b & 0x7f) nan++; else inf++;
                if (first == UINT64_MAX) first = i;
            }
        }
        break;
    case DSV4_DT_F16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t b = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
            if ((b & 0x7c00) == 0x7c00) {
                if (b & 0x3ff) nan++; else inf++;
                if (first == UINT64_MAX) first = i;
            }
        }
        break;
    case DSV4_DT_F32:
        for (uint64_t i = 0; i < n; i++) {
            uint32_t b = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
                         (uint32_t)p[4 * i + 3] << 24;
            if ((b & 0x7f800000u) == 0x7f800000u) {
                if (b & 0x7fffff) nan++; else inf++;
                if (first == UINT64_MAX) first = i;
            }
        }
        break;
    case DSV4_DT_F8_E4M3:
        for (uint64_t i = 0; i < n; i++)
            if ((p[i] & 0x7f) == 0x7f) {
                nan++;
                if (first == UINT64_MAX) first = i;
            }
        break;
    case DSV4_DT_F8_E8M0:
        for (uint64_t i = 0; i < n; i++) {
            if (p[i] == 255) {
                nan++;
                if (first == UINT64_MAX) first = i;
            } else if (p[i] < DSV4_SCALE_MIN_BYTE) {
                lo++;
                if (first == UINT64_MAX) first = i;
            } else if (p[i] > DSV4_SCALE_MAX_BYTE) {
                hi++;
                if (first == UINT64_MAX) first = i;
            }
        }
        if (nan || lo || hi) {
            snprintf(msg, sizeof msg,
                     "scale bytes out of range: %llu NaN (255), %llu below 2^-64, %llu above 2^32 (first at element %llu)",
                     (unsigned long long)nan, (unsigned long long)lo, (unsigned long long)hi,
                     (unsigned long long)first);
            report(ctx, t->name, msg);
            bad++;
        }
        return bad;
    case DSV4_DT_I64:
        if (ends_with(t->name, ".tid2eid")) {
            for (uint64_t i = 0; i < n; i++) {
                int64_t e = (int64_t)dsv4_le64_get(p + 8 * i);
                if (e < 0 || e >= c->n_routed_experts) {
                    hi++;
                    if (first == UINT64_MAX) first = i;
                }
            }
            if (hi) {
                snprintf(msg, sizeof msg, "%llu expert ids outside [0, %lld) (first at element %llu)",
                         (unsigned long long)hi, (long long)c->n_routed_experts, (unsigned long long)first);
                report(ctx, t->name, msg);
                bad++;
            }
        }
        return bad;
    default:
        return 0;
    }
    if (nan || inf) {
        snprintf(msg, sizeof msg, "%llu NaN and %llu Inf values (first at element %llu)", (unsigned long long)nan,
                 (unsigned long long)inf, (unsigned long long)first);
        report(ctx, t->name, msg);
        bad++;
    }
    return bad;
}
