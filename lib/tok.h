/* tok — the DeepSeek-V3/V4 byte-level BPE tokenizer, loaded from a Hugging
 * Face tokenizer.json and matching HF `tokenizers` id for id (spec/DSML.md §5).
 *
 * Encoding (dsv4_tok_encode), as HF does it with add_special_tokens=False:
 *  1. added tokens first: leftmost-longest match of their spellings, first
 *     the non-normalized ones (the special tokens and a few others), then the
 *     normalized ones in the text left between them;
 *  2. the pre-tokenizer splits the rest (\p{N}{1,3}; CJK runs; the
 *     punctuation/letters/whitespace pattern), hand-written in tok_pre.c with
 *     Unicode 16.0.0 tables (lib/unicode.h);
 *  3. bytes map to GPT-2's byte-level alphabet and BPE merges by rank.
 * No BOS/EOS is added.  Only the pre-tokenizer of DeepSeek-V3/V4 is
 * implemented: dsv4_tok_load refuses a tokenizer.json with another one.
 *
 * Invalid UTF-8: HF can only take a valid string, so by default each invalid
 * sequence (maximal subpart, as Python's errors="replace") is first replaced
 * with U+FFFD, which gives exactly HF's ids for the lossily decoded text.
 * With DSV4_TOK_RAW_BYTES the bytes are kept instead (one pre-tokenizer
 * "character" of category Cn each subpart) and decode gives them back, so
 * decode(encode(x)) == x for any bytes, given added tokens that decode to
 * their own text, as all of V4's do (HF's ByteLevel decoder, which decode
 * follows, maps an added token made only of byte-level characters, such as
 * "a\u00b0", through the byte table like any other token).
 *
 * Thread-safety: a loaded dsv4_tok is immutable; any number of threads may
 * encode and decode with it at once.  A dsv4_tok_stream belongs to one
 * thread.  Ownership: the tokenizer.json text is borrowed during the load
 * only; dsv4_tok_free frees everything the tokenizer owns; strings returned
 * by dsv4_tok_token/dsv4_tok_bytes belong to the tokenizer. */
#ifndef DSV4_TOK_H
#define DSV4_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

typedef struct dsv4_tok dsv4_tok;

#define DSV4_TOK_FINGERPRINT_BYTES 32

/* Encode flags. */
#define DSV4_TOK_NO_ADDED    1u  /* added-token spellings are plain text (BPE), never their ids
                                    ("safe" mode of spec/DSML.md §2.11) */
#define DSV4_TOK_RAW_BYTES   2u  /* keep invalid UTF-8 bytes (lossless) instead of U+FFFD */
/* Decode flags. */
#define DSV4_TOK_SKIP_SPECIAL 4u /* drop ids of added tokens marked special (BOS, EOS, pad,
                                    placeholders; not <think>, <｜User｜>, ｜DSML｜ …) */
#define DSV4_TOK_LOSSY       8u  /* replace invalid UTF-8 in the output by U+FFFD, as HF's
                                    decode does; without it the raw bytes come out */

/* A growable id vector; encode appends to it.  Owns v (release frees it). */
typedef struct dsv4_tok_ids {
    uint32_t *v;
    size_t n, cap;
} dsv4_tok_ids;
#define DSV4_TOK_IDS_INIT { NULL, 0, 0 }
void dsv4_tok_ids_release(dsv4_tok_ids *ids);
int  dsv4_tok_ids_push(dsv4_tok_ids *ids, uint32_t id);   /* 0 or DSV4_E_NOMEM */

/* Load from the bytes of a tokenizer.json (borrowed).  Errors: DSV4_E_FORMAT
 * (bad JSON, missing fields, merge of unknown tokens, a byte with no token),
 * DSV4_E_UNSUPPORTED (another model type, pre-tokenizer or decoder, added
 * tokens with lstrip, rstrip or single_word),
 * DSV4_E_NOMEM. */
int  dsv4_tok_load(dsv4_tok **out, const char *json, size_t len, dsv4_err *err);
/* Same, reading the file at path (DSV4_E_IO when it cannot be read). */
int  dsv4_tok_load_file(dsv4_tok **out, const char *path, dsv4_err *err);
void dsv4_tok_free(dsv4_tok *t);

/* Number of ids: max id + 1 (129,280 for V4; config.json's vocab_size). */
size_t dsv4_tok_vocab_size(const dsv4_tok *t);
/* BLAKE2b-256 of the tokenizer.json bytes it was loaded from: the
 * fingerprint of lib/toks.h (dsv4_toks_fingerprint). */
const uint8_t *dsv4_tok_fingerprint(const dsv4_tok *t);
/* Id of a token string, as HF token_to_id: an added token's content (e.g.
 * "<｜User｜>") or a vocab entry in byte-level spelling ("Ġthe"); -1 if none. */
int64_t dsv4_tok_id(const dsv4_tok *t, const char *s);
/* HF id_to_token: the token string of id (NUL-terminated, byte-level for
 * vocab entries), *len set when len is not NULL; NULL for an unknown id. */
const char *dsv4_tok_token(const dsv4_tok *t, uint32_t id, size_t *len);
/* The bytes id decodes to (not NUL-terminated); NULL for an unknown id. */
const char *dsv4_tok_bytes(const dsv4_tok *t, uint32_t id, size_t *len);
/* 1 for an added token (2 when it is also marked special), 0 for a plain
 * vocab id, -1 for an unknown id. */
int  dsv4_tok_is_added(const dsv4_tok *t, uint32_t id);

/* Encode text[0..len) with flags (DSV4_TOK_NO_ADDED, DSV4_TOK_RAW_BYTES),
 * appending the ids to *out; nothing is appended on failure.  Errors:
 * DSV4_E_NOMEM, DSV4_E_INVALID (flags). */
int  dsv4_tok_encode(const dsv4_tok *t, const char *text, size_t len, unsigned flags,
                     dsv4_tok_ids *out, dsv4_err *err);

/* Decode ids[0..n) with flags (DSV4_TOK_SKIP_SPECIAL, DSV4_TOK_LOSSY),
 * appending to *out; nothing is appended on failure.  An unknown id is
 * DSV4_E_RANGE (HF would skip it); other errors DSV4_E_NOMEM and
 * DSV4_E_INVALID (flags). */
int  dsv4_tok_decode(const dsv4_tok *t, const uint32_t *ids, size_t n, unsigned flags,
                     dsv4_buf *out, dsv4_err *err);

/* The pre-tokenizer alone (for tests and tools): calls piece(ctx, s, n,
 * id) for each piece in order, id >= 0 for an added-token match, -1 for
 * text that goes to BPE.  s points into text, or into a U+FFFD-substituted
 * copy when text is not valid UTF-8 (without DSV4_TOK_RAW_BYTES).  A
 * non-zero return from piece stops the walk and is returned. */
typedef int (*dsv4_tok_piece_fn)(void *ctx, const char *s, size_t n, int64_t id);
int  dsv4_tok_split(const dsv4_tok *t, const char *text, size_t len, unsigned flags,
                    dsv4_tok_piece_fn piece, void *ctx, dsv4_err *err);

/* Streaming decode: feed one id at a time and get the bytes that are
 * complete so far.  An incomplete UTF-8 sequence at the end (at most 3 bytes)
 * is held back until the next id completes it; bytes that can never become
 * valid are passed on at once (as U+FFFD with DSV4_TOK_LOSSY).  The
 * concatenated output of all feeds plus finish equals dsv4_tok_decode of the
 * same ids with the same flags.  The stream borrows (keeps) tok. */
typedef struct dsv4_tok_stream {
    const dsv4_tok *tok;
    unsigned flags;
    unsigned char pend[4];
    size_t npend;
} dsv4_tok_stream;
void dsv4_tok_stream_init(dsv4_tok_stream *s, const dsv4_tok *t, unsigned flags);
/* Append the newly complete bytes to *out; DSV4_E_RANGE for an unknown id. */
int  dsv4_tok_stream_feed(dsv4_tok_stream *s, uint32_t id, dsv4_buf *out, dsv4_err *err);
/* Flush what is held back (an unfinished sequence; U+FFFD with LOSSY) and
 * reset the stream for reuse. */
void dsv4_tok_stream_finish(dsv4_tok_stream *s, dsv4_buf *out);

#endif
