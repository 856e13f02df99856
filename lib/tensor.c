#include "tensor.h"

#include <stdio.h>
#include <string.h>

static const struct { const char *name; size_t size; } dtypes[DSV4_DT_COUNT] = {
    [DSV4_DT_NONE] = { "?", 0 },
    [DSV4_DT_BF16] = { "BF16", 2 },
    [DSV4_DT_F16] = { "F16", 2 },
    [DSV4_DT_F32] = { "F32", 4 },
    [DSV4_DT_F8_E4M3] = { "F8_E4M3", 1 },
    [DSV4_DT_F8_E8M0] = { "F8_E8M0", 1 },
    [DSV4_DT_I8] = { "I8", 1 },
    [DSV4_DT_I32] = { "I32", 4 },
    [DSV4_DT_I64] = { "I64", 8 },
    [DSV4_DT_U8] = { "U8", 1 },
    [DSV4_DT_Q2] = { "Q2", 1 },
    [DSV4_DT_Q3] = { "Q3", 1 },
    [DSV4_DT_QS8] = { "QS8", 1 },
};

const char *dsv4_dtype_name(dsv4_dtype dt)
{
    return (unsigned)dt < DSV4_DT_COUNT ? dtypes[dt].name : "?";
}

dsv4_dtype dsv4_dtype_from_name(const char *s)
{
    for (int i = 1; i < DSV4_DT_COUNT; i++)
        if (!strcmp(s, dtypes[i].name))
            return (dsv4_dtype)i;
    return DSV4_DT_NONE;
}

size_t dsv4_dtype_size(dsv4_dtype dt)
{
    return (unsigned)dt < DSV4_DT_COUNT ? dtypes[dt].size : 0;
}

int64_t dsv4_tensor_numel(const dsv4_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

void dsv4_shape_str(const int64_t *shape, int ndim, char *out, size_t cap)
{
    size_t o = 0;
    if (!cap)
        return;
    out[0] = 0;
    o += (size_t)snprintf(out + o, o < cap ? cap - o : 0, "[");
    for (int i = 0; i < ndim; i++)
        o += (size_t)snprintf(out + o, o < cap ? cap - o : 0, "%s%lld", i ? ", " : "", (long long)shape[i]);
    snprintf(out + (o < cap ? o : cap - 1), o < cap ? cap - o : 1, "]");
}
