/* What the suite's ferrows programs share besides bench.h: reporting a failed call. */
#ifndef FERROWS_BENCH_H
#define FERROWS_BENCH_H

#include "bench.h"

#include <ferrows.h>

/* Prints what failed, with ferrows' last error message; returns 1, an exit status. */
static inline int bench_ferrows_fail(const char *program, const char *what, ferrows_result result) {
    char message[256] = "";
    ferrows_last_error_message(message, sizeof message, NULL);
    fprintf(stderr, "%s: %s: %s (%s)\n", program, what, ferrows_result_str(result), message);
    return 1;
}

#endif
