/* tok_pre — the DeepSeek-V3/V4 pre-tokenizer written out by hand, so that no
 * regex library is needed.  tokenizer.json applies three Split pre-tokenizers
 * (behaviour Isolated: matches and the gaps between them both become pieces),
 * each one to every piece the previous one produced:
 *
 *   1. \p{N}{1,3}
 *   2. [一-龥぀-ゟ゠-ヿ]+                         (U+4E00–9FA5, U+3040–30FF)
 *   3. [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+
 *      | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
 *      |  ?[\p{P}\p{S}]+[\r\n]*
 *      | \s*[\r\n]+
 *      | \s+(?!\S)
 *      | \s+
 *
 * with backtracking, leftmost-first semantics (the first alternative that
 * matches at the leftmost position wins).  Pattern 3 never needs to tell L
 * from M, nor P from S (see match3), so each character gets one of five
 * classes.  Each piece is a separate subject string: lookahead stops at its
 * end. */
#include "tok_impl.h"
#include "unicode.h"

/* Per-byte classification of the subject, filled once per call. */
enum {
    C_O = 0,     /* anything else: Cc (not White_Space), Cf, Cn, Co, Z* non-space, invalid bytes */
    C_LM = 1,    /* \p{L} or \p{M} */
    C_N = 2,     /* \p{N} */
    C_PS = 3,    /* \p{P} or \p{S} */
    C_WS = 4,    /* \s: White_Space */
    C_MASK = 7,
    F_CJK = 8,   /* in the ranges of pattern 2 */
    F_CRLF = 16, /* \r or \n */
    F_CONT = 0x80 /* not the first byte of a character */
};

const char *const dsv4_tok_pre_regex[3] = {
    "\\p{N}{1,3}",
    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?"
    "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
};

static unsigned char_class(uint32_t cp)
{
    static const uint8_t by_gc[32] = {
        [DSV4_UNI_LU] = C_LM, [DSV4_UNI_LL] = C_LM, [DSV4_UNI_LT] = C_LM,
        [DSV4_UNI_LM] = C_LM, [DSV4_UNI_LO] = C_LM, [DSV4_UNI_MN] = C_LM,
        [DSV4_UNI_MC] = C_LM, [DSV4_UNI_ME] = C_LM,
        [DSV4_UNI_ND] = C_N, [DSV4_UNI_NL] = C_N, [DSV4_UNI_NO] = C_N,
        [DSV4_UNI_PC] = C_PS, [DSV4_UNI_PD] = C_PS, [DSV4_UNI_PS] = C_PS,
        [DSV4_UNI_PE] = C_PS, [DSV4_UNI_PI] = C_PS, [DSV4_UNI_PF] = C_PS,
        [DSV4_UNI_PO] = C_PS, [DSV4_UNI_SM] = C_PS, [DSV4_UNI_SC] = C_PS,
        [DSV4_UNI_SK] = C_PS, [DSV4_UNI_SO] = C_PS,
    };
    unsigned p = dsv4_uni_props(cp), c;
    /* White_Space characters are all Z* or Cc, so the flag decides alone. */
    c = (p & DSV4_UNI_WS) ? C_WS : by_gc[p & 0x1f];
    if (cp == '\r' || cp == '\n')
        c |= F_CRLF;
    if ((cp >= 0x4E00 && cp <= 0x9FA5) || (cp >= 0x3040 && cp <= 0x30FF))
        c |= F_CJK;
    return c;
}

/* Classify s[0..n) into cl: class of a character at its first byte, F_CONT
 * on the others. */
static void classify(const unsigned char *s, size_t n, uint8_t *cl)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int k = dsv4_utf8_decode(s + i, n - i, &cp);
        if (k > 0) {
            cl[i] = (uint8_t)char_class(cp);
        } else {
            k = -k;              /* an invalid subpart: one character of class O */
            cl[i] = C_O;
        }
        for (int j = 1; j < k; j++)
            cl[i + (size_t)j] = F_CONT;
        i += (size_t)k;
    }
}

static inline size_t next_char(const uint8_t *cl, size_t i, size_t end)
{
    do
        i++;
    while (i < end && cl[i] == F_CONT);
    return i;
}

static inline unsigned cls(const uint8_t *cl, size_t i) { return cl[i] & C_MASK; }

static inline int ascii_punct(unsigned c)
{
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) ||
           (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
}
static inline int ascii_alpha(unsigned c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

static size_t run_of(const uint8_t *cl, size_t i, size_t end, unsigned c)
{
    while (i < end && cls(cl, i) == c)
        i = next_char(cl, i, end);
    return i;
}

/* End of the match of pattern 3 at p within [p, end), or p when no
 * alternative matches there. */
static size_t match3(const unsigned char *s, const uint8_t *cl, size_t p, size_t end)
{
    unsigned c0 = cls(cl, p);
    size_t q = next_char(cl, p, end);   /* start of the second character */
    size_t r;

    /* [punct][A-Za-z]+ */
    if (ascii_punct(s[p]) && q < end && ascii_alpha(s[q])) {
        while (q < end && ascii_alpha(s[q]))
            q++;
        return q;
    }
    /* [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ — when c0 is L or M the result is
     * the L/M run from p whichever way the optional part goes (an M taken as
     * the optional char is followed by the same run), so L and M need not be
     * told apart.  Otherwise c0 may be the optional char if it is not CR/LF
     * nor P/S (it is N, space or "other"). */
    if (c0 == C_LM)
        return run_of(cl, q, end, C_LM);
    if (!(cl[p] & F_CRLF) && c0 != C_PS && q < end && cls(cl, q) == C_LM)
        return run_of(cl, q, end, C_LM);
    /*  ?[\p{P}\p{S}]+[\r\n]* */
    r = (s[p] == ' ' && q < end && cls(cl, q) == C_PS) ? q : p;
    if (cls(cl, r) == C_PS) {
        r = run_of(cl, r, end, C_PS);
        while (r < end && (cl[r] & F_CRLF))
            r++;
        return r;
    }
    if (c0 == C_WS) {
        size_t w = p, last = p, nl = end;
        for (; w < end && cls(cl, w) == C_WS; w = next_char(cl, w, end)) {
            last = w;
            if (cl[w] & F_CRLF)
                nl = w;
        }
        /* \s*[\r\n]+ : \s* gives back characters until [\r\n]+ can start,
         * i.e. the match ends after the last CR/LF of the run. */
        if (nl != end)
            return nl + 1;
        /* \s+(?!\S): the whole run at the end of the subject, else one
         * character shorter (then followed by a space) if that leaves one. */
        if (w == end)
            return w;
        if (last > p)
            return last;
        return w;   /* \s+ */
    }
    return p;
}

struct pre {
    const unsigned char *s;
    const uint8_t *cl;
    dsv4_tok_pre_fn fn;
    void *ctx;
};

static int split3(struct pre *x, size_t start, size_t end)
{
    size_t p = start, gap = start;
    int rc;
    while (p < end) {
        size_t m = match3(x->s, x->cl, p, end);
        if (m == p) {
            p = next_char(x->cl, p, end);
            continue;
        }
        if (gap < p && (rc = x->fn(x->ctx, x->s + gap, p - gap)))
            return rc;
        if ((rc = x->fn(x->ctx, x->s + p, m - p)))
            return rc;
        p = gap = m;
    }
    if (gap < end)
        return x->fn(x->ctx, x->s + gap, end - gap);
    return 0;
}

/* Patterns 1 and 2 have the same shape: runs of characters with a property
 * are the matches (pattern 1 cut into pieces of at most 3), the rest are the
 * gaps; every piece goes on to the next stage. */
static int split12(struct pre *x, size_t start, size_t end, int stage)
{
    size_t p = start, gap = start;
    int rc;
    while (p < end) {
        int hit = stage == 1 ? cls(x->cl, p) == C_N : (x->cl[p] & F_CJK) != 0;
        size_t m = p;
        unsigned count = 0;
        if (!hit) {
            p = next_char(x->cl, p, end);
            continue;
        }
        if (stage == 1) {
            while (m < end && count < 3 && cls(x->cl, m) == C_N) {
                m = next_char(x->cl, m, end);
                count++;
            }
        } else {
            while (m < end && (x->cl[m] & F_CJK))
                m = next_char(x->cl, m, end);
        }
        if (gap < p) {
            rc = stage == 1 ? split12(x, gap, p, 2) : split3(x, gap, p);
            if (rc)
                return rc;
        }
        rc = stage == 1 ? split12(x, p, m, 2) : split3(x, p, m);
        if (rc)
            return rc;
        p = gap = m;
    }
    if (gap < end)
        return stage == 1 ? split12(x, gap, end, 2) : split3(x, gap, end);
    return 0;
}

int dsv4_tok_pretok(const unsigned char *s, size_t n, uint8_t *cl, dsv4_tok_pre_fn fn, void *ctx)
{
    struct pre x = { s, cl, fn, ctx };
    if (n == 0)
        return 0;
    classify(s, n, cl);
    return split12(&x, 0, n, 1);
}
