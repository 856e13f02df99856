/* fuzz.h — helpers shared by the libFuzzer targets in tests/fuzz/.
 *
 * Every target is one file, fuzz_<name>.c, defining LLVMFuzzerTestOneInput;
 * it must free everything it allocates (leak detection is on) and must not
 * keep state between inputs beyond read-only data set up once.
 * Inputs that reach a library entry point which only takes a path or an fd
 * go through an anonymous memfd: no disk I/O and nothing left behind. */
#ifndef DSV4_FUZZ_H
#define DSV4_FUZZ_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A memfd holding data[0..n), positioned at 0; -1 on failure (then the
 * caller skips the input: a harness problem is not a library bug). */
static inline int fuzz_memfd(const void *data, size_t n)
{
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    const uint8_t *p = data;
    size_t left = n;
    if (fd < 0)
        return -1;
    while (left) {
        ssize_t k = write(fd, p, left);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            close(fd);
            return -1;
        }
        p += k;
        left -= (size_t)k;
    }
    if (lseek(fd, 0, SEEK_SET) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The path by which a path-taking API opens fd ("/proc/self/fd/N"). */
static inline void fuzz_fd_path(char *out, size_t cap, int fd)
{
    snprintf(out, cap, "/proc/self/fd/%d", fd);
}

/* Abort with a message when an invariant the library promises is broken:
 * libFuzzer reports the abort as a crash and saves the input. */
#define FUZZ_ASSERT(cond, ...) do { if (!(cond)) { \
    fprintf(stderr, "fuzz invariant broken at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); abort(); } } while (0)

/* A library error must carry its code and a non-empty message. */
#define FUZZ_CHECK_ERR(rc, e) FUZZ_ASSERT((rc) >= 0 || ((e).code == (rc) && (e).msg[0]), \
    "rc %d but err.code %d, msg '%s'", (rc), (e).code, (e).msg)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
