/* json reader on valid and hostile input; writer against Python's
 * json.dumps(..., ensure_ascii=False) (expected strings produced by CPython
 * 3.11). */
#include "test.h"
#include "buf.h"
#include "json.h"

#include <float.h>
#include <stdint.h>

/* Parse s (length n, or strlen when n is (size_t)-1); NULL on error. */
static dsv4_json *parse_n(const char *s, size_t n, unsigned flags)
{
    dsv4_json *j = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    if (n == (size_t)-1)
        n = strlen(s);
    if (dsv4_json_parse(&j, s, n, flags, &err)) {
        fprintf(stderr, "  unexpected parse error: %s\n", err.msg);
        return NULL;
    }
    return j;
}

static dsv4_json *parse(const char *s) { return parse_n(s, (size_t)-1, 0); }

/* s must be rejected with "line L, column C: ..." containing `what`. */
static int rejects_n(const char *s, size_t n, int line, int col, const char *what)
{
    dsv4_json *j = (dsv4_json *)1;
    dsv4_err err = DSV4_ERR_INIT;
    char want[64];
    int rc;
    rc = dsv4_json_parse(&j, s, n, 0, &err);
    snprintf(want, sizeof want, "line %d, column %d: ", line, col);
    if (rc != DSV4_E_FORMAT || j != NULL || err.code != rc || strncmp(err.msg, want, strlen(want)) ||
        !strstr(err.msg, what)) {
        fprintf(stderr, "  input \"%.40s\": rc %d, msg '%s' (wanted '%s...%s')\n", s, rc, err.msg, want, what);
        return 0;
    }
    return 1;
}

static int rejects(const char *s, int line, int col, const char *what)
{
    return rejects_n(s, strlen(s), line, col, what);
}

/* Write j with the given style and compare with the expected text. */
static int writes(const dsv4_json *j, int indent, const char *isep, const char *ksep, const char *want)
{
    dsv4_buf b = DSV4_BUF_INIT;
    int ok;
    dsv4_json_write(&b, j, indent, isep, ksep);
    ok = b.data && !b.oom && b.len == strlen(want) && !memcmp(b.data, want, b.len);
    if (!ok)
        fprintf(stderr, "  wrote '%s'\n  wanted '%s'\n", b.data ? b.data : "(null)", want);
    dsv4_buf_release(&b);
    return ok;
}

static int f64_is(double v, const char *want)
{
    dsv4_buf b = DSV4_BUF_INIT;
    int ok;
    dsv4_json_write_f64(&b, v);
    ok = b.data && !strcmp(b.data, want);
    if (!ok)
        fprintf(stderr, "  %a: wrote '%s', Python writes '%s'\n", v, b.data ? b.data : "(null)", want);
    dsv4_buf_release(&b);
    return ok;
}

TEST(all_types)
{
    dsv4_json *j = parse("{\"n\": null, \"t\": true, \"f\": false, \"i\": -12, \"d\": 1.5, \"s\": \"x\","
                         " \"a\": [1, [2, []], {}], \"o\": {\"k\": {\"deep\": \"v\"}}}");
    const dsv4_json *v;
    int64_t i;
    double d;
    int b;
    const char *s;
    dsv4_err err = DSV4_ERR_INIT;
    CHECK(j != NULL);
    if (!j)
        return;
    CHECK(j->type == DSV4_JSON_OBJECT && j->len == 8);
    CHECK_STR(j->keys[0], "n");
    CHECK_EQ_INT(j->key_lens[7], 1);
    CHECK((v = dsv4_json_get(j, "n")) && v->type == DSV4_JSON_NULL);
    CHECK((v = dsv4_json_get(j, "t")) && v->type == DSV4_JSON_TRUE);
    CHECK((v = dsv4_json_get(j, "f")) && v->type == DSV4_JSON_FALSE);
    CHECK((v = dsv4_json_get(j, "i")) && v->type == DSV4_JSON_NUMBER && v->is_int && v->num == -12);
    CHECK_STR(v ? v->str : NULL, "-12");
    CHECK((v = dsv4_json_get(j, "d")) && v->type == DSV4_JSON_NUMBER && !v->is_int && v->num == 1.5);
    CHECK((v = dsv4_json_get(j, "s")) && v->type == DSV4_JSON_STRING && v->len == 1 && !strcmp(v->str, "x"));
    v = dsv4_json_get(j, "a");
    CHECK(v && v->type == DSV4_JSON_ARRAY && v->len == 3);
    CHECK(dsv4_json_at(v, 0) && dsv4_json_at(v, 0)->num == 1);
    CHECK(dsv4_json_at(v, 1) && dsv4_json_at(v, 1)->type == DSV4_JSON_ARRAY && dsv4_json_at(v, 1)->len == 2);
    CHECK(dsv4_json_at(dsv4_json_at(v, 1), 1) && dsv4_json_at(dsv4_json_at(v, 1), 1)->len == 0);
    CHECK(dsv4_json_at(v, 2) && dsv4_json_at(v, 2)->type == DSV4_JSON_OBJECT && dsv4_json_at(v, 2)->len == 0);
    CHECK(dsv4_json_at(v, 3) == NULL);
    CHECK(dsv4_json_get(v, "x") == NULL);          /* not an object */
    CHECK(dsv4_json_at(dsv4_json_get(j, "s"), 0) == NULL);
    v = dsv4_json_get(dsv4_json_get(dsv4_json_get(j, "o"), "k"), "deep");
    CHECK(v && !strcmp(v->str, "v"));
    CHECK(dsv4_json_get(j, "missing") == NULL);
    CHECK(dsv4_json_get(NULL, "n") == NULL);

    /* typed getters */
    CHECK(dsv4_json_get_i64(j, "i", &i, &err) == 0 && i == -12);
    CHECK(dsv4_json_get_f64(j, "d", &d, &err) == 0 && d == 1.5);
    CHECK(dsv4_json_get_f64(j, "i", &d, &err) == 0 && d == -12);
    CHECK(dsv4_json_get_bool(j, "t", &b, &err) == 0 && b == 1);
    CHECK(dsv4_json_get_bool(j, "f", &b, &err) == 0 && b == 0);
    CHECK(dsv4_json_get_str(j, "s", &s, &err) == 0 && !strcmp(s, "x"));
    CHECK(dsv4_json_get_i64(j, "nope", &i, &err) == DSV4_E_NOTFOUND && strstr(err.msg, "'nope'"));
    CHECK(dsv4_json_get_i64(j, "d", &i, &err) == DSV4_E_FORMAT && strstr(err.msg, "'d'"));
    CHECK(dsv4_json_get_i64(j, "s", &i, &err) == DSV4_E_FORMAT && strstr(err.msg, "a string"));
    CHECK(dsv4_json_get_bool(j, "n", &b, &err) == DSV4_E_FORMAT && strstr(err.msg, "null"));
    CHECK(dsv4_json_get_str(j, "a", &s, &err) == DSV4_E_FORMAT && strstr(err.msg, "an array"));
    CHECK(dsv4_json_get_f64(j, "t", &d, &err) == DSV4_E_FORMAT);
    CHECK(dsv4_json_get_i64(dsv4_json_get(j, "a"), "x", &i, &err) == DSV4_E_FORMAT && strstr(err.msg, "not an object"));
    dsv4_json_free(j);
    dsv4_json_free(NULL);
}

TEST(scalars_and_whitespace)
{
    dsv4_json *j;
    CHECK((j = parse(" \t\r\n 42 \n")) && j->type == DSV4_JSON_NUMBER && j->num == 42 && j->line == 2 && j->col == 2);
    dsv4_json_free(j);
    CHECK((j = parse("\"s\"")) && j->type == DSV4_JSON_STRING && !strcmp(j->str, "s"));
    dsv4_json_free(j);
    CHECK((j = parse("null")) && j->type == DSV4_JSON_NULL);
    dsv4_json_free(j);
    CHECK((j = parse("[]")) && j->type == DSV4_JSON_ARRAY && j->len == 0);
    dsv4_json_free(j);
    CHECK((j = parse("{ }")) && j->type == DSV4_JSON_OBJECT && j->len == 0);
    dsv4_json_free(j);
    CHECK((j = parse("\"\"")) && j->type == DSV4_JSON_STRING && j->len == 0 && j->str && !j->str[0]);
    dsv4_json_free(j);
    /* positions of values, in bytes, 1-based */
    j = parse("{\r\n  \"a\": [true,\n    \"\xc3\xa9\", 7]\n}");
    CHECK(j && j->line == 1 && j->col == 1);
    if (j) {
        const dsv4_json *a = dsv4_json_get(j, "a");
        CHECK(a && a->line == 2 && a->col == 8);
        CHECK(a && a->items[0].line == 2 && a->items[0].col == 9);
        CHECK(a && a->items[1].line == 3 && a->items[1].col == 5);
        CHECK(a && a->items[2].line == 3 && a->items[2].col == 11);
    }
    dsv4_json_free(j);
}

TEST(strings_and_unicode)
{
    dsv4_json *j = parse("[\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\", \"\\u00e9\\u20AC\", \"\\ud83d\\ude00\", \"\\uD834\\uDD1E\","
                         " \"a\\u0000b\", \"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\", \"\\u0041\\u007f\\u0080\\uffff\","
                         " \"\\udbff\\udfff\", \"\xf4\x8f\xbf\xbf\", \"\xed\x9f\xbf\xee\x80\x80\"]");
    CHECK(j && j->len == 10);
    if (!j)
        return;
    CHECK_STR(j->items[0].str, "\" \\ / \b \f \n \r \t");
    CHECK_STR(j->items[1].str, "\xc3\xa9\xe2\x82\xac");
    CHECK_STR(j->items[2].str, "\xf0\x9f\x98\x80");          /* U+1F600 from a surrogate pair */
    CHECK_STR(j->items[3].str, "\xf0\x9d\x84\x9e");          /* U+1D11E, upper-case hex */
    CHECK_EQ_INT(j->items[4].len, 3);                         /* embedded NUL kept */
    CHECK(j->items[4].len == 3 && !memcmp(j->items[4].str, "a\0b", 4));
    CHECK_STR(j->items[5].str, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");   /* raw UTF-8 passes */
    CHECK_STR(j->items[6].str, "A\x7f\xc2\x80\xef\xbf\xbf");
    CHECK_STR(j->items[7].str, "\xf4\x8f\xbf\xbf");          /* U+10FFFF, the last code point */
    CHECK_STR(j->items[8].str, "\xf4\x8f\xbf\xbf");
    CHECK_STR(j->items[9].str, "\xed\x9f\xbf\xee\x80\x80");  /* U+D7FF and U+E000 around the surrogates */
    dsv4_json_free(j);

    /* keys are decoded the same way */
    j = parse("{\"k\\u00e9y\": 1, \"a\\u0000b\": 2}");
    CHECK(j && !strcmp(j->keys[0], "k\xc3\xa9y") && j->key_lens[0] == 4);
    CHECK(j && j->key_lens[1] == 3 && !memcmp(j->keys[1], "a\0b", 3));
    dsv4_json_free(j);

    /* lone surrogates only with the flag, kept as WTF-8 */
    CHECK(rejects("\"\\ud800\"", 1, 2, "lone surrogate"));
    j = parse_n("[\"\\ud800\", \"x\\udfffy\", \"\\ud800\\u0041\"]", (size_t)-1, DSV4_JSON_ALLOW_LONE_SURROGATES);
    CHECK(j && j->len == 3);
    if (j) {
        CHECK_STR(j->items[0].str, "\xed\xa0\x80");
        CHECK_STR(j->items[1].str, "x\xed\xbf\xbfy");
        CHECK_STR(j->items[2].str, "\xed\xa0\x80" "A");
        /* and written back as Python writes a lone surrogate */
        CHECK(writes(j, -1, NULL, NULL, "[\"\\ud800\", \"x\\udfffy\", \"\\ud800A\"]"));
    }
    dsv4_json_free(j);
}

TEST(duplicate_keys_last_wins)
{
    dsv4_json *j = parse("{\"a\": 1, \"b\": 2, \"a\": 3, \"a\\u0000\": 4}");
    const dsv4_json *v;
    int64_t i = 0;
    dsv4_err err = DSV4_ERR_INIT;
    CHECK(j && j->len == 4);   /* all kept, in document order */
    CHECK((v = dsv4_json_get(j, "a")) && v->num == 3);
    CHECK(dsv4_json_get_i64(j, "a", &i, &err) == 0 && i == 3);
    CHECK((v = dsv4_json_get(j, "b")) && v->num == 2);
    dsv4_json_free(j);
}

TEST(numbers)
{
    static const struct { const char *lit; int is_int; double v; } ok[] = {
        { "0", 1, 0 }, { "-0", 1, 0 }, { "7", 1, 7 }, { "-123", 1, -123 },
        { "999999999999999", 1, 999999999999999.0 },
        { "9007199254740993", 1, 9007199254740992.0 },        /* nearest double */
        { "12345678901234567890123", 1, 1.2345678901234568e22 },
        { "1.0", 0, 1.0 }, { "-0.0", 0, -0.0 }, { "0.5", 0, 0.5 }, { "1e2", 0, 100 }, { "1E2", 0, 100 },
        { "1e+2", 0, 100 }, { "1e-2", 0, 0.01 }, { "-2.5E-3", 0, -0.0025 }, { "0.1e1", 0, 1 },
        { "1.7976931348623157e308", 0, DBL_MAX }, { "4.9e-324", 0, 4.9e-324 },
        { "1e-400", 0, 0.0 },                                  /* underflow: 0, as Python */
    };
    for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
        dsv4_json *j = parse(ok[k].lit);
        CHECK(j && j->type == DSV4_JSON_NUMBER);
        if (!j)
            continue;
        /* (the sign of "-0" is not checked: Python reads it as the int 0) */
        if (j->is_int != ok[k].is_int || j->num != ok[k].v || strcmp(j->str, ok[k].lit) ||
            (!j->is_int && signbit(j->num) != signbit(ok[k].v))) {
            fprintf(stderr, "  %s: is_int %d num %.17g str %s\n", ok[k].lit, j->is_int, j->num, j->str);
            CHECK(0);
        }
        dsv4_json_free(j);
    }
    {
        dsv4_json *j = parse("{\"max\": 9223372036854775807, \"min\": -9223372036854775808, "
                             "\"over\": 9223372036854775808, \"f\": 1.0, \"e\": 1e3}");
        int64_t i;
        dsv4_err err = DSV4_ERR_INIT;
        CHECK(j != NULL);
        CHECK(dsv4_json_get_i64(j, "max", &i, &err) == 0 && i == INT64_MAX);
        CHECK(dsv4_json_get_i64(j, "min", &i, &err) == 0 && i == INT64_MIN);
        CHECK(dsv4_json_get_i64(j, "over", &i, &err) == DSV4_E_FORMAT && strstr(err.msg, "out of range"));
        CHECK(dsv4_json_get_i64(j, "f", &i, &err) == DSV4_E_FORMAT && strstr(err.msg, "integer"));
        CHECK(dsv4_json_get_i64(j, "e", &i, &err) == DSV4_E_FORMAT);
        dsv4_json_free(j);
    }
}

TEST(hostile_syntax)
{
    CHECK(rejects("", 1, 1, "empty input"));
    CHECK(rejects(" \n\t ", 2, 3, "empty input"));
    /* trailing commas */
    CHECK(rejects("[1, 2,]", 1, 7, "trailing comma"));
    CHECK(rejects("{\"a\": 1,}", 1, 9, "trailing comma"));
    CHECK(rejects("{\"a\": [1,\n  ]}", 2, 3, "trailing comma"));
    CHECK(rejects("[,1]", 1, 2, "expected a value"));
    CHECK(rejects("[1,,2]", 1, 4, "expected a value"));
    CHECK(rejects("{,}", 1, 2, "expected a string key"));
    /* comments */
    CHECK(rejects("// c\n1", 1, 1, "expected a value"));
    CHECK(rejects("[1 /* x */]", 1, 4, "expected ','"));
    CHECK(rejects("{\"a\": 1 # x\n}", 1, 9, "expected ','"));
    /* NaN and friends */
    CHECK(rejects("NaN", 1, 1, "expected a value"));
    CHECK(rejects("[1, NaN]", 1, 5, "expected a value"));
    CHECK(rejects("Infinity", 1, 1, "expected a value"));
    CHECK(rejects("[-Infinity]", 1, 3, "expected a digit after '-'"));
    CHECK(rejects("nan", 1, 1, "expected a value"));
    /* numbers */
    CHECK(rejects("01", 1, 1, "leading zero"));
    CHECK(rejects("[-012]", 1, 3, "leading zero"));
    CHECK(rejects("00.5", 1, 1, "leading zero"));
    CHECK(rejects("+1", 1, 1, "expected a value"));
    CHECK(rejects(".5", 1, 1, "expected a value"));
    CHECK(rejects("1.", 1, 3, "after '.'"));
    CHECK(rejects("[1.e5]", 1, 4, "after '.'"));
    CHECK(rejects("1e", 1, 3, "exponent"));
    CHECK(rejects("1e+", 1, 4, "exponent"));
    CHECK(rejects("-", 1, 2, "after '-'"));
    CHECK(rejects("0x10", 1, 2, "unexpected"));
    /* literals */
    CHECK(rejects("tru", 1, 1, "expected a value"));
    CHECK(rejects("[True]", 1, 2, "expected a value"));
    CHECK(rejects("nul", 1, 1, "expected a value"));
    CHECK(rejects("\xef\xbb\xbf{}", 1, 1, "byte order mark"));
    CHECK(rejects("'a'", 1, 1, "expected a value"));
    CHECK(rejects("{a: 1}", 1, 2, "expected a string key"));
    CHECK(rejects("{\"a\" 1}", 1, 6, "expected ':'"));
    CHECK(rejects("{\"a\": 1 \"b\": 2}", 1, 9, "expected ','"));
    CHECK(rejects("[1 2]", 1, 4, "expected ','"));
    /* trailing garbage */
    CHECK(rejects("1 2", 1, 3, "after the JSON value"));
    CHECK(rejects("{} x", 1, 4, "after the JSON value"));
    CHECK(rejects("[]]", 1, 3, "after the JSON value"));
    CHECK(rejects("{}\n\n  {}", 3, 3, "after the JSON value"));
    CHECK(rejects_n("{}\0", 3, 1, 3, "byte 0x00"));
    CHECK(rejects("\"a\"\"b\"", 1, 4, "after the JSON value"));
}

TEST(hostile_strings)
{
    /* control characters must be escaped */
    CHECK(rejects("\"a\tb\"", 1, 3, "control character 0x09"));
    CHECK(rejects("[\"ab\ncd\"]", 1, 5, "control character 0x0a"));
    CHECK(rejects("\"\x01\"", 1, 2, "control character 0x01"));
    CHECK(rejects("\"\x1f\"", 1, 2, "control character 0x1f"));
    CHECK(rejects_n("\"a\0b\"", 5, 1, 3, "control character 0x00"));
    CHECK(rejects("{\"k\x7f\": 1, \"k\x02\": 2}", 1, 13, "control character 0x02"));
    /* escapes */
    CHECK(rejects("\"\\x41\"", 1, 2, "invalid escape"));
    CHECK(rejects("\"\\'\"", 1, 2, "invalid escape"));
    CHECK(rejects("\"\\u12G4\"", 1, 2, "\\u escape"));
    CHECK(rejects("\"\\U0041\"", 1, 2, "invalid escape"));
    /* lone and mismatched surrogate escapes */
    CHECK(rejects("\"\\ud800\"", 1, 2, "lone surrogate"));
    CHECK(rejects("\"ab\\udc00\"", 1, 4, "lone surrogate"));
    CHECK(rejects("\"\\ud800\\u0041\"", 1, 2, "lone surrogate"));
    CHECK(rejects("\"\\ud800\\ud800\"", 1, 2, "lone surrogate"));
    CHECK(rejects("\"\\udc00\\ud800\"", 1, 2, "lone surrogate"));
    CHECK(rejects("\"\\ud800x\"", 1, 2, "lone surrogate"));
    CHECK(rejects("{\"\\ud83d\": 1}", 1, 3, "lone surrogate"));
    /* invalid UTF-8 */
    CHECK(rejects("\"\xc0\xaf\"", 1, 2, "invalid UTF-8"));              /* overlong '/' */
    CHECK(rejects("\"\xc1\xbf\"", 1, 2, "invalid UTF-8"));              /* overlong */
    CHECK(rejects("\"ab\xe0\x80\xaf\"", 1, 4, "invalid UTF-8"));        /* overlong 3 bytes */
    CHECK(rejects("\"\xe0\x9f\xbf\"", 1, 2, "invalid UTF-8"));          /* overlong U+07FF */
    CHECK(rejects("\"\xf0\x80\x80\xaf\"", 1, 2, "invalid UTF-8"));      /* overlong 4 bytes */
    CHECK(rejects("\"\xf0\x8f\xbf\xbf\"", 1, 2, "invalid UTF-8"));      /* overlong U+FFFF */
    CHECK(rejects("\"\xed\xa0\x80\"", 1, 2, "invalid UTF-8"));          /* U+D800 encoded */
    CHECK(rejects("\"\xed\xbf\xbf\"", 1, 2, "invalid UTF-8"));          /* U+DFFF encoded */
    CHECK(rejects("\"\xed\xa0\xbd\xed\xb8\x80\"", 1, 2, "invalid UTF-8")); /* CESU-8 pair */
    CHECK(rejects("\"\xf4\x90\x80\x80\"", 1, 2, "invalid UTF-8"));      /* U+110000 */
    CHECK(rejects("\"\xf5\x80\x80\x80\"", 1, 2, "invalid UTF-8"));
    CHECK(rejects("\"\xf8\x88\x80\x80\x80\"", 1, 2, "invalid UTF-8"));  /* 5-byte form */
    CHECK(rejects("\"\xff\"", 1, 2, "invalid UTF-8"));
    CHECK(rejects("\"\xfe\xff\"", 1, 2, "invalid UTF-8"));
    CHECK(rejects("\"\x80\"", 1, 2, "invalid UTF-8"));                  /* stray continuation */
    CHECK(rejects("\"\xc3\"", 1, 2, "invalid UTF-8"));                  /* truncated at the quote */
    CHECK(rejects("\"\xe2\x82\"", 1, 2, "invalid UTF-8"));
    CHECK(rejects("\"\xf0\x9f\x98\"", 1, 2, "invalid UTF-8"));
    CHECK(rejects("\"\xe2\x82x\"", 1, 2, "invalid UTF-8"));             /* bad continuation */
    CHECK(rejects("\"\xc3\xa9\xc3\"", 1, 4, "invalid UTF-8"));
    CHECK(rejects("[\"ok\",\n \"\xc3\xa9\xed\xa0\x80\"]", 2, 5, "invalid UTF-8"));
    CHECK(rejects("{\"\xc0\x80\": 1}", 1, 3, "invalid UTF-8"));        /* in a key */
    CHECK(rejects("\xff", 1, 1, "byte 0xff"));                          /* outside strings */
    CHECK(rejects("[\xc3\xa9]", 1, 2, "byte 0xc3"));
}

TEST(truncated_input)
{
    static const struct { const char *s; int col; const char *what; } t[] = {
        { "[", 2, "end of input" }, { "[1", 3, "end of input" }, { "[1,", 4, "end of input" },
        { "[1, 2", 6, "end of input" }, { "{", 2, "end of input" }, { "{\"a\"", 5, "end of input" },
        { "{\"a\":", 6, "end of input" }, { "{\"a\": ", 7, "end of input" }, { "{\"a\": 1", 8, "end of input" },
        { "{\"a\": 1,", 9, "end of input" }, { "\"abc", 1, "unterminated string" },
        { "[\"abc", 2, "unterminated string" }, { "\"\\", 1, "unterminated string" },
        { "\"\\u12", 2, "\\u escape" }, { "\"a\\\"", 1, "unterminated string" }, { "{\"ab", 2, "unterminated" },
        { "t", 1, "expected a value" }, { "fals", 1, "expected a value" }, { "-", 2, "after '-'" },
        { "1.", 3, "after '.'" }, { "1e", 3, "exponent" }, { "[[[[", 5, "end of input" },
    };
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++)
        CHECK(rejects(t[k].s, 1, t[k].col, t[k].what));
    /* a valid document cut at every byte is always rejected, never read */
    {
        static const char doc[] = "{\"a\": [1, -2.5e3, \"x\\u00e9\\ud83d\\ude00\xc3\xa9\", true, null], \"b\": {}}";
        for (size_t n = 0; n < sizeof doc - 1; n++) {
            dsv4_json *j = NULL;
            dsv4_err err = DSV4_ERR_INIT;
            int rc = dsv4_json_parse(&j, doc, n, 0, &err);
            if (rc == 0 || j || !strstr(err.msg, "line 1, column ")) {
                fprintf(stderr, "  prefix of %zu bytes: rc %d msg '%s'\n", n, rc, err.msg);
                CHECK(0);
            }
            dsv4_json_free(j);
        }
        dsv4_json_free(parse(doc));
    }
}

TEST(huge_numbers)
{
    char big[600];
    CHECK(rejects("1e400", 1, 1, "out of range"));
    CHECK(rejects("[0, -1e400]", 1, 5, "out of range"));
    CHECK(rejects("{\"x\": 1.8e308}", 1, 7, "out of range"));
    CHECK(rejects("1234567890e300", 1, 1, "out of range"));
    CHECK(rejects("-0.000000000000000000000000000001e339", 1, 1, "out of range"));
    /* a 400-digit integer is beyond any double as well */
    big[0] = '[';
    memset(big + 1, '9', 400);
    strcpy(big + 401, "]");
    CHECK(rejects(big, 1, 2, "out of range"));
    /* a 300-digit one is not: its literal is kept exactly for the writer */
    memset(big, '9', 300);
    big[300] = 0;
    {
        dsv4_json *j = parse(big);
        int64_t i;
        dsv4_err err = DSV4_ERR_INIT;
        dsv4_json *o = parse("{\"n\": 99999999999999999999}");
        CHECK(j && j->is_int && j->num > 9.9e299 && strlen(j->str) == 300);
        CHECK(j && writes(j, -1, NULL, NULL, big));
        CHECK(o && dsv4_json_get_i64(o, "n", &i, &err) == DSV4_E_FORMAT && strstr(err.msg, "out of range"));
        dsv4_json_free(j);
        dsv4_json_free(o);
    }
    /* long but representable */
    {
        char s[5000] = "0.";
        dsv4_json *j;
        memset(s + 2, '3', 4000);
        s[4002] = 0;
        CHECK((j = parse(s)) && j->num == 1.0 / 3);
        dsv4_json_free(j);
    }
}

/* n nested arrays, or objects {"a": ...} */
static char *nested(int n, int obj)
{
    char *s = malloc((size_t)n * 6 + 8), *p = s;
    for (int i = 0; i < n; i++) {
        if (obj) {
            memcpy(p, "{\"a\":", 5);
            p += 5;
        } else {
            *p++ = '[';
        }
    }
    *p++ = '1';
    for (int i = 0; i < n; i++)
        *p++ = obj ? '}' : ']';
    *p = 0;
    return s;
}

TEST(nesting_depth)
{
    int ns[] = { 1, 500, 512 };
    for (int o = 0; o < 2; o++) {
        for (size_t k = 0; k < 3; k++) {
            char *s = nested(ns[k], o);
            dsv4_json *j = parse(s);
            const dsv4_json *v = j;
            int depth = 0;
            CHECK(j != NULL);
            while (v && v->type != DSV4_JSON_NUMBER) {
                v = o ? dsv4_json_get(v, "a") : dsv4_json_at(v, 0);
                depth++;
            }
            CHECK(v && v->num == 1);
            CHECK_EQ_INT(depth, ns[k]);
            if (j) {   /* the writer copes with the deepest tree the reader makes */
                CHECK(writes(j, -1, ",", ":", s));
            }
            dsv4_json_free(j);
            free(s);
        }
        {
            char *s = nested(513, o);
            CHECK(rejects(s, 1, o ? 512 * 5 + 1 : 513, "nesting deeper than 512"));
            free(s);
        }
        {
            char *s = nested(100000, o);
            CHECK(rejects(s, 1, o ? 512 * 5 + 1 : 513, "nesting deeper than 512"));
            free(s);
        }
    }
    /* depth is about open containers, not their number */
    {
        dsv4_buf b = DSV4_BUF_INIT;
        dsv4_json *j;
        dsv4_buf_putc(&b, '[');
        for (int i = 0; i < 2000; i++)
            dsv4_buf_puts(&b, i ? ", [[]]" : "[[]]");
        dsv4_buf_putc(&b, ']');
        CHECK((j = parse(b.data)) && j->len == 2000);
        dsv4_json_free(j);
        dsv4_buf_release(&b);
    }
}

TEST(big_document)
{
    /* many nodes and long strings: the arena and the value stack grow */
    dsv4_buf b = DSV4_BUF_INIT;
    dsv4_json *j;
    char *longs = malloc(100001);
    memset(longs, 'x', 100000);
    longs[100000] = 0;
    dsv4_buf_puts(&b, "{\"vocab\": {");
    for (int i = 0; i < 50000; i++)
        dsv4_buf_printf(&b, "%s\"t%d\": %d", i ? ", " : "", i, i);
    dsv4_buf_printf(&b, "}, \"long\": \"%s\", \"list\": [", longs);
    for (int i = 0; i < 50000; i++)
        dsv4_buf_printf(&b, "%s[%d, \"s%d\"]", i ? ", " : "", i, i);
    dsv4_buf_puts(&b, "]}");
    j = parse(b.data);
    CHECK(j != NULL);
    if (j) {
        const dsv4_json *v = dsv4_json_get(j, "vocab"), *l = dsv4_json_get(j, "list");
        CHECK(v && v->len == 50000 && dsv4_json_get(v, "t49999") && dsv4_json_get(v, "t49999")->num == 49999);
        CHECK(v && dsv4_json_get(v, "t123")->num == 123);
        CHECK(dsv4_json_get(j, "long") && dsv4_json_get(j, "long")->len == 100000);
        CHECK(l && l->len == 50000 && !strcmp(dsv4_json_at(dsv4_json_at(l, 31337), 1)->str, "s31337"));
        CHECK(writes(j, -1, NULL, NULL, b.data));   /* this text is already in Python's style */
    }
    dsv4_json_free(j);
    dsv4_buf_release(&b);
    free(longs);
}

TEST(utf8_valid_prefix)
{
    CHECK_EQ_INT(dsv4_utf8_valid_prefix("", 0), 0);
    CHECK_EQ_INT(dsv4_utf8_valid_prefix("abc", 3), 3);
    CHECK_EQ_INT(dsv4_utf8_valid_prefix("a\0b", 3), 3);
    CHECK_EQ_INT(dsv4_utf8_valid_prefix("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", 13), 13);
    CHECK_EQ_INT(dsv4_utf8_valid_prefix("ab\xc0\xaf", 4), 2);
    CHECK_EQ_INT(dsv4_utf8_valid_prefix("ab\xed\xa0\x80", 5), 2);
    CHECK_EQ_INT(dsv4_utf8_valid_prefix("\xc3\xa9\xf4\x90\x80\x80", 6), 2);
    CHECK_EQ_INT(dsv4_utf8_valid_prefix("abc\xe2\x82", 5), 3);       /* truncated at n */
    CHECK_EQ_INT(dsv4_utf8_valid_prefix("abc\xe2\x82\xac", 5), 3);   /* n cuts a valid sequence */
    CHECK_EQ_INT(dsv4_utf8_valid_prefix("\x80", 1), 0);
    CHECK_EQ_INT(dsv4_utf8_valid_prefix("\xff", 1), 0);
}

TEST(writer_strings)
{
    dsv4_buf b = DSV4_BUF_INIT;
    /* json.dumps("\"\\\n\r\t\b\f\x01\x1f\x7f/\x00é😀\u2028", ensure_ascii=False) */
    static const char in[] = "\"\\\n\r\t\b\f\x01\x1f\x7f/\0\xc3\xa9\xf0\x9f\x98\x80\xe2\x80\xa8";
    static const char want[] =
        "\"\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001f\x7f/\\u0000\xc3\xa9\xf0\x9f\x98\x80\xe2\x80\xa8\"";
    dsv4_json_write_str(&b, in, sizeof in - 1);
    CHECK_STR(b.data, want);
    dsv4_buf_release(&b);
    dsv4_json_write_str(&b, "", 0);
    CHECK_STR(b.data, "\"\"");
    dsv4_buf_release(&b);
    for (int c = 0; c < 0x20; c++) {
        char ch = (char)c, want1[16];
        static const char *named[] = { ['\b'] = "\\b", ['\t'] = "\\t", ['\n'] = "\\n", ['\f'] = "\\f", ['\r'] = "\\r" };
        dsv4_json_write_str(&b, &ch, 1);
        if (c < (int)(sizeof named / sizeof named[0]) && named[c])
            snprintf(want1, sizeof want1, "\"%s\"", named[c]);
        else
            snprintf(want1, sizeof want1, "\"\\u%04x\"", c);
        CHECK_STR(b.data, want1);
        dsv4_buf_release(&b);
    }
    /* round trip through the reader */
    {
        dsv4_json *j;
        dsv4_json_write_str(&b, in, sizeof in - 1);
        j = parse_n(b.data, b.len, 0);
        CHECK(j && j->len == sizeof in - 1 && !memcmp(j->str, in, sizeof in - 1));
        dsv4_json_free(j);
        dsv4_buf_release(&b);
    }
}

TEST(writer_floats_python_repr)
{
    /* (value, json.dumps(value)) from CPython */
    static const struct { double v; const char *py; } t[] = {
        { 0x1.4f8b588e368f1p-17, "1e-05" },
        { 0x1.1c37937e08000p+53, "1e+16" },
        { 0x1.9000000000000p+6, "100.0" },
        { 0x1.999999999999ap-4, "0.1" },
        { 0x1.a36e2eb1c432dp-14, "0.0001" },
        { 0x1.421f5f40d8376p-23, "1.5e-07" },
        { 0x1.b69b4ba630f35p+56, "1.2345678901234568e+17" },
        { 0x1.0000000000000p+53, "9007199254740992.0" },
        { 0x1.c6bf526340000p+49, "1000000000000000.0" },
        { 0x1.1c37937e07fffp+53, "9999999999999998.0" },
        { 0x1.3333333333334p-2, "0.30000000000000004" },
        { 0x1.4000000000000p+1, "2.5" },
        { -0x0.0p+0, "-0.0" },
        { 0x0.0p+0, "0.0" },
        { 0x0.0000000000001p-1022, "5e-324" },
        { 0x1.fffffffffffffp+1023, "1.7976931348623157e+308" },
        { 0x1.0000000000000p-1022, "2.2250738585072014e-308" },
        { 0x1.5555555555555p-2, "0.3333333333333333" },
        { 0x1.5555555555555p-1, "0.6666666666666666" },
        { 0x1.0f0cf064dd592p+73, "1e+22" },
        { 0x1.edd2f1a9fbe77p+6, "123.456" },
        { 0x1.0624dd2f1a9fcp-10, "0.001" },
        { 0x1.5d867c3ece2a5p-12, "0.0003333333333333333" },
        { 0x1.81cd6c8b43958p+13, "12345.678" },
        { -0x1.8000000000000p+0, "-1.5" },
        { 0x1.52d02c7e14af6p+76, "1e+23" },
        { 0x1.c7e83209e90b2p+72, "8.41e+21" },
        { 0x0.05c0ab9347ed7p-1022, "5e-310" },
        { 0x1.8e757928e0c9ep-14, "9.5e-05" },
        { 0x1.3a92a30553261p-13, "0.00015" },
        { 0x0.0000000000003p-1022, "1.5e-323" },
        { 0x1.0000000000000p+63, "9.223372036854776e+18" },
        { 0x1.1666666666666p+2, "4.35" },
        { 0x1.199999999999ap+0, "1.1" },
        { 0x1.d6f34547e6b74p+26, "123456789.12345678" },
        { 0x0.0000000003039p-1022, "6.099e-320" },
        { 0x0.0000000000002p-1022, "1e-323" },
        { 0x0.8000000000000p-1022, "1.1125369292536007e-308" },
        { 0x1.9999999999999p-1, "0.7999999999999999" },
        { 0x1.b1ae4d6e2ef50p+69, "1e+21" },
        { 0x1.ad7f29abcaf48p-24, "1e-07" },
        { 0x1.18b54f22aeb03p+50, "1234567890123456.8" },
        { 0x1.5ee2a2eb5a5c4p+53, "1.2345678901234568e+16" },
        { 0x1.3a6f252e6b438p+918, "2.7216092808335446e+276" },
        { -0x1.99387269e0d37p-215, "-3.035766360112293e-65" },
        { 0x1.e3fe8a6a3a450p-925, "6.665830898196862e-279" },
        { -0x1.f8412128b2f33p+658, "-2.3558459513947972e+198" },
        { 0x1.c7408892f902bp-831, "1.2418970069620836e-250" },
        { -0x1.8cc2e5d9dc9f8p+170, "-2.319469273766672e+51" },
        { 0x1.12eca0ed90475p+840, "7.873531487934826e+252" },
        { -0x1.b3ae681e74ef5p-584, "-2.6878898238430084e-176" },
        { 0x1.051ad099950d8p-847, "1.086847153644306e-255" },
        { -0x1.6aa4d6f03675ap-167, "-7.572358053192185e-51" },
        { 0x1.e0b9211e20b8fp-531, "2.6713290337373985e-160" },
        { -0x1.8b7671738f7d9p+105, "-6.266356115726005e+31" },
        { 0x1.0eedb6cad4a26p-902, "3.13010388235547e-272" },
        { -0x1.0c967d3ac94afp+135, "-4.569785438180719e+40" },
        { 0x1.6082e1fb17c23p+917, "1.5255942855744936e+276" },
        { -0x1.8599c39263059p+268, "-7.218027539944233e+80" },
        { 0x1.a51034f2906fbp-18, "6.274332224055893e-06" },
        { 0x1.19c9de5b1315ap+19, "577102.9486174986" },
        { 0x1.fbcb68e19b45cp-2, "0.4958931338977146" },
        { 0x1.e8746e5ec075cp-12, "0.00046582680617756277" },
        { 0x1.7b98c044abf73p-9, "0.0028960928633167625" },
        { 0x1.f78d8f817091ep+38, "540685885532.14246" },
        { 0x1.ac1ac2761e088p+64, "3.0848182410193437e+19" },
        { 0x1.6590da28841e1p-11, "0.0006820026947612045" },
    };
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++)
        CHECK(f64_is(t[k].v, t[k].py));
    /* json.dumps(float('nan')) etc. (allow_nan=True, Python's default) */
    CHECK(f64_is(NAN, "NaN"));
    CHECK(f64_is(INFINITY, "Infinity"));
    CHECK(f64_is(-INFINITY, "-Infinity"));
}

/* Property check over random doubles: what the writer prints reads back
 * exactly, has the fewest digits that do, and among those is the correctly
 * rounded one when that one reads back (Python's repr, dtoa mode 0). */
TEST(writer_floats_shortest_roundtrip)
{
    uint64_t s = 0x2545f4914f6cdd1dull;
    int bad = 0;
    for (int it = 0; it < 200000 && bad < 5; it++) {
        dsv4_buf b = DSV4_BUF_INIT;
        double v, r;
        uint64_t bits;
        char dig[32], buf[64];
        int nd = 0, exp_seen = 0;
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        bits = it % 4 == 0 ? s : (s & 0x800fffffffffffffull) | ((uint64_t)(1023 - 30 + (s >> 52) % 60) << 52);
        memcpy(&v, &bits, 8);
        if (!isfinite(v))
            continue;
        dsv4_json_write_f64(&b, v);
        r = strtod(b.data, NULL);
        for (const char *p = b.data; *p && !exp_seen; p++) {
            if (*p == 'e')
                exp_seen = 1;
            else if (*p >= '0' && *p <= '9' && (nd || *p != '0') && nd < 31)
                dig[nd++] = *p;
        }
        while (nd > 1 && dig[nd - 1] == '0')
            nd--;   /* "100.0": the trailing zeros are not significant */
        if (memcmp(&r, &v, 8)) {
            fprintf(stderr, "  %a: '%s' reads back as %a\n", v, b.data, r);
            bad++;
        } else if (nd > 17) {
            fprintf(stderr, "  %a: '%s' has %d digits\n", v, b.data, nd);
            bad++;
        } else if (nd > 1) {
            snprintf(buf, sizeof buf, "%.*e", nd - 2, v);
            if (strtod(buf, NULL) == v) {
                fprintf(stderr, "  %a: '%s' but %s is shorter\n", v, b.data, buf);
                bad++;
            }
        }
        if (!bad && nd >= 1) {
            char cr[32];
            int nc = 0;
            snprintf(buf, sizeof buf, "%.*e", nd - 1, v);
            if (strtod(buf, NULL) == v) {
                for (const char *p = buf; *p && *p != 'e'; p++)
                    if (*p >= '0' && *p <= '9')
                        cr[nc++] = *p;
                while (nc > 1 && cr[nc - 1] == '0')
                    nc--;
                if (nc != nd || memcmp(cr, dig, (size_t)nd)) {
                    fprintf(stderr, "  %a: '%s' but the correctly rounded %s reads back\n", v, b.data, buf);
                    bad++;
                }
            }
        }
        dsv4_buf_release(&b);
    }
    CHECK_EQ_INT(bad, 0);
}

TEST(writer_documents)
{
    /* expected: json.dumps(json.loads(doc), ensure_ascii=False, ...) */
    static const char doc[] =
        "{\"a\": [1, 2.50, {\"b\": null}], \"c\": \"x\\u00e9\\n\", \"d\": true, \"e\": {}, \"f\": [], \"g\": [[]], "
        "\"h\": -0, \"i\": 1e2, \"j\": 1E-5, \"k\": 12345678901234567890, \"l\": -0.0, \"m\": 0.1e1}";
    dsv4_json *j = parse(doc);
    CHECK(j != NULL);
    if (!j)
        return;
    CHECK(writes(j, -1, NULL, NULL,
                 "{\"a\": [1, 2.5, {\"b\": null}], \"c\": \"x\xc3\xa9\\n\", \"d\": true, \"e\": {}, \"f\": [], "
                 "\"g\": [[]], \"h\": 0, \"i\": 100.0, \"j\": 1e-05, \"k\": 12345678901234567890, \"l\": -0.0, "
                 "\"m\": 1.0}"));
    CHECK(writes(j, -1, ", ", ": ",
                 "{\"a\": [1, 2.5, {\"b\": null}], \"c\": \"x\xc3\xa9\\n\", \"d\": true, \"e\": {}, \"f\": [], "
                 "\"g\": [[]], \"h\": 0, \"i\": 100.0, \"j\": 1e-05, \"k\": 12345678901234567890, \"l\": -0.0, "
                 "\"m\": 1.0}"));
    /* separators=(',', ':') */
    CHECK(writes(j, -1, ",", ":",
                 "{\"a\":[1,2.5,{\"b\":null}],\"c\":\"x\xc3\xa9\\n\",\"d\":true,\"e\":{},\"f\":[],\"g\":[[]],"
                 "\"h\":0,\"i\":100.0,\"j\":1e-05,\"k\":12345678901234567890,\"l\":-0.0,\"m\":1.0}"));
    /* indent=2 */
    CHECK(writes(j, 2, NULL, NULL,
                 "{\n  \"a\": [\n    1,\n    2.5,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": \"x\xc3\xa9\\n\",\n"
                 "  \"d\": true,\n  \"e\": {},\n  \"f\": [],\n  \"g\": [\n    []\n  ],\n  \"h\": 0,\n  \"i\": 100.0,\n"
                 "  \"j\": 1e-05,\n  \"k\": 12345678901234567890,\n  \"l\": -0.0,\n  \"m\": 1.0\n}"));
    /* indent=0: newlines, no spaces */
    CHECK(writes(j, 0, NULL, NULL,
                 "{\n\"a\": [\n1,\n2.5,\n{\n\"b\": null\n}\n],\n\"c\": \"x\xc3\xa9\\n\",\n\"d\": true,\n\"e\": {},\n"
                 "\"f\": [],\n\"g\": [\n[]\n],\n\"h\": 0,\n\"i\": 100.0,\n\"j\": 1e-05,\n"
                 "\"k\": 12345678901234567890,\n\"l\": -0.0,\n\"m\": 1.0\n}"));
    /* indent with ", " is taken as Python's indent default "," (see json.h) */
    CHECK(writes(j, 2, ", ", ": ",
                 "{\n  \"a\": [\n    1,\n    2.5,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": \"x\xc3\xa9\\n\",\n"
                 "  \"d\": true,\n  \"e\": {},\n  \"f\": [],\n  \"g\": [\n    []\n  ],\n  \"h\": 0,\n  \"i\": 100.0,\n"
                 "  \"j\": 1e-05,\n  \"k\": 12345678901234567890,\n  \"l\": -0.0,\n  \"m\": 1.0\n}"));
    /* indent=1, separators=(',', ':') */
    {
        dsv4_json *k = parse("{\"a\": [1, {}], \"b\": \"\"}");
        CHECK(k && writes(k, 1, ",", ":", "{\n \"a\":[\n  1,\n  {}\n ],\n \"b\":\"\"\n}"));
        dsv4_json_free(k);
    }
    /* the writer appends */
    {
        dsv4_buf b = DSV4_BUF_INIT;
        dsv4_buf_puts(&b, "x=");
        dsv4_json_write(&b, dsv4_json_get(j, "a"), -1, ",", ":");
        CHECK_STR(b.data, "x=[1,2.5,{\"b\":null}]");
        dsv4_buf_release(&b);
    }
    dsv4_json_free(j);
    /* scalars at top level */
    j = parse("-0.0");
    CHECK(j && writes(j, -1, NULL, NULL, "-0.0"));
    dsv4_json_free(j);
    j = parse("\"\\u0000\\u001f\\u007f\\u2028\"");
    CHECK(j && writes(j, 2, NULL, NULL, "\"\\u0000\\u001f\x7f\xe2\x80\xa8\""));
    dsv4_json_free(j);
}

TEST_MAIN(T(all_types), T(scalars_and_whitespace), T(strings_and_unicode), T(duplicate_keys_last_wins), T(numbers),
          T(hostile_syntax), T(hostile_strings), T(truncated_input), T(huge_numbers), T(nesting_depth),
          T(big_document), T(utf8_valid_prefix), T(writer_strings), T(writer_floats_python_repr),
          T(writer_floats_shortest_roundtrip), T(writer_documents))
