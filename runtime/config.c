/*  config.c - the company file (YAML, via libyaml's document API).
 *
 *  Every error names the file, the line of the offending node and the
 *  field path ("departments.qa.employees"), so a user can go straight to
 *  the mistake. Unknown keys are errors: a typo must not silently become a
 *  default. Defaults are documented in docs/configuration.md. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "nx_runtime.h"

typedef struct {
    const char *file;     /* path as given, for messages */
    yaml_document_t *doc; /* the parsed document */
    char *err;            /* caller's buffer */
    size_t errlen;
} ctx_t;

static int fail(ctx_t *c, const yaml_node_t *node, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(ctx_t *c, const yaml_node_t *node, const char *path, const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s:%zu: %s: %s", c->file,
             node ? node->start_mark.line + 1 : 1, path, what);
    return NX_ECONFIG;
}

static const char *scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int get_str(ctx_t *c, const yaml_node_t *n, const char *path, char **ret) {
    const char *s = scalar(n);
    if (!s)
        return fail(c, n, path, "expected a string");
    free(*ret);
    *ret = strdup(s);
    return *ret ? 0 : -ENOMEM;
}

static int get_uint(ctx_t *c, const yaml_node_t *n, const char *path, uint64_t lo, uint64_t hi,
                    uint64_t *ret) {
    const char *s = scalar(n);
    char *end;
    if (!s || !*s)
        return fail(c, n, path, "expected a number");
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || s[0] == '-')
        return fail(c, n, path, "'%s' is not a whole number", s);
    if (v < lo || v > hi)
        return fail(c, n, path, "%llu is out of range (%llu..%llu)", v, (unsigned long long)lo,
                    (unsigned long long)hi);
    *ret = v;
    return 0;
}

static int get_number(ctx_t *c, const yaml_node_t *n, const char *path, double lo, double hi,
                      double *ret) {
    const char *s = scalar(n);
    char *end = NULL;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || v < lo || v > hi)
        return fail(c, n, path, "expected a number from %g to %g", lo, hi);
    *ret = v;
    return 0;
}

static int get_bool(ctx_t *c, const yaml_node_t *n, const char *path, bool *ret) {
    const char *s = scalar(n);
    if (s && (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")))
        *ret = true;
    else if (s && (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")))
        *ret = false;
    else
        return fail(c, n, path, "expected true or false");
    return 0;
}

static int get_restart(ctx_t *c, const yaml_node_t *n, const char *path, nx_restart_t *ret) {
    const char *s = scalar(n);
    for (int i = 0; i <= NX_TEMPORARY; i++)
        if (s && !strcmp(s, nx_restart_name((nx_restart_t)i))) {
            *ret = (nx_restart_t)i;
            return 0;
        }
    return fail(c, n, path, "'%s' is not a restart type (permanent, transient, temporary)",
                s ? s : "");
}

static int get_duration(ctx_t *c, const yaml_node_t *n, const char *path, int64_t *ret) {
    const char *s = scalar(n);
    if (!s || nx_parse_duration(s, ret) < 0)
        return fail(c, n, path, "'%s' is not a duration (like 500ms, 30s, 2m)", s ? s : "");
    return 0;
}

static int get_size(ctx_t *c, const yaml_node_t *n, const char *path, uint64_t *ret) {
    const char *s = scalar(n);
    if (!s || nx_parse_size(s, ret) < 0)
        return fail(c, n, path, "'%s' is not a size (like 64K, 1M)", s ? s : "");
    return 0;
}

#define FOR_PAIRS(c, map, k, v) FOR_PAIRS_(c, map, k, v, NX_CAT(pair_, __LINE__))
#define NX_CAT_(a, b) a##b
#define NX_CAT(a, b) NX_CAT_(a, b)
#define FOR_PAIRS_(c, map, k, v, it)                                                      \
    for (yaml_node_pair_t *it = (map)->data.mapping.pairs.start;                          \
         it < (map)->data.mapping.pairs.top &&                                            \
         ((k) = yaml_document_get_node((c)->doc, it->key),                                \
         (v) = yaml_document_get_node((c)->doc, it->value), 1);                           \
         it++)

static const char *const s_agent_kinds[NX_AGENT__COUNT] = {
    [NX_AGENT_SIM] = "sim",         [NX_AGENT_EXEC] = "exec",   [NX_AGENT_CLAUDE] = "claude",
    [NX_AGENT_CODEX] = "codex",     [NX_AGENT_COPILOT] = "copilot",
    [NX_AGENT_GEMINI] = "gemini",   [NX_AGENT_AIDER] = "aider"};
#define AGENT_KINDS "sim, exec, claude, codex, copilot, gemini, aider"

const char *nx_agent_kind_name(nx_agent_kind_t kind) {
    return kind < NX_AGENT__COUNT ? s_agent_kinds[kind] : "?";
}

int nx_agent_kind_from_name(const char *name, nx_agent_kind_t *ret_kind) {
    for (int i = 0; name && i < NX_AGENT__COUNT; i++)
        if (!strcmp(name, s_agent_kinds[i])) {
            *ret_kind = (nx_agent_kind_t)i;
            return 0;
        }
    return NX_EUSAGE;
}

static int get_list(ctx_t *c, const yaml_node_t *n, const char *path, const char *what,
                    const char *hint, size_t max, bool (*ok)(const char *), char ***ret);

static int parse_agent(ctx_t *c, const yaml_node_t *n, const char *dpath, nx_agent_conf_t *a) {
    char path[256];
    snprintf(path, sizeof path, "%s.agent", dpath);
    if (n->type == YAML_SCALAR_NODE) {
        /* Shorthand: "agent: sim", "agent: claude" */
        if (nx_agent_kind_from_name(scalar(n), &a->kind) < 0)
            return fail(c, n, path, "unknown agent kind '%s' (known: " AGENT_KINDS ")",
                        scalar(n));
        if (a->kind == NX_AGENT_EXEC)
            return fail(c, n, path, "an exec agent needs 'command'");
        return 0;
    }
    if (n->type != YAML_MAPPING_NODE)
        return fail(c, n, path, "expected a mapping with 'kind'");
    yaml_node_t *k, *v;
    bool have_kind = false;
    FOR_PAIRS(c, n, k, v) {
        const char *key = scalar(k);
        char fpath[300];
        snprintf(fpath, sizeof fpath, "%s.%s", path, key ? key : "?");
        int rc = 0;
        uint64_t u;
        if (!key)
            return fail(c, k, path, "keys must be strings");
        if (!strcmp(key, "kind")) {
            const char *s = scalar(v);
            if (nx_agent_kind_from_name(s, &a->kind) < 0)
                return fail(c, v, fpath, "unknown agent kind '%s' (known: " AGENT_KINDS ")",
                            s ? s : "");
            have_kind = true;
        } else if (!strcmp(key, "command")) {
            if (v->type == YAML_SCALAR_NODE) {
                a->command = calloc(4, sizeof(char *));
                if (!a->command)
                    return -ENOMEM;
                a->command[0] = strdup("/bin/sh");
                a->command[1] = strdup("-c");
                a->command[2] = strdup(scalar(v));
            } else if (v->type == YAML_SEQUENCE_NODE) {
                size_t cnt = v->data.sequence.items.top - v->data.sequence.items.start;
                if (cnt == 0)
                    return fail(c, v, fpath, "the command is empty");
                a->command = calloc(cnt + 1, sizeof(char *));
                if (!a->command)
                    return -ENOMEM;
                for (size_t i = 0; i < cnt; i++) {
                    yaml_node_t *it =
                        yaml_document_get_node(c->doc, v->data.sequence.items.start[i]);
                    if (!scalar(it))
                        return fail(c, it, fpath, "argument %zu is not a string", i + 1);
                    a->command[i] = strdup(scalar(it));
                }
            } else
                return fail(c, v, fpath, "expected a string or a list of arguments");
        } else if (!strcmp(key, "work"))
            rc = get_duration(c, v, fpath, &a->work_ms);
        else if (!strcmp(key, "jitter"))
            rc = get_duration(c, v, fpath, &a->jitter_ms);
        else if (!strcmp(key, "fail_rate"))
            rc = get_number(c, v, fpath, 0, 1, &a->fail_rate);
        else if (!strcmp(key, "seed")) {
            rc = get_uint(c, v, fpath, 0, UINT64_MAX, &u);
            a->seed = u;
        } else if (!strcmp(key, "output"))
            rc = get_str(c, v, fpath, &a->output_prefix);
        else if (!strcmp(key, "max_output"))
            rc = get_size(c, v, fpath, &a->max_output);
        else if (!strcmp(key, "inprocess"))
            rc = get_bool(c, v, fpath, &a->inprocess);
        else if (!strcmp(key, "binary"))
            rc = get_str(c, v, fpath, &a->binary);
        else if (!strcmp(key, "model"))
            rc = get_str(c, v, fpath, &a->model);
        else if (!strcmp(key, "permission_mode"))
            rc = get_str(c, v, fpath, &a->permission_mode);
        else if (!strcmp(key, "allowed_tools"))
            rc = get_list(c, v, fpath, "tool name", "", 0, NULL, &a->allowed_tools);
        else if (!strcmp(key, "args"))
            rc = get_list(c, v, fpath, "argument", "", 0, NULL, &a->args);
        else if (!strcmp(key, "crash_rate"))
            rc = get_number(c, v, fpath, 0, 1, &a->crash_rate);
        else if (!strcmp(key, "reject_rate"))
            rc = get_number(c, v, fpath, 0, 1, &a->reject_rate);
        else if (!strcmp(key, "subtasks")) {
            rc = get_uint(c, v, fpath, 0, 100, &u);
            a->subtasks = (uint32_t)u;
        } else if (!strcmp(key, "distribution")) {
            const char *s = scalar(v);
            if (s && !strcmp(s, "exponential"))
                a->work_exponential = true;
            else if (!s || strcmp(s, "uniform"))
                return fail(c, v, fpath, "expected 'uniform' or 'exponential'");
        } else
            return fail(c, k, fpath, "unknown key (known: kind, command, binary, model, "
                                     "permission_mode, allowed_tools, args, work, jitter, "
                                     "distribution, fail_rate, crash_rate, reject_rate, "
                                     "subtasks, seed, output, max_output, inprocess)");
        if (rc < 0)
            return rc;
    }
    if (!have_kind)
        return fail(c, n, path, "'kind' is missing (" AGENT_KINDS ")");
    if (a->kind == NX_AGENT_EXEC && !a->command)
        return fail(c, n, path, "an exec agent needs 'command'");
    return 0;
}

static int add_employee(ctx_t *c, nx_company_t *co, const yaml_node_t *at, const char *path,
                        const char *name, size_t dept, nx_restart_t restart) {
    if (!nx_name_ok(name))
        return fail(c, at, path, "employee name '%s' must be 1-64 of a-z 0-9 . _ -", name);
    if (nx_company_employee(co, name) >= 0)
        return fail(c, at, path, "employee '%s' is defined twice", name);
    nx_employee_conf_t *e = realloc(co->employees, (co->nemployees + 1) * sizeof *e);
    if (!e)
        return -ENOMEM;
    co->employees = e;
    e[co->nemployees].name = strdup(name);
    e[co->nemployees].dept = dept;
    e[co->nemployees].restart = restart;
    co->nemployees++;
    return 0;
}

static int parse_retry(ctx_t *c, const yaml_node_t *n, const char *path, nx_dept_conf_t *d) {
    if (n->type != YAML_MAPPING_NODE)
        return fail(c, n, path, "expected a mapping (initial, multiplier, max, on_failure)");
    yaml_node_t *k, *v;
    FOR_PAIRS(c, n, k, v) {
        const char *key = scalar(k);
        char fpath[300];
        snprintf(fpath, sizeof fpath, "%s.%s", path, key ? key : "?");
        int rc = 0;
        if (key && !strcmp(key, "initial"))
            rc = get_duration(c, v, fpath, &d->retry_initial_ms);
        else if (key && !strcmp(key, "max"))
            rc = get_duration(c, v, fpath, &d->retry_max_ms);
        else if (key && !strcmp(key, "on_failure"))
            rc = get_bool(c, v, fpath, &d->retry_on_failure);
        else if (key && !strcmp(key, "multiplier"))
            rc = get_number(c, v, fpath, 1, 100, &d->retry_multiplier);
        else
            return fail(c, k, fpath, "unknown key (known: initial, multiplier, max, on_failure)");
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int parse_timeout(ctx_t *c, const yaml_node_t *n, const char *path, nx_dept_conf_t *d) {
    if (n->type != YAML_MAPPING_NODE)
        return fail(c, n, path, "expected a mapping (soft, hard)");
    yaml_node_t *k, *v;
    FOR_PAIRS(c, n, k, v) {
        const char *key = scalar(k);
        char fpath[300];
        snprintf(fpath, sizeof fpath, "%s.%s", path, key ? key : "?");
        int rc;
        if (key && !strcmp(key, "soft"))
            rc = get_duration(c, v, fpath, &d->soft_timeout_ms);
        else if (key && !strcmp(key, "hard"))
            rc = get_duration(c, v, fpath, &d->hard_timeout_ms);
        else
            return fail(c, k, fpath, "unknown key (known: soft, hard)");
        if (rc < 0)
            return rc;
    }
    if (d->soft_timeout_ms && d->hard_timeout_ms && d->hard_timeout_ms < d->soft_timeout_ms)
        return fail(c, n, path, "the hard limit must not be shorter than the soft one");
    return 0;
}

static int parse_supervision(ctx_t *c, const yaml_node_t *n, const char *path,
                             nx_dept_conf_t *d) {
    if (n->type != YAML_MAPPING_NODE)
        return fail(c, n, path, "expected a mapping (strategy, intensity, period, restart, "
                                "shutdown)");
    yaml_node_t *k, *v;
    FOR_PAIRS(c, n, k, v) {
        const char *key = scalar(k);
        char fpath[300];
        snprintf(fpath, sizeof fpath, "%s.%s", path, key ? key : "?");
        int rc = 0;
        uint64_t u;
        if (key && !strcmp(key, "strategy")) {
            const char *s = scalar(v);
            bool found = false;
            for (int i = 0; i <= NX_REST_FOR_ONE; i++)
                if (s && !strcmp(s, nx_strategy_name((nx_strategy_t)i))) {
                    d->strategy = (nx_strategy_t)i;
                    found = true;
                }
            if (!found)
                return fail(c, v, fpath,
                            "'%s' is not a strategy (one_for_one, one_for_all, rest_for_one)",
                            s ? s : "");
        } else if (key && !strcmp(key, "intensity")) {
            rc = get_uint(c, v, fpath, 0, 10000, &u);
            d->intensity = (uint32_t)u;
        } else if (key && !strcmp(key, "period"))
            rc = get_duration(c, v, fpath, &d->period_ms);
        else if (key && !strcmp(key, "restart"))
            rc = get_restart(c, v, fpath, &d->restart);
        else if (key && !strcmp(key, "shutdown"))
            rc = get_duration(c, v, fpath, &d->shutdown_ms);
        else
            return fail(c, k, fpath,
                        "unknown key (known: strategy, intensity, period, restart, shutdown)");
        if (rc < 0)
            return rc;
    }
    if (d->period_ms <= 0)
        return fail(c, n, path, "period must be positive");
    return 0;
}

/* A list of strings, each checked by `ok` (NULL: any string); `what`
 * names an item in errors, `hint` says what a good one looks like. */
static int get_list(ctx_t *c, const yaml_node_t *n, const char *path, const char *what,
                    const char *hint, size_t max, bool (*ok)(const char *), char ***ret) {
    if (n->type != YAML_SEQUENCE_NODE)
        return fail(c, n, path, "expected a list of %ss", what);
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (max && cnt > max)
        return fail(c, n, path, "at most %zu %ss", max, what);
    char **list = calloc(cnt + 1, sizeof *list);
    if (!list)
        return -ENOMEM;
    *ret = list;
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *it = yaml_document_get_node(c->doc, n->data.sequence.items.start[i]);
        const char *s = scalar(it);
        if (!s || (ok && !ok(s)))
            return fail(c, it, path, "'%s' is not %s %s%s", s ? s : "",
                        strchr("aeiou", what[0]) ? "an" : "a", what, hint);
        list[i] = strdup(s);
    }
    return 0;
}

static bool absolute(const char *s) { return s[0] == '/'; }

/* [A-Z_][A-Z0-9_]* */
static bool env_name(const char *s) {
    bool ok = *s && !(s[0] >= '0' && s[0] <= '9');
    for (const char *p = s; ok && *p; p++)
        ok = (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_';
    return ok;
}

static int get_paths(ctx_t *c, const yaml_node_t *n, const char *path, char ***ret) {
    return get_list(c, n, path, "absolute path", "", 12, absolute, ret);
}

static int get_env_names(ctx_t *c, const yaml_node_t *n, const char *path, char ***ret) {
    return get_list(c, n, path, "environment variable name", " (A-Z 0-9 _)", 0, env_name, ret);
}

/* Credential files must exist and be private to their owner: a secret
 * that group or others can read is refused rather than passed on. */
static int check_private(ctx_t *c, const yaml_node_t *n, const char *path, char **files) {
    for (size_t i = 0; files && files[i]; i++) {
        struct stat st;
        if (stat(files[i], &st) < 0)
            return fail(c, n, path, "%s: %s", files[i], strerror(errno));
        if (st.st_mode & 077)
            return fail(c, n, path, "%s is readable by group or others (mode %04o); chmod 600 it",
                        files[i], (unsigned)(st.st_mode & 07777));
    }
    return 0;
}

static int parse_sandbox(ctx_t *c, const yaml_node_t *n, const char *path, nx_dept_conf_t *d) {
    const char *s = scalar(n);
    if (s) {
        if (!strcmp(s, "strict"))
            d->sandbox = true;
        else if (!strcmp(s, "none"))
            d->sandbox = false;
        else
            return fail(c, n, path, "unknown profile '%s' (strict, none)", s);
        return 0;
    }
    if (n->type != YAML_MAPPING_NODE)
        return fail(c, n, path, "expected strict, none, or a mapping (profile, net, ro, rw, "
                                "mem, pids, cpu)");
    yaml_node_t *k, *v;
    FOR_PAIRS(c, n, k, v) {
        const char *key = scalar(k);
        char fpath[300];
        snprintf(fpath, sizeof fpath, "%s.%s", path, key ? key : "?");
        int rc = 0;
        uint64_t u;
        if (key && !strcmp(key, "profile"))
            rc = parse_sandbox(c, v, fpath, d);
        else if (key && !strcmp(key, "net")) {
            const char *net = scalar(v);
            if (net && !strcmp(net, "none"))
                d->net_host = false;
            else if (net && !strcmp(net, "host"))
                d->net_host = true;
            else if (net && !strcmp(net, "allow"))
                d->net_host = false; /* the list comes with 'allow' */
            else
                return fail(c, v, fpath, "expected none, host or allow (with an 'allow' list)");
        } else if (key && !strcmp(key, "allow")) {
            if (v->type != YAML_SEQUENCE_NODE)
                return fail(c, v, fpath, "expected a list of HOST:PORT");
            size_t cnt = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
            if (cnt == 0 || cnt > 16)
                return fail(c, v, fpath, "expected 1 to 16 HOST:PORT entries");
            d->net_allow = calloc(cnt + 1, sizeof(char *));
            if (!d->net_allow)
                return -ENOMEM;
            for (size_t i = 0; i < cnt; i++) {
                yaml_node_t *it = yaml_document_get_node(c->doc, v->data.sequence.items.start[i]);
                const char *e = scalar(it);
                const char *colon = e ? strrchr(e, ':') : NULL;
                if (!colon || colon == e || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1))
                    return fail(c, it, fpath, "'%s' is not HOST:PORT", e ? e : "");
                d->net_allow[i] = strdup(e);
            }
        } else if (key && !strcmp(key, "ro"))
            rc = get_paths(c, v, fpath, &d->sandbox_ro);
        else if (key && !strcmp(key, "rw"))
            rc = get_paths(c, v, fpath, &d->sandbox_rw);
        else if (key && !strcmp(key, "mem"))
            rc = get_size(c, v, fpath, &d->sandbox_mem);
        else if (key && !strcmp(key, "pids")) {
            rc = get_uint(c, v, fpath, 1, 1000000, &u);
            d->sandbox_pids = u;
        } else if (key && !strcmp(key, "cpu")) {
            rc = get_uint(c, v, fpath, 1, 100000, &u);
            d->sandbox_cpu = (uint32_t)u;
        } else if (key && !strcmp(key, "env"))
            rc = get_env_names(c, v, fpath, &d->credential_env);
        else if (key && !strcmp(key, "credential_files")) {
            rc = get_paths(c, v, fpath, &d->credential_files);
            if (rc == 0)
                rc = check_private(c, v, fpath, d->credential_files);
        } else
            return fail(c, k, fpath, "unknown key (known: profile, net, allow, ro, rw, mem, pids, "
                                     "cpu, env, credential_files)");
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int parse_dept(ctx_t *c, nx_company_t *co, const yaml_node_t *kn, const yaml_node_t *n) {
    const char *name = scalar(kn);
    char path[128];
    snprintf(path, sizeof path, "departments.%s", name ? name : "?");
    if (!name || !nx_name_ok(name))
        return fail(c, kn, path, "department name must be 1-64 of a-z 0-9 . _ -");
    if (nx_company_dept(co, name) >= 0)
        return fail(c, kn, path, "department is defined twice");
    if (n->type != YAML_MAPPING_NODE)
        return fail(c, n, path, "expected a mapping (agent, employees, ...)");
    nx_dept_conf_t *d = realloc(co->depts, (co->ndepts + 1) * sizeof *d);
    if (!d)
        return -ENOMEM;
    co->depts = d;
    size_t idx = co->ndepts++;
    d = &co->depts[idx];
    memset(d, 0, sizeof *d);
    d->name = strdup(name);
    d->line = (int)kn->start_mark.line + 1;
    d->capacity = 1;
    d->max_attempts = 3;
    d->retry_initial_ms = 1000;
    d->retry_multiplier = 2.0;
    d->retry_max_ms = 60000;
    d->strategy = NX_ONE_FOR_ONE;
    d->intensity = 5;
    d->period_ms = 30000;
    d->restart = NX_PERMANENT;
    d->shutdown_ms = 5000;
    d->sandbox = true;
    d->agent.kind = NX_AGENT_SIM;
    d->agent.max_output = 1u << 20;
    d->agent.seed = 1;
    yaml_node_t *k, *v, *emps = NULL;
    bool have_agent = false;
    FOR_PAIRS(c, n, k, v) {
        const char *key = scalar(k);
        char fpath[200];
        snprintf(fpath, sizeof fpath, "%s.%s", path, key ? key : "?");
        uint64_t u;
        int rc = 0;
        if (!key)
            return fail(c, k, path, "keys must be strings");
        if (!strcmp(key, "agent")) {
            rc = parse_agent(c, v, path, &co->depts[idx].agent);
            have_agent = true;
        } else if (!strcmp(key, "role")) {
            rc = get_str(c, v, fpath, &co->depts[idx].role);
            if (rc == 0 && !nx_name_ok(co->depts[idx].role))
                return fail(c, v, fpath, "a role is one word of a-z 0-9 . _ - (product, "
                                         "engineering, qa, ...)");
        } else if (!strcmp(key, "employees"))
            emps = v;
        else if (!strcmp(key, "capacity")) {
            rc = get_uint(c, v, fpath, 1, 256, &u);
            co->depts[idx].capacity = (uint32_t)u;
        } else if (!strcmp(key, "max_attempts")) {
            rc = get_uint(c, v, fpath, 1, 1000, &u);
            co->depts[idx].max_attempts = (uint32_t)u;
        } else if (!strcmp(key, "retry"))
            rc = parse_retry(c, v, fpath, &co->depts[idx]);
        else if (!strcmp(key, "timeout"))
            rc = parse_timeout(c, v, fpath, &co->depts[idx]);
        else if (!strcmp(key, "supervision"))
            rc = parse_supervision(c, v, fpath, &co->depts[idx]);
        else if (!strcmp(key, "sandbox"))
            rc = parse_sandbox(c, v, fpath, &co->depts[idx]);
        else
            return fail(c, k, fpath,
                        "unknown key (known: role, agent, employees, capacity, max_attempts, retry, "
                        "timeout, supervision, sandbox)");
        if (rc < 0)
            return rc;
    }
    if (!have_agent)
        return fail(c, kn, path, "'agent' is missing");
    char epath[200];
    snprintf(epath, sizeof epath, "%s.employees", path);
    if (!emps)
        return fail(c, kn, path, "'employees' is missing (a count or a list of names)");
    if (emps->type == YAML_SCALAR_NODE) {
        uint64_t cnt;
        int rc = get_uint(c, emps, epath, 0, 1024, &cnt);
        if (rc < 0)
            return rc;
        for (uint64_t i = 1; i <= cnt; i++) {
            char ename[NX_PROTO_MAX_NAME + 16];
            snprintf(ename, sizeof ename, "%s-%llu", name, (unsigned long long)i);
            if ((rc = add_employee(c, co, emps, epath, ename, idx,
                                   co->depts[idx].restart)) < 0)
                return rc;
        }
    } else if (emps->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = emps->data.sequence.items.start;
             it < emps->data.sequence.items.top; it++) {
            yaml_node_t *en = yaml_document_get_node(c->doc, *it);
            const char *ename = scalar(en);
            nx_restart_t restart = co->depts[idx].restart;
            if (en->type == YAML_MAPPING_NODE) {
                yaml_node_t *ek, *ev;
                FOR_PAIRS(c, en, ek, ev) {
                    const char *ekey = scalar(ek);
                    int rc = 0;
                    if (ekey && !strcmp(ekey, "name"))
                        ename = scalar(ev);
                    else if (ekey && !strcmp(ekey, "restart"))
                        rc = get_restart(c, ev, epath, &restart);
                    else
                        return fail(c, ek, epath, "unknown key '%s' (known: name, restart)",
                                    ekey ? ekey : "?");
                    if (rc < 0)
                        return rc;
                }
            }
            if (!ename)
                return fail(c, en, epath, "each employee is a name or {name, restart}");
            int rc = add_employee(c, co, en, epath, ename, idx, restart);
            if (rc < 0)
                return rc;
        }
    } else
        return fail(c, emps, epath, "expected a count or a list of names");
    return 0;
}

/* Appends the department called `name` as the workflow's next stage. */
static int add_stage(ctx_t *c, nx_company_t *co, nx_workflow_conf_t *w, const yaml_node_t *at,
                     const char *path, const char *name) {
    int d = nx_company_dept(co, name);
    if (d < 0)
        return fail(c, at, path, "stage '%s' is not a department", name);
    size_t *more = realloc(w->stages, (w->nstages + 1) * sizeof *more);
    if (!more)
        return -ENOMEM;
    w->stages = more;
    w->stages[w->nstages++] = (size_t)d;
    return 0;
}

/* "feature: product -> engineering -> qa", or a mapping with stages (a
 * list or that arrow string) and max_rejects. */
static int parse_workflow(ctx_t *c, nx_company_t *co, const yaml_node_t *kn,
                          const yaml_node_t *n) {
    const char *name = scalar(kn);
    char path[128];
    snprintf(path, sizeof path, "workflows.%s", name ? name : "?");
    if (!name || !nx_name_ok(name))
        return fail(c, kn, path, "workflow name must be 1-64 of a-z 0-9 . _ -");
    if (nx_company_workflow(co, name))
        return fail(c, kn, path, "workflow is defined twice");
    nx_workflow_conf_t *w = realloc(co->workflows, (co->nworkflows + 1) * sizeof *w);
    if (!w)
        return -ENOMEM;
    co->workflows = w;
    w = &co->workflows[co->nworkflows++];
    memset(w, 0, sizeof *w);
    w->name = strdup(name);
    w->max_rejects = 3;
    const yaml_node_t *stages = n;
    if (n->type == YAML_MAPPING_NODE) {
        stages = NULL;
        yaml_node_t *k, *v;
        FOR_PAIRS(c, n, k, v) {
            const char *key = scalar(k);
            char fpath[200];
            uint64_t u;
            snprintf(fpath, sizeof fpath, "%s.%s", path, key ? key : "?");
            if (key && !strcmp(key, "stages"))
                stages = v;
            else if (key && !strcmp(key, "max_rejects")) {
                int rc = get_uint(c, v, fpath, 0, 100, &u);
                if (rc < 0)
                    return rc;
                w->max_rejects = (uint32_t)u;
            } else
                return fail(c, k, fpath, "unknown key (known: stages, max_rejects)");
        }
        if (!stages)
            return fail(c, n, path, "'stages' is missing");
    }
    char spath[160];
    snprintf(spath, sizeof spath, "%s.stages", path);
    if (stages->type == YAML_SCALAR_NODE) {
        char *text = strdup(scalar(stages)), *save = NULL;
        if (!text)
            return -ENOMEM;
        int rc = 0;
        for (char *arrow = strstr(text, "->"); arrow; arrow = strstr(arrow, "->"))
            arrow[0] = arrow[1] = ' ';
        for (char *tok = strtok_r(text, " \t", &save); tok && rc == 0;
             tok = strtok_r(NULL, " \t", &save))
            rc = add_stage(c, co, w, stages, spath, tok);
        free(text);
        if (rc < 0)
            return rc;
    } else if (stages->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = stages->data.sequence.items.start;
             it < stages->data.sequence.items.top; it++) {
            yaml_node_t *sn = yaml_document_get_node(c->doc, *it);
            if (!scalar(sn))
                return fail(c, sn, spath, "a stage is a department name");
            int rc = add_stage(c, co, w, sn, spath, scalar(sn));
            if (rc < 0)
                return rc;
        }
    } else
        return fail(c, stages, spath, "expected 'a -> b -> c' or a list of departments");
    if (w->nstages == 0)
        return fail(c, stages, spath, "a workflow needs at least one stage");
    return 0;
}

static int parse_root(ctx_t *c, nx_company_t *co, const yaml_node_t *root) {
    if (!root)
        return fail(c, NULL, "(document)", "the file is empty");
    if (root->type != YAML_MAPPING_NODE)
        return fail(c, root, "(document)", "expected a mapping with company and departments");
    yaml_node_t *k, *v, *depts = NULL, *workflows = NULL;
    FOR_PAIRS(c, root, k, v) {
        const char *key = scalar(k);
        int rc = 0;
        if (!key)
            return fail(c, k, "(document)", "keys must be strings");
        if (!strcmp(key, "company")) {
            rc = get_str(c, v, "company", &co->name);
            if (rc == 0 && !nx_name_ok(co->name))
                return fail(c, v, "company", "name must be 1-64 of a-z 0-9 . _ -");
        } else if (!strcmp(key, "departments"))
            depts = v;
        else if (!strcmp(key, "workflows"))
            workflows = v;
        else if (!strcmp(key, "repo")) {
            char *repo = NULL;
            rc = get_str(c, v, "repo", &repo);
            if (rc == 0) {
                /* Relative to the company file. */
                char buf[PATH_MAX * 2];
                if (repo[0] == '/')
                    snprintf(buf, sizeof buf, "%s", repo);
                else {
                    const char *slash = strrchr(co->path, '/');
                    snprintf(buf, sizeof buf, "%.*s/%s", (int)(slash - co->path), co->path, repo);
                }
                char abs[PATH_MAX];
                struct stat st;
                if (!realpath(buf, abs) || stat(abs, &st) < 0 || !S_ISDIR(st.st_mode)) {
                    free(repo);
                    return fail(c, v, "repo", "'%s' is not a folder", buf);
                }
                char git[PATH_MAX + 8];
                snprintf(git, sizeof git, "%s/.git", abs);
                if (access(git, F_OK) < 0) {
                    free(repo);
                    return fail(c, v, "repo", "'%s' is not a git repository (no .git)", abs);
                }
                co->repo = strdup(abs);
            }
            free(repo);
        } else if (!strcmp(key, "worktree_retention"))
            rc = get_duration(c, v, "worktree_retention", &co->worktree_retention_ms);
        else if (!strcmp(key, "ceo")) {
            if (v->type != YAML_MAPPING_NODE)
                return fail(c, v, "ceo", "expected a mapping");
            yaml_node_t *ck, *cv;
            FOR_PAIRS(c, v, ck, cv) {
                const char *ckey = scalar(ck);
                char fpath[128];
                uint64_t u;
                snprintf(fpath, sizeof fpath, "ceo.%s", ckey ? ckey : "?");
                if (!ckey)
                    return fail(c, ck, "ceo", "keys must be strings");
                if (!strcmp(ckey, "endpoint"))
                    rc = get_str(c, cv, fpath, &co->ceo_endpoint);
                else if (!strcmp(ckey, "events"))
                    rc = get_str(c, cv, fpath, &co->events_endpoint);
                else if (!strcmp(ckey, "heartbeat"))
                    rc = get_duration(c, cv, fpath, &co->heartbeat_ms);
                else if (!strcmp(ckey, "ask_timeout"))
                    rc = get_duration(c, cv, fpath, &co->ask_timeout_ms);
                else if (!strcmp(ckey, "liveness")) {
                    rc = get_uint(c, cv, fpath, 1, 100, &u);
                    co->liveness = (uint32_t)u;
                } else
                    return fail(c, ck, fpath,
                                "unknown key (known: endpoint, events, heartbeat, liveness, "
                                "ask_timeout)");
                if (rc < 0)
                    return rc;
            }
            if (co->heartbeat_ms < 10 || co->heartbeat_ms > 600000)
                return fail(c, v, "ceo.heartbeat", "must be between 10ms and 10m");
        } else if (!strcmp(key, "ledger")) {
            if (v->type != YAML_MAPPING_NODE)
                return fail(c, v, "ledger", "expected a mapping");
            yaml_node_t *lk, *lv;
            FOR_PAIRS(c, v, lk, lv) {
                const char *lkey = scalar(lk);
                if (lkey && !strcmp(lkey, "sync")) {
                    const char *s = scalar(lv);
                    if (s && !strcmp(s, "full"))
                        co->sync_full = true;
                    else if (s && !strcmp(s, "normal"))
                        co->sync_full = false;
                    else
                        return fail(c, lv, "ledger.sync", "expected 'full' or 'normal'");
                } else
                    return fail(c, lk, "ledger", "unknown key '%s' (known: sync)",
                                lkey ? lkey : "?");
            }
        } else
            return fail(c, k, key, "unknown key (known: company, ceo, ledger, departments, "
                                   "workflows, repo, worktree_retention)");
        if (rc < 0)
            return rc;
    }
    if (!co->name)
        return fail(c, root, "company", "'company' (the company's name) is missing");
    if (!depts)
        return fail(c, root, "departments", "'departments' is missing");
    if (depts->type != YAML_MAPPING_NODE || depts->data.mapping.pairs.top ==
                                                depts->data.mapping.pairs.start)
        return fail(c, depts, "departments", "expected a mapping of at least one department");
    FOR_PAIRS(c, depts, k, v) {
        int rc = parse_dept(c, co, k, v);
        if (rc < 0)
            return rc;
    }
    if (workflows && workflows->type != YAML_MAPPING_NODE)
        return fail(c, workflows, "workflows", "expected a mapping of name: stages");
    if (workflows)
        FOR_PAIRS(c, workflows, k, v) {
            int rc = parse_workflow(c, co, k, v);
            if (rc < 0)
                return rc;
        }
    return 0;
}

int nx_company_load(const char *path, nx_company_t **ret_company, char *err, size_t errlen) {
    int rc = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        rc = -errno;
        snprintf(err, errlen, "%s: cannot open company file: %s", path, strerror(errno));
        return rc;
    }
    nx_company_t *co = calloc(1, sizeof *co);
    yaml_parser_t parser;
    yaml_document_t doc;
    bool have_doc = false;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!co) {
        rc = -ENOMEM;
        goto out;
    }
    co->heartbeat_ms = 1000;
    co->ask_timeout_ms = 30000;
    co->liveness = 3;
    co->sync_full = true;
    co->worktree_retention_ms = 24 * 3600 * 1000;
    char abs[PATH_MAX];
    co->path = strdup(realpath(path, abs) ? abs : path);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "%s:%zu: YAML syntax error: %s", path,
                 parser.problem_mark.line + 1, parser.problem ? parser.problem : "unknown");
        rc = NX_ECONFIG;
        goto out;
    }
    have_doc = true;
    ctx_t c = {path, &doc, err, errlen};
    rc = parse_root(&c, co, yaml_document_get_root_node(&doc));
    if (rc == -ENOMEM)
        snprintf(err, errlen, "%s: out of memory", path);
out:
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    if (rc < 0)
        nx_company_destroy(&co);
    else
        *ret_company = co;
    return rc;
}

void nx_company_destroy(nx_company_t **self_p) {
    if (!self_p || !*self_p)
        return;
    nx_company_t *co = *self_p;
    for (size_t i = 0; i < co->ndepts; i++) {
        free(co->depts[i].name);
        if (co->depts[i].agent.command)
            for (char **a = co->depts[i].agent.command; *a; a++)
                free(*a);
        free(co->depts[i].agent.command);
        free(co->depts[i].agent.output_prefix);
        free(co->depts[i].agent.binary);
        free(co->depts[i].agent.model);
        free(co->depts[i].agent.permission_mode);
        free(co->depts[i].role);
        char **lists[] = {co->depts[i].sandbox_ro, co->depts[i].sandbox_rw,
                          co->depts[i].credential_env, co->depts[i].credential_files,
                          co->depts[i].net_allow, co->depts[i].agent.allowed_tools,
                          co->depts[i].agent.args};
        for (int l = 0; l < 7; l++) {
            if (lists[l])
                for (char **a = lists[l]; *a; a++)
                    free(*a);
            free(lists[l]);
        }
    }
    for (size_t i = 0; i < co->nemployees; i++)
        free(co->employees[i].name);
    for (size_t i = 0; i < co->nworkflows; i++) {
        free(co->workflows[i].name);
        free(co->workflows[i].stages);
    }
    free(co->workflows);
    free(co->repo);
    free(co->depts);
    free(co->employees);
    free(co->path);
    free(co->name);
    free(co->ceo_endpoint);
    free(co->events_endpoint);
    free(co);
    *self_p = NULL;
}

const char *nx_strategy_name(nx_strategy_t s) {
    static const char *const names[] = {"one_for_one", "one_for_all", "rest_for_one"};
    return (unsigned)s <= NX_REST_FOR_ONE ? names[s] : "?";
}

const char *nx_restart_name(nx_restart_t r) {
    static const char *const names[] = {"permanent", "transient", "temporary"};
    return (unsigned)r <= NX_TEMPORARY ? names[r] : "?";
}

int nx_company_dept(const nx_company_t *self, const char *name) {
    for (size_t i = 0; i < self->ndepts; i++)
        if (!strcmp(self->depts[i].name, name))
            return (int)i;
    return -1;
}

const nx_workflow_conf_t *nx_company_workflow(const nx_company_t *self, const char *name) {
    for (size_t i = 0; name && i < self->nworkflows; i++)
        if (!strcmp(self->workflows[i].name, name))
            return &self->workflows[i];
    return NULL;
}

int nx_company_employee(const nx_company_t *self, const char *name) {
    for (size_t i = 0; i < self->nemployees; i++)
        if (!strcmp(self->employees[i].name, name))
            return (int)i;
    return -1;
}
