/* kvinfo: layer kinds and growth per token (Flash's 3514.25 bytes/token of
 * spec/ARCH.md §9.1); the comparison of two snapshots, made from small
 * hand-filled bf16 states (exact values) written and read back: identical
 * states, one changed entry, states of different lengths lined up by
 * position, compressor rows at -inf, and incomparable layouts refused. */
#include "test.h"
#include "kvinfo.h"
#include "kvstate.h"
#include "snap.h"

#include <stdint.h>
#include <unistd.h>

enum { W = 8 };

/* 3 layers (SWA, CSA, HCA) and one MTP block; tiny dimensions. */
static void small_config(dsv4_config *c)
{
    memset(c, 0, sizeof *c);
    c->vocab_size = 100;
    c->dim = 16;
    c->hc_mult = 2;
    c->n_layers = 3;
    c->n_mtp_layers = 1;
    c->n_ratios = 4;
    c->window = W;
    c->head_dim = 128;
    c->rope_dim = 64;
    c->index_head_dim = 64;
    c->max_position = 1 << 20;
    c->compress_ratios[0] = 0;
    c->compress_ratios[1] = 4;
    c->compress_ratios[2] = 128;
    c->compress_ratios[3] = 0;
}

/* A value that depends on the layer, the position and the dimension only,
 * exact in bf16. */
static float val(int l, int64_t p, int64_t i) { return (float)((p * 3 + i + l) % 17) * 0.25f - 2.0f; }

static void vec(const dsv4_kvstate *s, int l, int64_t p, int64_t n, uint8_t *out, int ikey)
{
    float x[128];
    for (int64_t i = 0; i < n; i++)
        x[i] = val(l, p, i) + (ikey ? 0.5f : 0.0f);
    if (ikey)
        dsv4_ikey_pack(s, x, out);
    else
        dsv4_kv_pack(s, x, out);
}

/* A state that has consumed n positions, filled with val(). */
static dsv4_kvstate *make_state(const dsv4_config *c, int compact, int64_t n)
{
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_kvstate *s = NULL;
    if (dsv4_kv_new(&s, c, compact, &err))
        return NULL;
    s->n_tokens = n;
    for (int l = 0; l < s->n_layers; l++) {
        dsv4_kv_layer *L = &s->layers[l];
        for (int64_t p = n > W ? n - W : 0; p < n; p++)
            vec(s, l, p, s->head_dim, L->win + (p % W) * s->entry_bytes, 0);
        if (!L->ratio)
            continue;
        L->n_ent = n / L->ratio;
        if (dsv4_kv_reserve(s, l, L->n_ent + 1, &err))
            return NULL;
        for (int64_t k = 0; k < L->n_ent; k++) {
            vec(s, l, 1000 + k, s->head_dim, L->ent + k * s->entry_bytes, 0);
            if (L->ratio == 4)
                vec(s, l, 1000 + k, s->index_head_dim, L->ikey + k * s->ikey_bytes, 1);
        }
        L->ckv[0] = 1.5f;    /* first stored k value; the scores stay -inf */
    }
    return s;
}

/* Write s and read it back (load_state = 1), as dsv4-kvdump --diff does. */
static int roundtrip(const dsv4_config *c, const dsv4_kvstate *s, dsv4_snap *out)
{
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_snap_ropts ro = DSV4_SNAP_ROPTS_INIT;
    static const uint8_t fp[32] = { 7 };
    uint32_t tok[64];
    float hid[32];
    FILE *tf = tmpfile();
    int fd = dup(fileno(tf)), rc;
    fclose(tf);
    for (int i = 0; i < 64; i++)
        tok[i] = (uint32_t)(i * 7 % 100);
    for (int i = 0; i < 32; i++)
        hid[i] = (float)i;
    if ((rc = dsv4_snap_write(fd, c, fp, s, tok, hid, NULL, NULL, &err)) == 0) {
        lseek(fd, 0, SEEK_SET);
        ro.want_eof = 1;
        rc = dsv4_snap_read(fd, &ro, out, NULL, &err);
    }
    if (rc)
        fprintf(stderr, "roundtrip: %s\n", err.msg);
    close(fd);
    return rc;
}

TEST(kinds_and_growth)
{
    dsv4_config c;
    dsv4_snap sn = DSV4_SNAP_INIT;
    small_config(&c);
    dsv4_kvstate *s = make_state(&c, 0, 10);
    CHECK(s && roundtrip(&c, s, &sn) == 0);
    if (!sn.kv)
        return;
    CHECK_STR(dsv4_kvinfo_kind(&sn.info, 0), "SWA");
    CHECK_STR(dsv4_kvinfo_kind(&sn.info, 1), "CSA");
    CHECK_STR(dsv4_kvinfo_kind(&sn.info, 2), "HCA");
    CHECK_STR(dsv4_kvinfo_kind(&sn.info, 3), "MTP");
    CHECK_EQ_INT(dsv4_kvinfo_positions(&sn.info, 0), 10);
    CHECK_EQ_INT(dsv4_kvinfo_positions(&sn.info, 3), 0);
    CHECK_EQ_INT(dsv4_kvinfo_window_slots(&sn.info, 1), W);
    CHECK_EQ_INT(dsv4_kvinfo_window_slots(&sn.info, 3), 0);
    CHECK_NEAR(dsv4_kvinfo_growth(&sn.info), dsv4_kv_bytes_per_token(s), 1e-12);
    dsv4_snap_release(&sn);
    dsv4_kv_free(s);

    /* Flash: 2 SWA, 21 CSA, 20 HCA layers (the order does not matter here) */
    dsv4_snap_info fl;
    memset(&fl, 0, sizeof fl);
    fl.n_layers = 43;
    fl.n_all = 44;
    for (int l = 2; l < 43; l++)
        fl.ratios[l] = l < 23 ? 4 : 128;
    fl.entry_bytes = 584;
    fl.ikey_bytes = 68;
    CHECK_NEAR(dsv4_kvinfo_growth(&fl), 3514.25, 1e-9);
    fl.entry_bytes = 1024;
    fl.ikey_bytes = 256;
    CHECK_NEAR(dsv4_kvinfo_growth(&fl), 6880.0, 1e-9);
}

TEST(identical_and_one_entry_changed)
{
    dsv4_config c;
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_snap a = DSV4_SNAP_INIT, b = DSV4_SNAP_INIT;
    dsv4_kvinfo_diff d;
    small_config(&c);
    dsv4_kvstate *sa = make_state(&c, 0, 10), *sb = make_state(&c, 0, 10);
    CHECK(sa && sb && roundtrip(&c, sa, &a) == 0 && roundtrip(&c, sb, &b) == 0);
    if (!a.kv || !b.kv)
        return;
    CHECK(dsv4_kvinfo_compare(&a, "a", &b, "b", &d, &err) == 0);
    CHECK(d.identical && d.same_model && d.same_hidden && d.token_diff == -1 && d.n_differ == 0);
    CHECK(d.hidden == 0);
    for (int l = 0; l < 4; l++)
        CHECK(d.layers[l].same_bytes);
    CHECK(d.layers[0].win == 0 && d.layers[0].win_n == W && d.layers[0].ent == -1 && d.layers[0].comp == -1);
    CHECK(d.layers[1].ent == 0 && d.layers[1].ent_n == 2 && d.layers[1].ikey == 0 && d.layers[1].comp == 0);
    CHECK(d.layers[2].ent_n == 0 && d.layers[2].ent == -1 && d.layers[2].ikey == -1 && d.layers[2].comp == 0);
    CHECK(d.layers[3].win_n == 0 && d.layers[3].win == -1);

    /* entry 1 of the CSA layer, dimension 3, one larger (exact in bf16) */
    float x[128];
    dsv4_kv_unpack(b.kv, b.kv->layers[1].ent + b.kv->entry_bytes, x);
    x[3] += 1.0f;
    dsv4_kv_pack(b.kv, x, b.kv->layers[1].ent + b.kv->entry_bytes);
    CHECK(dsv4_kvinfo_compare(&a, "a", &b, "b", &d, &err) == 0);
    CHECK(!d.identical && d.n_differ == 1 && !d.layers[1].same_bytes && d.layers[0].same_bytes);
    CHECK(d.layers[1].ent == 1.0 && d.layers[1].win == 0 && d.layers[1].ikey == 0);

    /* a compressor score row that is not -inf in one of them */
    b.kv->layers[2].csc[0] = 2.0f;
    CHECK(dsv4_kvinfo_compare(&a, "a", &b, "b", &d, &err) == 0);
    CHECK(isinf(d.layers[2].comp) && d.n_differ == 2);
    dsv4_snap_release(&a);
    dsv4_snap_release(&b);
    dsv4_kv_free(sa);
    dsv4_kv_free(sb);
}

TEST(different_lengths_line_up)
{
    dsv4_config c;
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_snap a = DSV4_SNAP_INIT, b = DSV4_SNAP_INIT;
    dsv4_kvinfo_diff d;
    small_config(&c);
    dsv4_kvstate *sa = make_state(&c, 0, 10), *sb = make_state(&c, 0, 13);
    CHECK(sa && sb && roundtrip(&c, sa, &a) == 0 && roundtrip(&c, sb, &b) == 0);
    if (!a.kv || !b.kv)
        return;
    CHECK(dsv4_kvinfo_compare(&a, "a", &b, "b", &d, &err) == 0);
    CHECK(!d.identical && d.token_diff == 10);
    /* a holds positions 2..9, b 5..12: 5..9 are compared, and equal */
    CHECK(d.layers[0].win_n == 5 && d.layers[0].win == 0 && !d.layers[0].same_bytes);
    /* 2 and 3 entries: the first 2 are compared */
    CHECK(d.layers[1].ent_n == 2 && d.layers[1].ent == 0 && d.layers[1].ikey == 0);
    dsv4_snap_release(&a);
    dsv4_snap_release(&b);
    dsv4_kv_free(sa);
    dsv4_kv_free(sb);
}

TEST(incomparable_refused)
{
    dsv4_config c;
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_snap a = DSV4_SNAP_INIT, b = DSV4_SNAP_INIT;
    dsv4_kvinfo_diff d;
    small_config(&c);
    dsv4_kvstate *sa = make_state(&c, 0, 10), *sb = make_state(&c, 1, 10);
    CHECK(sa && sb && roundtrip(&c, sa, &a) == 0 && roundtrip(&c, sb, &b) == 0);
    if (!a.kv || !b.kv)
        return;
    CHECK_EQ_INT(dsv4_kvinfo_compare(&a, "'a.kv'", &b, "'b.kv'", &d, &err), DSV4_E_MISMATCH);
    CHECK(strstr(err.msg, "'a.kv' and 'b.kv' cannot be compared") && strstr(err.msg, "bf16, compact"));
    b.info.compact = 0;
    b.info.window = 16;
    CHECK_EQ_INT(dsv4_kvinfo_compare(&a, "a", &b, "b", &d, &err), DSV4_E_MISMATCH);
    CHECK(strstr(err.msg, "dimensions") != NULL);
    dsv4_kvstate *keep = b.kv;
    b.kv = NULL;
    CHECK_EQ_INT(dsv4_kvinfo_compare(&a, "a", &b, "b", &d, &err), DSV4_E_INVALID);
    b.kv = keep;
    dsv4_snap_release(&a);
    dsv4_snap_release(&b);
    dsv4_kv_free(sa);
    dsv4_kv_free(sb);
}

TEST_MAIN(T(kinds_and_growth), T(identical_and_one_entry_changed), T(different_lengths_line_up),
          T(incomparable_refused))
