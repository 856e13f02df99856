/* fuzz_safetensors — the safetensors reader (lib/safetensors.h): one file's
 * header, and a folder with model.safetensors.index.json and its shards.
 *
 * Input, two modes:
 *  - not starting with '{': the bytes of one .safetensors file, opened
 *    through a memfd path;
 *  - starting with '{': a folder.  The input is split at "\n#SHARD\n": the
 *    first part is written as model.safetensors.index.json, the next ones
 *    as a.safetensors, b.safetensors, c.safetensors in a private temporary
 *    folder (tests/fuzz/mkseeds.c writes such a seed).
 * Each input is opened twice, without and with a report callback (strict
 * and checker mode).  On success every tensor is looked up by name and its
 * first and last byte read: views must lie inside the mapping. */
#include "fuzz.h"

#include "safetensors.h"

#include <sys/stat.h>

#define SEP "\n#SHARD\n"
static const char *const part_name[] = { "model.safetensors.index.json", "a.safetensors", "b.safetensors",
                                         "c.safetensors" };
#define NPARTS (sizeof part_name / sizeof part_name[0])

static char dir[256];

static void cleanup(void)
{
    char p[512];
    for (size_t i = 0; i < NPARTS; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, part_name[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* The private folder, made once per process. */
static int folder(void)
{
    if (dir[0])
        return 0;
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/dsv4-fuzz-st.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir)) {
        dir[0] = 0;
        return -1;
    }
    atexit(cleanup);
    return 0;
}

static void put(const char *name, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return;
    if (n)
        fwrite(p, 1, n, f);
    fclose(f);
}

static void report(void *ctx, const char *subject, const char *msg)
{
    FUZZ_ASSERT(subject && msg && msg[0], "empty report");
    ++*(int *)ctx;
}

static volatile uint8_t sink;

static void open_and_walk(const char *path, int with_report)
{
    dsv4_st *st = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    int reports = 0;
    int rc = dsv4_st_open(&st, path, with_report ? report : NULL, &reports, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (rc) {
        FUZZ_ASSERT(st == NULL, "handle returned with an error");
        return;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < dsv4_st_count(st); i++) {
        const dsv4_tensor *t = dsv4_st_tensor(st, i);
        FUZZ_ASSERT(t && t->name && dsv4_st_find(st, t->name) != NULL, "tensor %zu not found by name", i);
        FUZZ_ASSERT(dsv4_st_file_of(st, i) != NULL, "no file");
        FUZZ_ASSERT((uint64_t)dsv4_tensor_numel(t) * dsv4_dtype_size(t->dtype) == t->nbytes, "size of %s",
                    t->name);
        if (i)
            FUZZ_ASSERT(strcmp(dsv4_st_tensor(st, i - 1)->name, t->name) < 0, "not sorted");
        if (t->nbytes) {
            sink ^= ((const uint8_t *)t->data)[0];
            sink ^= ((const uint8_t *)t->data)[t->nbytes - 1];
        }
        total += t->nbytes;
    }
    FUZZ_ASSERT(total == dsv4_st_total_bytes(st), "total bytes");
    FUZZ_ASSERT(dsv4_st_tensor(st, dsv4_st_count(st)) == NULL, "past the end");
    (void)dsv4_st_missing_count(st);
    dsv4_st_close(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size && data[0] == '{') {
        const uint8_t *p = data, *end = data + size;
        size_t k = 0;
        if (folder())
            return 0;
        for (size_t i = 0; i < NPARTS; i++) {
            char path[512];
            snprintf(path, sizeof path, "%s/%s", dir, part_name[i]);
            unlink(path);
        }
        while (k < NPARTS) {
            const uint8_t *q = memmem(p, (size_t)(end - p), SEP, sizeof SEP - 1);
            const uint8_t *e = q ? q : end;
            put(part_name[k++], p, (size_t)(e - p));
            if (!q)
                break;
            p = q + sizeof SEP - 1;
        }
        open_and_walk(dir, 0);
        open_and_walk(dir, 1);
    } else {
        char path[64];
        int fd = fuzz_memfd(data, size);
        if (fd < 0)
            return 0;
        fuzz_fd_path(path, sizeof path, fd);
        open_and_walk(path, 0);
        open_and_walk(path, 1);
        close(fd);
    }
    return 0;
}
