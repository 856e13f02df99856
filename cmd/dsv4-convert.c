/* dsv4-convert — convert, validate and describe DeepSeek-V4 checkpoints
 * (see dsv4-convert(1), dsv4-model(5)). */
#include "cli.h"
#include "buf.h"
#include "check.h"
#include "convert.h"
#include "json.h"
#include "model.h"
#include "version.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: dsv4-convert [-qvf] [-t TOKENIZER.json] [-o OUT.dsv4] HF_DIR\n"
    "       dsv4-convert --check [--json] HF_DIR|FILE.dsv4...\n"
    "       dsv4-convert --info [--json] FILE.dsv4|HF_DIR...";

static const char help[] =
    "\n"
    "Convert a Hugging Face DeepSeek-V4 checkpoint folder (config.json, safetensors\n"
    "shards + model.safetensors.index.json) into one .dsv4 model file, losslessly and\n"
    "tensor by tensor; or validate a checkpoint or model file; or describe one.\n"
    "\n"
    "  -o, --output=FILE      model file to write [BASENAME(HF_DIR).dsv4]\n"
    "  -t, --tokenizer=FILE   tokenizer.json to embed (default: the folder's, if any)\n"
    "  -c, --check            validate without writing: names, shapes, dtypes against\n"
    "                         config.json, index and shards, scale bytes, NaN/Inf,\n"
    "                         checksums of a .dsv4 file; one line per problem\n"
    "  -i, --info             print the config summary, parameter counts, bytes by\n"
    "                         dtype and the fingerprint\n"
    "  -j, --json             machine-readable output for --check and --info\n"
    "  -f, --force            overwrite an existing output file\n"
    "  -q, --quiet            print errors only\n"
    "  -v, --verbose          print more\n"
    "      --progress         show progress even when stderr is not a terminal\n"
    "      --no-progress      never show progress\n"
    "  -h, --help             show this help\n"
    "  -V, --version          show versions and build facts\n"
    "\n"
    "Exit status: 0 success (or a valid input), 1 runtime error or invalid input,\n"
    "2 usage error.\n";

static const struct option longopts[] = {
    { "output", required_argument, NULL, 'o' },
    { "tokenizer", required_argument, NULL, 't' },
    { "check", no_argument, NULL, 'c' },
    { "info", no_argument, NULL, 'i' },
    { "json", no_argument, NULL, 'j' },
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 }
};

struct problems {
    struct cli *cli;
    const char *path;
    int json;
    dsv4_buf out;   /* JSON array items */
    int n;
    int diag;       /* converting: problems are diagnostics, for stderr */
};

static void on_problem(void *ctx, const char *subject, const char *msg)
{
    struct problems *p = ctx;
    cli_progress_end(p->cli);
    if (p->json) {
        dsv4_buf_puts(&p->out, p->n ? ", {\"subject\": " : "{\"subject\": ");
        dsv4_json_write_str(&p->out, subject, strlen(subject));
        dsv4_buf_puts(&p->out, ", \"message\": ");
        dsv4_json_write_str(&p->out, msg, strlen(msg));
        dsv4_buf_puts(&p->out, "}");
    } else if (p->diag) {
        cli_msg(p->cli, "%s: %s: %s", p->path, subject, msg);
    } else {
        printf("%s: %s: %s\n", p->path, subject, msg);
    }
    p->n++;
}

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    cli_progress(ctx, "", done, total);
}

static int do_check(struct cli *cli, const char *path, int json)
{
    struct problems p = { cli, path, json, DSV4_BUF_INIT, 0, 0 };
    dsv4_err err = DSV4_ERR_INIT;
    int rc = dsv4_check_input(path, on_problem, &p, on_progress, cli, &err);
    cli_progress_end(cli);
    if (rc < 0) {
        dsv4_buf_release(&p.out);
        return cli_fail(cli, &err);
    }
    if (json) {
        dsv4_buf o = DSV4_BUF_INIT;
        dsv4_buf_puts(&o, "{\"path\": ");
        dsv4_json_write_str(&o, path, strlen(path));
        dsv4_buf_printf(&o, ", \"ok\": %s, \"problems\": [%s]}\n", rc ? "false" : "true", p.out.data ? p.out.data : "");
        fputs(o.data, stdout);
        dsv4_buf_release(&o);
    } else if (rc) {
        printf("%s: %d problem%s\n", path, rc, rc == 1 ? "" : "s");
    } else {
        printf("%s: OK\n", path);
    }
    dsv4_buf_release(&p.out);
    return rc ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

static void human_bytes(char *out, size_t cap, uint64_t b)
{
    static const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    snprintf(out, cap, i ? "%.2f %s" : "%.0f %s", v, u[i]);
}

static int do_info(struct cli *cli, const char *path, int json)
{
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_model *m = NULL;
    dsv4_config cfg;
    dsv4_tensor_spec *spec = NULL;
    dsv4_param_counts pc;
    uint64_t by_dtype[DSV4_DT_COUNT] = { 0 }, file_bytes = 0;
    size_t ns, ntensors = 0;
    char fp[65] = "", hb[32];
    int kind = dsv4_input_kind(path, &err), counts[3] = { 0 }, rc;
    if (kind < 0)
        return cli_fail(cli, &err);
    if (kind == DSV4_INPUT_MODEL) {
        if ((rc = dsv4_model_open(&m, path, &err)))
            return cli_fail(cli, &err);
        cfg = *dsv4_model_config(m);
        ntensors = dsv4_model_count(m);
        for (size_t i = 0; i < ntensors; i++)
            by_dtype[dsv4_model_tensor(m, i)->dtype] += dsv4_model_tensor(m, i)->nbytes;
        dsv4_model_fingerprint_hex(m, fp);
        file_bytes = dsv4_model_file_bytes(m);
    } else {
        dsv4_st *st;
        char *cp, *text;
        size_t len, dl = strlen(path);
        const char *dir = path;
        cp = malloc(dl + 16);
        if (!cp)
            return CLI_EXIT_FAIL;
        snprintf(cp, dl + 16, "%s/config.json", dir);
        rc = dsv4_read_file(cp, 16u << 20, &text, &len, &err);
        free(cp);
        if (rc)
            return cli_fail(cli, &err);
        rc = dsv4_config_parse(&cfg, text, len, &err);
        free(text);
        if (rc || (rc = dsv4_st_open(&st, path, NULL, NULL, &err)))
            return cli_fail(cli, &err);
        ntensors = dsv4_st_count(st);
        for (size_t i = 0; i < ntensors; i++)
            by_dtype[dsv4_st_tensor(st, i)->dtype] += dsv4_st_tensor(st, i)->nbytes;
        file_bytes = dsv4_st_total_bytes(st);
        dsv4_st_close(st);
    }
    if ((rc = dsv4_config_tensors(&cfg, &spec, &ns, &err))) {
        dsv4_model_close(m);
        return cli_fail(cli, &err);
    }
    dsv4_config_params(&cfg, spec, ns, &pc);
    free(spec);
    for (int l = 0; l < cfg.n_layers; l++)
        counts[cfg.compress_ratios[l] == 0 ? 0 : cfg.compress_ratios[l] == 4 ? 1 : 2]++;
    if (json) {
        dsv4_buf o = DSV4_BUF_INIT;
        dsv4_buf_puts(&o, "{\"path\": ");
        dsv4_json_write_str(&o, path, strlen(path));
        dsv4_buf_printf(&o, ", \"kind\": \"%s\", \"bytes\": %llu, \"tensors\": %zu", m ? "dsv4" : "huggingface",
                        (unsigned long long)file_bytes, ntensors);
        if (m)
            dsv4_buf_printf(&o, ", \"fingerprint\": \"%s\"", fp);
        dsv4_buf_printf(&o, ", \"vocab_size\": %lld, \"hidden_size\": %lld, \"layers\": %lld, \"mtp_layers\": %lld, "
                            "\"heads\": %lld, \"swa_layers\": %d, \"csa_layers\": %d, \"hca_layers\": %d, "
                            "\"hash_layers\": %lld, \"routed_experts\": %lld, \"experts_per_token\": %lld, "
                            "\"expert_dtype\": \"%s\"",
                        (long long)cfg.vocab_size, (long long)cfg.dim, (long long)cfg.n_layers,
                        (long long)cfg.n_mtp_layers, (long long)cfg.n_heads, counts[0], counts[1], counts[2],
                        (long long)cfg.n_hash_layers, (long long)cfg.n_routed_experts,
                        (long long)cfg.n_experts_per_tok, cfg.expert_fp4 ? "fp4" : "fp8");
        dsv4_buf_printf(&o, ", \"params\": {\"total\": %lld, \"backbone\": %lld, \"mtp\": %lld, \"routed\": %lld, "
                            "\"active\": %lld, \"active_no_embed\": %lld}, \"bytes_by_dtype\": {",
                        (long long)pc.total, (long long)pc.backbone, (long long)pc.mtp, (long long)pc.routed,
                        (long long)pc.active, (long long)pc.active_no_embed);
        for (int d = 1, first = 1; d < DSV4_DT_COUNT; d++)
            if (by_dtype[d]) {
                dsv4_buf_printf(&o, "%s\"%s\": %llu", first ? "" : ", ", dsv4_dtype_name((dsv4_dtype)d),
                                (unsigned long long)by_dtype[d]);
                first = 0;
            }
        dsv4_buf_puts(&o, "}}\n");
        fputs(o.data, stdout);
        dsv4_buf_release(&o);
    } else {
        human_bytes(hb, sizeof hb, file_bytes);
        printf("%s\n", path);
        if (m) {
            int ma, mi;
            dsv4_model_version(m, &ma, &mi);
            printf("  format:        dsv4 model %d.%d, %s, %zu tensors\n", ma, mi, hb, ntensors);
            printf("  fingerprint:   %s\n", fp);
        } else {
            printf("  format:        Hugging Face safetensors, %s of tensors, %zu tensors\n", hb, ntensors);
        }
        printf("  model:         vocab %lld, hidden %lld, %lld layers + %lld MTP, %lld heads x %lld (rope %lld)\n",
               (long long)cfg.vocab_size, (long long)cfg.dim, (long long)cfg.n_layers, (long long)cfg.n_mtp_layers,
               (long long)cfg.n_heads, (long long)cfg.head_dim, (long long)cfg.rope_dim);
        printf("  attention:     %d sliding-window, %d CSA (ratio 4, top-%lld), %d HCA (ratio 128); window %lld\n",
               counts[0], counts[1], (long long)cfg.index_topk, counts[2], (long long)cfg.window);
        printf("  experts:       %lld routed (%lld per token, %s) + %lld shared, width %lld; %lld hash-routed layers\n",
               (long long)cfg.n_routed_experts, (long long)cfg.n_experts_per_tok, cfg.expert_fp4 ? "FP4" : "FP8",
               (long long)cfg.n_shared_experts, (long long)cfg.moe_inter_dim, (long long)cfg.n_hash_layers);
        printf("  parameters:    %lld total (%lld without MTP), %lld active per token (%lld without the embedding)\n",
               (long long)pc.total, (long long)pc.backbone, (long long)pc.active, (long long)pc.active_no_embed);
        printf("  bytes by dtype:");
        for (int d = 1; d < DSV4_DT_COUNT; d++)
            if (by_dtype[d]) {
                human_bytes(hb, sizeof hb, by_dtype[d]);
                printf(" %s %s;", dsv4_dtype_name((dsv4_dtype)d), hb);
            }
        printf("\n");
        if (m) {
            printf("  embedded:     ");
            for (size_t b = 0; b < dsv4_model_blob_count(m); b++) {
                size_t len;
                dsv4_model_blob(m, dsv4_model_blob_name(m, b), &len);
                printf(" %s (%zu B)", dsv4_model_blob_name(m, b), len);
            }
            printf("\n");
        }
    }
    dsv4_model_close(m);
    return CLI_EXIT_OK;
}

static char *default_output(const char *dir)
{
    size_t n = strlen(dir);
    const char *b;
    char *out;
    while (n > 1 && dir[n - 1] == '/')
        n--;
    b = dir + n;
    while (b > dir && b[-1] != '/')
        b--;
    out = malloc((size_t)(dir + n - b) + 6);
    if (out)
        sprintf(out, "%.*s.dsv4", (int)(dir + n - b), b);
    return out;
}

static int do_convert(struct cli *cli, const char *in, const char *outpath, const char *tokenizer)
{
    struct problems p = { cli, in, 0, DSV4_BUF_INIT, 0, 1 };
    dsv4_convert_opts o = { tokenizer, "dsv4-convert " DSV4_VERSION_STRING };
    dsv4_err err = DSV4_ERR_INIT;
    struct cli_out out;
    uint8_t fp[DSV4_FINGERPRINT_BYTES];
    char *def = NULL, hex[65];
    int rc;
    if (!outpath) {
        if (!(def = default_output(in)))
            return CLI_EXIT_FAIL;
        outpath = def;
    }
    if (!strcmp(outpath, "-"))
        cli_usage_error(cli, "a model file must be a regular file (it is mapped into memory); give -o FILE");
    if (!cli->force && access(outpath, F_OK) == 0) {
        cli_msg(cli, "'%s' already exists; use --force to overwrite it", outpath);
        free(def);
        return CLI_EXIT_FAIL;
    }
    if ((rc = cli_out_open(cli, &out, outpath, 1, &err))) {
        free(def);
        return cli_fail(cli, &err);
    }
    p.path = in;
    rc = dsv4_convert(in, out.fd, &o, on_problem, &p, on_progress, cli, fp, &err);
    cli_progress_end(cli);
    if (rc) {
        cli_out_abort(&out);
        if (rc > 0)
            cli_msg(cli, "'%s': %d problem%s; nothing written", in, rc, rc == 1 ? "" : "s");
        else {
            if (rc == DSV4_E_IO)   /* a write error: name the output */
                dsv4_err_prefix(&err, "'%s'", outpath);
            cli_fail(cli, &err);
        }
        free(def);
        return CLI_EXIT_FAIL;
    }
    if ((rc = cli_out_commit(&out, &err))) {
        free(def);
        return cli_fail(cli, &err);
    }
    for (int i = 0; i < DSV4_FINGERPRINT_BYTES; i++)
        sprintf(hex + 2 * i, "%02x", fp[i]);
    cli_warn(cli, "wrote '%s' (fingerprint %.16s)", outpath, hex);
    free(def);
    return CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
    struct cli cli;
    const char *output = NULL, *tokenizer = NULL;
    int check = 0, info = 0, json = 0, c, rc = CLI_EXIT_OK;
    cli_init(&cli, "dsv4-convert", usage, help, longopts, "output=FILE tokenizer=FILE");
    while ((c = getopt_long(argc, argv, "o:t:cij" CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        switch (c) {
        case 'o': output = optarg; break;
        case 't': tokenizer = optarg; break;
        case 'c': check = 1; break;
        case 'i': info = 1; break;
        case 'j': json = 1; break;
        default:
            if (cli_common_opt(&cli, c))
                cli_usage_error(&cli, "unknown option");
        }
    }
    if (dsv4_init())
        return cli_fail(&cli, &(dsv4_err){ DSV4_E_BUG, "cannot initialise libsodium" });
    if (check && info)
        cli_usage_error(&cli, "--check and --info are exclusive");
    if (optind >= argc)
        cli_usage_error(&cli, "missing input (a checkpoint folder or a .dsv4 file)");
    if (check || info) {
        if (output || tokenizer)
            cli_usage_error(&cli, "--output and --tokenizer go with conversion, not --%s", check ? "check" : "info");
        for (int i = optind; i < argc; i++) {
            int r = check ? do_check(&cli, argv[i], json) : do_info(&cli, argv[i], json);
            if (r > rc)
                rc = r;
        }
        return cli_finish(&cli, rc);
    }
    if (json)
        cli_usage_error(&cli, "--json goes with --check or --info");
    if (argc - optind != 1)
        cli_usage_error(&cli, "convert takes exactly one checkpoint folder");
    return cli_finish(&cli, do_convert(&cli, argv[optind], output, tokenizer));
}
