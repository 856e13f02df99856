/* chat_render — the rendering rules of the official encoder (DSML.md §2.4,
 * §2.5, §2.7): one body per role plus the transition suffix, the tools and
 * response-format blocks, DSML tool calls of assistant turns, and the
 * Python json.dumps serialisation they use.
 *
 * Output goes through two writers: put_tmpl for template text, whose
 * control-token spellings are recorded as spans (they become token ids),
 * and put_text for caller text, recorded as nothing (it is tokenized with
 * special-token matching off, DSML.md §2.11). */
#include "chat_impl.h"

#include <stdlib.h>
#include <string.h>

#define BOS "<｜begin▁of▁sentence｜>"
#define EOS "<｜end▁of▁sentence｜>"
#define USER "<｜User｜>"
#define ASSISTANT "<｜Assistant｜>"
#define THINK "<think>"
#define END_THINK "</think>"
#define DSML "｜DSML｜"
#define REMINDER "<｜latest_reminder｜>"

/* Every control-token spelling the template writes.  Template text is
 * scanned for them; caller text never is. */
static const char *const control[] = {
    BOS, EOS, USER, ASSISTANT, THINK, END_THINK, DSML, REMINDER,
    "<｜action｜>", "<｜query｜>", "<｜authority｜>", "<｜domain｜>", "<｜title｜>", "<｜read_url｜>",
};

static const char effort_max_prefix[] =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the "
    "root cause, rigorously stress-testing your logic against all potential paths, edge cases, and "
    "adversarial scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, considered "
    "alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked.\n\n";

static const char tools_head[] =
    "## Tools\n\n"
    "You have access to a set of tools to help answer the user's question. You can invoke tools by writing a "
    "\"<" DSML "tool_calls>\" block like the following:\n\n"
    "<" DSML "tool_calls>\n"
    "<" DSML "invoke name=\"$TOOL_NAME\">\n"
    "<" DSML "parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</" DSML "parameter>\n"
    "...\n"
    "</" DSML "invoke>\n"
    "<" DSML "invoke name=\"$TOOL_NAME2\">\n"
    "...\n"
    "</" DSML "invoke>\n"
    "</" DSML "tool_calls>\n\n"
    "String parameters should be specified as is and set `string=\"true\"`. For all other types (numbers, "
    "booleans, arrays, objects), pass the value in JSON format and set `string=\"false\"`.\n\n"
    "If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning inside "
    "<think>...</think> BEFORE any tool calls or final response.\n\n"
    "Otherwise, output directly after </think> with tool calls or final response.\n\n"
    "### Available Tool Schemas\n\n";

static const char tools_tail[] =
    "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.\n";

static const char rf_head[] =
    "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";

static void add_span(chat_render_state *st, size_t off, size_t len)
{
    dsv4_chat_spans *s = st->ctl;
    if (!s)
        return;
    if (dsv4_grow((void **)&s->v, &s->cap, s->n, sizeof *s->v)) {
        st->out->oom = 1;   /* reported as DSV4_E_NOMEM at the end */
        return;
    }
    s->v[s->n].off = off;
    s->v[s->n].len = len;
    s->n++;
}

static void put_text(chat_render_state *st, const char *s, size_t n)
{
    dsv4_buf_append(st->out, s, n);
}

/* Template text: control spellings inside it become spans. */
static void put_tmpl(chat_render_state *st, const char *s)
{
    while (*s) {
        const char *best = NULL;
        size_t blen = 0;
        for (size_t k = 0; k < sizeof control / sizeof *control; k++) {
            const char *p = strstr(s, control[k]);
            if (p && (!best || p < best)) {
                best = p;
                blen = strlen(control[k]);
            }
        }
        if (!best) {
            put_text(st, s, strlen(s));
            return;
        }
        put_text(st, s, (size_t)(best - s));
        add_span(st, st->out->len, blen);
        put_text(st, best, blen);
        s = best + blen;
    }
}

/* ---- Python json.dumps(ensure_ascii=False) -------------------------------- */

/* Index of the last occurrence of key i's name (a Python dict keeps the
 * first position and the last value); -1 when an earlier key has the same
 * name, so the caller skips it. */
static long dict_value(const dsv4_json *o, size_t i)
{
    size_t last = i;
    for (size_t k = 0; k < i; k++)
        if (o->key_lens[k] == o->key_lens[i] && !memcmp(o->keys[k], o->keys[i], o->key_lens[i]))
            return -1;
    for (size_t k = i + 1; k < o->len; k++)
        if (o->key_lens[k] == o->key_lens[i] && !memcmp(o->keys[k], o->keys[i], o->key_lens[i]))
            last = k;
    return (long)last;
}

void dsv4_chat_dumps(dsv4_buf *out, const dsv4_json *j)
{
    int first = 1;
    switch (j->type) {
    case DSV4_JSON_ARRAY:
        dsv4_buf_putc(out, '[');
        for (size_t i = 0; i < j->len; i++) {
            if (i)
                dsv4_buf_puts(out, ", ");
            dsv4_chat_dumps(out, &j->items[i]);
        }
        dsv4_buf_putc(out, ']');
        return;
    case DSV4_JSON_OBJECT:
        dsv4_buf_putc(out, '{');
        for (size_t i = 0; i < j->len; i++) {
            long v = dict_value(j, i);
            if (v < 0)
                continue;
            if (!first)
                dsv4_buf_puts(out, ", ");
            first = 0;
            dsv4_json_write_str(out, j->keys[i], j->key_lens[i]);
            dsv4_buf_puts(out, ": ");
            dsv4_chat_dumps(out, &j->items[v]);
        }
        dsv4_buf_putc(out, '}');
        return;
    default:
        dsv4_json_write(out, j, -1, ", ", ": ");
    }
}

static void put_json(chat_render_state *st, const dsv4_json *j)
{
    dsv4_chat_dumps(st->out, j);
}

/* ---- bodies ---------------------------------------------------------------- */

static void put_tools(chat_render_state *st, const dsv4_json *tools)
{
    put_tmpl(st, "\n\n");
    put_tmpl(st, tools_head);
    for (size_t i = 0; i < tools->len; i++) {
        if (i)
            put_tmpl(st, "\n");
        put_json(st, dsv4_json_get(&tools->items[i], "function"));
    }
    put_tmpl(st, tools_tail);
}

/* system and developer: content, tools block, response-format block. */
static void put_system_like(chat_render_state *st, const msg *m)
{
    if (m->content)
        put_text(st, m->content, m->content_len);
    if (m->tools)
        put_tools(st, m->tools);
    if (m->response_format) {
        put_tmpl(st, "\n\n");
        put_tmpl(st, rf_head);
        put_json(st, m->response_format);
    }
}

static void put_tool_result(chat_render_state *st, const dsv4_json *c)
{
    put_tmpl(st, "<tool_result>");
    if (c && c->type == DSV4_JSON_STRING) {
        put_text(st, c->str, c->len);
    } else if (c && c->type == DSV4_JSON_ARRAY) {
        for (size_t i = 0; i < c->len; i++) {
            const dsv4_json *ty = dsv4_json_get(&c->items[i], "type");
            const dsv4_json *tx = dsv4_json_get(&c->items[i], "text");
            if (i)
                put_tmpl(st, "\n\n");
            if (ty && ty->type == DSV4_JSON_STRING && !strcmp(ty->str, "text") && tx) {
                put_text(st, tx->str, tx->len);
            } else {
                put_tmpl(st, "[Unsupported ");
                if (ty && ty->type == DSV4_JSON_STRING)
                    put_text(st, ty->str, ty->len);
                else
                    put_tmpl(st, "None");
                put_tmpl(st, "]");
            }
        }
    }
    put_tmpl(st, "</tool_result>");
}

static void put_user(chat_render_state *st, const msg *m)
{
    put_tmpl(st, USER);
    if (!m->has_blocks) {
        if (m->content)
            put_text(st, m->content, m->content_len);
        return;
    }
    for (size_t i = 0; i < m->nblocks; i++) {
        if (i)
            put_tmpl(st, "\n\n");
        if (m->blocks[i].is_tool)
            put_tool_result(st, m->blocks[i].tool_content);
        else
            put_text(st, m->blocks[i].text, m->blocks[i].text_len);
    }
}

static void put_param(chat_render_state *st, const char *key, size_t klen, const dsv4_json *v)
{
    int is_str = v->type == DSV4_JSON_STRING;
    put_tmpl(st, "<" DSML "parameter name=\"");
    put_text(st, key, klen);
    put_tmpl(st, is_str ? "\" string=\"true\">" : "\" string=\"false\">");
    if (is_str)
        put_text(st, v->str, v->len);
    else
        put_json(st, v);
    put_tmpl(st, "</" DSML "parameter>");
}

/* One invoke.  arguments is a JSON string holding an object; anything else
 * becomes {"arguments": <raw>} as in the official encoder. */
static int put_invoke(chat_render_state *st, const msg *m, size_t ci, dsv4_err *err)
{
    const dsv4_json *fn = dsv4_json_get(&m->tool_calls->items[ci], "function");
    const dsv4_json *name = dsv4_json_get(fn, "name"), *raw = dsv4_json_get(fn, "arguments");
    dsv4_json *args = NULL;
    dsv4_err perr = DSV4_ERR_INIT;
    put_tmpl(st, "<" DSML "invoke name=\"");
    put_text(st, name->str, name->len);
    put_tmpl(st, "\">\n");
    if (raw->type == DSV4_JSON_STRING && dsv4_json_parse(&args, raw->str, raw->len, 0, &perr) == 0) {
        int first = 1;
        if (args->type != DSV4_JSON_OBJECT) {
            dsv4_json_free(args);
            return dsv4_err_set(err, DSV4_E_FORMAT, "%s[%zu].tool_calls[%zu].function.arguments: expected a JSON "
                                "object, got another JSON value", m->src_list, m->src_index, ci);
        }
        for (size_t i = 0; i < args->len; i++) {
            long v = dict_value(args, i);
            if (v < 0)
                continue;
            if (!first)
                put_tmpl(st, "\n");
            first = 0;
            put_param(st, args->keys[i], args->key_lens[i], &args->items[v]);
        }
        dsv4_json_free(args);
    } else {
        put_param(st, "arguments", 9, raw);
    }
    put_tmpl(st, "\n</" DSML "invoke>");
    return 0;
}

static int put_assistant(chat_render_state *st, size_t i, dsv4_err *err)
{
    const msg *m = &st->v[i];
    int rc;
    if (st->thinking && !(i > 0 && st->v[i - 1].task >= 0) && (!st->drop || (long)i > st->last_user)) {
        if (m->reasoning)
            put_text(st, m->reasoning, m->reasoning_len);
        put_tmpl(st, END_THINK);
    }
    if (m->content)
        put_text(st, m->content, m->content_len);
    if (m->tool_calls) {
        put_tmpl(st, "\n\n<" DSML "tool_calls>\n");
        for (size_t c = 0; c < m->tool_calls->len; c++) {
            if (c)
                put_tmpl(st, "\n");
            if ((rc = put_invoke(st, m, c, err)))
                return rc;
        }
        put_tmpl(st, "\n</" DSML "tool_calls>");
    }
    if (!m->wo_eos)
        put_tmpl(st, EOS);
    return 0;
}

static int render_one(chat_render_state *st, size_t i, dsv4_err *err)
{
    const msg *m = &st->v[i];
    const msg *next = i + 1 < st->n ? &st->v[i + 1] : NULL;
    int rc;
    if (i == 0 && st->thinking && st->effort_max)
        put_tmpl(st, effort_max_prefix);
    switch (m->role) {
    case ROLE_SYSTEM:
        put_system_like(st, m);
        break;
    case ROLE_DEVELOPER:
        put_tmpl(st, USER);
        put_system_like(st, m);
        break;
    case ROLE_USER:
        put_user(st, m);
        break;
    case ROLE_REMINDER:
        put_tmpl(st, REMINDER);
        put_text(st, m->content, m->content_len);
        break;
    case ROLE_ASSISTANT:
        if ((rc = put_assistant(st, i, err)))
            return rc;
        break;
    default:
        return dsv4_err_set(err, DSV4_E_BUG, "%s[%zu]: tool message left unmerged", m->src_list, m->src_index);
    }

    /* transition suffix */
    if (next && next->role != ROLE_ASSISTANT && next->role != ROLE_REMINDER)
        return 0;
    if (m->task >= 0) {
        char tok[32];
        if (m->task != TASK_ACTION) {
            snprintf(tok, sizeof tok, "<｜%s｜>", chat_task_names[m->task]);
            put_tmpl(st, tok);
        } else {
            put_tmpl(st, ASSISTANT);
            put_tmpl(st, st->thinking ? THINK : END_THINK);
            put_tmpl(st, "<｜action｜>");
        }
    } else if (m->role == ROLE_USER || m->role == ROLE_DEVELOPER) {
        put_tmpl(st, ASSISTANT);
        put_tmpl(st, st->thinking && (!st->drop || (long)i >= st->last_user) ? THINK : END_THINK);
    }
    return 0;
}

int chat_render_all(chat_render_state *st, dsv4_err *err)
{
    int rc;
    if (st->bos)
        put_tmpl(st, BOS);
    for (size_t i = st->first; i < st->first + st->count && i < st->n; i++)
        if ((rc = render_one(st, i, err)))
            return rc;
    if (st->out->oom)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory rendering the prompt");
    return 0;
}

int dsv4_chat_tokenize(const dsv4_tok *t, const char *text, size_t len, const dsv4_chat_spans *ctl,
                       dsv4_tok_ids *out, dsv4_err *err)
{
    size_t at = 0;
    int rc;
    for (size_t i = 0; i <= ctl->n; i++) {
        size_t end = i < ctl->n ? ctl->v[i].off : len;
        char name[64];
        int64_t id;
        if (end > at && (rc = dsv4_tok_encode(t, text + at, end - at, DSV4_TOK_NO_ADDED, out, err)))
            return rc;
        if (i == ctl->n)
            break;
        snprintf(name, sizeof name, "%.*s", (int)ctl->v[i].len, text + end);
        if ((id = dsv4_tok_id(t, name)) < 0)
            return dsv4_err_set(err, DSV4_E_NOTFOUND, "the tokenizer has no token '%s'", name);
        if (dsv4_tok_ids_push(out, (uint32_t)id))
            return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        at = end + ctl->v[i].len;
    }
    return 0;
}
