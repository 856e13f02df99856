/* tensor — dtypes and the borrowed tensor view shared by the safetensors
 * reader, the .dsv4 model file and the engine.
 *
 * A dsv4_tensor never owns its data: it points into an mmapped file (or a
 * caller's buffer) and is valid as long as that owner is open.  Shapes are
 * row-major, as on disk; the dtype names are the safetensors spellings. */
#ifndef DSV4_TENSOR_H
#define DSV4_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef enum dsv4_dtype {
    DSV4_DT_NONE = 0,
    DSV4_DT_BF16 = 1,
    DSV4_DT_F16 = 2,
    DSV4_DT_F32 = 3,
    DSV4_DT_F8_E4M3 = 4,
    DSV4_DT_F8_E8M0 = 5,
    DSV4_DT_I8 = 6,      /* in V4 checkpoints: two packed e2m1 values per byte */
    DSV4_DT_I32 = 7,
    DSV4_DT_I64 = 8,
    DSV4_DT_U8 = 9,
    /* dsv4-quant's block formats (quant.h): byte containers like I8, shape
     * [n, k/4] (Q2) or [n, 3k/8] (Q3) for a logical [n, k] matrix, with a
     * sibling X.scale of QS8 bytes [n, k/64] (Q2) or [n, k/32] (Q3) */
    DSV4_DT_Q2 = 10,
    DSV4_DT_Q3 = 11,
    DSV4_DT_QS8 = 12,
    DSV4_DT_COUNT
} dsv4_dtype;

#define DSV4_MAX_DIMS 4

typedef struct dsv4_tensor {
    const char *name;
    dsv4_dtype dtype;
    int ndim;
    int64_t shape[DSV4_MAX_DIMS];
    const void *data;   /* borrowed, little-endian, row-major */
    uint64_t nbytes;
} dsv4_tensor;

const char *dsv4_dtype_name(dsv4_dtype dt);      /* "BF16", ...; "?" for unknown */
dsv4_dtype dsv4_dtype_from_name(const char *s);  /* DSV4_DT_NONE if unknown */
size_t dsv4_dtype_size(dsv4_dtype dt);           /* bytes per element; 0 if unknown */
int64_t dsv4_tensor_numel(const dsv4_tensor *t);
/* Writes "[a, b, c]" into out (always NUL-terminated). */
void dsv4_shape_str(const int64_t *shape, int ndim, char *out, size_t cap);

#endif
