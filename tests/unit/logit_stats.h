/* How close two sets of logits are, as ../shared/fixtures/README.md measures
 * it: per position t, e_t = max_v |a[t,v] - b[t,v]| / max_v |b[t,v]|, then
 * the median, 99th percentile and maximum over t, and how often the argmax
 * agrees.  NaN in a counts as an error of +inf. */
#ifndef DSV4_LOGIT_STATS_H
#define DSV4_LOGIT_STATS_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

struct stats { double median, p99, max, argmax; };

static int stats_cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static struct stats compare(const float *a0, const float *b0, int64_t rows, int64_t V)
{
    struct stats s = { INFINITY, INFINITY, INFINITY, 0 };
    float *e = malloc((size_t)rows * sizeof *e);
    int64_t agree = 0;
    if (!e || rows <= 0) {
        free(e);
        return s;
    }
    for (int64_t t = 0; t < rows; t++) {
        const float *a = a0 + t * V, *b = b0 + t * V;
        double md = 0, mr = 0;
        int64_t ia = 0, ib = 0;
        for (int64_t v = 0; v < V; v++) {
            double d = fabs((double)a[v] - b[v]);
            md = d != d ? INFINITY : d > md ? d : md;
            mr = fabs(b[v]) > mr ? fabs(b[v]) : mr;
            if (a[v] > a[ia]) ia = v;
            if (b[v] > b[ib]) ib = v;
        }
        e[t] = (float)(md / mr);
        agree += ia == ib;
    }
    qsort(e, (size_t)rows, sizeof *e, stats_cmp_f);
    s.median = e[rows / 2];
    s.p99 = e[(int64_t)(0.99 * (double)(rows - 1))];
    s.max = e[rows - 1];
    s.argmax = (double)agree / (double)rows;
    free(e);
    return s;
}

#endif
