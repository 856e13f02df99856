/* mapfile — read-only mmap of a whole file.
 * Ownership: the dsv4_map owns the mapping and the path copy; data is valid
 * until dsv4_map_close.  An empty file maps to data == NULL, size 0. */
#ifndef DSV4_MAPFILE_H
#define DSV4_MAPFILE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct dsv4_map {
    const uint8_t *data;
    uint64_t size;
    char *path;
} dsv4_map;

int  dsv4_map_open(dsv4_map *m, const char *path, dsv4_err *err);
void dsv4_map_close(dsv4_map *m);
/* Hint that [off, off+len) will be read soon / is no longer needed
 * (bounded-memory streaming over files larger than RAM). */
void dsv4_map_willneed(const dsv4_map *m, uint64_t off, uint64_t len);
void dsv4_map_dontneed(const dsv4_map *m, uint64_t off, uint64_t len);

#endif
