/* dsv4-stedit — copy a safetensors file, changing one tensor's dtype, shape
 * or name, or leaving it out, to make broken checkpoints for the CLI tests.
 *
 *   dsv4-stedit IN.safetensors OUT.safetensors TENSOR [--dtype DT] [--shape A,B,...]
 *               [--rename NEW] [--drop]
 *
 * The other tensors are copied unchanged, in name order.  The edited
 * tensor's data is its old bytes cut or zero-padded to the new size, so the
 * result is a well-formed file whose only flaw is the edit. */
#include "safetensors.h"
#include "tool.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *in, *out, *name, *new_dtype = NULL, *new_shape = NULL;
    const char *new_name = NULL;
    int drop = 0;
    dsv4_st *st;
    dsv4_stw *w;
    dsv4_err err = DSV4_ERR_INIT;
    const dsv4_tensor *target;
    dsv4_dtype dt;
    int ndim;
    int64_t shape[DSV4_MAX_DIMS];
    uint64_t need;
    FILE *f;
    if (argc < 4)
        die("usage: dsv4-stedit IN.safetensors OUT.safetensors TENSOR [--dtype DT] [--shape A,B,...] [--rename NEW] [--drop]");
    in = argv[1];
    out = argv[2];
    name = argv[3];
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--dtype") && i + 1 < argc)
            new_dtype = argv[++i];
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc)
            new_shape = argv[++i];
        else if (!strcmp(argv[i], "--rename") && i + 1 < argc)
            new_name = argv[++i];
        else if (!strcmp(argv[i], "--drop"))
            drop = 1;
        else
            die("unknown argument '%s'", argv[i]);
    }
    if (dsv4_st_open(&st, in, NULL, NULL, &err))
        die("%s", err.msg);
    if (!(target = dsv4_st_find(st, name)))
        die("'%s': no tensor '%s'", in, name);
    dt = target->dtype;
    ndim = target->ndim;
    memcpy(shape, target->shape, sizeof shape);
    if (new_dtype && !(dt = dsv4_dtype_from_name(new_dtype)))
        die("unknown dtype '%s'", new_dtype);
    if (new_shape) {
        const char *p = new_shape;
        char *end;
        ndim = 0;
        while (*p) {
            if (ndim == DSV4_MAX_DIMS)
                die("too many dimensions in '%s'", new_shape);
            shape[ndim++] = strtoll(p, &end, 10);
            if (end == p || shape[ndim - 1] < 0)
                die("bad shape '%s'", new_shape);
            p = *end == ',' ? end + 1 : end;
        }
    }
    need = dsv4_dtype_size(dt);
    for (int d = 0; d < ndim; d++)
        need *= (uint64_t)shape[d];
    if (dsv4_stw_new(&w, &err))
        die("%s", err.msg);
    for (size_t i = 0; i < dsv4_st_count(st); i++) {
        const dsv4_tensor *t = dsv4_st_tensor(st, i);
        int rc;
        if (t == target && drop)
            continue;
        rc = t == target ? dsv4_stw_add(w, new_name ? new_name : t->name, dt, ndim, shape, &err)
                             : dsv4_stw_add(w, t->name, t->dtype, t->ndim, t->shape, &err);
        if (rc)
            die("%s", err.msg);
    }
    if (!(f = fopen(out, "wb")))
        die("cannot create '%s'", out);
    if (dsv4_stw_begin(w, f, &err))
        die("%s", err.msg);
    for (size_t i = 0; i < dsv4_st_count(st); i++) {
        const dsv4_tensor *t = dsv4_st_tensor(st, i);
        if (t == target && drop)
            continue;
        if (t != target) {
            if (dsv4_stw_write(w, t->data, (size_t)t->nbytes, &err))
                die("%s", err.msg);
            continue;
        }
        {
            uint8_t *buf = calloc(need ? need : 1, 1);
            if (!buf)
                die("out of memory");
            memcpy(buf, t->data, (size_t)(need < t->nbytes ? need : t->nbytes));
            if (dsv4_stw_write(w, buf, (size_t)need, &err))
                die("%s", err.msg);
            free(buf);
        }
    }
    if (dsv4_stw_end(w, &err))
        die("%s", err.msg);
    dsv4_stw_free(w);
    if (fclose(f))
        die("cannot write '%s'", out);
    dsv4_st_close(st);
    return 0;
}
