/* json — a strict JSON (RFC 8259) reader into an immutable tree, and a writer
 * whose output matches Python's json.dumps(..., ensure_ascii=False) for the
 * chat encoding (spec/DSML.md).
 *
 * Reader: rejects trailing commas, comments, NaN/Infinity, numbers beyond
 * the double range (1e400, which Python would read as inf), leading zeros,
 * control characters in strings, invalid UTF-8 (overlongs, surrogates encoded
 * in UTF-8, > U+10FFFF), lone surrogate escapes are kept as WTF-8 only if
 * DSV4_JSON_ALLOW_LONE_SURROGATES is passed, otherwise rejected; nesting
 * deeper than 512; duplicate keys are kept (lookup returns the last one, as
 * Python does).  Errors give "line L, column C: what" (1-based, column in
 * bytes).
 *
 * Ownership: dsv4_json_parse returns a tree owned by the caller, freed with
 * dsv4_json_free; every node, key and string inside it belongs to the tree.
 * The input text is only borrowed during the call.  Trees are immutable after
 * parsing and safe to read from several threads. */
#ifndef DSV4_JSON_H
#define DSV4_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

typedef enum dsv4_json_type {
    DSV4_JSON_NULL, DSV4_JSON_FALSE, DSV4_JSON_TRUE,
    DSV4_JSON_NUMBER, DSV4_JSON_STRING, DSV4_JSON_ARRAY, DSV4_JSON_OBJECT
} dsv4_json_type;

typedef struct dsv4_json dsv4_json;
struct dsv4_json {
    dsv4_json_type type;
    size_t len;          /* STRING: bytes (may contain NUL); ARRAY/OBJECT: element count */
    char *str;           /* STRING: the decoded UTF-8, NUL-terminated;
                            NUMBER: the literal as written in the input */
    double num;          /* NUMBER: strtod of the literal */
    int is_int;          /* NUMBER: literal has no fraction and no exponent */
    dsv4_json *items;    /* ARRAY/OBJECT: len values, in document order */
    char **keys;         /* OBJECT: len keys (NUL-terminated UTF-8) */
    size_t *key_lens;    /* OBJECT: byte length of each key */
    int line, col;       /* where the value starts in the input (1-based) */
};

#define DSV4_JSON_ALLOW_LONE_SURROGATES 1u

int  dsv4_json_parse(dsv4_json **out, const char *text, size_t len, unsigned flags, dsv4_err *err);
void dsv4_json_free(dsv4_json *j);

/* Lookup helpers: NULL when j is not an object/array or the item is absent. */
const dsv4_json *dsv4_json_get(const dsv4_json *obj, const char *key);
const dsv4_json *dsv4_json_at(const dsv4_json *arr, size_t i);
/* Typed getters for config-style objects: return 0 and set *v, or
 * DSV4_E_NOTFOUND (absent) / DSV4_E_FORMAT (wrong type, or not an integer /
 * out of range for the _i64 variant), with a message naming the key. */
int dsv4_json_get_i64(const dsv4_json *obj, const char *key, int64_t *v, dsv4_err *err);
int dsv4_json_get_f64(const dsv4_json *obj, const char *key, double *v, dsv4_err *err);
int dsv4_json_get_bool(const dsv4_json *obj, const char *key, int *v, dsv4_err *err);
/* Borrowed string; valid as long as the tree. */
int dsv4_json_get_str(const dsv4_json *obj, const char *key, const char **v, dsv4_err *err);

/* "null", "a boolean", "a number", "a string", "an array", "an object" (for
 * messages such as "expected a string, got a number"). */
const char *dsv4_json_type_name(dsv4_json_type t);

/* Writer.  Python-compatible serialisation of a tree:
 *   item_sep / key_sep: ", " and ": " for json.dumps defaults, "," and ":"
 *   for separators=(',', ':');  indent < 0: single line, else pretty with
 *   that many spaces.  Strings escape exactly what Python escapes with
 *   ensure_ascii=False (", \, \n, \r, \t, \b, \f, other C0 controls as
 *   \u00XX; everything else raw UTF-8).  Numbers: integers printed as
 *   Python prints ints; other numbers as Python's float repr (shortest
 *   round-trip, "1e-05", "1e+16", "100.0").  Appends to out. */
void dsv4_json_write(dsv4_buf *out, const dsv4_json *j, int indent,
                     const char *item_sep, const char *key_sep);
/* Append s[0..n) as a JSON string literal (with quotes), Python-style. */
void dsv4_json_write_str(dsv4_buf *out, const char *s, size_t n);
/* Append a double as Python's repr(float) would print it. */
void dsv4_json_write_f64(dsv4_buf *out, double v);

/* UTF-8 validation shared by the tokenizer and the JSON reader: returns the
 * byte offset of the first invalid sequence, or n when s[0..n) is valid. */
size_t dsv4_utf8_valid_prefix(const char *s, size_t n);
/* 0 when s[0..n) is valid UTF-8, else DSV4_E_FORMAT with "line L, column C:
 * invalid UTF-8 (byte offset B)" (1-based; column in bytes). */
int dsv4_utf8_check(const char *s, size_t n, dsv4_err *err);

#endif
