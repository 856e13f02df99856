/* chat — messages -> DeepSeek-V4 prompt text (see chat.h, spec/DSML.md §2).
 *
 * Three passes mirror the official encoder: read and validate the JSON into
 * an array of `msg` (borrowing strings from the tree), preprocess (merge tool
 * results into user turns, sort them into call order, drop old reasoning),
 * then render message by message.  The rendering rules live in chat_render.c
 * (chat_impl.h is the shared internal interface). */
#include "chat_impl.h"

#include <stdlib.h>
#include <string.h>

static const char *type_name(const dsv4_json *j)
{
    return dsv4_json_type_name(j->type);
}

/* Python truthiness, which the official encoder uses for every optional field. */
int chat_truthy(const dsv4_json *j)
{
    if (!j)
        return 0;
    switch (j->type) {
    case DSV4_JSON_NULL:
    case DSV4_JSON_FALSE:  return 0;
    case DSV4_JSON_TRUE:   return 1;
    case DSV4_JSON_NUMBER: return j->num != 0;
    default:               return j->len != 0;
    }
}

static const char *const role_names[] = {
    [ROLE_SYSTEM] = "system", [ROLE_USER] = "user", [ROLE_ASSISTANT] = "assistant",
    [ROLE_TOOL] = "tool", [ROLE_DEVELOPER] = "developer", [ROLE_REMINDER] = "latest_reminder",
};

const char *const chat_task_names[CHAT_NTASKS] = { "action", "query", "authority", "domain", "title", "read_url" };

/* ---- reading and validating the input ------------------------------------ */

typedef struct reader {
    const char *list;   /* "messages" or "context" */
    size_t index;
    dsv4_err *err;
} reader;

static int bad(reader *rd, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(reader *rd, const char *field, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (!rd->list[0])   /* a top-level field of the document */
        return dsv4_err_set(rd->err, DSV4_E_FORMAT, "%s: %s", field, what);
    return dsv4_err_set(rd->err, DSV4_E_FORMAT, "%s[%zu]%s%s: %s", rd->list, rd->index, field[0] ? "." : "",
                        field, what);
}

/* An optional string field: absent or null -> *s = NULL. */
static int opt_str(reader *rd, const dsv4_json *m, const char *key, const char **s, size_t *n)
{
    const dsv4_json *v = dsv4_json_get(m, key);
    *s = NULL;
    *n = 0;
    if (!v || v->type == DSV4_JSON_NULL)
        return 0;
    if (v->type != DSV4_JSON_STRING)
        return bad(rd, key, "expected a string, got %s", type_name(v));
    *s = v->str;
    *n = v->len;
    return 0;
}

static int read_tools(reader *rd, const char *field, const dsv4_json *tools)
{
    if (tools->type != DSV4_JSON_ARRAY)
        return bad(rd, field, "expected an array of tools, got %s", type_name(tools));
    for (size_t i = 0; i < tools->len; i++) {
        const dsv4_json *t = &tools->items[i], *fn = dsv4_json_get(t, "function"), *name;
        char f[64];
        snprintf(f, sizeof f, "%s[%zu].function", field, i);
        if (t->type != DSV4_JSON_OBJECT)
            return bad(rd, f, "expected a tool object {\"type\": \"function\", \"function\": {...}}, got %s",
                       type_name(t));
        if (!fn)
            return bad(rd, f, "missing");
        if (fn->type != DSV4_JSON_OBJECT)
            return bad(rd, f, "expected an object, got %s", type_name(fn));
        name = dsv4_json_get(fn, "name");
        if (!name || name->type != DSV4_JSON_STRING)
            return bad(rd, f, "needs a string \"name\"");
    }
    return 0;
}

static int read_tool_calls(reader *rd, const dsv4_json *tcs)
{
    if (tcs->type != DSV4_JSON_ARRAY)
        return bad(rd, "tool_calls", "expected an array, got %s", type_name(tcs));
    for (size_t i = 0; i < tcs->len; i++) {
        const dsv4_json *tc = &tcs->items[i], *fn = dsv4_json_get(tc, "function"), *v;
        char f[64];
        snprintf(f, sizeof f, "tool_calls[%zu]", i);
        if (tc->type != DSV4_JSON_OBJECT)
            return bad(rd, f, "expected an object, got %s", type_name(tc));
        if ((v = dsv4_json_get(tc, "id")) && v->type != DSV4_JSON_STRING && v->type != DSV4_JSON_NULL)
            return bad(rd, f, "\"id\" must be a string, got %s", type_name(v));
        snprintf(f, sizeof f, "tool_calls[%zu].function", i);
        if (!fn)
            return bad(rd, f, "missing");
        if (fn->type != DSV4_JSON_OBJECT)
            return bad(rd, f, "expected an object, got %s", type_name(fn));
        if (!(v = dsv4_json_get(fn, "name")) || v->type != DSV4_JSON_STRING)
            return bad(rd, f, "needs a string \"name\"");
        if (!dsv4_json_get(fn, "arguments"))
            return bad(rd, f, "needs \"arguments\" (a JSON string)");
        if ((v = dsv4_json_get(fn, "id")) && v->type != DSV4_JSON_STRING && v->type != DSV4_JSON_NULL)
            return bad(rd, f, "\"id\" must be a string, got %s", type_name(v));
    }
    return 0;
}

/* Content of a tool message: a string, or OpenAI content parts. */
static int read_tool_content(reader *rd, const dsv4_json *c)
{
    if (!c || c->type == DSV4_JSON_STRING)
        return 0;
    if (c->type != DSV4_JSON_ARRAY)
        return bad(rd, "content", "expected a string or an array of content parts, got %s", type_name(c));
    for (size_t i = 0; i < c->len; i++) {
        const dsv4_json *p = &c->items[i], *ty = dsv4_json_get(p, "type"), *tx = dsv4_json_get(p, "text");
        char f[48];
        snprintf(f, sizeof f, "content[%zu]", i);
        if (p->type != DSV4_JSON_OBJECT)
            return bad(rd, f, "expected a content part object, got %s", type_name(p));
        if (ty && ty->type != DSV4_JSON_STRING && ty->type != DSV4_JSON_NULL)
            return bad(rd, f, "\"type\" must be a string");
        if (ty && ty->type == DSV4_JSON_STRING && !strcmp(ty->str, "text") && tx && tx->type != DSV4_JSON_STRING)
            return bad(rd, f, "\"text\" must be a string");
    }
    return 0;
}

static int read_msg(reader *rd, const dsv4_json *m, msg *out)
{
    const dsv4_json *v;
    int rc;
    memset(out, 0, sizeof *out);
    out->src_list = rd->list;
    out->src_index = rd->index;
    out->task = -1;
    if (m->type != DSV4_JSON_OBJECT)
        return bad(rd, "", "expected a message object, got %s", type_name(m));
    v = dsv4_json_get(m, "role");
    if (!v)
        return bad(rd, "role", "missing");
    if (v->type != DSV4_JSON_STRING)
        return bad(rd, "role", "expected a string, got %s", type_name(v));
    out->role = -1;
    for (int r = 0; r < ROLE_COUNT; r++)
        if (!strcmp(v->str, role_names[r]) && strlen(role_names[r]) == v->len)
            out->role = r;
    if (out->role < 0)
        return bad(rd, "role", "unknown role '%.60s' (expected system, user, assistant, tool, developer or "
                   "latest_reminder)", v->str);

    if (out->role == ROLE_TOOL) {
        out->tool_content = dsv4_json_get(m, "content");
        if ((rc = read_tool_content(rd, out->tool_content)))
            return rc;
        if ((rc = opt_str(rd, m, "tool_call_id", &out->tool_call_id, &out->tool_call_id_len)))
            return rc;
    } else if ((rc = opt_str(rd, m, "content", &out->content, &out->content_len))) {
        if ((v = dsv4_json_get(m, "content")) && v->type == DSV4_JSON_ARRAY)
            return bad(rd, "content", "content parts are not supported here; give the text as a string");
        return rc;
    }
    if ((rc = opt_str(rd, m, "reasoning_content", &out->reasoning, &out->reasoning_len)))
        return rc;

    if ((v = dsv4_json_get(m, "tools")) && v->type != DSV4_JSON_NULL) {
        if ((rc = read_tools(rd, "tools", v)))
            return rc;
        /* The official encoder only renders tools on system/developer turns
         * and silently loses them elsewhere: refuse instead. */
        if (v->len && out->role != ROLE_SYSTEM && out->role != ROLE_DEVELOPER)
            return bad(rd, "tools", "tools belong on a system or developer message, not on '%s'",
                       role_names[out->role]);
        out->tools = v->len ? v : NULL;
    }
    if ((v = dsv4_json_get(m, "response_format")) && chat_truthy(v))
        out->response_format = v;
    if ((v = dsv4_json_get(m, "tool_calls")) && v->type != DSV4_JSON_NULL) {
        if ((rc = read_tool_calls(rd, v)))
            return rc;
        if (v->len && out->role != ROLE_ASSISTANT)
            return bad(rd, "tool_calls", "only assistant messages carry tool calls");
        out->tool_calls = v->len ? v : NULL;
    }
    if ((v = dsv4_json_get(m, "task")) && v->type != DSV4_JSON_NULL) {
        if (v->type == DSV4_JSON_STRING)
            for (int t = 0; t < CHAT_NTASKS; t++)
                if (!strcmp(v->str, chat_task_names[t]))
                    out->task = t;
        if (out->task < 0)
            return bad(rd, "task", "invalid task (expected action, query, authority, domain, title or read_url)");
    }
    out->wo_eos = chat_truthy(dsv4_json_get(m, "wo_eos"));

    if (out->role == ROLE_DEVELOPER && !out->content_len)
        return bad(rd, "content", "a developer message needs non-empty content");
    if (out->role == ROLE_REMINDER && !out->content)
        return bad(rd, "content", "a latest_reminder message needs a string content");
    return 0;
}

static void msgs_release(msg *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].blocks);
    free(v);
}

/* Read a JSON array of messages (one spare slot, for the system message
 * that top-level tools may need in front). */
static int read_list(const dsv4_json *arr, const char *list, msg **out, size_t *n, dsv4_err *err)
{
    reader rd = { list, 0, err };
    size_t k = 0, cap = arr->len + 1;
    msg *v = calloc(cap, sizeof *v);
    int rc;
    *out = NULL;
    *n = 0;
    if (!v)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    for (size_t i = 0; i < arr->len; i++, k++) {
        rd.index = i;
        if ((rc = read_msg(&rd, &arr->items[i], &v[k]))) {
            free(v);
            return rc;
        }
    }
    *out = v;
    *n = k;
    return 0;
}

/* ---- preprocessing (DSML.md §2.2, §2.3) ----------------------------------- */

static int add_block(msg *m, const block *b)
{
    if (dsv4_grow((void **)&m->blocks, &m->cap, m->nblocks, sizeof *m->blocks))
        return DSV4_E_NOMEM;
    m->blocks[m->nblocks++] = *b;
    return 0;
}

/* merge_tool_messages: tool results (and consecutive user texts) become
 * content blocks of one user turn.  In place: *n shrinks. */
static int merge_tool_messages(msg *v, size_t *n)
{
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        msg m = v[i];
        msg *prev = k ? &v[k - 1] : NULL;
        block b;
        memset(&b, 0, sizeof b);
        if (m.role == ROLE_TOOL) {
            b.is_tool = 1;
            b.tool_content = m.tool_content;
            b.use_id = m.tool_call_id ? m.tool_call_id : "";
            b.use_id_len = m.tool_call_id_len;
            if (prev && prev->role == ROLE_USER && prev->has_blocks) {
                if (add_block(prev, &b))
                    return DSV4_E_NOMEM;
                continue;
            }
            /* a new user turn with no content of its own */
            m.role = ROLE_USER;
            m.content = NULL;
            m.content_len = 0;
            m.task = -1;
            m.wo_eos = 0;
        } else if (m.role == ROLE_USER) {
            b.text = m.content ? m.content : "";
            b.text_len = m.content_len;
            if (prev && prev->role == ROLE_USER && prev->has_blocks && prev->task < 0) {
                if (add_block(prev, &b))
                    return DSV4_E_NOMEM;
                continue;
            }
        } else {
            v[k++] = m;
            continue;
        }
        m.has_blocks = 1;
        m.blocks = NULL;
        m.nblocks = m.cap = 0;
        if (add_block(&m, &b))
            return DSV4_E_NOMEM;
        v[k++] = m;
    }
    *n = k;
    return 0;
}

static void call_id(const dsv4_json *tc, const char **s, size_t *n)
{
    const dsv4_json *id = dsv4_json_get(tc, "id");
    if (!id || id->type != DSV4_JSON_STRING || !id->len)
        id = dsv4_json_get(dsv4_json_get(tc, "function"), "id");
    *s = id && id->type == DSV4_JSON_STRING ? id->str : "";
    *n = id && id->type == DSV4_JSON_STRING ? id->len : 0;
}

/* Index of the call with this id (the last one, as a Python dict keeps it),
 * -1 when absent. */
static long call_index(const dsv4_json *calls, const char *id, size_t n)
{
    for (size_t i = calls->len; i-- > 0;) {
        const char *s;
        size_t l;
        call_id(&calls->items[i], &s, &l);
        if (l && l == n && !memcmp(s, id, n))
            return (long)i;
    }
    return -1;
}

static int has_any_id(const dsv4_json *calls)
{
    for (size_t i = 0; i < calls->len; i++) {
        const char *s;
        size_t l;
        call_id(&calls->items[i], &s, &l);
        if (l)
            return 1;
    }
    return 0;
}

/* Before merging: every tool result must answer a call of the latest
 * assistant message that made calls. */
static int check_tool_results(const msg *v, size_t n, dsv4_err *err)
{
    const msg *caller = NULL;
    for (size_t i = 0; i < n; i++) {
        const msg *m = &v[i];
        if (m->role == ROLE_ASSISTANT && m->tool_calls)
            caller = m;
        if (m->role != ROLE_TOOL)
            continue;
        if (!caller)
            return dsv4_err_set(err, DSV4_E_FORMAT, "%s[%zu]: tool result without a preceding assistant tool call",
                                m->src_list, m->src_index);
        if (m->tool_call_id_len && call_index(caller->tool_calls, m->tool_call_id, m->tool_call_id_len) < 0)
            return dsv4_err_set(err, DSV4_E_FORMAT,
                                "%s[%zu].tool_call_id: '%.60s' matches no tool call of %s[%zu]", m->src_list,
                                m->src_index, m->tool_call_id, caller->src_list, caller->src_index);
    }
    return 0;
}

/* 1 when some message defines a tool called name. */
static int tool_defined(const msg *v, size_t n, const dsv4_json *name)
{
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; v[i].tools && k < v[i].tools->len; k++) {
            const dsv4_json *d = dsv4_json_get(dsv4_json_get(&v[i].tools->items[k], "function"), "name");
            if (d->len == name->len && !memcmp(d->str, name->str, d->len))
                return 1;
        }
    return 0;
}

/* When tools are defined, every call in the history must name one of
 * them: a call to an unknown tool would teach the model a tool it does not
 * have.  (Without any definitions, calls are history and pass.) */
static int check_tool_calls(const msg *v, size_t n, dsv4_err *err)
{
    int any = 0;
    for (size_t i = 0; i < n; i++)
        any |= v[i].tools != NULL;
    for (size_t i = 0; any && i < n; i++)
        for (size_t c = 0; v[i].tool_calls && c < v[i].tool_calls->len; c++) {
            const dsv4_json *name = dsv4_json_get(dsv4_json_get(&v[i].tool_calls->items[c], "function"), "name");
            if (!tool_defined(v, n, name))
                return dsv4_err_set(err, DSV4_E_FORMAT, "%s[%zu].tool_calls[%zu].function.name: '%.60s' is not "
                                    "a defined tool", v[i].src_list, v[i].src_index, c, name->str);
        }
    return 0;
}

/* sort_tool_results_by_call_order: stable sort of the tool_result blocks of
 * each user turn by the index of their call; text blocks keep their slots. */
static void sort_tool_results(msg *v, size_t n)
{
    const dsv4_json *calls = NULL;
    for (size_t i = 0; i < n; i++) {
        msg *m = &v[i];
        size_t nt = 0;
        if (m->role == ROLE_ASSISTANT && m->tool_calls) {
            calls = m->tool_calls;
            continue;
        }
        if (m->role != ROLE_USER || !m->nblocks || !calls || !has_any_id(calls))
            continue;
        for (size_t j = 0; j < m->nblocks; j++)
            nt += m->blocks[j].is_tool;
        if (nt < 2)
            continue;
        /* insertion sort over the tool slots only: stable, and n is tiny */
        for (size_t j = 0; j < m->nblocks; j++) {
            long kj;
            if (!m->blocks[j].is_tool)
                continue;
            kj = call_index(calls, m->blocks[j].use_id, m->blocks[j].use_id_len);
            m->blocks[j].order = kj < 0 ? 0 : kj;
        }
        for (size_t j = 1; j < m->nblocks; j++) {
            if (!m->blocks[j].is_tool)
                continue;
            for (size_t a = j; a > 0;) {
                size_t p = a;
                while (p > 0 && !m->blocks[p - 1].is_tool)
                    p--;
                if (p == 0 || m->blocks[p - 1].order <= m->blocks[a].order)
                    break;
                block t = m->blocks[p - 1];
                m->blocks[p - 1] = m->blocks[a];
                m->blocks[a] = t;
                a = p - 1;
            }
        }
    }
}

static long last_user_index(const msg *v, size_t n)
{
    for (size_t i = n; i-- > 0;)
        if (v[i].role == ROLE_USER || v[i].role == ROLE_DEVELOPER)
            return (long)i;
    return -1;
}

/* _drop_thinking_messages: before the last user turn, assistants lose their
 * reasoning and developer turns disappear.  Writes into dst (capacity n). */
static size_t drop_thinking(const msg *v, size_t n, msg *dst)
{
    long L = last_user_index(v, n);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int r = v[i].role;
        if (r == ROLE_USER || r == ROLE_SYSTEM || r == ROLE_TOOL || r == ROLE_REMINDER || (long)i >= L) {
            if (dst)
                dst[k] = v[i];
            k++;
        } else if (r == ROLE_ASSISTANT) {
            if (dst) {
                dst[k] = v[i];
                dst[k].reasoning = NULL;
                dst[k].reasoning_len = 0;
            }
            k++;
        }
    }
    return k;
}

/* ---- the document --------------------------------------------------------- */

dsv4_chat_mode dsv4_chat_mode_parse(const char *s)
{
    if (!s)
        return DSV4_CHAT_MODE_DEFAULT;
    if (!strcmp(s, "chat") || !strcmp(s, "non-think") || !strcmp(s, "none"))
        return DSV4_CHAT_MODE_CHAT;
    if (!strcmp(s, "high") || !strcmp(s, "thinking"))
        return DSV4_CHAT_MODE_HIGH;
    if (!strcmp(s, "max"))
        return DSV4_CHAT_MODE_MAX;
    return DSV4_CHAT_MODE_DEFAULT;
}

const char *dsv4_chat_mode_name(dsv4_chat_mode m)
{
    switch (m) {
    case DSV4_CHAT_MODE_CHAT: return "chat";
    case DSV4_CHAT_MODE_HIGH: return "high";
    case DSV4_CHAT_MODE_MAX:  return "max";
    default:                  return "default";
    }
}

void dsv4_chat_spans_release(dsv4_chat_spans *s)
{
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

/* a[0..na) then b[0..nb) in a new array (one spare slot); NULL when out of
 * memory.  The entries are shallow copies: blocks stay owned by a and b. */
static msg *concat(const msg *a, size_t na, const msg *b, size_t nb)
{
    msg *v = calloc(na + nb + 1, sizeof *v);
    if (v && na)
        memcpy(v, a, na * sizeof *a);
    if (v && nb)
        memcpy(v + na, b, nb * sizeof *b);
    return v;
}

static int doc_fail(dsv4_err *err, const char *fmt, const dsv4_json *v)
{
    return dsv4_err_set(err, DSV4_E_FORMAT, fmt, v ? type_name(v) : "nothing");
}

int dsv4_chat_render(const dsv4_json *doc, const dsv4_chat_opts *opts, dsv4_buf *out, dsv4_chat_spans *ctl,
                     dsv4_err *err)
{
    static const dsv4_chat_opts defaults = DSV4_CHAT_OPTS_INIT;
    const dsv4_json *msgs = doc, *ctx = NULL, *tools = NULL, *v;
    dsv4_chat_mode mode = DSV4_CHAT_MODE_HIGH;
    int keep_thinking, rc;
    msg *mv = NULL, *cv = NULL, *full = NULL;
    size_t nm = 0, nc = 0, nfull, nctx_dropped;
    chat_render_state st;

    if (!opts)
        opts = &defaults;
    keep_thinking = opts->keep_thinking;
    if (!doc)
        return dsv4_err_set(err, DSV4_E_INVALID, "no chat document");
    if (doc->type == DSV4_JSON_OBJECT) {
        msgs = dsv4_json_get(doc, "messages");
        if (!msgs || msgs->type != DSV4_JSON_ARRAY)
            return doc_fail(err, "messages: expected an array of messages, got %s", msgs);
        if ((ctx = dsv4_json_get(doc, "context")) && ctx->type != DSV4_JSON_ARRAY)
            return doc_fail(err, "context: expected an array of messages, got %s", ctx);
        if ((tools = dsv4_json_get(doc, "tools")) && tools->type == DSV4_JSON_NULL)
            tools = NULL;
        if ((v = dsv4_json_get(doc, "thinking")) && v->type != DSV4_JSON_NULL) {
            if (v->type != DSV4_JSON_STRING || dsv4_chat_mode_parse(v->str) == DSV4_CHAT_MODE_DEFAULT)
                return dsv4_err_set(err, DSV4_E_FORMAT, "thinking: expected \"chat\", \"high\" or \"max\"");
            mode = dsv4_chat_mode_parse(v->str);
        }
        if ((v = dsv4_json_get(doc, "drop_thinking")) && v->type != DSV4_JSON_NULL) {
            if (v->type != DSV4_JSON_TRUE && v->type != DSV4_JSON_FALSE)
                return doc_fail(err, "drop_thinking: expected a boolean, got %s", v);
            keep_thinking |= v->type == DSV4_JSON_FALSE;
        }
    } else if (doc->type != DSV4_JSON_ARRAY) {
        return doc_fail(err, "expected an array of messages or an object with \"messages\", got %s", doc);
    }
    if (opts->mode != DSV4_CHAT_MODE_DEFAULT)
        mode = opts->mode;

    /* Top-level tools: onto messages[0] if it can render them (the official
     * test does messages[0]["tools"] = tools), else a system message of
     * their own in front, so they are not lost. */
    if (tools) {
        reader rd = { "", 0, err };
        if (tools->type != DSV4_JSON_ARRAY)
            return doc_fail(err, "tools: expected an array of tools, got %s", tools);
        if ((rc = read_tools(&rd, "tools", tools)))
            return rc;
    }
    if ((rc = read_list(msgs, "messages", &mv, &nm, err)))
        return rc;
    if (tools && tools->len) {
        if (nm && (mv[0].role == ROLE_SYSTEM || mv[0].role == ROLE_DEVELOPER)) {
            if (mv[0].tools) {
                rc = dsv4_err_set(err, DSV4_E_FORMAT, "tools: given both at the top level and in messages[0]");
                goto out;
            }
            mv[0].tools = tools;
        } else {
            msg *nv = realloc(mv, (nm + 1) * sizeof *nv);
            if (!nv) {
                rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
                goto out;
            }
            mv = nv;
            memmove(mv + 1, mv, nm * sizeof *mv);
            memset(mv, 0, sizeof *mv);
            mv[0].role = ROLE_SYSTEM;
            mv[0].task = -1;
            mv[0].tools = tools;
            mv[0].src_list = "tools";
            nm++;
        }
    }
    if (ctx && (rc = read_list(ctx, "context", &cv, &nc, err)))
        goto out;

    /* Validate tool results over context + messages, in order. */
    if (!(full = concat(cv, nc, mv, nm))) {
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = check_tool_results(full, nc + nm, err)) || (rc = check_tool_calls(full, nc + nm, err)))
        goto out;
    free(full);
    full = NULL;

    /* Merge each list on its own (a tool result at the start of messages does
     * not join the last user turn of context), then sort over both. */
    if (merge_tool_messages(cv, &nc) || merge_tool_messages(mv, &nm)) {
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        goto out;
    }
    nfull = nc + nm;
    if (!(full = concat(cv, nc, mv, nm))) {
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        goto out;
    }
    sort_tool_results(full, nfull);

    memset(&st, 0, sizeof st);
    st.thinking = mode != DSV4_CHAT_MODE_CHAT;
    st.effort_max = mode == DSV4_CHAT_MODE_MAX;
    st.drop = !keep_thinking;
    for (size_t i = 0; i < nfull; i++)
        if (full[i].tools)
            st.drop = 0;      /* any tool definitions keep all reasoning */
    st.first = 0;
    st.count = nm;
    if (st.thinking && st.drop) {
        msg *dropped = calloc(nfull + 1, sizeof *dropped);
        if (!dropped) {
            rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
            goto out;
        }
        nfull = drop_thinking(full, nfull, dropped);
        /* the context is filtered on its own to count what is already cached */
        nctx_dropped = drop_thinking(full, nc, NULL);
        memcpy(full, dropped, nfull * sizeof *full);
        free(dropped);
        st.count = nfull - nctx_dropped;
        st.first = nctx_dropped;
    } else {
        st.first = nc;
    }
    st.v = full;
    st.n = nfull;
    st.last_user = last_user_index(full, nfull);
    st.out = out;
    st.ctl = ctl;
    st.bos = !opts->no_bos && nc == 0;
    rc = chat_render_all(&st, err);
out:
    free(full);
    /* blocks are owned by the entries of mv and cv (full only copies them) */
    if (mv)
        msgs_release(mv, nm);
    if (cv)
        msgs_release(cv, nc);
    return rc;
}

int dsv4_chat_encode(const char *json, size_t len, const dsv4_chat_opts *opts, dsv4_buf *out,
                     dsv4_chat_spans *ctl, dsv4_err *err)
{
    dsv4_json *doc;
    int rc;
    if ((rc = dsv4_utf8_check(json, len, err)))
        return rc;
    if ((rc = dsv4_json_parse(&doc, json, len, 0, err)))
        return rc;
    rc = dsv4_chat_render(doc, opts, out, ctl, err);
    dsv4_json_free(doc);
    return rc;
}
