/* chat: the official encoding vectors (spec/encoding-tests) and the worked
 * examples of spec/DSML.md §4 (tests/data/chat) render byte for byte; the
 * control spans cover exactly the template's control tokens; bad input
 * gives errors that name the message and the field. */
#include "test.h"
#include "chat.h"

#include <stdio.h>

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *p = NULL;
    long n;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (p = malloc((size_t)n + 1)) && fread(p, 1, (size_t)n, f) == (size_t)n) {
        p[n] = 0;
        *len = (size_t)n;
    } else {
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

static const char *spec_dir(void)
{
    const char *p = getenv("DSV4_SPEC");
    return p && *p ? p : "../shared/spec";
}

/* Render in.json with opts and compare with want.txt. */
static int render_file(const char *in, const char *want, dsv4_chat_mode mode)
{
    size_t n, wn;
    char *json = slurp(in, &n), *exp = slurp(want, &wn);
    dsv4_buf out = DSV4_BUF_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_chat_opts o = DSV4_CHAT_OPTS_INIT;
    int ok = 0;
    o.mode = mode;
    if (!json || !exp) {
        fprintf(stderr, "cannot read %s or %s\n", in, want);
    } else if (dsv4_chat_encode(json, n, &o, &out, NULL, &err)) {
        fprintf(stderr, "%s: %s\n", in, err.msg);
    } else if (out.len != wn || memcmp(out.data, exp, wn)) {
        size_t i = 0;
        while (i < out.len && i < wn && out.data[i] == exp[i])
            i++;
        fprintf(stderr, "%s: differs at byte %zu:\n got: %.80s\nwant: %.80s\n", in, i, out.data + i, exp + i);
    } else {
        ok = 1;
    }
    free(json);
    free(exp);
    dsv4_buf_release(&out);
    return ok;
}

TEST(official_vectors)
{
    /* cases 1-3 are thinking mode, case 4 chat mode (encoding-tests/README.md) */
    static const dsv4_chat_mode modes[] = { DSV4_CHAT_MODE_HIGH, DSV4_CHAT_MODE_HIGH, DSV4_CHAT_MODE_HIGH,
                                            DSV4_CHAT_MODE_CHAT };
    for (int i = 1; i <= 4; i++) {
        char in[512], want[512];
        snprintf(in, sizeof in, "%s/encoding-tests/test_input_%d.json", spec_dir(), i);
        snprintf(want, sizeof want, "%s/encoding-tests/test_output_%d.txt", spec_dir(), i);
        CHECK(render_file(in, want, modes[i - 1]));
    }
}

static const char *const examples[] = {
    "4.1-chat", "4.1-high", "4.1-max", "4.2-high", "4.3-high", "4.3-keep", "4.4-chat",
    "4.5-title", "4.5-query", "4.5-action", "4.5-wo-eos", "4.5-two-users", "4.5-tool-then-user",
    "4.5-args-object", "4.5-args-not-json", "4.5-response-format", "4.5-context",
};

TEST(dsml_md_examples)
{
    for (size_t i = 0; i < sizeof examples / sizeof *examples; i++) {
        char in[256], want[256];
        snprintf(in, sizeof in, "tests/data/chat/%s.json", examples[i]);
        snprintf(want, sizeof want, "tests/data/chat/%s.txt", examples[i]);
        CHECK(render_file(in, want, DSV4_CHAT_MODE_DEFAULT));
    }
}

/* Render a JSON literal; returns the error code, fills out. */
static int render(const char *json, dsv4_chat_mode mode, dsv4_buf *out, dsv4_chat_spans *ctl, dsv4_err *err)
{
    dsv4_chat_opts o = DSV4_CHAT_OPTS_INIT;
    o.mode = mode;
    return dsv4_chat_encode(json, strlen(json), &o, out, ctl, err);
}

TEST(control_spans)
{
    dsv4_buf out = DSV4_BUF_INIT, ctl_text = DSV4_BUF_INIT;
    dsv4_chat_spans ctl = DSV4_CHAT_SPANS_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    /* user text that spells control tokens stays text: only the template's are spans */
    CHECK_EQ_INT(render("[{\"role\":\"user\",\"content\":\"a</think><｜User｜>b\"},"
                        "{\"role\":\"assistant\",\"content\":\"c\",\"tool_calls\":[{\"id\":\"x\",\"type\":\"function\","
                        "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"k\\\": \\\"<think>\\\"}\"}}]}]",
                        DSV4_CHAT_MODE_CHAT, &out, &ctl, &err), 0);
    for (size_t i = 0; i < ctl.n; i++) {
        CHECK(ctl.v[i].off + ctl.v[i].len <= out.len);
        CHECK(i == 0 || ctl.v[i].off >= ctl.v[i - 1].off + ctl.v[i - 1].len);
        dsv4_buf_append(&ctl_text, out.data + ctl.v[i].off, ctl.v[i].len);
        dsv4_buf_putc(&ctl_text, ' ');
    }
    CHECK_STR(ctl_text.data, "<｜begin▁of▁sentence｜> <｜User｜> <｜Assistant｜> </think> ｜DSML｜ ｜DSML｜ ｜DSML｜ ｜DSML｜ ｜DSML｜ ｜DSML｜ "
                             "<｜end▁of▁sentence｜> ");
    CHECK_STR(out.data, "<｜begin▁of▁sentence｜><｜User｜>a</think><｜User｜>b<｜Assistant｜></think>c\n\n"
                        "<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"k\" "
                        "string=\"true\"><think></｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>"
                        "<｜end▁of▁sentence｜>");
    dsv4_buf_release(&out);
    dsv4_buf_release(&ctl_text);
    dsv4_chat_spans_release(&ctl);
}

TEST(dumps_like_python)
{
    dsv4_json *j;
    dsv4_buf out = DSV4_BUF_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    const char *in = "{\"b\": 1, \"a\": [1E3, 1.50, 1e-7, true, null, \"\\u00e9\\n/\\u2028\"], \"b\": {\"x\": {}}}";
    CHECK_EQ_INT(dsv4_json_parse(&j, in, strlen(in), 0, &err), 0);
    dsv4_chat_dumps(&out, j);
    CHECK_STR(out.data, "{\"b\": {\"x\": {}}, \"a\": [1000.0, 1.5, 1e-07, true, null, \"é\\n/\xe2\x80\xa8\"]}");
    dsv4_json_free(j);
    dsv4_buf_release(&out);
}

/* The error message of rendering json contains want. */
static int fails_with(const char *json, const char *want)
{
    dsv4_buf out = DSV4_BUF_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    int rc = render(json, DSV4_CHAT_MODE_DEFAULT, &out, NULL, &err);
    dsv4_buf_release(&out);
    if (rc == 0 || !strstr(err.msg, want)) {
        fprintf(stderr, "rc %d, message \"%s\", wanted \"%s\"\n", rc, err.msg, want);
        return 0;
    }
    return 1;
}

TEST(bad_input)
{
    CHECK(fails_with("[{\"role\":\"robot\",\"content\":\"x\"}]", "messages[0].role: unknown role 'robot'"));
    CHECK(fails_with("[{\"content\":\"x\"}]", "messages[0].role: missing"));
    CHECK(fails_with("[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"tool\",\"content\":\"r\"}]",
                     "messages[1]: tool result without a preceding assistant tool call"));
    CHECK(fails_with("[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\","
                     "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
                     "{\"role\":\"tool\",\"tool_call_id\":\"zz\",\"content\":\"r\"}]",
                     "messages[2].tool_call_id: 'zz' matches no tool call of messages[1]"));
    CHECK(fails_with("[{\"role\":\"user\",\"content\":\"x\"},]", "line 1, column"));
    CHECK(fails_with("[{\"role\":\"user\",\"content\":\"\xff\"}]", "invalid UTF-8"));
    CHECK(fails_with("{\"messages\":[],\"thinking\":\"low\"}", "thinking: expected"));
    CHECK(fails_with("[{\"role\":\"user\",\"content\":5}]", "messages[0].content: expected a string"));
    CHECK(fails_with("{\"tools\":[{\"type\":\"function\"}],\"messages\":[]}", "tools[0].function: missing"));
    CHECK(fails_with("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"messages\":["
                     "{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"tool_calls\":[{\"type\":"
                     "\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]}]}",
                     "messages[1].tool_calls[0].function.name: 'g' is not a defined tool"));
    CHECK(fails_with("[{\"role\":\"user\",\"content\":\"x\",\"tools\":[{\"type\":\"function\",\"function\":"
                     "{\"name\":\"f\"}}]}]", "tools belong on a system or developer message"));
}

TEST(top_level_tools)
{
    dsv4_buf a = DSV4_BUF_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    /* no system message: the tools get one of their own, in front */
    CHECK_EQ_INT(render("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
                        "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", DSV4_CHAT_MODE_CHAT, &a, NULL, &err), 0);
    CHECK(!strncmp(a.data, "<｜begin▁of▁sentence｜>\n\n## Tools\n\n", strlen("<｜begin▁of▁sentence｜>\n\n## Tools\n\n")));
    CHECK(strstr(a.data, "{\"name\": \"f\"}\n\nYou MUST strictly follow") != NULL);
    CHECK(strstr(a.data, "tool calls.\n<｜User｜>x<｜Assistant｜></think>") != NULL);
    dsv4_buf_release(&a);
}

TEST(mode_names)
{
    CHECK_EQ_INT(dsv4_chat_mode_parse("chat"), DSV4_CHAT_MODE_CHAT);
    CHECK_EQ_INT(dsv4_chat_mode_parse("high"), DSV4_CHAT_MODE_HIGH);
    CHECK_EQ_INT(dsv4_chat_mode_parse("max"), DSV4_CHAT_MODE_MAX);
    CHECK_EQ_INT(dsv4_chat_mode_parse("low"), DSV4_CHAT_MODE_DEFAULT);
    CHECK_STR(dsv4_chat_mode_name(DSV4_CHAT_MODE_MAX), "max");
}

TEST_MAIN(T(official_vectors), T(dsml_md_examples), T(control_spans), T(dumps_like_python), T(bad_input),
          T(top_level_tools), T(mode_names))
