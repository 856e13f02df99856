/* snap — KV snapshots: a dsv4_kvstate, the token ids that built it and the
 * last position's residual streams, as one stream that is written front to
 * back and read front to back (no seeks: it goes through a pipe).  The format
 * is dsv4-snapshot(5) (man/dsv4-snapshot.5, normative); in short, all
 * integers little-endian:
 *
 *   header   signature 89 'K' 'V' '4' 0D 0A 1A 0A, major 1, minor 0, flags,
 *            header_bytes, layout (0 bf16, 1 compact), n_tokens, n_mtp, the
 *            model's dimensions, the model fingerprint, then one 16-byte
 *            record per layer (ratio, compressed entries), then BLAKE2b-256
 *            of all the header bytes before it
 *   chunks   sections in a fixed order: tokens, hidden, layer 0 .. n_all-1;
 *            each section is one or more chunks (96-byte chunk header: kind,
 *            index, part, flags, raw_bytes, frame_bytes, BLAKE2b-256 of the
 *            raw bytes, BLAKE2b-256 of the frame; then one zstd frame of
 *            frame_bytes)
 *   trailer  "KV4TRAIL", chunk count, stream bytes before the trailer,
 *            BLAKE2b-256 of the header and every chunk header in order: every
 *            byte before the trailer is covered, the frames through their
 *            hashes, so chunks can be hashed in parallel
 *
 * A layer's payload is the compact layout of spec/ARCH.md §9 and nothing
 * else: the window slots that hold a position (min(n, window) of them), the
 * compressor's pending f32 rows (ratio 4: the previous block's first halves
 * and the current block's n % 4 full rows, for the main and the indexer
 * compressor; ratio 128: the current block's n % 128 rows), the compressed
 * entries and, ratio 4, the indexer keys.  Rows the engine will overwrite
 * before reading them are not stored; a loaded state has them at their
 * initial values, so two states that differ only there save to the same
 * bytes.  Writing is deterministic: the same state gives the same bytes.
 *
 * Ownership: the writer borrows everything it is given; dsv4_snap_read fills
 * a dsv4_snap that owns its state and arrays (dsv4_snap_release).  fds are
 * borrowed and never closed.  Not thread-safe per call; no global state. */
#ifndef DSV4_SNAP_H
#define DSV4_SNAP_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "kvstate.h"

#define DSV4_SNAP_MAGIC "\x89KV4\r\n\x1a\n"     /* 8 bytes */
#define DSV4_SNAP_MAJOR 1
#define DSV4_SNAP_MINOR 0
#define DSV4_SNAP_FIXED_BYTES 128                /* header before the layer records */
#define DSV4_SNAP_LAYER_BYTES 16                 /* one layer record */
#define DSV4_SNAP_CHUNK_BYTES 96                 /* one chunk header */
#define DSV4_SNAP_TRAILER_BYTES 56
#define DSV4_SNAP_TRAILER_MAGIC "KV4TRAIL"
#define DSV4_SNAP_PART_MAX (4u << 20)            /* raw bytes per chunk the writer makes */
#define DSV4_SNAP_FLAGS_INCOMPAT 0x00ffu         /* none defined in 1.0 */

enum { DSV4_SNAP_TOKENS = 1, DSV4_SNAP_HIDDEN = 2, DSV4_SNAP_LAYER = 3 };

/* What a snapshot's header says. */
typedef struct dsv4_snap_info {
    uint16_t major, minor, flags;
    uint32_t header_bytes;
    int compact;                     /* 1 compact FP8/FP4 layout, 0 bf16 */
    int64_t n_tokens, n_mtp;
    int n_layers, n_all;             /* backbone layers; + MTP blocks */
    int64_t vocab_size, dim, hc_mult, window, head_dim, rope_dim, index_head_dim;
    uint32_t entry_bytes, ikey_bytes;
    uint8_t fingerprint[32];         /* the model's (dsv4-model(5)) */
    int ratios[DSV4_MAX_LAYERS];     /* per layer */
    int64_t n_ent[DSV4_MAX_LAYERS];  /* compressed entries per layer */
} dsv4_snap_info;

/* Sizes of one section (filled by the writer and the reader). */
typedef struct dsv4_snap_section {
    int kind, index;                 /* DSV4_SNAP_*; layer number for layers */
    int parts;                       /* chunks */
    uint64_t raw, frame;             /* payload bytes, compressed bytes (frames only) */
} dsv4_snap_section;

typedef struct dsv4_snap_stats {
    uint64_t header_bytes, chunk_header_bytes, trailer_bytes;
    uint64_t raw, frame;             /* sums over sections */
    uint64_t stream_bytes;           /* everything written or read */
    int n_sections;                  /* 2 + n_all */
    dsv4_snap_section sections[2 + DSV4_MAX_LAYERS];
} dsv4_snap_stats;

/* Called after each chunk with the bytes done and the total expected (raw
 * payload bytes); for progress lines.  May be NULL. */
typedef void (*dsv4_snap_progress_fn)(void *ctx, uint64_t done, uint64_t total);

typedef struct dsv4_snap_wopts {
    int level;                       /* zstd level; 0 = the default (1: FP8 codes gain little from more) */
    dsv4_snap_progress_fn progress;
    void *progress_ctx;
    const char *name;                /* for messages; NULL = "the snapshot" */
    int threads;                     /* chunks compressed and hashed at once; <= 1: one; the bytes
                                        written do not depend on it */
    uint32_t part_bytes;             /* payload bytes per chunk; 0 = DSV4_SNAP_PART_MAX (smaller
                                        values are for tests: any cut is valid) */
} dsv4_snap_wopts;

#define DSV4_SNAP_WOPTS_INIT { 0, NULL, NULL, NULL, 1, 0 }

/* Write state s (made for config c) to fd: tokens[s->n_tokens] are the ids
 * that built it, hidden[hc_mult * dim] the last position's residual streams
 * (required when s->n_tokens > 0; ignored otherwise), fingerprint the model's.
 * stats (may be NULL) receives the sizes.  Errors: DSV4_E_IO (names the
 * output), DSV4_E_INVALID (inconsistent arguments), DSV4_E_NOMEM. */
int dsv4_snap_write(int fd, const dsv4_config *c, const uint8_t fingerprint[32], const dsv4_kvstate *s,
                    const uint32_t *tokens, const float *hidden, const dsv4_snap_wopts *opts,
                    dsv4_snap_stats *stats, dsv4_err *err);

/* Bytes of layer l's payload in state s (the §9 compact layout, above). */
uint64_t dsv4_snap_layer_bytes(const dsv4_kvstate *s, int l);

/* A loaded snapshot.  Owns kv, tokens and hidden. */
typedef struct dsv4_snap {
    dsv4_snap_info info;
    dsv4_kvstate *kv;                /* NULL when read with load_state = 0 */
    uint32_t *tokens;                /* [info.n_tokens] */
    float *hidden;                   /* [hc_mult * dim], NULL when n_tokens == 0 */
} dsv4_snap;

#define DSV4_SNAP_INIT { { 0 }, NULL, NULL, NULL }

typedef struct dsv4_snap_ropts {
    const char *name;                /* "'chat.kv'" or "standard input": prefixes every message */
    const uint8_t *fingerprint;      /* the model's, or NULL: not checked */
    const dsv4_config *config;       /* the model's, or NULL: dimensions not checked */
    int load_state;                  /* 1: build the dsv4_kvstate; 0: verify and measure only */
    int want_eof;                    /* 1: bytes after the trailer are an error */
    dsv4_snap_progress_fn progress;
    void *progress_ctx;
    int threads;                     /* chunks verified and decompressed at once; <= 1: one */
} dsv4_snap_ropts;

#define DSV4_SNAP_ROPTS_INIT { NULL, NULL, NULL, 1, 0, NULL, NULL, 1 }

/* Read a whole snapshot from fd, checking everything on the way: signature,
 * version (DSV4_E_VERSION for an unknown major or incompatible flag), header
 * hash, the model fingerprint and dimensions against ropts (DSV4_E_MISMATCH,
 * checked right after the header, before any payload is read), each chunk's
 * order, sizes and both BLAKE2b (DSV4_E_CHECKSUM names the section), the
 * trailer (chunk count, length, stream hash) and the token ids (below
 * vocab_size).  A short stream is DSV4_E_TRUNCATED.  The reader never reads
 * past the trailer.  On error *out is released; stats (may be NULL) holds
 * the sections read until then. */
int dsv4_snap_read(int fd, const dsv4_snap_ropts *ropts, dsv4_snap *out, dsv4_snap_stats *stats,
                   dsv4_err *err);
void dsv4_snap_release(dsv4_snap *sn);

/* The part of a config a header determines (layers, ratios, dimensions; the
 * rest zero): what dsv4_kv_new needs to hold the snapshot's state. */
void dsv4_snap_info_config(const dsv4_snap_info *in, dsv4_config *c);

/* The layer payload of state s, bytes [off, off + n) into out (the exact
 * bytes the writer compresses; for tests and diffs). */
void dsv4_snap_layer_get(const dsv4_kvstate *s, int l, uint64_t off, uint64_t n, uint8_t *out);

/* "tokens", "hidden", "layer". */
const char *dsv4_snap_kind_name(int kind);

#endif
