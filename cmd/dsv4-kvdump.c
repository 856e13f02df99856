/* dsv4-kvdump — describe, verify and compare KV snapshots (see
 * dsv4-kvdump(1), dsv4-snapshot(5)). */
#include "cli.h"
#include "buf.h"
#include "json.h"
#include "kvinfo.h"
#include "model.h"
#include "snap.h"
#include "version.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: dsv4-kvdump [-qvf] [--json] [--tokens] [-m MODEL.dsv4] [SNAP|-]\n"
    "       dsv4-kvdump [-qvf] --verify [-m MODEL.dsv4] [SNAP|-]\n"
    "       dsv4-kvdump [-qvf] --diff [-m MODEL.dsv4] A B";

static const char help[] =
    "\n"
    "Describe a KV snapshot (see dsv4-snapshot(5)): format version, model fingerprint,\n"
    "KV layout, tokens, dimensions, and per layer its kind, compressed entries and\n"
    "bytes before and after compression; totals, overheads and bytes per token.  The\n"
    "whole stream is always read, so every checksum is checked; a damaged snapshot is\n"
    "an error.  SNAP '-' or none is standard input.\n"
    "\n"
    "      --verify           print only the verdict line ('SNAP': OK ...)\n"
    "      --json             print the description as one JSON object\n"
    "      --tokens           print only the token ids, one per line (the text token\n"
    "                         stream of dsv4-tokens(5)); with --json, add them to it\n"
    "      --diff             compare snapshots A and B value by value, layer by layer\n"
    "  -m, --model=FILE       also check that the snapshot belongs to this model\n"
    "  -f, --force            read a snapshot from a terminal\n"
    "  -q, --quiet            with --verify or --diff: print nothing but errors\n"
    "  -v, --verbose          print more\n"
    "      --progress         show progress even when stderr is not a terminal\n"
    "      --no-progress      never show progress\n"
    "  -h, --help             show this help\n"
    "  -V, --version          show versions and build facts\n"
    "\n"
    "Exit status: 0 success, 1 damaged or unreadable snapshot or another model's,\n"
    "2 usage error.  With --diff: 0 identical, 1 different, 2 usage error or trouble\n"
    "(an input that cannot be read, or snapshots that cannot be compared).\n";

enum { OPT_VERIFY = CLI_OPT_FIRST_PRIVATE, OPT_JSON, OPT_TOKENS, OPT_DIFF };

static const struct option longopts[] = {
    { "verify", no_argument, NULL, OPT_VERIFY },
    { "json", no_argument, NULL, OPT_JSON },
    { "tokens", no_argument, NULL, OPT_TOKENS },
    { "diff", no_argument, NULL, OPT_DIFF },
    { "model", required_argument, NULL, 'm' },
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 }
};

struct opts {
    int verify, json, tokens, diff;
    const char *model;
};

/* An input: its path, the name messages use and what reading it gave. */
struct input {
    const char *path;              /* NULL or "-": standard input */
    char name[512];                /* "'a.kv'" or "standard input" */
    dsv4_snap sn;
    dsv4_snap_stats st;
};

/* Snapshots below this many payload bytes are read too fast for a progress line. */
#define PROGRESS_MIN (64u << 20)

struct progress {
    struct cli *cli;
    int shown;
};

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    struct progress *p = ctx;
    if (total < PROGRESS_MIN && p->cli->progress != 1)
        return;
    p->shown = 1;
    cli_progress(p->cli, "reading", done, total);
}

static int read_snap(struct cli *cli, struct input *in, const dsv4_model *m, int load_state, dsv4_err *err)
{
    dsv4_snap_ropts ro = DSV4_SNAP_ROPTS_INIT;
    struct progress pr = { cli, 0 };
    FILE *f;
    int rc;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    ro.threads = cpus > 0 ? (int)(cpus < 64 ? cpus : 64) : 1;   /* checking chunks in parallel */
    if (cli_is_std(in->path))
        snprintf(in->name, sizeof in->name, "standard input");
    else
        snprintf(in->name, sizeof in->name, "'%s'", in->path);
    if ((rc = cli_open_in(cli, in->path, 1, &f, err)))
        return rc;
    ro.name = in->name;
    ro.fingerprint = m ? dsv4_model_fingerprint(m) : NULL;
    ro.config = m ? dsv4_model_config(m) : NULL;
    ro.load_state = load_state;
    ro.want_eof = 1;
    ro.progress = on_progress;
    ro.progress_ctx = &pr;
    rc = dsv4_snap_read(fileno(f), &ro, &in->sn, &in->st, err);
    if (pr.shown)
        cli_progress_end(cli);
    if (f != stdin)
        fclose(f);
    return rc;
}

static void hex32(char out[65], const uint8_t *b)
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static double ratio(const dsv4_snap_section *s)
{
    return s->frame ? (double)s->raw / (double)s->frame : 0;
}

/* ---- text ------------------------------------------------------------------ */

static void print_text(const struct input *in, const char *model)
{
    const dsv4_snap_info *i = &in->sn.info;
    const dsv4_snap_stats *st = &in->st;
    uint64_t chunks = st->chunk_header_bytes / DSV4_SNAP_CHUNK_BYTES;
    char fp[65];
    hex32(fp, i->fingerprint);
    printf("file:         %s\n", in->name);
    printf("format:       %u.%u, flags 0x%04x\n", i->major, i->minor, i->flags);
    printf("model:        %s\n", fp);
    if (model)
        printf("model check:  OK, made with '%s'\n", model);
    printf("layout:       %s (entries %u bytes, indexer keys %u bytes)\n", i->compact ? "compact" : "bf16",
           i->entry_bytes, i->ikey_bytes);
    printf("tokens:       %lld (MTP positions %lld)\n", (long long)i->n_tokens, (long long)i->n_mtp);
    printf("dimensions:   vocab_size %lld, dim %lld, hc_mult %lld, window %lld, head_dim %lld, rope_dim %lld, "
           "index_head_dim %lld\n", (long long)i->vocab_size, (long long)i->dim, (long long)i->hc_mult,
           (long long)i->window, (long long)i->head_dim, (long long)i->rope_dim, (long long)i->index_head_dim);
    printf("layers:       %d + %d MTP\n", i->n_layers, i->n_all - i->n_layers);
    printf("\n%-7s %-4s %9s %7s %8s %6s %12s %12s %6s\n", "section", "kind", "positions", "window", "entries",
           "chunks", "raw_bytes", "zstd_bytes", "ratio");
    for (int k = 0; k < st->n_sections; k++) {
        const dsv4_snap_section *s = &st->sections[k];
        if (s->kind == DSV4_SNAP_LAYER) {
            int l = s->index;
            printf("%-7d %-4s %9lld %7lld %8lld", l, dsv4_kvinfo_kind(i, l), (long long)dsv4_kvinfo_positions(i, l),
                   (long long)dsv4_kvinfo_window_slots(i, l), (long long)i->n_ent[l]);
        } else {
            printf("%-7s %-4s %9s %7s %8s", dsv4_snap_kind_name(s->kind), "-", "-", "-", "-");
        }
        printf(" %6d %12llu %12llu %6.2f\n", s->parts, (unsigned long long)s->raw, (unsigned long long)s->frame,
               ratio(s));
    }
    printf("\npayload:      %llu bytes raw, %llu compressed (%.2fx)\n", (unsigned long long)st->raw,
           (unsigned long long)st->frame, st->frame ? (double)st->raw / (double)st->frame : 0.0);
    printf("overhead:     header %llu, chunk headers %llu (%llu chunks), trailer %llu bytes\n",
           (unsigned long long)st->header_bytes, (unsigned long long)st->chunk_header_bytes,
           (unsigned long long)chunks, (unsigned long long)st->trailer_bytes);
    printf("stream:       %llu bytes\n", (unsigned long long)st->stream_bytes);
    if (i->n_tokens)
        printf("bytes/token:  %.1f raw, %.1f in the stream; growth %.2f\n", (double)st->raw / (double)i->n_tokens,
               (double)st->stream_bytes / (double)i->n_tokens, dsv4_kvinfo_growth(i));
    else
        printf("bytes/token:  - raw, - in the stream (no tokens); growth %.2f\n", dsv4_kvinfo_growth(i));
    printf("checksums:    OK (header, %llu chunks, stream)\n", (unsigned long long)chunks);
}

/* ---- JSON ------------------------------------------------------------------ */

static void jkey(dsv4_buf *b, const char *k)
{
    dsv4_json_write_str(b, k, strlen(k));
    dsv4_buf_puts(b, ": ");
}

static void jint(dsv4_buf *b, const char *k, long long v, const char *sep)
{
    jkey(b, k);
    dsv4_buf_printf(b, "%lld%s", v, sep);
}

static void jstr(dsv4_buf *b, const char *k, const char *v, const char *sep)
{
    jkey(b, k);
    dsv4_json_write_str(b, v, strlen(v));
    dsv4_buf_puts(b, sep);
}

static void jnum(dsv4_buf *b, const char *k, double v, const char *sep)
{
    jkey(b, k);
    dsv4_json_write_f64(b, v);
    dsv4_buf_puts(b, sep);
}

static void jsection(dsv4_buf *b, const dsv4_snap_section *s)
{
    jint(b, "chunks", s->parts, ", ");
    jint(b, "raw_bytes", (long long)s->raw, ", ");
    jint(b, "compressed_bytes", (long long)s->frame, ", ");
    jnum(b, "ratio", ratio(s), "}");
}

static int print_json(const struct input *in, const char *model, int tokens)
{
    const dsv4_snap_info *i = &in->sn.info;
    const dsv4_snap_stats *st = &in->st;
    dsv4_buf b = DSV4_BUF_INIT;
    char fp[65], ver[32];
    hex32(fp, i->fingerprint);
    snprintf(ver, sizeof ver, "%u.%u", i->major, i->minor);
    dsv4_buf_puts(&b, "{");
    jstr(&b, "file", cli_is_std(in->path) ? "-" : in->path, ", ");
    jstr(&b, "format", ver, ", ");
    jint(&b, "flags", i->flags, ", ");
    jstr(&b, "fingerprint", fp, ", ");
    jkey(&b, "model_check");
    if (model) {
        dsv4_json_write_str(&b, model, strlen(model));
        dsv4_buf_puts(&b, ", ");
    } else {
        dsv4_buf_puts(&b, "null, ");
    }
    jstr(&b, "layout", i->compact ? "compact" : "bf16", ", ");
    jint(&b, "entry_bytes", i->entry_bytes, ", ");
    jint(&b, "ikey_bytes", i->ikey_bytes, ", ");
    jint(&b, "tokens", i->n_tokens, ", ");
    jint(&b, "mtp_positions", i->n_mtp, ", ");
    jkey(&b, "dimensions");
    dsv4_buf_puts(&b, "{");
    jint(&b, "vocab_size", i->vocab_size, ", ");
    jint(&b, "dim", i->dim, ", ");
    jint(&b, "hc_mult", i->hc_mult, ", ");
    jint(&b, "window", i->window, ", ");
    jint(&b, "head_dim", i->head_dim, ", ");
    jint(&b, "rope_dim", i->rope_dim, ", ");
    jint(&b, "index_head_dim", i->index_head_dim, "}, ");
    jint(&b, "n_layers", i->n_layers, ", ");
    jint(&b, "n_mtp_layers", i->n_all - i->n_layers, ", ");
    jkey(&b, "sections");
    dsv4_buf_puts(&b, "[");
    for (int k = 0; k < 2 && k < st->n_sections; k++) {
        dsv4_buf_puts(&b, k ? ", {" : "{");
        jstr(&b, "section", dsv4_snap_kind_name(st->sections[k].kind), ", ");
        jsection(&b, &st->sections[k]);
    }
    dsv4_buf_puts(&b, "], ");
    jkey(&b, "layers");
    dsv4_buf_puts(&b, "[");
    for (int k = 2; k < st->n_sections; k++) {
        int l = st->sections[k].index;
        dsv4_buf_puts(&b, k > 2 ? ", {" : "{");
        jint(&b, "index", l, ", ");
        jstr(&b, "kind", dsv4_kvinfo_kind(i, l), ", ");
        jint(&b, "compress_ratio", i->ratios[l], ", ");
        jint(&b, "positions", dsv4_kvinfo_positions(i, l), ", ");
        jint(&b, "window_slots", dsv4_kvinfo_window_slots(i, l), ", ");
        jint(&b, "entries", i->n_ent[l], ", ");
        jsection(&b, &st->sections[k]);
    }
    dsv4_buf_puts(&b, "], ");
    jint(&b, "raw_bytes", (long long)st->raw, ", ");
    jint(&b, "compressed_bytes", (long long)st->frame, ", ");
    jint(&b, "header_bytes", (long long)st->header_bytes, ", ");
    jint(&b, "chunk_header_bytes", (long long)st->chunk_header_bytes, ", ");
    jint(&b, "chunks", (long long)(st->chunk_header_bytes / DSV4_SNAP_CHUNK_BYTES), ", ");
    jint(&b, "trailer_bytes", (long long)st->trailer_bytes, ", ");
    jint(&b, "stream_bytes", (long long)st->stream_bytes, ", ");
    jkey(&b, "bytes_per_token");
    dsv4_buf_puts(&b, "{");
    if (i->n_tokens) {
        jnum(&b, "raw", (double)st->raw / (double)i->n_tokens, ", ");
        jnum(&b, "stream", (double)st->stream_bytes / (double)i->n_tokens, ", ");
    } else {
        dsv4_buf_puts(&b, "\"raw\": null, \"stream\": null, ");
    }
    jnum(&b, "growth", dsv4_kvinfo_growth(i), "}, ");
    jstr(&b, "checksums", "ok", "");
    if (tokens) {
        dsv4_buf_puts(&b, ", ");
        jkey(&b, "token_ids");
        dsv4_buf_puts(&b, "[");
        for (int64_t k = 0; k < i->n_tokens; k++)
            dsv4_buf_printf(&b, k ? ", %u" : "%u", in->sn.tokens[k]);
        dsv4_buf_puts(&b, "]");
    }
    dsv4_buf_puts(&b, "}\n");
    if (b.oom) {
        dsv4_buf_release(&b);
        return DSV4_E_NOMEM;
    }
    fwrite(b.data, 1, b.len, stdout);
    dsv4_buf_release(&b);
    return 0;
}

/* ---- diff ------------------------------------------------------------------ */

static void num(char *out, size_t cap, double v)
{
    if (v < 0)
        snprintf(out, cap, "-");
    else if (v == 0)
        snprintf(out, cap, "0");
    else
        snprintf(out, cap, "%.3g", v);
}

static void print_diff(const struct input *a, const struct input *b, const dsv4_kvinfo_diff *d)
{
    const dsv4_snap_info *ia = &a->sn.info, *ib = &b->sn.info;
    char fa[65], fb[65], w[32], e[32], k[32], c[32];
    printf("a:            %s, %lld tokens (MTP positions %lld)\n", a->name, (long long)ia->n_tokens,
           (long long)ia->n_mtp);
    printf("b:            %s, %lld tokens (MTP positions %lld)\n", b->name, (long long)ib->n_tokens,
           (long long)ib->n_mtp);
    hex32(fa, ia->fingerprint);
    hex32(fb, ib->fingerprint);
    if (d->same_model)
        printf("model:        same (%.16s...)\n", fa);
    else
        printf("model:        differs (%.16s..., %.16s...)\n", fa, fb);
    if (d->token_diff < 0)
        printf("tokens:       identical\n");
    else if (d->token_diff < ia->n_tokens && d->token_diff < ib->n_tokens)
        printf("tokens:       differ at position %lld (%u, %u)\n", (long long)d->token_diff,
               a->sn.tokens[d->token_diff], b->sn.tokens[d->token_diff]);
    else
        printf("tokens:       differ at position %lld (%s ends there)\n", (long long)d->token_diff,
               ia->n_tokens < ib->n_tokens ? "a" : "b");
    num(w, sizeof w, d->hidden);
    printf("hidden:       %s (max difference %s)\n", d->same_hidden ? "identical" : "differs", w);
    printf("\n%-5s %-4s %10s %10s %10s %10s  %s\n", "layer", "kind", "window", "entries", "ikeys", "compressor",
           "payload");
    for (int l = 0; l < d->n_all; l++) {
        const dsv4_kvinfo_ldiff *x = &d->layers[l];
        num(w, sizeof w, x->win);
        num(e, sizeof e, x->ent);
        num(k, sizeof k, x->ikey);
        num(c, sizeof c, x->comp);
        printf("%-5d %-4s %10s %10s %10s %10s  %s\n", l, dsv4_kvinfo_kind(ia, l), w, e, k, c,
               x->same_bytes ? "identical" : "differs");
    }
    if (d->identical) {
        printf("\nresult:       identical\n");
        return;
    }
    printf("\nresult:       different");
    if (d->n_differ) {
        printf("; layers that differ:");
        for (int l = 0; l < d->n_all; l++)
            if (!d->layers[l].same_bytes)
                printf(" %d", l);
    }
    printf("\n");
}

/* ---- main ------------------------------------------------------------------ */

static int run(struct cli *cli, const struct opts *op, const char *pa, const char *pb)
{
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_model *m = NULL;
    struct input a = { pa, "", DSV4_SNAP_INIT, { 0 } }, b = { pb, "", DSV4_SNAP_INIT, { 0 } };
    int code = CLI_EXIT_FAIL, rc = 0;
    /* like cmp(1): with --diff, 1 means "different", so trouble is 2 */
    int fail = op->diff ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;

    if (op->model && (rc = dsv4_model_open(&m, op->model, &err)))
        goto out;
    if ((rc = read_snap(cli, &a, m, op->diff, &err)))
        goto out;
    if (op->diff) {
        dsv4_kvinfo_diff *d = malloc(sizeof *d);
        if ((rc = read_snap(cli, &b, m, 1, &err)))
            goto diff_out;
        if (!d) {
            rc = dsv4_err_set(&err, DSV4_E_NOMEM, "out of memory");
            goto diff_out;
        }
        if ((rc = dsv4_kvinfo_compare(&a.sn, a.name, &b.sn, b.name, d, &err)))
            goto diff_out;
        if (cli->verbosity >= 2)
            print_diff(&a, &b, d);
        code = d->identical ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    diff_out:
        free(d);
        goto out;
    }
    if (op->verify) {
        if (cli->verbosity >= 2)
            printf("%s: OK (format %u.%u, %lld tokens, %llu chunks, %llu bytes%s%s%s)\n", a.name, a.sn.info.major,
                   a.sn.info.minor, (long long)a.sn.info.n_tokens,
                   (unsigned long long)(a.st.chunk_header_bytes / DSV4_SNAP_CHUNK_BYTES),
                   (unsigned long long)a.st.stream_bytes, m ? ", made with '" : "", m ? op->model : "",
                   m ? "'" : "");
    } else if (op->json) {
        if ((rc = print_json(&a, op->model, op->tokens))) {
            dsv4_err_set(&err, rc, "out of memory");
            goto out;
        }
    } else if (op->tokens) {
        for (int64_t i = 0; i < a.sn.info.n_tokens; i++)
            printf("%u\n", a.sn.tokens[i]);
    } else {
        print_text(&a, op->model);
    }
    code = CLI_EXIT_OK;
out:
    if (rc) {
        cli_fail(cli, &err);
        code = fail;
    }
    dsv4_snap_release(&a.sn);
    dsv4_snap_release(&b.sn);
    dsv4_model_close(m);
    return code;
}

int main(int argc, char **argv)
{
    struct cli cli;
    struct opts op = { 0, 0, 0, 0, NULL };
    int c;
    cli_init(&cli, "dsv4-kvdump", usage, help, longopts, "model=FILE.dsv4");
    while ((c = getopt_long(argc, argv, "m:" CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        switch (c) {
        case OPT_VERIFY: op.verify = 1; break;
        case OPT_JSON: op.json = 1; break;
        case OPT_TOKENS: op.tokens = 1; break;
        case OPT_DIFF: op.diff = 1; break;
        case 'm': op.model = optarg; break;
        default:
            if (cli_common_opt(&cli, c))
                cli_usage_error(&cli, "unknown option");
        }
    }
    int nargs = argc - optind;
    if (op.diff) {
        if (op.verify || op.json || op.tokens)
            cli_usage_error(&cli, "--diff cannot be combined with --verify, --json or --tokens");
        if (nargs != 2)
            cli_usage_error(&cli, "--diff needs two snapshots, A and B");
        if (cli_is_std(argv[optind]) && cli_is_std(argv[optind + 1]))
            cli_usage_error(&cli, "--diff: A and B cannot both be standard input");
    } else {
        if (op.verify && (op.json || op.tokens))
            cli_usage_error(&cli, "--verify cannot be combined with --json or --tokens");
        if (nargs > 1)
            cli_usage_error(&cli, "unexpected argument '%s' (one snapshot at a time; two with --diff)",
                            argv[optind + 1]);
    }
    if (dsv4_init())
        return cli_fail(&cli, &(dsv4_err){ DSV4_E_BUG, "cannot initialise libsodium" });
    return cli_finish(&cli, run(&cli, &op, nargs > 0 ? argv[optind] : NULL, op.diff ? argv[optind + 1] : NULL));
}
