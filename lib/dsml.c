/* dsml — completion text -> assistant message (see dsml.h, DSML.md §3).
 *
 * The strict parser follows the official read-until algorithm step by step.
 * The lenient one is a state machine over the text received so far: each
 * step settles what can no longer change (text that cannot be the start of
 * a marker, a complete invoke) and waits for more otherwise.  Every decision
 * depends only on the bytes up to the point decided, so splitting the input
 * differently cannot change the result. */
#include "dsml.h"
#include "json.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define EOS "<｜end▁of▁sentence｜>"
#define BOS "<｜begin▁of▁sentence｜>"
#define DSML "｜DSML｜"
#define BLOCK_OPEN "<" DSML "tool_calls"
#define BLOCK_CLOSE "</" DSML "tool_calls>"
#define INVOKE_OPEN "<" DSML "invoke"
#define INVOKE_CLOSE "</" DSML "invoke>"
#define PARAM_OPEN "<" DSML "parameter"
#define PARAM_CLOSE "</" DSML "parameter>"
#define THINK_CLOSE "</think>"

#define ID_BYTES 12

/* ---- the message ------------------------------------------------------------ */

void dsv4_dsml_msg_release(dsv4_dsml_msg *m)
{
    for (size_t i = 0; i < m->ncalls; i++) {
        free(m->calls[i].id);
        free(m->calls[i].name);
        free(m->calls[i].arguments);
    }
    free(m->calls);
    dsv4_buf_release(&m->reasoning);
    dsv4_buf_release(&m->content);
    memset(m, 0, sizeof *m);
}

static void put_str(dsv4_buf *out, const char *s, size_t n)
{
    dsv4_json_write_str(out, s ? s : "", s ? n : 0);
}

void dsv4_dsml_msg_json(const dsv4_dsml_msg *m, dsv4_buf *out)
{
    dsv4_buf_puts(out, "{\"role\": \"assistant\", \"content\": ");
    put_str(out, m->content.data, m->content.len);
    dsv4_buf_puts(out, ", \"reasoning_content\": ");
    put_str(out, m->reasoning.data, m->reasoning.len);
    dsv4_buf_puts(out, ", \"tool_calls\": [");
    for (size_t i = 0; i < m->ncalls; i++) {
        const dsv4_dsml_call *c = &m->calls[i];
        dsv4_buf_puts(out, i ? ", {\"id\": " : "{\"id\": ");
        put_str(out, c->id, strlen(c->id));
        dsv4_buf_puts(out, ", \"type\": \"function\", \"function\": {\"name\": ");
        put_str(out, c->name, strlen(c->name));
        dsv4_buf_puts(out, ", \"arguments\": ");
        put_str(out, c->arguments, strlen(c->arguments));
        dsv4_buf_puts(out, "}}");
    }
    dsv4_buf_puts(out, "]}");
}

/* One parameter of an invoke being read; pointers into the text. */
typedef struct param {
    const char *key, *val;
    size_t klen, vlen;
    int is_str;
} param;

typedef struct params {
    param *v;
    size_t n, cap;
} params;

static int params_add(params *ps, const param *p)
{
    if (dsv4_grow((void **)&ps->v, &ps->cap, ps->n, sizeof *ps->v))
        return DSV4_E_NOMEM;
    ps->v[ps->n++] = *p;
    return 0;
}

static long params_find(const params *ps, const char *key, size_t klen)
{
    for (size_t i = 0; i < ps->n; i++)
        if (ps->v[i].klen == klen && !memcmp(ps->v[i].key, key, klen))
            return (long)i;
    return -1;
}

static int valid_json(const char *s, size_t n)
{
    dsv4_json *j;
    dsv4_err e = DSV4_ERR_INIT;
    if (dsv4_json_parse(&j, s, n, 0, &e))
        return 0;
    dsv4_json_free(j);
    return 1;
}

/* Complete a call: arguments built as the official parser does, the id
 * hashed from text[0..end).  strict: a not-JSON string="false" value is an
 * error; otherwise it becomes a JSON string and counts as a warning. */
static int add_call(dsv4_dsml_msg *m, const char *name, size_t nlen, const params *ps, const char *text,
                    size_t end, int strict, dsv4_err *err)
{
    dsv4_buf args = DSV4_BUF_INIT;
    unsigned char h[ID_BYTES];
    char id[6 + 2 * ID_BYTES + 1];
    dsv4_dsml_call *c;
    dsv4_buf_putc(&args, '{');
    for (size_t i = 0; i < ps->n; i++) {
        const param *p = &ps->v[i];
        if (i)
            dsv4_buf_puts(&args, ", ");
        dsv4_json_write_str(&args, p->key, p->klen);
        dsv4_buf_puts(&args, ": ");
        if (p->is_str) {
            dsv4_json_write_str(&args, p->val, p->vlen);
        } else if (valid_json(p->val, p->vlen)) {
            dsv4_buf_append(&args, p->val, p->vlen);
        } else if (strict) {
            dsv4_buf_release(&args);
            return dsv4_err_set(err, DSV4_E_FORMAT, "tool call '%.*s': parameter '%.*s' is string=\"false\" "
                                "but its value is not JSON", (int)(nlen > 60 ? 60 : nlen), name,
                                (int)(p->klen > 60 ? 60 : p->klen), p->key);
        } else {
            dsv4_json_write_str(&args, p->val, p->vlen);
            m->warnings++;
        }
    }
    dsv4_buf_putc(&args, '}');
    if (dsv4_grow((void **)&m->calls, &m->cap, m->ncalls, sizeof *m->calls))
        goto oom;
    crypto_generichash(h, sizeof h, (const unsigned char *)text, end, NULL, 0);
    memcpy(id, "call_", 5);
    for (int i = 0; i < ID_BYTES; i++)
        snprintf(id + 5 + 2 * i, 3, "%02x", h[i]);
    c = &m->calls[m->ncalls];
    c->id = strdup(id);
    c->name = strndup(name, nlen);
    c->arguments = dsv4_buf_detach(&args, NULL);
    if (!c->id || !c->name || !c->arguments || args.oom) {
        free(c->id);
        free(c->name);
        free(c->arguments);
        goto oom;
    }
    m->ncalls++;
    return 0;
oom:
    dsv4_buf_release(&args);
    return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
}

/* ---- strict: the official algorithm (DSML.md §3.2) ------------------------ */

typedef struct reader {
    const char *s;
    size_t n, i;
} reader;

/* Read from r->i to the earliest of stops; *got = index of the stop (-1 if
 * none, then to the end).  Sets *a and *alen to the text skipped. */
static void read_until(reader *r, const char *const *stops, int nstops, const char **a, size_t *alen, int *got)
{
    size_t best = r->n;
    *got = -1;
    for (int k = 0; k < nstops; k++) {
        const char *p = memmem(r->s + r->i, r->n - r->i, stops[k], strlen(stops[k]));
        if (p && (size_t)(p - r->s) < best) {
            best = (size_t)(p - r->s);
            *got = k;
        }
    }
    *a = r->s + r->i;
    *alen = best - r->i;
    r->i = *got < 0 ? r->n : best + strlen(stops[*got]);
}

static int skipped_is(const char *a, size_t n, const char *want)
{
    return n == strlen(want) && !memcmp(a, want, n);
}

static int has_special(const char *s, size_t n)
{
    static const char *const sp[] = { BOS, EOS, "<think>", THINK_CLOSE, DSML };
    for (size_t k = 0; k < sizeof sp / sizeof *sp; k++)
        if (memmem(s, n, sp[k], strlen(sp[k])))
            return 1;
    return 0;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static int ends_with(const char *s, size_t n, const char *suf)
{
    size_t l = strlen(suf);
    return n >= l && !memcmp(s + n - l, suf, l);
}

#define FAIL(...) do { rc = dsv4_err_set(err, DSV4_E_FORMAT, __VA_ARGS__); goto out; } while (0)

/* The invoke header `^\s*name="(.*?)">\n$` (Python re, DOTALL). */
static int strict_name(const char *a, size_t n, const char **name, size_t *nlen)
{
    size_t q = 0;
    while (q < n && is_ws(a[q]))
        q++;
    if (n - q < 6 || memcmp(a + q, "name=\"", 6))
        return 0;
    q += 6;
    *name = a + q;
    if (ends_with(a + q, n - q, "\">\n\n"))
        *nlen = n - q - 4;
    else if (ends_with(a + q, n - q, "\">\n"))
        *nlen = n - q - 3;
    else
        return 0;
    return 1;
}

/* A parameter `^ name="(.*?)" string="(true|false)">(.*?)<$` (DOTALL). */
static int strict_param(const char *a, size_t n, param *p)
{
    const char *t, *f, *e = a + n;
    if (n < 7 || memcmp(a, " name=\"", 7) || a[n - 1] != '<')
        return 0;
    p->key = a + 7;
    t = memmem(p->key, (size_t)(e - p->key), "\" string=\"true\">", 16);
    f = memmem(p->key, (size_t)(e - p->key), "\" string=\"false\">", 17);
    if (!t && !f)
        return 0;
    p->is_str = t && (!f || t < f);
    p->klen = (size_t)((p->is_str ? t : f) - p->key);
    p->val = p->key + p->klen + (p->is_str ? 16 : 17);
    if (p->val > e - 1)
        return 0;
    p->vlen = (size_t)(e - 1 - p->val);
    return 1;
}

static int parse_strict(const char *text, size_t len, unsigned flags, dsv4_dsml_msg *m, dsv4_err *err)
{
    static const char *const think_stops[] = { THINK_CLOSE, "\n\n" BLOCK_OPEN };
    static const char *const content_stops[] = { EOS, "\n\n" BLOCK_OPEN };
    static const char *const item_stops[] = { INVOKE_OPEN, BLOCK_CLOSE };
    static const char *const inner_stops[] = { PARAM_OPEN, "</" DSML "invoke" };
    static const char *const value_stops[] = { "/" DSML "parameter" };
    static const char *const eos_stop[] = { EOS };
    reader r = { text, len, 0 };
    params ps = { NULL, 0, 0 };
    const char *a;
    size_t n;
    int got, rc = 0;

    if (flags & DSV4_DSML_THINKING) {
        read_until(&r, think_stops, 2, &a, &n, &got);
        if (got != 0)
            FAIL("invalid thinking format: missing </think> before byte %zu", (size_t)(a + n - text));
        if (has_special(a, n))
            FAIL("unexpected special token in the reasoning (bytes 0..%zu)", n);
        dsv4_buf_append(&m->reasoning, a, n);
    }
    read_until(&r, content_stops, 2, &a, &n, &got);
    if (has_special(a, n))
        FAIL("unexpected special token in the content (bytes %zu..%zu)", (size_t)(a - text),
             (size_t)(a + n - text));
    dsv4_buf_append(&m->content, a, n);
    if (got == 0) {
        m->eos = 1;
        if (r.i != len)
            FAIL("unexpected text after the end-of-sentence token at byte %zu", r.i);
        goto out;
    }
    if (got < 0)
        FAIL("invalid format: missing the end-of-sentence token (text ends at byte %zu)", len);
    for (;;) {
        const char *name;
        size_t nlen, start = r.i;
        read_until(&r, item_stops, 2, &a, &n, &got);
        if (got < 0)
            FAIL("tool calls: missing </｜DSML｜tool_calls> after byte %zu", start);
        if (!skipped_is(a, n, ">\n"))
            FAIL("tool call format error at byte %zu: expected '>\\n'", start);
        if (got == 1)
            break;
        start = r.i;
        read_until(&r, inner_stops, 2, &a, &n, &got);
        if (got < 0 || !strict_name(a, n, &name, &nlen))
            FAIL("tool call format error at byte %zu: expected ' name=\"NAME\">\\n'", start);
        ps.n = 0;
        while (got == 0) {
            param p;
            start = r.i;
            read_until(&r, value_stops, 1, &a, &n, &got);
            if (got < 0 || !strict_param(a, n, &p))
                FAIL("parameter format error at byte %zu", start);
            if (params_find(&ps, p.key, p.klen) >= 0)
                FAIL("duplicate parameter name '%.*s' at byte %zu", (int)(p.klen > 60 ? 60 : p.klen), p.key, start);
            if ((rc = params_add(&ps, &p)))
                FAIL("out of memory");
            start = r.i;
            read_until(&r, inner_stops, 2, &a, &n, &got);
            if (got < 0 || !skipped_is(a, n, ">\n"))
                FAIL("parameter format error at byte %zu: expected '>\\n'", start);
        }
        if (r.i >= len || text[r.i] != '>')
            FAIL("tool call format error at byte %zu: expected '>' closing the invoke", r.i);
        if ((rc = add_call(m, name, nlen, &ps, text, r.i + 1, 1, err)))
            goto out;
    }
    read_until(&r, eos_stop, 1, &a, &n, &got);
    if (n)
        FAIL("unexpected content after tool calls at byte %zu", (size_t)(a - text));
    m->eos = got == 0;
    if (r.i != len)
        FAIL("unexpected text after the end-of-sentence token at byte %zu", r.i);
out:
    free(ps.v);
    return rc;
}

#undef FAIL

/* ---- lenient, streaming ----------------------------------------------------- */

enum { S_REASONING, S_CONTENT, S_BLOCK_OPEN, S_BLOCK, S_AFTER, S_TAIL };
enum { NEED = 0, BAD = -1, GOT = 1 };

struct dsv4_dsml_parser {
    unsigned flags;
    dsv4_dsml_event_fn fn;
    void *ctx;
    dsv4_buf b;           /* all the text so far */
    size_t pos;           /* b[0..pos) is settled */
    size_t waited;        /* S_BLOCK, S_AFTER: searched up to here for the end of an item or EOS */
    size_t block_start;   /* where the newlines before the current block begin */
    size_t block_calls;   /* calls completed in the current block */
    int state, no_blocks, failed;
    int stop;             /* the callback's non-zero return, which feed/finish return */
    params ps;
    dsv4_dsml_msg msg;
};

static int emit_text(dsv4_dsml_parser *p, int type, const char *s, size_t n, dsv4_err *err)
{
    dsv4_dsml_event ev = { type, s, n, NULL };
    if (!n)
        return 0;
    dsv4_buf_append(type == DSV4_DSML_EV_REASONING ? &p->msg.reasoning : &p->msg.content, s, n);
    if (p->msg.reasoning.oom || p->msg.content.oom)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    return p->fn && (p->stop = p->fn(p->ctx, &ev)) ? -1 : 0;
}

/* Longest suffix of s[0..n) that is a proper prefix of marker. */
static size_t partial(const char *s, size_t n, const char *marker)
{
    size_t l = strlen(marker);
    for (size_t k = n < l - 1 ? n : l - 1; k > 0; k--)
        if (!memcmp(s + n - k, marker, k))
            return k;
    return 0;
}

/* Reasoning or content: find the first marker, or settle what cannot start one. */
static int step_text(dsv4_dsml_parser *p, int final, dsv4_err *err)
{
    const char *markers[3];
    int nm = 0, type = p->state == S_REASONING ? DSV4_DSML_EV_REASONING : DSV4_DSML_EV_CONTENT;
    int blocks = !p->no_blocks, best_k = -1;
    const char *s = p->b.data + p->pos, *best = NULL;
    size_t n = p->b.len - p->pos, cut, hold = 0;
    if (p->state == S_REASONING)
        markers[nm++] = THINK_CLOSE;
    markers[nm++] = EOS;
    if (blocks)
        markers[nm++] = BLOCK_OPEN;
    for (int k = 0; k < nm; k++) {
        const char *q = memmem(s, n, markers[k], strlen(markers[k]));
        if (q && (!best || q < best)) {
            best = q;
            best_k = k;
        }
    }
    if (best) {
        const char *mk = markers[best_k];
        cut = (size_t)(best - s);
        if (!strcmp(mk, BLOCK_OPEN))
            for (int nl = 0; nl < 2 && cut > 0 && s[cut - 1] == '\n'; nl++)
                cut--;
        if (emit_text(p, type, s, cut, err))
            return -1;
        p->pos += (size_t)(best - s) + strlen(mk);
        if (!strcmp(mk, THINK_CLOSE)) {
            p->state = S_CONTENT;
        } else if (!strcmp(mk, EOS)) {
            p->msg.eos = 1;
            p->state = S_TAIL;
        } else {
            p->block_start = p->pos - strlen(mk) - ((size_t)(best - s) - cut);
            p->block_calls = 0;
            p->state = S_BLOCK_OPEN;
        }
        return 1;
    }
    if (!final) {
        for (int k = 0; k < nm; k++) {
            size_t h = partial(s, n, markers[k]);
            hold = h > hold ? h : hold;
        }
        if (blocks)   /* newlines that may turn out to separate a tool block */
            for (int nl = 0; nl < 2 && hold < n && s[n - hold - 1] == '\n'; nl++)
                hold++;
    }
    if (emit_text(p, type, s, n - hold, err))
        return -1;
    p->pos += n - hold;
    return 0;
}

/* Match lit at s[*q..n): 1 matched (advanced), 0 no, NEED when the text
 * ends inside a possible match. */
static int eat(const char *s, size_t n, size_t *q, const char *lit)
{
    size_t l = strlen(lit), avail = n - *q;
    if (avail >= l) {
        if (memcmp(s + *q, lit, l))
            return BAD;
        *q += l;
        return GOT;
    }
    return memcmp(s + *q, lit, avail) ? BAD : NEED;
}

static void skip_ws(const char *s, size_t n, size_t *q)
{
    while (*q < n && is_ws(s[*q]))
        (*q)++;
}

/* `name="X"` after at least one blank: *v and *vl = X. */
static int quoted_name(const char *s, size_t n, size_t *q, const char **v, size_t *vl)
{
    const char *e;
    int r;
    if (*q < n && !is_ws(s[*q]))
        return BAD;
    skip_ws(s, n, q);
    if ((r = eat(s, n, q, "name=\"")) != GOT)
        return r;
    if (!(e = memchr(s + *q, '"', n - *q)))
        return NEED;
    *v = s + *q;
    *vl = (size_t)(e - *v);
    *q += *vl + 1;
    return GOT;
}

/* One parameter after PARAM_OPEN. */
static int lenient_param(const char *s, size_t n, size_t *q, param *p)
{
    const char *e;
    int r;
    if ((r = quoted_name(s, n, q, &p->key, &p->klen)) != GOT)
        return r;
    skip_ws(s, n, q);
    p->is_str = 1;
    if ((r = eat(s, n, q, "string=\"")) == NEED)
        return NEED;
    if (r == GOT) {
        if ((r = eat(s, n, q, "true\"")) == BAD) {
            if ((r = eat(s, n, q, "false\"")) != GOT)
                return r;
            p->is_str = 0;
        } else if (r == NEED) {
            return NEED;
        }
        skip_ws(s, n, q);
    }
    if ((r = eat(s, n, q, ">")) != GOT)
        return r;
    if (!(e = memmem(s + *q, n - *q, PARAM_CLOSE, strlen(PARAM_CLOSE))))
        return NEED;
    p->val = s + *q;
    p->vlen = (size_t)(e - p->val);
    *q += p->vlen + strlen(PARAM_CLOSE);
    return GOT;
}

/* One item of a block at b[pos..): the closing tag (*closed = 1) or a
 * whole invoke, added to the message. */
static int lenient_item(dsv4_dsml_parser *p, size_t *used, int *closed, dsv4_err *err)
{
    const char *s = p->b.data + p->pos, *name;
    size_t n = p->b.len - p->pos, q = 0, nlen;
    int r;
    *closed = 0;
    skip_ws(s, n, &q);
    if ((r = eat(s, n, &q, BLOCK_CLOSE)) != BAD) {
        *closed = r == GOT;
        *used = q;
        return r;
    }
    if ((r = eat(s, n, &q, INVOKE_OPEN)) != GOT || (r = quoted_name(s, n, &q, &name, &nlen)) != GOT)
        return r;
    skip_ws(s, n, &q);
    if ((r = eat(s, n, &q, ">")) != GOT)
        return r;
    p->ps.n = 0;
    for (;;) {
        param pa;
        long k;
        skip_ws(s, n, &q);
        if ((r = eat(s, n, &q, INVOKE_CLOSE)) != BAD)
            break;
        if ((r = eat(s, n, &q, PARAM_OPEN)) != GOT || (r = lenient_param(s, n, &q, &pa)) != GOT)
            return r;
        if ((k = params_find(&p->ps, pa.key, pa.klen)) >= 0) {
            p->ps.v[k] = pa;       /* a repeated key keeps its last value */
            p->msg.warnings++;
        } else if (params_add(&p->ps, &pa)) {
            dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
            return -2;     /* DSV4_E_NOMEM is -1, which would read as BAD (malformed) */
        }
    }
    if (r != GOT)
        return r;
    *used = q;
    return add_call(&p->msg, name, nlen, &p->ps, p->b.data, p->pos + q, 0, err) ? -2 : GOT;
}

static int step_block(dsv4_dsml_parser *p, int final, dsv4_err *err)
{
    size_t used = 0;
    int closed, r;
    if (p->state == S_BLOCK_OPEN) {
        size_t q = p->pos;
        skip_ws(p->b.data, p->b.len, &q);
        if (q < p->b.len && p->b.data[q] == '>') {
            p->pos = q + 1;
            p->state = S_BLOCK;
            p->waited = p->pos;
            return 1;
        }
        r = q < p->b.len ? BAD : NEED;
    } else {
        /* Every item ends with "invoke>" or "tool_calls>": until one of them
         * ends in the new text, an attempt cannot complete (and malformed
         * text can wait), so long values are not rescanned per piece. */
        size_t from = p->waited > 10 ? p->waited - 10 : 0, left = p->b.len - from;
        if (!final && !memmem(p->b.data + from, left, "invoke>", 7) && !memmem(p->b.data + from, left, "tool_calls>", 11)) {
            p->waited = p->b.len;
            return 0;
        }
        r = lenient_item(p, &used, &closed, err);
        if (r == -2)
            return -1;
        if (r == GOT) {
            dsv4_dsml_event ev = { DSV4_DSML_EV_CALL, NULL, 0, NULL };
            p->pos += used;
            p->waited = p->pos;
            if (closed) {
                p->state = S_AFTER;
                return 1;
            }
            p->block_calls++;
            ev.call = &p->msg.calls[p->msg.ncalls - 1];
            return p->fn && (p->stop = p->fn(p->ctx, &ev)) ? -1 : 1;
        }
        p->waited = p->b.len;
    }
    if (r == NEED && !final)
        return 0;
    if (r == NEED && p->state == S_BLOCK) {
        size_t q = p->pos;
        skip_ws(p->b.data, p->b.len, &q);
        if (q == p->b.len) {   /* only the closing tag is missing */
            p->pos = q;
            p->state = S_AFTER;
            return 1;
        }
    }
    /* Malformed or truncated: the text goes back to content, from the
     * newlines before the block if no call of it completed. */
    if (!p->block_calls)
        p->pos = p->block_start;
    p->state = S_CONTENT;
    p->no_blocks = 1;
    return 1;
}

/* After the block or after EOS: text other than blanks is kept as content. */
static int step_tail(dsv4_dsml_parser *p, int final, dsv4_err *err)
{
    const char *s = p->b.data + p->pos, *e = NULL;
    size_t n = p->b.len - p->pos, k = 0, l = strlen(EOS);
    /* search only where an EOS could end in the new text */
    size_t from = p->waited > p->pos + l ? p->waited - l + 1 : p->pos;
    if (p->state == S_AFTER && (e = memmem(p->b.data + from, p->b.len - from, EOS, l))) {
        n = (size_t)(e - s);
    } else if (!final) {
        p->waited = p->b.len;
        return 0;
    }
    skip_ws(s, n, &k);
    if (k < n && emit_text(p, DSV4_DSML_EV_CONTENT, s, n, err))
        return -1;
    p->pos += n;
    if (e) {
        p->pos += strlen(EOS);
        p->msg.eos = 1;
        p->state = S_TAIL;
        return 1;
    }
    return 0;
}

static int run(dsv4_dsml_parser *p, int final, dsv4_err *err)
{
    int r;
    if (p->failed)
        return dsv4_err_set(err, DSV4_E_INVALID, "the parser stopped after an earlier error");
    do {
        switch (p->state) {
        case S_REASONING:
        case S_CONTENT: r = step_text(p, final, err); break;
        case S_BLOCK_OPEN:
        case S_BLOCK:   r = step_block(p, final, err); break;
        default:        r = step_tail(p, final, err); break;
        }
    } while (r > 0);
    if (r < 0) {
        p->failed = 1;
        /* err may hold an old code from the caller: only a callback stop
         * leaves it untouched, and that one returns its own value */
        if (p->stop)
            return dsv4_err_set(err, p->stop, "stopped by the event callback");
        return err && err->code ? err->code : DSV4_E_NOMEM;
    }
    return 0;
}

int dsv4_dsml_parser_new(dsv4_dsml_parser **out, unsigned flags, dsv4_dsml_event_fn fn, void *ctx, dsv4_err *err)
{
    dsv4_dsml_parser *p;
    *out = NULL;
    if (flags & DSV4_DSML_STRICT)
        return dsv4_err_set(err, DSV4_E_INVALID, "the streaming parser is lenient only");
    if (!(p = calloc(1, sizeof *p)))
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    /* the steps offset b.data, which must not be NULL even if finish comes
       before any feed (NULL + 0 is undefined behaviour) */
    if (dsv4_buf_reserve(&p->b, 0)) {
        free(p);
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    }
    p->flags = flags;
    p->fn = fn;
    p->ctx = ctx;
    p->state = flags & DSV4_DSML_THINKING ? S_REASONING : S_CONTENT;
    *out = p;
    return 0;
}

int dsv4_dsml_feed(dsv4_dsml_parser *p, const char *text, size_t len, dsv4_err *err)
{
    dsv4_buf_append(&p->b, text, len);
    if (p->b.oom)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    return run(p, 0, err);
}

int dsv4_dsml_finish(dsv4_dsml_parser *p, dsv4_err *err)
{
    return run(p, 1, err);
}

const dsv4_dsml_msg *dsv4_dsml_parser_msg(const dsv4_dsml_parser *p) { return &p->msg; }

void dsv4_dsml_parser_free(dsv4_dsml_parser *p)
{
    if (!p)
        return;
    dsv4_buf_release(&p->b);
    dsv4_dsml_msg_release(&p->msg);
    free(p->ps.v);
    free(p);
}

int dsv4_dsml_parse(const char *text, size_t len, unsigned flags, dsv4_dsml_msg *out, dsv4_err *err)
{
    dsv4_dsml_parser *p;
    int rc;
    dsv4_dsml_msg_release(out);
    if (flags & DSV4_DSML_STRICT)
        return parse_strict(text, len, flags, out, err);
    if ((rc = dsv4_dsml_parser_new(&p, flags, NULL, NULL, err)))
        return rc;
    if (!(rc = dsv4_dsml_feed(p, text, len, err)) && !(rc = dsv4_dsml_finish(p, err))) {
        *out = p->msg;     /* handed over */
        memset(&p->msg, 0, sizeof p->msg);
    }
    dsv4_dsml_parser_free(p);
    return rc;
}
