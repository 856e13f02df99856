/* run — model, state and snapshots shared by dsv4-prefill and dsv4-decode
 * (see run.h). */
#include "run.h"
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void run_label(const char *path, char *out, size_t cap)
{
    if (cli_is_std(path))
        snprintf(out, cap, "standard input");
    else
        snprintf(out, cap, "'%s'", path);
}

int run_parse_device(struct cli *cli, const char *arg)
{
    if (!strcmp(arg, "cpu"))
        return RUN_DEV_CPU;
    if (!strcmp(arg, "cuda"))
        return RUN_DEV_CUDA;
    if (!strcmp(arg, "auto"))
        return RUN_DEV_AUTO;
    cli_usage_error(cli, "--device must be cpu, cuda or auto, not '%s'", arg);
    return RUN_DEV_CPU;
}

struct progress {
    struct cli *cli;
    const char *label;
};

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    struct progress *p = ctx;
    cli_progress(p->cli, p->label, done, total);
}

int run_open(struct cli *cli, struct run *r, const char *model_path, int threads, int device, dsv4_err *err)
{
    int rc;
    memset(r, 0, sizeof *r);
    r->model_path = model_path;
    if ((rc = dsv4_model_open(&r->m, model_path, err)))
        return rc;
    r->c = dsv4_model_config(r->m);
    if ((rc = dsv4_engine_open_model(&r->e, r->m, threads, err)))
        return dsv4_err_prefix(err, "'%s'", model_path);
    if (device == RUN_DEV_CUDA || (device == RUN_DEV_AUTO && dsv4_cu_available())) {
        struct progress pr = { cli, "uploading weights to the GPU (bytes)" };
        rc = dsv4_cuengine_open(&r->g, r->e, on_progress, &pr, err);
        cli_progress_end(cli);
        if (rc)
            return dsv4_err_prefix(err, "--device cuda");
    }
    return 0;
}

int run_fresh(struct run *r, int compact, dsv4_err *err)
{
    int rc = dsv4_kv_new(&r->s, r->c, compact, err);
    if (!rc && r->g)
        rc = dsv4_cukv_new(&r->gs, r->c, compact, err);
    return rc;
}

int run_sync(struct run *r, dsv4_err *err)
{
    if (!r->gs || !r->s_stale)
        return 0;
    int rc = dsv4_cukv_download(r->gs, r->s, err);
    if (!rc)
        r->s_stale = 0;
    return rc;
}

int run_resume(struct cli *cli, struct run *r, const char *path, dsv4_err *err)
{
    char label[512];
    FILE *f = NULL;
    dsv4_snap sn = DSV4_SNAP_INIT;
    dsv4_snap_ropts o = DSV4_SNAP_ROPTS_INIT;
    struct progress pr = { cli, "reading snapshot (bytes)" };
    int rc;
    run_label(path, label, sizeof label);
    if ((rc = cli_open_in(cli, path, 1, &f, err)))
        return cli_is_std(path) ? dsv4_err_prefix(err, "-r") : rc;
    o.name = label;
    o.fingerprint = dsv4_model_fingerprint(r->m);
    o.config = r->c;
    o.want_eof = !cli_is_std(path);
    o.progress = on_progress;
    o.progress_ctx = &pr;
    o.threads = dsv4_engine_threads(r->e);
    rc = dsv4_snap_read(fileno(f), &o, &sn, NULL, err);
    cli_progress_end(cli);
    if (f != stdin)
        fclose(f);
    if (rc) {
        if (rc == DSV4_E_MISMATCH)
            dsv4_err_prefix(err, "model '%s'", r->model_path);
        return rc;
    }
    dsv4_kv_free(r->s);
    dsv4_toks_vec_release(&r->toks);
    free(r->hidden);
    r->s = sn.kv;
    r->hidden = sn.hidden;
    r->toks.ids = sn.tokens;
    r->toks.n = r->toks.cap = (size_t)sn.info.n_tokens;
    r->s_stale = 0;
    if (r->g) {
        dsv4_cukv_free(r->gs);
        r->gs = NULL;
        if ((rc = dsv4_cukv_new(&r->gs, r->c, r->s->compact, err)) || (rc = dsv4_cukv_upload(r->gs, r->s, err)))
            return dsv4_err_prefix(err, "%s: loading the state onto the GPU", label);
    }
    return 0;
}

/* A binary stream made for another tokenizer is refused (when both
 * fingerprints are known). */
static int check_tokenizer(struct cli *cli, const struct run *r, const char *in_label, const dsv4_toks_info *info,
                           dsv4_err *err)
{
    uint8_t fp[DSV4_TOKS_FP_BYTES];
    size_t len;
    const char *tj = dsv4_model_blob(r->m, "tokenizer.json", &len);
    int rc;
    if (!info->has_fingerprint)
        return 0;
    if (!tj) {
        cli_info(cli, "'%s' embeds no tokenizer.json: the token stream's tokenizer is not checked", r->model_path);
        return 0;
    }
    if ((rc = dsv4_toks_fingerprint(tj, len, fp, err)))
        return rc;
    if ((rc = dsv4_toks_check_fingerprint(fp, info->fingerprint, err)))
        return dsv4_err_prefix(err, "%s is not for model '%s'", in_label, r->model_path);
    return 0;
}

int run_load_tokens(struct cli *cli, struct run *r, const char *path, dsv4_toks_vec *v, dsv4_err *err)
{
    FILE *in = NULL;
    dsv4_toks_info info;
    char label[512];
    int rc;
    run_label(path, label, sizeof label);
    if ((rc = cli_open_in(cli, path, 1, &in, err)))
        return rc;
    rc = dsv4_toks_load(fileno(in), cli_is_std(path) ? NULL : path, (uint32_t)r->c->vocab_size, 0, v, &info, err);
    if (in != stdin)
        fclose(in);
    if (rc && cli_is_std(path))
        dsv4_err_prefix(err, "standard input");
    if (!rc)
        rc = check_tokenizer(cli, r, label, &info, err);
    return rc;
}

int run_open_output(struct cli *cli, struct cli_out *o, const char *path, const char *opt, int replace,
                    dsv4_err *err)
{
    int rc;
    if (!cli_is_std(path) && !cli->force && !replace && access(path, F_OK) == 0)
        return dsv4_err_set(err, DSV4_E_INVALID, "'%s' already exists; use --force to overwrite it", path);
    if (cli_is_std(path) && !cli->force && isatty(STDOUT_FILENO))
        return dsv4_err_set(err, DSV4_E_INVALID, "%s: standard output is a terminal; give a file, a pipe, "
                            "or --force", opt);
    if ((rc = cli_out_open(cli, o, path, 1, err)))
        return dsv4_err_prefix(err, "%s", opt);
    return 0;
}

int run_forward(struct run *r, const uint32_t *ids, int64_t n, int logits_mode, float *logits, dsv4_err *err)
{
    int64_t HD = r->c->hc_mult * r->c->dim;
    int rc;
    if (n > r->hcap) {
        float *h = realloc(r->hbuf, (size_t)(n * HD) * sizeof *h);
        if (!h)
            return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory for %lld tokens", (long long)n);
        r->hbuf = h;
        r->hcap = n;
    }
    if (!r->hidden && !(r->hidden = malloc((size_t)HD * sizeof *r->hidden)))
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    if (dsv4_toks_vec_reserve(&r->toks, (size_t)n))
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory for %lld token ids", (long long)n);
    if (r->g) {
        if ((rc = dsv4_cuforward(r->g, r->gs, ids, n, logits_mode, logits, r->hbuf, err)))
            return rc;
        r->s_stale = 1;
    } else if ((rc = dsv4_forward(r->e, r->s, ids, n, logits_mode, logits, r->hbuf, err))) {
        return rc;
    }
    memcpy(r->hidden, r->hbuf + (n - 1) * HD, (size_t)HD * sizeof *r->hidden);
    memcpy(r->toks.ids + r->toks.n, ids, (size_t)n * sizeof *ids);
    r->toks.n += (size_t)n;
    return 0;
}

int run_last_logits(struct run *r, float *logits, dsv4_err *err)
{
    if (!r->toks.n || !r->hidden)
        return dsv4_err_set(err, DSV4_E_INVALID, "the state holds no tokens: there is nothing to continue from");
    if (r->g)
        return dsv4_cuengine_logits(r->g, r->hidden, 1, logits, err);
    return dsv4_engine_logits(r->e, r->hidden, 1, logits, err);
}

int run_save(struct cli *cli, struct run *r, struct cli_out *o, dsv4_snap_stats *st, dsv4_err *err)
{
    char name[512];
    struct progress pr = { cli, "writing snapshot (bytes)" };
    dsv4_snap_wopts w = DSV4_SNAP_WOPTS_INIT;
    int rc;
    snprintf(name, sizeof name, o->path ? "'%s'" : "%s", o->path ? o->path : "standard output");
    if ((rc = run_sync(r, err)))
        return dsv4_err_prefix(err, "reading the state back from the GPU");
    fflush(o->f);
    w.name = name;
    w.progress = on_progress;
    w.progress_ctx = &pr;
    w.threads = dsv4_engine_threads(r->e);
    rc = dsv4_snap_write(o->fd, r->c, dsv4_model_fingerprint(r->m), r->s, r->toks.ids, r->hidden, &w, st, err);
    cli_progress_end(cli);
    return rc;
}

double run_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int run_write_f32(struct cli_out *o, const char *name, const float *x, size_t n, dsv4_err *err)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (fwrite(x, sizeof *x, n, o->f) == n)
        return 0;
#else
    size_t i = 0;
    while (i < n) {
        uint8_t b[4096];
        size_t k = 0;
        for (; i < n && k + 4 <= sizeof b; i++, k += 4) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            dsv4_le32_put(b + k, u);
        }
        if (fwrite(b, 1, k, o->f) != k)
            break;
    }
    if (i == n)
        return 0;
#endif
    return dsv4_err_set(err, DSV4_E_IO, "cannot write '%s': %s", name, strerror(errno));
}

void run_human_bytes(char *out, size_t cap, double b)
{
    static const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    int i = 0;
    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(out, cap, i ? "%.2f %s" : "%.0f %s", b, u[i]);
}

void run_close(struct run *r)
{
    dsv4_cukv_free(r->gs);
    dsv4_cuengine_close(r->g);
    dsv4_kv_free(r->s);
    dsv4_toks_vec_release(&r->toks);
    free(r->hidden);
    free(r->hbuf);
    dsv4_engine_close(r->e);
    dsv4_model_close(r->m);
    memset(r, 0, sizeof *r);
}
