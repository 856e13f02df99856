/* fuzz_json — the JSON reader (lib/json.h) and the config.json and
 * generation_config.json readers built on it (lib/config.h).
 *
 * Input: any bytes, taken as JSON text.  Besides "no crash, no leak" it
 * checks what the header promises: every error has a message; a parsed tree
 * written out (dsv4_json_write) parses again and writes out the same bytes
 * (so the writer's output is always valid JSON for our own reader); a
 * config that parses yields a tensor inventory. */
#include "fuzz.h"

#include "buf.h"
#include "config.h"
#include "json.h"

/* Walk the tree through the lookup helpers, as callers do. */
static void walk(const dsv4_json *j, int depth)
{
    if (depth > 600)
        return;
    if (j->type == DSV4_JSON_OBJECT) {
        for (size_t i = 0; i < j->len; i++) {
            /* lookups take C strings: a key holding "\u0000" cannot be named */
            FUZZ_ASSERT(strlen(j->keys[i]) <= j->key_lens[i], "key length");
            if (strlen(j->keys[i]) == j->key_lens[i])
                FUZZ_ASSERT(dsv4_json_get(j, j->keys[i]) != NULL, "key %zu not found", i);
            walk(&j->items[i], depth + 1);
        }
    } else if (j->type == DSV4_JSON_ARRAY) {
        for (size_t i = 0; i < j->len; i++) {
            FUZZ_ASSERT(dsv4_json_at(j, i) == &j->items[i], "item %zu", i);
            walk(&j->items[i], depth + 1);
        }
        FUZZ_ASSERT(dsv4_json_at(j, j->len) == NULL, "past the end");
    } else if (j->type == DSV4_JSON_STRING) {
        FUZZ_ASSERT(j->str && j->str[j->len] == 0, "string not terminated");
    }
    (void)dsv4_json_type_name(j->type);
}

static void roundtrip(const dsv4_json *j, int indent, const char *isep, const char *ksep)
{
    dsv4_buf w1 = DSV4_BUF_INIT, w2 = DSV4_BUF_INIT;
    dsv4_json *k = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    int rc;
    dsv4_json_write(&w1, j, indent, isep, ksep);
    FUZZ_ASSERT(!w1.oom, "writer out of memory");
    rc = dsv4_json_parse(&k, w1.data ? w1.data : "", w1.len, 0, &err);
    FUZZ_ASSERT(rc == 0, "written JSON does not parse: %s\n%.*s", err.msg, (int)(w1.len < 400 ? w1.len : 400),
                w1.data);
    dsv4_json_write(&w2, k, indent, isep, ksep);
    FUZZ_ASSERT(w1.len == w2.len && !memcmp(w1.data, w2.data, w1.len), "write(parse(write(x))) != write(x)");
    dsv4_json_free(k);
    dsv4_buf_release(&w1);
    dsv4_buf_release(&w2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_json *j = NULL;
    int rc;

    rc = dsv4_utf8_check(text, size, &err);
    FUZZ_CHECK_ERR(rc, err);
    FUZZ_ASSERT((rc == 0) == (dsv4_utf8_valid_prefix(text, size) == size), "utf8 check and prefix disagree");

    for (unsigned flags = 0; flags <= DSV4_JSON_ALLOW_LONE_SURROGATES; flags++) {
        err = (dsv4_err)DSV4_ERR_INIT;
        rc = dsv4_json_parse(&j, text, size, flags, &err);
        FUZZ_CHECK_ERR(rc, err);
        if (rc) {
            FUZZ_ASSERT(j == NULL, "tree returned with an error");
            continue;
        }
        walk(j, 0);
        /* Lone surrogates come out as WTF-8, which the reader (rightly)
         * refuses as raw bytes: the round trip holds for flags 0 only. */
        if (!flags) {
            roundtrip(j, -1, ", ", ": ");
            roundtrip(j, 2, ",", ":");
        }
        if (j->type == DSV4_JSON_OBJECT && j->len) {
            int64_t i64;
            double f64;
            int b;
            const char *s;
            const char *key = j->keys[0];
            dsv4_err e2 = DSV4_ERR_INIT;
            (void)dsv4_json_get_i64(j, key, &i64, &e2);
            (void)dsv4_json_get_f64(j, key, &f64, &e2);
            (void)dsv4_json_get_bool(j, key, &b, &e2);
            (void)dsv4_json_get_str(j, key, &s, &e2);
        }
        dsv4_json_free(j);
        j = NULL;
    }

    {
        dsv4_config c;
        dsv4_genconfig g;
        err = (dsv4_err)DSV4_ERR_INIT;
        rc = dsv4_config_parse(&c, text, size, &err);
        FUZZ_CHECK_ERR(rc, err);
        if (!rc) {
            dsv4_tensor_spec *specs = NULL;
            size_t n = 0;
            rc = dsv4_config_tensors(&c, &specs, &n, &err);
            FUZZ_CHECK_ERR(rc, err);
            if (!rc) {
                dsv4_param_counts pc;
                dsv4_config_params(&c, specs, n, &pc);
            }
            free(specs);
        }
        err = (dsv4_err)DSV4_ERR_INIT;
        rc = dsv4_genconfig_parse(&g, text, size, &err);
        FUZZ_CHECK_ERR(rc, err);
    }
    return 0;
}
