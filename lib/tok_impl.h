/* tok_impl.h — what lib/tok.c (loading, lookups, decoding), lib/tok_enc.c
 * (encoding) and lib/tok_pre.c (pre-tokenizer) share; not a public header. */
#ifndef DSV4_TOK_IMPL_H
#define DSV4_TOK_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "tok.h"

/* kind[] bits of an id */
#define TOK_K_VOCAB   1u   /* in the BPE model vocab */
#define TOK_K_ADDED   2u   /* an added token */
#define TOK_K_SPECIAL 4u   /* an added token marked special */

/* A byte trie of added-token spellings: node 0 is the root, whose children
 * are found through root[] (node index, 0 = none); other nodes keep their
 * children as a sibling list. */
struct tok_trie_node {
    uint32_t child, sib;
    int32_t id;            /* token ending here, or -1 */
    uint8_t byte;
};
struct tok_trie {
    struct tok_trie_node *node;
    uint32_t len, cap;
    uint32_t root[256];
};

struct dsv4_tok {
    uint32_t n_ids;          /* max id + 1 */
    uint8_t *kind;           /* TOK_K_* per id; 0 = no such id */
    char *vstr;              /* vocab strings (byte-level), NUL-terminated each */
    uint32_t *voff, *vlen;   /* per id, into vstr (vlen 0 = not in vocab) */
    char *astr;              /* added-token contents */
    uint32_t *aoff, *alen;
    char *dbytes;            /* what each id decodes to */
    uint32_t *doff, *dlen;
    uint32_t *vhash;         /* vocab string -> id + 1, open addressing */
    uint32_t vmask;
    uint64_t *mkey;          /* merges: (left id << 32 | right id) -> rank, merged id */
    uint32_t *mrank, *mnew;
    uint32_t mmask;          /* 0 when there are no merges */
    uint32_t byte_id[256];   /* id of each byte's byte-level character */
    uint16_t byte_cp[256];   /* GPT-2 bytes_to_unicode */
    int16_t cp_byte[324];    /* its inverse over U+0000..U+0143, -1 = none */
    int ignore_merges;
    struct tok_trie trie[2]; /* [0] non-normalized added tokens, [1] normalized */
    uint8_t fp[DSV4_TOK_FINGERPRINT_BYTES];
};

static inline uint64_t dsv4_tok_hash64(uint64_t k) { return k * 0x9E3779B97F4A7C15ull; }

/* Merge of ids (a, b): 1 and *rank, *merged when there is one, else 0. */
static inline int dsv4_tok_merge(const dsv4_tok *t, uint32_t a, uint32_t b,
                                 uint32_t *rank, uint32_t *merged)
{
    uint64_t key = ((uint64_t)a << 32) | b;
    uint32_t i;
    if (!t->mmask)
        return 0;
    for (i = (uint32_t)(dsv4_tok_hash64(key) >> 40) & t->mmask;; i = (i + 1) & t->mmask) {
        if (t->mkey[i] == key) {
            *rank = t->mrank[i];
            *merged = t->mnew[i];
            return 1;
        }
        if (t->mkey[i] == UINT64_MAX)
            return 0;
    }
}

/* Vocab lookup of s[0..n): id or -1. */
int64_t dsv4_tok_vocab_find(const dsv4_tok *t, const char *s, size_t n);
/* Longest added-token match of trie k at s[0..n): its length (0 = none). */
size_t dsv4_tok_trie_match(const struct tok_trie *tr, const unsigned char *s, size_t n, uint32_t *id);

/* Called for each pre-tokenizer piece s[0..n), n > 0; non-zero stops. */
typedef int (*dsv4_tok_pre_fn)(void *ctx, const unsigned char *s, size_t n);

/* The DeepSeek-V3/V4 pre-tokenizer (the three Split regexes of
 * spec/DSML.md §5.1, in order) over s[0..n).  Invalid UTF-8 subparts count
 * as one character of category Cn each.  cl is scratch of at least n bytes.
 * Returns 0 or the first non-zero value of fn. */
int dsv4_tok_pretok(const unsigned char *s, size_t n, uint8_t *cl, dsv4_tok_pre_fn fn, void *ctx);

/* The regexes this pre-tokenizer implements, as stored in tokenizer.json. */
extern const char *const dsv4_tok_pre_regex[3];

#endif
