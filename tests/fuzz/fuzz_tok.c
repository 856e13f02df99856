/* fuzz_tok — tokenizer.json loading (lib/tok.h dsv4_tok_load): JSON, the
 * pipeline check, vocab, added tokens, merges, byte tables; and, for a
 * tokenizer that loads, encode, decode, split and the streaming decoder on
 * a few fixed texts and on the input itself.
 *
 * Input: tokenizer.json bytes.  Invariants: every error has a message;
 * with DSV4_TOK_RAW_BYTES decode(encode(x)) == x for any bytes when the
 * added tokens decode to their own text (the header's promise); streaming decode equals decode; every id encode returns is
 * known; lookups agree (token <-> id). */
#include "fuzz.h"

#include "buf.h"
#include "tok.h"

static const char *const texts[] = {
    "", "Hello, world! The the  the", "  \n\n\t x", "<｜User｜>hi<think>x</think>",
    "1234567 89 数字和汉字 テスト ﬁ", "\xff\xfe bad \xc3 utf8 \xed\xa0\x80", "aaaaaaaa\xc4\xa0the",
};

/* 1 when every added token decodes to its own text: the condition of the
 * lossless round trip (lib/tok.h). */
static int added_decode_to_self(const dsv4_tok *t)
{
    for (uint32_t id = 0; id < dsv4_tok_vocab_size(t); id++) {
        size_t n = 0, bn = 0;
        const char *s, *b;
        if (dsv4_tok_is_added(t, id) <= 0)
            continue;
        s = dsv4_tok_token(t, id, &n);
        b = dsv4_tok_bytes(t, id, &bn);
        if (n != bn || memcmp(s, b, n))
            return 0;
    }
    return 1;
}

static int lossless;

static void check_text(const dsv4_tok *t, const char *s, size_t n)
{
    static const unsigned enc_flags[] = { 0, DSV4_TOK_NO_ADDED, DSV4_TOK_RAW_BYTES,
                                          DSV4_TOK_RAW_BYTES | DSV4_TOK_NO_ADDED };
    for (size_t f = 0; f < sizeof enc_flags / sizeof enc_flags[0]; f++) {
        dsv4_tok_ids ids = DSV4_TOK_IDS_INIT;
        dsv4_buf dec = DSV4_BUF_INIT, st = DSV4_BUF_INIT;
        dsv4_err err = DSV4_ERR_INIT;
        int rc = dsv4_tok_encode(t, s, n, enc_flags[f], &ids, &err);
        FUZZ_ASSERT(rc == 0, "encode (flags %u): %s", enc_flags[f], err.msg);
        for (size_t i = 0; i < ids.n; i++)
            FUZZ_ASSERT(ids.v[i] < dsv4_tok_vocab_size(t) && dsv4_tok_is_added(t, ids.v[i]) >= 0,
                        "encode gave unknown id %u", ids.v[i]);
        rc = dsv4_tok_decode(t, ids.v, ids.n, 0, &dec, &err);
        FUZZ_ASSERT(rc == 0, "decode: %s", err.msg);
        if ((enc_flags[f] & DSV4_TOK_RAW_BYTES) && lossless)
            FUZZ_ASSERT(dec.len == n && (!n || !memcmp(dec.data, s, n)),
                        "decode(encode(x)) != x (flags %u): %zu bytes back of %zu", enc_flags[f], dec.len, n);
        {
            dsv4_tok_stream ts;
            dsv4_tok_stream_init(&ts, t, 0);
            for (size_t i = 0; i < ids.n; i++)
                FUZZ_ASSERT(dsv4_tok_stream_feed(&ts, ids.v[i], &st, &err) == 0, "stream feed: %s", err.msg);
            dsv4_tok_stream_finish(&ts, &st);
            FUZZ_ASSERT(st.len == dec.len && (!st.len || !memcmp(st.data, dec.data, st.len)),
                        "stream decode differs from decode");
        }
        dsv4_buf_release(&dec);
        dsv4_buf_release(&st);
        /* lossy and skip-special decoding must not fail either */
        rc = dsv4_tok_decode(t, ids.v, ids.n, DSV4_TOK_LOSSY | DSV4_TOK_SKIP_SPECIAL, &dec, &err);
        FUZZ_ASSERT(rc == 0, "lossy decode: %s", err.msg);
        dsv4_buf_release(&dec);
        dsv4_tok_ids_release(&ids);
    }
}

static int count_piece(void *ctx, const char *s, size_t n, int64_t id)
{
    (void)s;
    (void)id;
    *(size_t *)ctx += n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dsv4_tok *t = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    int rc = dsv4_tok_load(&t, (const char *)data, size, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (rc) {
        FUZZ_ASSERT(t == NULL, "tokenizer returned with an error");
        return 0;
    }
    size_t nv = dsv4_tok_vocab_size(t);
    (void)dsv4_tok_fingerprint(t);
    lossless = added_decode_to_self(t);
    for (uint32_t id = 0; id < nv && id < 4096; id++) {
        size_t len = 0, blen = 0;
        const char *s = dsv4_tok_token(t, id, &len);
        const char *b = dsv4_tok_bytes(t, id, &blen);
        int added = dsv4_tok_is_added(t, id);
        FUZZ_ASSERT((s != NULL) == (added >= 0), "id %u: token %p, is_added %d", id, (const void *)s, added);
        FUZZ_ASSERT((b != NULL) == (s != NULL), "id %u: bytes and token disagree", id);
        if (s && strlen(s) == len) {
            int64_t back = dsv4_tok_id(t, s);
            FUZZ_ASSERT(back >= 0, "id %u: its token '%s' has no id", id, s);
        }
    }
    FUZZ_ASSERT(dsv4_tok_token(t, (uint32_t)nv, NULL) == NULL, "id past the end");
    {
        uint32_t bad = (uint32_t)nv;
        dsv4_buf out = DSV4_BUF_INIT;
        FUZZ_ASSERT(dsv4_tok_decode(t, &bad, 1, 0, &out, &err) == DSV4_E_RANGE && out.len == 0,
                    "unknown id not refused");
        dsv4_buf_release(&out);
    }
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        check_text(t, texts[i], strlen(texts[i]));
    check_text(t, (const char *)data, size < 2048 ? size : 2048);
    {
        size_t total = 0;
        rc = dsv4_tok_split(t, texts[3], strlen(texts[3]), DSV4_TOK_RAW_BYTES, count_piece, &total, &err);
        FUZZ_ASSERT(rc == 0 && total == strlen(texts[3]), "split covers %zu of %zu bytes", total, strlen(texts[3]));
    }
    dsv4_tok_free(t);
    return 0;
}
