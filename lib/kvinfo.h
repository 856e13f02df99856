/* kvinfo — facts about KV snapshots for people and scripts (dsv4-kvdump(1)):
 * the kind of each layer, what a further token costs, and the comparison of
 * two loaded snapshots value by value.
 *
 * Ownership: everything is borrowed; results go into caller-owned structs.
 * Thread-safe (no global state). */
#ifndef DSV4_KVINFO_H
#define DSV4_KVINFO_H

#include <stdint.h>

#include "config.h"
#include "err.h"
#include "snap.h"

/* "SWA" (ratio 0), "CSA" (4), "HCA" (128) for backbone layer l, "MTP" for
 * l >= n_layers. */
const char *dsv4_kvinfo_kind(const dsv4_snap_info *in, int l);

/* Positions layer l has consumed (n_tokens, or n_mtp for the MTP block) and
 * the window slots that hold one of them. */
int64_t dsv4_kvinfo_positions(const dsv4_snap_info *in, int l);
int64_t dsv4_kvinfo_window_slots(const dsv4_snap_info *in, int l);

/* Amortised bytes each further token adds to the state: compressed entries
 * and indexer keys of the backbone (spec/ARCH.md §9.1); the same number as
 * dsv4_kv_bytes_per_token, from a header alone. */
double dsv4_kvinfo_growth(const dsv4_snap_info *in);

/* One layer of a comparison.  Differences are the largest |a - b| over the
 * unpacked values both states hold (-1: nothing to compare); two equal
 * infinities or two NaNs count as 0, an infinity against a finite value as
 * infinity. */
typedef struct dsv4_kvinfo_ldiff {
    double win;              /* window slots of the positions both hold */
    double ent;              /* compressed entries, the first min(n_ent) */
    double ikey;             /* indexer keys (CSA), likewise */
    double comp;             /* compressor rows (k and score; main and indexer) */
    int64_t win_n, ent_n;    /* window positions and entries compared */
    int same_bytes;          /* the snapshot payloads are byte-identical */
} dsv4_kvinfo_ldiff;

typedef struct dsv4_kvinfo_diff {
    int same_model;          /* equal fingerprints */
    int64_t token_diff;      /* first position whose id differs (or where one
                                list ends before the other); -1 when equal */
    double hidden;           /* max |a - b| of the last residual streams; -1 if either has none */
    int same_hidden;         /* byte-identical (or both absent) */
    int n_all;
    int n_differ;            /* layers whose payloads differ */
    dsv4_kvinfo_ldiff layers[DSV4_MAX_LAYERS];
    int identical;           /* same model, tokens, MTP positions, hidden and payloads */
} dsv4_kvinfo_diff;

/* Compare two snapshots read with load_state = 1.  a_name and b_name name
 * them in messages.  Errors: DSV4_E_MISMATCH when their layouts, layers or
 * dimensions differ (then they cannot be compared), DSV4_E_INVALID when a
 * state was not loaded, DSV4_E_NOMEM. */
int dsv4_kvinfo_compare(const dsv4_snap *a, const char *a_name, const dsv4_snap *b, const char *b_name,
                        dsv4_kvinfo_diff *out, dsv4_err *err);

#endif
