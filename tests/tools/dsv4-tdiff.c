/* dsv4-tdiff — which tensors of two .dsv4 model files differ.
 *
 *   dsv4-tdiff A.dsv4 B.dsv4
 *
 * One line per tensor that is not identical (same dtype, shape and bytes) in
 * both: "changed NAME", "only-a NAME" or "only-b NAME"; then
 * "identical N changed N only-a N only-b N".  Exit 0 when the files could be
 * read (whatever they hold), 1 otherwise. */
#include "model.h"
#include "version.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    dsv4_model *a = NULL, *b = NULL;
    dsv4_err err = DSV4_ERR_INIT;
    size_t same = 0, changed = 0, only_a = 0, only_b = 0;
    if (argc != 3) {
        fprintf(stderr, "usage: dsv4-tdiff A.dsv4 B.dsv4\n");
        return 2;
    }
    if (dsv4_init() || dsv4_model_open(&a, argv[1], &err) || dsv4_model_open(&b, argv[2], &err)) {
        fprintf(stderr, "dsv4-tdiff: %s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < dsv4_model_count(a); i++) {
        const dsv4_tensor *x = dsv4_model_tensor(a, i), *y = dsv4_model_find(b, x->name);
        if (!y) {
            printf("only-a %s\n", x->name);
            only_a++;
        } else if (x->dtype == y->dtype && x->ndim == y->ndim && !memcmp(x->shape, y->shape, sizeof x->shape) &&
                   x->nbytes == y->nbytes && !memcmp(x->data, y->data, (size_t)x->nbytes)) {
            same++;
        } else {
            printf("changed %s\n", x->name);
            changed++;
        }
    }
    for (size_t i = 0; i < dsv4_model_count(b); i++)
        if (!dsv4_model_find(a, dsv4_model_tensor(b, i)->name)) {
            printf("only-b %s\n", dsv4_model_tensor(b, i)->name);
            only_b++;
        }
    printf("identical %zu changed %zu only-a %zu only-b %zu\n", same, changed, only_a, only_b);
    dsv4_model_close(a);
    dsv4_model_close(b);
    return 0;
}
