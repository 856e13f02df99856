/* moe — the mixture-of-experts sub-layer of DeepSeek-V4 on a chunk of tokens
 * (spec/ARCH.md §6): sqrt-softplus router, hash routing (tid2eid) on the
 * first layers, top-k with a selection-only bias elsewhere, renormalised
 * weights x route_scale, clamped SwiGLU experts (FP4 routed, FP8 shared). */
#include "engine_impl.h"
#include "codec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float softplus(float x)
{
    return x > 20.0f ? x : log1pf(expf(x));   /* torch's threshold */
}

/* a = silu(min(g, lim)) * clamp(u, -lim, lim) * w, rounded to bf16 (the w2 input). */
static void swiglu(const float *g, const float *u, int64_t n, float lim, float w, int weighted, float *a)
{
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] < lim ? g[i] : lim;
        float ui = u[i] < -lim ? -lim : u[i] > lim ? lim : u[i];
        float v = gi / (1.0f + expf(-gi)) * ui;
        if (weighted)
            v *= w;
        a[i] = dsv4_round_bf16(v);
    }
}

/* One expert on rows x[cnt, D]: y[cnt, D]. */
static int expert(dsv4_engine *e, const dsv4_wt *w1, const dsv4_wt *w2, const dsv4_wt *w3, const float *x,
                  int64_t cnt, const float *wts, float *g, float *u, float *y, dsv4_err *err)
{
    int64_t I = w1->n;
    float lim = (float)e->c.swiglu_limit;
    if (dsv4_linear_q(e->pool, w1, x, cnt, g, err) || dsv4_linear_q(e->pool, w3, x, cnt, u, err))
        return err->code;
    for (int64_t i = 0; i < cnt; i++)
        swiglu(g + i * I, u + i * I, I, lim, wts ? wts[i] : 1.0f, wts != NULL, g + i * I);
    return dsv4_linear_q(e->pool, w2, g, cnt, y, err);
}

int dsv4_moe_route(const dsv4_engine *e, int l, float *sc, const uint32_t *tokens, int64_t M, int32_t *sel,
                   float *wsel, dsv4_err *err)
{
    const dsv4_config *c = &e->c;
    const dsv4_layer_w *L = &e->layers[l];
    int64_t E = c->n_routed_experts, K = c->n_experts_per_tok;
    for (int64_t m = 0; m < M; m++, sc += E) {
        for (int64_t i = 0; i < E; i++)
            sc[i] = sqrtf(softplus(sc[i]));
        int32_t *S = sel + m * K;
        if (L->hash) {
            const uint8_t *row = L->tid2eid + (size_t)tokens[m] * (size_t)K * 8;
            for (int64_t k = 0; k < K; k++) {
                int64_t id;
                memcpy(&id, row + 8 * k, 8);
                if (id < 0 || id >= E)
                    return dsv4_err_set(err, DSV4_E_FORMAT,
                                        "layers.%d.ffn.gate.tid2eid: expert id %lld for token %u is out of range",
                                        l, (long long)id, tokens[m]);
                S[k] = (int32_t)id;
            }
        } else {
            for (int64_t k = 0; k < K; k++) {
                int64_t best = -1;
                float bv = 0;
                for (int64_t i = 0; i < E; i++) {
                    int taken = 0;
                    for (int64_t j = 0; j < k; j++)
                        taken |= S[j] == i;
                    float v = sc[i] + L->gate_bias[i];
                    if (!taken && (best < 0 || v > bv)) {
                        best = i;
                        bv = v;
                    }
                }
                S[k] = (int32_t)best;
            }
        }
        float sum = 0.0f;
        for (int64_t k = 0; k < K; k++)
            sum += sc[S[k]];
        for (int64_t k = 0; k < K; k++)
            wsel[m * K + k] = sc[S[k]] / sum * (float)c->route_scale;
    }
    return 0;
}

int dsv4_moe_experts(dsv4_engine *e, int l, const float *xn, const int32_t *sel, const float *wsel, int64_t M,
                     float *out, dsv4_err *err)
{
    const dsv4_config *c = &e->c;
    const dsv4_layer_w *L = &e->layers[l];
    int64_t D = c->dim, E = c->n_routed_experts, K = c->n_experts_per_tok, I = c->moe_inter_dim;
    int rc = 0;
    float *acc = calloc((size_t)(M * D), sizeof *acc);
    /* an expert can appear twice in one token's selection (a hash table
     * row with a repeated id): size the gathers for M*K rows */
    int64_t R = M * K > M ? M * K : M;
    float *xg = malloc((size_t)(R * D) * sizeof *xg);
    float *yg = malloc((size_t)(R * D) * sizeof *yg);
    float *gb = malloc((size_t)(2 * R * I) * sizeof *gb);
    int64_t *rows = malloc((size_t)R * sizeof *rows);
    float *rw = malloc((size_t)R * sizeof *rw);
    if (!acc || !xg || !yg || !gb || !rows || !rw) {
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory in the MoE of layer %d", l);
        goto out;
    }

    /* routed experts in increasing id order, each on the rows that chose it */
    for (int64_t x = 0; x < E; x++) {
        int64_t cnt = 0;
        for (int64_t m = 0; m < M; m++)
            for (int64_t k = 0; k < K; k++)
                if (sel[m * K + k] == x) {
                    rows[cnt] = m;
                    rw[cnt] = wsel[m * K + k];
                    memcpy(xg + cnt * D, xn + m * D, (size_t)D * sizeof *xg);
                    cnt++;
                }
        if (!cnt)
            continue;
        if ((rc = expert(e, &L->w1[x], &L->w2[x], &L->w3[x], xg, cnt, rw, gb, gb + cnt * I, yg, err)))
            goto out;
        for (int64_t i = 0; i < cnt; i++)
            for (int64_t d = 0; d < D; d++)
                acc[rows[i] * D + d] += yg[i * D + d];
    }
    /* shared expert last, weight 1 */
    if (c->n_shared_experts > 0) {
        if ((rc = expert(e, &L->sw1, &L->sw2, &L->sw3, xn, M, NULL, gb, gb + M * I, yg, err)))
            goto out;
        for (int64_t i = 0; i < M * D; i++)
            acc[i] += yg[i];
    }
    for (int64_t i = 0; i < M * D; i++)
        out[i] = dsv4_round_bf16(acc[i]);
out:
    free(acc);
    free(xg);
    free(yg);
    free(gb);
    free(rows);
    free(rw);
    return rc;
}

int dsv4_moe_chunk(dsv4_engine *e, int l, const float *xn, const uint32_t *tokens, int64_t M, float *out,
                   dsv4_err *err)
{
    const dsv4_config *c = &e->c;
    int64_t E = c->n_routed_experts, K = c->n_experts_per_tok;
    int rc = 0;
    float *logit = malloc((size_t)(M * E) * sizeof *logit);
    int32_t *sel = malloc((size_t)(M * K) * sizeof *sel);
    float *wsel = malloc((size_t)(M * K) * sizeof *wsel);
    if (!logit || !sel || !wsel)
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory in the MoE of layer %d", l);
    else if (!(rc = dsv4_linear(e->pool, &e->layers[l].gate, xn, M, logit, 0, err)) &&
             !(rc = dsv4_moe_route(e, l, logit, tokens, M, sel, wsel, err)))
        rc = dsv4_moe_experts(e, l, xn, sel, wsel, M, out, err);
    free(logit);
    free(sel);
    free(wsel);
    return rc;
}
