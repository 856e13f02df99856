/* dsml: the parse examples of spec/DSML.md §4, the official parser's error
 * cases (§3.3) in strict mode, lenient recovery that keeps every byte of
 * text, and streaming: any split of the input gives the one-shot result. */
#include "test.h"
#include "dsml.h"

#define EOS "<｜end▁of▁sentence｜>"
#define D "｜DSML｜"

/* The message JSON of text, with the ids cut out (the examples have none). */
static char *parse_json(const char *text, unsigned flags, int *rc, char *msg)
{
    dsv4_dsml_msg m = DSV4_DSML_MSG_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_buf out = DSV4_BUF_INIT;
    char *p;
    *rc = dsv4_dsml_parse(text, strlen(text), flags, &m, &err);
    if (msg)
        snprintf(msg, 256, "%s", err.msg);
    dsv4_dsml_msg_json(&m, &out);
    dsv4_dsml_msg_release(&m);
    while ((p = strstr(out.data, "{\"id\": \"call_")))
        memmove(p + 1, p + 1 + 39, strlen(p + 1 + 39) + 1);   /* "id": "call_<24 hex>", */
    return dsv4_buf_detach(&out, NULL);
}

static void check_parse(const char *text, unsigned flags, const char *want)
{
    for (int strict = 0; strict < 2; strict++) {
        int rc;
        char msg[256], *got = parse_json(text, flags | (strict ? DSV4_DSML_STRICT : 0), &rc, msg);
        if (rc)
            fprintf(stderr, "%s: %s\n", strict ? "strict" : "lenient", msg);
        CHECK_EQ_INT(rc, 0);
        CHECK_STR(got, want);
        free(got);
    }
}

TEST(examples)
{
    /* §4.2 */
    check_parse("The user wants Rome weather.</think>\n\n<" D "tool_calls>\n<" D "invoke name=\"get_weather\">\n<" D
                "parameter name=\"city\" string=\"true\">Rome</" D "parameter>\n<" D "parameter name=\"days\" "
                "string=\"false\">2</" D "parameter>\n</" D "invoke>\n</" D "tool_calls>" EOS, DSV4_DSML_THINKING,
                "{\"role\": \"assistant\", \"content\": \"\", \"reasoning_content\": \"The user wants Rome weather.\", "
                "\"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": "
                "\"{\\\"city\\\": \\\"Rome\\\", \\\"days\\\": 2}\"}}]}");
    /* §4.4 */
    check_parse("Let me check.\n\n<" D "tool_calls>\n<" D "invoke name=\"search\">\n<" D "parameter name=\"q\" "
                "string=\"true\">x<y & \"z\"\nline 2</" D "parameter>\n<" D "parameter name=\"opts\" string=\"false\">"
                "{\"n\": 3, \"safe\": true}</" D "parameter>\n</" D "invoke>\n<" D "invoke name=\"now\">\n</" D
                "invoke>\n</" D "tool_calls>" EOS, 0,
                "{\"role\": \"assistant\", \"content\": \"Let me check.\", \"reasoning_content\": \"\", \"tool_calls\": "
                "[{\"type\": \"function\", \"function\": {\"name\": \"search\", \"arguments\": \"{\\\"q\\\": "
                "\\\"x<y & \\\\\\\"z\\\\\\\"\\\\nline 2\\\", \\\"opts\\\": {\\\"n\\\": 3, \\\"safe\\\": true}}\"}}, "
                "{\"type\": \"function\", \"function\": {\"name\": \"now\", \"arguments\": \"{}\"}}]}");
    /* §4.3 */
    check_parse("Simple arithmetic.</think>2 + 2 = 4." EOS, DSV4_DSML_THINKING,
                "{\"role\": \"assistant\", \"content\": \"2 + 2 = 4.\", \"reasoning_content\": \"Simple arithmetic.\", "
                "\"tool_calls\": []}");
    /* §3.3: accepted by the official parser */
    check_parse("</think>ok" EOS, DSV4_DSML_THINKING,
                "{\"role\": \"assistant\", \"content\": \"ok\", \"reasoning_content\": \"\", \"tool_calls\": []}");
    check_parse("\n\n<" D "tool_calls>\n<" D "invoke name=\"f\">\n\n</" D "invoke>\n</" D "tool_calls>", 0,
                "{\"role\": \"assistant\", \"content\": \"\", \"reasoning_content\": \"\", \"tool_calls\": "
                "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": \"{}\"}}]}");
}

/* Strict parsing of text fails with a message containing want. */
static int strict_fails(const char *text, unsigned flags, const char *want)
{
    int rc;
    char msg[256], *got = parse_json(text, flags | DSV4_DSML_STRICT, &rc, msg);
    free(got);
    if (rc != DSV4_E_FORMAT || !strstr(msg, want)) {
        fprintf(stderr, "rc %d, \"%s\", wanted \"%s\"\n", rc, msg, want);
        return 0;
    }
    return 1;
}

#define BLOCK "\n\n<" D "tool_calls>\n<" D "invoke name=\"s\">\n"

TEST(strict_errors)
{
    CHECK(strict_fails("Hello wor", 0, "missing the end-of-sentence token"));
    CHECK(strict_fails("reasoning only" EOS, DSV4_DSML_THINKING, "missing </think>"));
    CHECK(strict_fails("hmm" BLOCK, DSV4_DSML_THINKING, "missing </think>"));
    CHECK(strict_fails("x\n<" D "tool_calls>\n" EOS, 0, "unexpected special token in the content"));
    CHECK(strict_fails("x" BLOCK "<" D "parameter name=\"q\" string=\"true\">abc", 0, "parameter format error"));
    CHECK(strict_fails("x" BLOCK "<" D "parameter name=\"q\">a</" D "parameter>\n</" D "invoke>\n</" D "tool_calls>",
                       0, "parameter format error"));
    CHECK(strict_fails("x" BLOCK "<" D "parameter name=\"q\" string=\"true\">a</" D "parameter>\n<" D "parameter "
                       "name=\"q\" string=\"true\">b</" D "parameter>\n</" D "invoke>\n</" D "tool_calls>", 0,
                       "duplicate parameter name 'q'"));
    CHECK(strict_fails("\n\n<" D "tool_calls>\n  <" D "invoke name=\"s\">\n</" D "invoke>\n</" D "tool_calls>", 0,
                       "expected '>\\n'"));
    CHECK(strict_fails("x" BLOCK "</" D "invoke>\n</" D "tool_calls>more" EOS, 0, "unexpected content after tool calls"));
    CHECK(strict_fails("a</think>b" EOS, 0, "unexpected special token"));
    CHECK(strict_fails("x" BLOCK "<" D "parameter name=\"n\" string=\"false\">not json</" D "parameter>\n</" D
                       "invoke>\n</" D "tool_calls>", 0, "not JSON"));
    CHECK(strict_fails("ok" EOS "more", 0, "after the end-of-sentence token"));
}

static void check_lenient(const char *text, unsigned flags, const char *want)
{
    int rc;
    char *got = parse_json(text, flags, &rc, NULL);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR(got, want);
    free(got);
}

TEST(lenient_recovery)
{
    /* truncated before any marker: reasoning / content as far as it goes */
    check_lenient("Hello wor", 0, "{\"role\": \"assistant\", \"content\": \"Hello wor\", \"reasoning_content\": \"\", "
                  "\"tool_calls\": []}");
    check_lenient("still thinking", DSV4_DSML_THINKING, "{\"role\": \"assistant\", \"content\": \"\", "
                  "\"reasoning_content\": \"still thinking\", \"tool_calls\": []}");
    /* a block truncated inside a value: the raw text stays content */
    check_lenient("x" BLOCK "<" D "parameter name=\"q\" string=\"true\">ab", 0,
                  "{\"role\": \"assistant\", \"content\": \"x\\n\\n<" D "tool_calls>\\n<" D "invoke name=\\\"s\\\">\\n<"
                  D "parameter name=\\\"q\\\" string=\\\"true\\\">ab\", \"reasoning_content\": \"\", \"tool_calls\": []}");
    /* a complete call, then a truncated one: the first is kept */
    check_lenient("x" BLOCK "</" D "invoke>\n<" D "invoke name=\"t\">", 0,
                  "{\"role\": \"assistant\", \"content\": \"x\\n<" D "invoke name=\\\"t\\\">\", \"reasoning_content\": "
                  "\"\", \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"s\", \"arguments\": "
                  "\"{}\"}}]}");
    /* a tool block inside the reasoning, one newline, no string attribute,
     * a not-JSON string="false" value, no closing tag of the block */
    check_lenient("plan\n<" D "tool_calls>\n<" D "invoke name=\"f\">\n<" D "parameter name=\"a\">1</" D "parameter>\n<"
                  D "parameter name=\"b\" string=\"false\">nope</" D "parameter>\n</" D "invoke>\n", DSV4_DSML_THINKING,
                  "{\"role\": \"assistant\", \"content\": \"\", \"reasoning_content\": \"plan\", \"tool_calls\": "
                  "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": \"{\\\"a\\\": \\\"1\\\", "
                  "\\\"b\\\": \\\"nope\\\"}\"}}]}");
    /* text after the block and after EOS is kept */
    check_lenient("x" BLOCK "</" D "invoke>\n</" D "tool_calls>tail" EOS "after", 0,
                  "{\"role\": \"assistant\", \"content\": \"xtailafter\", \"reasoning_content\": \"\", \"tool_calls\": "
                  "[{\"type\": \"function\", \"function\": {\"name\": \"s\", \"arguments\": \"{}\"}}]}");
    /* a stray </think> in content stays text */
    check_lenient("a</think>b" EOS, 0, "{\"role\": \"assistant\", \"content\": \"a</think>b\", \"reasoning_content\": "
                  "\"\", \"tool_calls\": []}");
}

/* Streaming: feed text in the pieces cut at the given positions; the
 * events' text must add up to the message. */
struct evsum { dsv4_buf r, c; size_t calls; };

static int on_event(void *ctx, const dsv4_dsml_event *ev)
{
    struct evsum *e = ctx;
    if (ev->type == DSV4_DSML_EV_REASONING)
        dsv4_buf_append(&e->r, ev->text, ev->len);
    else if (ev->type == DSV4_DSML_EV_CONTENT)
        dsv4_buf_append(&e->c, ev->text, ev->len);
    else
        e->calls++;
    return 0;
}

static char *stream_json(const char *text, unsigned flags, const size_t *cuts, size_t ncuts)
{
    dsv4_dsml_parser *p;
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_buf out = DSV4_BUF_INIT;
    struct evsum e = { DSV4_BUF_INIT, DSV4_BUF_INIT, 0 };
    size_t at = 0, n = strlen(text);
    const dsv4_dsml_msg *m;
    if (dsv4_dsml_parser_new(&p, flags, on_event, &e, &err))
        return NULL;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        if (dsv4_dsml_feed(p, text + at, to - at, &err))
            break;
        at = to;
    }
    dsv4_dsml_finish(p, &err);
    m = dsv4_dsml_parser_msg(p);
    dsv4_dsml_msg_json(m, &out);
    if (e.r.len != m->reasoning.len || (e.r.len && memcmp(e.r.data, m->reasoning.data, e.r.len)) ||
        e.c.len != m->content.len || (e.c.len && memcmp(e.c.data, m->content.data, e.c.len)) || e.calls != m->ncalls)
        dsv4_buf_puts(&out, " (events differ)");
    dsv4_buf_release(&e.r);
    dsv4_buf_release(&e.c);
    dsv4_dsml_parser_free(p);
    return dsv4_buf_detach(&out, NULL);
}

static const char *const stream_inputs[] = {
    "The user wants Rome weather.</think>\n\n<" D "tool_calls>\n<" D "invoke name=\"get_weather\">\n<" D
    "parameter name=\"city\" string=\"true\">Rome</" D "parameter>\n<" D "parameter name=\"days\" string=\"false\">2</"
    D "parameter>\n</" D "invoke>\n</" D "tool_calls>" EOS,
    "plan\n\n\n<" D "tool_calls>\n<" D "invoke name=\"f\">\n<" D "parameter name=\"a\">1</" D "parameter>\n</" D
    "invoke>\n<" D "invoke name=\"g\">",
    "a</thin</think>b\n\n<x" BLOCK "</" D "invoke>\n</" D "tool_calls> t " EOS "z",
    "x" BLOCK "<" D "parameter name=\"q\" string=\"tru\">v</" D "parameter>" EOS,
};

TEST(streaming_any_split)
{
    for (size_t k = 0; k < sizeof stream_inputs / sizeof *stream_inputs; k++) {
        for (unsigned flags = 0; flags <= DSV4_DSML_THINKING; flags += DSV4_DSML_THINKING) {
            const char *t = stream_inputs[k];
            size_t n = strlen(t), *all = malloc(n * sizeof *all);
            int rc, bad = 0;
            char *one = parse_json(t, flags, &rc, NULL), *ref = stream_json(t, flags, NULL, 0), *s;
            /* one-shot parse == one feed (ids included) */
            CHECK(ref && !strstr(ref, "(events differ)"));
            for (size_t i = 0; i < n; i++)
                all[i] = i;
            /* every two-piece split, then byte by byte */
            for (size_t i = 1; i < n && !bad; i++) {
                s = stream_json(t, flags, &i, 1);
                bad = !s || strcmp(s, ref);
                if (bad)
                    fprintf(stderr, "input %zu, split at %zu:\n got %s\nwant %s\n", k, i, s, ref);
                free(s);
            }
            s = stream_json(t, flags, all + 1, n - 1);
            bad |= !s || strcmp(s, ref);
            CHECK(!bad);
            CHECK(one != NULL);
            free(s);
            free(one);
            free(ref);
            free(all);
        }
    }
}

/* Random mixes of markers, partial markers and text: any split gives the
 * one-shot message (a fixed seed keeps failures reproducible). */
TEST(streaming_random)
{
    static const char *const frag[] = {
        "<" D "tool_calls>", "</" D "tool_calls>", "<" D "invoke name=\"f\">", "</" D "invoke>",
        "<" D "parameter name=\"k\" string=\"true\">", "<" D "parameter name=\"n\" string=\"false\">",
        "</" D "parameter>", "</think>", EOS, "\n", "\n\n", " ", ">", "\"", "<", "</", "<" D, "</thi", "<｜end",
        "1", "x", "[1, 2]", "é", "string=\"", "name=\"",
    };
    unsigned seed = 12345;
    for (int round = 0; round < 400; round++) {
        char text[600];
        size_t n = 0, cuts[4];
        int parts = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 24;
        for (int i = 0; i < parts; i++) {
            const char *f = frag[((seed = seed * 1103515245u + 12345u) >> 16) % (sizeof frag / sizeof *frag)];
            if (n + strlen(f) < sizeof text) {
                memcpy(text + n, f, strlen(f));
                n += strlen(f);
            }
        }
        text[n] = 0;
        for (int i = 0; i < 4; i++)
            cuts[i] = n ? ((seed = seed * 1103515245u + 12345u) >> 16) % (n + 1) : 0;
        for (int i = 1; i < 4; i++)   /* ascending */
            for (int j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                size_t t = cuts[j];
                cuts[j] = cuts[j - 1];
                cuts[j - 1] = t;
            }
        for (unsigned flags = 0; flags <= DSV4_DSML_THINKING; flags += DSV4_DSML_THINKING) {
            char *ref = stream_json(text, flags, NULL, 0), *got = stream_json(text, flags, cuts, 4);
            CHECK(ref && got && !strcmp(ref, got) && !strstr(ref, "(events differ)"));
            if (ref && got && strcmp(ref, got))
                fprintf(stderr, "round %d: %s\n got %s\nwant %s\n", round, text, got, ref);
            free(ref);
            free(got);
        }
    }
}

TEST(ids_deterministic)
{
    dsv4_dsml_msg a = DSV4_DSML_MSG_INIT, b = DSV4_DSML_MSG_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    const char *t = "x" BLOCK "</" D "invoke>\n<" D "invoke name=\"s\">\n</" D "invoke>\n</" D "tool_calls>" EOS;
    CHECK_EQ_INT(dsv4_dsml_parse(t, strlen(t), 0, &a, &err), 0);
    CHECK_EQ_INT(dsv4_dsml_parse(t, strlen(t), DSV4_DSML_STRICT, &b, &err), 0);
    CHECK_EQ_INT(a.ncalls, 2);
    CHECK_EQ_INT(b.ncalls, 2);
    if (a.ncalls == 2 && b.ncalls == 2) {
        CHECK_STR(a.calls[0].id, b.calls[0].id);
        CHECK_STR(a.calls[1].id, b.calls[1].id);
        CHECK(strcmp(a.calls[0].id, a.calls[1].id) != 0);
        CHECK_EQ_INT(strlen(a.calls[0].id), 29);
    }
    CHECK_EQ_INT(a.eos, 1);
    dsv4_dsml_msg_release(&a);
    dsv4_dsml_msg_release(&b);
}

/* The assistant turns of official vector 1, as rendered, parse back into
 * the messages they came from (the official test driver's round trip). */
TEST(round_trip_official)
{
    const char *dir = getenv("DSV4_SPEC");
    char path[512], *text = NULL, *p, *e;
    FILE *f;
    long n = 0;
    dsv4_dsml_msg m = DSV4_DSML_MSG_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    snprintf(path, sizeof path, "%s/encoding-tests/test_output_1.txt", dir && *dir ? dir : "../shared/spec");
    f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f)
        return;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)n + 1)))
        text[fread(text, 1, (size_t)n, f)] = 0;
    fclose(f);
    CHECK(text != NULL);
    if (!text)
        return;
    /* first assistant turn: reasoning and a call */
    p = strstr(text, "<｜Assistant｜><think>") + strlen("<｜Assistant｜><think>");
    e = strstr(p, EOS) + strlen(EOS);
    CHECK_EQ_INT(dsv4_dsml_parse(p, (size_t)(e - p), DSV4_DSML_THINKING | DSV4_DSML_STRICT, &m, &err), 0);
    CHECK_STR(m.reasoning.data, "The user wants to know the weather in Beijing. I should use the get_weather tool.");
    CHECK_EQ_INT(m.content.len, 0);
    CHECK_EQ_INT(m.ncalls, 1);
    if (m.ncalls == 1) {
        CHECK_STR(m.calls[0].name, "get_weather");
        CHECK_STR(m.calls[0].arguments, "{\"location\": \"Beijing\", \"unit\": \"celsius\"}");
    }
    /* second: reasoning and the answer */
    p = strstr(e, "<｜Assistant｜><think>") + strlen("<｜Assistant｜><think>");
    CHECK_EQ_INT(dsv4_dsml_parse(p, strlen(p), DSV4_DSML_THINKING | DSV4_DSML_STRICT, &m, &err), 0);
    CHECK_STR(m.reasoning.data, "Got the weather data. Let me format a nice response.");
    CHECK_STR(m.content.data, "The weather in Beijing is currently sunny with a temperature of 22°C and 45% humidity.");
    CHECK_EQ_INT(m.ncalls, 0);
    dsv4_dsml_msg_release(&m);
    free(text);
}

/* A callback's non-zero return stops the parser and feed/finish return it
 * (dsml.h), also for a call event and with an error struct that still holds
 * an older code.  They returned DSV4_E_INVALID, or that stale code (found by
 * fuzz_dsml). */
struct stopper { int at, n, value; };

static int stop_cb(void *ctx, const dsv4_dsml_event *ev)
{
    struct stopper *s = ctx;
    (void)ev;
    return ++s->n == s->at ? s->value : 0;
}

TEST(callback_stop)
{
    static const char *const texts[] = { "hello" EOS, "x" BLOCK "</" D "invoke>\n</" D "tool_calls>" EOS };
    for (int i = 0; i < 2; i++) {
        struct stopper st = { i + 1, 0, DSV4_E_IO };   /* text 1: the call is the second event */
        dsv4_dsml_parser *p = NULL;
        dsv4_err err = { DSV4_E_FORMAT, "an older error" };
        int rc;
        CHECK(dsv4_dsml_parser_new(&p, 0, stop_cb, &st, &err) == 0);
        if (!p)
            continue;
        rc = dsv4_dsml_feed(p, texts[i], strlen(texts[i]), &err);
        if (!rc)
            rc = dsv4_dsml_finish(p, &err);
        CHECK_EQ_INT(rc, DSV4_E_IO);
        CHECK_EQ_INT(err.code, DSV4_E_IO);
        CHECK(strstr(err.msg, "stopped by the event callback") != NULL);
        CHECK_EQ_INT(dsv4_dsml_feed(p, "y", 1, &err), DSV4_E_INVALID);
        dsv4_dsml_parser_free(p);
    }
}

/* finish with nothing fed: an empty message (the text buffer was NULL and
 * offset by 0, undefined behaviour; found by fuzz_dsml under UBSan) */
TEST(finish_unfed)
{
    dsv4_dsml_parser *p = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    CHECK(dsv4_dsml_parser_new(&p, DSV4_DSML_THINKING, NULL, NULL, &err) == 0);
    if (!p)
        return;
    CHECK_EQ_INT(dsv4_dsml_finish(p, &err), 0);
    CHECK(dsv4_dsml_parser_msg(p)->ncalls == 0 && dsv4_dsml_parser_msg(p)->content.len == 0);
    dsv4_dsml_parser_free(p);
}

TEST_MAIN(T(examples), T(round_trip_official), T(strict_errors), T(lenient_recovery), T(streaming_any_split), T(streaming_random), T(ids_deterministic),
          T(callback_stop), T(finish_unfed))
