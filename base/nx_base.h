/*  nx_base - what every other module may use without pulling in a library:
 *  clocks, duration and size parsing, and name checks. It depends on
 *  nothing but libc (and nx_proto.h for its error codes and limits), so
 *  the sandbox, and the `nexus sandbox` command built on it, start without
 *  loading ZeroMQ, SQLite or any other shared library. */
#ifndef NX_BASE_H
#define NX_BASE_H

#include <stdbool.h>
#include <stdint.h>

#include "nx_proto.h"

#define _cleanup_(f) __attribute__((cleanup(f)))

/* ---- time, sizes, names ---- */

int64_t nx_now_ms(void);   /* wall clock, ms since the epoch */
int64_t nx_mono_ms(void);  /* monotonic clock, ms */

/* "250ms", "30s", "2m", "1h", or a bare number of seconds. Returns 0 and
 * sets *ret_ms, or NX_EUSAGE. */
int nx_parse_duration(const char *text, int64_t *ret_ms);
/* "512", "64K", "1M", "2G" (powers of 1024). Returns 0 or NX_EUSAGE. */
int nx_parse_size(const char *text, uint64_t *ret_bytes);
/* A department or employee name: 1..NX_PROTO_MAX_NAME of [a-z0-9_.-],
 * starting with a letter or digit. */
bool nx_name_ok(const char *name);

#endif
