/* fuzz_chat — the chat encoder (lib/chat.h): chat JSON (an array of
 * messages or an OpenAI-style request object) -> the DeepSeek-V4 prompt,
 * in every reasoning mode, with and without kept reasoning and BOS; and
 * dsv4_chat_dumps, its Python json.dumps.
 *
 * Input: chat JSON.  Invariants: every error has a message; encode (text)
 * and render (parsed tree) give the same prompt; the prompt is valid UTF-8;
 * control-token spans lie in order inside it; dumps output parses back. */
#include "fuzz.h"

#include "buf.h"
#include "chat.h"
#include "json.h"

static const dsv4_chat_opts optsv[] = {
    { DSV4_CHAT_MODE_DEFAULT, 0, 0 }, { DSV4_CHAT_MODE_CHAT, 0, 1 },
    { DSV4_CHAT_MODE_HIGH, 1, 0 },    { DSV4_CHAT_MODE_MAX, 0, 0 },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    dsv4_json *doc = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    int prc = dsv4_json_parse(&doc, text, size, 0, &err);

    for (size_t k = 0; k < sizeof optsv / sizeof optsv[0]; k++) {
        dsv4_buf out = DSV4_BUF_INIT, out2 = DSV4_BUF_INIT;
        dsv4_chat_spans ctl = DSV4_CHAT_SPANS_INIT;
        int rc;
        err = (dsv4_err)DSV4_ERR_INIT;
        rc = dsv4_chat_encode(text, size, &optsv[k], &out, &ctl, &err);
        FUZZ_CHECK_ERR(rc, err);
        FUZZ_ASSERT(rc || prc == 0, "encoded what does not parse as JSON");
        if (!rc) {
            size_t end = 0;
            FUZZ_ASSERT(!out.oom, "out of memory");
            FUZZ_ASSERT(dsv4_utf8_valid_prefix(out.data ? out.data : "", out.len) == out.len,
                        "the prompt is not valid UTF-8");
            for (size_t i = 0; i < ctl.n; i++) {
                FUZZ_ASSERT(ctl.v[i].off >= end && ctl.v[i].len && ctl.v[i].off + ctl.v[i].len <= out.len,
                            "span %zu [%zu, +%zu) out of order or range (prompt %zu bytes)", i, ctl.v[i].off,
                            ctl.v[i].len, out.len);
                end = ctl.v[i].off + ctl.v[i].len;
            }
            /* the tree gives the same prompt (and no spans asked for) */
            rc = dsv4_chat_render(doc, &optsv[k], &out2, NULL, &err);
            FUZZ_ASSERT(rc == 0 && out2.len == out.len && (!out.len || !memcmp(out.data, out2.data, out.len)),
                        "render and encode differ (rc %d: %s)", rc, err.msg);
        }
        dsv4_chat_spans_release(&ctl);
        dsv4_buf_release(&out);
        dsv4_buf_release(&out2);
    }
    if (!prc) {
        dsv4_buf d = DSV4_BUF_INIT;
        dsv4_json *back = NULL;
        dsv4_chat_dumps(&d, doc);
        err = (dsv4_err)DSV4_ERR_INIT;
        FUZZ_ASSERT(dsv4_json_parse(&back, d.data ? d.data : "", d.len, 0, &err) == 0, "dumps output: %s",
                    err.msg);
        dsv4_json_free(back);
        dsv4_buf_release(&d);
    }
    {   /* the mode names: NUL-terminated prefix of the input */
        char name[24];
        size_t n = size < sizeof name - 1 ? size : sizeof name - 1;
        memcpy(name, data, n);
        name[n] = 0;
        (void)dsv4_chat_mode_name(dsv4_chat_mode_parse(name));
    }
    dsv4_json_free(doc);
    return 0;
}
