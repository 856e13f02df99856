/* dsml — DeepSeek-V4 completion text -> an assistant message: reasoning,
 * content and DSML tool calls (spec/DSML.md §3).
 *
 * Two parsers:
 *  - strict (dsv4_dsml_parse with DSV4_DSML_STRICT): the official grammar
 *    of DSML.md §3.2 exactly; anything else (missing </think> or EOS, stray
 *    control tokens, a malformed block, text after it, a repeated parameter)
 *    is DSV4_E_FORMAT with a message naming the byte offset.  One deviation,
 *    so the output is always valid JSON: a string="false" value that is not
 *    JSON is an error (the official parser pastes it in unchecked).
 *  - lenient (the default; also the streaming parser): accepts truncated
 *    output and relaxed whitespace, and never loses text: reasoning ends at
 *    the first </think> (or where a tool block starts); a tool block may
 *    follow 0-2 newlines; a missing string attribute means a string; a
 *    string="false" value that is not JSON is kept as a JSON string (counted
 *    in warnings); a repeated parameter keeps its last value.  Whatever is
 *    not a complete invoke (a malformed or truncated block, text after the
 *    block or after EOS) stays in content verbatim.  On well-formed input
 *    both parsers give the same message.
 *
 * Text is bytes: invalid UTF-8 passes through into the message, and then
 * its JSON is not valid JSON.  Decode tokens with DSV4_TOK_LOSSY first, as
 * HF's decode gives the official parser its text.
 *
 * Tool call ids are "call_" + 24 hex digits of BLAKE2b over the completion
 * text up to the end of the call: deterministic, so parsing the same text
 * twice (or in other pieces) gives the same ids.
 *
 * Streaming: feed text pieces of any size (e.g. one decoded token each);
 * the parser emits reasoning and content text as soon as it cannot be the
 * start of a marker, and each tool call once its invoke is complete.  The
 * message after finish does not depend on how the text was split.
 *
 * Ownership: a dsv4_dsml_msg owns its strings (release frees them).  A
 * parser owns its buffer and message; the callback context is kept, not
 * owned.  Event pointers are valid during the callback only.  No global
 * state; one parser belongs to one thread. */
#ifndef DSV4_DSML_H
#define DSV4_DSML_H

#include <stddef.h>

#include "buf.h"
#include "err.h"

#define DSV4_DSML_THINKING 1u  /* the prompt ended with <think>: reasoning comes first */
#define DSV4_DSML_STRICT   2u  /* the official grammar; errors instead of recovery */

typedef struct dsv4_dsml_call {
    char *id;          /* "call_" + 24 hex */
    char *name;
    char *arguments;   /* a JSON object, Python-spaced: {"q": "x", "n": 3} */
} dsv4_dsml_call;

typedef struct dsv4_dsml_msg {
    dsv4_buf reasoning;       /* reasoning_content ("" in chat mode) */
    dsv4_buf content;
    dsv4_dsml_call *calls;    /* owned */
    size_t ncalls, cap;
    int eos;                  /* the end-of-sentence token was seen */
    int warnings;             /* lenient repairs (not-JSON string="false" values, repeated keys) */
} dsv4_dsml_msg;

#define DSV4_DSML_MSG_INIT { DSV4_BUF_INIT, DSV4_BUF_INIT, NULL, 0, 0, 0, 0 }
void dsv4_dsml_msg_release(dsv4_dsml_msg *m);

/* Append the OpenAI message JSON, Python-spaced, no newline:
 * {"role": "assistant", "content": …, "reasoning_content": …,
 *  "tool_calls": [{"id": …, "type": "function", "function": {"name": …, "arguments": …}}]} */
void dsv4_dsml_msg_json(const dsv4_dsml_msg *m, dsv4_buf *out);

/* Parse a whole completion text[0..len) (borrowed) into *out (initialised;
 * whatever it held is released first).  flags: DSV4_DSML_THINKING,
 * DSV4_DSML_STRICT.  Errors: DSV4_E_FORMAT (strict only), DSV4_E_NOMEM. */
int dsv4_dsml_parse(const char *text, size_t len, unsigned flags, dsv4_dsml_msg *out, dsv4_err *err);

/* ---- streaming (lenient) ---- */

enum { DSV4_DSML_EV_REASONING, DSV4_DSML_EV_CONTENT, DSV4_DSML_EV_CALL };

typedef struct dsv4_dsml_event {
    int type;                     /* DSV4_DSML_EV_* */
    const char *text;             /* REASONING/CONTENT: the new text */
    size_t len;
    const dsv4_dsml_call *call;   /* CALL: the complete call */
} dsv4_dsml_event;

/* A non-zero return stops the parser; feed/finish return it. */
typedef int (*dsv4_dsml_event_fn)(void *ctx, const dsv4_dsml_event *ev);

typedef struct dsv4_dsml_parser dsv4_dsml_parser;

/* flags: DSV4_DSML_THINKING (DSV4_DSML_STRICT is refused: DSV4_E_INVALID).
 * fn may be NULL (then only the message is built). */
int  dsv4_dsml_parser_new(dsv4_dsml_parser **out, unsigned flags, dsv4_dsml_event_fn fn, void *ctx,
                          dsv4_err *err);
int  dsv4_dsml_feed(dsv4_dsml_parser *p, const char *text, size_t len, dsv4_err *err);
/* End of the completion: whatever is held back is settled. */
int  dsv4_dsml_finish(dsv4_dsml_parser *p, dsv4_err *err);
/* The message built so far (complete after finish); borrowed from p. */
const dsv4_dsml_msg *dsv4_dsml_parser_msg(const dsv4_dsml_parser *p);
void dsv4_dsml_parser_free(dsv4_dsml_parser *p);   /* NULL is a no-op */

#endif
