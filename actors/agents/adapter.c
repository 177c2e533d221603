/*  adapter.c - how a department's agent becomes a command line. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nx_agents.h"

static char *fmt_dup(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *fmt_dup(const char *fmt, ...) {
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

int nx_agent_argv(const nx_agent_conf_t *conf, const char *exe, char ***ret_argv) {
    char **argv;
    size_t n = 0;
    if (conf->kind == NX_AGENT_EXEC) {
        while (conf->command[n])
            n++;
        argv = calloc(n + 1, sizeof *argv);
        if (!argv)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++)
            if (!(argv[i] = strdup(conf->command[i])))
                goto oom;
    } else {
        argv = calloc(14, sizeof *argv);
        if (!argv)
            return -ENOMEM;
        argv[n++] = strdup(exe);
        argv[n++] = strdup("agent-sim");
        argv[n++] = strdup("--seed");
        argv[n++] = fmt_dup("%llu", (unsigned long long)conf->seed);
        argv[n++] = strdup("--work");
        argv[n++] = fmt_dup("%lldms", (long long)conf->work_ms);
        argv[n++] = strdup("--jitter");
        argv[n++] = fmt_dup("%lldms", (long long)conf->jitter_ms);
        argv[n++] = strdup("--fail-rate");
        argv[n++] = fmt_dup("%.6f", conf->fail_rate);
        argv[n++] = strdup("--output");
        argv[n++] = strdup(conf->output_prefix ? conf->output_prefix : "done: ");
        for (size_t i = 0; i < n; i++)
            if (!argv[i])
                goto oom;
    }
    *ret_argv = argv;
    return 0;
oom:
    nx_agent_argv_free(&argv);
    return -ENOMEM;
}

void nx_agent_argv_free(char ***argv_p) {
    if (!argv_p || !*argv_p)
        return;
    for (char **a = *argv_p; *a; a++)
        free(*a);
    free(*argv_p);
    *argv_p = NULL;
}
