/* requant — rules, recipes, plan and streaming rewrite (see requant.h). */
#include "requant.h"
#include "buf.h"
#include "codec.h"
#include "json.h"
#include "ops.h"
#include "quant.h"

#include <fnmatch.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const target_names[DSV4_QT_COUNT] = { "copy", "Q2", "Q3", "BF16" };

const char *dsv4_qtarget_name(int t)
{
    return t >= 0 && t < DSV4_QT_COUNT ? target_names[t] : "?";
}

/* The sizes in the summaries are dsv4-quant --dry-run on the Flash config
 * (dsv4-quant(1) shows the arithmetic). */
static const dsv4_qrecipe recipes[] = {
    { "experts-q3", "routed experts Q3: Flash 124.2 GB (141 GB GPU, 1M-token KV)",
      "*.ffn.experts.*.weight=Q3" },
    { "experts-q2", "routed experts Q2: Flash 84.3 GB",
      "*.ffn.experts.*.weight=Q2" },
    { "fit-80g", "experts-q2 + shared experts, wq_b, wo_a, wo_b Q3: 81.0 GB (80 GB GPU)",
      "*.ffn.experts.*.weight=Q2 *.ffn.shared_experts.*.weight=Q3 *.attn.wq_b.weight=Q3 *.attn.wo_a.weight=Q3 "
      "*.attn.wo_b.weight=Q3" },
    { "fp8-bf16", "FP8 weights to BF16 (lossless, larger; debugging)",
      "*.attn.wq_a.weight=BF16 *.attn.wq_b.weight=BF16 *.attn.wkv.weight=BF16 *.attn.wo_a.weight=BF16 "
      "*.attn.wo_b.weight=BF16 *.indexer.wq_b.weight=BF16 *.shared_experts.*.weight=BF16 "
      "mtp.*.e_proj.weight=BF16 mtp.*.h_proj.weight=BF16" },
    { NULL, NULL, NULL }
};

const dsv4_qrecipe *dsv4_qrecipes(void)
{
    return recipes;
}

int dsv4_qrules_add(dsv4_qrules *r, const char *spec, dsv4_err *err)
{
    const char *eq = strrchr(spec, '=');
    int t;
    if (!eq || eq == spec || !eq[1])
        return dsv4_err_set(err, DSV4_E_INVALID, "rule '%s': expected GLOB=FORMAT", spec);
    for (t = 0; t < DSV4_QT_COUNT; t++)
        if (!strcasecmp(eq + 1, target_names[t]))
            break;
    if (t == DSV4_QT_COUNT)
        return dsv4_err_set(err, DSV4_E_INVALID, "rule '%s': unknown format '%s' (Q2, Q3, BF16 or copy)", spec,
                            eq + 1);
    dsv4_qrule *n = realloc(r->r, (r->n + 1) * sizeof *n);
    if (!n)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    r->r = n;
    n[r->n] = (dsv4_qrule){ strndup(spec, (size_t)(eq - spec)), t, strdup(spec), 0 };
    if (!n[r->n].glob || !n[r->n].text) {
        free(n[r->n].glob);
        free(n[r->n].text);
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    }
    r->n++;
    return 0;
}

int dsv4_qrules_add_recipe(dsv4_qrules *r, const char *name, dsv4_err *err)
{
    const dsv4_qrecipe *q = recipes;
    while (q->name && strcmp(q->name, name))
        q++;
    if (!q->name)
        return dsv4_err_set(err, DSV4_E_NOTFOUND, "unknown recipe '%s' (see --help)", name);
    char buf[1024];
    for (const char *p = q->rules; *p;) {
        size_t l = strcspn(p, " ");
        int rc;
        snprintf(buf, sizeof buf, "%.*s", (int)l, p);
        if ((rc = dsv4_qrules_add(r, buf, err)))
            return rc;
        p += l;
        p += strspn(p, " ");
    }
    size_t ol = r->recipes ? strlen(r->recipes) : 0;
    char *nr = realloc(r->recipes, ol + strlen(name) + 2);
    if (!nr)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    sprintf(nr + ol, "%s%s", ol ? " " : "", name);
    r->recipes = nr;
    return 0;
}

void dsv4_qrules_free(dsv4_qrules *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->r[i].glob);
        free(r->r[i].text);
    }
    free(r->r);
    free(r->recipes);
    *r = (dsv4_qrules)DSV4_QRULES_INIT;
}

/* ---- planning ------------------------------------------------------------ */

struct names {
    const dsv4_tensor *const *in;
    size_t *idx;    /* indices sorted by name */
    size_t n;
};

static int cmp_idx(const void *a, const void *b, void *ctx)
{
    const dsv4_tensor *const *in = ctx;
    return strcmp(in[*(const size_t *)a]->name, in[*(const size_t *)b]->name);
}

static size_t find_name(const struct names *nm, const char *name)
{
    size_t lo = 0, hi = nm->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(nm->in[nm->idx[mid]]->name, name);
        if (!c)
            return nm->idx[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return SIZE_MAX;
}

/* The sibling name: NAME with its last ".component" replaced by ".scale". */
static void scale_name(const char *name, char *out, size_t cap)
{
    const char *dot = strrchr(name, '.');
    snprintf(out, cap, "%.*s.scale", (int)(dot ? dot - name : (ptrdiff_t)strlen(name)), name);
}

static int paired_dtype(dsv4_dtype d)
{
    return d == DSV4_DT_F8_E4M3 || d == DSV4_DT_I8 || d == DSV4_DT_Q2 || d == DSV4_DT_Q3;
}

/* The weight index whose scale tensor i is, or SIZE_MAX. */
static size_t scale_owner(const struct names *nm, size_t i)
{
    const char *nmi = nm->in[i]->name;
    size_t l = strlen(nmi);
    char w[1100];
    if (l < 6 || strcmp(nmi + l - 6, ".scale") || l > 1024)
        return SIZE_MAX;
    snprintf(w, sizeof w, "%.*s.weight", (int)(l - 6), nmi);
    size_t j = find_name(nm, w);
    return j != SIZE_MAX && paired_dtype(nm->in[j]->dtype) ? j : SIZE_MAX;
}

/* How weight i is stored: a dsv4_wt kind and its logical [n, k]; 0 when it
 * is nothing a format can be computed from. */
static int source_kind(const struct names *nm, size_t i, size_t *scale, int64_t *n, int64_t *k)
{
    const dsv4_tensor *t = nm->in[i];
    char sn[1100];
    *scale = SIZE_MAX;
    if (t->dtype == DSV4_DT_BF16 || t->dtype == DSV4_DT_F32) {
        *k = t->ndim ? t->shape[t->ndim - 1] : 1;
        *n = *k ? dsv4_tensor_numel(t) / *k : 0;
        return t->dtype == DSV4_DT_BF16 ? DSV4_WT_BF16 : DSV4_WT_F32;
    }
    if (!paired_dtype(t->dtype) || t->ndim != 2)
        return 0;
    scale_name(t->name, sn, sizeof sn);
    if ((*scale = find_name(nm, sn)) == SIZE_MAX)
        return 0;
    int kind = dsv4_wt_kind_of(t->dtype);
    *n = t->shape[0];
    *k = dsv4_wt_cols(kind, t->shape[1]);
    return kind;
}

static int qfmt_of(int target)
{
    return target == DSV4_QT_Q2 ? DSV4_QF_Q2 : DSV4_QF_Q3;
}

/* Decide weight i's target under rule ri; 0 or an error naming both. */
static int decide(const struct names *nm, size_t i, const dsv4_qrule *rule, dsv4_qitem *it, dsv4_err *err)
{
    const dsv4_tensor *t = nm->in[i];
    size_t sc;
    int64_t n = 0, k = 0;
    int kind = source_kind(nm, i, &sc, &n, &k), tg = rule->target;
    it->n = n;
    it->k = k;
    it->pair = sc;
    if (tg == DSV4_QT_COPY || (tg == DSV4_QT_BF16 && t->dtype == DSV4_DT_BF16) ||
        (tg == DSV4_QT_Q2 && t->dtype == DSV4_DT_Q2) || (tg == DSV4_QT_Q3 && t->dtype == DSV4_DT_Q3))
        return it->target = DSV4_QT_COPY, 0;
    if (!kind)
        return dsv4_err_set(err, DSV4_E_INVALID,
                            "rule '%s' matches %s (%s): %s is made from FP8, FP4, Q2, Q3, BF16 or F32 weights only",
                            rule->text, t->name, dsv4_dtype_name(t->dtype), dsv4_qtarget_name(tg));
    if (tg != DSV4_QT_BF16) {
        int B = dsv4_qfmt_get(qfmt_of(tg))->block;
        if (t->ndim != 2 || k % B)
            return dsv4_err_set(err, DSV4_E_INVALID,
                                "rule '%s' matches %s, which is not a matrix with a multiple of %d columns (%s needs one)",
                                rule->text, t->name, B, dsv4_qtarget_name(tg));
    }
    it->target = tg;
    return 0;
}

static void set_out(dsv4_qitem *it, const dsv4_tensor *src, dsv4_dtype dt, int64_t d0, int64_t d1)
{
    it->out = *src;
    it->out.data = NULL;
    it->out.dtype = dt;
    it->out.ndim = 2;
    it->out.shape[0] = d0;
    it->out.shape[1] = d1;
    it->out.nbytes = (uint64_t)(d0 * d1) * dsv4_dtype_size(dt);
}

int dsv4_qplan_build(dsv4_qplan *p, const dsv4_qrules *r, const dsv4_tensor *const *in, size_t n_in,
                     dsv4_report_fn warn, void *wctx, dsv4_err *err)
{
    struct names nm = { in, malloc((n_in ? n_in : 1) * sizeof(size_t)), n_in };
    dsv4_qitem *dec = calloc(n_in ? n_in : 1, sizeof *dec);
    int rc = 0;
    memset(p, 0, sizeof *p);
    p->in = in;
    p->n_in = n_in;
    p->items = calloc(2 * n_in + 1, sizeof *p->items);
    if (!nm.idx || !dec || !p->items) {
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n_in; i++)
        nm.idx[i] = i;
    qsort_r(nm.idx, n_in, sizeof *nm.idx, cmp_idx, (void *)in);
    for (size_t i = 0; i < r->n; i++)
        r->r[i].matched = 0;

    /* pass 1: every tensor that is not a weight's scale gets a decision */
    for (size_t i = 0; i < n_in; i++) {
        dec[i].rule = -1;
        dec[i].pair = SIZE_MAX;
        if (scale_owner(&nm, i) != SIZE_MAX)
            continue;
        for (size_t q = r->n; q-- > 0;)
            if (!fnmatch(r->r[q].glob, in[i]->name, 0)) {
                dec[i].rule = (int)q;
                break;
            }
        if (dec[i].rule < 0)
            continue;
        r->r[dec[i].rule].matched++;
        if ((rc = decide(&nm, i, &r->r[dec[i].rule], &dec[i], err)))
            goto out;
    }
    for (size_t q = 0; q < r->n; q++)
        if (!r->r[q].matched && warn)
            warn(wctx, r->r[q].text, "matches no tensor");

    /* pass 2: output items in input order */
    for (size_t i = 0; i < n_in; i++) {
        size_t w = scale_owner(&nm, i);
        dsv4_qitem *it = &p->items[p->n];
        p->bytes_in += in[i]->nbytes;
        if (w != SIZE_MAX && dec[w].target != DSV4_QT_COPY) {
            if (dec[w].target == DSV4_QT_BF16)
                continue;   /* a BF16 weight needs no scale */
            *it = dec[w];
            it->src = i;
            it->pair = w;
            it->is_scale = 1;
            set_out(it, in[i], DSV4_DT_QS8, dec[w].n, dec[w].k / dsv4_qfmt_get(qfmt_of(dec[w].target))->block);
        } else if (w == SIZE_MAX && dec[i].target != DSV4_QT_COPY) {
            *it = dec[i];
            it->src = i;
            const dsv4_qfmt_info *q = dec[i].target == DSV4_QT_BF16 ? NULL : dsv4_qfmt_get(qfmt_of(dec[i].target));
            if (!q)
                set_out(it, in[i], DSV4_DT_BF16, dec[i].n, dec[i].k);
            else
                set_out(it, in[i], dec[i].target == DSV4_QT_Q2 ? DSV4_DT_Q2 : DSV4_DT_Q3, dec[i].n,
                        dec[i].k / q->block * q->block_bytes);
            if (in[i]->ndim == 1 && !q) {
                it->out.ndim = 1;
                it->out.shape[0] = in[i]->shape[0];
            }
            p->n_requant++;
            p->q_params += dec[i].n * dec[i].k;
            p->q_bytes_in += in[i]->nbytes + (dec[i].pair != SIZE_MAX ? in[dec[i].pair]->nbytes : 0);
            if (q && dec[i].pair == SIZE_MAX) {
                /* a BF16/F32 source has no scale tensor: add one after it */
                char sn[1100];
                dsv4_qitem *s = &p->items[++p->n];
                scale_name(in[i]->name, sn, sizeof sn);
                if (find_name(&nm, sn) != SIZE_MAX) {
                    rc = dsv4_err_set(err, DSV4_E_INVALID, "cannot re-encode %s: a tensor %s exists already",
                                      in[i]->name, sn);
                    goto out;
                }
                *s = *it;
                s->pair = i;
                s->is_scale = 1;
                set_out(s, in[i], DSV4_DT_QS8, dec[i].n, dec[i].k / q->block);
                if (!(s->name = strdup(sn))) {
                    rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
                    goto out;
                }
                s->out.name = s->name;
            }
        } else {
            it->src = i;
            it->target = DSV4_QT_COPY;
            it->rule = w == SIZE_MAX ? dec[i].rule : -1;
            it->pair = SIZE_MAX;
            it->out = *in[i];
        }
        p->n++;
    }
    {
        /* link the halves of each re-encoded pair (a scale may come first) */
        size_t *witem = malloc((n_in ? n_in : 1) * sizeof *witem);
        if (!witem) {
            rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < n_in; i++)
            witem[i] = SIZE_MAX;
        for (size_t j = 0; j < p->n; j++) {
            p->items[j].mate = SIZE_MAX;
            if (p->items[j].target != DSV4_QT_COPY && !p->items[j].is_scale)
                witem[p->items[j].src] = j;
        }
        for (size_t j = 0; j < p->n; j++)
            if (p->items[j].is_scale) {
                size_t wj = witem[p->items[j].pair];
                p->items[j].mate = wj;
                p->items[wj].mate = j;
            }
        free(witem);
    }
    for (size_t j = 0; j < p->n; j++) {
        p->bytes_out += p->items[j].out.nbytes;
        if (p->items[j].target != DSV4_QT_COPY)
            p->q_bytes_out += p->items[j].out.nbytes;
    }
out:
    free(nm.idx);
    free(dec);
    if (rc)
        dsv4_qplan_free(p);
    return rc;
}

void dsv4_qplan_free(dsv4_qplan *p)
{
    for (size_t j = 0; p->items && j < p->n + 1; j++)
        free(p->items[j].name);
    free(p->items);
    memset(p, 0, sizeof *p);
}

int dsv4_qplan_config_views(const dsv4_config *c, dsv4_tensor **store, const dsv4_tensor ***views, size_t *n,
                            dsv4_err *err)
{
    dsv4_tensor_spec *spec = NULL;
    size_t ns = 0;
    int rc = dsv4_config_tensors(c, &spec, &ns, err);
    if (rc)
        return rc;
    /* one block: the views, then their names */
    dsv4_tensor *t = malloc(ns * (sizeof *t + sizeof spec->name) + 1);
    const dsv4_tensor **v = malloc((ns ? ns : 1) * sizeof *v);
    if (!t || !v) {
        free(t);
        free(v);
        free(spec);
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    }
    char *names = (char *)(t + ns);
    for (size_t i = 0; i < ns; i++) {
        memcpy(names + i * sizeof spec->name, spec[i].name, sizeof spec->name);
        t[i] = (dsv4_tensor){ names + i * sizeof spec->name, spec[i].dtype, spec[i].ndim, { 0 }, NULL, 0 };
        memcpy(t[i].shape, spec[i].shape, sizeof t[i].shape);
        t[i].nbytes = (uint64_t)dsv4_tensor_numel(&t[i]) * dsv4_dtype_size(t[i].dtype);
        v[i] = &t[i];
    }
    free(spec);
    *store = t;
    *views = v;
    *n = ns;
    return 0;
}

/* ---- writing ------------------------------------------------------------- */

struct writer {
    const dsv4_qplan *p;
    const dsv4_qrules *r;
    dsv4_pool *pool;
    dsv4_qstat_fn stat;
    void *sctx;
    size_t cur;                 /* weight whose buffers are held, SIZE_MAX */
    uint8_t *codes, *scales;    /* its output */
    uint8_t *reported;          /* per input tensor: stats given */
    dsv4_err *err;
};

struct rows_job {
    dsv4_wt src;
    int target;
    uint8_t *codes, *scales;
    float *scratch;             /* [threads][2k] */
    double *se, *ss, *mx;       /* per row */
};

static void encode_rows(void *ctx, int64_t r0, int64_t r1, int tid)
{
    struct rows_job *j = ctx;
    int64_t k = j->src.k;
    float *x = j->scratch + (size_t)tid * 2 * (size_t)k, *y = x + k;
    for (int64_t r = r0; r < r1; r++) {
        dsv4_wt_row(&j->src, r, x);
        if (j->target == DSV4_QT_BF16) {
            uint8_t *o = j->codes + (size_t)r * (size_t)k * 2;
            for (int64_t i = 0; i < k; i++) {
                uint16_t h = dsv4_f32_to_bf16(x[i]);
                o[2 * i] = (uint8_t)h;
                o[2 * i + 1] = (uint8_t)(h >> 8);
                y[i] = dsv4_bf16_to_f32(h);
            }
        } else {
            int fmt = qfmt_of(j->target);
            const dsv4_qfmt_info *q = dsv4_qfmt_get(fmt);
            uint8_t *c = j->codes + (size_t)r * (size_t)(k / q->block * q->block_bytes);
            uint8_t *s = j->scales + (size_t)r * (size_t)(k / q->block);
            dsv4_quant_row(fmt, x, k, c, s);
            dsv4_quant_dequant_rows(fmt, c, s, k, 0, 1, y);
        }
        double se = 0, ss = 0, mx = 0;
        for (int64_t i = 0; i < k; i++) {
            double d = fabs((double)y[i] - x[i]);
            se += d * d;
            ss += (double)x[i] * x[i];
            mx = d > mx ? d : mx;
        }
        j->se[r] = se;
        j->ss[r] = ss;
        j->mx[r] = mx;
    }
}

/* Re-encode weight w (item it) into the writer's buffers. */
static int encode(struct writer *wr, const dsv4_qitem *it, size_t w)
{
    const dsv4_qplan *p = wr->p;
    const dsv4_tensor *t = p->in[w];
    struct rows_job j = { { 0 }, it->target, NULL, NULL, NULL, NULL, NULL, NULL };
    const dsv4_qitem *wi = it->is_scale ? &p->items[it->mate] : it;
    size_t sc = wi->pair;
    int64_t n = it->n, k = it->k;
    free(wr->codes);
    free(wr->scales);
    wr->codes = wr->scales = NULL;
    wr->cur = SIZE_MAX;
    j.src.n = n;
    j.src.k = k;
    j.src.w = t->data;
    j.src.s = sc != SIZE_MAX ? p->in[sc]->data : NULL;
    j.src.kind = dsv4_wt_kind_of(t->dtype);
    uint64_t cb = it->target == DSV4_QT_BF16 ? (uint64_t)(n * k) * 2
                : (uint64_t)n * (uint64_t)(k / dsv4_qfmt_get(qfmt_of(it->target))->block) *
                  (uint64_t)dsv4_qfmt_get(qfmt_of(it->target))->block_bytes;
    int threads = dsv4_pool_threads(wr->pool);
    wr->codes = malloc(cb ? cb : 1);
    wr->scales = malloc((size_t)n * (size_t)(k / 32) + 1);
    j.scratch = malloc((size_t)threads * 2 * (size_t)k * sizeof(float) + 1);
    j.se = malloc(3 * (size_t)n * sizeof(double) + 1);
    if (!wr->codes || !wr->scales || !j.scratch || !j.se) {
        free(j.scratch);
        free(j.se);
        return dsv4_err_set(wr->err, DSV4_E_NOMEM, "out of memory re-encoding %s", t->name);
    }
    j.ss = j.se + n;
    j.mx = j.ss + n;
    j.codes = wr->codes;
    j.scales = wr->scales;
    dsv4_pool_for(wr->pool, n, 1, encode_rows, &j);
    if (!wr->reported[w] && wr->stat) {
        double se = 0, ss = 0, mx = 0;
        for (int64_t r = 0; r < n; r++) {
            se += j.se[r];
            ss += j.ss[r];
            mx = j.mx[r] > mx ? j.mx[r] : mx;
        }
        double cnt = (double)n * (double)k;
        dsv4_qstat st = { wi, sqrt(se / (cnt ? cnt : 1)), mx, sqrt(ss / (cnt ? cnt : 1)) };
        wr->stat(wr->sctx, &st);
    }
    wr->reported[w] = 1;
    wr->cur = w;
    free(j.scratch);
    free(j.se);
    return 0;
}

static int produce(void *ctx, const dsv4_tensor *t, dsv4_err *err)
{
    struct writer *wr = ctx;
    dsv4_qitem *it = (dsv4_qitem *)((char *)t - offsetof(dsv4_qitem, out));
    int rc;
    (void)err;
    if (it->target == DSV4_QT_COPY) {
        it->out.data = wr->p->in[it->src]->data;
        return 0;
    }
    size_t w = it->is_scale ? it->pair : it->src;
    if (wr->cur != w && (rc = encode(wr, it, w)))
        return rc;
    it->out.data = it->is_scale ? wr->scales : wr->codes;
    return 0;
}

static void quant_json(dsv4_buf *b, const dsv4_model *src, const dsv4_qplan *p, const dsv4_qrules *r,
                       const dsv4_requant_opts *o)
{
    char fp[2 * DSV4_FINGERPRINT_BYTES + 1];
    const char *tool = o && o->tool ? o->tool : "dsv4";
    dsv4_model_fingerprint_hex(src, fp);
    dsv4_buf_printf(b, "{\n  \"format\": \"dsv4-quant\",\n  \"tool\": ");
    dsv4_json_write_str(b, tool, strlen(tool));
    dsv4_buf_printf(b, ",\n  \"source_fingerprint\": \"%s\",\n  \"recipes\": [", fp);
    for (const char *q = r->recipes; q && *q;) {
        size_t l = strcspn(q, " ");
        dsv4_buf_puts(b, q == r->recipes ? "" : ", ");
        dsv4_json_write_str(b, q, l);
        q += l;
        q += strspn(q, " ");
    }
    dsv4_buf_puts(b, "],\n  \"rules\": [");
    for (size_t i = 0; i < r->n; i++) {
        dsv4_buf_puts(b, i ? ", " : "");
        dsv4_json_write_str(b, r->r[i].text, strlen(r->r[i].text));
    }
    dsv4_buf_printf(b, "],\n  \"tensors_reencoded\": %zu,\n  \"bytes_before\": %llu,\n  \"bytes_after\": %llu\n}\n",
                    p->n_requant, (unsigned long long)p->bytes_in, (unsigned long long)p->bytes_out);
}

int dsv4_requant_write(const dsv4_model *src, dsv4_qplan *p, const dsv4_qrules *r, int fd,
                       const dsv4_requant_opts *o, dsv4_qstat_fn stat, void *sctx, dsv4_progress_fn progress,
                       void *pctx, uint8_t fingerprint[DSV4_FINGERPRINT_BYTES], dsv4_err *err)
{
    struct writer wr = { p, r, o ? o->pool : NULL, stat, sctx, SIZE_MAX, NULL, NULL, NULL, err };
    size_t nb = dsv4_model_blob_count(src), k = 0;
    dsv4_blob *blobs = calloc(nb + 1, sizeof *blobs);
    const dsv4_tensor **views = calloc(p->n + 1, sizeof *views);
    dsv4_buf qj = DSV4_BUF_INIT;
    int rc;
    wr.reported = calloc(p->n_in + 1, 1);
    quant_json(&qj, src, p, r, o);
    if (!blobs || !views || !wr.reported || qj.oom) {
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        goto out;
    }
    for (size_t b = 0; b < nb; b++) {
        const char *name = dsv4_model_blob_name(src, b);
        if (!strcmp(name, "quant.json"))
            continue;   /* replaced: the chain goes through source_fingerprint */
        blobs[k].name = name;
        blobs[k].data = dsv4_model_blob(src, name, &blobs[k].len);
        k++;
    }
    blobs[k++] = (dsv4_blob){ "quant.json", qj.data, qj.len };
    for (size_t j = 0; j < p->n; j++)
        views[j] = &p->items[j].out;
    rc = dsv4_model_write(fd, views, p->n, blobs, k, produce, &wr, progress, pctx, fingerprint, err);
out:
    free(wr.codes);
    free(wr.scales);
    free(wr.reported);
    free(blobs);
    free(views);
    dsv4_buf_release(&qj);
    return rc;
}
