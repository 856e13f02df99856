/* mkseeds — small seed inputs for the fuzz targets that no fixture gives
 * in a small enough form (run by tests/fuzz/seeds.sh):
 *
 *   mkseeds OUTDIR CONFIG_JSON
 *
 * writes into OUTDIR
 *   tokenizer.json      a tokenizer.json of the DeepSeek pipeline with the 256
 *                       byte-level tokens, a few merges and added tokens
 *                       (as tests/unit/test_tok.c builds it)
 *   model.dsv4          a .dsv4 file with CONFIG_JSON, that tokenizer and
 *                       three tiny tensors (about 20 KB instead of MBs)
 *   model-q.dsv4        the same with a Q2 tensor (incompat_features bit 0)
 *   single.safetensors  a safetensors file with three tensors
 *   index.seed          an input of fuzz_safetensors' folder mode: an index
 *                       JSON and two shards (see fuzz_safetensors.c)
 * Not a test: it exits 1 with a message on any failure. */
#include "buf.h"
#include "json.h"
#include "model.h"
#include "safetensors.h"
#include "tok_impl.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEP "\n#SHARD\n"   /* fuzz_safetensors.c's part separator */

static const char *outdir;

static void die(const char *what, const dsv4_err *err)
{
    fprintf(stderr, "mkseeds: %s%s%s\n", what, err ? ": " : "", err ? err->msg : "");
    exit(1);
}

static char *path_of(const char *name)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/%s", outdir, name);
    return p;
}

static void put_file(const char *name, const void *data, size_t n)
{
    FILE *f = fopen(path_of(name), "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f))
        die(name, NULL);
}

static char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    dsv4_buf b = DSV4_BUF_INIT;
    char tmp[65536];
    size_t k;
    if (!f)
        die(path, NULL);
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0)
        dsv4_buf_append(&b, tmp, k);
    fclose(f);
    return dsv4_buf_detach(&b, n);
}

/* The tokenizer.json of tests/unit/test_tok.c: ids 0..255 the byte-level
 * characters in byte order, merges from 256, added tokens at 300.. */
static char *tokenizer_json(void)
{
    static const char *const merged[][3] = {
        { "\xc4\xa0", "t", "\xc4\xa0t" }, { "h", "e", "he" }, { "\xc4\xa0t", "he", "\xc4\xa0the" },
        { "a", "a", "aa" }, { "\xc4\xa0", "\xc4\xa0", "\xc4\xa0\xc4\xa0" },
    };
    const unsigned nm = sizeof merged / sizeof merged[0];
    dsv4_buf b = DSV4_BUF_INIT;
    unsigned k = 0;
    dsv4_buf_puts(&b, "{\"version\":\"1.0\",\"added_tokens\":["
                      "{\"id\":300,\"content\":\"<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>\","
                      "\"special\":true,\"normalized\":false},"
                      "{\"id\":301,\"content\":\"<\xef\xbd\x9cUser\xef\xbd\x9c>\",\"special\":false,\"normalized\":false},"
                      "{\"id\":302,\"content\":\"<think>\",\"special\":false,\"normalized\":true},"
                      "{\"id\":303,\"content\":\"<think>x\",\"special\":false,\"normalized\":false}],"
                      "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[]},"
                      "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[");
    for (int i = 0; i < 3; i++) {
        dsv4_buf_puts(&b, "{\"type\":\"Split\",\"pattern\":{\"Regex\":");
        dsv4_json_write_str(&b, dsv4_tok_pre_regex[i], strlen(dsv4_tok_pre_regex[i]));
        dsv4_buf_puts(&b, "},\"behavior\":\"Isolated\",\"invert\":false},");
    }
    dsv4_buf_puts(&b, "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]},"
                      "\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\"},"
                      "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"vocab\":{");
    for (unsigned c = 0; c < 256; c++) {
        int keep = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174;
        unsigned cp = keep ? c : 256 + k++;
        char s[2];
        size_t n = cp < 0x80 ? 1 : 2;
        if (cp < 0x80) {
            s[0] = (char)cp;
        } else {
            s[0] = (char)(0xC0 | cp >> 6);
            s[1] = (char)(0x80 | (cp & 63));
        }
        dsv4_json_write_str(&b, s, n);
        dsv4_buf_printf(&b, ":%u,", c);
    }
    for (unsigned i = 0; i < nm; i++) {
        dsv4_json_write_str(&b, merged[i][2], strlen(merged[i][2]));
        dsv4_buf_printf(&b, ":%u%s", 256 + i, i + 1 < nm ? "," : "");
    }
    dsv4_buf_puts(&b, "},\"merges\":[");
    for (unsigned i = 0; i < nm; i++) {
        if (i == 1) {           /* both spellings of a merge */
            dsv4_buf_puts(&b, "[\"h\",\"e\"],");
            continue;
        }
        dsv4_buf_printf(&b, "\"%s %s\"%s", merged[i][0], merged[i][1], i + 1 < nm ? "," : "");
    }
    dsv4_buf_puts(&b, "]}}");
    return dsv4_buf_detach(&b, NULL);
}

static void model_file(const char *name, const char *cfg, size_t cfg_len, const char *tok, int q2)
{
    static const uint16_t bf[6] = { 0x3f80, 0x4000, 0xbf80, 0, 0x7f80, 0x0001 };
    static const float f32[4] = { 1, -2, 0.5f, 3 };
    static const uint8_t e4m3[8] = { 0x38, 0x40, 0xb8, 0, 0x7e, 1, 2, 3 };
    static const uint8_t q2d[4] = { 0x1b, 0xe4, 0, 0xff }, qs[1] = { 0x40 };
    dsv4_tensor t[5] = {
        { "embed.weight", DSV4_DT_BF16, 2, { 2, 3 }, bf, sizeof bf },
        { "norm.weight", DSV4_DT_F32, 1, { 4 }, f32, sizeof f32 },
        { "layers.0.attn.wq_a.weight", DSV4_DT_F8_E4M3, 2, { 2, 4 }, e4m3, sizeof e4m3 },
        { "layers.0.ffn.w1.weight", DSV4_DT_Q2, 2, { 1, 4 }, q2d, sizeof q2d },
        { "layers.0.ffn.w1.weight.scale", DSV4_DT_QS8, 2, { 1, 1 }, qs, sizeof qs },
    };
    const dsv4_tensor *v[5] = { &t[0], &t[1], &t[2], &t[3], &t[4] };
    dsv4_blob blobs[3] = {
        { "config.json", cfg, cfg_len },
        { "tokenizer.json", tok, strlen(tok) },
        { "generation_config.json", "{\"eos_token_id\": 1}", 19 },
    };
    uint8_t fp[DSV4_FINGERPRINT_BYTES];
    dsv4_err err = DSV4_ERR_INIT;
    int fd = open(path_of(name), O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die(name, NULL);
    if (dsv4_model_write(fd, v, q2 ? 5 : 3, blobs, 3, NULL, NULL, NULL, NULL, fp, &err) || close(fd))
        die(name, &err);
}

/* A safetensors file's bytes with tensors named prefix + "a", "b", "c". */
static char *st_bytes(const char *prefix, size_t *n)
{
    static const uint8_t data[64] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
    static const int64_t sa[2] = { 2, 2 }, sb[1] = { 3 }, sc[3] = { 1, 2, 2 };
    dsv4_stw *w = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    char nm[3][64];
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    for (int i = 0; i < 3; i++)
        snprintf(nm[i], sizeof nm[i], "%s%c", prefix, 'a' + i);
    if (!f || dsv4_stw_new(&w, &err) || dsv4_stw_add(w, nm[0], DSV4_DT_BF16, 2, sa, &err) ||
        dsv4_stw_add(w, nm[1], DSV4_DT_F32, 1, sb, &err) || dsv4_stw_add(w, nm[2], DSV4_DT_U8, 3, sc, &err) ||
        dsv4_stw_begin(w, f, &err) || dsv4_stw_write(w, data, 8, &err) || dsv4_stw_write(w, data, 12, &err) ||
        dsv4_stw_write(w, data, 4, &err) || dsv4_stw_end(w, &err))
        die("safetensors writer", &err);
    dsv4_stw_free(w);
    fclose(f);
    *n = len;
    return buf;
}

int main(int argc, char **argv)
{
    size_t cfg_len, n1, n2;
    char *cfg, *tok, *s1, *s2;
    dsv4_buf ix = DSV4_BUF_INIT;
    if (argc != 3) {
        fprintf(stderr, "usage: mkseeds OUTDIR CONFIG_JSON\n");
        return 2;
    }
    outdir = argv[1];
    cfg = read_file(argv[2], &cfg_len);
    tok = tokenizer_json();
    put_file("tokenizer.json", tok, strlen(tok));
    model_file("model.dsv4", cfg, cfg_len, tok, 0);
    model_file("model-q.dsv4", cfg, cfg_len, tok, 1);

    s1 = st_bytes("", &n1);
    put_file("single.safetensors", s1, n1);
    free(s1);
    s1 = st_bytes("x.", &n1);
    s2 = st_bytes("y.", &n2);
    dsv4_buf_puts(&ix, "{\"metadata\": {\"total_size\": 48}, \"weight_map\": {"
                       "\"x.a\": \"a.safetensors\", \"x.b\": \"a.safetensors\", \"x.c\": \"a.safetensors\", "
                       "\"y.a\": \"b.safetensors\", \"y.b\": \"b.safetensors\", \"y.c\": \"b.safetensors\"}}");
    dsv4_buf_puts(&ix, SEP);
    dsv4_buf_append(&ix, s1, n1);
    dsv4_buf_puts(&ix, SEP);
    dsv4_buf_append(&ix, s2, n2);
    put_file("index.seed", ix.data, ix.len);
    dsv4_buf_release(&ix);
    free(s1);
    free(s2);
    free(cfg);
    free(tok);
    return 0;
}
