#include "err.h"

#include <stdio.h>
#include <string.h>

int dsv4_err_vset(dsv4_err *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

int dsv4_err_set(dsv4_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dsv4_err_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int dsv4_err_prefix(dsv4_err *err, const char *fmt, ...)
{
    char pre[256], old[256];
    va_list ap;
    if (!err)
        return DSV4_E_BUG;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* "pre: old", cut to fit (the start matters most) */
    size_t cap = sizeof err->msg - 1, n = strlen(pre);
    n = n < cap ? n : cap;
    memcpy(err->msg, pre, n);
    for (const char *p = ": "; *p && n < cap; p++)
        err->msg[n++] = *p;
    size_t k = strnlen(old, sizeof old);
    k = k < cap - n ? k : cap - n;
    memcpy(err->msg + n, old, k);
    err->msg[n + k] = '\0';
    return err->code;
}

const char *dsv4_strerror(int code)
{
    switch (code) {
    case DSV4_OK:            return "success";
    case DSV4_E_NOMEM:       return "out of memory";
    case DSV4_E_IO:          return "I/O error";
    case DSV4_E_FORMAT:      return "malformed input";
    case DSV4_E_CHECKSUM:    return "checksum mismatch";
    case DSV4_E_TRUNCATED:   return "truncated input";
    case DSV4_E_VERSION:     return "unsupported format version";
    case DSV4_E_INVALID:     return "invalid argument";
    case DSV4_E_NOTFOUND:    return "not found";
    case DSV4_E_UNSUPPORTED: return "not supported";
    case DSV4_E_MISMATCH:    return "mismatch";
    case DSV4_E_CUDA:        return "CUDA error";
    case DSV4_E_RANGE:       return "value out of range";
    case DSV4_E_BUG:         return "internal error";
    }
    return "unknown error";
}
