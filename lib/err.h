/* err — the one error convention of lib/.
 *
 * Every fallible function returns int: 0 on success, a negative DSV4_E_* on
 * failure, and fills a caller-supplied dsv4_err with the code and a message
 * that names the file/tensor/position and what is wrong.  lib/ never prints
 * and never exits.  The numbers are part of the ABI: never renumber them.
 * Thread-safety: a dsv4_err belongs to one thread at a time. */
#ifndef DSV4_ERR_H
#define DSV4_ERR_H

#include <stdarg.h>

enum {
    DSV4_OK           = 0,
    DSV4_E_NOMEM      = -1,  /* allocation failed */
    DSV4_E_IO         = -2,  /* read/write/open/mmap failed (errno text in msg) */
    DSV4_E_FORMAT     = -3,  /* malformed input: bad magic, bad header, bad JSON */
    DSV4_E_CHECKSUM   = -4,  /* checksum mismatch */
    DSV4_E_TRUNCATED  = -5,  /* input ends early */
    DSV4_E_VERSION    = -6,  /* unknown major version or incompatible feature */
    DSV4_E_INVALID    = -7,  /* invalid argument or option value */
    DSV4_E_NOTFOUND   = -8,  /* named item (tensor, key, file) does not exist */
    DSV4_E_UNSUPPORTED= -9,  /* valid but not supported by this build */
    DSV4_E_MISMATCH   = -10, /* input belongs to another model/tokenizer, or shape/dtype mismatch */
    DSV4_E_CUDA       = -11, /* CUDA runtime error */
    DSV4_E_RANGE      = -12, /* value out of the allowed range */
    DSV4_E_BUG        = -13  /* broken internal invariant */
};

typedef struct dsv4_err {
    int code;
    char msg[256];
} dsv4_err;

#define DSV4_ERR_INIT { 0, { 0 } }

/* Fill err (may be NULL) with code and a printf-style message; returns code so
 * callers can write `return dsv4_err_set(err, DSV4_E_IO, "...")`. */
int dsv4_err_set(dsv4_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int dsv4_err_vset(dsv4_err *err, int code, const char *fmt, va_list ap);

/* Prepend "prefix: " to an already set message (keeps the code); returns the code. */
int dsv4_err_prefix(dsv4_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Fixed English text for a code ("checksum mismatch"); never NULL. */
const char *dsv4_strerror(int code);

#endif
