/* Unit tests for lib/requant.c: rule parsing, recipes, and the plan (which
 * tensors are re-encoded, what their scales become, sizes, errors). */
#include "test.h"

#include <stdint.h>

#include "requant.h"

static void noop_warn(void *ctx, const char *subject, const char *msg)
{
    (void)subject;
    (void)msg;
    ++*(int *)ctx;
}

TEST(rules)
{
    dsv4_qrules r = DSV4_QRULES_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    CHECK(dsv4_qrules_add(&r, "*.w1.weight=q3", &err) == 0);
    CHECK_EQ_INT(r.r[0].target, DSV4_QT_Q3);
    CHECK_STR(r.r[0].glob, "*.w1.weight");
    CHECK(dsv4_qrules_add(&r, "x=COPY", &err) == 0);
    CHECK(dsv4_qrules_add(&r, "nothing", &err) == DSV4_E_INVALID);
    CHECK(strstr(err.msg, "GLOB=FORMAT") != NULL);
    CHECK(dsv4_qrules_add(&r, "=Q2", &err) == DSV4_E_INVALID);
    CHECK(dsv4_qrules_add(&r, "a=Q4", &err) == DSV4_E_INVALID);
    CHECK(strstr(err.msg, "unknown format 'Q4'") != NULL);
    CHECK(dsv4_qrules_add_recipe(&r, "fit-80g", &err) == 0);
    CHECK_EQ_INT(r.n, 7);
    CHECK_STR(r.recipes, "fit-80g");
    CHECK(dsv4_qrules_add_recipe(&r, "nope", &err) == DSV4_E_NOTFOUND);
    dsv4_qrules_free(&r);
    CHECK(r.n == 0 && r.r == NULL);
}

TEST(plan)
{
    /* e.weight: FP4 [4, 128] as bytes [4, 64] with scales [4, 4]; s.scale
     * comes before its weight; b.weight: BF16 [4, 64]; n.weight a vector */
    static const uint8_t zero[4096];
    dsv4_tensor t[] = {
        { "e.weight", DSV4_DT_I8, 2, { 4, 64 }, zero, 256 },
        { "e.scale", DSV4_DT_F8_E8M0, 2, { 4, 4 }, zero, 16 },
        { "s.scale", DSV4_DT_F8_E8M0, 2, { 1, 1 }, zero, 1 },
        { "s.weight", DSV4_DT_F8_E4M3, 2, { 4, 64 }, zero, 256 },
        { "b.weight", DSV4_DT_BF16, 2, { 4, 64 }, zero, 512 },
        { "n.weight", DSV4_DT_BF16, 1, { 64 }, zero, 128 },
        { "ids", DSV4_DT_I64, 1, { 2 }, zero, 16 },
    };
    const dsv4_tensor *v[7];
    for (int i = 0; i < 7; i++)
        v[i] = &t[i];
    dsv4_qrules r = DSV4_QRULES_INIT;
    dsv4_qplan p;
    dsv4_err err = DSV4_ERR_INIT;
    int warns = 0;
    CHECK(dsv4_qrules_add(&r, "e.*=Q2", &err) == 0);
    CHECK(dsv4_qrules_add(&r, "s.*=BF16", &err) == 0);
    CHECK(dsv4_qrules_add(&r, "b.weight=Q3", &err) == 0);
    CHECK(dsv4_qrules_add(&r, "zz*=Q3", &err) == 0);
    CHECK(dsv4_qplan_build(&p, &r, v, 7, noop_warn, &warns, &err) == 0);
    CHECK_EQ_INT(warns, 1);                 /* zz* matches nothing */
    CHECK_EQ_INT(p.n, 7);                   /* s.scale dropped, b.scale added */
    CHECK_STR(p.items[0].out.name, "e.weight");
    CHECK_EQ_INT(p.items[0].out.dtype, DSV4_DT_Q2);
    CHECK_EQ_INT(p.items[0].out.shape[1], 32);
    CHECK_EQ_INT(p.items[1].out.dtype, DSV4_DT_QS8);
    CHECK_EQ_INT(p.items[1].out.shape[1], 2);
    CHECK(p.items[1].mate == 0 && p.items[0].mate == 1);
    CHECK_STR(p.items[2].out.name, "s.weight");
    CHECK_EQ_INT(p.items[2].out.dtype, DSV4_DT_BF16);
    CHECK_STR(p.items[3].out.name, "b.weight");
    CHECK_EQ_INT(p.items[3].out.nbytes, 4 * 2 * 12);
    CHECK_STR(p.items[4].out.name, "b.scale");
    CHECK_EQ_INT(p.items[4].out.dtype, DSV4_DT_QS8);
    CHECK_EQ_INT(p.items[5].target, DSV4_QT_COPY);
    CHECK_EQ_INT(p.n_requant, 3);
    CHECK_EQ_INT(p.q_params, 4 * 128 + 4 * 64 + 4 * 64);
    CHECK_EQ_INT(p.bytes_in, 256 + 16 + 1 + 256 + 512 + 128 + 16);
    CHECK_EQ_INT(p.bytes_out, 128 + 8 + 512 + 96 + 8 + 128 + 16);
    dsv4_qplan_free(&p);
    /* a format that cannot apply: Q3 on a vector, BF16 on integers */
    CHECK(dsv4_qrules_add(&r, "n.weight=Q3", &err) == 0);
    CHECK(dsv4_qplan_build(&p, &r, v, 7, NULL, NULL, &err) == DSV4_E_INVALID);
    CHECK(strstr(err.msg, "n.weight") != NULL);
    dsv4_qrules_free(&r);
    CHECK(dsv4_qrules_add(&r, "ids=BF16", &err) == 0);
    CHECK(dsv4_qplan_build(&p, &r, v, 7, NULL, NULL, &err) == DSV4_E_INVALID);
    CHECK(strstr(err.msg, "ids (I64)") != NULL);
    dsv4_qrules_free(&r);
}

TEST_MAIN(T(rules), T(plan))
