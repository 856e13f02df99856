/* fuzz_snap — the KV snapshot reader (lib/snap.h dsv4_snap_read): header,
 * layer records, chunk headers and sizes, zstd frames, trailer; with
 * load_state 0 (verify and measure) and 1 (build the dsv4_kvstate), with and
 * without the model's fingerprint and config; then, for a snapshot that
 * loads, dsv4_kvinfo_compare and a write/read round trip.
 *
 * Input: a snapshot stream, read from a memfd.  Each input is read as given,
 * then with its BLAKE2b sums and trailer repaired (fixup()), so mutations of
 * the header fields and chunk sizes reach the code behind the checksums.
 * Invariants: every error has a message; load_state 0 and 1 agree on what is
 * valid; a loaded state written back and read again is the same state. */
#include "fuzz.h"

#include "buf.h"
#include "kvinfo.h"
#include "snap.h"

#include <sodium.h>
#include <zstd.h>

#define MAX_RAW (1u << 24)   /* frames are decompressed for the fixup up to this size */

/* Repair the header hash, each chunk's two hashes (frame; raw bytes when
 * the frame decompresses to the declared size) and the trailer's count,
 * length and stream hash, walking the chunks leniently. */
static void fixup(uint8_t *d, size_t size)
{
    crypto_generichash_state hs;
    uint64_t pos, chunks = 0;
    uint32_t hb;
    if (size < 20 || memcmp(d, DSV4_SNAP_MAGIC, 8))
        return;
    hb = dsv4_le32_get(d + 16);
    if (hb < 64 || hb > size)
        return;
    crypto_generichash(d + hb - 32, 32, d, hb - 32, NULL, 0);
    crypto_generichash_init(&hs, NULL, 0, 32);
    crypto_generichash_update(&hs, d, hb);
    for (pos = hb; size - pos >= DSV4_SNAP_CHUNK_BYTES && memcmp(d + pos, DSV4_SNAP_TRAILER_MAGIC, 8);) {
        uint8_t *ch = d + pos;
        uint64_t n = dsv4_le64_get(ch + 16), fb = dsv4_le64_get(ch + 24);
        if (fb > size - pos - DSV4_SNAP_CHUNK_BYTES)
            break;
        crypto_generichash(ch + 64, 32, ch + DSV4_SNAP_CHUNK_BYTES, (size_t)fb, NULL, 0);
        if (n <= MAX_RAW) {
            uint8_t *raw = malloc((size_t)n + 1);
            if (raw) {
                size_t got = ZSTD_decompress(raw, (size_t)n + 1, ch + DSV4_SNAP_CHUNK_BYTES, (size_t)fb);
                if (!ZSTD_isError(got) && got == n)
                    crypto_generichash(ch + 32, 32, raw, (size_t)n, NULL, 0);
                free(raw);
            }
        }
        crypto_generichash_update(&hs, ch, DSV4_SNAP_CHUNK_BYTES);
        pos += DSV4_SNAP_CHUNK_BYTES + fb;
        chunks++;
    }
    if (size - pos >= DSV4_SNAP_TRAILER_BYTES && !memcmp(d + pos, DSV4_SNAP_TRAILER_MAGIC, 8)) {
        dsv4_le64_put(d + pos + 8, chunks);
        dsv4_le64_put(d + pos + 16, pos);
        crypto_generichash_final(&hs, d + pos + 24, 32);
    }
}

/* Read data with ropts; returns the reader's rc, *out filled on success. */
static int read_snap(const uint8_t *data, size_t size, const dsv4_snap_ropts *o, dsv4_snap *out)
{
    dsv4_snap_stats st;
    dsv4_err err = DSV4_ERR_INIT;
    int fd = fuzz_memfd(data, size), rc;
    if (fd < 0)
        return 1;
    rc = dsv4_snap_read(fd, o, out, &st, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (rc)
        FUZZ_ASSERT(!out->kv && !out->tokens && !out->hidden, "state left after an error");
    else
        FUZZ_ASSERT(st.n_sections == 2 + out->info.n_all, "%d sections", st.n_sections);
    close(fd);
    return rc;
}

/* The config a snapshot's header implies, with what dsv4_snap_write and the
 * reader's limits also look at. */
static void config_of(const dsv4_snap_info *in, dsv4_config *c)
{
    dsv4_snap_info_config(in, c);
    c->n_mtp_layers = in->n_all - in->n_layers;
    c->max_position = in->n_tokens;
}

/* A loaded snapshot written back and read again must be the same. */
static void roundtrip(const dsv4_snap *a)
{
    dsv4_config c;
    dsv4_snap b = DSV4_SNAP_INIT;
    dsv4_snap_ropts o = DSV4_SNAP_ROPTS_INIT;
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_kvinfo_diff *diff = malloc(sizeof *diff);
    int fd = memfd_create("fuzz-out", MFD_CLOEXEC), rc;
    if (fd < 0 || !diff) {
        free(diff);
        if (fd >= 0)
            close(fd);
        return;
    }
    config_of(&a->info, &c);
    rc = dsv4_snap_write(fd, &c, a->info.fingerprint, a->kv, a->tokens, a->hidden, NULL, NULL, &err);
    FUZZ_ASSERT(rc == 0, "write back: %s", err.msg);
    lseek(fd, 0, SEEK_SET);
    o.config = &c;
    o.fingerprint = a->info.fingerprint;
    o.want_eof = 1;
    rc = dsv4_snap_read(fd, &o, &b, NULL, &err);
    FUZZ_ASSERT(rc == 0, "read back: %s", err.msg);
    FUZZ_ASSERT(dsv4_kv_equal(a->kv, b.kv), "state differs after the round trip");
    FUZZ_ASSERT(b.info.n_tokens == a->info.n_tokens &&
                (!a->info.n_tokens || !memcmp(a->tokens, b.tokens, (size_t)a->info.n_tokens * 4)), "tokens");
    rc = dsv4_kvinfo_compare(a, "a", &b, "b", diff, &err);
    FUZZ_ASSERT(rc == 0 && diff->identical, "kvinfo_compare: rc %d %s", rc, err.msg);
    for (int l = 0; l < a->info.n_all; l++) {
        (void)dsv4_kvinfo_kind(&a->info, l);
        (void)dsv4_kvinfo_positions(&a->info, l);
        (void)dsv4_kvinfo_window_slots(&a->info, l);
    }
    (void)dsv4_kvinfo_growth(&a->info);
    dsv4_snap_release(&b);
    free(diff);
    close(fd);
}

static void run(const uint8_t *data, size_t size)
{
    dsv4_snap s0 = DSV4_SNAP_INIT, s1 = DSV4_SNAP_INIT;
    dsv4_snap_ropts o = DSV4_SNAP_ROPTS_INIT;
    int rc0, rc1;
    o.load_state = 0;
    rc0 = read_snap(data, size, &o, &s0);
    o.load_state = 1;
    o.want_eof = 1;
    rc1 = read_snap(data, size, &o, &s1);
    /* load_state 0 checks the same things, and trailing bytes are allowed */
    FUZZ_ASSERT(rc1 || !rc0, "load_state 1 accepts what 0 refuses (%d)", rc0);
    if (!rc1) {
        dsv4_snap s2 = DSV4_SNAP_INIT;
        dsv4_config c;
        config_of(&s1.info, &c);
        /* with the model's fingerprint and config: accepted; one position
         * fewer allowed than it holds: refused */
        o.config = &c;
        o.fingerprint = s1.info.fingerprint;
        FUZZ_ASSERT(read_snap(data, size, &o, &s2) == 0, "refused with its own config");
        dsv4_snap_release(&s2);
        if (c.max_position > 0) {
            c.max_position--;
            FUZZ_ASSERT(read_snap(data, size, &o, &s2) == DSV4_E_RANGE, "max_position not checked");
        }
        roundtrip(&s1);
    }
    dsv4_snap_release(&s0);
    dsv4_snap_release(&s1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *fixed;
    run(data, size);
    if (!(fixed = malloc(size ? size : 1)))
        return 0;
    memcpy(fixed, data, size);
    fixup(fixed, size);
    if (memcmp(fixed, data, size))
        run(fixed, size);
    free(fixed);
    return 0;
}
