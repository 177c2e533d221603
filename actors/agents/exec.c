/*  exec.c - any command as an agent. The task input goes to stdin, unless
 *  an argument holds "{input}": then it is put there (and stdin is empty),
 *  e.g. command: [python3, review.py, --text, "{input}"]. The result is
 *  stdout. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agents_int.h"

/* arg with every "{input}" replaced by text. */
static char *substitute(const char *arg, const char *text) {
    size_t tlen = strlen(text), n = 0;
    for (const char *p = arg; (p = strstr(p, "{input}")); p += 7)
        n++;
    char *out = malloc(strlen(arg) + n * tlen + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = arg; *p;) {
        if (!strncmp(p, "{input}", 7)) {
            memcpy(o, text, tlen);
            o += tlen;
            p += 7;
        } else
            *o++ = *p++;
    }
    *o = '\0';
    return out;
}

static int exec_command(const nx_agent_conf_t *conf, const char *exe, const char *role,
                        const void *input, size_t len, nx_agent_cmd_t *cmd, char *err,
                        size_t errlen) {
    bool templated = false;
    for (char **a = conf->command; a && *a; a++)
        templated |= strstr(*a, "{input}") != NULL;
    char *text = NULL;
    int rc = templated ? input_arg(input, len, &text, err, errlen) : 0;
    if (rc < 0)
        return rc;
    argv_t av = {0};
    for (char **a = conf->command; a && *a; a++) {
        char *s = templated ? substitute(*a, text) : strdup(*a);
        if (s) {
            argv_push(&av, s);
            free(s);
        } else
            av.oom = true;
    }
    free(text);
    if ((rc = argv_finish(&av, cmd)) < 0)
        return rc;
    return templated ? 0 : input_stdin(input, len, cmd);
}

const adapter_t nx_adapter_exec = {exec_command, parse_text, NULL};
