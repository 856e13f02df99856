/* dsv4-tcorrupt — damage files on purpose for the CLI tests.
 *
 *   dsv4-tcorrupt offset FILE.dsv4 TENSOR   print "OFFSET NBYTES": where the
 *                                           tensor's data lies in the file
 *   dsv4-tcorrupt stoffset FILE.safetensors TENSOR   the same for a
 *                                           safetensors file
 *   dsv4-tcorrupt flip FILE OFFSET [MASK]   xor the byte at OFFSET with MASK
 *                                           (default 0x01)
 *   dsv4-tcorrupt put8 FILE OFFSET VALUE    write one byte
 *   dsv4-tcorrupt put16 FILE OFFSET VALUE   write VALUE as a little-endian u16
 *   dsv4-tcorrupt put64 FILE OFFSET VALUE   write VALUE as a little-endian u64
 *   dsv4-tcorrupt rehash FILE.dsv4          recompute meta_hash (if the
 *                                           metadata region lies in the file)
 *                                           and header_hash after edits, as a
 *                                           hostile writer would
 *
 * `offset` uses only lib/model.h: the data views all point into one mapping
 * and the file ends where the last tensor's data ends, so a view's distance
 * from that end gives its file offset.  `stoffset` likewise: a safetensors
 * data buffer has no holes, so the lowest view is at 8 + header length.
 * Either answer is checked by reading the bytes back, so a change of layout
 * makes this tool fail, not lie. */
#include "buf.h"
#include "model.h"
#include "safetensors.h"
#include "version.h"
#include "tool.h"

#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Print "OFF NBYTES" after checking that the file holds t's bytes at off. */
static void print_checked(const char *path, const dsv4_tensor *t, uint64_t off)
{
    uint8_t *buf;
    int fd;
    if ((fd = open(path, O_RDONLY)) < 0 || !(buf = malloc((size_t)t->nbytes)))
        die("cannot read '%s'", path);
    if (pread(fd, buf, (size_t)t->nbytes, (off_t)off) != (ssize_t)t->nbytes || memcmp(buf, t->data, (size_t)t->nbytes))
        die("'%s': offset %llu computed for '%s' does not hold its data (layout changed?)", path,
            (unsigned long long)off, t->name);
    close(fd);
    free(buf);
    printf("%llu %llu\n", (unsigned long long)off, (unsigned long long)t->nbytes);
}

static int st_offset_of(const char *path, const char *name)
{
    dsv4_st *st;
    dsv4_err err = DSV4_ERR_INIT;
    const dsv4_tensor *t;
    const uint8_t *lo = NULL;
    uint8_t len[8];
    FILE *f;
    if (dsv4_st_open(&st, path, NULL, NULL, &err))
        die("%s", err.msg);
    if (!(t = dsv4_st_find(st, name)) || !t->nbytes)
        die("'%s': no tensor '%s' with data", path, name);
    for (size_t i = 0; i < dsv4_st_count(st); i++) {
        const dsv4_tensor *u = dsv4_st_tensor(st, i);
        if (u->nbytes && (!lo || (const uint8_t *)u->data < lo))
            lo = u->data;
    }
    if (!(f = fopen(path, "rb")) || fread(len, 1, 8, f) != 8)
        die("cannot read '%s'", path);
    fclose(f);
    print_checked(path, t, 8 + dsv4_le64_get(len) + (uint64_t)((const uint8_t *)t->data - lo));
    dsv4_st_close(st);
    return 0;
}

static int offset_of(const char *path, const char *name)
{
    dsv4_model *m;
    dsv4_err err = DSV4_ERR_INIT;
    const dsv4_tensor *t;
    const uint8_t *end = NULL;
    if (dsv4_model_open(&m, path, &err))
        die("%s", err.msg);
    if (!(t = dsv4_model_find(m, name)))
        die("'%s': no tensor '%s'", path, name);
    if (!t->nbytes)
        die("'%s': tensor '%s' is empty", path, name);
    for (size_t i = 0; i < dsv4_model_count(m); i++) {
        const dsv4_tensor *u = dsv4_model_tensor(m, i);
        const uint8_t *e = (const uint8_t *)u->data + u->nbytes;
        if (!end || e > end)
            end = e;
    }
    print_checked(path, t, dsv4_model_file_bytes(m) - (uint64_t)(end - (const uint8_t *)t->data));
    dsv4_model_close(m);
    return 0;
}

static int put_bytes(const char *path, const char *offs, const uint8_t *val, const uint8_t *mask, size_t n)
{
    char *end;
    unsigned long long off = strtoull(offs, &end, 0);
    uint8_t b[8];
    int fd;
    if (*end || n > sizeof b)
        die("bad offset '%s'", offs);
    if ((fd = open(path, O_RDWR)) < 0)
        die("cannot open '%s'", path);
    if (pread(fd, b, n, (off_t)off) != (ssize_t)n)
        die("'%s': offset %llu is past the end", path, off);
    for (size_t i = 0; i < n; i++)
        b[i] = mask ? (uint8_t)(b[i] ^ mask[i]) : val[i];
    if (pwrite(fd, b, n, (off_t)off) != (ssize_t)n || close(fd))
        die("cannot write '%s'", path);
    return 0;
}

/* dsv4-model(5): meta_offset at 40, meta_bytes at 48, meta_hash at 136,
 * header_hash (of bytes 0..223) at 224. */
static int rehash(const char *path)
{
    FILE *f = fopen(path, "r+b");
    uint8_t *b;
    long n;
    uint64_t mo, mb;
    if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 256 || fseek(f, 0, SEEK_SET) ||
        !(b = malloc((size_t)n)) || fread(b, 1, (size_t)n, f) != (size_t)n)
        die("cannot read '%s' (or shorter than a header)", path);
    mo = dsv4_le64_get(b + 40);
    mb = dsv4_le64_get(b + 48);
    if (mo <= (uint64_t)n && mb <= (uint64_t)n - mo)
        crypto_generichash(b + 136, 32, b + mo, (size_t)mb, NULL, 0);
    crypto_generichash(b + 224, 32, b, 224, NULL, 0);
    if (fseek(f, 0, SEEK_SET) || fwrite(b, 1, 256, f) != 256 || fclose(f))
        die("cannot write '%s'", path);
    free(b);
    return 0;
}

int main(int argc, char **argv)
{
    if (dsv4_init())
        die("cannot initialise libsodium");
    if (argc == 4 && !strcmp(argv[1], "offset"))
        return offset_of(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "stoffset"))
        return st_offset_of(argv[2], argv[3]);
    if ((argc == 4 || argc == 5) && !strcmp(argv[1], "flip")) {
        uint8_t mask = (uint8_t)(argc == 5 ? strtoul(argv[4], NULL, 0) : 1);
        if (!mask)
            die("a zero mask changes nothing");
        return put_bytes(argv[2], argv[3], NULL, &mask, 1);
    }
    if (argc == 5 && !strcmp(argv[1], "put8")) {
        uint8_t b = (uint8_t)strtoul(argv[4], NULL, 0);
        return put_bytes(argv[2], argv[3], &b, NULL, 1);
    }
    if (argc == 5 && !strcmp(argv[1], "put16")) {
        unsigned long v = strtoul(argv[4], NULL, 0);
        uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
        return put_bytes(argv[2], argv[3], b, NULL, 2);
    }
    if (argc == 5 && !strcmp(argv[1], "put64")) {
        uint8_t b[8];
        dsv4_le64_put(b, strtoull(argv[4], NULL, 0));
        return put_bytes(argv[2], argv[3], b, NULL, 8);
    }
    if (argc == 3 && !strcmp(argv[1], "rehash"))
        return rehash(argv[2]);
    die("usage: dsv4-tcorrupt offset FILE.dsv4 TENSOR | stoffset FILE.safetensors TENSOR | flip FILE OFFSET [MASK] |"
        " put8 FILE OFFSET VALUE | put16 FILE OFFSET VALUE | put64 FILE OFFSET VALUE | rehash FILE.dsv4");
}
