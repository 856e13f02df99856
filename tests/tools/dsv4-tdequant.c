/* dsv4-tdequant — check that a .dsv4 file holds exactly the tensors of the
 * Hugging Face checkpoint it was converted from.
 *
 *   dsv4-tdequant MODEL.dsv4 HF_DIR
 *
 * Every tensor must exist on both sides with the same dtype, shape and raw
 * bytes; every FP8 weight (with its 128x128 block scales) and every packed
 * FP4 weight (with its 1x32 scales) named by the config is dequantised from
 * both files with lib/codec.h and the floats compared bit for bit.  One line
 * per difference on stdout, a summary last; exit 1 on any difference, or
 * when there was nothing of a kind to compare. */
#include "codec.h"
#include "config.h"
#include "model.h"
#include "safetensors.h"
#include "version.h"
#include "tool.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int same_layout(const dsv4_tensor *a, const dsv4_tensor *b)
{
    if (a->dtype != b->dtype || a->ndim != b->ndim || a->nbytes != b->nbytes)
        return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return 0;
    return 1;
}

/* Dequantise weight `name` (role FP8 or FP4) from both sides and compare. */
static int compare_dequant(const dsv4_model *m, const dsv4_st *st, const char *name, int fp4)
{
    char sname[128];
    const dsv4_tensor *w[2], *s[2];
    float *out[2];
    size_t len = strlen(name), nz = 0;
    int64_t n, k;
    int bad = 0;
    if (len < 7 || strcmp(name + len - 7, ".weight") || len + 1 > sizeof sname)
        die("unexpected weight name '%s'", name);
    snprintf(sname, sizeof sname, "%.*s.scale", (int)(len - 7), name);
    w[0] = dsv4_model_find(m, name);
    s[0] = dsv4_model_find(m, sname);
    w[1] = dsv4_st_find(st, name);
    s[1] = dsv4_st_find(st, sname);
    if (!w[0] || !s[0] || !w[1] || !s[1]) {
        printf("%s: weight or scale missing\n", name);
        return 1;
    }
    n = w[0]->shape[0];
    k = fp4 ? 2 * w[0]->shape[1] : w[0]->shape[1];
    for (int i = 0; i < 2; i++) {
        if (!(out[i] = malloc((size_t)(n * k) * sizeof(float))))
            die("out of memory");
        if (fp4)
            dsv4_dequant_fp4_rows(w[i]->data, s[i]->data, n, k, 0, n, out[i]);
        else
            dsv4_dequant_fp8_rows(w[i]->data, s[i]->data, n, k, 0, n, out[i]);
    }
    for (int64_t i = 0; i < n * k; i++) {
        if (memcmp(&out[0][i], &out[1][i], sizeof(float))) {
            printf("%s: dequantised value %lld differs: %.9g in the model file, %.9g in the checkpoint\n", name,
                   (long long)i, out[0][i], out[1][i]);
            bad = 1;
            break;
        }
        nz += out[0][i] != 0;
    }
    if (!bad && !nz) {
        printf("%s: dequantises to all zeros (nothing was compared)\n", name);
        bad = 1;
    }
    free(out[0]);
    free(out[1]);
    return bad;
}

int main(int argc, char **argv)
{
    dsv4_model *m;
    dsv4_st *st;
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_tensor_spec *spec;
    size_t ns, nfp8 = 0, nfp4 = 0, nraw = 0;
    int bad = 0;
    if (argc != 3)
        die("usage: dsv4-tdequant MODEL.dsv4 HF_DIR");
    if (dsv4_init())
        die("cannot initialise libsodium");
    if (dsv4_model_open(&m, argv[1], &err) || dsv4_st_open(&st, argv[2], NULL, NULL, &err))
        die("%s", err.msg);
    if (dsv4_model_count(m) != dsv4_st_count(st)) {
        printf("%zu tensors in the model file, %zu in the checkpoint\n", dsv4_model_count(m), dsv4_st_count(st));
        bad++;
    }
    for (size_t i = 0; i < dsv4_model_count(m); i++) {
        const dsv4_tensor *a = dsv4_model_tensor(m, i), *b = dsv4_st_find(st, a->name);
        if (!b) {
            printf("%s: not in the checkpoint\n", a->name);
            bad++;
        } else if (!same_layout(a, b)) {
            printf("%s: dtype or shape differs\n", a->name);
            bad++;
        } else if (memcmp(a->data, b->data, (size_t)a->nbytes)) {
            printf("%s: raw bytes differ\n", a->name);
            bad++;
        } else {
            nraw++;
        }
    }
    if (dsv4_config_tensors(dsv4_model_config(m), &spec, &ns, &err))
        die("%s", err.msg);
    for (size_t i = 0; i < ns; i++) {
        if (spec[i].role == DSV4_ROLE_FP8_WEIGHT) {
            bad += compare_dequant(m, st, spec[i].name, 0);
            nfp8++;
        } else if (spec[i].role == DSV4_ROLE_FP4_WEIGHT) {
            bad += compare_dequant(m, st, spec[i].name, 1);
            nfp4++;
        }
    }
    free(spec);
    if (!nfp8 || (dsv4_model_config(m)->expert_fp4 && !nfp4)) {
        printf("no FP8 or FP4 weights to compare\n");
        bad++;
    }
    printf("%zu tensors with identical bytes; %zu FP8 and %zu FP4 weights dequantised; %d difference%s\n", nraw,
           nfp8, nfp4, bad, bad == 1 ? "" : "s");
    dsv4_st_close(st);
    dsv4_model_close(m);
    return bad ? 1 : 0;
}
