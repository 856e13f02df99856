/* dsv4-dsml — chat JSON -> prompt tokens or text, tokens -> text or an
 * assistant message, text <-> tokens (see dsv4-dsml(1), dsv4-tokens(5)). */
#include "cli.h"
#include "buf.h"
#include "chat.h"
#include "dsml.h"
#include "json.h"
#include "model.h"
#include "tok.h"
#include "toks.h"
#include "version.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: dsv4-dsml encode [--thinking chat|high|max] [--keep-thinking] [--text]\n"
    "                        [-m MODEL | --tokenizer FILE] [--format bin|text] [-o FILE] [CHAT.json|-]\n"
    "       dsv4-dsml decode [--raw] [--thinking MODE] [--strict] [-m MODEL | --tokenizer FILE]\n"
    "                        [-o FILE] [TOKENS|-]\n"
    "       dsv4-dsml tokenize [-m MODEL | --tokenizer FILE] [--format bin|text] [-o FILE] [FILE|-]\n"
    "       dsv4-dsml detokenize [-m MODEL | --tokenizer FILE] [-o FILE] [TOKENS|-]\n"
    "       dsv4-dsml parse [--thinking MODE] [--strict] [-o FILE] [FILE|-]";

static const char help[] =
    "\n"
    "Commands:\n"
    "  encode      chat JSON (an array of messages, or an object with \"messages\",\n"
    "              \"tools\" and \"thinking\") -> the DeepSeek-V4 prompt as a token stream,\n"
    "              or as text with --text\n"
    "  decode      token stream of a completion -> assistant message JSON\n"
    "              (role, content, reasoning_content, tool_calls), or text with --raw\n"
    "  tokenize    plain text -> token stream (no BOS added; special-token spellings\n"
    "              in the text become their ids)\n"
    "  detokenize  token stream -> plain text\n"
    "  parse       completion text -> assistant message JSON\n"
    "\n"
    "Options:\n"
    "  -m, --model=FILE       model file (.dsv4) whose embedded tokenizer to use\n"
    "      --tokenizer=FILE   tokenizer.json to use instead of a model file\n"
    "      --thinking=MODE    chat (Non-think), high (Think High) or max (Think Max);\n"
    "                         encode: overrides the document's \"thinking\"; decode and\n"
    "                         parse: chat means no reasoning comes first [high]\n"
    "      --keep-thinking    encode: keep the reasoning of earlier turns (it is dropped\n"
    "                         before the last user turn when no tools are defined)\n"
    "      --text             encode: write the prompt text, not tokens (no tokenizer needed)\n"
    "      --raw              decode: write the decoded text, not a message\n"
    "      --strict           decode, parse: the official grammar; malformed output is an\n"
    "                         error instead of being kept as content\n"
    "      --format=FORMAT    token stream to write: bin or text (dsv4-tokens(5)) [bin]\n"
    "  -o, --output=FILE      write here instead of standard output\n"
    "  -f, --force            overwrite an existing output file; write binary to a terminal\n"
    "  -q, --quiet            print errors only\n"
    "  -v, --verbose          print more\n"
    "      --progress         accepted for uniformity; nothing here is slow enough to show it\n"
    "      --no-progress      never show progress\n"
    "  -h, --help             show this help\n"
    "  -V, --version          show versions and build facts\n"
    "\n"
    "Token streams are read in either format (detected). The input is standard input\n"
    "when no FILE is given or FILE is '-'.\n"
    "\n"
    "Exit status: 0 success, 1 runtime error (unreadable or invalid input: bad JSON,\n"
    "an unknown role, a tool result without its call, invalid UTF-8, a token stream\n"
    "for another tokenizer; strict parse errors; I/O errors), 2 usage error.\n";

enum { OPT_TOKENIZER = CLI_OPT_FIRST_PRIVATE, OPT_THINKING, OPT_KEEP_THINKING, OPT_TEXT, OPT_RAW, OPT_STRICT,
       OPT_FORMAT };

static const struct option longopts[] = {
    { "model", required_argument, NULL, 'm' },
    { "tokenizer", required_argument, NULL, OPT_TOKENIZER },
    { "thinking", required_argument, NULL, OPT_THINKING },
    { "keep-thinking", no_argument, NULL, OPT_KEEP_THINKING },
    { "text", no_argument, NULL, OPT_TEXT },
    { "raw", no_argument, NULL, OPT_RAW },
    { "strict", no_argument, NULL, OPT_STRICT },
    { "format", required_argument, NULL, OPT_FORMAT },
    { "output", required_argument, NULL, 'o' },
    CLI_COMMON_LONGOPTS,
    { NULL, 0, NULL, 0 }
};

enum { C_ENCODE, C_DECODE, C_TOKENIZE, C_DETOKENIZE, C_PARSE, C_COUNT };
static const char *const commands[C_COUNT] = { "encode", "decode", "tokenize", "detokenize", "parse" };

struct opts {
    int cmd;
    const char *model, *tokenizer, *output, *input;
    dsv4_chat_mode mode;
    int keep_thinking, text, raw, strict, format;
    char in_label[512];       /* "'path'" or "standard input", for messages */
};

static int load_tokenizer(const struct opts *op, dsv4_tok **tok, dsv4_err *err)
{
    dsv4_model *m = NULL;
    const char *json;
    size_t len;
    int rc;
    if (op->tokenizer)
        return dsv4_tok_load_file(tok, op->tokenizer, err);
    if ((rc = dsv4_model_open(&m, op->model, err)))
        return rc;
    if (!(json = dsv4_model_blob(m, "tokenizer.json", &len)))
        rc = dsv4_err_set(err, DSV4_E_NOTFOUND, "'%s' embeds no tokenizer.json; give --tokenizer FILE",
                          op->model);
    else if ((rc = dsv4_tok_load(tok, json, len, err)))
        dsv4_err_prefix(err, "'%s': tokenizer.json", op->model);
    dsv4_model_close(m);
    return rc;
}

static int open_output(struct cli *cli, const struct opts *op, struct cli_out *o, int binary, dsv4_err *err)
{
    if (!cli_is_std(op->output) && !cli->force && access(op->output, F_OK) == 0)
        return dsv4_err_set(err, DSV4_E_INVALID, "'%s' already exists; use --force to overwrite it", op->output);
    return cli_out_open(cli, o, op->output, binary, err);
}

/* Write bytes to the output and commit it. */
static int write_bytes(struct cli *cli, const struct opts *op, const char *s, size_t n, dsv4_err *err)
{
    struct cli_out o;
    int rc;
    if ((rc = open_output(cli, op, &o, 0, err)))
        return rc;
    if (n && fwrite(s, 1, n, o.f) != n) {
        rc = dsv4_err_set(err, DSV4_E_IO, "cannot write '%s': %s", o.path ? o.path : "standard output",
                          strerror(errno));
        cli_out_abort(&o);
        return rc;
    }
    return cli_out_commit(&o, err);
}

static int write_ids(struct cli *cli, const struct opts *op, const dsv4_tok *tok, const dsv4_tok_ids *ids,
                     dsv4_err *err)
{
    dsv4_toks_wopts wo = DSV4_TOKS_WOPTS_INIT;
    dsv4_toks_writer *w = NULL;
    struct cli_out o;
    int rc;
    if ((rc = open_output(cli, op, &o, op->format == DSV4_TOKS_BIN, err)))
        return rc;
    wo.format = op->format;
    wo.fingerprint = dsv4_tok_fingerprint(tok);
    wo.vocab_size = (uint32_t)dsv4_tok_vocab_size(tok);
    wo.name = o.path;
    fflush(o.f);
    if (!(rc = dsv4_toks_writer_open(&w, o.fd, &wo, err)) && !(rc = dsv4_toks_put_n(w, ids->v, ids->n, err)))
        rc = dsv4_toks_finish(w, err);
    dsv4_toks_writer_close(w);
    if (rc) {
        cli_out_abort(&o);
        return rc;
    }
    return cli_out_commit(&o, err);
}

/* The whole input as text: valid UTF-8, or an error naming the input. */
static int read_text(struct cli *cli, const struct opts *op, char **data, size_t *len, dsv4_err *err)
{
    int rc = cli_read_all(cli, op->input, 0, data, len, err);
    if (!rc && (rc = dsv4_utf8_check(*data, *len, err))) {
        free(*data);
        *data = NULL;
    }
    return rc;
}

static int cmd_encode(struct cli *cli, const struct opts *op, dsv4_err *err)
{
    dsv4_chat_opts co = DSV4_CHAT_OPTS_INIT;
    dsv4_chat_spans ctl = DSV4_CHAT_SPANS_INIT;
    dsv4_buf prompt = DSV4_BUF_INIT;
    dsv4_tok_ids ids = DSV4_TOK_IDS_INIT;
    dsv4_tok *tok = NULL;
    char *json = NULL;
    size_t len;
    int rc;
    co.mode = op->mode;
    co.keep_thinking = op->keep_thinking;
    if ((rc = cli_read_all(cli, op->input, 0, &json, &len, err)))
        return rc;
    if ((rc = dsv4_chat_encode(json, len, &co, &prompt, &ctl, err))) {
        dsv4_err_prefix(err, "%s", op->in_label);
        goto out;
    }
    if (op->text) {
        rc = write_bytes(cli, op, prompt.data, prompt.len, err);
        goto out;
    }
    if (!(rc = load_tokenizer(op, &tok, err)) && !(rc = dsv4_chat_tokenize(tok, prompt.data, prompt.len, &ctl, &ids, err)))
        rc = write_ids(cli, op, tok, &ids, err);
out:
    free(json);
    dsv4_buf_release(&prompt);
    dsv4_chat_spans_release(&ctl);
    dsv4_tok_ids_release(&ids);
    dsv4_tok_free(tok);
    return rc;
}

static int cmd_tokenize(struct cli *cli, const struct opts *op, dsv4_err *err)
{
    dsv4_tok_ids ids = DSV4_TOK_IDS_INIT;
    dsv4_tok *tok = NULL;
    char *text = NULL;
    size_t len;
    int rc;
    if ((rc = read_text(cli, op, &text, &len, err)))
        return dsv4_err_prefix(err, "%s", op->in_label);
    if (!(rc = load_tokenizer(op, &tok, err)) && !(rc = dsv4_tok_encode(tok, text, len, 0, &ids, err)))
        rc = write_ids(cli, op, tok, &ids, err);
    free(text);
    dsv4_tok_ids_release(&ids);
    dsv4_tok_free(tok);
    return rc;
}

static unsigned parse_flags(const struct opts *op)
{
    return (op->mode == DSV4_CHAT_MODE_CHAT ? 0 : DSV4_DSML_THINKING) | (op->strict ? DSV4_DSML_STRICT : 0);
}

static int write_message(struct cli *cli, const struct opts *op, const dsv4_dsml_msg *m, dsv4_err *err)
{
    dsv4_buf j = DSV4_BUF_INIT;
    int rc;
    if (m->warnings)
        cli_warn(cli, "%s: %d tool-call parameter(s) repaired (a value that is not JSON, or a repeated name)",
                 op->in_label, m->warnings);
    if (!m->eos)
        cli_info(cli, "%s: no end-of-sentence token: the completion may be truncated", op->in_label);
    dsv4_dsml_msg_json(m, &j);
    dsv4_buf_putc(&j, '\n');
    rc = j.oom ? dsv4_err_set(err, DSV4_E_NOMEM, "out of memory") : write_bytes(cli, op, j.data, j.len, err);
    dsv4_buf_release(&j);
    return rc;
}

static int cmd_parse(struct cli *cli, const struct opts *op, dsv4_err *err)
{
    dsv4_dsml_msg m = DSV4_DSML_MSG_INIT;
    char *text = NULL;
    size_t len;
    int rc;
    if ((rc = read_text(cli, op, &text, &len, err)) || (rc = dsv4_dsml_parse(text, len, parse_flags(op), &m, err)))
        dsv4_err_prefix(err, "%s", op->in_label);
    else
        rc = write_message(cli, op, &m, err);
    free(text);
    dsv4_dsml_msg_release(&m);
    return rc;
}

/* decode and detokenize: ids are decoded as they arrive; text goes out at
 * once (--raw, detokenize) or into the streaming parser. */
static int cmd_decode(struct cli *cli, const struct opts *op, dsv4_err *err)
{
    int raw = op->cmd == C_DETOKENIZE || op->raw;
    dsv4_tok *tok = NULL;
    dsv4_toks_reader *r = NULL;
    dsv4_dsml_parser *p = NULL;
    dsv4_dsml_msg m = DSV4_DSML_MSG_INIT;
    dsv4_tok_stream ts;
    dsv4_buf text = DSV4_BUF_INIT, all = DSV4_BUF_INIT;
    struct cli_out o;
    int have_out = 0, rc;
    FILE *in = NULL;
    uint32_t ids[256];
    size_t n;

    if ((rc = load_tokenizer(op, &tok, err)) || (rc = cli_open_in(cli, op->input, 1, &in, err)))
        goto out;
    if ((rc = dsv4_toks_reader_open(&r, fileno(in), cli_is_std(op->input) ? "standard input" : op->input,
                                    (uint32_t)dsv4_tok_vocab_size(tok), err)))
        goto out;
    if (dsv4_toks_reader_info(r)->has_fingerprint &&
        (rc = dsv4_toks_check_fingerprint(dsv4_tok_fingerprint(tok), dsv4_toks_reader_info(r)->fingerprint, err))) {
        dsv4_err_prefix(err, "%s was made with another tokenizer", op->in_label);
        goto out;
    }
    if (raw) {
        if ((rc = open_output(cli, op, &o, 0, err)))
            goto out;
        have_out = 1;
    } else if (!op->strict && (rc = dsv4_dsml_parser_new(&p, parse_flags(op), NULL, NULL, err))) {
        goto out;
    }
    /* The message is JSON: bytes that are not UTF-8 (a completion cut inside a
     * character, or a model's stray byte tokens) become U+FFFD, as HF's decode
     * gives the official parser; --raw passes the bytes through. */
    dsv4_tok_stream_init(&ts, tok, raw ? 0 : DSV4_TOK_LOSSY);
    for (;;) {
        int last;
        rc = dsv4_toks_read(r, ids, sizeof ids / sizeof *ids, &n, err);
        if (rc)
            goto out;
        last = n == 0;
        text.len = 0;
        for (size_t i = 0; i < n; i++)
            if ((rc = dsv4_tok_stream_feed(&ts, ids[i], &text, err)))
                goto out;
        if (last)
            dsv4_tok_stream_finish(&ts, &text);
        if (raw) {
            if (text.len && (fwrite(text.data, 1, text.len, o.f) != text.len || fflush(o.f))) {
                rc = dsv4_err_set(err, DSV4_E_IO, "cannot write '%s': %s", o.path ? o.path : "standard output",
                                  strerror(errno));
                goto out;
            }
        } else if (p) {
            if ((rc = dsv4_dsml_feed(p, text.data ? text.data : "", text.len, err)))
                goto out;
        } else {
            dsv4_buf_append(&all, text.data, text.len);
        }
        if (last)
            break;
    }
    if (raw) {
        have_out = 0;
        rc = cli_out_commit(&o, err);
    } else if (p) {
        if (!(rc = dsv4_dsml_finish(p, err)))
            rc = write_message(cli, op, dsv4_dsml_parser_msg(p), err);
    } else if ((rc = dsv4_dsml_parse(all.data ? all.data : "", all.len, parse_flags(op), &m, err))) {
        dsv4_err_prefix(err, "%s", op->in_label);
    } else {
        rc = write_message(cli, op, &m, err);
    }
out:
    if (have_out)
        cli_out_abort(&o);
    if (in && in != stdin)
        fclose(in);
    dsv4_toks_reader_close(r);
    dsv4_dsml_parser_free(p);
    dsv4_dsml_msg_release(&m);
    dsv4_buf_release(&text);
    dsv4_buf_release(&all);
    dsv4_tok_free(tok);
    return rc;
}

/* Which options each command takes (by option value); others are usage errors. */
static void check_applies(struct cli *cli, const struct opts *op, const int *given)
{
    static const struct { int opt; const char *name; unsigned cmds; } rules[] = {
        { 'm', "--model", 1u << C_ENCODE | 1u << C_DECODE | 1u << C_TOKENIZE | 1u << C_DETOKENIZE },
        { OPT_TOKENIZER, "--tokenizer", 1u << C_ENCODE | 1u << C_DECODE | 1u << C_TOKENIZE | 1u << C_DETOKENIZE },
        { OPT_THINKING, "--thinking", 1u << C_ENCODE | 1u << C_DECODE | 1u << C_PARSE },
        { OPT_KEEP_THINKING, "--keep-thinking", 1u << C_ENCODE },
        { OPT_TEXT, "--text", 1u << C_ENCODE },
        { OPT_RAW, "--raw", 1u << C_DECODE },
        { OPT_STRICT, "--strict", 1u << C_DECODE | 1u << C_PARSE },
        { OPT_FORMAT, "--format", 1u << C_ENCODE | 1u << C_TOKENIZE },
    };
    for (size_t i = 0; i < sizeof rules / sizeof *rules; i++)
        if (given[rules[i].opt] && !(rules[i].cmds & 1u << op->cmd))
            cli_usage_error(cli, "option '%s' does not apply to '%s'", rules[i].name, commands[op->cmd]);
    if (op->model && op->tokenizer)
        cli_usage_error(cli, "give either -m MODEL or --tokenizer FILE, not both");
    if (op->cmd == C_ENCODE && op->text && (op->model || op->tokenizer || given[OPT_FORMAT]))
        cli_usage_error(cli, "encode --text writes text: it takes no tokenizer and no --format");
    if (op->cmd == C_DECODE && op->raw && (given[OPT_STRICT] || given[OPT_THINKING]))
        cli_usage_error(cli, "decode --raw writes text: --strict and --thinking do not apply");
    if ((op->cmd == C_ENCODE ? !op->text : op->cmd != C_PARSE) && !op->model && !op->tokenizer)
        cli_usage_error(cli, "'%s' needs a tokenizer: give -m MODEL or --tokenizer FILE", commands[op->cmd]);
}

int main(int argc, char **argv)
{
    struct cli cli;
    struct opts op;
    static int given[CLI_OPT_FIRST_PRIVATE + 16];
    int c, code;
    dsv4_err err = DSV4_ERR_INIT;
    memset(&op, 0, sizeof op);
    op.format = DSV4_TOKS_BIN;
    cli_init(&cli, "dsv4-dsml", usage, help, longopts,
             "model=FILE.dsv4 tokenizer=FILE.json thinking=MODE format=FORMAT output=FILE");
    while ((c = getopt_long(argc, argv, "m:o:" CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (c > 0 && c < (int)(sizeof given / sizeof *given))
            given[c] = 1;
        switch (c) {
        case 'm': op.model = optarg; break;
        case 'o': op.output = optarg; break;
        case OPT_TOKENIZER: op.tokenizer = optarg; break;
        case OPT_THINKING:
            if (!strcmp(optarg, "chat") || !strcmp(optarg, "high") || !strcmp(optarg, "max"))
                op.mode = dsv4_chat_mode_parse(optarg);
            else
                cli_usage_error(&cli, "option '--thinking': '%s' is not chat, high or max", optarg);
            break;
        case OPT_KEEP_THINKING: op.keep_thinking = 1; break;
        case OPT_TEXT: op.text = 1; break;
        case OPT_RAW: op.raw = 1; break;
        case OPT_STRICT: op.strict = 1; break;
        case OPT_FORMAT:
            if (!strcmp(optarg, "bin"))
                op.format = DSV4_TOKS_BIN;
            else if (!strcmp(optarg, "text"))
                op.format = DSV4_TOKS_TEXT;
            else
                cli_usage_error(&cli, "option '--format': '%s' is not bin or text", optarg);
            break;
        default:
            if (cli_common_opt(&cli, c))
                cli_usage_error(&cli, "unknown option");
        }
    }
    if (optind >= argc)
        cli_usage_error(&cli, "missing command: encode, decode, tokenize, detokenize or parse");
    for (op.cmd = 0; op.cmd < C_COUNT && strcmp(argv[optind], commands[op.cmd]); op.cmd++)
        ;
    if (op.cmd == C_COUNT)
        cli_usage_error(&cli, "unknown command '%s'", argv[optind]);
    if (++optind < argc)
        op.input = argv[optind++];
    if (optind < argc)
        cli_usage_error(&cli, "unexpected argument '%s' (one input at most)", argv[optind]);
    check_applies(&cli, &op, given);
    if (cli_is_std(op.input))
        snprintf(op.in_label, sizeof op.in_label, "standard input");
    else
        snprintf(op.in_label, sizeof op.in_label, "'%s'", op.input);
    if (dsv4_init())
        return cli_fail(&cli, &(dsv4_err){ DSV4_E_BUG, "cannot initialise libsodium" });
    switch (op.cmd) {
    case C_ENCODE:   code = cmd_encode(&cli, &op, &err); break;
    case C_TOKENIZE: code = cmd_tokenize(&cli, &op, &err); break;
    case C_PARSE:    code = cmd_parse(&cli, &op, &err); break;
    default:         code = cmd_decode(&cli, &op, &err); break;
    }
    return cli_finish(&cli, code ? cli_fail(&cli, &err) : CLI_EXIT_OK);
}
