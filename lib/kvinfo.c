/* kvinfo — facts about KV snapshots and their comparison (see kvinfo.h). */
#include "kvinfo.h"
#include "kvstate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *dsv4_kvinfo_kind(const dsv4_snap_info *in, int l)
{
    if (l >= in->n_layers)
        return "MTP";
    switch (in->ratios[l]) {
    case 0: return "SWA";
    case 4: return "CSA";
    case 128: return "HCA";
    default: return "?";
    }
}

int64_t dsv4_kvinfo_positions(const dsv4_snap_info *in, int l)
{
    return l < in->n_layers ? in->n_tokens : in->n_mtp;
}

int64_t dsv4_kvinfo_window_slots(const dsv4_snap_info *in, int l)
{
    int64_t n = dsv4_kvinfo_positions(in, l);
    return n < in->window ? n : in->window;
}

double dsv4_kvinfo_growth(const dsv4_snap_info *in)
{
    double b = 0;
    for (int l = 0; l < in->n_layers; l++)
        if (in->ratios[l])
            b += (double)(in->entry_bytes + (in->ratios[l] == 4 ? in->ikey_bytes : 0)) / in->ratios[l];
    return b;
}

/* ---- comparison ------------------------------------------------------------ */

static double fdiff(float x, float y)
{
    if (x == y || (isnan(x) && isnan(y)))
        return 0;
    double d = fabs((double)x - (double)y);
    return isnan(d) ? INFINITY : d;
}

static double max_diff(const float *x, const float *y, int64_t n, double m)
{
    for (int64_t i = 0; i < n; i++) {
        double d = fdiff(x[i], y[i]);
        m = d > m ? d : m;
    }
    return m;
}

typedef void (*unpack_fn)(const dsv4_kvstate *s, const uint8_t *in, float *x);

/* How to unpack one kind of stored vector of both states. */
struct vec_cmp {
    const dsv4_kvstate *a, *b;
    unpack_fn unpack;
    size_t bytes;
    int64_t dim;
    float *xa, *xb;
};

static double vec_diff(const struct vec_cmp *v, const uint8_t *pa, const uint8_t *pb, double m)
{
    v->unpack(v->a, pa, v->xa);
    v->unpack(v->b, pb, v->xb);
    return max_diff(v->xa, v->xb, v->dim, m);
}

static int same_payload(const dsv4_kvstate *a, const dsv4_kvstate *b, int l, uint8_t *ba, uint8_t *bb, size_t cap)
{
    uint64_t n = dsv4_snap_layer_bytes(a, l);
    if (n != dsv4_snap_layer_bytes(b, l))
        return 0;
    for (uint64_t off = 0; off < n; off += cap) {
        uint64_t k = n - off < cap ? n - off : cap;
        dsv4_snap_layer_get(a, l, off, k, ba);
        dsv4_snap_layer_get(b, l, off, k, bb);
        if (memcmp(ba, bb, (size_t)k))
            return 0;
    }
    return 1;
}

static void layer_diff(const dsv4_snap *A, const dsv4_snap *B, int l, float *xa, float *xb, dsv4_kvinfo_ldiff *d)
{
    const dsv4_kvstate *a = A->kv, *b = B->kv;
    const dsv4_kv_layer *La = &a->layers[l], *Lb = &b->layers[l];
    int64_t na = dsv4_kvinfo_positions(&A->info, l), nb = dsv4_kvinfo_positions(&B->info, l), W = a->window;
    struct vec_cmp kv = { a, b, dsv4_kv_unpack, a->entry_bytes, a->head_dim, xa, xb };
    struct vec_cmp ik = { a, b, dsv4_ikey_unpack, a->ikey_bytes, a->index_head_dim, xa, xb };

    d->win = d->ent = d->ikey = d->comp = -1;
    /* window: by position, so that states of different lengths line up */
    int64_t lo = na - W > nb - W ? na - W : nb - W, hi = na < nb ? na : nb;
    lo = lo > 0 ? lo : 0;
    for (int64_t p = lo; p < hi; p++)
        d->win = vec_diff(&kv, La->win + (p % W) * kv.bytes, Lb->win + (p % W) * kv.bytes, d->win < 0 ? 0 : d->win);
    d->win_n = hi > lo ? hi - lo : 0;
    if (!La->ratio)
        return;
    d->ent_n = La->n_ent < Lb->n_ent ? La->n_ent : Lb->n_ent;
    for (int64_t i = 0; i < d->ent_n; i++) {
        d->ent = vec_diff(&kv, La->ent + i * kv.bytes, Lb->ent + i * kv.bytes, d->ent < 0 ? 0 : d->ent);
        if (La->ratio == 4)
            d->ikey = vec_diff(&ik, La->ikey + i * ik.bytes, Lb->ikey + i * ik.bytes, d->ikey < 0 ? 0 : d->ikey);
    }
    /* rows a snapshot does not store are at their initial values in both */
    int64_t n = La->crows * La->cdim;
    d->comp = max_diff(La->ckv, Lb->ckv, n, 0);
    d->comp = max_diff(La->csc, Lb->csc, n, d->comp);
    if (La->ikv) {
        d->comp = max_diff(La->ikv, Lb->ikv, 16 * a->index_head_dim, d->comp);
        d->comp = max_diff(La->isc, Lb->isc, 16 * a->index_head_dim, d->comp);
    }
}

static int same_shape(const dsv4_snap_info *a, const dsv4_snap_info *b)
{
    if (a->compact != b->compact || a->n_layers != b->n_layers || a->n_all != b->n_all ||
        a->vocab_size != b->vocab_size || a->dim != b->dim || a->hc_mult != b->hc_mult || a->window != b->window ||
        a->head_dim != b->head_dim || a->rope_dim != b->rope_dim || a->index_head_dim != b->index_head_dim ||
        a->entry_bytes != b->entry_bytes || a->ikey_bytes != b->ikey_bytes)
        return 0;
    for (int l = 0; l < a->n_all; l++)
        if (a->ratios[l] != b->ratios[l])
            return 0;
    return 1;
}

int dsv4_kvinfo_compare(const dsv4_snap *a, const char *a_name, const dsv4_snap *b, const char *b_name,
                        dsv4_kvinfo_diff *out, dsv4_err *err)
{
    const dsv4_snap_info *ia = &a->info, *ib = &b->info;
    enum { CAP = 1 << 16 };
    memset(out, 0, sizeof *out);
    if (!a->kv || !b->kv)
        return dsv4_err_set(err, DSV4_E_INVALID, "a comparison needs both KV states loaded");
    if (ia->compact != ib->compact)
        return dsv4_err_set(err, DSV4_E_MISMATCH, "%s and %s cannot be compared: their KV layouts differ (%s, %s)",
                            a_name, b_name, ia->compact ? "compact" : "bf16", ib->compact ? "compact" : "bf16");
    if (!same_shape(ia, ib))
        return dsv4_err_set(err, DSV4_E_MISMATCH, "%s and %s cannot be compared: their layers or dimensions "
                            "differ", a_name, b_name);
    size_t vec = (size_t)(ia->head_dim > ia->index_head_dim ? ia->head_dim : ia->index_head_dim);
    float *xa = malloc(vec * sizeof *xa), *xb = malloc(vec * sizeof *xb);
    uint8_t *ba = malloc(CAP), *bb = malloc(CAP);
    if (!xa || !xb || !ba || !bb) {
        free(xa);
        free(xb);
        free(ba);
        free(bb);
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory comparing %s and %s", a_name, b_name);
    }

    out->same_model = !memcmp(ia->fingerprint, ib->fingerprint, 32);
    int64_t nt = ia->n_tokens < ib->n_tokens ? ia->n_tokens : ib->n_tokens;
    out->token_diff = ia->n_tokens == ib->n_tokens ? -1 : nt;
    for (int64_t i = 0; i < nt; i++)
        if (a->tokens[i] != b->tokens[i]) {
            out->token_diff = i;
            break;
        }
    size_t hn = (size_t)(ia->hc_mult * ia->dim);
    out->hidden = -1;
    out->same_hidden = !a->hidden == !b->hidden;
    if (a->hidden && b->hidden) {
        out->hidden = max_diff(a->hidden, b->hidden, (int64_t)hn, 0);
        out->same_hidden = !memcmp(a->hidden, b->hidden, hn * sizeof(float));
    }
    out->n_all = ia->n_all;
    for (int l = 0; l < ia->n_all; l++) {
        dsv4_kvinfo_ldiff *d = &out->layers[l];
        layer_diff(a, b, l, xa, xb, d);
        d->same_bytes = same_payload(a->kv, b->kv, l, ba, bb, CAP);
        out->n_differ += !d->same_bytes;
    }
    out->identical = out->same_model && out->token_diff < 0 && ia->n_mtp == ib->n_mtp && out->same_hidden &&
                     !out->n_differ;
    free(xa);
    free(xb);
    free(ba);
    free(bb);
    return 0;
}
