/* cli — shared plumbing of the dsv4-* programs (see cli.h). */
#include "cli.h"
#include "version.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

/* Temp paths to unlink on a fatal signal.  A process-wide table is the one
 * piece of global state here: a signal handler can reach nothing else. */
#define CLEANUP_SLOTS 16
static char *volatile cleanup_paths[CLEANUP_SLOTS];
static int handlers_installed;

static void on_signal(int sig)
{
    for (int i = 0; i < CLEANUP_SLOTS; i++)
        if (cleanup_paths[i])
            unlink(cleanup_paths[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

int cli_cleanup_add(const char *path)
{
    if (!handlers_installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        handlers_installed = 1;
    }
    for (int i = 0; i < CLEANUP_SLOTS; i++)
        if (!cleanup_paths[i]) {
            cleanup_paths[i] = strdup(path);
            return cleanup_paths[i] ? i : -1;
        }
    return -1;
}

void cli_cleanup_remove(int slot)
{
    if (slot >= 0 && slot < CLEANUP_SLOTS && cleanup_paths[slot]) {
        char *p = cleanup_paths[slot];
        cleanup_paths[slot] = NULL;
        free(p);
    }
}

void cli_init(struct cli *cli, const char *prog, const char *usage, const char *help,
              const struct option *longopts, const char *arg_hints)
{
    memset(cli, 0, sizeof *cli);
    cli->prog = prog;
    cli->usage = usage;
    cli->help = help;
    cli->longopts = longopts;
    cli->arg_hints = arg_hints ? arg_hints : "";
    cli->verbosity = 2;
    cli->progress = -1;
    /* A reader that goes away (SIGPIPE) or a file-size limit (SIGXFSZ) must
     * not kill us with temp files left behind: the write fails instead
     * (EPIPE, EFBIG), and the error path removes them and exits 1. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
}

static void vmsg(const struct cli *cli, const char *fmt, va_list ap)
{
    fflush(stdout);
    fprintf(stderr, "%s: ", cli->prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void cli_msg(const struct cli *cli, const char *fmt, ...)
{
    va_list ap;
    if (cli->verbosity < 1)
        return;
    va_start(ap, fmt);
    vmsg(cli, fmt, ap);
    va_end(ap);
}

void cli_warn(const struct cli *cli, const char *fmt, ...)
{
    va_list ap;
    if (cli->verbosity < 2)
        return;
    va_start(ap, fmt);
    vmsg(cli, fmt, ap);
    va_end(ap);
}

void cli_info(const struct cli *cli, const char *fmt, ...)
{
    va_list ap;
    if (cli->verbosity < 3)
        return;
    va_start(ap, fmt);
    vmsg(cli, fmt, ap);
    va_end(ap);
}

void cli_usage_error(const struct cli *cli, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(cli, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\nTry '%s --help' for more information.\n", cli->usage, cli->prog);
    exit(CLI_EXIT_USAGE);
}

int cli_fail(const struct cli *cli, const dsv4_err *err)
{
    if (err && err->code)
        cli_msg(cli, "%s", err->msg[0] ? err->msg : dsv4_strerror(err->code));
    return CLI_EXIT_FAIL;
}

/* One line per option for completions and the man-page check:
 * "--long<TAB>-s<TAB>arg-hint" (hint empty when the option takes none). */
static void dump_options(const struct cli *cli)
{
    for (const struct option *o = cli->longopts; o->name; o++) {
        char shortbuf[4] = "";
        const char *hint = "";
        size_t nl = strlen(o->name);
        if (o->val > 0 && o->val < 128 && o->val != '?')
            snprintf(shortbuf, sizeof shortbuf, "-%c", o->val);
        if (o->has_arg != no_argument) {
            /* arg_hints: space-separated "name=HINT" pairs */
            const char *p = cli->arg_hints;
            hint = "ARG";
            while (p && *p) {
                const char *e = strchr(p, ' ');
                size_t l = e ? (size_t)(e - p) : strlen(p);
                if (l > nl && !strncmp(p, o->name, nl) && p[nl] == '=') {
                    static char h[64];   /* dump mode exits right after printing */
                    snprintf(h, sizeof h, "%.*s", (int)(l - nl - 1), p + nl + 1);
                    hint = h;
                    break;
                }
                p = e ? e + 1 : NULL;
            }
        }
        printf("--%s\t%s\t%s\n", o->name, shortbuf, hint);
    }
}

int cli_common_opt(struct cli *cli, int c)
{
    switch (c) {
    case 'h':
        printf("%s\n%s", cli->usage, cli->help);
        exit(cli_finish(cli, CLI_EXIT_OK));
    case 'V':
        printf("%s %s (model format %d.%d, snapshot format %d.%d, token stream format %d.%d)\n",
               cli->prog, DSV4_VERSION_STRING, DSV4_MODEL_FORMAT_MAJOR, DSV4_MODEL_FORMAT_MINOR,
               DSV4_KV_FORMAT_MAJOR, DSV4_KV_FORMAT_MINOR, DSV4_TOKS_FORMAT_MAJOR, DSV4_TOKS_FORMAT_MINOR);
        {
            char info[256];
            dsv4_build_info(info, sizeof info);
            printf("%s\n", info);
        }
        exit(cli_finish(cli, CLI_EXIT_OK));
    case 'q':
        cli->verbosity = cli->verbosity > 1 ? 1 : 0;
        return 0;
    case 'v':
        cli->verbosity++;
        return 0;
    case 'f':
        cli->force = 1;
        return 0;
    case CLI_OPT_PROGRESS:
        cli->progress = 1;
        return 0;
    case CLI_OPT_NO_PROGRESS:
        cli->progress = 0;
        return 0;
    case CLI_OPT_DUMP_OPTIONS:
        dump_options(cli);
        exit(cli_finish(cli, CLI_EXIT_OK));
    case '?':
    case ':':
        /* getopt_long already printed what was wrong */
        fprintf(stderr, "Try '%s --help' for more information.\n", cli->prog);
        exit(CLI_EXIT_USAGE);
    }
    return -1;
}

long long cli_parse_int(const struct cli *cli, const char *opt, const char *s, long long lo, long long hi)
{
    char *end;
    long long v;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        cli_usage_error(cli, "option '%s': '%s' is not an integer", opt, s);
    if (v < lo || v > hi)
        cli_usage_error(cli, "option '%s': %lld is out of range [%lld, %lld]", opt, v, lo, hi);
    return v;
}

double cli_parse_double(const struct cli *cli, const char *opt, const char *s, double lo, double hi)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || isnan(v))
        cli_usage_error(cli, "option '%s': '%s' is not a number", opt, s);
    if (v < lo || v > hi)
        cli_usage_error(cli, "option '%s': %g is out of range [%g, %g]", opt, v, lo, hi);
    return v;
}

static mode_t umask_value(void)
{
    mode_t m = umask(0);
    umask(m);
    return m;
}

int cli_is_std(const char *path) { return !path || !strcmp(path, "-"); }

int cli_open_in(struct cli *cli, const char *path, int binary, FILE **f, dsv4_err *err)
{
    if (cli_is_std(path)) {
        if (binary && !cli->force && isatty(STDIN_FILENO))
            return dsv4_err_set(err, DSV4_E_INVALID, "standard input is a terminal; give a file or a pipe");
        *f = stdin;
        return 0;
    }
    *f = fopen(path, binary ? "rb" : "r");
    if (!*f)
        return dsv4_err_set(err, DSV4_E_IO, "cannot open '%s': %s", path, strerror(errno));
    return 0;
}

int cli_read_all(struct cli *cli, const char *path, int binary, char **data, size_t *len, dsv4_err *err)
{
    FILE *f;
    char *p = NULL;
    size_t n = 0, cap = 0;
    int rc = cli_open_in(cli, path, binary, &f, err);
    if (rc)
        return rc;
    for (;;) {
        if (cap - n < 65536) {
            size_t ncap = cap ? cap * 2 : 1 << 20;
            char *q = realloc(p, ncap + 1);
            if (!q) {
                rc = dsv4_err_set(err, DSV4_E_NOMEM, "'%s': out of memory", cli_is_std(path) ? "-" : path);
                goto out;
            }
            p = q;
            cap = ncap;
        }
        size_t got = fread(p + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        rc = dsv4_err_set(err, DSV4_E_IO, "cannot read '%s': %s", cli_is_std(path) ? "standard input" : path,
                          strerror(errno));
        goto out;
    }
    p[n] = 0;
    *data = p;
    *len = n;
    p = NULL;
out:
    free(p);
    if (f != stdin)
        fclose(f);
    return rc;
}

int cli_out_open(struct cli *cli, struct cli_out *o, const char *path, int binary, dsv4_err *err)
{
    memset(o, 0, sizeof *o);
    o->slot = -1;
    o->fd = -1;
    if (cli_is_std(path)) {
        if (binary && !cli->force && isatty(STDOUT_FILENO))
            return dsv4_err_set(err, DSV4_E_INVALID,
                                "standard output is a terminal; use -o FILE, a pipe, or --force");
        o->f = stdout;
        o->fd = STDOUT_FILENO;
        return 0;
    }
    size_t n = strlen(path) + 16;
    o->path = strdup(path);
    o->tmp = malloc(n);
    if (!o->path || !o->tmp) {
        cli_out_abort(o);
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    }
    snprintf(o->tmp, n, "%s.tmp.XXXXXX", path);
    /* a signal between creating the temp file and registering it for
     * removal would leave it behind: hold them off until both are done */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, &old);
    o->fd = mkstemp(o->tmp);
    if (o->fd >= 0)
        o->slot = cli_cleanup_add(o->tmp);
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (o->fd < 0) {
        int e = errno;
        free(o->tmp);
        o->tmp = NULL;
        cli_out_abort(o);
        return dsv4_err_set(err, DSV4_E_IO, "cannot create output '%s': %s", path, strerror(e));
    }
    fchmod(o->fd, 0644 & ~umask_value());
    o->f = fdopen(o->fd, binary ? "wb" : "w");
    if (!o->f) {
        cli_out_abort(o);
        return dsv4_err_set(err, DSV4_E_IO, "cannot open output '%s': %s", path, strerror(errno));
    }
    return 0;
}

int cli_out_commit(struct cli_out *o, dsv4_err *err)
{
    int rc = 0;
    if (!o->tmp) {
        if (fflush(o->f))
            rc = dsv4_err_set(err, DSV4_E_IO, "write error on standard output: %s", strerror(errno));
        return rc;
    }
    if (fflush(o->f) || fsync(fileno(o->f)) || ferror(o->f))
        rc = dsv4_err_set(err, DSV4_E_IO, "cannot write '%s': %s", o->path, strerror(errno));
    if (fclose(o->f) && !rc)
        rc = dsv4_err_set(err, DSV4_E_IO, "cannot write '%s': %s", o->path, strerror(errno));
    o->f = NULL;
    if (!rc && rename(o->tmp, o->path))
        rc = dsv4_err_set(err, DSV4_E_IO, "cannot rename '%s' to '%s': %s", o->tmp, o->path, strerror(errno));
    if (rc) {
        cli_out_abort(o);
        return rc;
    }
    /* make the rename durable: fsync the directory */
    {
        char *dir = strdup(o->path), *slash = dir ? strrchr(dir, '/') : NULL;
        int dfd;
        if (dir) {
            if (slash)
                *(slash == dir ? slash + 1 : slash) = 0;
            dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY);
            if (dfd >= 0) {
                fsync(dfd);
                close(dfd);
            }
            free(dir);
        }
    }
    cli_cleanup_remove(o->slot);
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
    o->slot = -1;
    return 0;
}

void cli_out_abort(struct cli_out *o)
{
    if (o->tmp) {
        if (o->f)
            fclose(o->f);
        else if (o->fd >= 0)
            close(o->fd);
        unlink(o->tmp);
    }
    cli_cleanup_remove(o->slot);
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
    o->slot = -1;
}

int cli_progress_on(const struct cli *cli)
{
    if (cli->progress >= 0)
        return cli->progress;
    return cli->verbosity >= 2 && isatty(STDERR_FILENO);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void cli_progress(struct cli *cli, const char *label, uint64_t done, uint64_t total)
{
    double t;
    if (!cli_progress_on(cli))
        return;
    t = now_s();
    if (done < total && t - cli->progress_last < 0.1)
        return;
    cli->progress_last = t;
    if (total)
        fprintf(stderr, "\r%s: %s %5.1f%% (%llu/%llu)\033[K", cli->prog, label,
                100.0 * (double)done / (double)total, (unsigned long long)done, (unsigned long long)total);
    else
        fprintf(stderr, "\r%s: %s %llu\033[K", cli->prog, label, (unsigned long long)done);
    fflush(stderr);
}

void cli_progress_end(struct cli *cli)
{
    if (cli_progress_on(cli)) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
}

int cli_finish(struct cli *cli, int code)
{
    if (fflush(stdout) || ferror(stdout)) {
        fprintf(stderr, "%s: write error on standard output: %s\n", cli->prog, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    return code;
}
