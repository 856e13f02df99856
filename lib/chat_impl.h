/* chat_impl — what chat.c (reading, preprocessing) and chat_render.c (the
 * rendering rules) share.  Internal to the chat module; not installed.
 *
 * A msg borrows every string and subtree from the parsed JSON document; only
 * its blocks array is owned (freed by chat.c).  No global mutable state. */
#ifndef DSV4_CHAT_IMPL_H
#define DSV4_CHAT_IMPL_H

#include <stdarg.h>
#include <stdio.h>

#include "chat.h"

enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, ROLE_TOOL, ROLE_DEVELOPER, ROLE_REMINDER, ROLE_COUNT };

/* Quick-instruction tasks (DSML.md §2.9), in the order of chat_task_names. */
enum { TASK_ACTION, TASK_QUERY, TASK_AUTHORITY, TASK_DOMAIN, TASK_TITLE, TASK_READ_URL, CHAT_NTASKS };
extern const char *const chat_task_names[CHAT_NTASKS];

/* One content block of a merged user turn: a text or a tool result. */
typedef struct block {
    int is_tool;
    const char *text;              /* text block */
    size_t text_len;
    const dsv4_json *tool_content; /* tool result: a string or content parts (may be NULL) */
    const char *use_id;            /* tool result: the tool_call_id it answers ("" if none) */
    size_t use_id_len;
    long order;                    /* sort key: index of the answered call */
} block;

typedef struct msg {
    int role;                      /* ROLE_* */
    const char *src_list;          /* "messages", "context" or "tools": for messages */
    size_t src_index;
    const char *content;           /* NULL when absent */
    size_t content_len;
    const char *reasoning;         /* reasoning_content, NULL when absent */
    size_t reasoning_len;
    const dsv4_json *tools;        /* non-empty tools array or NULL */
    const dsv4_json *response_format;
    const dsv4_json *tool_calls;   /* non-empty array or NULL */
    const dsv4_json *tool_content; /* role tool: its content */
    const char *tool_call_id;
    size_t tool_call_id_len;
    int task;                      /* TASK_* or -1 */
    int wo_eos;
    int has_blocks;                /* a merged user turn */
    block *blocks;                 /* owned */
    size_t nblocks, cap;
} msg;

typedef struct chat_render_state {
    const msg *v;          /* the preprocessed list: context + messages */
    size_t n;
    size_t first;          /* render v[first .. first + count) */
    size_t count;
    long last_user;        /* index of the last user/developer message, -1 if none */
    int thinking;          /* thinking_mode == "thinking" */
    int effort_max;        /* reasoning_effort == "max" */
    int drop;              /* effective drop_thinking */
    int bos;               /* write the BOS text first */
    dsv4_buf *out;
    dsv4_chat_spans *ctl;  /* may be NULL */
} chat_render_state;

int chat_truthy(const dsv4_json *j);
/* Render st->v[first .. first+count) into st->out.  Errors: DSV4_E_FORMAT,
 * DSV4_E_NOMEM. */
int chat_render_all(chat_render_state *st, dsv4_err *err);

#endif
