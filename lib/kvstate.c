/* kvstate — compact lossless decoding state (see kvstate.h). */
#include "kvstate.h"
#include "codec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint8_t pow2_byte(float s)
{
    uint32_t u;
    memcpy(&u, &s, sizeof u);
    return (uint8_t)(u >> 23);          /* s is a normal power of two */
}

/* bf16 entries (values are already bf16-representable) */
static void put_bf16(float *x, int64_t n, uint8_t *out)
{
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = dsv4_f32_to_bf16(x[i]);
        x[i] = dsv4_bf16_to_f32(h);
        out[2 * i] = (uint8_t)h;
        out[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

static void get_bf16(const uint8_t *in, int64_t n, float *x)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = dsv4_bf16_to_f32((uint16_t)(in[2 * i] | in[2 * i + 1] << 8));
}

static void free_layer(dsv4_kv_layer *L)
{
    free(L->win);
    free(L->ent);
    free(L->ikey);
    free(L->ckv);
    free(L->csc);
    free(L->ikv);
    free(L->isc);
}

void dsv4_kv_free(dsv4_kvstate *s)
{
    if (!s)
        return;
    for (int l = 0; s->layers && l < s->n_all; l++)
        free_layer(&s->layers[l]);
    free(s->layers);
    free(s);
}

static float *rows_new(int64_t n, float v)
{
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; p && i < n; i++)
        p[i] = v;
    return p;
}

void dsv4_kv_sizes(const dsv4_config *c, int compact, size_t *entry_bytes, size_t *ikey_bytes)
{
    int64_t nd = c->head_dim - c->rope_dim;
    if (compact) {
        *entry_bytes = (size_t)(2 * c->rope_dim + nd + (nd + 63) / 64 + 7) / 8 * 8;
        *ikey_bytes = (size_t)(c->index_head_dim / 2 + (c->index_head_dim + 31) / 32);
    } else {
        *entry_bytes = (size_t)(2 * c->head_dim);
        *ikey_bytes = (size_t)(2 * c->index_head_dim);
    }
}

void dsv4_kv_shape(dsv4_kvstate *s, const dsv4_config *c, int compact)
{
    s->n_layers = (int)c->n_layers;
    s->n_all = c->n_ratios;
    s->window = c->window;
    s->head_dim = c->head_dim;
    s->rope_dim = c->rope_dim;
    s->index_head_dim = c->index_head_dim;
    s->compact = compact;
    dsv4_kv_sizes(c, compact, &s->entry_bytes, &s->ikey_bytes);
}

int dsv4_kv_new(dsv4_kvstate **out, const dsv4_config *c, int compact, dsv4_err *err)
{
    *out = NULL;
    dsv4_kvstate *s = calloc(1, sizeof *s);
    if (!s)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    dsv4_kv_shape(s, c, compact);
    s->layers = calloc((size_t)s->n_all, sizeof *s->layers);
    if (!s->layers)
        goto nomem;
    for (int l = 0; l < s->n_all; l++) {
        dsv4_kv_layer *L = &s->layers[l];
        L->ratio = c->compress_ratios[l];
        L->win = calloc((size_t)s->window, s->entry_bytes);
        if (!L->win)
            goto nomem;
        if (L->ratio == 0)
            continue;
        L->crows = L->ratio == 4 ? 8 : L->ratio;
        L->cdim = L->ratio == 4 ? 2 * c->head_dim : c->head_dim;
        L->ckv = rows_new(L->crows * L->cdim, 0.0f);
        L->csc = rows_new(L->crows * L->cdim, -INFINITY);
        if (!L->ckv || !L->csc)
            goto nomem;
        if (L->ratio == 4) {
            L->ikv = rows_new(8 * 2 * c->index_head_dim, 0.0f);
            L->isc = rows_new(8 * 2 * c->index_head_dim, -INFINITY);
            if (!L->ikv || !L->isc)
                goto nomem;
        }
    }
    *out = s;
    return 0;
nomem:
    dsv4_kv_free(s);
    return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory for the KV state");
}

int dsv4_kv_reserve(dsv4_kvstate *s, int layer, int64_t n, dsv4_err *err)
{
    dsv4_kv_layer *L = &s->layers[layer];
    if (n <= L->cap)
        return 0;
    int64_t cap = L->cap ? L->cap : 64;
    while (cap < n)
        cap *= 2;
    uint8_t *e = realloc(L->ent, (size_t)cap * s->entry_bytes);
    if (!e)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory for %lld compressed entries", (long long)cap);
    L->ent = e;
    if (L->ratio == 4) {
        uint8_t *k = realloc(L->ikey, (size_t)cap * s->ikey_bytes);
        if (!k)
            return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory for %lld indexer keys", (long long)cap);
        L->ikey = k;
    }
    L->cap = cap;
    return 0;
}

void dsv4_kv_pack(const dsv4_kvstate *s, float *x, uint8_t *out)
{
    int64_t rd = s->rope_dim, nd = s->head_dim - rd, nb = (nd + 63) / 64;
    float scales[64];
    if (!s->compact) {
        put_bf16(x, s->head_dim, out);
        return;
    }
    uint8_t *rope = out, *codes = out + 2 * rd, *sb = codes + nd;
    dsv4_act_quant_row(x, nd, 64, codes, scales);
    for (int64_t i = 0; i < nd; i++)
        x[i] = dsv4_e4m3_to_f32(codes[i]) * scales[i / 64];   /* exact in bf16 */
    for (int64_t b = 0; b < nb; b++)
        sb[b] = pow2_byte(scales[b]);
    put_bf16(x + nd, rd, rope);
    memset(sb + nb, 0, s->entry_bytes - (size_t)(2 * rd + nd + nb));
}

void dsv4_kv_unpack(const dsv4_kvstate *s, const uint8_t *in, float *x)
{
    int64_t rd = s->rope_dim, nd = s->head_dim - rd;
    const uint8_t *rope = in, *codes = in + 2 * rd, *sb = codes + nd;
    if (!s->compact) {
        get_bf16(in, s->head_dim, x);
        return;
    }
    for (int64_t b = 0; b * 64 < nd; b++) {
        float sc = dsv4_e8m0_to_f32(sb[b]);
        int64_t e = (b + 1) * 64 < nd ? (b + 1) * 64 : nd;
        for (int64_t i = b * 64; i < e; i++)
            x[i] = dsv4_e4m3_to_f32(codes[i]) * sc;
    }
    get_bf16(rope, rd, x + nd);
}

void dsv4_ikey_pack(const dsv4_kvstate *s, float *x, uint8_t *out)
{
    int64_t n = s->index_head_dim;
    uint8_t *sb = out + n / 2;
    if (!s->compact) {
        put_bf16(x, n, out);
        return;
    }
    for (int64_t b0 = 0, bi = 0; b0 < n; b0 += 32, bi++) {
        int64_t len = n - b0 < 32 ? n - b0 : 32;
        float amax = 0.0f;
        for (int64_t i = 0; i < len; i++)
            amax = fabsf(x[b0 + i]) > amax ? fabsf(x[b0 + i]) : amax;
        amax = amax > 0x1.8p-124f ? amax : 0x1.8p-124f;
        float sc = dsv4_pow2_ceil(amax * (1.0f / 6.0f));
        sb[bi] = pow2_byte(sc);
        for (int64_t i = b0; i < b0 + len; i++) {
            uint8_t c = dsv4_f32_to_e2m1(x[i] / sc);
            x[i] = dsv4_e2m1_to_f32(c) * sc;
            if (i & 1)
                out[i / 2] = (uint8_t)((out[i / 2] & 15) | c << 4);
            else
                out[i / 2] = c;
        }
    }
}

void dsv4_ikey_unpack(const dsv4_kvstate *s, const uint8_t *in, float *x)
{
    int64_t n = s->index_head_dim;
    const uint8_t *sb = in + n / 2;
    if (!s->compact) {
        get_bf16(in, n, x);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        uint8_t c = i & 1 ? in[i / 2] >> 4 : in[i / 2] & 15;
        x[i] = dsv4_e2m1_to_f32(c) * dsv4_e8m0_to_f32(sb[i / 32]);
    }
}

uint64_t dsv4_kv_bytes(const dsv4_kvstate *s)
{
    uint64_t b = 0;
    for (int l = 0; l < s->n_all; l++) {
        const dsv4_kv_layer *L = &s->layers[l];
        b += (uint64_t)s->window * s->entry_bytes;
        b += (uint64_t)L->n_ent * (s->entry_bytes + (L->ratio == 4 ? s->ikey_bytes : 0));
        b += (uint64_t)(2 * L->crows * L->cdim) * sizeof(float);
        if (L->ikv)
            b += (uint64_t)(2 * 8 * 2 * s->index_head_dim) * sizeof(float);
    }
    return b;
}

double dsv4_kv_bytes_per_token(const dsv4_kvstate *s)
{
    double b = 0;
    for (int l = 0; l < s->n_layers; l++) {
        const dsv4_kv_layer *L = &s->layers[l];
        if (L->ratio)
            b += (double)(s->entry_bytes + (L->ratio == 4 ? s->ikey_bytes : 0)) / L->ratio;
    }
    return b;
}

int dsv4_kv_equal(const dsv4_kvstate *a, const dsv4_kvstate *b)
{
    if (a->compact != b->compact || a->n_all != b->n_all || a->n_tokens != b->n_tokens || a->n_mtp != b->n_mtp ||
        a->entry_bytes != b->entry_bytes || a->window != b->window)
        return 0;
    for (int l = 0; l < a->n_all; l++) {
        const dsv4_kv_layer *A = &a->layers[l], *B = &b->layers[l];
        if (A->n_ent != B->n_ent || A->crows != B->crows || A->cdim != B->cdim)
            return 0;
        if (memcmp(A->win, B->win, (size_t)a->window * a->entry_bytes) ||
            (A->n_ent && memcmp(A->ent, B->ent, (size_t)A->n_ent * a->entry_bytes)))
            return 0;
        if (A->ratio == 4 && A->n_ent && memcmp(A->ikey, B->ikey, (size_t)A->n_ent * a->ikey_bytes))
            return 0;
        size_t cb = (size_t)(A->crows * A->cdim) * sizeof(float);
        if (cb && (memcmp(A->ckv, B->ckv, cb) || memcmp(A->csc, B->csc, cb)))
            return 0;
        size_t ib = (size_t)(8 * 2 * a->index_head_dim) * sizeof(float);
        if (A->ikv && (memcmp(A->ikv, B->ikv, ib) || memcmp(A->isc, B->isc, ib)))
            return 0;
    }
    return 1;
}
