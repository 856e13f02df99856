/* dsv4-quant — re-encode tensors of a .dsv4 model file by rules and recipes
 * (see dsv4-quant(1), dsv4-model(5)). */
#include "cli.h"
#include "convert.h"
#include "kvstate.h"
#include "model.h"
#include "requant.h"
#include "version.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "usage: dsv4-quant [-qvf] [-R RECIPE]... [-r GLOB=FORMAT]... [--threads N] IN.dsv4 OUT.dsv4|-\n"
    "       dsv4-quant --dry-run [-R RECIPE]... [-r GLOB=FORMAT]... IN.dsv4|config.json\n"
    "       dsv4-quant --list-recipes";

static const char help[] =
    "\n"
    "Re-encode the tensors of a model file that rules select: routed experts to 2- or\n"
    "3-bit block formats to fit one GPU, FP8 weights to BF16 for debugging.  Everything\n"
    "else is copied bit-exactly.  Prints each re-encoded tensor's RMSE and largest\n"
    "error against the source values, and the bytes and bits per weight before and after.\n"
    "\n"
    "  -r, --rule=GLOB=FORMAT re-encode tensors whose name matches GLOB (fnmatch, '*'\n"
    "                         crosses dots) as FORMAT: Q2 (2.125 bits/weight), Q3\n"
    "                         (3.25 bits/weight), BF16, or copy; the last match wins\n"
    "  -R, --recipe=NAME      add a named recipe's rules (before any -r rules)\n"
    "      --list-recipes     print the recipes and their rules\n"
    "  -n, --dry-run          print the plan and the sizes, write nothing; the input may\n"
    "                         be a config.json (sizes from the tensors it implies)\n"
    "      --threads=N        worker threads, 0 = one per CPU [0]; output does not depend on it\n"
    "  -f, --force            overwrite an existing output file\n"
    "  -q, --quiet            print errors only\n"
    "  -v, --verbose          list copied tensors too\n"
    "      --progress         show progress even when stderr is not a terminal\n"
    "      --no-progress      never show progress\n"
    "  -h, --help             show this help\n"
    "  -V, --version          show versions and build facts\n"
    "\n"
    "Recipes:\n"
    "%s"
    "\n"
    "Exit status: 0 success, 1 runtime error, 2 usage error.\n";

enum { OPT_LIST = CLI_OPT_FIRST_PRIVATE, OPT_THREADS };

static const struct option longopts[] = {
    { "rule", required_argument, NULL, 'r' },
    { "recipe", required_argument, NULL, 'R' },
    { "list-recipes", no_argument, NULL, OPT_LIST },
    { "dry-run", no_argument, NULL, 'n' },
    { "threads", required_argument, NULL, OPT_THREADS },
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 }
};

struct report {
    struct cli *cli;
    FILE *f;            /* per-tensor lines and totals; NULL = quiet */
    const char *path;
    const dsv4_qplan *plan;
    double se, ss, mx;  /* over all re-encoded weights */
    double cnt;
};

static void on_warn(void *ctx, const char *subject, const char *msg)
{
    struct report *r = ctx;
    cli_warn(r->cli, "%s: rule '%s' %s", r->path, subject, msg);
}

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    cli_progress(ctx, "", done, total);
}

static void item_line(FILE *f, const dsv4_qplan *p, const dsv4_qitem *it)
{
    const dsv4_tensor *s = p->in[it->src];
    uint64_t in = s->nbytes, out = it->out.nbytes;
    char shape[64];
    if (it->target != DSV4_QT_COPY) {
        if (it->pair != SIZE_MAX)
            in += p->in[it->pair]->nbytes;
        if (it->mate != SIZE_MAX)
            out += p->items[it->mate].out.nbytes;
        snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)it->n, (long long)it->k);
    } else {
        dsv4_shape_str(s->shape, s->ndim, shape, sizeof shape);
    }
    fprintf(f, "%s %s -> %s %s %llu -> %llu B", s->name, dsv4_dtype_name(s->dtype),
            it->target == DSV4_QT_COPY ? "copy" : dsv4_dtype_name(it->out.dtype), shape, (unsigned long long)in,
            (unsigned long long)out);
}

/* The dry-run plan: re-encoded weights, and copies when asked. */
static void plan_lines(FILE *f, const dsv4_qplan *p, int copies)
{
    for (size_t j = 0; j < p->n; j++)
        if (!p->items[j].is_scale && (p->items[j].target != DSV4_QT_COPY || copies)) {
            item_line(f, p, &p->items[j]);
            fputc('\n', f);
        }
}

static void on_stat(void *ctx, const dsv4_qstat *st)
{
    struct report *r = ctx;
    const dsv4_qitem *it = st->item;
    double cnt = (double)it->n * (double)it->k;
    r->se += st->rmse * st->rmse * cnt;
    r->ss += st->rms_src * st->rms_src * cnt;
    r->cnt += cnt;
    r->mx = st->max_abs > r->mx ? st->max_abs : r->mx;
    if (!r->f)
        return;
    cli_progress_end(r->cli);
    item_line(r->f, r->plan, it);
    fprintf(r->f, " rmse %.3e max %.3e rel %.4f\n", st->rmse, st->max_abs, st->rms_src > 0 ? st->rmse / st->rms_src : 0.0);
}

static void gb(char *out, size_t cap, double b)
{
    snprintf(out, cap, "%.2f GB, %.2f GiB", b / 1e9, b / 1073741824.0);
}

static void totals(FILE *f, const dsv4_qplan *p, const struct report *r, int dry)
{
    char a[64], b[64];
    double qp = (double)p->q_params;
    fprintf(f, "tensors: %zu in, %zu out; %zu re-encoded\n", p->n_in, p->n, p->n_requant);
    if (p->n_requant)
        fprintf(f, "re-encoded: %lld weights, %llu -> %llu B with scales, %.3f -> %.3f bits/weight\n",
                (long long)p->q_params, (unsigned long long)p->q_bytes_in, (unsigned long long)p->q_bytes_out,
                8.0 * (double)p->q_bytes_in / qp, 8.0 * (double)p->q_bytes_out / qp);
    if (!dry && r->cnt > 0)
        fprintf(f, "error: rmse %.4g, max %.4g, relative rmse %.4f\n", sqrt(r->se / r->cnt), r->mx,
                r->ss > 0 ? sqrt(r->se / r->ss) : 0.0);
    gb(a, sizeof a, (double)p->bytes_in);
    gb(b, sizeof b, (double)p->bytes_out);
    fprintf(f, "tensor bytes: %llu (%s) -> %llu (%s), %.1f%%\n", (unsigned long long)p->bytes_in, a,
            (unsigned long long)p->bytes_out, b, 100.0 * (double)p->bytes_out / (double)(p->bytes_in ? p->bytes_in : 1));
}

static void kv_totals(FILE *f, const dsv4_config *c, const dsv4_qplan *p)
{
    dsv4_kvstate *s = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    char a[64], b[64];
    if (dsv4_kv_new(&s, c, 1, &err))
        return;
    double fixed = (double)dsv4_kv_bytes(s), per = dsv4_kv_bytes_per_token(s), kv = fixed + per * 1048576.0;
    dsv4_kv_free(s);
    gb(a, sizeof a, kv);
    gb(b, sizeof b, kv + (double)p->bytes_out);
    fprintf(f, "KV state, compact, 1048576 tokens: %.1f B/token + %.0f B fixed = %s\n", per, fixed, a);
    fprintf(f, "weights + 1M-token KV state: %s\n", b);
}

/* Plan on the inventory a config.json implies: sizes without weights. */
static int dry_config(struct cli *cli, const char *path, const dsv4_qrules *rules, struct report *rep)
{
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_config cfg;
    dsv4_tensor *store = NULL;
    const dsv4_tensor **views = NULL;
    dsv4_qplan plan;
    char *text;
    size_t len, n;
    int rc = dsv4_read_file(path, 16u << 20, &text, &len, &err);
    if (rc)
        return cli_fail(cli, &err);
    rc = dsv4_config_parse(&cfg, text, len, &err);
    free(text);
    if (rc || (rc = dsv4_qplan_config_views(&cfg, &store, &views, &n, &err))) {
        dsv4_err_prefix(&err, "%s", path);
        return cli_fail(cli, &err);
    }
    rc = dsv4_qplan_build(&plan, rules, views, n, on_warn, rep, &err);
    if (!rc && rep->f) {
        plan_lines(rep->f, &plan, cli->verbosity > 2);
        totals(rep->f, &plan, rep, 1);
        kv_totals(rep->f, &cfg, &plan);
    }
    if (!rc)
        dsv4_qplan_free(&plan);
    free(store);
    free(views);
    if (rc) {
        dsv4_err_prefix(&err, "%s", path);
        return cli_fail(cli, &err);
    }
    return CLI_EXIT_OK;
}

static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return !stat(a, &sa) && !stat(b, &sb) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static int run(struct cli *cli, const char *in, const char *outpath, const dsv4_qrules *rules, int dry, int threads)
{
    struct report rep = { cli, cli->verbosity >= 2 ? stdout : NULL, in, NULL, 0, 0, 0, 0 };
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_model *m = NULL;
    dsv4_pool *pool = NULL;
    dsv4_qplan plan;
    const dsv4_tensor **views = NULL;
    struct cli_out out = { 0 };
    uint8_t fp[DSV4_FINGERPRINT_BYTES];
    int rc, kind = dsv4_input_kind(in, &err);
    if (dry && kind < 0 && err.code == DSV4_E_FORMAT)
        return dry_config(cli, in, rules, &rep);
    if (kind < 0)
        return cli_fail(cli, &err);
    if (kind != DSV4_INPUT_MODEL) {
        cli_msg(cli, "'%s' is not a .dsv4 model file (convert it with dsv4-convert first)", in);
        return CLI_EXIT_FAIL;
    }
    if (!dry && strcmp(outpath, "-")) {
        if (same_file(in, outpath)) {
            cli_msg(cli, "'%s' is the input; write the output to another file", outpath);
            return CLI_EXIT_FAIL;
        }
        if (!cli->force && access(outpath, F_OK) == 0) {
            cli_msg(cli, "'%s' already exists; use --force to overwrite it", outpath);
            return CLI_EXIT_FAIL;
        }
    }
    if ((rc = dsv4_model_open(&m, in, &err)))
        return cli_fail(cli, &err);
    size_t n = dsv4_model_count(m);
    if (!(views = malloc((n ? n : 1) * sizeof *views))) {
        dsv4_model_close(m);
        return CLI_EXIT_FAIL;
    }
    for (size_t i = 0; i < n; i++)
        views[i] = dsv4_model_tensor(m, i);
    if ((rc = dsv4_qplan_build(&plan, rules, views, n, on_warn, &rep, &err))) {
        dsv4_err_prefix(&err, "%s", in);
        goto fail;
    }
    rep.plan = &plan;
    if (dry) {
        if (rep.f) {
            plan_lines(rep.f, &plan, cli->verbosity > 2);
            totals(rep.f, &plan, &rep, 1);
        }
        goto done;
    }
    if (!strcmp(outpath, "-")) {
        /* the header is written last, at offset 0: stdout must be a file */
        struct stat st;
        if (fstat(STDOUT_FILENO, &st) || !S_ISREG(st.st_mode)) {
            cli_msg(cli, "a model file is written with seeks: stdout must be a regular file, not a pipe or terminal");
            goto fail_plan;
        }
        out.fd = STDOUT_FILENO;
        if (rep.f)
            rep.f = stderr;
    } else if ((rc = cli_out_open(cli, &out, outpath, 1, &err))) {
        goto fail_plan_err;
    }
    if ((rc = dsv4_pool_new(&pool, threads, &err)))
        goto fail_out;
    dsv4_requant_opts o = { "dsv4-quant " DSV4_VERSION_STRING, pool };
    rc = dsv4_requant_write(m, &plan, rules, out.fd, &o, on_stat, &rep, on_progress, cli, fp, &err);
    cli_progress_end(cli);
    dsv4_pool_free(pool);
    if (rc) {
        if (rc == DSV4_E_IO && out.path)   /* a write error: name the output */
            dsv4_err_prefix(&err, "'%s'", out.path);
        else
            dsv4_err_prefix(&err, "%s", in);
        goto fail_out;
    }
    if (out.path && (rc = cli_out_commit(&out, &err)))
        goto fail_plan_err;
    if (rep.f) {
        if (cli->verbosity > 2)
            for (size_t j = 0; j < plan.n; j++)
                if (plan.items[j].target == DSV4_QT_COPY) {
                    item_line(rep.f, &plan, &plan.items[j]);
                    fputs(" bit-exact\n", rep.f);
                }
        totals(rep.f, &plan, &rep, 0);
    }
    {
        char hex[2 * DSV4_FINGERPRINT_BYTES + 1];
        for (int i = 0; i < DSV4_FINGERPRINT_BYTES; i++)
            sprintf(hex + 2 * i, "%02x", fp[i]);
        cli_warn(cli, "wrote '%s' (fingerprint %.16s)", outpath, hex);
    }
done:
    dsv4_qplan_free(&plan);
    free(views);
    dsv4_model_close(m);
    return CLI_EXIT_OK;
fail_out:
    if (out.path)
        cli_out_abort(&out);
fail_plan_err:
    cli_fail(cli, &err);
fail_plan:
    dsv4_qplan_free(&plan);
    free(views);
    dsv4_model_close(m);
    return CLI_EXIT_FAIL;
fail:
    free(views);
    dsv4_model_close(m);
    return cli_fail(cli, &err);
}

static void list_recipes(void)
{
    for (const dsv4_qrecipe *q = dsv4_qrecipes(); q->name; q++)
        printf("%s\t%s\n\t%s\n", q->name, q->summary, q->rules);
}

int main(int argc, char **argv)
{
    struct cli cli;
    dsv4_qrules rules = DSV4_QRULES_INIT, extra = DSV4_QRULES_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    int dry = 0, threads = 0, c, rc;
    char recipes[2048] = "";
    for (const dsv4_qrecipe *q = dsv4_qrecipes(); q->name; q++) {
        size_t l = strlen(recipes);
        snprintf(recipes + l, sizeof recipes - l, "  %-21s  %s\n", q->name, q->summary);
    }
    char *helptext = malloc(sizeof help + strlen(recipes));
    if (!helptext)
        return CLI_EXIT_FAIL;
    sprintf(helptext, help, recipes);
    cli_init(&cli, "dsv4-quant", usage, helptext, longopts, "rule=RULE recipe=RECIPE threads=N");
    while ((c = getopt_long(argc, argv, "r:R:n" CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        switch (c) {
        case 'r':
            if (dsv4_qrules_add(&extra, optarg, &err))
                cli_usage_error(&cli, "%s", err.msg);
            break;
        case 'R':
            if (dsv4_qrules_add_recipe(&rules, optarg, &err))
                cli_usage_error(&cli, "%s", err.msg);
            break;
        case 'n': dry = 1; break;
        case OPT_LIST:
            list_recipes();
            dsv4_qrules_free(&rules);
            dsv4_qrules_free(&extra);
            free(helptext);
            return cli_finish(&cli, CLI_EXIT_OK);
        case OPT_THREADS: threads = (int)cli_parse_int(&cli, "--threads", optarg, 0, 4096); break;
        default:
            if (cli_common_opt(&cli, c))
                cli_usage_error(&cli, "unknown option");
        }
    }
    for (size_t i = 0; i < extra.n; i++)   /* free rules after the recipes: they refine them */
        if (dsv4_qrules_add(&rules, extra.r[i].text, &err))
            return cli_fail(&cli, &err);
    dsv4_qrules_free(&extra);
    if (dsv4_init())
        return cli_fail(&cli, &(dsv4_err){ DSV4_E_BUG, "cannot initialise libsodium" });
    if (!rules.n)
        cli_usage_error(&cli, "no rules: give --recipe or --rule");
    if (argc - optind != (dry ? 1 : 2))
        cli_usage_error(&cli, dry ? "--dry-run takes one input" : "expected an input and an output file");
    rc = run(&cli, argv[optind], dry ? NULL : argv[optind + 1], &rules, dry, threads);
    dsv4_qrules_free(&rules);
    free(helptext);
    return cli_finish(&cli, rc);
}
