/* tool.h — what the test tools in tests/tools share.  They are test
 * drivers, not library code, so a fatal error simply ends the process. */
#ifndef DSV4_TEST_TOOL_H
#define DSV4_TEST_TOOL_H

#include <errno.h>     /* program_invocation_short_name (_GNU_SOURCE) */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* "TOOL: message" on stderr, exit status 1. */
static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn, unused));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", program_invocation_short_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

#endif
