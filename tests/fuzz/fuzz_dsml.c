/* fuzz_dsml — the DSML completion parsers (lib/dsml.h): strict and lenient
 * whole-text parsing and the streaming parser fed in pieces, with and
 * without DSV4_DSML_THINKING.
 *
 * Input: completion text.  Invariants (the header's promises): every error
 * has a message; the lenient parser never fails on any text; the streaming
 * message does not depend on how the text is split (whole, byte by byte,
 * pieces of varying size) and its events add up to it; a well-formed text
 * the strict parser accepts gives the lenient parser's message; for UTF-8 text, the
 * message and every call's arguments are valid JSON (an object); a callback's non-zero return stops the parser and is
 * returned by feed/finish. */
#include "fuzz.h"

#include "buf.h"
#include "dsml.h"
#include "json.h"

struct acc {
    dsv4_buf reasoning, content;
    size_t calls, events, stop_at;
};

static int on_event(void *ctx, const dsv4_dsml_event *ev)
{
    struct acc *a = ctx;
    a->events++;
    if (ev->type == DSV4_DSML_EV_REASONING)
        dsv4_buf_append(&a->reasoning, ev->text, ev->len);
    else if (ev->type == DSV4_DSML_EV_CONTENT)
        dsv4_buf_append(&a->content, ev->text, ev->len);
    else {
        FUZZ_ASSERT(ev->type == DSV4_DSML_EV_CALL && ev->call && ev->call->id && ev->call->name &&
                    ev->call->arguments, "bad call event");
        a->calls++;
    }
    return a->stop_at && a->events == a->stop_at ? 7 : 0;
}

static int same_buf(const dsv4_buf *a, const dsv4_buf *b)
{
    return a->len == b->len && (!a->len || !memcmp(a->data, b->data, a->len));
}

static void msg_json(const dsv4_dsml_msg *m, dsv4_buf *out)
{
    out->len = 0;
    dsv4_dsml_msg_json(m, out);
    FUZZ_ASSERT(!out->oom, "out of memory");
}

static int tame_word(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return 0;
    return 1;
}

/* "Well-formed" for the comparison of the two parsers: the strict parser's
 * regexes (the official ones, DOTALL and non-greedy) accept names, keys and
 * values that swallow quotes, tags and DSML markers, which the lenient
 * parser (deepseek-recipe semantics, DSML.md §3.5) reads differently by
 * design.  Compare only calls with plain names and keys and values free of
 * '<' and of the DSML bar. */
static int well_formed(const dsv4_dsml_msg *m)
{
    for (size_t i = 0; i < m->ncalls; i++) {
        const char *a = m->calls[i].arguments;
        dsv4_json *j = NULL;
        dsv4_err e = DSV4_ERR_INIT;
        int ok;
        if (!tame_word(m->calls[i].name, strlen(m->calls[i].name)) || strchr(a, '<') ||
            strstr(a, "\xef\xbd\x9c") || dsv4_json_parse(&j, a, strlen(a), 0, &e))
            return 0;
        ok = j->type == DSV4_JSON_OBJECT;
        for (size_t k = 0; ok && k < j->len; k++)
            ok = tame_word(j->keys[k], j->key_lens[k]);
        dsv4_json_free(j);
        if (!ok)
            return 0;
    }
    return 1;
}

/* Pieces: 0 = whole, 1 = byte by byte, 2 = sizes 1..16 from the text. */
static void stream(const char *s, size_t n, unsigned flags, int how, const dsv4_buf *want)
{
    dsv4_dsml_parser *p = NULL;
    struct acc a = { DSV4_BUF_INIT, DSV4_BUF_INIT, 0, 0, 0 };
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_buf got = DSV4_BUF_INIT;
    int rc = dsv4_dsml_parser_new(&p, flags, on_event, &a, &err);
    FUZZ_ASSERT(rc == 0, "parser_new: %s", err.msg);
    if (!n)
        FUZZ_ASSERT(dsv4_dsml_feed(p, "", 0, &err) == 0, "feed: %s", err.msg);
    for (size_t at = 0, k; at < n; at += k) {
        k = how == 0 ? n : how == 1 ? 1 : 1 + ((unsigned char)s[at] * 7u + (unsigned)at) % 16;
        if (k > n - at)
            k = n - at;
        rc = dsv4_dsml_feed(p, s + at, k, &err);
        FUZZ_ASSERT(rc == 0, "feed: %s", err.msg);
    }
    rc = dsv4_dsml_finish(p, &err);
    FUZZ_ASSERT(rc == 0, "finish: %s", err.msg);
    const dsv4_dsml_msg *m = dsv4_dsml_parser_msg(p);
    msg_json(m, &got);
    FUZZ_ASSERT(same_buf(&got, want), "split %d (flags %u) gives another message:\n%s\nvs\n%s", how, flags,
                got.data, want->data);
    FUZZ_ASSERT(same_buf(&a.reasoning, &m->reasoning) && same_buf(&a.content, &m->content) &&
                a.calls == m->ncalls, "events do not add up to the message");
    dsv4_buf_release(&got);
    dsv4_buf_release(&a.reasoning);
    dsv4_buf_release(&a.content);
    dsv4_dsml_parser_free(p);
}

/* A callback that stops at event k: feed or finish returns its value
 * (when there is a k-th event: want is 7, else 0). */
static void stop_early(const char *s, size_t n, unsigned flags, size_t k, int want)
{
    dsv4_dsml_parser *p = NULL;
    struct acc a = { DSV4_BUF_INIT, DSV4_BUF_INIT, 0, 0, k };
    dsv4_err err = DSV4_ERR_INIT;
    int rc = dsv4_dsml_parser_new(&p, flags, on_event, &a, &err);
    FUZZ_ASSERT(rc == 0, "parser_new: %s", err.msg);
    for (size_t at = 0; !rc && at < n; at++)
        rc = dsv4_dsml_feed(p, s + at, 1, &err);
    if (!rc)
        rc = dsv4_dsml_finish(p, &err);
    FUZZ_ASSERT(rc == want, "the callback stopped at event %zu, feed/finish returned %d (%s)", k, rc, err.msg);
    if (want)
        FUZZ_ASSERT(dsv4_dsml_feed(p, "x", 1, &err) != 0, "parser goes on after being stopped");
    dsv4_buf_release(&a.reasoning);
    dsv4_buf_release(&a.content);
    dsv4_dsml_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    /* invalid UTF-8 passes through into the JSON (dsml.h) */
    int utf8 = dsv4_utf8_valid_prefix(s, size) == size;
    for (unsigned flags = 0; flags <= DSV4_DSML_THINKING; flags += DSV4_DSML_THINKING) {
        dsv4_dsml_msg lm = DSV4_DSML_MSG_INIT, sm = DSV4_DSML_MSG_INIT;
        dsv4_buf lj = DSV4_BUF_INIT, sj = DSV4_BUF_INIT;
        dsv4_err err = DSV4_ERR_INIT;
        int rc = dsv4_dsml_parse(s, size, flags, &lm, &err);
        FUZZ_ASSERT(rc == 0, "lenient parse failed: %s", err.msg);
        msg_json(&lm, &lj);
        for (size_t i = 0; utf8 && i < lm.ncalls; i++) {
            dsv4_json *j = NULL;
            dsv4_err e2 = DSV4_ERR_INIT;
            rc = dsv4_json_parse(&j, lm.calls[i].arguments, strlen(lm.calls[i].arguments), 0, &e2);
            FUZZ_ASSERT(rc == 0 && j->type == DSV4_JSON_OBJECT, "call %zu: arguments not a JSON object: %s", i,
                        lm.calls[i].arguments);
            dsv4_json_free(j);
        }
        if (utf8) {   /* the message JSON itself is valid JSON */
            dsv4_json *j = NULL;
            dsv4_err e2 = DSV4_ERR_INIT;
            FUZZ_ASSERT(dsv4_json_parse(&j, lj.data, lj.len, 0, &e2) == 0, "message JSON: %s", e2.msg);
            dsv4_json_free(j);
        }
        /* byte by byte only for short texts: it dominates the time */
        for (int how = 0; how < 3; how++)
            if (how != 1 || size <= 2048)
                stream(s, size, flags, how, &lj);
        stop_early(s, size, flags, 1, lm.reasoning.len || lm.content.len || lm.ncalls ? 7 : 0);

        err = (dsv4_err)DSV4_ERR_INIT;
        rc = dsv4_dsml_parse(s, size, flags | DSV4_DSML_STRICT, &sm, &err);
        FUZZ_CHECK_ERR(rc, err);
        if (!rc && well_formed(&sm)) {
            msg_json(&sm, &sj);
            FUZZ_ASSERT(same_buf(&sj, &lj), "strict and lenient disagree:\n%s\nvs\n%s", sj.data, lj.data);
        }
        dsv4_dsml_msg_release(&lm);
        dsv4_dsml_msg_release(&sm);
        dsv4_buf_release(&lj);
        dsv4_buf_release(&sj);
    }
    return 0;
}
