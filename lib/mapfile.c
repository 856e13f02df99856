#include "mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int dsv4_map_open(dsv4_map *m, const char *path, dsv4_err *err)
{
    struct stat st;
    int fd;
    memset(m, 0, sizeof *m);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dsv4_err_set(err, errno == ENOENT ? DSV4_E_NOTFOUND : DSV4_E_IO,
                            "cannot open '%s': %s", path, strerror(errno));
    if (fstat(fd, &st)) {
        int e = errno;
        close(fd);
        return dsv4_err_set(err, DSV4_E_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return dsv4_err_set(err, DSV4_E_IO, "'%s' is not a regular file", path);
    }
    m->path = strdup(path);
    if (!m->path) {
        close(fd);
        return dsv4_err_set(err, DSV4_E_NOMEM, "out of memory");
    }
    m->size = (uint64_t)st.st_size;
    if (m->size) {
        void *p = mmap(NULL, (size_t)m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(m->path);
            memset(m, 0, sizeof *m);
            return dsv4_err_set(err, DSV4_E_IO, "cannot mmap '%s': %s", path, strerror(e));
        }
        m->data = p;
    }
    close(fd);
    return 0;
}

void dsv4_map_close(dsv4_map *m)
{
    if (!m)
        return;
    if (m->data)
        munmap((void *)m->data, (size_t)m->size);
    free(m->path);
    memset(m, 0, sizeof *m);
}

static void advise(const dsv4_map *m, uint64_t off, uint64_t len, int adv)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), a, e;
    if (!m->data || off >= m->size)
        return;
    if (len > m->size - off)
        len = m->size - off;
    a = off / page * page;
    e = off + len;
    madvise((void *)(m->data + a), (size_t)(e - a), adv);
}

void dsv4_map_willneed(const dsv4_map *m, uint64_t off, uint64_t len) { advise(m, off, len, MADV_WILLNEED); }
void dsv4_map_dontneed(const dsv4_map *m, uint64_t off, uint64_t len) { advise(m, off, len, MADV_DONTNEED); }
