/* safetensors — reader and writer (see safetensors.h). */
#include "safetensors.h"
#include "buf.h"
#include "json.h"
#include "mapfile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER 100000000ull   /* the format's own cap */

struct st_entry {
    dsv4_tensor t;
    char *name;
    int shard;
    uint64_t begin, end;             /* relative to the shard's data buffer */
};

struct dsv4_st {
    dsv4_map *shards;
    size_t n_shards;
    struct st_entry *e;
    size_t n, cap;
    size_t missing;
    uint64_t total;
    dsv4_report_fn report;
    void *ctx;
};

/* Report a problem; returns 0 when the caller should skip and go on (report
 * mode), or the error code (strict mode, err filled). */
static int problem(dsv4_st *st, dsv4_err *err, int code, const char *subject, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int problem(dsv4_st *st, dsv4_err *err, int code, const char *subject, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (st->report) {
        st->report(st->ctx, subject, msg);
        return 0;
    }
    return dsv4_err_set(err, code, "'%s': %s", subject, msg);
}

static int add_entry(dsv4_st *st, struct st_entry *e, dsv4_err *err)
{
    if (st->n == st->cap) {
        size_t nc = st->cap ? st->cap * 2 : 256;
        struct st_entry *p = realloc(st->e, nc * sizeof *p);
        if (!p)
            return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        st->e = p;
        st->cap = nc;
    }
    st->e[st->n++] = *e;
    return 0;
}

static int cmp_begin(const void *a, const void *b)
{
    const struct st_entry *x = *(struct st_entry *const *)a, *y = *(struct st_entry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const struct st_entry *)a)->name, ((const struct st_entry *)b)->name);
}

/* Parse one entry of a shard header; 1 = added, 0 = skipped (reported). */
static int parse_entry(dsv4_st *st, int shard, const char *key, const dsv4_json *v,
                       uint64_t bufsize, struct st_entry *out, dsv4_err *err)
{
    const char *path = st->shards[shard].path;
    const dsv4_json *dt = dsv4_json_get(v, "dtype"), *sh = dsv4_json_get(v, "shape"),
                    *off = dsv4_json_get(v, "data_offsets");
    char subj[400];
    int64_t numel = 1, span = 1;
    uint64_t b = 0, e = 0, esz;
    memset(out, 0, sizeof *out);
    snprintf(subj, sizeof subj, "%s: %s", path, key);
    if (v->type != DSV4_JSON_OBJECT || !dt || dt->type != DSV4_JSON_STRING || !sh ||
        sh->type != DSV4_JSON_ARRAY || !off || off->type != DSV4_JSON_ARRAY || off->len != 2)
        return problem(st, err, DSV4_E_FORMAT, subj, "header entry lacks dtype, shape or data_offsets");
    out->t.dtype = dsv4_dtype_from_name(dt->str);
    if (!out->t.dtype)
        return problem(st, err, DSV4_E_FORMAT, subj, "unknown dtype '%s'", dt->str);
    if (sh->len > DSV4_MAX_DIMS)
        return problem(st, err, DSV4_E_FORMAT, subj, "%zu dimensions (at most %d supported)", sh->len, DSV4_MAX_DIMS);
    out->t.ndim = (int)sh->len;
    for (size_t i = 0; i < sh->len; i++) {
        const dsv4_json *d = &sh->items[i];
        if (d->type != DSV4_JSON_NUMBER || !d->is_int || d->num < 0 || d->num > 1e15)
            return problem(st, err, DSV4_E_FORMAT, subj, "bad dimension %zu in shape", i);
        out->t.shape[i] = (int64_t)d->num;
        /* span: the product of the nonzero dims, so that a zero dim does not
         * let the others multiply past int64 where rows are sized */
        if (out->t.shape[i] && span > INT64_MAX / 16 / out->t.shape[i])
            return problem(st, err, DSV4_E_FORMAT, subj, "shape too large");
        if (out->t.shape[i])
            span *= out->t.shape[i];
        numel *= out->t.shape[i];
    }
    for (int i = 0; i < 2; i++) {
        const dsv4_json *o = &off->items[i];
        char *stop;
        uint64_t x;
        if (o->type != DSV4_JSON_NUMBER || !o->is_int || o->num < 0)
            return problem(st, err, DSV4_E_FORMAT, subj, "bad data_offsets");
        errno = 0;
        x = strtoull(o->str, &stop, 10);
        if (errno == ERANGE || *stop)   /* past 2^64: strtoull would saturate */
            return problem(st, err, DSV4_E_FORMAT, subj, "bad data_offsets");
        *(i ? &e : &b) = x;
    }
    esz = dsv4_dtype_size(out->t.dtype);
    if (b > e)
        return problem(st, err, DSV4_E_FORMAT, subj, "data_offsets [%llu, %llu) are reversed",
                       (unsigned long long)b, (unsigned long long)e);
    if (e - b != (uint64_t)numel * esz)
        return problem(st, err, DSV4_E_FORMAT, subj, "%llu data bytes but shape x dtype needs %llu",
                       (unsigned long long)(e - b), (unsigned long long)((uint64_t)numel * esz));
    if (e > bufsize)
        return problem(st, err, DSV4_E_TRUNCATED, subj,
                       "data ends at byte %llu of the buffer but the file holds only %llu (truncated shard?)",
                       (unsigned long long)e, (unsigned long long)bufsize);
    out->name = strdup(key);
    if (!out->name)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    out->shard = shard;
    out->begin = b;
    out->end = e;
    out->t.nbytes = e - b;
    return 1;
}

static int open_shard(dsv4_st *st, int shard, dsv4_err *err)
{
    dsv4_map *m = &st->shards[shard];
    dsv4_json *h = NULL;
    uint64_t hlen, bufsize;
    size_t first = st->n, nbad = 0;
    int rc = 0;
    if (m->size < 8)
        return problem(st, err, DSV4_E_TRUNCATED, m->path, "file too short for a safetensors header (%llu bytes)",
                       (unsigned long long)m->size);
    hlen = dsv4_le64_get(m->data);
    if (hlen > ST_MAX_HEADER)
        return problem(st, err, DSV4_E_FORMAT, m->path, "header length %llu exceeds the 100 MB limit",
                       (unsigned long long)hlen);
    if (hlen > m->size - 8)
        return problem(st, err, DSV4_E_TRUNCATED, m->path, "header length %llu but the file has %llu bytes",
                       (unsigned long long)hlen, (unsigned long long)m->size);
    if (hlen < 2 || m->data[8] != '{')
        return problem(st, err, DSV4_E_FORMAT, m->path, "header is not a JSON object");
    {
        dsv4_err je = DSV4_ERR_INIT;
        rc = dsv4_json_parse(&h, (const char *)m->data + 8, (size_t)hlen, 0, &je);
        if (rc)
            return problem(st, err, rc, m->path, "bad header JSON: %.150s", je.msg);
    }
    if (h->type != DSV4_JSON_OBJECT) {
        dsv4_json_free(h);
        return problem(st, err, DSV4_E_FORMAT, m->path, "header is not a JSON object");
    }
    bufsize = m->size - 8 - hlen;
    for (size_t i = 0; i < h->len; i++) {
        struct st_entry e;
        if (!strcmp(h->keys[i], "__metadata__"))
            continue;
        rc = parse_entry(st, shard, h->keys[i], &h->items[i], bufsize, &e, err);
        if (rc < 0)
            goto out;
        if (rc == 0) {
            nbad++;
            continue;
        }
        e.t.data = m->data + 8 + hlen + e.begin;
        if ((rc = add_entry(st, &e, err)) < 0) {
            free(e.name);
            goto out;
        }
    }
    rc = 0;
    /* Ranges may not overlap (and, per the format, leave no holes). */
    if (st->n - first > 0) {
        size_t k = st->n - first;
        struct st_entry **v = malloc(k * sizeof *v);
        uint64_t pos = 0;
        if (!v) {
            rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < k; i++)
            v[i] = &st->e[first + i];
        qsort(v, k, sizeof *v, cmp_begin);
        for (size_t i = 0; i < k && !rc; i++) {
            char subj[400];
            snprintf(subj, sizeof subj, "%s: %s", m->path, v[i]->name);
            if (v[i]->begin < pos)
                rc = problem(st, err, DSV4_E_FORMAT, subj, "data overlaps the previous tensor");
            else if (v[i]->begin > pos && !nbad)
                rc = problem(st, err, DSV4_E_FORMAT, subj, "%llu unindexed bytes before this tensor",
                             (unsigned long long)(v[i]->begin - pos));
            if (v[i]->end > pos)
                pos = v[i]->end;
        }
        free(v);
    }
out:
    dsv4_json_free(h);
    return rc;
}

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int add_shard(dsv4_st *st, const char *path, dsv4_err *err)
{
    dsv4_map *m = realloc(st->shards, (st->n_shards + 1) * sizeof *m);
    dsv4_err e2 = DSV4_ERR_INIT;
    int rc;
    if (!m)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    st->shards = m;
    rc = dsv4_map_open(&m[st->n_shards], path, &e2);
    if (rc) {
        if (st->report) {
            st->report(st->ctx, path, rc == DSV4_E_NOTFOUND ? "shard listed in the index does not exist"
                                                            : e2.msg);
            return 1;
        }
        *err = e2;
        return rc;
    }
    st->n_shards++;
    rc = open_shard(st, (int)st->n_shards - 1, err);
    return rc;
}

/* qsort and bsearch must not get the NULL array of a file with no tensors
 * (undefined behaviour even for 0 elements; UBSan stops on it). */
static void sort_entries(dsv4_st *st)
{
    if (st->n > 1)
        qsort(st->e, st->n, sizeof *st->e, cmp_name);
}

/* A name that appears more than once (in one shard's header, which JSON
 * allows, or in two shards) is reported once; in report mode all its copies
 * are left out, so that a lookup by name is unambiguous and the names stay
 * unique (dsv4_convert builds one view per name and relies on it).  The
 * entries must be sorted.  Returns 0 or the strict-mode error. */
static int drop_duplicates(dsv4_st *st, dsv4_err *err)
{
    size_t w = 0;
    for (size_t i = 0, j; i < st->n; i = j) {
        for (j = i + 1; j < st->n && !strcmp(st->e[j].name, st->e[i].name); j++)
            ;
        if (j - i == 1) {
            st->e[w++] = st->e[i];
            continue;
        }
        int rc = st->e[i].shard == st->e[i + 1].shard
                     ? problem(st, err, DSV4_E_FORMAT, st->e[i].name, "duplicate tensor name in %s",
                               st->shards[st->e[i].shard].path)
                     : problem(st, err, DSV4_E_FORMAT, st->e[i].name, "present in more than one shard");
        if (rc)     /* strict mode: the first one fails, nothing was dropped yet */
            return rc;
        for (size_t k = i; k < j; k++)
            free(st->e[k].name);
    }
    st->n = w;
    return 0;
}

static const struct st_entry *find_entry(const dsv4_st *st, const char *name)
{
    struct st_entry key;
    if (!st->n)
        return NULL;
    key.name = (char *)name;
    return bsearch(&key, st->e, st->n, sizeof *st->e, cmp_name);
}

static int open_index(dsv4_st *st, const char *dir, const dsv4_map *idx, dsv4_err *err)
{
    dsv4_json *j = NULL;
    const dsv4_json *wm;
    char **files = NULL;
    size_t nfiles = 0;
    int rc = dsv4_json_parse(&j, (const char *)idx->data, (size_t)idx->size, 0, err);
    if (rc)
        return dsv4_err_prefix(err, "'%s'", idx->path);
    wm = dsv4_json_get(j, "weight_map");
    if (!wm || wm->type != DSV4_JSON_OBJECT) {
        rc = dsv4_err_set(err, DSV4_E_FORMAT, "'%s': no \"weight_map\" object", idx->path);
        goto out;
    }
    files = calloc(wm->len ? wm->len : 1, sizeof *files);
    if (!files) {
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < wm->len; i++) {
        const dsv4_json *f = &wm->items[i];
        size_t k;
        if (f->type != DSV4_JSON_STRING || strchr(f->str, '/') || !f->str[0] || !strcmp(f->str, "..")) {
            rc = dsv4_err_set(err, DSV4_E_FORMAT, "'%s': weight_map[\"%s\"] is not a file name in the folder",
                              idx->path, wm->keys[i]);
            goto out;
        }
        for (k = 0; k < nfiles && strcmp(files[k], f->str); k++)
            ;
        if (k == nfiles)
            files[nfiles++] = f->str;
    }
    for (size_t k = 0; k < nfiles; k++) {
        char *p = path_join(dir, files[k]);
        if (!p) {
            rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
            goto out;
        }
        rc = add_shard(st, p, err);
        free(p);
        if (rc < 0)
            goto out;
    }
    rc = 0;
    sort_entries(st);
    /* Every name in the index must be in the shard it names, and only there. */
    for (size_t i = 0; i < wm->len && !rc; i++) {
        const struct st_entry *e = find_entry(st, wm->keys[i]);
        if (!e) {
            st->missing++;
            rc = problem(st, err, DSV4_E_NOTFOUND, wm->keys[i], "listed in the index (shard %s) but not found in it",
                         wm->items[i].str);
        } else if (strcmp(strrchr(st->shards[e->shard].path, '/') + 1, wm->items[i].str)) {
            rc = problem(st, err, DSV4_E_FORMAT, wm->keys[i], "index says shard %s but it is in %s",
                         wm->items[i].str, st->shards[e->shard].path);
        }
    }
    if (!rc)
        rc = drop_duplicates(st, err);
    for (size_t i = 0; i < st->n && !rc; i++) {
        if (!dsv4_json_get(wm, st->e[i].name))
            rc = problem(st, err, DSV4_E_FORMAT, st->e[i].name, "in shard %s but not listed in the index",
                         st->shards[st->e[i].shard].path);
    }
    if (rc < 0)
        dsv4_err_prefix(err, "'%s'", idx->path);
out:
    free(files);
    dsv4_json_free(j);
    return rc;
}

int dsv4_st_open(dsv4_st **out, const char *path, dsv4_report_fn report, void *ctx, dsv4_err *err)
{
    dsv4_st *st = calloc(1, sizeof *st);
    dsv4_map idx;
    char *p = NULL;
    int rc;
    *out = NULL;
    if (!st)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    st->report = report;
    st->ctx = ctx;
    p = path_join(path, "model.safetensors.index.json");
    if (!p) {
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        goto fail;
    }
    rc = dsv4_map_open(&idx, p, err);
    if (rc == 0) {
        rc = open_index(st, path, &idx, err);
        dsv4_map_close(&idx);
    } else {
        /* no index: a single file, or a folder with model.safetensors */
        char *single = path_join(path, "model.safetensors");
        dsv4_map probe;
        if (!single) {
            rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
            goto fail;
        }
        if (dsv4_map_open(&probe, single, err) == 0) {
            dsv4_map_close(&probe);
            rc = add_shard(st, single, err);
        } else {
            dsv4_err e2 = DSV4_ERR_INIT;
            if (dsv4_map_open(&probe, path, &e2) == 0) {
                dsv4_map_close(&probe);
                rc = add_shard(st, path, err);
            } else {
                rc = dsv4_err_set(err, DSV4_E_NOTFOUND,
                                  "'%s': neither a safetensors file nor a folder with model.safetensors.index.json "
                                  "or model.safetensors", path);
            }
        }
        free(single);
        if (rc > 0)   /* reported and skipped */
            rc = 0;
        sort_entries(st);
        if (rc == 0)
            rc = drop_duplicates(st, err);
    }
    if (rc < 0)
        goto fail;
    if (!st->n_shards) {
        rc = dsv4_err_set(err, DSV4_E_NOTFOUND, "'%s': no readable safetensors shard", path);
        goto fail;
    }
    for (size_t i = 0; i < st->n; i++) {
        st->e[i].t.name = st->e[i].name;
        st->total += st->e[i].t.nbytes;
    }
    free(p);
    *out = st;
    return 0;
fail:
    free(p);
    dsv4_st_close(st);
    return rc;
}

void dsv4_st_close(dsv4_st *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n; i++)
        free(st->e[i].name);
    for (size_t i = 0; i < st->n_shards; i++)
        dsv4_map_close(&st->shards[i]);
    free(st->shards);
    free(st->e);
    free(st);
}

size_t dsv4_st_count(const dsv4_st *st) { return st->n; }
const dsv4_tensor *dsv4_st_tensor(const dsv4_st *st, size_t i) { return i < st->n ? &st->e[i].t : NULL; }
const char *dsv4_st_file_of(const dsv4_st *st, size_t i) { return i < st->n ? st->shards[st->e[i].shard].path : NULL; }
size_t dsv4_st_missing_count(const dsv4_st *st) { return st->missing; }
uint64_t dsv4_st_total_bytes(const dsv4_st *st) { return st->total; }

const dsv4_tensor *dsv4_st_find(const dsv4_st *st, const char *name)
{
    const struct st_entry *e = find_entry(st, name);
    return e ? &e->t : NULL;
}

/* ---- writer ---- */

struct stw_item { char *name; dsv4_dtype dt; int ndim; int64_t shape[DSV4_MAX_DIMS]; uint64_t bytes; };

struct dsv4_stw {
    struct stw_item *items;
    size_t n;
    FILE *f;
    uint64_t expect, written;
};

int dsv4_stw_new(dsv4_stw **out, dsv4_err *err)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
}

int dsv4_stw_add(dsv4_stw *w, const char *name, dsv4_dtype dt, int ndim, const int64_t *shape, dsv4_err *err)
{
    struct stw_item *p, *it;
    uint64_t n = dsv4_dtype_size(dt);
    if (!n || ndim < 0 || ndim > DSV4_MAX_DIMS)
        return dsv4_err_set(err, DSV4_E_INVALID, "'%s': bad dtype or rank", name);
    p = realloc(w->items, (w->n + 1) * sizeof *p);
    if (!p)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    w->items = p;
    it = &p[w->n];
    memset(it, 0, sizeof *it);
    it->name = strdup(name);
    if (!it->name)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    it->dt = dt;
    it->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        it->shape[i] = shape[i];
        n *= (uint64_t)shape[i];
    }
    it->bytes = n;
    w->n++;
    return 0;
}

int dsv4_stw_begin(dsv4_stw *w, FILE *f, dsv4_err *err)
{
    dsv4_buf h = DSV4_BUF_INIT;
    uint64_t off = 0;
    unsigned char len[8];
    int rc = 0;
    dsv4_buf_putc(&h, '{');
    for (size_t i = 0; i < w->n; i++) {
        struct stw_item *it = &w->items[i];
        if (i)
            dsv4_buf_putc(&h, ',');
        dsv4_json_write_str(&h, it->name, strlen(it->name));
        dsv4_buf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", dsv4_dtype_name(it->dt));
        for (int d = 0; d < it->ndim; d++)
            dsv4_buf_printf(&h, "%s%lld", d ? "," : "", (long long)it->shape[d]);
        dsv4_buf_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                        (unsigned long long)(off + it->bytes));
        off += it->bytes;
    }
    dsv4_buf_putc(&h, '}');
    while (h.len % 8)   /* the reference writer pads the header with spaces to 8 bytes */
        dsv4_buf_putc(&h, ' ');
    if (h.oom) {
        dsv4_buf_release(&h);
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    }
    dsv4_le64_put(len, h.len);
    if (fwrite(len, 1, 8, f) != 8 || fwrite(h.data, 1, h.len, f) != h.len)
        rc = dsv4_err_set(err, DSV4_E_IO, "write error: %s", strerror(errno));
    dsv4_buf_release(&h);
    w->f = f;
    w->expect = off;
    w->written = 0;
    return rc;
}

int dsv4_stw_write(dsv4_stw *w, const void *data, size_t n, dsv4_err *err)
{
    if (w->written + n > w->expect)
        return dsv4_err_set(err, DSV4_E_INVALID, "more tensor data than declared");
    if (n && fwrite(data, 1, n, w->f) != n)
        return dsv4_err_set(err, DSV4_E_IO, "write error: %s", strerror(errno));
    w->written += n;
    return 0;
}

int dsv4_stw_end(dsv4_stw *w, dsv4_err *err)
{
    if (w->written != w->expect)
        return dsv4_err_set(err, DSV4_E_INVALID, "%llu of %llu declared tensor bytes written",
                            (unsigned long long)w->written, (unsigned long long)w->expect);
    return 0;
}

void dsv4_stw_free(dsv4_stw *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++)
        free(w->items[i].name);
    free(w->items);
    free(w);
}
