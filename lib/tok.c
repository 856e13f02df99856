/* tok — loading tokenizer.json, id lookups, decoding (whole and streaming).
 * Encoding is in tok_enc.c, the pre-tokenizer in tok_pre.c. */
#include "tok.h"
#include "tok_impl.h"
#include "json.h"
#include "toks.h"
#include "unicode.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Ids above this are refused: the tables are per id. */
#define MAX_IDS (1u << 24)

void dsv4_tok_ids_release(dsv4_tok_ids *ids)
{
    free(ids->v);
    ids->v = NULL;
    ids->n = ids->cap = 0;
}

int dsv4_tok_ids_push(dsv4_tok_ids *ids, uint32_t id)
{
    if (dsv4_grow((void **)&ids->v, &ids->cap, ids->n, sizeof *ids->v))
        return DSV4_E_NOMEM;
    ids->v[ids->n++] = id;
    return 0;
}

int64_t dsv4_tok_vocab_find(const dsv4_tok *t, const char *s, size_t n)
{
    uint32_t i = (uint32_t)(dsv4_tok_hash64(dsv4_tok_fnv1a(s, n)) >> 40) & t->vmask;
    for (;; i = (i + 1) & t->vmask) {
        uint32_t v = t->vhash[i];
        if (!v)
            return -1;
        if (t->vlen[v - 1] == n && !memcmp(t->vstr + t->voff[v - 1], s, n))
            return v - 1;
    }
}

static size_t utf8_put(char *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 63));
        o[2] = (char)(0x80 | (cp & 63)); return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63)); o[3] = (char)(0x80 | (cp & 63)); return 4;
}

int dsv4_tok_vocab_find_bytes(const dsv4_tok *t, const unsigned char *s, size_t n, int64_t *id)
{
    char small[256], *buf;
    size_t k = 0;
    *id = -1;
    if (!n)
        return 0;
    if (!(buf = 2 * n <= sizeof small ? small : malloc(2 * n)))
        return DSV4_E_NOMEM;
    for (size_t i = 0; i < n; i++)   /* byte-level characters take 1 or 2 bytes */
        k += utf8_put(buf + k, t->byte_cp[s[i]]);
    *id = dsv4_tok_vocab_find(t, buf, k);
    if (buf != small)
        free(buf);
    return 0;
}

size_t dsv4_tok_trie_match(const struct tok_trie *tr, const unsigned char *s, size_t n, uint32_t *id)
{
    size_t best = 0;
    uint32_t nd = n ? tr->root[s[0]] : 0;
    for (size_t i = 1; nd; i++) {
        if (tr->node[nd].id >= 0) {
            best = i;
            *id = (uint32_t)tr->node[nd].id;
        }
        if (i == n)
            break;
        for (nd = tr->node[nd].child; nd && tr->node[nd].byte != s[i]; nd = tr->node[nd].sib)
            ;
    }
    return best;
}

static int trie_add(struct tok_trie *tr, const unsigned char *s, size_t n, uint32_t id)
{
    uint32_t nd = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = i ? tr->node[nd].child : tr->root[s[0]];
        while (c && tr->node[c].byte != s[i])
            c = tr->node[c].sib;
        if (!c) {
            if (tr->len == tr->cap) {
                uint32_t cap = tr->cap ? tr->cap * 2 : 1024;
                struct tok_trie_node *p = realloc(tr->node, cap * sizeof *p);
                if (!p)
                    return DSV4_E_NOMEM;
                tr->node = p;
                tr->cap = cap;
                if (!tr->len)    /* node 0: the root */
                    tr->node[tr->len++] = (struct tok_trie_node){ 0, 0, -1, 0 };
            }
            c = tr->len++;
            tr->node[c] = (struct tok_trie_node){ 0, 0, -1, s[i] };
            if (i) {
                tr->node[c].sib = tr->node[nd].child;
                tr->node[nd].child = c;
            } else {
                tr->root[s[0]] = c;
            }
        }
        nd = c;
    }
    /* On a duplicate spelling the first token keeps it, as in HF's
     * Aho-Corasick where the earlier pattern wins. */
    if (nd && tr->node[nd].id < 0)
        tr->node[nd].id = (int32_t)id;
    return 0;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * other 68 to U+0100 + k in byte order. */
static void byte_level_tables(dsv4_tok *t)
{
    unsigned k = 0;
    for (int i = 0; i < 324; i++)
        t->cp_byte[i] = -1;
    for (unsigned b = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        t->byte_cp[b] = (uint16_t)(keep ? b : 256 + k++);
        t->cp_byte[t->byte_cp[b]] = (int16_t)b;
    }
}

/* Decoded bytes of a token string, as HF's ByteLevel decoder: each char
 * maps back to its byte when all of them are in the byte-level alphabet,
 * otherwise (e.g. "<｜User｜>") the string's own UTF-8 bytes. */
static void decode_token(const dsv4_tok *t, const char *s, size_t n, dsv4_buf *out)
{
    size_t start = out->len, i = 0;
    while (i < n) {
        uint32_t cp;
        int k = dsv4_utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (k < 0 || cp >= 324 || t->cp_byte[cp] < 0) {
            out->len = start;
            dsv4_buf_append(out, s, n);
            return;
        }
        dsv4_buf_putc(out, (char)t->cp_byte[cp]);
        i += (size_t)k;
    }
}

static int str_is(const dsv4_json *o, const char *key, const char *want)
{
    const dsv4_json *v = dsv4_json_get(o, key);
    return v && v->type == DSV4_JSON_STRING && !strcmp(v->str, want);
}
/* key absent or null, or ok(value) (ok NULL: only absent or null will do) */
static int is_null_or(const dsv4_json *o, const char *key, int (*ok)(const dsv4_json *))
{
    const dsv4_json *v = dsv4_json_get(o, key);
    return !v || v->type == DSV4_JSON_NULL || (ok && ok(v));
}
static int empty_str(const dsv4_json *v) { return v->type == DSV4_JSON_STRING && v->len == 0; }
static int is_false(const dsv4_json *v) { return v->type == DSV4_JSON_FALSE; }

/* Refuse what this implementation does not do rather than tokenize wrong. */
static int check_pipeline(const dsv4_json *root, dsv4_err *err)
{
    const dsv4_json *m = dsv4_json_get(root, "model"), *nz = dsv4_json_get(root, "normalizer");
    const dsv4_json *pt = dsv4_json_get(root, "pre_tokenizer"), *dec = dsv4_json_get(root, "decoder");
    const dsv4_json *seq;
    if (!m || m->type != DSV4_JSON_OBJECT)
        return dsv4_err_set(err, DSV4_E_FORMAT, "no \"model\" object");
    if (dsv4_json_get(m, "type") && !str_is(m, "type", "BPE"))
        return dsv4_err_set(err, DSV4_E_UNSUPPORTED, "model type is not BPE");
    if (!is_null_or(m, "dropout", NULL) || !is_null_or(m, "byte_fallback", is_false) ||
        !is_null_or(m, "continuing_subword_prefix", empty_str) ||
        !is_null_or(m, "end_of_word_suffix", empty_str))
        return dsv4_err_set(err, DSV4_E_UNSUPPORTED,
                            "BPE dropout, byte fallback or subword affixes are not supported");
    if (nz && nz->type != DSV4_JSON_NULL &&
        !(str_is(nz, "type", "Sequence") && (seq = dsv4_json_get(nz, "normalizers")) &&
          seq->type == DSV4_JSON_ARRAY && seq->len == 0))
        return dsv4_err_set(err, DSV4_E_UNSUPPORTED, "a normalizer is not supported");
    if (!dec || !str_is(dec, "type", "ByteLevel"))
        return dsv4_err_set(err, DSV4_E_UNSUPPORTED, "decoder is not ByteLevel");
    seq = pt ? dsv4_json_get(pt, "pretokenizers") : NULL;
    if (!pt || !str_is(pt, "type", "Sequence") || !seq || seq->type != DSV4_JSON_ARRAY || seq->len != 4)
        goto bad_pre;
    for (int i = 0; i < 3; i++) {
        const dsv4_json *s = &seq->items[i], *pat = dsv4_json_get(s, "pattern");
        const dsv4_json *inv = dsv4_json_get(s, "invert");
        if (!str_is(s, "type", "Split") || !str_is(s, "behavior", "Isolated") ||
            !pat || !str_is(pat, "Regex", dsv4_tok_pre_regex[i]) || (inv && inv->type != DSV4_JSON_FALSE))
            goto bad_pre;
    }
    if (!str_is(&seq->items[3], "type", "ByteLevel") ||
        !is_null_or(&seq->items[3], "add_prefix_space", is_false) ||
        !is_null_or(&seq->items[3], "use_regex", is_false))
        goto bad_pre;
    return 0;
bad_pre:
    return dsv4_err_set(err, DSV4_E_UNSUPPORTED,
                        "pre_tokenizer is not the DeepSeek-V3/V4 one (only that one is implemented)");
}

static int get_id(const dsv4_json *v, uint32_t *id)
{
    if (!v || v->type != DSV4_JSON_NUMBER || !v->is_int || v->num < 0 || v->num >= MAX_IDS)
        return -1;
    *id = (uint32_t)v->num;
    return 0;
}

static int load_vocab(dsv4_tok *t, const dsv4_json *vocab, const dsv4_json *added, dsv4_err *err)
{
    dsv4_buf vs = DSV4_BUF_INIT, as = DSV4_BUF_INIT;
    uint32_t max = 0, id = 0, cap;
    size_t i;
    for (i = 0; i < vocab->len; i++) {
        if (get_id(&vocab->items[i], &id))
            return dsv4_err_set(err, DSV4_E_FORMAT, "vocab entry %zu: bad id", i);
        max = id + 1 > max ? id + 1 : max;
    }
    for (i = 0; i < added->len; i++) {
        const dsv4_json *c = dsv4_json_get(&added->items[i], "content");
        if (get_id(dsv4_json_get(&added->items[i], "id"), &id) || !c || c->type != DSV4_JSON_STRING || !c->len)
            return dsv4_err_set(err, DSV4_E_FORMAT, "added_tokens[%zu]: bad id or content", i);
        max = id + 1 > max ? id + 1 : max;
    }
    t->n_ids = max;
    t->kind = calloc(max ? max : 1, 1);
    t->voff = calloc(max + 1, 4); t->vlen = calloc(max + 1, 4);
    t->aoff = calloc(max + 1, 4); t->alen = calloc(max + 1, 4);
    for (cap = 1024; cap < 2 * vocab->len; cap *= 2)
        ;
    t->vhash = calloc(cap, 4);
    t->vmask = cap - 1;
    if (!t->kind || !t->voff || !t->vlen || !t->aoff || !t->alen || !t->vhash)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    for (i = 0; i < vocab->len; i++) {
        get_id(&vocab->items[i], &id);
        t->voff[id] = (uint32_t)vs.len;
        t->vlen[id] = (uint32_t)vocab->key_lens[i];
        t->kind[id] |= TOK_K_VOCAB;
        dsv4_buf_append(&vs, vocab->keys[i], vocab->key_lens[i] + 1);
    }
    for (i = 0; i < added->len; i++) {
        const dsv4_json *a = &added->items[i], *c = dsv4_json_get(a, "content");
        const dsv4_json *sp = dsv4_json_get(a, "special"), *nm = dsv4_json_get(a, "normalized");
        int special = sp && sp->type == DSV4_JSON_TRUE;
        /* HF's AddedToken default: normalized = !special. */
        int normalized = nm ? nm->type == DSV4_JSON_TRUE : !special;
        get_id(dsv4_json_get(a, "id"), &id);
        /* HF would absorb whitespace around these; none of the DeepSeek
         * tokens does, and tokenizing without it would be silently wrong */
        if (!is_null_or(a, "lstrip", is_false) || !is_null_or(a, "rstrip", is_false) ||
            !is_null_or(a, "single_word", is_false)) {
            /* the string buffers are not t's yet: t would not free them */
            dsv4_buf_release(&vs);
            dsv4_buf_release(&as);
            return dsv4_err_set(err, DSV4_E_UNSUPPORTED,
                                "added_tokens[%zu]: lstrip, rstrip and single_word are not supported", i);
        }
        if (t->kind[id] & TOK_K_ADDED)
            continue;
        t->aoff[id] = (uint32_t)as.len;
        t->alen[id] = (uint32_t)c->len;
        t->kind[id] |= TOK_K_ADDED | (special ? TOK_K_SPECIAL : 0);
        dsv4_buf_append(&as, c->str, c->len + 1);
        if (trie_add(&t->trie[normalized], (const unsigned char *)c->str, c->len, id))
            as.oom = 1;
    }
    t->vstr = vs.data;
    t->astr = as.data;
    if (vs.oom || as.oom || !vs.data || (added->len && !as.data))
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    if (vs.len > UINT32_MAX || as.len > UINT32_MAX)
        return dsv4_err_set(err, DSV4_E_FORMAT, "vocab too large");
    /* Index the vocab strings; a later duplicate id is unreachable anyway. */
    for (id = 0; id < max; id++) {
        uint32_t h;
        if (!(t->kind[id] & TOK_K_VOCAB) || dsv4_tok_vocab_find(t, t->vstr + t->voff[id], t->vlen[id]) >= 0)
            continue;
        h = (uint32_t)(dsv4_tok_hash64(dsv4_tok_fnv1a(t->vstr + t->voff[id], t->vlen[id])) >> 40) & t->vmask;
        while (t->vhash[h])
            h = (h + 1) & t->vmask;
        t->vhash[h] = id + 1;
    }
    return 0;
}

static int load_merges(dsv4_tok *t, const dsv4_json *merges, const dsv4_json *ign, dsv4_err *err)
{
    uint32_t cap;
    char *cat = NULL;
    size_t catcap = 0;
    int rc = 0;
    t->ignore_merges = ign && ign->type == DSV4_JSON_TRUE;
    if (!merges->len)
        return 0;
    for (cap = 1024; cap < 2 * merges->len; cap *= 2)
        ;
    t->mkey = malloc(cap * sizeof *t->mkey);
    t->mrank = malloc(cap * 4);
    t->mnew = malloc(cap * 4);
    if (!t->mkey || !t->mrank || !t->mnew)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    memset(t->mkey, 0xff, cap * sizeof *t->mkey);
    t->mmask = cap - 1;
    for (size_t r = 0; r < merges->len; r++) {
        const dsv4_json *m = &merges->items[r];
        const char *a, *b, *sp;
        size_t na, nb;
        int64_t ia, ib, in;
        uint64_t key;
        uint32_t h;
        if (m->type == DSV4_JSON_STRING && (sp = memchr(m->str, ' ', m->len))) {
            /* "A B": split at the first space, as HF does */
            a = m->str; na = (size_t)(sp - m->str); b = sp + 1; nb = m->len - na - 1;
        } else if (m->type == DSV4_JSON_ARRAY && m->len == 2 && m->items[0].type == DSV4_JSON_STRING &&
                   m->items[1].type == DSV4_JSON_STRING) {
            a = m->items[0].str; na = m->items[0].len; b = m->items[1].str; nb = m->items[1].len;
        } else {
            rc = dsv4_err_set(err, DSV4_E_FORMAT, "merges[%zu]: not \"A B\" nor [\"A\", \"B\"]", r);
            break;
        }
        if (na + nb > catcap) {
            char *p = realloc(cat, catcap = 2 * (na + nb));
            if (!p) {
                rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
                break;
            }
            cat = p;
        }
        memcpy(cat, a, na);
        memcpy(cat + na, b, nb);
        ia = dsv4_tok_vocab_find(t, a, na);
        ib = dsv4_tok_vocab_find(t, b, nb);
        in = dsv4_tok_vocab_find(t, cat, na + nb);
        if (ia < 0 || ib < 0 || in < 0) {
            rc = dsv4_err_set(err, DSV4_E_FORMAT, "merges[%zu]: token not in vocab", r);
            break;
        }
        key = ((uint64_t)ia << 32) | (uint64_t)ib;
        h = (uint32_t)(dsv4_tok_hash64(key) >> 40) & t->mmask;
        while (t->mkey[h] != UINT64_MAX && t->mkey[h] != key)
            h = (h + 1) & t->mmask;
        /* A repeated merge takes the later rank: HF collects them into a map. */
        t->mkey[h] = key;
        t->mrank[h] = (uint32_t)r;
        t->mnew[h] = (uint32_t)in;
    }
    free(cat);
    return rc;
}

static int build_tables(dsv4_tok *t, dsv4_err *err)
{
    dsv4_buf d = DSV4_BUF_INIT;
    char ch[4];
    byte_level_tables(t);
    for (unsigned b = 0; b < 256; b++) {
        int64_t id = dsv4_tok_vocab_find(t, ch, utf8_put(ch, t->byte_cp[b]));
        if (id < 0)
            return dsv4_err_set(err, DSV4_E_FORMAT, "byte 0x%02x has no token in the vocab", b);
        t->byte_id[b] = (uint32_t)id;
    }
    t->doff = calloc(t->n_ids + 1, 4);
    t->dlen = calloc(t->n_ids + 1, 4);
    if (!t->doff || !t->dlen)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    for (uint32_t id = 0; id < t->n_ids; id++) {
        size_t n, at = d.len;
        const char *s = dsv4_tok_token(t, id, &n);
        if (s)
            decode_token(t, s, n, &d);
        t->doff[id] = (uint32_t)at;
        t->dlen[id] = (uint32_t)(d.len - at);
    }
    t->dbytes = d.data;
    if (d.oom || !d.data)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    return 0;
}

int dsv4_tok_load(dsv4_tok **out, const char *json, size_t len, dsv4_err *err)
{
    dsv4_json *root = NULL;
    const dsv4_json *model, *vocab, *merges, *added;
    dsv4_tok *t;
    int rc;
    *out = NULL;
    t = calloc(1, sizeof *t);
    if (!t)
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    /* the same fingerprint as token streams carry (lib/toks.h) */
    if ((rc = dsv4_toks_fingerprint(json, len, t->fp, err)))
        goto fail;
    if ((rc = dsv4_json_parse(&root, json, len, 0, err))) {
        dsv4_err_prefix(err, "tokenizer.json");
        goto fail;
    }
    if ((rc = check_pipeline(root, err)))
        goto fail;
    model = dsv4_json_get(root, "model");
    vocab = dsv4_json_get(model, "vocab");
    merges = dsv4_json_get(model, "merges");
    added = dsv4_json_get(root, "added_tokens");
    if (!vocab || vocab->type != DSV4_JSON_OBJECT || !merges || merges->type != DSV4_JSON_ARRAY ||
        (added && added->type != DSV4_JSON_ARRAY)) {
        rc = dsv4_err_set(err, DSV4_E_FORMAT, "model.vocab, model.merges or added_tokens missing or mistyped");
        goto fail;
    }
    if (!added) {
        static const dsv4_json none = { .type = DSV4_JSON_ARRAY };
        added = &none;
    }
    if ((rc = load_vocab(t, vocab, added, err)) ||
        (rc = load_merges(t, merges, dsv4_json_get(model, "ignore_merges"), err)) ||
        (rc = build_tables(t, err)))
        goto fail;
    dsv4_json_free(root);
    *out = t;
    return 0;
fail:
    if (rc != DSV4_E_NOMEM && rc != DSV4_E_UNSUPPORTED)
        dsv4_err_prefix(err, "tokenizer.json");
    dsv4_json_free(root);
    dsv4_tok_free(t);
    return rc;
}

int dsv4_tok_load_file(dsv4_tok **out, const char *path, dsv4_err *err)
{
    FILE *f = fopen(path, "rb");
    dsv4_buf b = DSV4_BUF_INIT;
    char chunk[65536];
    size_t n;
    int rc;
    *out = NULL;
    if (!f)
        return dsv4_err_set(err, DSV4_E_IO, "'%s': %s", path, strerror(errno));
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        dsv4_buf_append(&b, chunk, n);
    if (ferror(f) || b.oom) {
        rc = b.oom ? DSV4_E_NOMEM : DSV4_E_IO;
        dsv4_err_set(err, rc, "'%s': %s", path, b.oom ? "out of memory" : strerror(errno));
        fclose(f);
        dsv4_buf_release(&b);
        return rc;
    }
    fclose(f);
    rc = dsv4_tok_load(out, b.data ? b.data : "", b.len, err);
    if (rc)
        dsv4_err_prefix(err, "'%s'", path);
    dsv4_buf_release(&b);
    return rc;
}

void dsv4_tok_free(dsv4_tok *t)
{
    if (!t)
        return;
    free(t->kind); free(t->vstr); free(t->voff); free(t->vlen);
    free(t->astr); free(t->aoff); free(t->alen);
    free(t->dbytes); free(t->doff); free(t->dlen); free(t->vhash);
    free(t->mkey); free(t->mrank); free(t->mnew);
    free(t->trie[0].node); free(t->trie[1].node);
    free(t);
}

size_t dsv4_tok_vocab_size(const dsv4_tok *t) { return t->n_ids; }
const uint8_t *dsv4_tok_fingerprint(const dsv4_tok *t) { return t->fp; }

int64_t dsv4_tok_id(const dsv4_tok *t, const char *s)
{
    size_t n = strlen(s);
    for (int k = 0; k < 2; k++) {
        uint32_t id;
        if (n && dsv4_tok_trie_match(&t->trie[k], (const unsigned char *)s, n, &id) == n)
            return id;
    }
    return dsv4_tok_vocab_find(t, s, n);
}

const char *dsv4_tok_token(const dsv4_tok *t, uint32_t id, size_t *len)
{
    if (id >= t->n_ids || !t->kind[id])
        return NULL;
    if (t->kind[id] & TOK_K_ADDED) {
        if (len)
            *len = t->alen[id];
        return t->astr + t->aoff[id];
    }
    if (len)
        *len = t->vlen[id];
    return t->vstr + t->voff[id];
}

const char *dsv4_tok_bytes(const dsv4_tok *t, uint32_t id, size_t *len)
{
    if (id >= t->n_ids || !t->kind[id])
        return NULL;
    *len = t->dlen[id];
    return t->dbytes + t->doff[id];
}

int dsv4_tok_is_added(const dsv4_tok *t, uint32_t id)
{
    if (id >= t->n_ids || !t->kind[id])
        return -1;
    return (t->kind[id] & TOK_K_SPECIAL) ? 2 : (t->kind[id] & TOK_K_ADDED) ? 1 : 0;
}

/* Append s[0..n) with each invalid subpart replaced by U+FFFD. */
void dsv4_tok_put_lossy(dsv4_buf *out, const unsigned char *s, size_t n)
{
    size_t i = 0, run = 0;
    if (!n)   /* s may be NULL (an empty buffer), and NULL + 0 is undefined */
        return;
    while (i < n) {
        uint32_t cp;
        int k = dsv4_utf8_decode(s + i, n - i, &cp);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        dsv4_buf_append(out, s + run, i - run);
        dsv4_buf_append(out, "\xEF\xBF\xBD", 3);
        i += (size_t)-k;
        run = i;
    }
    dsv4_buf_append(out, s + run, n - run);
}

static int emit_id(const dsv4_tok *t, uint32_t id, unsigned flags, dsv4_buf *out, dsv4_err *err)
{
    if (id >= t->n_ids || !t->kind[id])
        return dsv4_err_set(err, DSV4_E_RANGE, "token id %u is not in the vocabulary (%u ids)", id, t->n_ids);
    if ((flags & DSV4_TOK_SKIP_SPECIAL) && (t->kind[id] & TOK_K_SPECIAL))
        return 0;
    dsv4_buf_append(out, t->dbytes + t->doff[id], t->dlen[id]);
    return 0;
}

int dsv4_tok_decode(const dsv4_tok *t, const uint32_t *ids, size_t n, unsigned flags,
                    dsv4_buf *out, dsv4_err *err)
{
    dsv4_buf raw = DSV4_BUF_INIT, *dst = (flags & DSV4_TOK_LOSSY) ? &raw : out;
    size_t len0 = out->len;
    int rc = 0;
    if (flags & ~(DSV4_TOK_SKIP_SPECIAL | DSV4_TOK_LOSSY))
        return dsv4_err_set(err, DSV4_E_INVALID, "dsv4_tok_decode: unknown flags 0x%x", flags);
    for (size_t i = 0; i < n && !rc; i++)
        rc = emit_id(t, ids[i], flags, dst, err);
    if (!rc && dst == &raw && !raw.oom)
        dsv4_tok_put_lossy(out, (const unsigned char *)raw.data, raw.len);
    if (!rc && (out->oom || raw.oom))
        rc = dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    dsv4_buf_release(&raw);
    if (rc && !out->oom && out->data) {   /* nothing appended on failure */
        out->len = len0;
        out->data[len0] = 0;
    }
    return rc;
}

void dsv4_tok_stream_init(dsv4_tok_stream *s, const dsv4_tok *t, unsigned flags)
{
    s->tok = t;
    s->flags = flags;
    s->npend = 0;
}

/* Length of the tail of s[0..n) that is a valid but unfinished UTF-8
 * sequence (0..3): it may still be completed by the bytes that follow. */
static size_t unfinished_tail(const unsigned char *s, size_t n)
{
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        uint32_t cp;
        unsigned c = s[n - k];
        if (c >= 0x80 && c < 0xC0)
            continue;          /* a continuation byte: look further back */
        /* a lead byte k from the end: unfinished iff it decodes as a
         * maximal subpart that runs to the end (C0, C1, F5..FF never start
         * a sequence) */
        if (c < 0xC2 || c > 0xF4)
            return 0;
        return dsv4_utf8_decode(s + n - k, k, &cp) == -(int)k ? k : 0;
    }
    return 0;
}

int dsv4_tok_stream_feed(dsv4_tok_stream *s, uint32_t id, dsv4_buf *out, dsv4_err *err)
{
    dsv4_buf b = DSV4_BUF_INIT;
    size_t keep;
    int rc;
    dsv4_buf_append(&b, s->pend, s->npend);
    if ((rc = emit_id(s->tok, id, s->flags, &b, err))) {
        dsv4_buf_release(&b);
        return rc;
    }
    if (b.oom) {
        dsv4_buf_release(&b);
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    }
    keep = unfinished_tail((const unsigned char *)b.data, b.len);
    if (s->flags & DSV4_TOK_LOSSY)
        dsv4_tok_put_lossy(out, (const unsigned char *)b.data, b.len - keep);
    else
        dsv4_buf_append(out, b.data, b.len - keep);
    memcpy(s->pend, b.data + b.len - keep, keep);
    s->npend = keep;
    dsv4_buf_release(&b);
    return out->oom ? dsv4_err_set(err, DSV4_E_NOMEM, "out of memory") : 0;
}

void dsv4_tok_stream_finish(dsv4_tok_stream *s, dsv4_buf *out)
{
    if (s->flags & DSV4_TOK_LOSSY)
        dsv4_tok_put_lossy(out, s->pend, s->npend);
    else
        dsv4_buf_append(out, s->pend, s->npend);
    s->npend = 0;
}
