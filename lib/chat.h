/* chat — OpenAI-style chat messages (+ tools) -> the exact DeepSeek-V4 prompt
 * text (spec/DSML.md §2; the official encoder is encoding_dsv4.py, April V4).
 *
 * Input document: a bare array of messages, or an object
 *   {"messages": [...], "tools": [...], "thinking": "chat|high|max"}
 * (an OpenAI request; other keys such as "model" are ignored).  Top-level
 * tools are attached to messages[0] when it is a system or developer message
 * (what the official test case 1 does); otherwise a system message holding
 * only the tools is inserted in front, as vLLM does, so they are rendered.
 *
 * Rendering follows the official encoder byte for byte: tool results merged
 * into user turns and sorted into call order, reasoning dropped before the
 * last user turn in thinking mode unless some message carries tools, tool
 * schemas and non-string arguments serialised like Python's
 * json.dumps(ensure_ascii=False) (objects with repeated keys behave like a
 * Python dict: first position, last value).  Input the official encoder
 * would reject or render nonsensically (unknown role, tool result with no
 * matching call, a call to a tool that is not defined when tools are,
 * content of the wrong type, ...) is an error that names the message index
 * and the field.
 *
 * Ownership: the JSON tree, texts and tokenizer are borrowed during a call.
 * Output is appended to a caller-owned dsv4_buf.  No state outside the
 * call; safe to use from several threads on different buffers. */
#ifndef DSV4_CHAT_H
#define DSV4_CHAT_H

#include <stddef.h>

#include "buf.h"
#include "err.h"
#include "json.h"
#include "tok.h"

/* The three reasoning modes of April V4 (DSML.md §2.6). */
typedef enum dsv4_chat_mode {
    DSV4_CHAT_MODE_DEFAULT = 0,  /* take "thinking" from the document, else HIGH */
    DSV4_CHAT_MODE_CHAT,         /* Non-think: every opener is <｜Assistant｜></think> */
    DSV4_CHAT_MODE_HIGH,         /* Think High: thinking_mode "thinking", effort None/"high" */
    DSV4_CHAT_MODE_MAX           /* Think Max: High plus the fixed effort prefix after BOS */
} dsv4_chat_mode;

typedef struct dsv4_chat_opts {
    dsv4_chat_mode mode;   /* overrides the document's "thinking" unless DEFAULT */
    int keep_thinking;     /* 1 = drop_thinking=False: keep reasoning of earlier turns */
    int no_bos;            /* 1 = add_default_bos_token=False */
} dsv4_chat_opts;

#define DSV4_CHAT_OPTS_INIT { DSV4_CHAT_MODE_DEFAULT, 0, 0 }

/* Where the renderer put template control tokens (BOS, <｜User｜>, </think>,
 * ...) in the output, so a caller can tokenize them as ids and the text
 * between them with special-token matching off (DSML.md §2.11). */
typedef struct dsv4_chat_span { size_t off, len; } dsv4_chat_span;
typedef struct dsv4_chat_spans {
    dsv4_chat_span *v;     /* owned; free with dsv4_chat_spans_release */
    size_t n, cap;
} dsv4_chat_spans;

#define DSV4_CHAT_SPANS_INIT { NULL, 0, 0 }
void dsv4_chat_spans_release(dsv4_chat_spans *s);

/* Parse a mode name: "chat", "high" or "max" (also "thinking" = high,
 * "non-think"/"none" = chat).  Returns the mode or DSV4_CHAT_MODE_DEFAULT. */
dsv4_chat_mode dsv4_chat_mode_parse(const char *name);
const char *dsv4_chat_mode_name(dsv4_chat_mode m);

/* Render a parsed document (array or object, see above) and append the
 * prompt text to out.  ctl (may be NULL) receives the control-token spans,
 * offsets relative to out->data.  On error out may hold a partial prompt.
 * Errors: DSV4_E_FORMAT (bad input, message "messages[3].role: ..."),
 * DSV4_E_NOMEM. */
int dsv4_chat_render(const dsv4_json *doc, const dsv4_chat_opts *opts, dsv4_buf *out,
                     dsv4_chat_spans *ctl, dsv4_err *err);

/* Parse JSON text (errors give line:column) and render it. */
int dsv4_chat_encode(const char *json, size_t len, const dsv4_chat_opts *opts, dsv4_buf *out,
                     dsv4_chat_spans *ctl, dsv4_err *err);

/* Token ids of a rendered prompt text[0..len): each control span becomes
 * the id of its spelling, the text between spans is tokenized with
 * added-token matching off (DSV4_TOK_NO_ADDED), so caller text that spells
 * a control token stays text (DSML.md §2.11).  Appends to *out.  Errors:
 * DSV4_E_NOTFOUND (the tokenizer lacks a control token), DSV4_E_NOMEM. */
int dsv4_chat_tokenize(const dsv4_tok *t, const char *text, size_t len, const dsv4_chat_spans *ctl,
                       dsv4_tok_ids *out, dsv4_err *err);

/* Python json.dumps(x, ensure_ascii=False) of a tree with dict semantics for
 * repeated keys (used for tool schemas, arguments and response_format). */
void dsv4_chat_dumps(dsv4_buf *out, const dsv4_json *j);

#endif
