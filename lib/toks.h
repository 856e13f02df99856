/* toks — token streams, the format the programs pass token ids in
 * (format: dsv4-tokens(5), man/dsv4-tokens.5; the man page is normative).
 *
 * Binary variant: a 56-byte header (version 1.0) then little-endian u32 ids
 * until end of input, so a writer can emit ids one at a time into a pipe and
 * a reader can consume them as they arrive:
 *
 *   off size field
 *     0    8 signature 89 'T' 'K' '4' 0D 0A 1A 0A
 *     8    2 major version (1)        10  2 minor version (0)
 *    12    2 flags (bits 0-7 incompatible: reader must know them; 8-15 ignorable)
 *    14    2 reserved, written as 0, ignored
 *    16    4 header_bytes (56 in 1.0; readers skip any tail they do not know)
 *    20    4 vocab_size (0 = unknown)
 *    24   32 tokenizer fingerprint, BLAKE2b-256 of tokenizer.json (zero = unknown)
 *    56    . ids, 4 bytes each; a length after the header that is not a
 *            multiple of 4 is a truncated stream (an error)
 *
 * Text variant: decimal ids separated by ASCII whitespace (the writer puts
 * one per line); no header, no fingerprint.  Readers detect the variant from
 * the first byte: 0x89 = binary, whitespace or a digit = text (an empty input
 * is an empty text stream), anything else is an error.
 *
 * I/O is on file descriptors, not FILE*: a stdio stream would buffer ahead
 * and, on a pipe, wait for a full buffer.  Callers holding a FILE* pass
 * fileno(f) before reading from it (or after fflush(f) before writing).
 * Reads and writes retry on EINTR, finish short writes, and wait with poll(2)
 * on a non-blocking descriptor.
 *
 * Ownership: readers and writers borrow their fd (never closed here) and own
 * their buffers; a dsv4_toks_vec owns its array.  Pointer arguments are
 * borrowed for the call only unless noted.  Not thread-safe: one reader or
 * writer belongs to one thread at a time.  Errors: every fallible function
 * returns 0 (or a count, where stated) or a negative DSV4_E_* and fills err. */
#ifndef DSV4_TOKS_H
#define DSV4_TOKS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define DSV4_TOKS_MAGIC "\x89TK4\r\n\x1a\n"   /* 8 bytes, no NUL */
#define DSV4_TOKS_MAGIC_BYTES 8
#define DSV4_TOKS_HEADER_BYTES 56           /* what this version writes; the minimum readable */
#define DSV4_TOKS_HEADER_MAX (1u << 20)     /* larger header_bytes values are refused */
#define DSV4_TOKS_FP_BYTES 32
#define DSV4_TOKS_FLAGS_INCOMPAT 0x00ffu    /* no flag is defined in 1.0 */

enum { DSV4_TOKS_BIN = 0, DSV4_TOKS_TEXT = 1 };

/* When the writer hands its buffer to write(2). */
enum {
    DSV4_TOKS_FLUSH_AUTO = 0,   /* EACH when the fd is a pipe, socket or terminal, else BUFFERED */
    DSV4_TOKS_FLUSH_EACH,       /* after the header and after every put call */
    DSV4_TOKS_FLUSH_BUFFERED    /* when the buffer fills, on flush and on finish */
};

/* What a stream's header says (text streams: format only, the rest zero). */
typedef struct dsv4_toks_info {
    int format;                              /* DSV4_TOKS_BIN or DSV4_TOKS_TEXT */
    uint16_t major, minor, flags;
    uint32_t header_bytes;
    uint32_t vocab_size;                     /* from the header; 0 = unknown */
    int has_fingerprint;                     /* 1 when the fingerprint is not all zero */
    uint8_t fingerprint[DSV4_TOKS_FP_BYTES];
} dsv4_toks_info;

/* A growable array of ids.  Owns ids (free with dsv4_toks_vec_release). */
typedef struct dsv4_toks_vec {
    uint32_t *ids;
    size_t n, cap;
} dsv4_toks_vec;

#define DSV4_TOKS_VEC_INIT { NULL, 0, 0 }

int  dsv4_toks_vec_reserve(dsv4_toks_vec *v, size_t extra);         /* 0 or DSV4_E_NOMEM */
int  dsv4_toks_vec_push(dsv4_toks_vec *v, uint32_t id);             /* 0 or DSV4_E_NOMEM */
void dsv4_toks_vec_release(dsv4_toks_vec *v);                       /* frees, leaves it empty */

/* ---- fingerprints ---- */

/* BLAKE2b-256 (libsodium crypto_generichash, no key) of the tokenizer.json
 * bytes exactly as stored.  Returns 0 or DSV4_E_BUG if libsodium fails. */
int  dsv4_toks_fingerprint(const void *tokenizer_json, size_t len, uint8_t out[DSV4_TOKS_FP_BYTES],
                           dsv4_err *err);
/* 1 when fp is non-NULL and not all zero. */
int  dsv4_toks_fingerprint_known(const uint8_t *fp);
/* Lowercase hex, NUL-terminated; all zeros for NULL. */
void dsv4_toks_fingerprint_hex(const uint8_t *fp, char out[2 * DSV4_TOKS_FP_BYTES + 1]);
/* 0 when either side is NULL or zero (unknown) or both are equal; otherwise
 * DSV4_E_MISMATCH with a message that shows both fingerprints. */
int  dsv4_toks_check_fingerprint(const uint8_t *expected, const uint8_t *got, dsv4_err *err);

/* ---- header (for tools that hold the bytes already, and for fuzzing) ---- */

/* Encode a 1.0 header from info (format, major, minor, header_bytes ignored;
 * flags, vocab_size, fingerprint used) into out. */
void dsv4_toks_header_encode(uint8_t out[DSV4_TOKS_HEADER_BYTES], const dsv4_toks_info *info);
/* Parse and validate a binary header from p[0..n): the signature and the
 * first 56 bytes (a newer minor's longer tail is not inspected; skip to
 * info->header_bytes).  Returns 0, DSV4_E_TRUNCATED (n too short; *need, if
 * non-NULL, is the header's size, 56 until header_bytes is readable),
 * DSV4_E_FORMAT or DSV4_E_VERSION.  info may be NULL. */
int  dsv4_toks_header_parse(const void *p, size_t n, dsv4_toks_info *info, size_t *need, dsv4_err *err);

/* ---- writer ---- */

typedef struct dsv4_toks_writer dsv4_toks_writer;

typedef struct dsv4_toks_wopts {
    int format;                  /* DSV4_TOKS_BIN (default) or DSV4_TOKS_TEXT */
    const uint8_t *fingerprint;  /* 32 bytes, copied; NULL = unknown; not written in text */
    uint32_t vocab_size;         /* 0 = unknown; else written and puts of ids >= it fail */
    int flush;                   /* DSV4_TOKS_FLUSH_* */
    const char *name;            /* for messages ("'out.tok': ..."), copied; NULL = none */
} dsv4_toks_wopts;

#define DSV4_TOKS_WOPTS_INIT { DSV4_TOKS_BIN, NULL, 0, DSV4_TOKS_FLUSH_AUTO, NULL }

/* Start a stream on fd (borrowed).  The binary header is queued at once and,
 * unless buffered, written before this returns, so a reader at the other end
 * of a pipe can check it before the first id.  opts NULL = defaults. */
int  dsv4_toks_writer_open(dsv4_toks_writer **out, int fd, const dsv4_toks_wopts *opts, dsv4_err *err);
/* Append one / n ids.  DSV4_E_RANGE (nothing of this call written) when an id
 * is >= the vocab size; DSV4_E_IO on a write error (the writer then stays
 * failed); DSV4_E_INVALID after finish. */
int  dsv4_toks_put(dsv4_toks_writer *w, uint32_t id, dsv4_err *err);
int  dsv4_toks_put_n(dsv4_toks_writer *w, const uint32_t *ids, size_t n, dsv4_err *err);
/* Write everything queued. */
int  dsv4_toks_flush(dsv4_toks_writer *w, dsv4_err *err);
/* Flush and end the stream (nothing follows the ids; the fd stays open).
 * Calling it again is a no-op. */
int  dsv4_toks_finish(dsv4_toks_writer *w, dsv4_err *err);
uint64_t dsv4_toks_writer_count(const dsv4_toks_writer *w);          /* ids accepted so far */
/* Free the writer; queued bytes not yet flushed are dropped (call finish
 * first).  NULL is a no-op. */
void dsv4_toks_writer_close(dsv4_toks_writer *w);

/* ---- reader ---- */

typedef struct dsv4_toks_reader dsv4_toks_reader;

/* Detect the variant and, for binary, read and validate the header (blocks
 * until it is complete).  fd is borrowed.  name (copied; NULL = none) prefixes
 * messages.  vocab_size (0 = no limit) bounds every id; a binary header's
 * own non-zero vocab_size bounds them too.  Errors: DSV4_E_FORMAT (neither
 * variant, bad signature), DSV4_E_TRUNCATED, DSV4_E_VERSION, DSV4_E_IO. */
int  dsv4_toks_reader_open(dsv4_toks_reader **out, int fd, const char *name, uint32_t vocab_size,
                           dsv4_err *err);
/* Borrowed from the reader, valid until close. */
const dsv4_toks_info *dsv4_toks_reader_info(const dsv4_toks_reader *r);
uint64_t dsv4_toks_reader_count(const dsv4_toks_reader *r);          /* ids returned so far */

/* Read up to cap ids into ids.  Returns as soon as at least one id is
 * available (it does not wait for cap), so ids flow through a pipe one by
 * one.  *n = 0 means end of stream.  Errors: DSV4_E_TRUNCATED (input ends
 * inside a binary id), DSV4_E_FORMAT (junk in text; message names line,
 * column and the text), DSV4_E_RANGE (id does not fit in u32 or is >= the
 * vocab size), DSV4_E_IO.  On error *n still counts the good ids stored
 * before the bad one; after an error the reader keeps failing. */
int  dsv4_toks_read(dsv4_toks_reader *r, uint32_t *ids, size_t cap, size_t *n, dsv4_err *err);
/* One id: returns 1 (stored in *id), 0 at end of stream, or a DSV4_E_*. */
int  dsv4_toks_next(dsv4_toks_reader *r, uint32_t *id, dsv4_err *err);
/* Append every remaining id to v.  max_ids (0 = no limit) caps v->n after
 * the call: more is DSV4_E_RANGE.  On error v keeps the ids read so far. */
int  dsv4_toks_read_all(dsv4_toks_reader *r, dsv4_toks_vec *v, size_t max_ids, dsv4_err *err);
void dsv4_toks_reader_close(dsv4_toks_reader *r);                   /* NULL is a no-op */

/* open + read_all + close.  info may be NULL. */
int  dsv4_toks_load(int fd, const char *name, uint32_t vocab_size, size_t max_ids, dsv4_toks_vec *v,
                    dsv4_toks_info *info, dsv4_err *err);

/* "binary" / "text". */
const char *dsv4_toks_format_name(int format);

#endif
