/*  base.c - clocks, duration and size parsing, name checks. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <stdlib.h>
#include <time.h>

#include "nx_base.h"

int64_t nx_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t nx_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Parses "<number><unit>" where the number may have a fraction; `units`
 * maps suffixes to multipliers. */
static int parse_scaled(const char *text, const char *const *names, const double *mult,
                        double *ret) {
    if (!text || !*text)
        return NX_EUSAGE;
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || v < 0 || v != v)
        return NX_EUSAGE;
    while (*end == ' ')
        end++;
    for (int i = 0; names[i]; i++)
        if (strcasecmp(end, names[i]) == 0) {
            *ret = v * mult[i];
            return 0;
        }
    return NX_EUSAGE;
}

int nx_parse_duration(const char *text, int64_t *ret_ms) {
    static const char *const names[] = {"", "ms", "s", "m", "min", "h", NULL};
    static const double mult[] = {1000, 1, 1000, 60000, 60000, 3600000};
    double v;
    if (parse_scaled(text, names, mult, &v) < 0 || v > 1e15)
        return NX_EUSAGE;
    *ret_ms = (int64_t)v;
    return 0;
}

int nx_parse_size(const char *text, uint64_t *ret_bytes) {
    static const char *const names[] = {"", "b", "k", "kb", "kib", "m", "mb", "mib",
                                        "g", "gb", "gib", NULL};
    static const double mult[] = {1, 1, 1024, 1024, 1024, 1048576, 1048576, 1048576,
                                  1073741824.0, 1073741824.0, 1073741824.0};
    double v;
    if (parse_scaled(text, names, mult, &v) < 0 || v > 1e18)
        return NX_EUSAGE;
    *ret_bytes = (uint64_t)v;
    return 0;
}

bool nx_name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > NX_PROTO_MAX_NAME || !isalnum((unsigned char)name[0]))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = name[i];
        if (!(islower(c) || isdigit(c) || c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}
