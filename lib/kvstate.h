/* kvstate — the per-sequence decoding state of DeepSeek-V4 (spec/ARCH.md §9).
 *
 * Two layouts, chosen when the state is made, which also choose the KV
 * numerics of the engine:
 *
 * compact (QAT numerics, ARCH.md §3.5, §3.6): every stored KV vector (window ring slots and compressed entries) is
 * `entry_bytes` long: the rope_dim rope dims as bf16, then the other
 * head_dim - rope_dim dims as e4m3 codes, then one E8M0 exponent per 64 of
 * them, zero-padded to a multiple of 8 (584 bytes for V4's 512/64).  These
 * are exactly the values the reference keeps in bf16 after its FP8
 * simulation, so nothing is lost.  Indexer keys are packed e2m1 (low nibble
 * = even dim) plus one E8M0 per 32 dims (68 bytes for 128 dims).  Compressor
 * partial state is kept as the reference's f32 rows (§5.3).

 * bf16 (the numerics of the reference run that produced the fixtures, which
 * applies no FP8/FP4 simulation to stored KV and indexer vectors): entries
 * are head_dim bf16 values (1024 bytes), indexer keys index_head_dim bf16.
 *
 * Layers 0..n_layers-1 are the backbone; layer n_layers + k is MTP block k
 * (a sliding-window layer with its own position counter n_mtp).
 *
 * Ownership: a dsv4_kvstate owns all its buffers; free with dsv4_kv_free.
 * Not thread-safe: one forward call at a time per state. */
#ifndef DSV4_KVSTATE_H
#define DSV4_KVSTATE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"

typedef struct dsv4_kv_layer {
    int ratio;               /* 0 (window only), 4 (CSA + indexer) or 128 (HCA) */
    uint8_t *win;            /* [window][entry_bytes]; slot = position % window */
    uint8_t *ent;            /* compressed entries [cap][entry_bytes] */
    uint8_t *ikey;           /* indexer keys [cap][ikey_bytes] (ratio 4 only) */
    int64_t n_ent, cap;
    float *ckv, *csc;        /* main compressor rows [crows][cdim] (k and gate score) */
    int64_t crows, cdim;     /* ratio 4: 8 x 2*head_dim; ratio 128: 128 x head_dim */
    float *ikv, *isc;        /* indexer compressor rows [8][2*index_head_dim] */
} dsv4_kv_layer;

typedef struct dsv4_kvstate {
    int n_layers;            /* backbone layers (MTP blocks follow) */
    int n_all;               /* n_layers + MTP blocks */
    int compact;             /* 1: FP8/FP4 compact layout and QAT numerics; 0: bf16 */
    int64_t window, head_dim, rope_dim, index_head_dim;
    size_t entry_bytes, ikey_bytes;
    int64_t n_tokens;        /* positions consumed by the backbone */
    int64_t n_mtp;           /* positions consumed by the MTP block */
    dsv4_kv_layer *layers;   /* [n_all] */
} dsv4_kvstate;

/* Bytes of one stored KV vector and one indexer key in the layout. */
void dsv4_kv_sizes(const dsv4_config *c, int compact, size_t *entry_bytes, size_t *ikey_bytes);
/* Fill the shape fields of s (layer counts, dimensions, layout, entry and
 * key sizes) for the config; layers and counters are left alone. */
void dsv4_kv_shape(dsv4_kvstate *s, const dsv4_config *c, int compact);
/* A fresh state (no tokens; compressor rows kv = 0, score = -inf). */
int  dsv4_kv_new(dsv4_kvstate **out, const dsv4_config *c, int compact, dsv4_err *err);
void dsv4_kv_free(dsv4_kvstate *s);
/* Make room for n compressed entries in layer L. */
int  dsv4_kv_reserve(dsv4_kvstate *s, int layer, int64_t n, dsv4_err *err);

/* Encode x[head_dim] into out[entry_bytes]; compact states first FP8-simulate
 * x in place (ARCH.md §3.5 on the non-rope dims), bf16 states round it. */
void dsv4_kv_pack(const dsv4_kvstate *s, float *x, uint8_t *out);
void dsv4_kv_unpack(const dsv4_kvstate *s, const uint8_t *in, float *x);
/* Encode an indexer key x[index_head_dim] (compact: FP4-simulated in place, §3.6). */
void dsv4_ikey_pack(const dsv4_kvstate *s, float *x, uint8_t *out);
void dsv4_ikey_unpack(const dsv4_kvstate *s, const uint8_t *in, float *x);

/* Bytes the state holds now (window rings, entries, keys, compressor rows)
 * and the amortised bytes each further token adds (compressed entries and
 * indexer keys only; ARCH.md §9.1). */
uint64_t dsv4_kv_bytes(const dsv4_kvstate *s);
double   dsv4_kv_bytes_per_token(const dsv4_kvstate *s);

/* 1 when a and b hold the same state bit for bit. */
int dsv4_kv_equal(const dsv4_kvstate *a, const dsv4_kvstate *b);

#endif
