/* json — strict RFC 8259 reader and Python-compatible writer (see json.h).
 *
 * The reader is iterative: an explicit frame stack bounded by DEPTH_MAX, and
 * a value stack holding the finished children of every open container.  When
 * a container closes, its children are copied once into a bump arena as one
 * contiguous array, so a document costs a handful of mallocs however many
 * nodes it has (tokenizer.json has ~500k).  Numbers assume the "C" locale for
 * LC_NUMERIC (strtod, snprintf), as the rest of lib/ does. */
#include "json.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEPTH_MAX 512

/* ---- UTF-8 ---------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when it is invalid:
 * stray continuation, overlong (C0, C1, E0 80..9F, F0 80..8F), an encoded
 * surrogate (ED A0..BF), > U+10FFFF (F4 90.., F5..FF) or truncated at e. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *e)
{
    unsigned c = p[0], lo = 0x80, hi = 0xBF;
    size_t n, i;
    if (c < 0x80)
        return 1;
    if (c < 0xC2)
        return 0;
    if (c < 0xE0) {
        n = 2;
    } else if (c < 0xF0) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c < 0xF5) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if ((size_t)(e - p) < n || p[1] < lo || p[1] > hi)
        return 0;
    for (i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

size_t dsv4_utf8_valid_prefix(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (p < e) {
        size_t k;
        if (*p < 0x80) {
            p++;
            continue;
        }
        if (!(k = utf8_seq(p, e)))
            break;
        p += k;
    }
    return (size_t)(p - (const unsigned char *)s);
}

/* ---- arena ---------------------------------------------------------------- */

typedef struct block {
    struct block *next;
    size_t used, cap;
} block;

/* Keep the data 16-byte aligned after the header. */
#define BLOCK_HDR ((sizeof(block) + 15) & ~(size_t)15)
#define BLOCK_MIN ((size_t)16 << 10)
#define BLOCK_MAX ((size_t)4 << 20)

typedef struct arena {
    block *head;     /* every block, for freeing */
    block *cur;      /* the block being bumped */
    size_t next_cap;
} arena;

static void arena_free(block *b)
{
    while (b) {
        block *n = b->next;
        free(b);
        b = n;
    }
}

static void *arena_alloc(arena *a, size_t n)
{
    block *b;
    n = (n + 7) & ~(size_t)7;          /* nodes hold pointers and doubles */
    if (a->cur && a->cur->cap - a->cur->used >= n) {
        b = a->cur;
    } else {
        size_t cap = a->next_cap ? a->next_cap : BLOCK_MIN;
        if (n > SIZE_MAX / 2)
            return NULL;
        if (cap < BLOCK_MAX)
            a->next_cap = cap * 2;
        /* A big request gets its own block so the current one stays in use. */
        int own = n > cap / 2;
        if (own)
            cap = n;
        b = malloc(BLOCK_HDR + cap);
        if (!b)
            return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = a->head;
        a->head = b;
        if (!own || !a->cur)
            a->cur = b;
    }
    b->used += n;
    return (char *)b + BLOCK_HDR + b->used - n;
}

/* Give back the unused end of the last allocation p (of n bytes) when it is
 * still on top of the current block: strings are allocated at their raw
 * length and shrink when escapes are decoded. */
static void arena_trim(arena *a, void *p, size_t n, size_t used)
{
    block *b = a->cur;
    n = (n + 7) & ~(size_t)7;
    used = (used + 7) & ~(size_t)7;
    if (b && (char *)p + n == (char *)b + BLOCK_HDR + b->used)
        b->used -= n - used;
}

/* The caller's handle: root sits inside the struct that owns the arena. */
typedef struct tree {
    block *blocks;
    dsv4_json root;
} tree;

/* ---- reader --------------------------------------------------------------- */

typedef struct frame {
    size_t first_val, first_key;   /* where this container's children start */
    int is_obj, line, col;
} frame;

typedef struct key {
    char *s;
    size_t n;
} key;

typedef struct parser {
    const unsigned char *p, *end, *line_start;
    int line;
    unsigned flags;
    dsv4_err *err;
    arena a;
    dsv4_json *vals;
    size_t nvals, capvals;
    key *keys;
    size_t nkeys, capkeys;
    frame frames[DEPTH_MAX];
} parser;

/* Every position inside a token is on the current line: raw newlines only
 * appear in whitespace, which updates line/line_start. */
static int colof(const parser *ps, const unsigned char *at)
{
    size_t c = (size_t)(at - ps->line_start) + 1;
    return c > 0x7fffffff ? 0x7fffffff : (int)c;
}

__attribute__((format(printf, 3, 4)))
static int fail(parser *ps, const unsigned char *at, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return dsv4_err_set(ps->err, DSV4_E_FORMAT, "line %d, column %d: %s",
                        ps->line, colof(ps, at), what);
}

static int nomem(parser *ps)
{
    return dsv4_err_set(ps->err, DSV4_E_NOMEM, "line %d: out of memory parsing JSON", ps->line);
}

/* Describe the byte at `at` for a message: 'x' or byte 0xNN or end of input. */
static const char *show(const parser *ps, const unsigned char *at, char buf[16])
{
    if (at >= ps->end)
        return "end of input";
    if (*at > 0x20 && *at < 0x7f)
        snprintf(buf, 16, "'%c'", *at);
    else
        snprintf(buf, 16, "byte 0x%02x", *at);
    return buf;
}

static void skip_ws(parser *ps)
{
    const unsigned char *p = ps->p, *e = ps->end;
    while (p < e) {
        if (*p == ' ' || *p == '\t' || *p == '\r') {
            p++;
        } else if (*p == '\n') {
            ps->line++;
            ps->line_start = ++p;
        } else {
            break;
        }
    }
    ps->p = p;
}

static int hex4(const unsigned char *q, const unsigned char *stop, unsigned *v)
{
    unsigned r = 0;
    if (stop - q < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        unsigned c = q[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        r = r << 4 | d;
    }
    *v = r;
    return 0;
}

static char *put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {   /* also lone surrogates, as WTF-8 */
        *o++ = (char)(0xE0 | cp >> 12);
        *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | cp >> 18);
        *o++ = (char)(0x80 | (cp >> 12 & 0x3F));
        *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

/* ps->p is at the opening quote.  Pass 1 only finds the closing quote, which
 * bounds the decoded size; pass 2 decodes and validates in document order so
 * the first error in the string is the one reported. */
static int parse_string(parser *ps, char **out, size_t *outlen)
{
    const unsigned char *open = ps->p, *q = open + 1, *e = ps->end, *stop;
    char *dst, *o;
    size_t cap;
    while (q < e && *q != '"') {
        if (*q == '\\' && e - q >= 2)
            q++;
        q++;
    }
    stop = q < e ? q : e;
    cap = (size_t)(stop - open - 1) + 1;
    if (!(dst = arena_alloc(&ps->a, cap)))
        return nomem(ps);
    o = dst;
    q = open + 1;
    while (q < stop) {
        unsigned c = *q, cp, lo;
        if (c >= 0x20 && c < 0x80 && c != '\\') {
            *o++ = (char)c;
            q++;
            continue;
        }
        if (c < 0x20)
            return fail(ps, q, "control character 0x%02x in string (must be escaped)", c);
        if (c >= 0x80) {
            size_t k = utf8_seq(q, stop);
            if (!k)
                return fail(ps, q, "invalid UTF-8 in string");
            memcpy(o, q, k);
            o += k;
            q += k;
            continue;
        }
        if (stop - q < 2)
            break;   /* backslash at end of input: unterminated */
        switch (q[1]) {
        case '"':  *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/':  *o++ = '/'; break;
        case 'b':  *o++ = '\b'; break;
        case 'f':  *o++ = '\f'; break;
        case 'n':  *o++ = '\n'; break;
        case 'r':  *o++ = '\r'; break;
        case 't':  *o++ = '\t'; break;
        case 'u':
            if (hex4(q + 2, stop, &cp))
                return fail(ps, q, "invalid \\u escape (need 4 hex digits)");
            if (cp >= 0xD800 && cp <= 0xDBFF && stop - q >= 12 && q[6] == '\\' && q[7] == 'u' &&
                !hex4(q + 8, stop, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
                o = put_utf8(o, 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00));
                q += 12;
                continue;
            }
            if (cp >= 0xD800 && cp <= 0xDFFF && !(ps->flags & DSV4_JSON_ALLOW_LONE_SURROGATES))
                return fail(ps, q, "lone surrogate \\u%04x in string", cp);
            o = put_utf8(o, cp);
            q += 6;
            continue;
        default: {
            char b[16];
            return fail(ps, q, "invalid escape: backslash followed by %s", show(ps, q + 1, b));
        }
        }
        q += 2;
    }
    if (stop >= e)
        return fail(ps, open, "unterminated string");
    *o = 0;
    *outlen = (size_t)(o - dst);
    *out = dst;
    arena_trim(&ps->a, dst, cap, *outlen + 1);
    ps->p = stop + 1;
    return 0;
}

static int isdig(const unsigned char *q, const unsigned char *e) { return q < e && *q >= '0' && *q <= '9'; }

static int parse_number(parser *ps, dsv4_json *v)
{
    const unsigned char *s = ps->p, *q = s, *e = ps->end;
    size_t n;
    if (*q == '-')
        q++;
    if (!isdig(q, e))
        return fail(ps, q, q == s ? "expected a value" : "expected a digit after '-'");
    if (*q == '0') {
        if (isdig(q + 1, e))
            return fail(ps, q, "leading zero in number");
        q++;
    } else {
        while (isdig(q, e))
            q++;
    }
    v->is_int = 1;
    if (q < e && *q == '.') {
        if (!isdig(++q, e))
            return fail(ps, q, "expected a digit after '.'");
        while (isdig(q, e))
            q++;
        v->is_int = 0;
    }
    if (q < e && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < e && (*q == '+' || *q == '-'))
            q++;
        if (!isdig(q, e))
            return fail(ps, q, "expected a digit in exponent");
        while (isdig(q, e))
            q++;
        v->is_int = 0;
    }
    n = (size_t)(q - s);
    if (!(v->str = arena_alloc(&ps->a, n + 1)))
        return nomem(ps);
    memcpy(v->str, s, n);
    v->str[n] = 0;
    v->len = n;
    /* Up to 15 digits an integer is exact in a double: skip strtod, which
     * dominates on tokenizer.json's vocab ids. */
    if (v->is_int && n - (*s == '-') <= 15) {
        double d = 0;
        for (const unsigned char *t = s + (*s == '-'); t < q; t++)
            d = d * 10 + (*t - '0');
        v->num = *s == '-' ? -d : d;
    } else {
        v->num = strtod(v->str, NULL);   /* underflow gives 0 or a subnormal, as in Python */
        /* Overflow would give +-inf, which the writer can only print as
         * the non-JSON "Infinity": refuse it like the Infinity literal. */
        if (isinf(v->num))
            return fail(ps, s, "number out of range (beyond +-1.8e308)");
    }
    v->type = DSV4_JSON_NUMBER;
    ps->p = q;
    return 0;
}

static int parse_scalar(parser *ps, dsv4_json *v)
{
    static const struct { const char *lit; size_t n; dsv4_json_type t; } lits[] = {
        { "null", 4, DSV4_JSON_NULL }, { "true", 4, DSV4_JSON_TRUE }, { "false", 5, DSV4_JSON_FALSE },
    };
    const unsigned char *p = ps->p;
    char b[16];
    if (*p == '"') {
        v->type = DSV4_JSON_STRING;
        return parse_string(ps, &v->str, &v->len);
    }
    if (*p == '-' || (*p >= '0' && *p <= '9'))
        return parse_number(ps, v);
    for (size_t i = 0; i < sizeof lits / sizeof lits[0]; i++) {
        if ((size_t)(ps->end - p) >= lits[i].n && !memcmp(p, lits[i].lit, lits[i].n)) {
            v->type = lits[i].t;
            ps->p = p + lits[i].n;
            return 0;
        }
    }
    if (ps->end - p >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF)
        return fail(ps, p, "byte order mark not allowed");
    return fail(ps, p, "expected a value, got %s", show(ps, p, b));
}

static int push_val(parser *ps, const dsv4_json *v)
{
    if (ps->nvals == ps->capvals) {
        size_t cap = ps->capvals ? ps->capvals * 2 : 64;
        dsv4_json *n = realloc(ps->vals, cap * sizeof *n);
        if (!n)
            return nomem(ps);
        ps->vals = n;
        ps->capvals = cap;
    }
    ps->vals[ps->nvals++] = *v;
    return 0;
}

/* At the '"' of an object key: parse it and the ':' after it. */
static int parse_key(parser *ps)
{
    key k;
    char b[16];
    int rc;
    if (ps->p >= ps->end || *ps->p != '"')
        return fail(ps, ps->p, "expected a string key, got %s", show(ps, ps->p, b));
    if ((rc = parse_string(ps, &k.s, &k.n)))
        return rc;
    if (ps->nkeys == ps->capkeys) {
        size_t cap = ps->capkeys ? ps->capkeys * 2 : 32;
        key *n = realloc(ps->keys, cap * sizeof *n);
        if (!n)
            return nomem(ps);
        ps->keys = n;
        ps->capkeys = cap;
    }
    ps->keys[ps->nkeys++] = k;
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != ':')
        return fail(ps, ps->p, "expected ':' after object key, got %s", show(ps, ps->p, b));
    ps->p++;
    return 0;
}

/* Move the children of the innermost container into the arena and push the
 * container itself onto the value stack. */
static int close_container(parser *ps, int depth)
{
    const frame *fr = &ps->frames[depth];
    dsv4_json v;
    size_t n = ps->nvals - fr->first_val;
    memset(&v, 0, sizeof v);
    v.type = fr->is_obj ? DSV4_JSON_OBJECT : DSV4_JSON_ARRAY;
    v.line = fr->line;
    v.col = fr->col;
    v.len = n;
    if (n) {
        if (!(v.items = arena_alloc(&ps->a, n * sizeof *v.items)))
            return nomem(ps);
        memcpy(v.items, ps->vals + fr->first_val, n * sizeof *v.items);
    }
    if (fr->is_obj && n) {
        v.keys = arena_alloc(&ps->a, n * sizeof *v.keys);
        v.key_lens = arena_alloc(&ps->a, n * sizeof *v.key_lens);
        if (!v.keys || !v.key_lens)
            return nomem(ps);
        for (size_t i = 0; i < n; i++) {
            v.keys[i] = ps->keys[fr->first_key + i].s;
            v.key_lens[i] = ps->keys[fr->first_key + i].n;
        }
    }
    ps->nvals = fr->first_val;
    ps->nkeys = fr->first_key;
    return push_val(ps, &v);
}

static int parse_doc(parser *ps)
{
    int depth = 0, rc;
    char b[16];
    skip_ws(ps);
    if (ps->p >= ps->end)
        return fail(ps, ps->p, "empty input");
    for (;;) {
        dsv4_json v;
        skip_ws(ps);
        if (ps->p >= ps->end)
            return fail(ps, ps->p, "unexpected end of input, expected a value");
        memset(&v, 0, sizeof v);
        v.line = ps->line;
        v.col = colof(ps, ps->p);
        if (*ps->p == '[' || *ps->p == '{') {
            frame *fr;
            int is_obj = *ps->p == '{';
            if (depth == DEPTH_MAX)
                return fail(ps, ps->p, "nesting deeper than %d", DEPTH_MAX);
            fr = &ps->frames[depth++];
            fr->is_obj = is_obj;
            fr->first_val = ps->nvals;
            fr->first_key = ps->nkeys;
            fr->line = v.line;
            fr->col = v.col;
            ps->p++;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == (is_obj ? '}' : ']')) {
                ps->p++;
                if ((rc = close_container(ps, --depth)))
                    return rc;
            } else {
                if (is_obj && (rc = parse_key(ps)))
                    return rc;
                continue;
            }
        } else if ((rc = parse_scalar(ps, &v)) || (rc = push_val(ps, &v))) {
            return rc;
        }
        /* A value is complete: close containers until one wants another item. */
        for (;;) {
            frame *fr;
            char closer;
            skip_ws(ps);
            if (!depth) {
                if (ps->p < ps->end)
                    return fail(ps, ps->p, "unexpected %s after the JSON value", show(ps, ps->p, b));
                return 0;
            }
            fr = &ps->frames[depth - 1];
            closer = fr->is_obj ? '}' : ']';
            if (ps->p < ps->end && *ps->p == ',') {
                ps->p++;
                skip_ws(ps);
                if (ps->p < ps->end && *ps->p == closer)
                    return fail(ps, ps->p, "trailing comma before '%c'", closer);
                if (fr->is_obj && (rc = parse_key(ps)))
                    return rc;
                break;
            }
            if (ps->p < ps->end && *ps->p == closer) {
                ps->p++;
                if ((rc = close_container(ps, --depth)))
                    return rc;
                continue;
            }
            return fail(ps, ps->p, "expected ',' or '%c', got %s", closer, show(ps, ps->p, b));
        }
    }
}

int dsv4_json_parse(dsv4_json **out, const char *text, size_t len, unsigned flags, dsv4_err *err)
{
    parser *ps;
    tree *t = NULL;
    int rc;
    *out = NULL;
    if (!text && len)
        return dsv4_err_set(err, DSV4_E_INVALID, "JSON text is NULL");
    /* The frame stack is 16 KB: keep it off the caller's stack. */
    if (!(ps = calloc(1, sizeof *ps)) || !(t = malloc(sizeof *t))) {
        free(ps);
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory parsing JSON");
    }
    ps->p = ps->line_start = (const unsigned char *)(text ? text : "");
    ps->end = ps->p + len;
    ps->line = 1;
    ps->flags = flags;
    ps->err = err;
    rc = parse_doc(ps);
    if (rc) {
        arena_free(ps->a.head);
        free(t);
    } else {
        t->blocks = ps->a.head;
        t->root = ps->vals[0];
        *out = &t->root;
    }
    free(ps->vals);
    free(ps->keys);
    free(ps);
    return rc;
}

void dsv4_json_free(dsv4_json *j)
{
    tree *t;
    if (!j)
        return;
    t = (tree *)((char *)j - offsetof(tree, root));
    arena_free(t->blocks);
    free(t);
}

/* ---- lookup --------------------------------------------------------------- */

const dsv4_json *dsv4_json_get(const dsv4_json *obj, const char *k)
{
    size_t n;
    if (!obj || obj->type != DSV4_JSON_OBJECT || !k)
        return NULL;
    n = strlen(k);
    for (size_t i = obj->len; i-- > 0;)   /* last duplicate wins, as in Python */
        if (obj->key_lens[i] == n && !memcmp(obj->keys[i], k, n))
            return &obj->items[i];
    return NULL;
}

const dsv4_json *dsv4_json_at(const dsv4_json *arr, size_t i)
{
    if (!arr || (arr->type != DSV4_JSON_ARRAY && arr->type != DSV4_JSON_OBJECT) || i >= arr->len)
        return NULL;
    return &arr->items[i];
}

const char *dsv4_json_type_name(dsv4_json_type t)
{
    switch (t) {
    case DSV4_JSON_NULL:   return "null";
    case DSV4_JSON_FALSE:
    case DSV4_JSON_TRUE:   return "a boolean";
    case DSV4_JSON_NUMBER: return "a number";
    case DSV4_JSON_STRING: return "a string";
    case DSV4_JSON_ARRAY:  return "an array";
    case DSV4_JSON_OBJECT: return "an object";
    }
    return "?";
}

/* Shared front half of the typed getters: find key, check the type. */
static int lookup(const dsv4_json *obj, const char *k, int want, const char *what,
                  const dsv4_json **v, dsv4_err *err)
{
    if (obj && obj->type != DSV4_JSON_OBJECT)
        return dsv4_err_set(err, DSV4_E_FORMAT, "looking up '%s' in %s, not an object", k,
                            dsv4_json_type_name(obj->type));
    if (!(*v = dsv4_json_get(obj, k)))
        return dsv4_err_set(err, DSV4_E_NOTFOUND, "key '%s' not found", k);
    if ((int)(*v)->type != want && !(want == DSV4_JSON_TRUE && (*v)->type == DSV4_JSON_FALSE))
        return dsv4_err_set(err, DSV4_E_FORMAT, "key '%s': expected %s, got %s", k, what,
                            dsv4_json_type_name((*v)->type));
    return 0;
}

int dsv4_json_get_i64(const dsv4_json *obj, const char *k, int64_t *out, dsv4_err *err)
{
    const dsv4_json *v;
    long long x;
    char *end;
    int rc = lookup(obj, k, DSV4_JSON_NUMBER, "an integer", &v, err);
    if (rc)
        return rc;
    if (!v->is_int || !v->str)
        return dsv4_err_set(err, DSV4_E_FORMAT, "key '%s': expected an integer, got %s", k,
                            v->str ? v->str : "a float");
    errno = 0;
    x = strtoll(v->str, &end, 10);
    if (errno == ERANGE || *end)
        return dsv4_err_set(err, DSV4_E_FORMAT, "key '%s': integer %s out of range", k, v->str);
    *out = (int64_t)x;
    return 0;
}

int dsv4_json_get_f64(const dsv4_json *obj, const char *k, double *out, dsv4_err *err)
{
    const dsv4_json *v;
    int rc = lookup(obj, k, DSV4_JSON_NUMBER, "a number", &v, err);
    if (!rc)
        *out = v->num;
    return rc;
}

int dsv4_json_get_bool(const dsv4_json *obj, const char *k, int *out, dsv4_err *err)
{
    const dsv4_json *v;
    int rc = lookup(obj, k, DSV4_JSON_TRUE, "a boolean", &v, err);
    if (!rc)
        *out = v->type == DSV4_JSON_TRUE;
    return rc;
}

int dsv4_json_get_str(const dsv4_json *obj, const char *k, const char **out, dsv4_err *err)
{
    const dsv4_json *v;
    int rc = lookup(obj, k, DSV4_JSON_STRING, "a string", &v, err);
    if (!rc)
        *out = v->str;
    return rc;
}

/* ---- writer --------------------------------------------------------------- */

void dsv4_json_write_str(dsv4_buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s, *e = p + n, *run;
    dsv4_buf_putc(out, '"');
    while (p < e) {
        char esc[7];
        unsigned c;
        run = p;
        /* Raw bytes pass in runs; only C0, '"', '\\' and WTF-8 lone
         * surrogates (ED A0..BF xx, which Python would escape) stop it. */
        while (p < e && *p >= 0x20 && *p != '"' && *p != '\\' &&
               !(*p == 0xED && e - p >= 3 && p[1] >= 0xA0 && p[1] <= 0xBF && (p[2] & 0xC0) == 0x80))
            p++;
        dsv4_buf_append(out, run, (size_t)(p - run));
        if (p >= e)
            break;
        c = *p;
        esc[0] = '\\';
        switch (c) {
        case '"':  esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            if (c == 0xED) {   /* lone surrogate: decode the 3 bytes */
                c = 0xD000 | (p[1] & 0x3Fu) << 6 | (p[2] & 0x3Fu);
                p += 2;
            }
            esc[1] = 'u';
            esc[2] = hex[c >> 12 & 15];
            esc[3] = hex[c >> 8 & 15];
            esc[4] = hex[c >> 4 & 15];
            esc[5] = hex[c & 15];
            dsv4_buf_append(out, esc, 6);
            p++;
            continue;
        }
        dsv4_buf_append(out, esc, 2);
        p++;
    }
    dsv4_buf_putc(out, '"');
}

/* Split "%e" output into its significant digits (trailing zeros dropped)
 * and decimal exponent. */
static int split_e(const char *s, char dig[20], int *exp10)
{
    int nd = 0;
    for (; *s != 'e'; s++)
        if (*s != '.' && nd < 19)
            dig[nd++] = *s;
    *exp10 = atoi(s + 1);
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    dig[nd] = 0;
    return nd;
}

/* Shortest digits that read back as a (> 0), as Python's repr (dtoa mode 0).
 * Any decimal of <= 15 digits survives a round trip (DBL_DIG), so when %.15
 * round-trips, it stripped of zeros is the shortest.  Otherwise try 16 digits
 * and then 17; at 16 the correctly rounded string can miss while its
 * neighbour on the other side of a hits, because the rounding interval of a
 * power of two is narrower below than above. */
static int shortest_digits(double a, char dig[20], int *exp10)
{
    char buf[48];
    double r;
    /* Subnormals have fewer bits than DBL_DIG assumes, but their rounding
     * intervals are symmetric: the first correctly rounded hit is it. */
    for (int p = a < DBL_MIN ? 1 : 15; p <= 15; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, a);
        if (strtod(buf, NULL) == a)
            return split_e(buf, dig, exp10);
    }
    snprintf(buf, sizeof buf, "%.15e", a);
    if ((r = strtod(buf, NULL)) == a)
        return split_e(buf, dig, exp10);
    {
        /* buf is "d.ddddddddddddddde+XX" (a > 0): step the last digit towards a. */
        char alt[17];
        int i, e = atoi(buf + 18);
        alt[0] = buf[0];
        memcpy(alt + 1, buf + 2, 15);
        alt[16] = 0;
        for (i = 15; i >= 0; i--) {
            if (r < a ? alt[i] != '9' : alt[i] != '0') {
                alt[i] = (char)(alt[i] + (r < a ? 1 : -1));
                break;
            }
            alt[i] = r < a ? '0' : '9';
        }
        if (i >= 0 && alt[0] != '0') {
            snprintf(buf, sizeof buf, "%c.%se%d", alt[0], alt + 1, e);
            if (strtod(buf, NULL) == a)
                return split_e(buf, dig, exp10);
        }
    }
    snprintf(buf, sizeof buf, "%.16e", a);
    return split_e(buf, dig, exp10);
}

void dsv4_json_write_f64(dsv4_buf *out, double v)
{
    char dig[20];
    int nd, exp10, decpt;
    if (isnan(v)) {
        dsv4_buf_puts(out, "NaN");
        return;
    }
    if (isinf(v)) {
        dsv4_buf_puts(out, v > 0 ? "Infinity" : "-Infinity");
        return;
    }
    if (v == 0) {
        dsv4_buf_puts(out, signbit(v) ? "-0.0" : "0.0");
        return;
    }
    if (v < 0)
        dsv4_buf_putc(out, '-');
    nd = shortest_digits(fabs(v), dig, &exp10);
    decpt = exp10 + 1;   /* digits before the decimal point */
    /* Python's float_repr_style 'short': fixed notation for 1e-4 <= |v| < 1e16. */
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            dsv4_buf_puts(out, "0.");
            for (int i = 0; i < -decpt; i++)
                dsv4_buf_putc(out, '0');
            dsv4_buf_append(out, dig, (size_t)nd);
        } else if (decpt < nd) {
            dsv4_buf_append(out, dig, (size_t)decpt);
            dsv4_buf_putc(out, '.');
            dsv4_buf_append(out, dig + decpt, (size_t)(nd - decpt));
        } else {
            dsv4_buf_append(out, dig, (size_t)nd);
            for (int i = nd; i < decpt; i++)
                dsv4_buf_putc(out, '0');
            dsv4_buf_puts(out, ".0");
        }
    } else {
        dsv4_buf_putc(out, dig[0]);
        if (nd > 1) {
            dsv4_buf_putc(out, '.');
            dsv4_buf_append(out, dig + 1, (size_t)(nd - 1));
        }
        dsv4_buf_printf(out, "e%+03d", exp10);
    }
}

static void write_number(dsv4_buf *out, const dsv4_json *j)
{
    if (!j->is_int) {
        dsv4_json_write_f64(out, j->num);
    } else if (j->str) {
        /* Python ints: the literal digits; "-0" is int 0. */
        dsv4_buf_puts(out, strcmp(j->str, "-0") ? j->str : "0");
    } else if (isfinite(j->num)) {
        dsv4_buf_printf(out, "%.0f", j->num == 0 ? 0.0 : j->num);
    } else {
        dsv4_json_write_f64(out, j->num);
    }
}

static void newline_indent(dsv4_buf *out, int indent, int level)
{
    size_t n = (size_t)indent * (size_t)level;
    dsv4_buf_putc(out, '\n');
    if (n && !dsv4_buf_reserve(out, n)) {
        memset(out->data + out->len, ' ', n);
        out->len += n;
        out->data[out->len] = 0;
    }
}

/* Recursion depth is the tree's depth: at most DEPTH_MAX for parsed trees. */
static void write_value(dsv4_buf *out, const dsv4_json *j, int indent, const char *item_sep,
                        const char *key_sep, int level)
{
    int obj = j->type == DSV4_JSON_OBJECT;
    switch (j->type) {
    case DSV4_JSON_NULL:   dsv4_buf_puts(out, "null"); return;
    case DSV4_JSON_FALSE:  dsv4_buf_puts(out, "false"); return;
    case DSV4_JSON_TRUE:   dsv4_buf_puts(out, "true"); return;
    case DSV4_JSON_NUMBER: write_number(out, j); return;
    case DSV4_JSON_STRING: dsv4_json_write_str(out, j->str, j->len); return;
    case DSV4_JSON_ARRAY:
    case DSV4_JSON_OBJECT:
        break;
    }
    if (!j->len) {
        dsv4_buf_puts(out, obj ? "{}" : "[]");
        return;
    }
    dsv4_buf_putc(out, obj ? '{' : '[');
    for (size_t i = 0; i < j->len; i++) {
        if (i)
            dsv4_buf_puts(out, item_sep);
        if (indent >= 0)
            newline_indent(out, indent, level + 1);
        if (obj) {
            dsv4_json_write_str(out, j->keys[i], j->key_lens[i]);
            dsv4_buf_puts(out, key_sep);
        }
        write_value(out, &j->items[i], indent, item_sep, key_sep, level + 1);
    }
    if (indent >= 0)
        newline_indent(out, indent, level);
    dsv4_buf_putc(out, obj ? '}' : ']');
}

void dsv4_json_write(dsv4_buf *out, const dsv4_json *j, int indent,
                     const char *item_sep, const char *key_sep)
{
    /* NULL separators mean Python's defaults.  With an indent Python's default
     * item separator is "," (the newline follows it), and ", " would leave a
     * trailing space on every line, so ", " is taken to mean that default. */
    if (!item_sep || (indent >= 0 && !strcmp(item_sep, ", ")))
        item_sep = indent >= 0 ? "," : ", ";
    if (!key_sep)
        key_sep = ": ";
    if (j)
        write_value(out, j, indent, item_sep, key_sep, 0);
}

int dsv4_utf8_check(const char *s, size_t n, dsv4_err *err)
{
    size_t bad = dsv4_utf8_valid_prefix(s, n), line = 1, col = 1;
    if (bad == n)
        return 0;
    for (size_t i = 0; i < bad; i++) {
        if (s[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return dsv4_err_set(err, DSV4_E_FORMAT, "line %zu, column %zu: invalid UTF-8 (byte offset %zu)", line, col, bad);
}
