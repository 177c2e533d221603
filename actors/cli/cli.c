/*  cli.c - the `nexus` command line.
 *
 *  Server verbs (up, ceo, node, employee) start actors; client verbs
 *  (submit, status, wait, tasks, ps, events, down) are thin clients of the
 *  CEO. Every query verb takes --json: one JSON object, or one object per
 *  line for lists and streams. Errors go to stderr as "nexus VERB: what:
 *  cause" with the exit codes of nx_cli.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nx_agents.h"
#include "nx_ceo.h"
#include "nx_cli.h"
#include "nx_client.h"
#include "nx_employee.h"
#include "nx_node.h"
#include "nx_runtime.h"
#include "nx_sandbox.h"

#define CALL_TIMEOUT_MS 10000

typedef struct {
    const char *verb;           /* the subcommand, for messages */
    const char *company_arg;    /* --company or the positional file */
    const char *home_arg;       /* --home */
    const char *ceo_arg;        /* --ceo ENDPOINT */
    bool json;                  /* --json */
    nx_company_t *company;      /* loaded, may be NULL for client verbs */
    nx_home_t home;
    char exe[PATH_MAX];         /* this binary */
} cli_t;

static void die_msg(cli_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void die_msg(cli_t *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "nexus %s: ", c->verb);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- locating the company ---- */

static const char *find_company_file(const char *given) {
    if (given)
        return given;
    const char *env = getenv("NEXUS_COMPANY");
    if (env && *env)
        return env;
    static const char *const names[] = {"company.yaml", "company.yml", "nexus.yaml", NULL};
    for (int i = 0; names[i]; i++)
        if (access(names[i], F_OK) == 0)
            return names[i];
    return NULL;
}

/* Loads the company file and the home. `required`: server verbs need the
 * file; client verbs can do with --home or --ceo alone. */
static int setup(cli_t *c, bool required, bool create_home) {
    const char *file = find_company_file(c->company_arg);
    char err[1024];
    if (file) {
        int rc = nx_company_load(file, &c->company, err, sizeof err);
        if (rc < 0) {
            fprintf(stderr, "nexus %s: %s\n", c->verb, err);
            return NX_EXIT_USAGE;
        }
    } else if (required || (!c->home_arg && !getenv("NEXUS_HOME") && !c->ceo_arg)) {
        die_msg(c, "no company file here (looked for company.yaml, company.yml, nexus.yaml); "
                   "pass --company FILE%s",
                required ? "" : ", --home DIR or --ceo ENDPOINT");
        return NX_EXIT_USAGE;
    }
    int rc = nx_home_resolve(c->home_arg, c->company, create_home, &c->home);
    if (rc < 0) {
        die_msg(c, "home folder: %s", nx_strerror(rc));
        return NX_EXIT_USAGE;
    }
    if (c->ceo_arg)
        snprintf(c->home.ceo, sizeof c->home.ceo, "%s", c->ceo_arg);
    return 0;
}

static int connect_ceo(cli_t *c, nx_client_t **ret) {
    int rc = nx_client_new(c->home.ceo, ret);
    if (rc == NX_EUNREACH) {
        die_msg(c, "no company is running at %s (start it with 'nexus up')", c->home.ceo);
        return NX_EXIT_UNREACH;
    }
    if (rc < 0) {
        die_msg(c, "cannot connect to %s: %s", c->home.ceo, nx_strerror(rc));
        return NX_EXIT_UNREACH;
    }
    return 0;
}

/* For client verbs: the company (or --home/--ceo), then a connection. */
static int open_ceo(cli_t *c, nx_client_t **ret) {
    int rc = setup(c, false, false);
    return rc ? rc : connect_ceo(c, ret);
}

/* Reports a failed call; returns the exit code for it. */
static int call_failed(cli_t *c, int rc, nx_msg_t *reply) {
    if (rc == NX_EREMOTE && reply) {
        const char *code = nx_msg_str(reply, "code");
        die_msg(c, "%s", nx_msg_str(reply, "message"));
        return code && !strcmp(code, "timeout") ? NX_EXIT_TIMEOUT : NX_EXIT_FAIL;
    }
    if (rc == NX_EUNREACH) {
        die_msg(c, "the CEO at %s did not answer (is the company up? 'nexus up')", c->home.ceo);
        return NX_EXIT_UNREACH;
    }
    die_msg(c, "%s", nx_strerror(rc));
    return NX_EXIT_FAIL;
}

/* ---- JSON and text output ---- */

/* A JSON string from bytes that may not be UTF-8: invalid bytes become '?'. */
static json_t *json_bytes(const void *data, size_t len) {
    json_t *s = json_stringn(data ? data : "", data ? len : 0);
    if (s)
        return s;
    char *copy = malloc(len + 1);
    if (!copy)
        return json_null();
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = ((const unsigned char *)data)[i];
        copy[i] = ch >= 0x80 || ch == 0 ? '?' : (char)ch;
    }
    s = json_stringn(copy, len);
    free(copy);
    return s ? s : json_null();
}

static json_t *task_json(const nx_msg_t *m) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer((json_int_t)nx_msg_uint(m, "task", 0)));
    json_object_set_new(o, "dept", json_string(nx_msg_str(m, "dept")));
    json_object_set_new(o, "state", json_string(nx_msg_str(m, "state")));
    json_object_set_new(o, "priority", json_integer(nx_msg_int(m, "priority", 0)));
    json_object_set_new(o, "attempts", json_integer((json_int_t)nx_msg_uint(m, "attempts", 0)));
    json_object_set_new(o, "max_attempts",
                        json_integer((json_int_t)nx_msg_uint(m, "max_attempts", 0)));
    const char *emp = nx_msg_str(m, "employee");
    json_object_set_new(o, "employee", emp ? json_string(emp) : json_null());
    json_object_set_new(o, "exit_code", nx_msg_has(m, "exit_code")
                                            ? json_integer(nx_msg_int(m, "exit_code", 0))
                                            : json_null());
    const char *err = nx_msg_str(m, "error");
    json_object_set_new(o, "error", err ? json_bytes(err, strlen(err)) : json_null());
    size_t len;
    const void *in = nx_msg_bin(m, "input", &len);
    json_object_set_new(o, "input", in ? json_bytes(in, len) : json_null());
    const void *out = nx_msg_bin(m, "output", &len);
    json_object_set_new(o, "output", out ? json_bytes(out, len) : json_null());
    const char *key = nx_msg_str(m, "idem_key");
    json_object_set_new(o, "idempotency_key", key ? json_string(key) : json_null());
    json_object_set_new(o, "created_ms", json_integer((json_int_t)nx_msg_uint(m, "created_ms", 0)));
    json_object_set_new(o, "started_ms", json_integer((json_int_t)nx_msg_uint(m, "started_ms", 0)));
    json_object_set_new(o, "finished_ms",
                        json_integer((json_int_t)nx_msg_uint(m, "finished_ms", 0)));
    if (nx_msg_has(m, "run_after_ms"))
        json_object_set_new(o, "run_after_ms",
                            json_integer((json_int_t)nx_msg_uint(m, "run_after_ms", 0)));
    const char *uints[] = {"parent", "stage", "rejects", "tokens_in", "tokens_out",
                           "cost_microusd", "depth"};
    for (size_t i = 0; i < sizeof uints / sizeof uints[0]; i++)
        if (nx_msg_has(m, uints[i]))
            json_object_set_new(o, uints[i], json_integer((json_int_t)nx_msg_uint(m, uints[i], 0)));
    const char *strs[] = {"workflow", "verdict", "workspace", "branch", "base"};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (nx_msg_str(m, strs[i]))
            json_object_set_new(o, strs[i], json_string(nx_msg_str(m, strs[i])));
    if (nx_msg_str(m, "commits")) {
        json_t *h = json_array();
        char *copy = strdup(nx_msg_str(m, "commits")), *save = NULL;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
            json_array_append_new(h, json_bytes(line, strlen(line)));
        free(copy);
        json_object_set_new(o, "commits", h);
    }
    if (nx_msg_str(m, "history")) {
        json_t *h = json_array();
        char *copy = strdup(nx_msg_str(m, "history")), *save = NULL;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
            json_array_append_new(h, json_bytes(line, strlen(line)));
        free(copy);
        json_object_set_new(o, "history", h);
    }
    return o;
}

static void print_json(json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (s) {
        puts(s);
        free(s);
    }
    json_decref(o);
}

static void print_task(const nx_msg_t *m) {
    uint64_t started = nx_msg_uint(m, "started_ms", 0), finished = nx_msg_uint(m, "finished_ms", 0);
    printf("task %llu (%s): %s", (unsigned long long)nx_msg_uint(m, "task", 0),
           nx_msg_str(m, "dept"), nx_msg_str(m, "state"));
    printf(", %llu of %llu attempt(s)", (unsigned long long)nx_msg_uint(m, "attempts", 0),
           (unsigned long long)nx_msg_uint(m, "max_attempts", 0));
    if (nx_msg_str(m, "employee"))
        printf(", last on %s", nx_msg_str(m, "employee"));
    if (started && finished >= started)
        printf(", took %llu ms", (unsigned long long)(finished - started));
    if (nx_msg_has(m, "exit_code"))
        printf(", exit %lld", (long long)nx_msg_int(m, "exit_code", 0));
    putchar('\n');
    if (nx_msg_has(m, "run_after_ms")) {
        int64_t in = (int64_t)nx_msg_uint(m, "run_after_ms", 0) - nx_now_ms();
        printf("retry:  in %lld ms\n", (long long)(in > 0 ? in : 0));
    }
    if (nx_msg_str(m, "workflow"))
        printf("workflow: %s, stage %llu, %llu rejection(s)\n", nx_msg_str(m, "workflow"),
               (unsigned long long)nx_msg_uint(m, "stage", 0) + 1,
               (unsigned long long)nx_msg_uint(m, "rejects", 0));
    if (nx_msg_has(m, "parent"))
        printf("part of: task %llu\n", (unsigned long long)nx_msg_uint(m, "parent", 0));
    if (nx_msg_str(m, "verdict"))
        printf("verdict: %s\n", nx_msg_str(m, "verdict"));
    if (nx_msg_has(m, "tokens_in") || nx_msg_has(m, "tokens_out") ||
        nx_msg_has(m, "cost_microusd"))
        printf("usage:  %llu tokens in, %llu out, $%.4f\n",
               (unsigned long long)nx_msg_uint(m, "tokens_in", 0),
               (unsigned long long)nx_msg_uint(m, "tokens_out", 0),
               (double)nx_msg_uint(m, "cost_microusd", 0) / 1e6);
    if (nx_msg_str(m, "branch"))
        printf("branch: %s (from %.12s)%s%s\n", nx_msg_str(m, "branch"),
               nx_msg_str(m, "base") ? nx_msg_str(m, "base") : "?",
               nx_msg_str(m, "workspace") ? ", worktree " : "",
               nx_msg_str(m, "workspace") ? nx_msg_str(m, "workspace") : "");
    if (nx_msg_str(m, "commits")) {
        printf("commits:\n");
        const char *h = nx_msg_str(m, "commits");
        while (*h) {
            const char *nl = strchr(h, '\n');
            int n = nl ? (int)(nl - h) : (int)strlen(h);
            printf("  %.*s\n", n, h);
            h += n + (nl ? 1 : 0);
        }
    }
    if (nx_msg_str(m, "error"))
        printf("error:  %s\n", nx_msg_str(m, "error"));
    if (nx_msg_str(m, "history")) {
        const char *h = nx_msg_str(m, "history");
        printf("history:\n");
        while (*h) {
            const char *nl = strchr(h, '\n');
            int n = nl ? (int)(nl - h) : (int)strlen(h);
            printf("  %.*s\n", n, h);
            h += n + (nl ? 1 : 0);
        }
    }
    size_t len;
    const char *out = nx_msg_bin(m, "output", &len);
    if (out && len) {
        printf("output: ");
        fwrite(out, 1, len, stdout);
        if (out[len - 1] != '\n')
            putchar('\n');
    }
}

/* ---- client verbs ---- */

enum { OPT_HOME = 1000, OPT_COMPANY, OPT_CEO, OPT_JSON };
#define COMMON_OPTS                                                                   \
    {"home", required_argument, 0, OPT_HOME}, {"company", required_argument, 0, OPT_COMPANY}, \
        {"ceo", required_argument, 0, OPT_CEO}, {"json", no_argument, 0, OPT_JSON}

static bool common_opt(cli_t *c, int opt) {
    switch (opt) {
    case OPT_HOME: c->home_arg = optarg; return true;
    case OPT_COMPANY: c->company_arg = optarg; return true;
    case OPT_CEO: c->ceo_arg = optarg; return true;
    case OPT_JSON: c->json = true; return true;
    default: return false;
    }
}

/* Parses a verb that has only the common options. */
static int common_only(cli_t *c, int argc, char **argv) {
    static const struct option opts[] = {COMMON_OPTS, {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1)
        if (!common_opt(c, opt))
            return -1;
    return 0;
}

static int read_file(const char *path, char **ret, size_t *ret_len) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f)
        return -errno;
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap) {
            if (cap >= NX_PROTO_MAX_STR * 2u)
                break;
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
            }
            buf = bigger;
        }
    }
    if (f != stdin)
        fclose(f);
    if (!buf)
        return -ENOMEM;
    buf[len] = '\0';
    *ret = buf;
    *ret_len = len;
    return 0;
}

typedef struct {
    const char *dept;
    const char *workflow;
    int64_t priority;
    const char *idem_key;
    uint64_t max_attempts;
    int64_t soft_ms, hard_ms;
} submit_opts_t;

static nx_msg_t *submit_msg(const submit_opts_t *o, const char *input, size_t len,
                            const char *key) {
    nx_msg_t *m = nx_msg_new(NX_MSG_SUBMIT);
    if (o->workflow)
        nx_msg_set_str(m, "workflow", o->workflow);
    else
        nx_msg_set_str(m, "dept", o->dept);
    nx_msg_set_bin(m, "input", input, len);
    if (o->priority)
        nx_msg_set_int(m, "priority", o->priority);
    if (key)
        nx_msg_set_str(m, "idem_key", key);
    if (o->max_attempts)
        nx_msg_set_uint(m, "max_attempts", o->max_attempts);
    if (o->soft_ms)
        nx_msg_set_uint(m, "soft_timeout_ms", (uint64_t)o->soft_ms);
    if (o->hard_ms)
        nx_msg_set_uint(m, "hard_timeout_ms", (uint64_t)o->hard_ms);
    return m;
}

static void print_submitted(cli_t *c, const nx_msg_t *r) {
    uint64_t id = nx_msg_uint(r, "task", 0);
    if (c->json) {
        json_t *o = json_object();
        json_object_set_new(o, "id", json_integer((json_int_t)id));
        json_object_set_new(o, "existing", json_boolean(nx_msg_bool(r, "existing", false)));
        print_json(o);
    } else
        printf("%llu\n", (unsigned long long)id);
}

/* --lines: one task per line, up to WINDOW submits in flight. */
static int submit_lines(cli_t *c, nx_client_t *cl, const submit_opts_t *o, char *text) {
    enum { WINDOW = 256 };
    size_t inflight = 0, failed = 0;
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    uint64_t n = 0;
    while (line || inflight) {
        while (line && inflight < WINDOW) {
            char key[300];
            if (o->idem_key)
                snprintf(key, sizeof key, "%s-%llu", o->idem_key, (unsigned long long)++n);
            nx_msg_t *m = submit_msg(o, line, strlen(line), o->idem_key ? key : NULL);
            int64_t rc = nx_client_send(cl, m);
            nx_msg_destroy(&m);
            if (rc < 0)
                return call_failed(c, (int)rc, NULL);
            inflight++;
            line = strtok_r(NULL, "\n", &save);
        }
        nx_msg_t *r = NULL;
        int rc = nx_client_recv(cl, CALL_TIMEOUT_MS, &r);
        if (rc < 0)
            return call_failed(c, rc, NULL);
        inflight--;
        if (nx_msg_type(r) == NX_MSG_SUBMITTED)
            print_submitted(c, r);
        else {
            failed++;
            die_msg(c, "%s", nx_msg_str(r, "message") ? nx_msg_str(r, "message") : "refused");
        }
        nx_msg_destroy(&r);
    }
    return failed ? NX_EXIT_FAIL : NX_EXIT_OK;
}

static int cmd_submit(cli_t *c, int argc, char **argv) {
    static const struct option opts[] = {{"dept", required_argument, 0, 'd'},
                                         {"workflow", required_argument, 0, 'w'},
                                         {"input-file", required_argument, 0, 'f'},
                                         {"priority", required_argument, 0, 'p'},
                                         {"idempotency-key", required_argument, 0, 'k'},
                                         {"max-attempts", required_argument, 0, 'a'},
                                         {"lines", no_argument, 0, 'l'},
                                         {"soft-timeout", required_argument, 0, 's'},
                                         {"hard-timeout", required_argument, 0, 'h'},
                                         COMMON_OPTS,
                                         {0, 0, 0, 0}};
    submit_opts_t o = {0};
    const char *file = NULL;
    bool lines = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "d:w:f:p:k:", opts, NULL)) != -1) {
        char *end;
        switch (opt) {
        case 'd': o.dept = optarg; break;
        case 'w': o.workflow = optarg; break;
        case 'f': file = optarg; break;
        case 'p':
            o.priority = strtoll(optarg, &end, 10);
            if (*end) {
                die_msg(c, "--priority: '%s' is not a whole number", optarg);
                return NX_EXIT_USAGE;
            }
            break;
        case 'k': o.idem_key = optarg; break;
        case 'a': o.max_attempts = strtoull(optarg, NULL, 10); break;
        case 'l': lines = true; break;
        case 's':
        case 'h':
            if (nx_parse_duration(optarg, opt == 's' ? &o.soft_ms : &o.hard_ms) < 0) {
                die_msg(c, "--%s-timeout: '%s' is not a duration (like 30s, 10m)",
                        opt == 's' ? "soft" : "hard", optarg);
                return NX_EXIT_USAGE;
            }
            break;
        default:
            if (!common_opt(c, opt))
                return NX_EXIT_USAGE;
        }
    }
    if (!o.dept == !o.workflow) {
        die_msg(c, "give --dept (which department gets the task) or --workflow (which "
                   "workflow runs it), one of them");
        return NX_EXIT_USAGE;
    }
    char *input = NULL;
    size_t len = 0;
    if (file) {
        int rc = read_file(file, &input, &len);
        if (rc < 0) {
            die_msg(c, "--input-file %s: %s", file, strerror(-rc));
            return NX_EXIT_USAGE;
        }
    } else if (optind < argc) {
        size_t cap = 1;
        for (int i = optind; i < argc; i++)
            cap += strlen(argv[i]) + 1;
        input = calloc(1, cap);
        for (int i = optind; i < argc; i++) {
            if (i > optind)
                strcat(input, " ");
            strcat(input, argv[i]);
        }
        len = strlen(input);
    } else if (lines) {
        read_file("-", &input, &len);
    } else {
        die_msg(c, "no task input: give it as text or with --input-file FILE (- for stdin)");
        return NX_EXIT_USAGE;
    }
    if (len > NX_PROTO_MAX_STR) {
        die_msg(c, "task input is %zu bytes; the limit is %u", len, NX_PROTO_MAX_STR);
        free(input);
        return NX_EXIT_USAGE;
    }
    nx_client_t *cl = NULL;
    int rc = open_ceo(c, &cl);
    if (rc == 0) {
        if (lines)
            rc = submit_lines(c, cl, &o, input);
        else {
            nx_msg_t *m = submit_msg(&o, input, len, o.idem_key), *r = NULL;
            int crc = nx_client_call(cl, m, CALL_TIMEOUT_MS, &r);
            if (crc < 0)
                rc = call_failed(c, crc, r);
            else
                print_submitted(c, r);
            nx_msg_destroy(&m);
            nx_msg_destroy(&r);
        }
    }
    free(input);
    nx_client_destroy(&cl);
    return rc;
}

static int parse_task_id(cli_t *c, const char *s, uint64_t *ret) {
    char *end;
    errno = 0;
    unsigned long long v = s ? strtoull(s, &end, 10) : 0;
    if (!s || errno || *end || v == 0 || s[0] == '-') {
        die_msg(c, "'%s' is not a task id (a positive number)", s ? s : "");
        return NX_EXIT_USAGE;
    }
    *ret = v;
    return 0;
}

/* Each item of a streamed reply. */
typedef void (*stream_fn)(cli_t *c, const nx_msg_t *item, void *arg);

/* Sends *req (destroyed) and hands each reply of `type` to fn, until the
 * END (or any other message). Returns 0, or the exit code of a failed call. */
static int stream_call(cli_t *c, nx_client_t *cl, nx_msg_t **req, nx_msg_type_t type,
                       stream_fn fn, void *arg) {
    int64_t id = nx_client_send(cl, *req);
    nx_msg_destroy(req);
    for (;;) {
        nx_msg_t *r = NULL;
        int crc = nx_client_recv_reply(cl, id, CALL_TIMEOUT_MS, &r);
        if (crc < 0) {
            int rc = call_failed(c, crc, r);
            nx_msg_destroy(&r);
            return rc;
        }
        bool item = nx_msg_type(r) == type;
        if (item)
            fn(c, r, arg);
        nx_msg_destroy(&r);
        if (!item)
            return 0;
    }
}

/* The task id at argv[optind], and a client connected to the CEO. */
static int task_and_ceo(cli_t *c, int argc, char **argv, uint64_t *ret_id, nx_client_t **ret_cl) {
    if (optind >= argc) {
        die_msg(c, "which task? give its id");
        return NX_EXIT_USAGE;
    }
    int rc = parse_task_id(c, argv[optind], ret_id);
    return rc ? rc : open_ceo(c, ret_cl);
}

/* status, wait, cancel, retry: one task id in, the task (after the change)
 * out. Only `wait` takes --timeout. */
static int cmd_task(cli_t *c, int argc, char **argv, nx_msg_type_t type) {
    bool wait = type == NX_MSG_WAIT;
    static const struct option opts[] = {{"timeout", required_argument, 0, 't'}, COMMON_OPTS,
                                         {0, 0, 0, 0}};
    int64_t timeout = 30000;
    int opt;
    while ((opt = getopt_long(argc, argv, "t:", opts, NULL)) != -1) {
        if (opt == 't' && wait) {
            if (nx_parse_duration(optarg, &timeout) < 0) {
                die_msg(c, "--timeout: '%s' is not a duration (like 30s, 2m)", optarg);
                return NX_EXIT_USAGE;
            }
        } else if (!common_opt(c, opt))
            return NX_EXIT_USAGE;
    }
    uint64_t id;
    nx_client_t *cl = NULL;
    int rc = task_and_ceo(c, argc, argv, &id, &cl);
    if (rc)
        return rc;
    nx_msg_t *m = nx_msg_new(type), *r = NULL;
    nx_msg_set_uint(m, "task", id);
    if (wait)
        nx_msg_set_uint(m, "timeout_ms", (uint64_t)timeout);
    int crc = nx_client_call(cl, m, (wait ? timeout : 0) + CALL_TIMEOUT_MS, &r);
    if (crc < 0)
        rc = call_failed(c, crc, r);
    else {
        if (c->json)
            print_json(task_json(r));
        else
            print_task(r);
        const char *state = nx_msg_str(r, "state");
        if (wait && strcmp(state, "succeeded") != 0)
            rc = NX_EXIT_FAIL;
    }
    nx_msg_destroy(&m);
    nx_msg_destroy(&r);
    nx_client_destroy(&cl);
    return rc;
}

static int cmd_stats(cli_t *c, int argc, char **argv) {
    if (common_only(c, argc, argv) < 0)
        return NX_EXIT_USAGE;
    nx_client_t *cl = NULL;
    int rc = open_ceo(c, &cl);
    if (rc)
        return rc;
    nx_msg_t *m = nx_msg_new(NX_MSG_STATS), *r = NULL;
    int crc = nx_client_call(cl, m, CALL_TIMEOUT_MS, &r);
    if (crc < 0)
        rc = call_failed(c, crc, r);
    else {
        static const char *const keys[] = {"messages", "commits", "submitted", "succeeded",
                                           "failed", "cancelled", "requeued", "stale_results",
                                           "events", "queued", "delayed", "running",
                                           "employees", "uptime_ms"};
        json_t *o = json_object();
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            if (c->json)
                json_object_set_new(o, keys[i], json_integer((json_int_t)nx_msg_uint(r, keys[i], 0)));
            else
                printf("%-14s %llu\n", keys[i], (unsigned long long)nx_msg_uint(r, keys[i], 0));
        }
        if (c->json)
            print_json(o);
        else
            json_decref(o);
    }
    nx_msg_destroy(&m);
    nx_msg_destroy(&r);
    nx_client_destroy(&cl);
    return rc;
}

typedef struct {
    uint64_t after, page, shown, limit;
} task_page_t;

/* One line (or JSON object) of `nexus tasks`. */
static void task_item(cli_t *c, const nx_msg_t *r, void *arg) {
    task_page_t *pg = arg;
    pg->page++;
    pg->after = nx_msg_uint(r, "task", pg->after);
    if (pg->limit && pg->shown >= pg->limit)
        return;
    pg->shown++;
    if (c->json)
        print_json(task_json(r));
    else {
        size_t len;
        const char *text = nx_msg_str(r, "error");
        if (!text)
            text = nx_msg_bin(r, "output", &len);
        char brief[61] = "";
        if (text) {
            snprintf(brief, sizeof brief, "%s", text);
            for (char *p = brief; *p; p++)
                if (*p == '\n' || *p == '\t')
                    *p = ' ';
        }
        printf("%-8llu %-14s %-10s %-8llu %-18s %s\n",
               (unsigned long long)nx_msg_uint(r, "task", 0), nx_msg_str(r, "dept"),
               nx_msg_str(r, "state"),
               (unsigned long long)nx_msg_uint(r, "attempts", 0),
               nx_msg_str(r, "employee") ? nx_msg_str(r, "employee") : "-", brief);
    }
}

static int cmd_tasks(cli_t *c, int argc, char **argv) {
    static const struct option opts[] = {{"state", required_argument, 0, 's'},
                                         {"dept", required_argument, 0, 'd'},
                                         {"limit", required_argument, 0, 'n'},
                                         COMMON_OPTS,
                                         {0, 0, 0, 0}};
    const char *state = NULL, *dept = NULL;
    uint64_t limit = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "s:d:n:", opts, NULL)) != -1) {
        if (opt == 's')
            state = optarg;
        else if (opt == 'd')
            dept = optarg;
        else if (opt == 'n')
            limit = strtoull(optarg, NULL, 10);
        else if (!common_opt(c, opt))
            return NX_EXIT_USAGE;
    }
    nx_task_state_t st;
    if (state && nx_task_state_from_name(state, &st) < 0) {
        die_msg(c, "--state: unknown state '%s' (queued, running, succeeded, failed, "
                   "cancelled, dead)",
                state);
        return NX_EXIT_USAGE;
    }
    nx_client_t *cl = NULL;
    int rc = open_ceo(c, &cl);
    if (rc)
        return rc;
    if (!c->json)
        printf("%-8s %-14s %-10s %-8s %-18s %s\n", "ID", "DEPT", "STATE", "ATTEMPTS", "EMPLOYEE",
               "OUTPUT/ERROR");
    task_page_t pg = {.limit = limit};
    for (;;) {
        nx_msg_t *m = nx_msg_new(NX_MSG_TASKS);
        if (state)
            nx_msg_set_str(m, "state", state);
        if (dept)
            nx_msg_set_str(m, "dept", dept);
        nx_msg_set_uint(m, "after", pg.after);
        nx_msg_set_uint(m, "limit", 1000);
        pg.page = 0;
        if ((rc = stream_call(c, cl, &m, NX_MSG_TASK_INFO, task_item, &pg)) != 0)
            break;
        if (pg.page < 1000 || (limit && pg.shown >= limit))
            break;
    }
    nx_client_destroy(&cl);
    return rc;
}

/* One line (or JSON object) of `nexus ps`. */
static void employee_item(cli_t *c, const nx_msg_t *r, void *arg) {
    if (c->json) {
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(nx_msg_str(r, "name")));
        json_object_set_new(o, "dept", json_string(nx_msg_str(r, "dept")));
        json_object_set_new(o, "state", json_string(nx_msg_str(r, "state")));
        json_object_set_new(o, "pid", json_integer((json_int_t)nx_msg_uint(r, "pid", 0)));
        json_object_set_new(o, "capacity",
                            json_integer((json_int_t)nx_msg_uint(r, "capacity", 0)));
        json_object_set_new(o, "busy", json_integer((json_int_t)nx_msg_uint(r, "busy", 0)));
        json_object_set_new(o, "done", json_integer((json_int_t)nx_msg_uint(r, "done", 0)));
        json_object_set_new(o, "failed", json_integer((json_int_t)nx_msg_uint(r, "failed", 0)));
        if (nx_msg_str(r, "note"))
            json_object_set_new(o, "note", json_string(nx_msg_str(r, "note")));
        if (nx_msg_str(r, "node"))
            json_object_set_new(o, "node", json_string(nx_msg_str(r, "node")));
        json_object_set_new(o, "current", nx_msg_has(r, "current")
                                              ? json_integer((json_int_t)nx_msg_uint(r, "current", 0))
                                              : json_null());
        print_json(o);
    } else {
        char cur[32] = "-";
        if (nx_msg_has(r, "current"))
            snprintf(cur, sizeof cur, "%llu", (unsigned long long)nx_msg_uint(r, "current", 0));
        printf("%-20s %-14s %-6s %-8llu %-6llu %-6llu %s%s%s\n", nx_msg_str(r, "name"),
               nx_msg_str(r, "dept"), nx_msg_str(r, "state"),
               (unsigned long long)nx_msg_uint(r, "pid", 0),
               (unsigned long long)nx_msg_uint(r, "done", 0),
               (unsigned long long)nx_msg_uint(r, "failed", 0), cur,
               nx_msg_str(r, "note") ? "  ! department: " : "",
               nx_msg_str(r, "note") ? nx_msg_str(r, "note") : "");
    }
}

static int cmd_ps(cli_t *c, int argc, char **argv) {
    if (common_only(c, argc, argv) < 0)
        return NX_EXIT_USAGE;
    nx_client_t *cl = NULL;
    int rc = open_ceo(c, &cl);
    if (rc)
        return rc;
    nx_msg_t *m = nx_msg_new(NX_MSG_PS);
    if (!c->json)
        printf("%-20s %-14s %-6s %-8s %-6s %-6s %s\n", "NAME", "DEPT", "STATE", "PID", "DONE",
               "FAILED", "CURRENT");
    rc = stream_call(c, cl, &m, NX_MSG_EMPLOYEE_INFO, employee_item, NULL);
    nx_client_destroy(&cl);
    return rc;
}

static void print_event(cli_t *c, const nx_msg_t *e) {
    if (c->json) {
        json_t *o = json_object();
        json_object_set_new(o, "seq", json_integer((json_int_t)nx_msg_uint(e, "seq", 0)));
        json_object_set_new(o, "ts_ms", json_integer((json_int_t)nx_msg_uint(e, "ts_ms", 0)));
        json_object_set_new(o, "topic", json_string(nx_msg_str(e, "topic")));
        if (nx_msg_has(e, "task"))
            json_object_set_new(o, "task", json_integer((json_int_t)nx_msg_uint(e, "task", 0)));
        const char *keys[] = {"employee", "dept", "state", "detail"};
        for (size_t i = 0; i < 4; i++)
            if (nx_msg_str(e, keys[i]))
                json_object_set_new(o, keys[i], json_bytes(nx_msg_str(e, keys[i]),
                                                           strlen(nx_msg_str(e, keys[i]))));
        print_json(o);
    } else {
        time_t secs = (time_t)(nx_msg_uint(e, "ts_ms", 0) / 1000);
        struct tm tm;
        localtime_r(&secs, &tm);
        printf("%02d:%02d:%02d #%-6llu %-18s", tm.tm_hour, tm.tm_min, tm.tm_sec,
               (unsigned long long)nx_msg_uint(e, "seq", 0), nx_msg_str(e, "topic"));
        if (nx_msg_has(e, "task"))
            printf(" task %llu", (unsigned long long)nx_msg_uint(e, "task", 0));
        if (nx_msg_str(e, "employee"))
            printf(" %s", nx_msg_str(e, "employee"));
        if (nx_msg_str(e, "detail"))
            printf(": %s", nx_msg_str(e, "detail"));
        putchar('\n');
    }
    fflush(stdout);
}

/* One event of the history; remembers its sequence number. */
static void event_item(cli_t *c, const nx_msg_t *r, void *arg) {
    *(uint64_t *)arg = nx_msg_uint(r, "seq", 0);
    print_event(c, r);
}

static int cmd_events(cli_t *c, int argc, char **argv) {
    static const struct option opts[] = {{"follow", no_argument, 0, 'f'},
                                         {"topic", required_argument, 0, 't'},
                                         {"task", required_argument, 0, 'T'},
                                         {"limit", required_argument, 0, 'n'},
                                         COMMON_OPTS,
                                         {0, 0, 0, 0}};
    bool follow = false;
    const char *topic = "";
    uint64_t limit = 100, task = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "ft:n:", opts, NULL)) != -1) {
        if (opt == 'T') {
            if (parse_task_id(c, optarg, &task))
                return NX_EXIT_USAGE;
        } else if (opt == 'f')
            follow = true;
        else if (opt == 't')
            topic = optarg;
        else if (opt == 'n')
            limit = strtoull(optarg, NULL, 10);
        else if (!common_opt(c, opt))
            return NX_EXIT_USAGE;
    }
    if (task && follow) {
        die_msg(c, "--task reads a task's story from the ledger; it does not combine with "
                   "--follow");
        return NX_EXIT_USAGE;
    }
    nx_client_t *cl = NULL;
    int rc = open_ceo(c, &cl);
    if (rc)
        return rc;
    zsock_t *sub = NULL;
    if (follow) {
        /* Subscribe before reading the history, then skip what the history
         * already showed: no event falls between the two. */
        sub = zsock_new(ZMQ_SUB);
        zsock_set_rcvhwm(sub, 100000);
        zsock_set_subscribe(sub, topic);
        zsock_connect(sub, "%s", c->home.events);
        zclock_sleep(100);
    }
    uint64_t last = 0;
    if (limit > 0) {
        nx_msg_t *m = nx_msg_new(NX_MSG_EVENTS);
        if (*topic)
            nx_msg_set_str(m, "topic", topic);
        if (task)
            nx_msg_set_uint(m, "task", task);
        nx_msg_set_uint(m, "limit", limit);
        if ((rc = stream_call(c, cl, &m, NX_MSG_EVENT, event_item, &last)) != 0)
            goto out;
    }
    while (follow && !zsys_interrupted) {
        zmq_pollitem_t item = {zsock_resolve(sub), 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 500) <= 0)
            continue;
        zmsg_t *zm = zmsg_recv(sub);
        if (!zm)
            break;
        zframe_t *body = zmsg_last(zm);
        nx_msg_t *e = NULL;
        if (zmsg_size(zm) == 2 &&
            nx_msg_decode(zframe_data(body), zframe_size(body), &e, NULL, NULL, 0) == 0 &&
            nx_msg_type(e) == NX_MSG_EVENT && nx_msg_uint(e, "seq", 0) > last) {
            uint64_t seq = nx_msg_uint(e, "seq", 0);
            /* Without a topic filter every sequence number reaches us, so a
             * gap means ZeroMQ dropped events for this (slow) subscriber. */
            if (!*topic && last && seq > last + 1) {
                uint64_t lost = seq - last - 1;
                if (c->json)
                    printf("{\"topic\":\"nexus.events_lost\",\"count\":%llu}\n",
                           (unsigned long long)lost);
                else
                    fprintf(stderr, "nexus events: %llu event(s) lost (this subscriber fell "
                                    "behind the bus's high-water mark)\n",
                            (unsigned long long)lost);
            }
            last = seq;
            print_event(c, e);
            if (!strcmp(nx_msg_str(e, "topic"), "company.shutdown"))
                follow = false;
        }
        nx_msg_destroy(&e);
        zmsg_destroy(&zm);
    }
out:
    zsock_destroy(&sub);
    nx_client_destroy(&cl);
    return rc;
}

/* One line of `nexus tree`: indent, id, what, state, who, how long. */
static void tree_item(cli_t *c, const nx_msg_t *m, void *arg) {
    if (c->json) {
        print_json(task_json(m));
        return;
    }
    unsigned depth = (unsigned)nx_msg_uint(m, "depth", 0);
    uint64_t started = nx_msg_uint(m, "started_ms", 0), finished = nx_msg_uint(m, "finished_ms", 0);
    uint64_t created = nx_msg_uint(m, "created_ms", 0);
    const char *wf = nx_msg_str(m, "workflow");
    char what[160];
    if (wf && depth == 0)
        snprintf(what, sizeof what, "workflow %s", wf);
    else if (wf)
        snprintf(what, sizeof what, "subtask (stages from %llu)",
                 (unsigned long long)nx_msg_uint(m, "stage", 0) + 1);
    else if (nx_msg_has(m, "stage"))
        snprintf(what, sizeof what, "stage %llu %s",
                 (unsigned long long)nx_msg_uint(m, "stage", 0) + 1, nx_msg_str(m, "dept"));
    else
        snprintf(what, sizeof what, "%s", nx_msg_str(m, "dept"));
    printf("%*s%-6llu %-30s %-10s", (int)depth * 2, "", (unsigned long long)nx_msg_uint(m, "task", 0),
           what, nx_msg_str(m, "state"));
    if (nx_msg_str(m, "employee"))
        printf(" %s", nx_msg_str(m, "employee"));
    if (!wf)
        printf(" %llu attempt(s)", (unsigned long long)nx_msg_uint(m, "attempts", 0));
    uint64_t from = wf ? created : started;
    if (from && finished >= from)
        printf(" %.1fs", (double)(finished - from) / 1000);
    if (nx_msg_str(m, "verdict"))
        printf(" verdict=%s", nx_msg_str(m, "verdict"));
    if (nx_msg_has(m, "rejects"))
        printf(" rejections=%llu", (unsigned long long)nx_msg_uint(m, "rejects", 0));
    putchar('\n');
}

static int cmd_tree(cli_t *c, int argc, char **argv) {
    if (common_only(c, argc, argv) < 0)
        return NX_EXIT_USAGE;
    uint64_t id;
    nx_client_t *cl = NULL;
    int rc = task_and_ceo(c, argc, argv, &id, &cl);
    if (rc)
        return rc;
    nx_msg_t *m = nx_msg_new(NX_MSG_TREE);
    nx_msg_set_uint(m, "task", id);
    rc = stream_call(c, cl, &m, NX_MSG_TASK_INFO, tree_item, NULL);
    nx_client_destroy(&cl);
    return rc;
}

/* `nexus diff ID`: the commits a workflow task made on its branch. */
static int cmd_diff(cli_t *c, int argc, char **argv) {
    if (common_only(c, argc, argv) < 0)
        return NX_EXIT_USAGE;
    uint64_t id;
    nx_client_t *cl = NULL;
    int rc = task_and_ceo(c, argc, argv, &id, &cl);
    if (rc)
        return rc;
    if (!c->company || !c->company->repo) {
        die_msg(c, "the company file has no 'repo:', so tasks have no branches to diff");
        nx_client_destroy(&cl);
        return NX_EXIT_USAGE;
    }
    nx_msg_t *m = nx_msg_new(NX_MSG_STATUS), *r = NULL;
    nx_msg_set_uint(m, "task", id);
    int crc = nx_client_call(cl, m, CALL_TIMEOUT_MS, &r);
    nx_msg_destroy(&m);
    nx_client_destroy(&cl);
    if (crc < 0) {
        rc = call_failed(c, crc, r);
        nx_msg_destroy(&r);
        return rc;
    }
    const char *branch = nx_msg_str(r, "branch"), *base = nx_msg_str(r, "base");
    if (!branch || !base) {
        die_msg(c, "task %llu has no branch: only a top-level workflow task of a company with "
                   "'repo:' gets one",
                (unsigned long long)id);
        nx_msg_destroy(&r);
        return NX_EXIT_FAIL;
    }
    char range[256];
    snprintf(range, sizeof range, "%s..%s", base, branch);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execlp("git", "git", "-C", c->company->repo, "--no-pager", "log", "-p", "--stat",
               "--reverse", range, (char *)NULL);
        fprintf(stderr, "nexus diff: cannot run git: %s\n", strerror(errno));
        _exit(127);
    }
    nx_msg_destroy(&r);
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return NX_EXIT_FAIL;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? NX_EXIT_OK : NX_EXIT_FAIL;
}

/* ---- server verbs ---- */

static bool ceo_answers(const char *endpoint, int64_t timeout_ms) {
    nx_client_t *cl = NULL;
    if (nx_client_new(endpoint, &cl) < 0)
        return false;
    nx_msg_t *m = nx_msg_new(NX_MSG_PING), *r = NULL;
    int rc = nx_client_call(cl, m, timeout_ms, &r);
    nx_msg_destroy(&m);
    nx_msg_destroy(&r);
    nx_client_destroy(&cl);
    return rc == 0;
}

static int server_opts(cli_t *c, int argc, char **argv, const char *shortopts,
                       const struct option *extra, int (*on_extra)(int opt, void *arg), void *arg) {
    struct option opts[16];
    size_t n = 0;
    for (const struct option *o = extra; o && o->name; o++)
        opts[n++] = *o;
    opts[n++] = (struct option){"home", required_argument, 0, OPT_HOME};
    opts[n++] = (struct option){"company", required_argument, 0, OPT_COMPANY};
    opts[n] = (struct option){0, 0, 0, 0};
    int opt;
    while ((opt = getopt_long(argc, argv, shortopts, opts, NULL)) != -1) {
        if (opt == OPT_HOME || opt == OPT_COMPANY)
            common_opt(c, opt);
        else if (!on_extra || on_extra(opt, arg) < 0)
            return NX_EXIT_USAGE;
    }
    if (optind < argc && !c->company_arg)
        c->company_arg = argv[optind++];
    if (optind < argc) {
        die_msg(c, "unexpected argument '%s'", argv[optind]);
        return NX_EXIT_USAGE;
    }
    return 0;
}

static int cmd_ceo(cli_t *c, int argc, char **argv) {
    int rc = server_opts(c, argc, argv, "", NULL, NULL, NULL);
    if (rc == 0)
        rc = setup(c, true, true);
    if (rc)
        return rc;
    nx_log_init("ceo");
    nx_ceo_opts_t o = {c->company->path, c->home.dir, nx_signals_block()};
    return nx_ceo_run(&o);
}

static int node_extra(int opt, void *arg) {
    if (opt != 'n')
        return -1;
    *(const char **)arg = optarg;
    return 0;
}

typedef struct {
    const char *name, *departments;
} node_args_t;

static int node_args(int opt, void *arg) {
    node_args_t *a = arg;
    if (opt == 'n')
        a->name = optarg;
    else if (opt == 'D')
        a->departments = optarg;
    else
        return -1;
    return 0;
}

static int cmd_node(cli_t *c, int argc, char **argv) {
    node_args_t a = {0};
    static const struct option extra[] = {{"name", required_argument, 0, 'n'},
                                          {"departments", required_argument, 0, 'D'},
                                          {0, 0, 0, 0}};
    int rc = server_opts(c, argc, argv, "", extra, node_args, &a);
    if (rc == 0)
        rc = setup(c, true, true);
    if (rc)
        return rc;
    nx_log_init("node");
    nx_node_opts_t o = {.company_path = c->company->path, .home = c->home.dir,
                        .sigfd = nx_signals_block(), .exe = c->exe, .name = a.name,
                        .departments = a.departments};
    return nx_node_run(&o);
}

static int cmd_employee(cli_t *c, int argc, char **argv) {
    const char *name = NULL;
    static const struct option extra[] = {{"name", required_argument, 0, 'n'}, {0, 0, 0, 0}};
    int rc = server_opts(c, argc, argv, "", extra, node_extra, &name);
    if (rc == 0 && !name) {
        die_msg(c, "--name is required (an employee of the company file)");
        rc = NX_EXIT_USAGE;
    }
    if (rc == 0)
        rc = setup(c, true, false);
    if (rc)
        return rc;
    nx_log_init(name);
    nx_employee_opts_t o = {.company_path = c->company->path, .home = c->home.dir,
                            .sigfd = nx_signals_block(), .name = name, .exe = c->exe};
    return nx_employee_run(&o);
}

/* Starts `nexus VERB --company P --home H`, output to logfile (or
 * inherited when logfile is NULL). */
static pid_t start_child(cli_t *c, const char *verb, const char *logfile) {
    pid_t pid = fork();
    if (pid == 0) {
        if (logfile) {
            int fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
            }
        }
        nx_signals_unblock();
        execl(c->exe, c->exe, verb, "--company", c->company->path, "--home", c->home.dir,
              (char *)NULL);
        _exit(127);
    }
    return pid;
}

static bool wait_child(pid_t pid, int64_t timeout_ms) {
    int64_t deadline = nx_mono_ms() + timeout_ms;
    while (nx_mono_ms() < deadline) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD))
            return true;
        usleep(20000);
    }
    return false;
}

static void stop_child(pid_t pid, int64_t grace_ms) {
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    if (!wait_child(pid, grace_ms)) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

/* The `up` supervisor: a CEO and a node, each restarted when it crashes
 * (at most 5 times a minute), both stopped on SIGTERM/SIGINT or when the
 * CEO exits cleanly after `nexus down`. */
static int supervise(cli_t *c, bool detached) {
    char pidfile[700], ceolog[700], nodelog[700];
    snprintf(pidfile, sizeof pidfile, "%s/nexus.pid", c->home.dir);
    snprintf(ceolog, sizeof ceolog, "%s/ceo.log", c->home.logs);
    snprintf(nodelog, sizeof nodelog, "%s/node.log", c->home.logs);
    FILE *pf = fopen(pidfile, "w");
    if (pf) {
        fprintf(pf, "%d\n", (int)getpid());
        fclose(pf);
    }
    /* Signals are taken synchronously (sigtimedwait) so that neither a
     * ZeroMQ thread nor a blocking waitpid can swallow them. */
    sigset_t stopset;
    sigemptyset(&stopset);
    sigaddset(&stopset, SIGINT);
    sigaddset(&stopset, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stopset, NULL);
    bool stop_signal = false;
    nx_log_init("up");
    pid_t ceo = start_child(c, "ceo", detached ? ceolog : NULL);
    for (int i = 0; i < 100 && !ceo_answers(c->home.ceo, 100); i++)
        if (waitpid(ceo, NULL, WNOHANG) == ceo) {
            nx_error("the CEO exited at start; see %s", detached ? ceolog : "the output above");
            unlink(pidfile);
            return NX_EXIT_FAIL;
        }
    pid_t node = start_child(c, "node", detached ? nodelog : NULL);
    int64_t restarts[5] = {0};
    int rc = NX_EXIT_OK;
    while (!stop_signal) {
        struct timespec tick = {0, 100 * 1000000};
        if (sigtimedwait(&stopset, NULL, &tick) > 0) {
            stop_signal = true;
            break;
        }
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid == 0)
            continue;
        if (pid < 0)
            break;
        if (pid == ceo) {
            ceo = 0;
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                break; /* a clean stop: `nexus down` */
            int64_t now = nx_mono_ms();
            if (restarts[0] && now - restarts[0] < 60000) {
                nx_error("the CEO crashed 5 times within a minute; giving up");
                rc = NX_EXIT_FAIL;
                break;
            }
            memmove(restarts, restarts + 1, sizeof restarts - sizeof restarts[0]);
            restarts[4] = now;
            nx_warn("the CEO died (%s %d); restarting it",
                    WIFSIGNALED(status) ? "signal" : "status",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            ceo = start_child(c, "ceo", detached ? ceolog : NULL);
        } else if (pid == node) {
            node = 0;
            bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            if (ceo && !clean) {
                nx_warn("the node exited; restarting it");
                usleep(200000);
                node = start_child(c, "node", detached ? nodelog : NULL);
            }
        }
    }
    /* The node stops its employees (it has heard STOP or gets SIGTERM). */
    if (node && !wait_child(node, ceo ? 0 : 8000))
        stop_child(node, 15000);
    if (ceo)
        stop_child(ceo, 10000);
    unlink(pidfile);
    nx_info("company stopped");
    return rc;
}

static int up_extra(int opt, void *arg) {
    if (opt != 'd')
        return -1;
    *(bool *)arg = true;
    return 0;
}

static int cmd_up(cli_t *c, int argc, char **argv) {
    bool detach = false;
    static const struct option extra[] = {{"detach", no_argument, 0, 'd'}, {0, 0, 0, 0}};
    int rc = server_opts(c, argc, argv, "d", extra, up_extra, &detach);
    if (rc == 0)
        rc = setup(c, true, true);
    if (rc)
        return rc;
    if (ceo_answers(c->home.ceo, 300)) {
        die_msg(c, "company '%s' is already up (home %s); 'nexus down' stops it",
                c->company->name, c->home.dir);
        return NX_EXIT_FAIL;
    }
    if (!detach)
        return supervise(c, false);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        die_msg(c, "fork: %s", strerror(errno));
        return NX_EXIT_FAIL;
    }
    if (pid == 0) {
        setsid();
        if (fork() != 0)
            _exit(0);
        char logpath[700];
        snprintf(logpath, sizeof logpath, "%s/nexus.log", c->home.logs);
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        _exit(supervise(c, true));
    }
    waitpid(pid, NULL, 0);
    for (int i = 0; i < 150; i++) {
        if (ceo_answers(c->home.ceo, 100)) {
            printf("company '%s' is up: %zu employee(s) in %zu department(s); home %s\n",
                   c->company->name, c->company->nemployees, c->company->ndepts, c->home.dir);
            return NX_EXIT_OK;
        }
        usleep(100000);
    }
    die_msg(c, "the company did not come up within 15 s; see %s/nexus.log and %s/ceo.log",
            c->home.logs, c->home.logs);
    return NX_EXIT_FAIL;
}

static pid_t read_pidfile(cli_t *c) {
    char path[700];
    snprintf(path, sizeof path, "%s/nexus.pid", c->home.dir);
    FILE *f = fopen(path, "r");
    int pid = 0;
    if (f) {
        if (fscanf(f, "%d", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return pid > 0 && kill(pid, 0) == 0 ? (pid_t)pid : 0;
}

static int cmd_down(cli_t *c, int argc, char **argv) {
    int rc = server_opts(c, argc, argv, "", NULL, NULL, NULL);
    if (rc == 0)
        rc = setup(c, false, false);
    if (rc)
        return rc;
    pid_t sup = read_pidfile(c);
    nx_client_t *cl = NULL;
    bool asked = false;
    if (nx_client_new(c->home.ceo, &cl) == 0) {
        nx_msg_t *m = nx_msg_new(NX_MSG_SHUTDOWN), *r = NULL;
        asked = nx_client_call(cl, m, 3000, &r) == 0;
        nx_msg_destroy(&m);
        nx_msg_destroy(&r);
        nx_client_destroy(&cl);
    }
    if (!asked && !sup) {
        die_msg(c, "no company is running at %s", c->home.dir);
        return NX_EXIT_FAIL;
    }
    if (!asked)
        kill(sup, SIGTERM);
    /* Wait for the supervisor (if any) and for the CEO to go quiet. */
    int64_t deadline = nx_mono_ms() + 30000;
    while (nx_mono_ms() < deadline) {
        bool sup_alive = sup && kill(sup, 0) == 0;
        if (!sup_alive && !ceo_answers(c->home.ceo, 200))
            break;
        usleep(100000);
    }
    if (sup && kill(sup, 0) == 0) {
        die_msg(c, "the company did not stop within 30 s (supervisor pid %d)", (int)sup);
        return NX_EXIT_FAIL;
    }
    printf("company stopped%s%s\n", c->company ? ": " : "", c->company ? c->company->name : "");
    return NX_EXIT_OK;
}

static void usage(FILE *f) {
    fputs("usage: nexus COMMAND [OPTIONS]\n"
          "\n"
          "Run a company:\n"
          "  up [-d] [company.yaml]     start the CEO and a node (-d: in the background)\n"
          "  down                       stop the company; nothing accepted is lost\n"
          "  ceo [company.yaml]         run only the CEO (foreground)\n"
          "  node [company.yaml]        run only a node: starts and restarts employees\n"
          "       [--name N] [--departments a,b]   (one per host, each with its departments)\n"
          "  employee --name NAME       run one employee (the node does this)\n"
          "\n"
          "Give it work and watch:\n"
          "  submit --dept D TEXT       submit a task; prints its id once it is durable\n"
          "  submit --workflow W TEXT   run a workflow (stages of departments) on TEXT\n"
          "         [--input-file F|-] [--priority N] [--idempotency-key K] [--lines]\n"
          "         [--max-attempts N] [--soft-timeout 10m] [--hard-timeout 11m]\n"
          "  status ID                  a task's state and result\n"
          "  tree ID                    a task, its stages and subtasks\n"
          "  diff ID                    the commits a workflow task made on its branch\n"
          "  wait ID [--timeout 30s]    wait until a task is finished\n"
          "  tasks [--state S] [--dept D] [--limit N]\n"
          "  cancel ID                  cancel a queued or running task\n"
          "  retry ID                   put a dead, failed or cancelled task back\n"
          "  ps                         the employees: state, pid, tasks done\n"
          "  stats                      the CEO's counters: messages, commits, queues\n"
          "  events [--follow] [--topic task.] [--task ID] [--limit N]\n"
          "\n"
          "Sandbox:\n"
          "  sandbox run [--net none|host|allow:H:P,..] [--ro P] [--rw P] [--mem 512M] [--pids 64]\n"
          "              [--time 30s] -- CMD   run CMD isolated (see docs/security.md)\n"
          "  sandbox check              what this machine supports\n"
          "\n"
          "Common options: --company FILE, --home DIR (default: .nexus beside the company\n"
          "file, or $NEXUS_HOME), --ceo ENDPOINT, --json. See docs/cli.md.\n",
          f);
}

int nx_cli_main(int argc, char **argv) {
    cli_t c = {0};
    ssize_t n = readlink("/proc/self/exe", c.exe, sizeof c.exe - 1);
    if (n <= 0)
        snprintf(c.exe, sizeof c.exe, "%s", argv[0]);
    if (argc < 2) {
        usage(stderr);
        return NX_EXIT_USAGE;
    }
    const char *verb = argv[1];
    c.verb = verb;
    if (!strcmp(verb, "agent-sim")) {
        /* _exit: an agent in a sandbox cannot ptrace, which the leak
         * checker of a sanitizer build needs at exit. */
        _exit(nx_agent_sim_main(argc - 1, argv + 1));
    }
    if (!strcmp(verb, "sandbox"))
        return nx_sandbox_main(argc - 1, argv + 1);
    if (!strcmp(verb, "sandbox-proxy"))
        return nx_proxy_main(argc - 1, argv + 1);
    if (!strcmp(verb, "help") || !strcmp(verb, "--help") || !strcmp(verb, "-h")) {
        usage(stdout);
        return NX_EXIT_OK;
    }
    if (!strcmp(verb, "version") || !strcmp(verb, "--version")) {
        printf("nexus 0.1.0 (protocol %d)\n", NX_PROTO_VERSION);
        return NX_EXIT_OK;
    }
    /* zsys would print to stdout and install its own signal handling only
     * on first use; make both explicit. */
    zsys_init();
    zsys_set_logstream(stderr);
    nx_log_init("nexus");
    int sub_argc = argc - 1;
    char **sub_argv = argv + 1;
    optind = 1;
    opterr = 1;
    int rc;
    if (!strcmp(verb, "submit"))
        rc = cmd_submit(&c, sub_argc, sub_argv);
    else if (!strcmp(verb, "status"))
        rc = cmd_task(&c, sub_argc, sub_argv, NX_MSG_STATUS);
    else if (!strcmp(verb, "wait"))
        rc = cmd_task(&c, sub_argc, sub_argv, NX_MSG_WAIT);
    else if (!strcmp(verb, "tasks"))
        rc = cmd_tasks(&c, sub_argc, sub_argv);
    else if (!strcmp(verb, "ps"))
        rc = cmd_ps(&c, sub_argc, sub_argv);
    else if (!strcmp(verb, "cancel"))
        rc = cmd_task(&c, sub_argc, sub_argv, NX_MSG_CANCEL);
    else if (!strcmp(verb, "retry"))
        rc = cmd_task(&c, sub_argc, sub_argv, NX_MSG_RETRY);
    else if (!strcmp(verb, "stats"))
        rc = cmd_stats(&c, sub_argc, sub_argv);
    else if (!strcmp(verb, "events"))
        rc = cmd_events(&c, sub_argc, sub_argv);
    else if (!strcmp(verb, "tree"))
        rc = cmd_tree(&c, sub_argc, sub_argv);
    else if (!strcmp(verb, "diff"))
        rc = cmd_diff(&c, sub_argc, sub_argv);
    else if (!strcmp(verb, "up"))
        rc = cmd_up(&c, sub_argc, sub_argv);
    else if (!strcmp(verb, "down"))
        rc = cmd_down(&c, sub_argc, sub_argv);
    else if (!strcmp(verb, "ceo"))
        rc = cmd_ceo(&c, sub_argc, sub_argv);
    else if (!strcmp(verb, "node"))
        rc = cmd_node(&c, sub_argc, sub_argv);
    else if (!strcmp(verb, "employee"))
        rc = cmd_employee(&c, sub_argc, sub_argv);
    else {
        fprintf(stderr, "nexus: unknown command '%s' (see 'nexus help')\n", verb);
        rc = NX_EXIT_USAGE;
    }
    nx_company_destroy(&c.company);
    return rc;
}
