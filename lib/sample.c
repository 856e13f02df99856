/* sample — token sampling; the semantics are in sample.h.
 *
 * How it avoids sorting the vocabulary:
 *
 * - greedy is one pass over the logits;
 * - top-k (k < vocab) keeps a heap of the k best tokens (one compare per
 *   token once the heap is full), sorts those k and filters that list;
 * - otherwise every filter and the pick only ever keep a prefix of the
 *   sorted order, so the weights are bucketed by their top 16 bits (16
 *   buckets per power of two; bucket order = weight order = logit order)
 *   with each bucket's weight sum and count.  A cut (top-p, min-p, the
 *   pick) finds its bucket from the bucket sums and sorts only the tokens
 *   of that bucket.  The running sum at a position is therefore the sum of
 *   the whole buckets above it (each summed in id order) plus the sorted
 *   partial sum inside its bucket: one fixed order, so deterministic, and
 *   within rounding of the plain sorted-order sum.
 *
 * Typical rows cost about one exp per token (~1.3 ms at 129k tokens).  Two
 * cases approach a full sort (~30 ms): a near-flat distribution (a huge
 * temperature) puts most tokens into the bucket that gets sorted, and a
 * top_k close to vocab sorts k tokens. */
#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Buckets: the bits of a double weight in (0, 1] shifted right by 48. */
#define BSHIFT 48
#define NB ((int)(0x3ff0000000000000ull >> BSHIFT) + 1)   /* 1.0 is the last */

struct item {
    double w;        /* weight exp((logit - max) / T) */
    double cum;      /* running weight sum up to and including this item */
    float logit;
    uint32_t id;
};

struct dsv4_sampler {
    int64_t vocab;
    double *w;            /* [vocab] weights of the current call (bucket path) */
    struct item *items;   /* [vocab] the top-k list, or one gathered bucket */
    double *mass;         /* [NB] weight sum per bucket, in id order */
    double *above;        /* [NB] sum of the buckets above b */
    int64_t *cnt;         /* [NB] tokens per bucket */
    int dirty_lo, dirty_hi;   /* bucket range to clear before the next use */
    int gb;               /* bucket held sorted in items, or -1 */
    int64_t gn;           /* its token count */
};

/* ---- options and the draw ---- */

int dsv4_sample_check(const dsv4_sample_opts *o, dsv4_err *err)
{
    if (!o)
        return dsv4_err_set(err, DSV4_E_INVALID, "sample options missing");
    if (!(isfinite(o->temperature) && o->temperature >= 0))
        return dsv4_err_set(err, DSV4_E_INVALID, "temperature must be finite and >= 0 (got %g)",
                            o->temperature);
    if (!(o->top_p > 0 && o->top_p <= 1))
        return dsv4_err_set(err, DSV4_E_INVALID, "top_p must be in (0, 1] (got %g)", o->top_p);
    if (o->top_k < 0)
        return dsv4_err_set(err, DSV4_E_INVALID, "top_k must be >= 0 (got %lld)",
                            (long long)o->top_k);
    if (!(o->min_p >= 0 && o->min_p <= 1))
        return dsv4_err_set(err, DSV4_E_INVALID, "min_p must be in [0, 1] (got %g)", o->min_p);
    return 0;
}

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double dsv4_sample_uniform(uint64_t seed, int64_t pos)
{
    /* Mixing the seed first keeps nearby seeds from giving shifted copies
     * of one stream (seed s at pos p+1 vs seed s+golden at pos p). */
    uint64_t z = mix64(mix64(seed ^ 0x6a09e667f3bcc909ull) + (uint64_t)pos * 0x9e3779b97f4a7c15ull);
    return (double)(z >> 11) * 0x1.0p-53;
}

/* ---- sampler ---- */

int dsv4_sampler_new(dsv4_sampler **out, int64_t vocab, dsv4_err *err)
{
    dsv4_sampler *s;
    *out = NULL;
    if (vocab < 1 || vocab > (int64_t)UINT32_MAX + 1)
        return dsv4_err_set(err, DSV4_E_INVALID, "sampler vocab %lld is not in [1, 2^32]",
                            (long long)vocab);
    s = calloc(1, sizeof *s);
    if (!s)
        return dsv4_err_set(err, DSV4_E_NOMEM, "sampler: out of memory");
    s->vocab = vocab;
    s->w = malloc((size_t)vocab * sizeof *s->w);
    s->items = malloc((size_t)vocab * sizeof *s->items);
    s->mass = calloc(NB, sizeof *s->mass);
    s->above = calloc(NB, sizeof *s->above);
    s->cnt = calloc(NB, sizeof *s->cnt);
    if (!s->w || !s->items || !s->mass || !s->above || !s->cnt) {
        dsv4_sampler_free(s);
        return dsv4_err_set(err, DSV4_E_NOMEM, "sampler for %lld tokens: out of memory",
                            (long long)vocab);
    }
    s->dirty_lo = NB;
    s->dirty_hi = -1;
    s->gb = -1;
    *out = s;
    return 0;
}

void dsv4_sampler_free(dsv4_sampler *s)
{
    if (!s)
        return;
    free(s->w);
    free(s->items);
    free(s->mass);
    free(s->above);
    free(s->cnt);
    free(s);
}

/* ---- shared helpers ---- */

/* The sort order: higher logit first, then lower id.  A strict total order
 * (no NaN gets this far). */
static int better(float la, uint32_t ia, float lb, uint32_t ib)
{
    return la > lb || (la == lb && ia < ib);
}

static int item_cmp(const void *pa, const void *pb)
{
    const struct item *a = pa, *b = pb;
    return better(a->logit, a->id, b->logit, b->id) ? -1 : better(b->logit, b->id, a->logit, a->id);
}

/* qsort unless already in order (a bucket of equal logits is, being
 * gathered in id order). */
static void sort_items(struct item *it, int64_t n)
{
    int64_t i = 1;
    while (i < n && better(it[i - 1].logit, it[i - 1].id, it[i].logit, it[i].id))
        i++;
    if (i < n)
        qsort(it, (size_t)n, sizeof *it, item_cmp);
}

/* One pass: NaN check, max, argmax (lowest id on ties), count of +inf. */
static int scan(const float *logits, int64_t n, float *max, int64_t *argmax, int64_t *ninf,
                dsv4_err *err)
{
    float m = -INFINITY;
    int64_t am = -1, pinf = 0;
    for (int64_t i = 0; i < n; i++) {
        float l = logits[i];
        if (isnan(l))
            return dsv4_err_set(err, DSV4_E_RANGE, "logit of token %lld is NaN", (long long)i);
        if (l > m) {
            m = l;
            am = i;
        }
        pinf += l == INFINITY;
    }
    if (am < 0)
        return dsv4_err_set(err, DSV4_E_RANGE, "all %lld logits are -inf", (long long)n);
    *max = m;
    *argmax = am;
    *ninf = pinf;
    return 0;
}

/* The weight of a logit; with +inf logits present, 1 for those, 0 else. */
static double weight(float l, double m, double t, int64_t ninf)
{
    if (ninf)
        return l == INFINITY ? 1.0 : 0.0;
    return exp(((double)l - m) / t);
}

/* ---- top-k: a heap of the k best, worst at the root ---- */

static void heap_down(struct item *h, int64_t n, int64_t i)
{
    for (;;) {
        int64_t c = 2 * i + 1, worst = i;
        if (c < n && better(h[worst].logit, h[worst].id, h[c].logit, h[c].id))
            worst = c;
        if (c + 1 < n && better(h[worst].logit, h[worst].id, h[c + 1].logit, h[c + 1].id))
            worst = c + 1;
        if (worst == i)
            return;
        struct item t = h[i];
        h[i] = h[worst];
        h[worst] = t;
        i = worst;
    }
}

static uint32_t sample_topk(dsv4_sampler *s, const float *logits, const dsv4_sample_opts *o,
                            double u, double m, int64_t ninf)
{
    struct item *it = s->items;
    int64_t k = o->top_k, r;
    double c;

    for (int64_t i = 0; i < k; i++)
        it[i] = (struct item){ 0, 0, logits[i], (uint32_t)i };
    for (int64_t i = k / 2; i-- > 0;)
        heap_down(it, k, i);
    for (int64_t i = k; i < s->vocab; i++) {
        if (better(logits[i], (uint32_t)i, it[0].logit, it[0].id)) {
            it[0].logit = logits[i];
            it[0].id = (uint32_t)i;
            heap_down(it, k, 0);
        }
    }
    s->gb = -1;   /* items no longer hold a bucket */
    sort_items(it, k);

    c = 0;
    for (int64_t j = 0; j < k; j++) {
        it[j].w = weight(it[j].logit, m, o->temperature, ninf);
        c += it[j].w;
        it[j].cum = c;
    }
    r = k;
    if (o->top_p < 1) {
        double thr = o->top_p * it[k - 1].cum;
        for (int64_t j = 0; j < k; j++)
            if (it[j].cum >= thr) {
                r = j + 1;
                break;
            }
    }
    if (o->min_p > 0) {
        double cut = o->min_p * it[0].w;
        int64_t j = 0;
        while (j < r && it[j].w >= cut)
            j++;
        r = j;     /* >= 1: it[0].w = 1 >= cut */
    }
    double target = u * it[r - 1].cum;
    for (int64_t j = 0; j < r; j++)
        if (it[j].cum > target)
            return it[j].id;
    return it[r - 1].id;    /* unreachable: u < 1 makes target < the total */
}

/* ---- the bucket path ---- */

static int bucket_of(double w)
{
    uint64_t b;
    memcpy(&b, &w, sizeof b);
    return (int)(b >> BSHIFT);
}

/* A prefix of the sorted order: every token of the buckets above b and the
 * first j (0 .. cnt[b]) of bucket b. */
struct pos {
    int b;
    int64_t j;
};

static int pos_before(struct pos a, struct pos c)
{
    return a.b > c.b || (a.b == c.b && a.j < c.j);
}

/* Put bucket b's tokens into items, sorted, with running sums that start at
 * above[b]; the last one gets above[b] + mass[b] so that a full bucket sums
 * the same whichever way it is reached. */
static void gather(dsv4_sampler *s, const float *logits, int b)
{
    uint64_t lo = (uint64_t)b << BSHIFT, hi = lo + (1ull << BSHIFT);
    struct item *it = s->items;
    int64_t n = 0;
    double c;
    if (s->gb == b)
        return;
    for (int64_t i = 0; i < s->vocab; i++) {
        uint64_t bits;
        memcpy(&bits, &s->w[i], sizeof bits);
        if (bits >= lo && bits < hi && s->w[i] > 0)
            it[n++] = (struct item){ s->w[i], 0, logits[i], (uint32_t)i };
    }
    sort_items(it, n);
    c = s->above[b];
    for (int64_t j = 0; j < n; j++) {
        c += it[j].w;
        it[j].cum = c;
    }
    if (n)
        it[n - 1].cum = s->above[b] + s->mass[b];
    s->gb = b;
    s->gn = n;
}

/* The running sum at the end of prefix p. */
static double cum_at(dsv4_sampler *s, const float *logits, struct pos p)
{
    if (p.j == 0)
        return s->above[p.b];
    if (p.j == s->cnt[p.b])
        return s->above[p.b] + s->mass[p.b];
    gather(s, logits, p.b);
    return s->items[p.j - 1].cum;
}

/* The shortest prefix within e whose running sum is >= thr (strict: > thr),
 * or e itself if none is. */
static struct pos first_reaching(dsv4_sampler *s, const float *logits, struct pos e, int hi,
                                 double thr, int strict)
{
    for (int b = hi; b >= e.b; b--) {
        int64_t lim = b == e.b ? e.j : s->cnt[b];
        double end;
        if (lim == 0)
            continue;
        end = cum_at(s, logits, (struct pos){ b, lim });
        if (strict ? end > thr : end >= thr) {
            gather(s, logits, b);
            for (int64_t j = 0; j < lim; j++) {
                double c = s->items[j].cum;
                if (strict ? c > thr : c >= thr)
                    return (struct pos){ b, j + 1 };
            }
            return (struct pos){ b, lim };
        }
    }
    return e;
}

static int sample_buckets(dsv4_sampler *s, const float *logits, const dsv4_sample_opts *o,
                          double u, double m, int64_t ninf, uint32_t *token, dsv4_err *err)
{
    int lo = NB, hi = bucket_of(1.0);
    struct pos e, p;

    if (s->dirty_lo <= s->dirty_hi) {
        memset(s->mass + s->dirty_lo, 0, (size_t)(s->dirty_hi - s->dirty_lo + 1) * sizeof *s->mass);
        memset(s->cnt + s->dirty_lo, 0, (size_t)(s->dirty_hi - s->dirty_lo + 1) * sizeof *s->cnt);
    }
    s->gb = -1;
    for (int64_t i = 0; i < s->vocab; i++) {
        double w = weight(logits[i], m, o->temperature, ninf);
        s->w[i] = w;
        if (w > 0) {
            int b = bucket_of(w);
            s->mass[b] += w;
            s->cnt[b]++;
            if (b < lo)
                lo = b;
        }
    }
    s->dirty_lo = lo;
    s->dirty_hi = hi;
    if (lo > hi || s->cnt[hi] == 0)     /* the top token has w = 1 exactly */
        return dsv4_err_set(err, DSV4_E_BUG, "sample: no token has weight 1");
    s->above[hi] = 0;
    for (int b = hi; b > lo; b--)
        s->above[b - 1] = s->above[b] + s->mass[b];

    e = (struct pos){ lo, s->cnt[lo] };    /* all tokens of weight > 0 */
    if (o->top_p < 1)
        e = first_reaching(s, logits, e, hi, o->top_p * cum_at(s, logits, e), 0);
    if (o->min_p > 0) {
        double cut = o->min_p;           /* times the top weight, 1 */
        int bc = bucket_of(cut);
        if (bc >= lo) {
            int64_t j = 0;
            if (s->cnt[bc]) {
                gather(s, logits, bc);
                while (j < s->gn && s->items[j].w >= cut)
                    j++;
            }
            p = (struct pos){ bc, j };
            if (pos_before(p, e))
                e = p;
        }
    }
    p = first_reaching(s, logits, e, hi, u * cum_at(s, logits, e), 1);
    if (p.j == 0)
        return dsv4_err_set(err, DSV4_E_BUG, "sample: the draw fell past the last token");
    gather(s, logits, p.b);
    *token = s->items[p.j - 1].id;
    return 0;
}

/* ---- entry point ---- */

int dsv4_sample(dsv4_sampler *s, const float *logits, const dsv4_sample_opts *o, double u,
                uint32_t *token, dsv4_err *err)
{
    float m = 0;
    int64_t am = 0, ninf = 0;   /* set by scan; initialised for the compiler */
    int rc;

    if (!s || !logits || !token)
        return dsv4_err_set(err, DSV4_E_INVALID, "sample: missing sampler, logits or token");
    if ((rc = dsv4_sample_check(o, err)) < 0)
        return rc;
    if (o->temperature > 0 && !(u >= 0 && u < 1))
        return dsv4_err_set(err, DSV4_E_INVALID, "sample: draw u must be in [0, 1) (got %g)", u);
    if ((rc = scan(logits, s->vocab, &m, &am, &ninf, err)) < 0)
        return rc;
    if (o->temperature == 0) {
        *token = (uint32_t)am;
        return 0;
    }
    if (o->top_k > 0 && o->top_k < s->vocab) {
        *token = sample_topk(s, logits, o, u, m, ninf);
        return 0;
    }
    return sample_buckets(s, logits, o, u, m, ninf, token, err);
}
