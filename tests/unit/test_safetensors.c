/* safetensors reader/writer on valid and hostile input. */
#include "test.h"
#include "buf.h"
#include "safetensors.h"

#include <sys/stat.h>
#include <unistd.h>

static char dir[512];

static const char *path_of(const char *name)
{
    static char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

/* A file made of an explicit header string + n data bytes. */
static void raw_file(const char *name, const char *header, uint64_t hlen_override, size_t ndata)
{
    FILE *f = fopen(path_of(name), "wb");
    unsigned char len[8];
    size_t hl = strlen(header);
    dsv4_le64_put(len, hlen_override ? hlen_override : hl);
    fwrite(len, 1, 8, f);
    fwrite(header, 1, hl, f);
    for (size_t i = 0; i < ndata; i++)
        fputc((int)(i & 0xff), f);
    fclose(f);
}

static int open_msg(const char *name, const char *needle)
{
    dsv4_st *st = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    int rc = dsv4_st_open(&st, path_of(name), NULL, NULL, &err);
    dsv4_st_close(st);
    if (rc == 0 || !strstr(err.msg, needle)) {
        fprintf(stderr, "  %s: rc %d msg '%s' (wanted '%s')\n", name, rc, err.msg, needle);
        return 0;
    }
    return 1;
}

TEST(write_and_read)
{
    dsv4_stw *w;
    dsv4_st *st;
    dsv4_err err = DSV4_ERR_INIT;
    FILE *f = fopen(path_of("ok.safetensors"), "wb");
    int64_t s1[2] = { 2, 3 }, s2[1] = { 4 };
    float a[6] = { 1, 2, 3, 4, 5, 6 };
    uint16_t b[4] = { 0x3f80, 0x4000, 0xbf80, 0 };
    const dsv4_tensor *t;
    CHECK(dsv4_stw_new(&w, &err) == 0);
    CHECK(dsv4_stw_add(w, "a", DSV4_DT_F32, 2, s1, &err) == 0);
    CHECK(dsv4_stw_add(w, "b.weight", DSV4_DT_BF16, 1, s2, &err) == 0);
    CHECK(dsv4_stw_begin(w, f, &err) == 0);
    CHECK(dsv4_stw_write(w, a, sizeof a, &err) == 0);
    CHECK(dsv4_stw_write(w, b, 4, &err) == 0);
    CHECK(dsv4_stw_end(w, &err) != 0);     /* 4 bytes still missing */
    CHECK(dsv4_stw_write(w, b + 2, 4, &err) == 0);
    CHECK(dsv4_stw_end(w, &err) == 0);
    CHECK(dsv4_stw_write(w, b, 1, &err) != 0);   /* more than declared */
    dsv4_stw_free(w);
    fclose(f);
    CHECK(dsv4_st_open(&st, path_of("ok.safetensors"), NULL, NULL, &err) == 0);
    CHECK_EQ_INT(dsv4_st_count(st), 2);
    t = dsv4_st_find(st, "a");
    CHECK(t && t->dtype == DSV4_DT_F32 && t->ndim == 2 && t->shape[1] == 3 && t->nbytes == 24);
    CHECK(t && !memcmp(t->data, a, 24));
    t = dsv4_st_find(st, "b.weight");
    CHECK(t && t->dtype == DSV4_DT_BF16 && !memcmp(t->data, b, 8));
    CHECK(dsv4_st_find(st, "c") == NULL);
    dsv4_st_close(st);
}

TEST(hostile_headers)
{
    raw_file("short", "", 0, 0);
    truncate(path_of("short"), 5);
    CHECK(open_msg("short", "too short"));
    raw_file("huge", "{}", 200000000, 0);
    CHECK(open_msg("huge", "100 MB"));
    raw_file("beyond", "{}", 5000, 0);
    CHECK(open_msg("beyond", "header length 5000"));
    raw_file("notjson", "{\"a\": [1,}", 0, 0);
    CHECK(open_msg("notjson", "bad header JSON"));
    raw_file("array", "[1, 2]  ", 0, 0);
    CHECK(open_msg("array", "not a JSON object"));
    raw_file("badutf8", "{\"\xff\xfe\": 1}", 0, 0);
    CHECK(open_msg("badutf8", "bad header JSON"));
    {
        char deep[3000];
        size_t o = 0;
        o += (size_t)sprintf(deep + o, "{\"x\":");
        for (int i = 0; i < 1000; i++) deep[o++] = '[';
        for (int i = 0; i < 1000; i++) deep[o++] = ']';
        deep[o++] = '}';
        deep[o] = 0;
        raw_file("deep", deep, 0, 0);
        CHECK(open_msg("deep", "bad header JSON"));
    }
    raw_file("dtype", "{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", 0, 1);
    CHECK(open_msg("dtype", "unknown dtype"));
    raw_file("mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 0, 4);
    CHECK(open_msg("mismatch", "shape x dtype needs 8"));
    raw_file("reversed", "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 0, 4);
    CHECK(open_msg("reversed", "reversed"));
    raw_file("past", "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", 0, 4);
    CHECK(open_msg("past", "truncated"));
    raw_file("overlap", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                        "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 0, 6);
    CHECK(open_msg("overlap", "overlaps"));
    raw_file("hole", "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", 0, 4);
    CHECK(open_msg("hole", "unindexed"));
    raw_file("negshape", "{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, 0);
    CHECK(open_msg("negshape", "bad dimension"));
    raw_file("rank", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,1]}}", 0, 1);
    CHECK(open_msg("rank", "dimensions"));
    raw_file("bigshape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0, 0);
    CHECK(open_msg("bigshape", "shape"));
    raw_file("missingkeys", "{\"a\":{\"dtype\":\"U8\"}}", 0, 0);
    CHECK(open_msg("missingkeys", "lacks"));
    raw_file("dup", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                    "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 0, 2);
    CHECK(open_msg("dup", "duplicate"));
}

static void problems_cb(void *ctx, const char *subject, const char *msg)
{
    dsv4_buf *b = ctx;
    dsv4_buf_printf(b, "%s: %s\n", subject, msg);
}

TEST(sharded_index)
{
    char sub[600];
    FILE *f;
    dsv4_st *st;
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_buf probs = DSV4_BUF_INIT;
    snprintf(sub, sizeof sub, "%s/ck", dir);
    mkdir(sub, 0755);
    raw_file("ck/s1.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 0, 2);
    raw_file("ck/s2.safetensors", "{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                                  "\"extra\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}", 0, 3);
    f = fopen(path_of("ck/model.safetensors.index.json"), "w");
    fputs("{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s2.safetensors\", \"c\": \"s2.safetensors\", "
          "\"d\": \"s3.safetensors\"}}", f);
    fclose(f);
    CHECK(dsv4_st_open(&st, sub, NULL, NULL, &err) != 0);
    CHECK(strstr(err.msg, "s3.safetensors") != NULL);
    CHECK(dsv4_st_open(&st, sub, problems_cb, &probs, &err) == 0);
    CHECK(strstr(probs.data, "s3.safetensors: shard listed in the index does not exist") != NULL);
    CHECK(strstr(probs.data, "c: listed in the index (shard s2.safetensors) but not found") != NULL);
    CHECK(strstr(probs.data, "extra: in shard") != NULL);
    CHECK_EQ_INT(dsv4_st_count(st), 3);
    CHECK(dsv4_st_find(st, "b") != NULL);
    dsv4_st_close(st);
    dsv4_buf_release(&probs);
    f = fopen(path_of("ck/model.safetensors.index.json"), "w");
    fputs("{\"weight_map\": {\"a\": \"../s1.safetensors\"}}", f);
    fclose(f);
    CHECK(dsv4_st_open(&st, sub, NULL, NULL, &err) != 0 && strstr(err.msg, "not a file name"));
}

TEST(fixture_shards)
{
    char p[1024];
    dsv4_st *st;
    dsv4_err err = DSV4_ERR_INIT;
    snprintf(p, sizeof p, "%s/tiny-v4", test_fixtures());
    CHECK(dsv4_st_open(&st, p, NULL, NULL, &err) == 0);
    CHECK_EQ_INT(dsv4_st_count(st), 932);
    CHECK(dsv4_st_find(st, "layers.2.attn.compressor.ape") != NULL);
    dsv4_st_close(st);
}

int main(void);
static void setup(void) __attribute__((constructor));
static void setup(void)
{
    snprintf(dir, sizeof dir, "tests/out/unit-safetensors");
    mkdir("tests/out", 0755);
    mkdir(dir, 0755);
}

/* A file with no tensors (or none readable) leaves the entry array NULL:
 * found by fuzz_safetensors, where UBSan stopped at qsort(NULL, 0, ...). */
TEST(no_tensors)
{
    dsv4_st *st = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    raw_file("empty-header", "{}", 0, 0);
    CHECK_EQ_INT(dsv4_st_open(&st, path_of("empty-header"), NULL, NULL, &err), 0);
    if (st) {
        CHECK_EQ_INT(dsv4_st_count(st), 0);
        CHECK(dsv4_st_find(st, "a") == NULL);
        CHECK(dsv4_st_tensor(st, 0) == NULL);
    }
    dsv4_st_close(st);
    st = NULL;
    raw_file("zero", "", 0, 0);
    truncate(path_of("zero"), 0);
    CHECK(open_msg("zero", "too short"));
}

/* Found by fuzz_safetensors: in report mode a repeated name was reported
 * but both copies were kept, so names were not unique (dsv4_convert then
 * left views uninitialized).  Now every copy is left out. */
TEST(duplicates_left_out)
{
    char sub[600];
    FILE *f;
    dsv4_st *st = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    dsv4_buf probs = DSV4_BUF_INIT;
    raw_file("dup2", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                     "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]},"
                     "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}", 0, 3);
    CHECK(dsv4_st_open(&st, path_of("dup2"), problems_cb, &probs, &err) == 0);
    CHECK(probs.data && strstr(probs.data, "a: duplicate tensor name") != NULL);
    if (st) {
        CHECK_EQ_INT(dsv4_st_count(st), 1);
        CHECK(dsv4_st_find(st, "a") == NULL && dsv4_st_find(st, "b") != NULL);
    }
    dsv4_st_close(st);
    st = NULL;
    dsv4_buf_release(&probs);

    snprintf(sub, sizeof sub, "%s/ck2", dir);
    mkdir(sub, 0755);
    raw_file("ck2/s1.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 0, 2);
    raw_file("ck2/s2.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                                   "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}", 0, 3);
    f = fopen(path_of("ck2/model.safetensors.index.json"), "w");
    fputs("{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s2.safetensors\"}}", f);
    fclose(f);
    CHECK(dsv4_st_open(&st, sub, NULL, NULL, &err) != 0);
    CHECK(dsv4_st_open(&st, sub, problems_cb, &probs, &err) == 0);
    CHECK(probs.data && strstr(probs.data, "a: present in more than one shard") != NULL);
    if (st) {
        CHECK_EQ_INT(dsv4_st_count(st), 1);
        CHECK(dsv4_st_find(st, "a") == NULL && dsv4_st_find(st, "b") != NULL);
    }
    dsv4_st_close(st);
    dsv4_buf_release(&probs);
}

TEST_MAIN(T(write_and_read), T(hostile_headers), T(sharded_index), T(fixture_shards), T(no_tensors), T(duplicates_left_out))
