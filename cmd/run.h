/* run — what dsv4-prefill and dsv4-decode share: a model with its engine, the
 * KV state being extended (fresh or resumed from a snapshot), every token id
 * it holds and the last position's residual streams (from which the next
 * token's logits come), and saving it all as a snapshot (dsv4-snapshot(5)).
 * Everything a struct run points to is owned by it (run_close). */
#ifndef DSV4_RUN_H
#define DSV4_RUN_H

#include "cli.h"
#include "cuengine.h"
#include "engine.h"
#include "kvstate.h"
#include "model.h"
#include "snap.h"
#include "toks.h"

struct run {
    const char *model_path;
    dsv4_model *m;
    dsv4_engine *e;
    const dsv4_config *c;
    dsv4_kvstate *s;
    dsv4_toks_vec toks;      /* the ids the state holds, in order */
    float *hidden;           /* [hc_mult * dim] of the last position, NULL when empty */
    float *hbuf;             /* [hcap, hc_mult * dim] scratch for dsv4_forward */
    int64_t hcap;
    dsv4_cuengine *g;        /* --device cuda: the GPU engine and its state; */
    dsv4_cukv *gs;           /* s is then refreshed from gs by run_sync */
    int s_stale;             /* gs is ahead of s */
};

enum { RUN_DEV_AUTO = 0, RUN_DEV_CPU, RUN_DEV_CUDA };
/* Parse --device cpu|cuda|auto for opt; exits through cli on a bad value. */
int  run_parse_device(struct cli *cli, const char *arg);

/* Open the model file and its engine (threads <= 0: one per CPU); device
 * RUN_DEV_CUDA also uploads the weights to the GPU (an error without one),
 * RUN_DEV_AUTO does when a GPU is there. */
int  run_open(struct cli *cli, struct run *r, const char *model_path, int threads, int device, dsv4_err *err);
/* Bring r->s up to date with the GPU state (a no-op on the CPU). */
int  run_sync(struct run *r, dsv4_err *err);
/* A fresh state in the given layout. */
int  run_fresh(struct run *r, int compact, dsv4_err *err);
/* Load the snapshot at path ('-' = stdin) as the state to extend; refused
 * when it was made with another model. */
int  run_resume(struct cli *cli, struct run *r, const char *path, dsv4_err *err);
/* The state's label for messages: "'PATH'" or "standard input". */
void run_label(const char *path, char *out, size_t cap);
/* Read a whole token stream ('-' = stdin) with ids below the vocab size; a
 * binary stream whose tokenizer fingerprint is not the model's is refused. */
int  run_load_tokens(struct cli *cli, struct run *r, const char *path, dsv4_toks_vec *v, dsv4_err *err);
/* Open an output for the option opt; an existing file is refused without
 * --force unless replace (the snapshot being updated). */
int  run_open_output(struct cli *cli, struct cli_out *o, const char *path, const char *opt, int replace,
                     dsv4_err *err);
/* Run ids[0..n) after what the state holds; logits as dsv4_forward. */
int  run_forward(struct run *r, const uint32_t *ids, int64_t n, int logits_mode, float *logits, dsv4_err *err);
/* The logits [vocab] after the last position (needs at least one token). */
int  run_last_logits(struct run *r, float *logits, dsv4_err *err);
/* Write the state as a snapshot to o (already open); progress on a tty;
 * st may be NULL. */
int  run_save(struct cli *cli, struct run *r, struct cli_out *o, dsv4_snap_stats *st, dsv4_err *err);
/* Seconds on a monotonic clock. */
double run_now(void);
/* Write n float32 values little-endian to o (the host's order on
 * little-endian machines, so only big-endian ones pay for a copy); name is
 * for the message. */
int  run_write_f32(struct cli_out *o, const char *name, const float *x, size_t n, dsv4_err *err);
/* "KV compact: 1234 bytes (1.2 KiB), 163.0 bytes/token" style facts for the summary. */
void run_human_bytes(char *out, size_t cap, double b);
void run_close(struct run *r);

#endif
