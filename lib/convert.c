/* convert — checkpoint conversion and validation (see convert.h). */
#include "convert.h"
#include "buf.h"
#include "check.h"
#include "json.h"
#include "version.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int dsv4_read_file(const char *path, size_t max, char **data, size_t *len, dsv4_err *err)
{
    FILE *f = fopen(path, "rb");
    dsv4_buf b = DSV4_BUF_INIT;
    char tmp[65536];
    size_t n;
    if (!f)
        return dsv4_err_set(err, errno == ENOENT ? DSV4_E_NOTFOUND : DSV4_E_IO, "cannot open '%s': %s", path,
                            strerror(errno));
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        dsv4_buf_append(&b, tmp, n);
        if (b.len > max) {
            fclose(f);
            dsv4_buf_release(&b);
            return dsv4_err_set(err, DSV4_E_RANGE, "'%s' is larger than %zu bytes", path, max);
        }
    }
    if (ferror(f) || b.oom) {
        int e = errno;
        fclose(f);
        dsv4_buf_release(&b);
        return dsv4_err_set(err, b.oom ? DSV4_E_NOMEM : DSV4_E_IO, "cannot read '%s': %s", path, strerror(e));
    }
    fclose(f);
    *data = dsv4_buf_detach(&b, len);
    return 0;
}

int dsv4_input_kind(const char *path, dsv4_err *err)
{
    struct stat st;
    unsigned char sig[8];
    FILE *f;
    if (stat(path, &st))
        return dsv4_err_set(err, errno == ENOENT ? DSV4_E_NOTFOUND : DSV4_E_IO, "cannot open '%s': %s", path,
                            strerror(errno));
    if (S_ISDIR(st.st_mode))
        return DSV4_INPUT_HF;
    if (!(f = fopen(path, "rb")))
        return dsv4_err_set(err, DSV4_E_IO, "cannot open '%s': %s", path, strerror(errno));
    if (fread(sig, 1, 8, f) == 8 && sig[0] == 0x89 && !memcmp(sig + 1, "WT4", 3)) {
        fclose(f);
        return DSV4_INPUT_MODEL;
    }
    /* a safetensors file: u64 header length, then the JSON header */
    if (fseek(f, 0, SEEK_SET) == 0 && fread(sig, 1, 8, f) == 8 && dsv4_le64_get(sig) >= 2 &&
        fgetc(f) == '{') {
        fclose(f);
        return DSV4_INPUT_HF;
    }
    fclose(f);
    return dsv4_err_set(err, DSV4_E_FORMAT, "'%s': neither a .dsv4 model file (bad signature) nor a safetensors file",
                        path);
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* The folder holding a checkpoint path (itself if a folder). */
static char *hf_folder(const char *path)
{
    struct stat st;
    char *d, *s;
    if (!stat(path, &st) && S_ISDIR(st.st_mode))
        return strdup(path);
    d = strdup(path);
    if (!d)
        return NULL;
    s = strrchr(d, '/');
    if (!s) {
        free(d);
        return strdup(".");
    }
    *(s == d ? s + 1 : s) = 0;
    return d;
}

/* An opened HF checkpoint: config + tensors. */
struct hf {
    char *dir;
    char *cfg_text;
    size_t cfg_len;
    dsv4_config cfg;
    dsv4_st *st;
    const dsv4_tensor **views;   /* in inventory order when possible */
    size_t n;
};

static void hf_close(struct hf *h)
{
    free(h->dir);
    free(h->cfg_text);
    dsv4_st_close(h->st);
    free(h->views);
    memset(h, 0, sizeof *h);
}

static int cmp_spec_name(const void *a, const void *b)
{
    return strcmp(((const dsv4_tensor_spec *)a)->name, ((const dsv4_tensor_spec *)b)->name);
}

static int find_spec_name(const void *key, const void *b)
{
    return strcmp(key, ((const dsv4_tensor_spec *)b)->name);
}

/* Returns 0 (opened; every problem found went to report) or a negative error. */
static int hf_open(struct hf *h, const char *path, dsv4_report_fn report, void *rctx, dsv4_err *err)
{
    char *cp;
    int rc;
    dsv4_tensor_spec *spec = NULL;
    size_t ns, k = 0;
    memset(h, 0, sizeof *h);
    if (!(h->dir = hf_folder(path)) || !(cp = join(h->dir, "config.json")))
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    rc = dsv4_read_file(cp, 16u << 20, &h->cfg_text, &h->cfg_len, err);
    free(cp);
    if (rc) {
        if (rc == DSV4_E_NOTFOUND)
            dsv4_err_set(err, rc, "'%s': no config.json (not a Hugging Face checkpoint folder?)", h->dir);
        goto fail;
    }
    if ((rc = dsv4_config_parse(&h->cfg, h->cfg_text, h->cfg_len, err))) {
        dsv4_err_prefix(err, "'%s'", h->dir);
        goto fail;
    }
    if ((rc = dsv4_st_open(&h->st, path, report, rctx, err)))
        goto fail;
    /* the reader reported its problems already; tensors it could not read are missing */
    h->n = dsv4_st_count(h->st);
    h->views = malloc((h->n ? h->n : 1) * sizeof *h->views);
    if (!h->views || (rc = dsv4_config_tensors(&h->cfg, &spec, &ns, err))) {
        if (!rc)
            rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        goto fail;
    }
    /* inventory order first (layer by layer, good for streaming), then the rest */
    for (size_t i = 0; i < ns; i++) {
        const dsv4_tensor *t = dsv4_st_find(h->st, spec[i].name);
        if (t)
            h->views[k++] = t;
    }
    qsort(spec, ns, sizeof *spec, cmp_spec_name);
    for (size_t i = 0; i < h->n; i++) {
        const dsv4_tensor *t = dsv4_st_tensor(h->st, i);
        if (!bsearch(t->name, spec, ns, sizeof *spec, find_spec_name))
            h->views[k++] = t;
    }
    free(spec);
    rc = dsv4_check_inventory(&h->cfg, h->views, h->n, 0, report, rctx, err);
    return rc < 0 ? (hf_close(h), rc) : 0;
fail:
    hf_close(h);
    return rc;
}

struct counter {
    dsv4_report_fn fn;
    void *ctx;
    int n;
};

static void count_report(void *ctx, const char *subject, const char *msg)
{
    struct counter *c = ctx;
    c->n++;
    c->fn(c->ctx, subject, msg);
}

struct value_hook {
    const dsv4_config *cfg;
    struct counter *cnt;
};

static int value_hook(void *ctx, const dsv4_tensor *t, dsv4_err *err)
{
    struct value_hook *v = ctx;
    dsv4_check_values(v->cfg, t, count_report, v->cnt);
    return 0;
}

/* dsv4.json: what dsv4 derived from the config, for people and tools. */
static void layout_json(dsv4_buf *b, const struct hf *h, const dsv4_convert_opts *o)
{
    dsv4_tensor_spec *spec = NULL;
    size_t ns = 0;
    dsv4_param_counts pc = { 0 };
    if (!dsv4_config_tensors(&h->cfg, &spec, &ns, NULL))
        dsv4_config_params(&h->cfg, spec, ns, &pc);
    free(spec);
    dsv4_buf_printf(b, "{\n  \"format\": \"dsv4-model\",\n  \"tool\": ");
    dsv4_json_write_str(b, o && o->tool ? o->tool : "dsv4", strlen(o && o->tool ? o->tool : "dsv4"));
    dsv4_buf_printf(b, ",\n  \"tensors\": %zu,\n  \"params\": {\"total\": %lld, \"backbone\": %lld, \"mtp\": %lld, "
                       "\"routed\": %lld, \"active\": %lld, \"active_no_embed\": %lld},\n  \"layers\": [",
                    h->n, (long long)pc.total, (long long)pc.backbone, (long long)pc.mtp, (long long)pc.routed,
                    (long long)pc.active, (long long)pc.active_no_embed);
    for (int l = 0; l < h->cfg.n_ratios; l++) {
        int r = h->cfg.compress_ratios[l];
        dsv4_buf_printf(b, "%s\n    {\"layer\": %d, \"mtp\": %s, \"ratio\": %d, \"attention\": \"%s\", \"routing\": \"%s\"}",
                        l ? "," : "", l, l >= h->cfg.n_layers ? "true" : "false", r,
                        r == 0 ? "swa" : r == 4 ? "csa" : "hca", l < h->cfg.n_hash_layers ? "hash" : "score");
    }
    dsv4_buf_puts(b, "\n  ]\n}\n");
}

int dsv4_convert(const char *hf_dir, int fd, const dsv4_convert_opts *o, dsv4_report_fn report, void *rctx,
                 dsv4_progress_fn progress, void *pctx, uint8_t fp[DSV4_FINGERPRINT_BYTES], dsv4_err *err)
{
    struct counter cnt = { report, rctx, 0 };
    struct hf h;
    dsv4_blob blobs[8];
    char *extra[4] = { 0 };
    size_t extra_len[4] = { 0 }, nb = 0;
    static const char *const optional[] = { "generation_config.json", "tokenizer.json", "tokenizer_config.json" };
    dsv4_buf layout = DSV4_BUF_INIT;
    struct value_hook vh;
    int bad, rc;
    if ((rc = hf_open(&h, hf_dir, count_report, &cnt, err)))
        return rc;
    if ((bad = cnt.n)) {
        hf_close(&h);
        return bad;
    }
    blobs[nb++] = (dsv4_blob){ "config.json", h.cfg_text, h.cfg_len };
    for (int i = 0; i < 3; i++) {
        char *p = (i == 1 && o && o->tokenizer_path) ? strdup(o->tokenizer_path) : join(h.dir, optional[i]);
        if (!p) {
            rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
            goto out;
        }
        rc = dsv4_read_file(p, 1u << 30, &extra[i], &extra_len[i], err);
        if (rc == DSV4_E_NOTFOUND && !(i == 1 && o && o->tokenizer_path)) {
            free(p);
            continue;
        }
        free(p);
        if (rc)
            goto out;
        {
            /* embedded JSON must at least parse: a broken tokenizer.json would only fail later */
            dsv4_json *j = NULL;
            if ((rc = dsv4_json_parse(&j, extra[i], extra_len[i], 0, err))) {
                dsv4_err_prefix(err, "%s", optional[i]);
                goto out;
            }
            dsv4_json_free(j);
        }
        blobs[nb++] = (dsv4_blob){ optional[i], extra[i], extra_len[i] };
    }
    layout_json(&layout, &h, o);
    if (layout.oom) {
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        goto out;
    }
    blobs[nb++] = (dsv4_blob){ "dsv4.json", layout.data, layout.len };
    vh.cfg = &h.cfg;
    vh.cnt = &cnt;
    rc = dsv4_model_write(fd, h.views, h.n, blobs, nb, value_hook, &vh, progress, pctx, fp, err);
    if (rc == 0)
        rc = cnt.n;
out:
    for (int i = 0; i < 4; i++)
        free(extra[i]);
    dsv4_buf_release(&layout);
    hf_close(&h);
    return rc;
}

struct progress_span {
    dsv4_progress_fn fn;
    void *ctx;
    uint64_t base, total;
};

static void span_progress(void *ctx, uint64_t done, uint64_t total)
{
    struct progress_span *s = ctx;
    (void)total;
    if (s->fn)
        s->fn(s->ctx, s->base + done, s->total);
}

static void check_values_all(const dsv4_config *cfg, const dsv4_tensor *const *v, size_t n, struct counter *cnt,
                             struct progress_span *ps)
{
    uint64_t done = 0;
    for (size_t i = 0; i < n; i++) {
        dsv4_check_values(cfg, v[i], count_report, cnt);
        done += v[i]->nbytes;
        span_progress(ps, done, ps->total);
    }
}

int dsv4_check_input(const char *path, dsv4_report_fn report, void *rctx, dsv4_progress_fn progress, void *pctx,
                     dsv4_err *err)
{
    struct counter cnt = { report, rctx, 0 };
    int kind = dsv4_input_kind(path, err), rc;
    if (kind < 0)
        return kind;
    if (kind == DSV4_INPUT_HF) {
        struct hf h;
        struct progress_span ps = { progress, pctx, 0, 0 };
        if ((rc = hf_open(&h, path, count_report, &cnt, err)))
            return rc;
        for (size_t i = 0; i < h.n; i++)
            ps.total += h.views[i]->nbytes;
        check_values_all(&h.cfg, h.views, h.n, &cnt, &ps);
        hf_close(&h);
        return cnt.n;
    } else {
        dsv4_model *m;
        const dsv4_tensor **v;
        size_t n;
        struct progress_span ps = { progress, pctx, 0, 0 };
        dsv4_err e2 = DSV4_ERR_INIT;
        if ((rc = dsv4_model_open(&m, path, &e2))) {
            /* a structurally broken file is one problem, not an inability to check */
            if (rc == DSV4_E_IO || rc == DSV4_E_NOMEM || rc == DSV4_E_NOTFOUND) {
                *err = e2;
                return rc;
            }
            report(rctx, path, e2.msg);
            return 1;
        }
        n = dsv4_model_count(m);
        v = malloc((n ? n : 1) * sizeof *v);
        if (!v) {
            dsv4_model_close(m);
            return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < n; i++) {
            v[i] = dsv4_model_tensor(m, i);
            ps.total += 2 * v[i]->nbytes;   /* hashed once, scanned once */
        }
        rc = dsv4_check_inventory(dsv4_model_config(m), v, n, dsv4_model_blob(m, "quant.json", &(size_t){ 0 }) != NULL,
                                  count_report, &cnt, err);
        if (rc >= 0) {
            rc = dsv4_model_verify(m, count_report, &cnt, span_progress, &ps, err);
            ps.base = ps.total / 2;
        }
        if (rc >= 0)
            check_values_all(dsv4_model_config(m), v, n, &cnt, &ps);
        free(v);
        dsv4_model_close(m);
        return rc < 0 ? rc : cnt.n;
    }
}
