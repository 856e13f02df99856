/* dsv4-decode — continue a KV snapshot: sample tokens one at a time, write
 * them as a token stream, optionally save the extended snapshot (see
 * dsv4-decode(1), dsv4-snapshot(5), dsv4-tokens(5)). */
#include "cli.h"
#include "run.h"
#include "buf.h"
#include "sample.h"
#include "version.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
    "usage: dsv4-decode [-qvf] -m MODEL.dsv4 -r SNAP|- [-i TOKENS|-] [-n N] [-o SNAP|-] [--temperature T]\n"
    "                   [--top-p P] [--top-k K] [--min-p P] [--seed S] [--stop ID]...\n"
    "                   [--ignore-eos] [--format bin|text] [--logits FILE] [--threads N]\n"
    "                   [--device cpu|cuda|auto]";

static const char help[] =
    "\n"
    "Continue the sequence held by a KV snapshot (dsv4-snapshot(5), made by\n"
    "dsv4-prefill -o): sample up to N tokens, one at a time, and write them to\n"
    "standard output as a token stream (dsv4-tokens(5)) as they come.  With -o the\n"
    "snapshot of the prompt and every emitted token is written, ready for the next\n"
    "dsv4-prefill -r or dsv4-decode -r.\n"
    "\n"
    "  -m, --model=FILE       model file (.dsv4); must be the snapshot's model\n"
    "  -r, --resume=SNAP      snapshot to continue; '-' for standard input\n"
    "  -i, --input=TOKENS     first append this token stream (a tool result, the next\n"
    "                         user turn) as dsv4-prefill -r would, then sample\n"
    "  -n, --tokens=N         tokens to sample at most [256]\n"
    "  -o, --output=SNAP      write the extended snapshot; '-' for standard output\n"
    "                         (with --format none); may name the -r snapshot\n"
    "      --temperature=T    softmax temperature; 0 = greedy (argmax) [from the\n"
    "                         model's generation_config.json, else 1]\n"
    "      --top-p=P          nucleus sampling: keep the most likely tokens up to\n"
    "                         probability P [generation config, else 1 = off]\n"
    "      --top-k=K          keep the K most likely tokens [generation config, else\n"
    "                         0 = off]\n"
    "      --min-p=P          drop tokens less likely than P x the most likely [0 = off]\n"
    "      --seed=S           random seed; the same seed gives the same tokens, also\n"
    "                         across -o/-r round trips [random, printed with -v]\n"
    "      --stop=ID          also stop after emitting token ID (repeatable)\n"
    "      --ignore-eos       do not stop at the end-of-sequence token\n"
    "      --format=FORMAT    token stream to write: bin, text or none [bin; text when\n"
    "                         standard output is a terminal]\n"
    "      --logits=FILE      write the logits after the last emitted token (the\n"
    "                         distribution of the next one): vocab_size little-endian\n"
    "                         float32 values\n"
    "      --threads=N        worker threads, 0 = one per CPU [0]\n"
    "      --device=DEV       where the forward pass runs: cpu, cuda, or auto (cuda when\n"
    "                         this build has it and a GPU is present) [auto]\n"
    "  -f, --force            overwrite existing output files; write binary to a terminal\n"
    "  -q, --quiet            print errors only (no summary)\n"
    "  -v, --verbose          print more (the seed, the sampling settings)\n"
    "      --progress         show progress even when stderr is not a terminal\n"
    "      --no-progress      never show progress\n"
    "  -h, --help             show this help\n"
    "  -V, --version          show versions and build facts\n"
    "\n"
    "Decoding stops after N tokens, after the end-of-sequence token (eos_token_id of\n"
    "the model's generation_config.json, else of config.json) or a --stop token\n"
    "(both are emitted), whichever comes first.  A summary goes to standard error:\n"
    "tokens, seconds, tokens per second, why it stopped, the seed.\n"
    "\n"
    "Exit status: 0 success, 1 runtime error (a damaged snapshot or one made with\n"
    "another model, an empty snapshot, no room left in the model's context, I/O\n"
    "error), 2 usage error.\n";

enum {
    OPT_TEMP = CLI_OPT_FIRST_PRIVATE, OPT_TOP_P, OPT_TOP_K, OPT_MIN_P, OPT_SEED, OPT_STOP, OPT_IGNORE_EOS,
    OPT_FORMAT, OPT_LOGITS, OPT_THREADS, OPT_DEVICE
};

static const struct option longopts[] = {
    { "model", required_argument, NULL, 'm' },
    { "resume", required_argument, NULL, 'r' },
    { "input", required_argument, NULL, 'i' },
    { "tokens", required_argument, NULL, 'n' },
    { "output", required_argument, NULL, 'o' },
    { "temperature", required_argument, NULL, OPT_TEMP },
    { "top-p", required_argument, NULL, OPT_TOP_P },
    { "top-k", required_argument, NULL, OPT_TOP_K },
    { "min-p", required_argument, NULL, OPT_MIN_P },
    { "seed", required_argument, NULL, OPT_SEED },
    { "stop", required_argument, NULL, OPT_STOP },
    { "ignore-eos", no_argument, NULL, OPT_IGNORE_EOS },
    { "format", required_argument, NULL, OPT_FORMAT },
    { "logits", required_argument, NULL, OPT_LOGITS },
    { "threads", required_argument, NULL, OPT_THREADS },
    { "device", required_argument, NULL, OPT_DEVICE },
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 }
};

enum { FMT_AUTO = -1, FMT_NONE = -2 };
enum { MAX_STOPS = 64 };

struct opts {
    const char *model, *resume, *input, *output, *logits;
    int64_t n;
    int threads, device, format, ignore_eos, n_stop, has_seed;
    int has_temp, has_top_p, has_top_k;
    uint64_t seed;
    uint32_t stops[MAX_STOPS];
    dsv4_sample_opts so;
};

/* Sampling settings: the command line over generation_config.json over the
 * defaults; the end-of-sequence ids. */
static int settings(const struct run *r, struct opts *op, int64_t *eos, int *n_eos, dsv4_err *err)
{
    size_t len;
    const char *gj = dsv4_model_blob(r->m, "generation_config.json", &len);
    dsv4_genconfig g;
    int rc;
    memset(&g, 0, sizeof g);
    if (gj && (rc = dsv4_genconfig_parse(&g, gj, len, err)))
        return dsv4_err_prefix(err, "'%s'", r->model_path);
    if (!op->has_temp && g.has_temperature)
        op->so.temperature = g.do_sample == 0 ? 0.0 : g.temperature;
    if (!op->has_top_p && g.has_top_p)
        op->so.top_p = g.top_p;
    if (!op->has_top_k && g.has_top_k)
        op->so.top_k = g.top_k;
    if ((rc = dsv4_sample_check(&op->so, err)))
        return rc;
    *n_eos = 0;
    if (op->ignore_eos)
        return 0;
    if (g.n_eos)
        for (int i = 0; i < g.n_eos; i++)
            eos[(*n_eos)++] = g.eos[i];
    else
        eos[(*n_eos)++] = r->c->eos_id;
    return 0;
}

static int decode(struct cli *cli, struct opts *op)
{
    dsv4_err err = DSV4_ERR_INIT;
    struct run r;
    struct cli_out out_snap, out_logits;
    dsv4_toks_writer *w = NULL;
    dsv4_sampler *smp = NULL;
    dsv4_snap_stats st;
    dsv4_toks_vec extra = DSV4_TOKS_VEC_INIT;
    int have_snap = 0, have_logits = 0, rc, code = CLI_EXIT_FAIL, n_eos = 0;
    int64_t eos[DSV4_GEN_MAX_EOS], done = 0, before;
    float *logits = NULL;
    const char *why = "the token limit (-n)";
    char snap_q[512], hb[32];
    double t0, secs;

    run_label(op->resume, snap_q, sizeof snap_q);
    if ((rc = run_open(cli, &r, op->model, op->threads, op->device, &err)) || (rc = settings(&r, op, eos, &n_eos, &err)) ||
        (rc = run_resume(cli, &r, op->resume, &err)))
        goto out;
    before = r.s->n_tokens;
    if (op->input) {
        char in_q[512];
        run_label(op->input, in_q, sizeof in_q);
        if ((rc = run_load_tokens(cli, &r, op->input, &extra, &err)))
            goto out;
        if (extra.n == 0) {
            rc = dsv4_err_set(&err, DSV4_E_INVALID, "%s holds no tokens: there is nothing to append", in_q);
            goto out;
        }
        if (before + (int64_t)extra.n > r.c->max_position) {
            rc = dsv4_err_set(&err, DSV4_E_RANGE, "%s: %zu tokens after the snapshot's %lld are more than the "
                              "model's max_position_embeddings %lld", in_q, extra.n, (long long)before,
                              (long long)r.c->max_position);
            goto out;
        }
    }
    if (before + (int64_t)extra.n == 0) {
        rc = dsv4_err_set(&err, DSV4_E_INVALID, "%s holds no tokens: there is nothing to continue from", snap_q);
        goto out;
    }
    /* the snapshot's position plus what is sampled, plus the last token run for -o/--logits */
    int feed_last = op->output || op->logits;
    int64_t held = before + (int64_t)extra.n;
    if (held + op->n - (feed_last ? 0 : 1) > r.c->max_position) {
        int64_t room = r.c->max_position - held + (feed_last ? 0 : 1);
        rc = dsv4_err_set(&err, DSV4_E_RANGE, "%s holds %lld tokens of the model's max_position_embeddings "
                          "%lld: %lld more do not fit (at most %lld)", op->input ? "the sequence" : snap_q,
                          (long long)held,
                          (long long)r.c->max_position, (long long)op->n, (long long)(room > 0 ? room : 0));
        goto out;
    }
    for (int i = 0; i < op->n_stop; i++)
        if (op->stops[i] >= (uint64_t)r.c->vocab_size) {
            rc = dsv4_err_set(&err, DSV4_E_RANGE, "--stop %u: not a token id of this model (vocab size %lld)",
                              op->stops[i], (long long)r.c->vocab_size);
            goto out;
        }
    if (!(logits = malloc((size_t)r.c->vocab_size * sizeof *logits))) {
        rc = dsv4_err_set(&err, DSV4_E_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = dsv4_sampler_new(&smp, r.c->vocab_size, &err)))
        goto out;
    if (op->output) {
        int same = !cli_is_std(op->resume) && !cli_is_std(op->output) && !strcmp(op->resume, op->output);
        if ((rc = run_open_output(cli, &out_snap, op->output, "-o", same, &err)))
            goto out;
        have_snap = 1;
    }
    if (op->logits) {
        if ((rc = run_open_output(cli, &out_logits, op->logits, "--logits", 0, &err)))
            goto out;
        have_logits = 1;
    }
    if (op->format != FMT_NONE) {
        dsv4_toks_wopts wo = DSV4_TOKS_WOPTS_INIT;
        uint8_t fp[DSV4_TOKS_FP_BYTES];
        size_t len;
        const char *tj = dsv4_model_blob(r.m, "tokenizer.json", &len);
        wo.format = op->format == FMT_AUTO ? (isatty(STDOUT_FILENO) ? DSV4_TOKS_TEXT : DSV4_TOKS_BIN) : op->format;
        if (wo.format == DSV4_TOKS_BIN && !cli->force && isatty(STDOUT_FILENO)) {
            rc = dsv4_err_set(&err, DSV4_E_INVALID, "standard output is a terminal: use --format text, a pipe, "
                              "or --force");
            goto out;
        }
        if (tj && !dsv4_toks_fingerprint(tj, len, fp, &err))
            wo.fingerprint = fp;
        wo.vocab_size = (uint32_t)r.c->vocab_size;
        wo.name = NULL;   /* messages then read "standard output: ..." (prefixed below) */
        fflush(stdout);
        if ((rc = dsv4_toks_writer_open(&w, STDOUT_FILENO, &wo, &err))) {
            dsv4_err_prefix(&err, "standard output");
            goto out;
        }
    }
    if (op->has_seed)
        cli_info(cli, "seed %llu", (unsigned long long)op->seed);
    cli_info(cli, "temperature %g, top-p %g, top-k %lld, min-p %g", op->so.temperature, op->so.top_p,
             (long long)op->so.top_k, op->so.min_p);

    /* the appended tokens: chunks of 256 (results do not depend on the size) */
    for (size_t i = 0; i < extra.n; i += 256) {
        size_t k = extra.n - i < 256 ? extra.n - i : 256;
        if ((rc = run_forward(&r, extra.ids + i, (int64_t)k, DSV4_LOGITS_NONE, NULL, &err))) {
            dsv4_err_prefix(&err, "appending tokens %zu..%zu", i, i + k - 1);
            goto out;
        }
        cli_progress(cli, "appending tokens", (uint64_t)(i + k), (uint64_t)extra.n);
    }
    cli_progress_end(cli);
    t0 = run_now();
    if ((rc = run_last_logits(&r, logits, &err)))
        goto out;
    for (done = 0; done < op->n;) {
        uint32_t tok;
        int64_t pos = (int64_t)r.toks.n;   /* r.s lags behind on the GPU */
        if (r.g)             /* the same token, drawn from the logits on the GPU */
            rc = dsv4_cuengine_sample(r.g, &op->so, op->seed, pos, &tok, &err);
        else
            rc = dsv4_sample(smp, logits, &op->so, dsv4_sample_uniform(op->seed, pos), &tok, &err);
        if (rc)
            goto out;
        if (w && (rc = dsv4_toks_put(w, tok, &err))) {
            dsv4_err_prefix(&err, "standard output");
            goto out;
        }
        done++;
        int stop = 0;
        for (int i = 0; i < n_eos && !stop; i++)
            if ((int64_t)tok == eos[i]) {
                stop = 1;
                why = "the end-of-sequence token";
            }
        for (int i = 0; i < op->n_stop && !stop; i++)
            if (tok == op->stops[i]) {
                stop = 1;
                why = "a --stop token";
            }
        if ((stop || done == op->n) && !feed_last) {
            if (stop)
                break;
            continue;
        }
        if ((rc = run_forward(&r, &tok, 1, DSV4_LOGITS_LAST, logits, &err))) {
            dsv4_err_prefix(&err, "position %lld", (long long)pos);
            goto out;
        }
        secs = run_now() - t0;
        char label[64];
        snprintf(label, sizeof label, "tokens (%.2f/s)", secs > 0 ? (double)done / secs : 0.0);
        cli_progress(cli, label, (uint64_t)done, (uint64_t)op->n);
        if (stop)
            break;
    }
    cli_progress_end(cli);
    secs = run_now() - t0;
    if (w && (rc = dsv4_toks_finish(w, &err))) {
        dsv4_err_prefix(&err, "standard output");
        goto out;
    }
    if (have_logits && (rc = run_write_f32(&out_logits, op->logits, logits, (size_t)r.c->vocab_size, &err)))
        goto out;
    if (have_snap && (rc = run_save(cli, &r, &out_snap, &st, &err)))
        goto out;
    if (have_logits) {
        have_logits = 0;
        if ((rc = cli_out_commit(&out_logits, &err)))
            goto out;
    }
    if (have_snap) {
        have_snap = 0;
        if ((rc = cli_out_commit(&out_snap, &err)))
            goto out;
    }
    cli_warn(cli, "%lld tokens in %.3f s (%.2f tokens/s), stopped by %s; seed %llu", (long long)done, secs,
             secs > 0 ? (double)done / secs : 0.0, why, (unsigned long long)op->seed);
    if (op->output) {
        run_human_bytes(hb, sizeof hb, (double)st.stream_bytes);
        cli_warn(cli, "snapshot %s%s%s: %lld tokens (%lld resumed), %llu bytes raw, %llu written (%s)",
                 cli_is_std(op->output) ? "" : "'", cli_is_std(op->output) ? "to standard output" : op->output,
                 cli_is_std(op->output) ? "" : "'", (long long)r.s->n_tokens, (long long)before,
                 (unsigned long long)st.raw, (unsigned long long)st.stream_bytes, hb);
    }
    code = CLI_EXIT_OK;
out:
    cli_progress_end(cli);
    if (have_snap)
        cli_out_abort(&out_snap);
    if (have_logits)
        cli_out_abort(&out_logits);
    if (code != CLI_EXIT_OK)
        cli_fail(cli, &err);
    dsv4_toks_writer_close(w);
    dsv4_sampler_free(smp);
    dsv4_toks_vec_release(&extra);
    free(logits);
    run_close(&r);
    return code;
}

int main(int argc, char **argv)
{
    struct cli cli;
    struct opts op;
    int c;
    memset(&op, 0, sizeof op);
    op.n = 256;
    op.format = FMT_AUTO;
    op.so = (dsv4_sample_opts)DSV4_SAMPLE_OPTS_INIT;
    cli_init(&cli, "dsv4-decode", usage, help, longopts,
             "model=FILE.dsv4 resume=FILE.kv input=FILE tokens=N output=FILE.kv temperature=T top-p=P top-k=K min-p=P "
             "seed=S stop=ID format=FORMAT logits=FILE threads=N device=DEVICE");
    while ((c = getopt_long(argc, argv, "m:r:i:n:o:" CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        switch (c) {
        case 'm': op.model = optarg; break;
        case 'r': op.resume = optarg; break;
        case 'i': op.input = optarg; break;
        case 'n': op.n = cli_parse_int(&cli, "--tokens", optarg, 1, (long long)1 << 40); break;
        case 'o': op.output = optarg; break;
        case OPT_TEMP: op.so.temperature = cli_parse_double(&cli, "--temperature", optarg, 0, 1e6); op.has_temp = 1; break;
        case OPT_TOP_P: op.so.top_p = cli_parse_double(&cli, "--top-p", optarg, 1e-9, 1); op.has_top_p = 1; break;
        case OPT_TOP_K: op.so.top_k = cli_parse_int(&cli, "--top-k", optarg, 0, (long long)1 << 32); op.has_top_k = 1; break;
        case OPT_MIN_P: op.so.min_p = cli_parse_double(&cli, "--min-p", optarg, 0, 1); break;
        case OPT_SEED:
            op.seed = (uint64_t)cli_parse_int(&cli, "--seed", optarg, 0, INT64_MAX);
            op.has_seed = 1;
            break;
        case OPT_STOP:
            if (op.n_stop == MAX_STOPS)
                cli_usage_error(&cli, "at most %d --stop tokens", MAX_STOPS);
            op.stops[op.n_stop++] = (uint32_t)cli_parse_int(&cli, "--stop", optarg, 0, UINT32_MAX);
            break;
        case OPT_IGNORE_EOS: op.ignore_eos = 1; break;
        case OPT_FORMAT:
            if (!strcmp(optarg, "bin"))
                op.format = DSV4_TOKS_BIN;
            else if (!strcmp(optarg, "text"))
                op.format = DSV4_TOKS_TEXT;
            else if (!strcmp(optarg, "none"))
                op.format = FMT_NONE;
            else
                cli_usage_error(&cli, "option '--format': '%s' is not bin, text or none", optarg);
            break;
        case OPT_LOGITS: op.logits = optarg; break;
        case OPT_THREADS: op.threads = (int)cli_parse_int(&cli, "--threads", optarg, 0, 4096); break;
        case OPT_DEVICE: op.device = run_parse_device(&cli, optarg); break;
        default:
            if (cli_common_opt(&cli, c))
                cli_usage_error(&cli, "unknown option");
        }
    }
    if (optind < argc)
        cli_usage_error(&cli, "unexpected argument '%s' (the snapshot is given with -r)", argv[optind]);
    if (!op.model)
        cli_usage_error(&cli, "missing model: give -m MODEL.dsv4");
    if (!op.resume)
        cli_usage_error(&cli, "missing snapshot: give -r SNAP (made by dsv4-prefill -o)");
    if (op.input && cli_is_std(op.input) && cli_is_std(op.resume))
        cli_usage_error(&cli, "-r - and -i - cannot both read standard input");
    if (op.output && cli_is_std(op.output) && op.format != FMT_NONE)
        cli_usage_error(&cli, "-o - and the token stream cannot both go to standard output (add --format none)");
    if (op.logits && cli_is_std(op.logits) && (op.format != FMT_NONE || (op.output && cli_is_std(op.output))))
        cli_usage_error(&cli, "--logits - needs standard output to itself (add --format none)");
    if (op.output && op.logits && !cli_is_std(op.output) && !strcmp(op.output, op.logits))
        cli_usage_error(&cli, "-o and --logits name the same file '%s'", op.output);
    if (!op.has_seed) {
        /* any seed is fine; it is printed so that the run can be repeated */
        if (getrandom(&op.seed, sizeof op.seed, GRND_NONBLOCK) != (ssize_t)sizeof op.seed)
            op.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        op.seed &= (uint64_t)INT64_MAX;
    }
    if (dsv4_init())
        return cli_fail(&cli, &(dsv4_err){ DSV4_E_BUG, "cannot initialise libsodium" });
    return cli_finish(&cli, decode(&cli, &op));
}
