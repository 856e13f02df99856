/* dsv4-prefill — run a token stream through the model in chunks and report
 * the logits and the KV state it built (see dsv4-prefill(1), dsv4-tokens(5)). */
#include "cli.h"
#include "run.h"
#include "buf.h"
#include "engine.h"
#include "kvstate.h"
#include "model.h"
#include "toks.h"
#include "version.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
    "usage: dsv4-prefill [-qvf] -m MODEL.dsv4 [-i TOKENS|-] [-r SNAP|-] [-o SNAP|-] [--chunk N]\n"
    "                    [--threads N] [--device cpu|cuda|auto] [--kv bf16|compact] [--logits FILE]\n"
    "                    [--logits-all FILE]";

static const char help[] =
    "\n"
    "Run a token stream (binary or text, see dsv4-tokens(5)) through the model in\n"
    "chunks, building the KV state, from position 0 or after the state of a snapshot\n"
    "(-r); save the state as a snapshot (-o, dsv4-snapshot(5)); optionally write\n"
    "the logits.\n"
    "\n"
    "  -m, --model=FILE       model file (.dsv4) to run\n"
    "  -i, --input=FILE       token stream to read, '-' for standard input [-]\n"
    "  -r, --resume=SNAP      extend this snapshot: the tokens continue after the ones\n"
    "                         it holds; '-' for standard input; refused if it was\n"
    "                         made with another model\n"
    "  -o, --output=SNAP      write the KV state as a snapshot; '-' for standard\n"
    "                         output; may name the -r snapshot to update it\n"
    "      --chunk=N          tokens per forward pass [256]; results do not depend on it\n"
    "      --threads=N        worker threads, 0 = one per CPU [0]; results do not depend on it\n"
    "      --device=DEV       where the forward pass runs: cpu, cuda, or auto (cuda when\n"
    "                         this build has it and a GPU is present) [auto]\n"
    "      --kv=LAYOUT        KV layout: bf16 (the reference numerics) or compact\n"
    "                         (FP8/FP4 entries, QAT numerics) [bf16; with -r: the\n"
    "                         snapshot's]\n"
    "      --logits=FILE      write the last position's logits: vocab_size little-endian\n"
    "                         float32 values; '-' for standard output\n"
    "      --logits-all=FILE  write every position's logits: tokens x vocab_size\n"
    "                         little-endian float32, row-major; '-' for standard output\n"
    "  -f, --force            overwrite existing output files; write binary to a terminal\n"
    "  -q, --quiet            print errors only (no summary)\n"
    "  -v, --verbose          print more\n"
    "      --progress         show progress even when stderr is not a terminal\n"
    "      --no-progress      never show progress\n"
    "  -h, --help             show this help\n"
    "  -V, --version          show versions and build facts\n"
    "\n"
    "At the end a summary goes to standard error: tokens, seconds, tokens per second,\n"
    "the KV layout and its size in bytes, and the snapshot's size (raw and written).\n"
    "\n"
    "Exit status: 0 success, 1 runtime error (unreadable or invalid input, a token\n"
    "stream made for another tokenizer, an id out of range, an empty token stream\n"
    "with -r or -o, a snapshot that is damaged or made with another model, a context\n"
    "beyond the model's limit, I/O error), 2 usage error.\n";

enum { OPT_CHUNK = CLI_OPT_FIRST_PRIVATE, OPT_THREADS, OPT_DEVICE, OPT_KV, OPT_LOGITS, OPT_LOGITS_ALL };

static const struct option longopts[] = {
    { "model", required_argument, NULL, 'm' },
    { "input", required_argument, NULL, 'i' },
    { "resume", required_argument, NULL, 'r' },
    { "output", required_argument, NULL, 'o' },
    { "chunk", required_argument, NULL, OPT_CHUNK },
    { "threads", required_argument, NULL, OPT_THREADS },
    { "device", required_argument, NULL, OPT_DEVICE },
    { "kv", required_argument, NULL, OPT_KV },
    { "logits", required_argument, NULL, OPT_LOGITS },
    { "logits-all", required_argument, NULL, OPT_LOGITS_ALL },
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 }
};

struct opts {
    const char *model, *input, *logits, *logits_all, *resume, *output;
    int64_t chunk;
    int threads, device, compact, kv_given;
};

static int prefill(struct cli *cli, const struct opts *op)
{
    dsv4_err err = DSV4_ERR_INIT;
    struct run r;
    dsv4_toks_vec v = DSV4_TOKS_VEC_INIT;
    dsv4_snap_stats st;
    struct cli_out out_last, out_all, out_snap;
    int have_last = 0, have_all = 0, have_snap = 0, rc, code = CLI_EXIT_FAIL;
    const char *last_name = op->logits && !cli_is_std(op->logits) ? op->logits : "standard output";
    const char *all_name = op->logits_all && !cli_is_std(op->logits_all) ? op->logits_all : "standard output";
    float *logits = NULL;
    double t0, secs;
    char label[64], hb[32], in_q[512], snap_q[512];
    int64_t V, n, done, before = 0;

    run_label(op->input, in_q, sizeof in_q);
    if ((rc = run_open(cli, &r, op->model, op->threads, op->device, &err)))
        goto out;
    V = r.c->vocab_size;

    /* the state to extend first: a damaged or foreign snapshot stops us before any token is read */
    if (op->resume) {
        run_label(op->resume, snap_q, sizeof snap_q);
        if ((rc = run_resume(cli, &r, op->resume, &err)))
            goto out;
        before = r.s->n_tokens;
        if (op->kv_given && op->compact != r.s->compact) {
            rc = dsv4_err_set(&err, DSV4_E_MISMATCH, "%s holds a %s KV state; --kv %s cannot extend it", snap_q,
                              r.s->compact ? "compact" : "bf16", op->compact ? "compact" : "bf16");
            goto out;
        }
    } else if ((rc = run_fresh(&r, op->compact, &err)))
        goto out;

    /* the tokens: all of them first, for the total and to check them before any work */
    if ((rc = run_load_tokens(cli, &r, op->input, &v, &err)))
        goto out;
    n = (int64_t)v.n;
    if (before + n > r.c->max_position) {
        rc = dsv4_err_set(&err, DSV4_E_RANGE, "%s: %lld tokens%s are more than the model's "
                          "max_position_embeddings %lld", in_q, (long long)n,
                          before ? " after the snapshot's" : "", (long long)r.c->max_position);
        goto out;
    }
    if (n == 0 && (op->logits || op->resume || op->output)) {
        rc = dsv4_err_set(&err, DSV4_E_INVALID, "%s holds no tokens: %s", in_q,
                          op->logits ? "there are no last logits to write" : "there is nothing to run");
        goto out;
    }
    {
        int64_t rows = op->logits_all ? (op->chunk < n ? op->chunk : n) : 1;
        if (rows < 1)
            rows = 1;
        if (!(logits = malloc((size_t)rows * (size_t)V * sizeof *logits))) {
            rc = dsv4_err_set(&err, DSV4_E_NOMEM, "out of memory for %lld x %lld logits", (long long)rows,
                              (long long)V);
            goto out;
        }
    }
    if (op->logits) {
        if ((rc = run_open_output(cli, &out_last, op->logits, "--logits", 0, &err)))
            goto out;
        have_last = 1;
    }
    if (op->logits_all) {
        if ((rc = run_open_output(cli, &out_all, op->logits_all, "--logits-all", 0, &err)))
            goto out;
        have_all = 1;
    }
    if (op->output) {
        int same = op->resume && !cli_is_std(op->resume) && !cli_is_std(op->output) && !strcmp(op->resume, op->output);
        if ((rc = run_open_output(cli, &out_snap, op->output, "-o", same, &err)))
            goto out;
        have_snap = 1;
    }

    t0 = run_now();
    cli_progress(cli, "tokens", 0, (uint64_t)n);
    for (done = 0; done < n;) {
        int64_t k = n - done < op->chunk ? n - done : op->chunk;
        int last = done + k == n;
        int mode = op->logits_all ? DSV4_LOGITS_ALL : op->logits && last ? DSV4_LOGITS_LAST : DSV4_LOGITS_NONE;
        if ((rc = run_forward(&r, v.ids + done, k, mode, mode ? logits : NULL, &err))) {
            cli_progress_end(cli);
            dsv4_err_prefix(&err, "%s: tokens %lld..%lld", in_q, (long long)done, (long long)(done + k - 1));
            goto out;
        }
        if (have_all && (rc = run_write_f32(&out_all, all_name, logits, (size_t)(k * V), &err)))
            goto out;
        if (have_last && last &&
            (rc = run_write_f32(&out_last, last_name, logits + (mode == DSV4_LOGITS_ALL ? (k - 1) * V : 0),
                            (size_t)V, &err)))
            goto out;
        done += k;
        secs = run_now() - t0;
        snprintf(label, sizeof label, "tokens (%.0f/s)", secs > 0 ? (double)done / secs : 0.0);
        cli_progress(cli, label, (uint64_t)done, (uint64_t)n);
    }
    cli_progress_end(cli);
    secs = run_now() - t0;

    if (have_snap && (rc = run_save(cli, &r, &out_snap, &st, &err)))
        goto out;
    if (have_last) {
        have_last = 0;
        if ((rc = cli_out_commit(&out_last, &err)))
            goto out;
    }
    if (have_all) {
        have_all = 0;
        if ((rc = cli_out_commit(&out_all, &err)))
            goto out;
    }
    if (have_snap) {
        have_snap = 0;
        if ((rc = cli_out_commit(&out_snap, &err)))
            goto out;
    }
    if ((rc = run_sync(&r, &err)))
        goto out;
    run_human_bytes(hb, sizeof hb, (double)dsv4_kv_bytes(r.s));
    cli_warn(cli, "%lld tokens in %.3f s (%.1f tokens/s); KV %s: %llu bytes (%s), %.1f bytes/token",
             (long long)n, secs, secs > 0 ? (double)n / secs : 0.0, r.s->compact ? "compact" : "bf16",
             (unsigned long long)dsv4_kv_bytes(r.s), hb, dsv4_kv_bytes_per_token(r.s));
    if (op->output) {
        run_human_bytes(hb, sizeof hb, (double)st.stream_bytes);
        cli_warn(cli, "snapshot %s%s%s: %lld tokens (%lld resumed), %llu bytes raw, %llu written (%s, %.1f "
                 "bytes/token)", cli_is_std(op->output) ? "" : "'", cli_is_std(op->output) ? "to standard output" :
                 op->output, cli_is_std(op->output) ? "" : "'", (long long)r.s->n_tokens, (long long)before,
                 (unsigned long long)st.raw, (unsigned long long)st.stream_bytes, hb,
                 (double)st.stream_bytes / (double)r.s->n_tokens);
    }
    code = CLI_EXIT_OK;
out:
    if (have_last)
        cli_out_abort(&out_last);
    if (have_all)
        cli_out_abort(&out_all);
    if (have_snap)
        cli_out_abort(&out_snap);
    if (code != CLI_EXIT_OK)
        cli_fail(cli, &err);
    free(logits);
    run_close(&r);
    dsv4_toks_vec_release(&v);
    return code;
}

int main(int argc, char **argv)
{
    struct cli cli;
    struct opts op = { NULL, NULL, NULL, NULL, NULL, NULL, 256, 0, RUN_DEV_AUTO, 0, 0 };
    int c;
    cli_init(&cli, "dsv4-prefill", usage, help, longopts,
             "model=FILE.dsv4 input=FILE resume=FILE.kv output=FILE.kv chunk=N threads=N device=DEVICE kv=LAYOUT logits=FILE logits-all=FILE");
    while ((c = getopt_long(argc, argv, "m:i:r:o:" CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        switch (c) {
        case 'm': op.model = optarg; break;
        case 'i': op.input = optarg; break;
        case 'r': op.resume = optarg; break;
        case 'o': op.output = optarg; break;
        case OPT_CHUNK: op.chunk = cli_parse_int(&cli, "--chunk", optarg, 1, 1 << 20); break;
        case OPT_THREADS: op.threads = (int)cli_parse_int(&cli, "--threads", optarg, 0, 4096); break;
        case OPT_DEVICE: op.device = run_parse_device(&cli, optarg); break;
        case OPT_KV:
            op.kv_given = 1;
            if (!strcmp(optarg, "bf16"))
                op.compact = 0;
            else if (!strcmp(optarg, "compact"))
                op.compact = 1;
            else
                cli_usage_error(&cli, "option '--kv': '%s' is not bf16 or compact", optarg);
            break;
        case OPT_LOGITS: op.logits = optarg; break;
        case OPT_LOGITS_ALL: op.logits_all = optarg; break;
        default:
            if (cli_common_opt(&cli, c))
                cli_usage_error(&cli, "unknown option");
        }
    }
    if (optind < argc)
        cli_usage_error(&cli, "unexpected argument '%s' (the token stream is given with -i)", argv[optind]);
    if (!op.model)
        cli_usage_error(&cli, "missing model: give -m MODEL.dsv4");
    if (op.resume && cli_is_std(op.resume) && cli_is_std(op.input))
        cli_usage_error(&cli, "-r - and the token stream cannot both come from standard input (give -i FILE)");
    if (op.output && cli_is_std(op.output) && ((op.logits && cli_is_std(op.logits)) ||
                                           (op.logits_all && cli_is_std(op.logits_all))))
        cli_usage_error(&cli, "-o - and the logits cannot both go to standard output");
    if (op.output && !cli_is_std(op.output) && ((op.logits && !strcmp(op.logits, op.output)) ||
                                            (op.logits_all && !strcmp(op.logits_all, op.output))))
        cli_usage_error(&cli, "-o and a logits option name the same file '%s'", op.output);
    if (op.logits && op.logits_all) {
        if (cli_is_std(op.logits) && cli_is_std(op.logits_all))
            cli_usage_error(&cli, "--logits and --logits-all cannot both go to standard output");
        if (!strcmp(op.logits, op.logits_all))
            cli_usage_error(&cli, "--logits and --logits-all name the same file '%s'", op.logits);
    }
    if (dsv4_init())
        return cli_fail(&cli, &(dsv4_err){ DSV4_E_BUG, "cannot initialise libsodium" });
    return cli_finish(&cli, prefill(&cli, &op));
}
