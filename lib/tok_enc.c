/* tok_enc — encoding: added-token matching, the pre-tokenizer walk and BPE.
 *
 * BPE of one piece follows HF's merge loop: the adjacent pair with the
 * lowest merge rank is merged first, the leftmost one on a tie, with a heap
 * of candidate pairs so that long pieces (whitespace runs, long words) cost
 * O(n log n).  Inside one call, the ids of each distinct piece are cached,
 * so repeated words in a long text are merged once.  All state lives in the
 * call: the tokenizer is only read, which keeps it safe to share. */
#include "tok.h"
#include "tok_impl.h"
#include "json.h"

#include <stdlib.h>
#include <string.h>

/* Texts shorter than this are not worth a cache. */
#define CACHE_MIN_TEXT 512
/* Longer pieces are not cached (they rarely repeat). */
#define CACHE_MAX_PIECE 64

struct cache_slot {
    uint64_t hash;
    uint32_t key_off, key_len;  /* piece bytes in keys */
    uint32_t ids_off, ids_len;  /* its ids in ids */
};

struct cache {
    struct cache_slot *slot;     /* key_len 0 = empty (pieces are never empty) */
    size_t mask, used;
    dsv4_buf keys;
    dsv4_tok_ids ids;
};

struct enc {
    const dsv4_tok *t;
    dsv4_tok_ids *out;
    /* BPE scratch, grown as needed: per symbol id, prev, next; the heap */
    uint32_t *sym, *prev, *next;
    uint64_t *heap;
    size_t cap;
    struct cache *cache;         /* NULL when not caching */
    int oom;
};

static int grow(struct enc *e, size_t n)
{
    uint32_t *a, *b, *c;
    uint64_t *h;
    size_t cap = e->cap ? e->cap : 64;
    if (n <= e->cap)
        return 0;
    while (cap < n)
        cap *= 2;
    a = realloc(e->sym, cap * 4);
    if (a) e->sym = a;
    b = realloc(e->prev, cap * 4);
    if (b) e->prev = b;
    c = realloc(e->next, cap * 4);
    if (c) e->next = c;
    /* every merge pushes at most two candidates: n - 1 + 2 (n - 1) */
    h = realloc(e->heap, 3 * cap * sizeof *h);
    if (h) e->heap = h;
    if (!a || !b || !c || !h)
        return DSV4_E_NOMEM;
    e->cap = cap;
    return 0;
}

/* Min-heap of (rank << 32 | left symbol index): lowest rank first, then
 * leftmost, exactly HF's order. */
static void heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v)
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m)
            break;
        if (c + 1 < m && h[c + 1] < h[c])
            c++;
        if (v <= h[c])
            break;
        h[i] = h[c];
        i = c;
    }
    if (m)
        h[i] = v;
    return top;
}

static void push_pair(struct enc *e, size_t *hn, uint32_t left)
{
    uint32_t rank, merged, right = e->next[left];
    if (right != UINT32_MAX && dsv4_tok_merge(e->t, e->sym[left], e->sym[right], &rank, &merged))
        heap_push(e->heap, hn, ((uint64_t)rank << 32) | left);
}

/* BPE of the piece s[0..n): append its ids to out. */
static int bpe(struct enc *e, const unsigned char *s, size_t n, dsv4_tok_ids *out)
{
    const dsv4_tok *t = e->t;
    size_t hn = 0;
    uint32_t i;
    if (n == 1)
        return dsv4_tok_ids_push(out, t->byte_id[s[0]]);
    if (t->ignore_merges) {     /* the whole piece as one token when the vocab has it */
        int64_t id;
        if (dsv4_tok_vocab_find_bytes(t, s, n, &id))
            return DSV4_E_NOMEM;
        if (id >= 0)
            return dsv4_tok_ids_push(out, (uint32_t)id);
    }
    if (n >= UINT32_MAX || grow(e, n))
        return DSV4_E_NOMEM;
    for (i = 0; i < n; i++) {
        e->sym[i] = t->byte_id[s[i]];
        e->prev[i] = i ? i - 1 : UINT32_MAX;
        e->next[i] = i + 1 < n ? i + 1 : UINT32_MAX;
    }
    for (i = 0; i + 1 < n; i++)
        push_pair(e, &hn, i);
    while (hn) {
        uint64_t top = heap_pop(e->heap, &hn);
        uint32_t left = (uint32_t)top, rank, merged, right = e->next[left];
        /* Stale candidates: the left symbol was merged away (sym is
         * UINT32_MAX) or its pair changed since the push. */
        if (e->sym[left] == UINT32_MAX || right == UINT32_MAX ||
            !dsv4_tok_merge(t, e->sym[left], e->sym[right], &rank, &merged) || rank != (uint32_t)(top >> 32))
            continue;
        e->sym[left] = merged;
        e->sym[right] = UINT32_MAX;
        e->next[left] = e->next[right];
        if (e->next[right] != UINT32_MAX)
            e->prev[e->next[right]] = left;
        if (e->prev[left] != UINT32_MAX)
            push_pair(e, &hn, e->prev[left]);
        push_pair(e, &hn, left);
    }
    for (i = 0; i != UINT32_MAX; i = e->next[i])
        if (dsv4_tok_ids_push(out, e->sym[i]))
            return DSV4_E_NOMEM;
    return 0;
}

static int cache_grow(struct cache *c)
{
    size_t cap = c->mask ? 2 * (c->mask + 1) : 1024;
    struct cache_slot *s = calloc(cap, sizeof *s);
    if (!s)
        return DSV4_E_NOMEM;
    for (size_t i = 0; c->mask && i <= c->mask; i++) {
        size_t j;
        if (!c->slot[i].key_len)
            continue;
        for (j = c->slot[i].hash & (cap - 1); s[j].key_len; j = (j + 1) & (cap - 1))
            ;
        s[j] = c->slot[i];
    }
    free(c->slot);
    c->slot = s;
    c->mask = cap - 1;
    return 0;
}

/* BPE through the cache: ids of a piece seen before are copied. */
static int bpe_cached(struct enc *e, const unsigned char *s, size_t n)
{
    struct cache *c = e->cache;
    uint64_t h;
    size_t j, before;
    if (!c || n > CACHE_MAX_PIECE || n == 1)
        return bpe(e, s, n, e->out);
    h = dsv4_tok_fnv1a(s, n);
    for (j = h & c->mask; c->slot[j].key_len; j = (j + 1) & c->mask) {
        struct cache_slot *sl = &c->slot[j];
        if (sl->hash == h && sl->key_len == n && !memcmp(c->keys.data + sl->key_off, s, n)) {
            for (uint32_t k = 0; k < sl->ids_len; k++)
                if (dsv4_tok_ids_push(e->out, c->ids.v[sl->ids_off + k]))
                    return DSV4_E_NOMEM;
            return 0;
        }
    }
    before = c->ids.n;
    if (bpe(e, s, n, &c->ids))
        return DSV4_E_NOMEM;
    for (size_t k = before; k < c->ids.n; k++)
        if (dsv4_tok_ids_push(e->out, c->ids.v[k]))
            return DSV4_E_NOMEM;
    if (c->keys.len + n > UINT32_MAX || c->ids.n > UINT32_MAX)
        return 0;              /* full: stop adding, the ids are out already */
    c->slot[j] = (struct cache_slot){ h, (uint32_t)c->keys.len, (uint32_t)n,
                                      (uint32_t)before, (uint32_t)(c->ids.n - before) };
    dsv4_buf_append(&c->keys, s, n);
    if (c->keys.oom)
        return DSV4_E_NOMEM;
    if (++c->used * 2 > c->mask)
        return cache_grow(c);
    return 0;
}

/* The walk shared by split and encode: added tokens first (non-normalized
 * ones over the whole text, then normalized ones in the gaps: the
 * normalizer is a no-op, so both see the same bytes), the pre-tokenizer on
 * what is left. */
struct walk {
    const dsv4_tok *t;
    unsigned flags;
    uint8_t *cl;                 /* pre-tokenizer scratch */
    int (*fn)(void *ctx, const unsigned char *s, size_t n, int64_t id);
    void *ctx;
};

static int pre_piece(void *ctx, const unsigned char *s, size_t n)
{
    struct walk *w = ctx;
    return w->fn(w->ctx, s, n, -1);
}

static int walk_added(struct walk *w, int k, const unsigned char *s, size_t n)
{
    size_t p = 0, gap = 0;
    int rc;
    if (k == 2)
        return dsv4_tok_pretok(s, n, w->cl, pre_piece, w);
    if ((w->flags & DSV4_TOK_NO_ADDED) || !w->t->trie[k].len)
        return walk_added(w, k + 1, s, n);
    while (p < n) {
        uint32_t id;
        size_t m = w->t->trie[k].root[s[p]] ? dsv4_tok_trie_match(&w->t->trie[k], s + p, n - p, &id) : 0;
        if (!m) {
            p++;
            continue;
        }
        if (gap < p && (rc = walk_added(w, k + 1, s + gap, p - gap)))
            return rc;
        if ((rc = w->fn(w->ctx, s + p, m, id)))
            return rc;
        p = gap = p + m;
    }
    return gap < n ? walk_added(w, k + 1, s + gap, n - gap) : 0;
}

/* Run the walk over text; fixes invalid UTF-8 first unless RAW_BYTES. */
static int walk_text(const dsv4_tok *t, const char *text, size_t len, unsigned flags,
                     int (*fn)(void *, const unsigned char *, size_t, int64_t), void *ctx,
                     dsv4_err *err)
{
    struct walk w = { t, flags, NULL, fn, ctx };
    dsv4_buf fixed = DSV4_BUF_INIT;
    const unsigned char *s = (const unsigned char *)text;
    int rc;
    if (!len)
        return 0;
    if (!(flags & DSV4_TOK_RAW_BYTES) && dsv4_utf8_valid_prefix(text, len) != len) {
        dsv4_tok_put_lossy(&fixed, s, len);
        if (fixed.oom)
            return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
        s = (const unsigned char *)fixed.data;
        len = fixed.len;
    }
    w.cl = malloc(len);
    if (!w.cl) {
        dsv4_buf_release(&fixed);
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    }
    rc = walk_added(&w, 0, s, len);
    free(w.cl);
    dsv4_buf_release(&fixed);
    return rc;
}

struct split_ctx {
    dsv4_tok_piece_fn piece;
    void *ctx;
};

static int split_piece(void *ctx, const unsigned char *s, size_t n, int64_t id)
{
    struct split_ctx *c = ctx;
    return c->piece(c->ctx, (const char *)s, n, id);
}

int dsv4_tok_split(const dsv4_tok *t, const char *text, size_t len, unsigned flags,
                   dsv4_tok_piece_fn piece, void *ctx, dsv4_err *err)
{
    struct split_ctx c = { piece, ctx };
    if (flags & ~(DSV4_TOK_NO_ADDED | DSV4_TOK_RAW_BYTES))
        return dsv4_err_set(err, DSV4_E_INVALID, "dsv4_tok_split: unknown flags 0x%x", flags);
    return walk_text(t, text, len, flags, split_piece, &c, err);
}

/* Encode callback: BPE errors are all out-of-memory, returned as 1 so
 * that a piece callback's own codes cannot be confused with them. */
static int enc_piece(void *ctx, const unsigned char *s, size_t n, int64_t id)
{
    struct enc *e = ctx;
    int rc = id >= 0 ? dsv4_tok_ids_push(e->out, (uint32_t)id) : bpe_cached(e, s, n);
    if (rc)
        e->oom = 1;
    return rc ? 1 : 0;
}

int dsv4_tok_encode(const dsv4_tok *t, const char *text, size_t len, unsigned flags,
                    dsv4_tok_ids *out, dsv4_err *err)
{
    struct enc e = { t, out, NULL, NULL, NULL, NULL, 0, NULL, 0 };
    struct cache cache = { NULL, 0, 0, DSV4_BUF_INIT, DSV4_TOK_IDS_INIT };
    size_t n0 = out->n;
    int rc;
    if (flags & ~(DSV4_TOK_NO_ADDED | DSV4_TOK_RAW_BYTES))
        return dsv4_err_set(err, DSV4_E_INVALID, "dsv4_tok_encode: unknown flags 0x%x", flags);
    if (len >= CACHE_MIN_TEXT && !cache_grow(&cache))
        e.cache = &cache;
    rc = walk_text(t, text, len, flags, enc_piece, &e, err);
    if (rc > 0 || e.oom)
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    if (rc)
        out->n = n0;           /* nothing appended on failure */
    free(e.sym); free(e.prev); free(e.next); free(e.heap);
    free(cache.slot);
    dsv4_buf_release(&cache.keys);
    dsv4_tok_ids_release(&cache.ids);
    return rc;
}
