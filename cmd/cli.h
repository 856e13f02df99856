/* cli — the plumbing every dsv4-* program shares: common options, input and
 * output opening ('-' = stdin/stdout, binary refused on a terminal), atomic
 * output files (temp + fsync + rename, removed on SIGINT/SIGTERM/SIGHUP),
 * progress on stderr, messages and the error -> exit status map.
 *
 * This is the only place that prints errors.  Exit status: 0 ok, 1 runtime
 * error (bad data, I/O, failed check), 2 usage error. */
#ifndef DSV4_CLI_H
#define DSV4_CLI_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

/* Long-only option values shared by every program (short ones: h V q v f). */
enum { CLI_OPT_PROGRESS = 0x1000, CLI_OPT_NO_PROGRESS, CLI_OPT_DUMP_OPTIONS, CLI_OPT_FIRST_PRIVATE = 0x1100 };

#define CLI_COMMON_LONGOPTS \
    { "help", no_argument, NULL, 'h' }, \
    { "version", no_argument, NULL, 'V' }, \
    { "quiet", no_argument, NULL, 'q' }, \
    { "verbose", no_argument, NULL, 'v' }, \
    { "force", no_argument, NULL, 'f' }, \
    { "progress", no_argument, NULL, CLI_OPT_PROGRESS }, \
    { "no-progress", no_argument, NULL, CLI_OPT_NO_PROGRESS }, \
    { "dump-options", no_argument, NULL, CLI_OPT_DUMP_OPTIONS }
#define CLI_COMMON_SHORTOPTS "hVqvf"

struct cli {
    const char *prog;          /* "dsv4-convert" */
    const char *usage;         /* one-line synopsis(es), printed on usage errors */
    const char *help;          /* full --help text (after the synopsis) */
    const struct option *longopts;
    const char *arg_hints;     /* "output=FILE model=FILE ..." for --dump-options */
    int verbosity;             /* 0 quiet, 1 errors, 2 default, 3+ verbose */
    int progress;              /* -1 auto (stderr is a tty), 0 off, 1 on */
    int force;
    double progress_last;      /* progress throttle */
};

void cli_init(struct cli *cli, const char *prog, const char *usage, const char *help,
              const struct option *longopts, const char *arg_hints);
/* Handle a common option or an unknown one ('?', ':'); exits for --help,
 * --version, --dump-options (0) and usage errors (2).  Returns 0 if c was
 * handled, -1 if c is not a common option (then the caller reports it). */
int cli_common_opt(struct cli *cli, int c);

void cli_msg(const struct cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));   /* "prog: ..." */
void cli_warn(const struct cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));  /* level >= 2 */
void cli_info(const struct cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));  /* level >= 3 */
/* Print "prog: msg" and exit 2 with a hint to --help. */
_Noreturn void cli_usage_error(const struct cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print the error (if err->code) and return CLI_EXIT_FAIL. */
int cli_fail(const struct cli *cli, const dsv4_err *err);

/* Strict number parsing for option values; exits 2 naming the option. */
long long cli_parse_int(const struct cli *cli, const char *opt, const char *s, long long lo, long long hi);
double cli_parse_double(const struct cli *cli, const char *opt, const char *s, double lo, double hi);

/* 1 when path names standard input or output: NULL or "-". */
int cli_is_std(const char *path);

/* Input: path "-" or NULL = stdin.  binary: refuse a terminal stdin (unless
 * --force).  Returns 0 or a DSV4_E_* with err filled. */
int cli_open_in(struct cli *cli, const char *path, int binary, FILE **f, dsv4_err *err);
/* Read a whole input into memory (malloc'd, NUL-terminated). */
int cli_read_all(struct cli *cli, const char *path, int binary, char **data, size_t *len, dsv4_err *err);

/* Output: path "-" or NULL = stdout (binary output refused on a terminal
 * unless --force); otherwise a temp file "PATH.tmp.XXXXXX" in the same
 * directory that cli_out_commit renames over PATH.  The temp file is removed
 * by cli_out_abort and on SIGINT/SIGTERM/SIGHUP. */
struct cli_out {
    FILE *f;
    int fd;
    char *path;      /* final name, NULL for stdout */
    char *tmp;       /* temp name, NULL for stdout */
    int slot;        /* signal cleanup slot */
};
int  cli_out_open(struct cli *cli, struct cli_out *o, const char *path, int binary, dsv4_err *err);
int  cli_out_commit(struct cli_out *o, dsv4_err *err);
void cli_out_abort(struct cli_out *o);
/* Register/unregister a temp path created elsewhere for signal cleanup. */
int  cli_cleanup_add(const char *path);
void cli_cleanup_remove(int slot);

/* Progress line on stderr (only when enabled), throttled to ~10 Hz.  label
 * is short; done/total in any unit; cli_progress_end clears the line. */
void cli_progress(struct cli *cli, const char *label, uint64_t done, uint64_t total);
void cli_progress_end(struct cli *cli);
int  cli_progress_on(const struct cli *cli);

/* Flush and check stdout; returns code unless writing stdout failed (then 1). */
int cli_finish(struct cli *cli, int code);

#endif
