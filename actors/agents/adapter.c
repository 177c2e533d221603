/*  adapter.c - the adapter table, and what every adapter shares: building
 *  argv, walking JSON lines, and reading the structured tail (verdict,
 *  subtasks) of any result. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents_int.h"

static const adapter_t *const s_adapters[NX_AGENT__COUNT] = {
    [NX_AGENT_SIM] = &nx_adapter_sim,         [NX_AGENT_EXEC] = &nx_adapter_exec,
    [NX_AGENT_CLAUDE] = &nx_adapter_claude,   [NX_AGENT_CODEX] = &nx_adapter_codex,
    [NX_AGENT_COPILOT] = &nx_adapter_copilot, [NX_AGENT_GEMINI] = &nx_adapter_gemini,
    [NX_AGENT_AIDER] = &nx_adapter_aider};

/* ---- argv ---- */

static void argv_add(argv_t *a, char *s) {
    if (!s) {
        a->oom = true;
        return;
    }
    if (a->n + 2 > a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 16;
        char **bigger = realloc(a->v, ncap * sizeof *bigger);
        if (!bigger) {
            free(s);
            a->oom = true;
            return;
        }
        a->v = bigger;
        a->cap = ncap;
    }
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
}

void argv_push(argv_t *a, const char *s) { argv_add(a, strdup(s)); }

void argv_pushf(argv_t *a, const char *fmt, ...) {
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    argv_add(a, s);
}

void argv_program(argv_t *a, const nx_agent_conf_t *conf, const char *name) {
    argv_push(a, conf->binary ? conf->binary : name);
}

void argv_opt(argv_t *a, const char *flag, const char *value) {
    if (!value)
        return;
    argv_push(a, flag);
    argv_push(a, value);
}

int argv_prompt(argv_t *av, const nx_agent_conf_t *conf, const char *name, const void *input,
                size_t len, char **ret_prompt, char *err, size_t errlen) {
    int rc = input_arg(input, len, ret_prompt, err, errlen);
    if (rc == 0)
        argv_program(av, conf, name);
    return rc;
}

void argv_extra(argv_t *a, const nx_agent_conf_t *conf) {
    for (char **x = conf->args; x && *x; x++)
        argv_push(a, *x);
}

int argv_finish(argv_t *a, nx_agent_cmd_t *cmd) {
    if (a->oom || !a->v) {
        for (size_t i = 0; i < a->n; i++)
            free(a->v[i]);
        free(a->v);
        memset(a, 0, sizeof *a);
        return -ENOMEM;
    }
    cmd->argv = a->v;
    memset(a, 0, sizeof *a);
    return 0;
}

int input_arg(const void *input, size_t len, char **ret, char *err, size_t errlen) {
    if (len > ARG_INPUT_MAX) {
        snprintf(err, errlen,
                 "the task input (%zu bytes) is too large for this agent's prompt argument "
                 "(at most %u bytes)",
                 len, ARG_INPUT_MAX);
        return NX_EUSAGE;
    }
    if (memchr(input, '\0', len)) {
        snprintf(err, errlen, "the task input holds a NUL byte, which an argument cannot carry");
        return NX_EUSAGE;
    }
    *ret = strndup(input, len);
    return *ret ? 0 : -ENOMEM;
}

int input_stdin(const void *input, size_t len, nx_agent_cmd_t *cmd) {
    cmd->stdin_data = malloc(len ? len : 1);
    if (!cmd->stdin_data)
        return -ENOMEM;
    memcpy(cmd->stdin_data, input, len);
    cmd->stdin_len = len;
    return 0;
}

/* ---- output ---- */

int jsonl_walk(const char *agent, const char *out, size_t len, jsonl_fn fn, void *arg, char *err,
               size_t errlen) {
    const char *p = out, *end = out + len;
    int lineno = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        lineno++;
        const char *q = p;
        while (q < p + n && (*q == ' ' || *q == '\t' || *q == '\r'))
            q++;
        if (q < p + n) {
            json_error_t jerr;
            json_t *obj = json_loadb(p, n, 0, &jerr);
            if (!obj || !json_is_object(obj)) {
                snprintf(err, errlen, "%s output line %d is not a JSON object: %s", agent, lineno,
                         obj ? "another JSON value" : jerr.text);
                json_decref(obj);
                return NX_EBADMSG;
            }
            int rc = fn(obj, arg, err, errlen);
            json_decref(obj);
            if (rc < 0)
                return rc;
        }
        p += n + (nl ? 1 : 0);
    }
    return 0;
}

int report_result(nx_agent_report_t *r, const char *text, size_t len) {
    free(r->result);
    r->result = malloc(len + 1);
    if (!r->result)
        return -ENOMEM;
    memcpy(r->result, text, len);
    r->result[len] = '\0';
    r->result_len = len;
    return 0;
}

int report_error(nx_agent_report_t *r, const char *fmt, ...) {
    free(r->error);
    r->error = NULL;
    va_list ap;
    va_start(ap, fmt);
    int rc = vasprintf(&r->error, fmt, ap);
    va_end(ap);
    if (rc < 0)
        r->error = NULL;
    return r->error ? 0 : -ENOMEM;
}

const char *jstr(const json_t *obj, const char *key) {
    return json_string_value(json_object_get(obj, key));
}

uint64_t juint(const json_t *obj, const char *path) {
    char key[64];
    const json_t *v = obj;
    while (v && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        snprintf(key, sizeof key, "%.*s", (int)n, path);
        v = json_object_get(v, key);
        path += n + (dot ? 1 : 0);
    }
    json_int_t i = json_integer_value(v);
    return i > 0 ? (uint64_t)i : 0;
}

int progress_text(char *buf, size_t buflen, const char *what, const char *text) {
    if (!text)
        text = "";
    size_t j = (size_t)snprintf(buf, buflen, "%s", what);
    if (j + 4 > buflen) /* buflen is at least 8 (nx_agent_progress) */
        j = buflen - 4;
    if (*text && j + 2 < buflen) {
        buf[j++] = ':';
        buf[j++] = ' ';
    }
    /* One line: control characters become spaces, and it is cut to fit. */
    const char *p = text;
    for (; *p && j + 4 < buflen; p++)
        buf[j++] = (unsigned char)*p < 0x20 ? ' ' : *p;
    if (*p) {
        memcpy(buf + j, "...", 3);
        j += 3;
    }
    buf[j] = '\0';
    return 1;
}

int parse_text(const nx_agent_conf_t *conf, const char *out, size_t len, int exit_code,
               nx_agent_report_t *r, char *err, size_t errlen) {
    return report_result(r, out ? out : "", out ? len : 0);
}

/* The result's structured tail: the whole text, or its last line that
 * starts a JSON object, or a ```json block. */
static json_t *structured_tail(const char *text, size_t len) {
    json_t *j = json_loadb(text, len, 0, NULL);
    if (json_is_object(j))
        return j;
    json_decref(j);
    const char *fence = NULL;
    for (const char *p = text; (p = memmem(p, len - (size_t)(p - text), "```json", 7)); p += 7)
        fence = p;
    if (fence) {
        const char *start = fence + 7;
        const char *stop = memmem(start, len - (size_t)(start - text), "```", 3);
        j = json_loadb(start, stop ? (size_t)(stop - start) : len - (size_t)(start - text), 0,
                       NULL);
        if (json_is_object(j))
            return j;
        json_decref(j);
    }
    for (size_t i = len; i-- > 0;) {
        if (text[i] == '{' && (i == 0 || text[i - 1] == '\n')) {
            j = json_loadb(text + i, len - i, 0, NULL);
            if (json_is_object(j))
                return j;
            json_decref(j);
            return NULL;
        }
    }
    return NULL;
}

static int read_structured(nx_agent_report_t *r, int exit_code) {
    if (exit_code == NX_AGENT_EXIT_REJECT && !r->verdict)
        r->verdict = strdup("reject");
    if (!r->result)
        return 0;
    json_t *j = structured_tail(r->result, r->result_len);
    if (!j)
        return 0;
    const char *verdict = jstr(j, "verdict");
    if (verdict && (!strcmp(verdict, "accept") || !strcmp(verdict, "reject"))) {
        free(r->verdict);
        r->verdict = strdup(verdict);
    }
    json_t *subs = json_object_get(j, "subtasks");
    size_t n = json_is_array(subs) ? json_array_size(subs) : 0;
    if (n > 0 && n <= 100) {
        r->subtasks = calloc(n + 1, sizeof *r->subtasks);
        for (size_t i = 0; r->subtasks && i < n; i++) {
            json_t *it = json_array_get(subs, i);
            const char *s = json_string_value(it);
            if (!s)
                s = jstr(it, "task") ? jstr(it, "task") : jstr(it, "title");
            if (s && *s)
                r->subtasks[r->nsubtasks++] = strdup(s);
        }
    }
    json_decref(j);
    return 0;
}

/* ---- the public calls ---- */

int nx_agent_command(const nx_agent_conf_t *conf, const char *exe, const char *role,
                     const void *input, size_t len, nx_agent_cmd_t *ret_cmd, char *err,
                     size_t errlen) {
    memset(ret_cmd, 0, sizeof *ret_cmd);
    if (conf->kind >= NX_AGENT__COUNT) {
        snprintf(err, errlen, "unknown agent kind %d", (int)conf->kind);
        return NX_EUSAGE;
    }
    int rc = s_adapters[conf->kind]->command(conf, exe, role, input ? input : "", len, ret_cmd,
                                             err, errlen);
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    if (rc < 0)
        nx_agent_cmd_clear(ret_cmd);
    return rc;
}

void nx_agent_cmd_clear(nx_agent_cmd_t *cmd) {
    for (char **a = cmd->argv; a && *a; a++)
        free(*a);
    free(cmd->argv);
    free(cmd->stdin_data);
    memset(cmd, 0, sizeof *cmd);
}

int nx_agent_parse(const nx_agent_conf_t *conf, const char *out, size_t len, int exit_code,
                   nx_agent_report_t *ret, char *err, size_t errlen) {
    memset(ret, 0, sizeof *ret);
    if (conf->kind >= NX_AGENT__COUNT) {
        snprintf(err, errlen, "unknown agent kind %d", (int)conf->kind);
        return NX_EUSAGE;
    }
    int rc = s_adapters[conf->kind]->parse(conf, out, len, exit_code, ret, err, errlen);
    if (rc == 0)
        rc = read_structured(ret, exit_code);
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    if (rc < 0)
        nx_agent_report_clear(ret);
    return rc;
}

void nx_agent_report_clear(nx_agent_report_t *r) {
    free(r->result);
    free(r->error);
    free(r->verdict);
    free(r->session);
    for (size_t i = 0; i < r->nsubtasks; i++)
        free(r->subtasks[i]);
    free(r->subtasks);
    memset(r, 0, sizeof *r);
}

int nx_agent_progress(const nx_agent_conf_t *conf, const char *line, size_t len, char *buf,
                      size_t buflen) {
    if (conf->kind >= NX_AGENT__COUNT || !s_adapters[conf->kind]->progress || buflen < 8)
        return 0;
    return s_adapters[conf->kind]->progress(line, len, buf, buflen);
}
