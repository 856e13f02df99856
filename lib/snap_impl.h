/* snap_impl — what the snapshot writer (snap.c) and reader (snap_read.c)
 * share.  Internal to lib/. */
#ifndef DSV4_SNAP_IMPL_H
#define DSV4_SNAP_IMPL_H

#include "snap.h"

#define DSV4_SNAP_READ_PART_MAX (256u << 20)   /* larger chunks are refused */

/* Copy bytes [off, off + n) of layer l's payload out of (put = 0) or into
 * (put = 1) state s; the entry arrays must already hold what is copied. */
void dsv4_snap_layer_copy(const dsv4_kvstate *s, int l, uint64_t off, uint64_t n, uint8_t *buf, int put);
/* "tokens", "hidden", "layer 3". */
void dsv4_snap_section_label(char *out, size_t cap, int kind, int index);
/* header_bytes of a 1.0 header for n_all layers. */
uint32_t dsv4_snap_header_size(int n_all);

#endif
