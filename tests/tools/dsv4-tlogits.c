/* dsv4-tlogits — compare two logits files (rows of V little-endian float32,
 * as dsv4-prefill --logits-all writes them): a reference and a candidate.
 *
 *   dsv4-tlogits V REF.f32 CAND.f32
 *
 * Prints one line: rows, whether every value is finite, the largest and
 * RMS absolute difference, the RMS difference relative to the reference's
 * RMS, the share of rows whose argmax agrees, the share whose candidate
 * argmax is among the reference's top 5, and the mean KL divergence of the
 * candidate's softmax from the reference's.  Exit 1 if the files cannot be
 * read or differ in size, 0 otherwise: the numbers are for people and for
 * the caller's sanity bounds. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static float *load(const char *path, long *n)
{
    FILE *f = fopen(path, "rb");
    float *p = NULL;
    if (!f || fseek(f, 0, SEEK_END) || (*n = ftell(f) / 4) <= 0 || fseek(f, 0, SEEK_SET) ||
        !(p = malloc((size_t)*n * 4)) || fread(p, 4, (size_t)*n, f) != (size_t)*n) {
        fprintf(stderr, "dsv4-tlogits: cannot read '%s'\n", path);
        exit(1);
    }
    fclose(f);
    return p;
}

static void softmax(const float *x, long v, double *p)
{
    double mx = x[0], s = 0;
    for (long i = 1; i < v; i++)
        mx = x[i] > mx ? x[i] : mx;
    for (long i = 0; i < v; i++)
        s += p[i] = exp(x[i] - mx);
    for (long i = 0; i < v; i++)
        p[i] /= s;
}

int main(int argc, char **argv)
{
    long v, na, nb, rows, agree = 0, top5 = 0, finite = 1;
    double maxd = 0, sd = 0, sr = 0, kl = 0;
    if (argc != 4 || (v = atol(argv[1])) <= 0) {
        fprintf(stderr, "usage: dsv4-tlogits V REF.f32 CAND.f32\n");
        return 2;
    }
    float *a = load(argv[2], &na), *b = load(argv[3], &nb);
    double *pa = malloc((size_t)v * sizeof *pa), *pb = malloc((size_t)v * sizeof *pb);
    if (na != nb || na % v || !pa || !pb) {
        fprintf(stderr, "dsv4-tlogits: '%s' and '%s' differ in size or are not rows of %ld\n", argv[2], argv[3], v);
        return 1;
    }
    rows = na / v;
    for (long r = 0; r < rows; r++) {
        const float *x = a + r * v, *y = b + r * v;
        long ia = 0, ib = 0, above = 0;
        for (long i = 0; i < v; i++) {
            double d = fabs((double)x[i] - y[i]);
            finite &= isfinite(x[i]) && isfinite(y[i]);
            maxd = d > maxd ? d : maxd;
            sd += d * d;
            sr += (double)x[i] * x[i];
            ia = x[i] > x[ia] ? i : ia;
            ib = y[i] > y[ib] ? i : ib;
        }
        for (long i = 0; i < v; i++)
            above += x[i] > x[ib];
        agree += ia == ib;
        top5 += above < 5;
        softmax(x, v, pa);
        softmax(y, v, pb);
        for (long i = 0; i < v; i++)
            if (pa[i] > 0)
                kl += pa[i] * (log(pa[i]) - log(pb[i] > 1e-300 ? pb[i] : 1e-300));
    }
    printf("rows %ld finite %s max_abs %.4g rms %.4g rel_rms %.4f argmax_agree %.3f top5 %.3f kl %.4g\n", rows,
           finite ? "yes" : "no", maxd, sqrt(sd / (double)na), sqrt(sd / (sr ? sr : 1)), (double)agree / (double)rows,
           (double)top5 / (double)rows, kl / (double)rows);
    free(a);
    free(b);
    free(pa);
    free(pb);
    return 0;
}
