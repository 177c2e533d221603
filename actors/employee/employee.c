/*  employee.c - the employee actor.
 *
 *  A slot is one running agent. Its life:
 *
 *      TASK ──spawn──> running ──(pidfd readable)──> exited ──> RESULT sent
 *                        │  stdout/stderr drained as they come
 *                        └─ output past max_output: kill group, flooded
 *
 *  Credit: the HELLO announces `capacity` and how many slots are free; every
 *  RESULT returns one credit implicitly. The CEO never sends more tasks than
 *  there are free slots, so nothing piles up in ZeroMQ buffers.
 *
 *  Liveness: a HEARTBEAT goes to the CEO every interval; an ERROR
 *  "not_registered" (a restarted CEO) makes the employee say HELLO again.
 *  If the CEO is silent for `liveness` intervals the socket is rebuilt. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "nx_agents.h"
#include "nx_employee.h"
#include "nx_runtime.h"
#include "nx_sandbox.h"

#define STDERR_TAIL 2048

typedef struct {
    bool used;               /* a task is running in this slot */
    int64_t task;            /* task id */
    uint32_t attempt;        /* the CEO's attempt number */
    nx_child_t child;        /* the agent; fds -1 when closed */
    char *input;             /* bytes still to write to stdin (owned) */
    size_t input_len, input_off;
    char *out;               /* captured stdout (owned), out_len bytes */
    size_t out_len, out_cap;
    char err[STDERR_TAIL];   /* the last bytes of stderr */
    size_t err_len;
    bool flooded;            /* output cap hit; the agent was killed */
    int64_t started_ms;      /* monotonic */
    int soft_timer, hard_timer; /* zloop timer ids, -1 = none */
    int64_t soft_ms, hard_ms;   /* the limits, for messages */
    const char *limit;       /* "soft" or "hard" once a time limit fired */
    char *workspace;         /* the task's git worktree, when it has one (owned) */
    int msg_fd;              /* our end of the agent's message channel (its fd 3), -1 */
    char *mbuf;              /* what the agent wrote there, up to a full line (owned) */
    size_t mlen;
    bool cancelled;          /* the CEO cancelled the task */
    int sim_timer;           /* in-process sim: the work timer, -1 = none */
    size_t scan_off;         /* stdout read for progress lines up to here */
    uint32_t nprogress;      /* progress events sent for this attempt */
} slot_t;

/* Progress events per attempt: enough to follow an agent, not a flood. */
#define MAX_PROGRESS 200

typedef struct {
    char *name;   /* what replaces it: "[redacted:NAME]" */
    char *value;  /* the secret itself */
} secret_t;

typedef struct {
    nx_company_t *company;       /* the loaded company file */
    const nx_dept_conf_t *dept;  /* this employee's department */
    const char *name;            /* this employee */
    const char *exe;             /* nexus binary */
    nx_home_t home;              /* endpoints */
    zsock_t *dealer;             /* to the CEO */
    zloop_t *loop;               /* the actor loop */
    slot_t *slots;               /* dept->capacity slots */
    uint32_t nslots;
    int64_t last_heard_ms;       /* monotonic time of the CEO's last message */
    uint64_t received;           /* TASK messages received on this socket */
    int64_t last_hello_ms;       /* monotonic time of our last HELLO */
    bool stopping;               /* a STOP arrived */
    char workspace[700];         /* HOME/workspaces/NAME: the agents' writable folder */
    secret_t *secrets;           /* values to scrub from everything we report (owned) */
    size_t nsecrets;
    char **agent_env;            /* NAME=value of the department's credential variables */
    size_t nagent_env;
    nx_sandbox_profile_t profile; /* the department's sandbox, when it has one */
} employee_t;

static int on_dealer(zloop_t *loop, zsock_t *sock, void *arg);
static int on_stdout(zloop_t *loop, zmq_pollitem_t *item, void *arg);
static int on_stderr(zloop_t *loop, zmq_pollitem_t *item, void *arg);
static int on_stdin(zloop_t *loop, zmq_pollitem_t *item, void *arg);
static int on_exit_fd(zloop_t *loop, zmq_pollitem_t *item, void *arg);

static uint32_t free_slots(employee_t *self) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < self->nslots; i++)
        n += !self->slots[i].used;
    return n;
}

static uint32_t free_slots(employee_t *self);

static void send_msg(employee_t *self, nx_msg_t *msg) {
    nx_msg_set_id(msg, nx_wire_next_id());
    /* Every credit-bearing message says how many slots are free and how
     * many tasks have arrived: the CEO subtracts what is still in flight. */
    nx_msg_type_t t = nx_msg_type(msg);
    if (t == NX_MSG_HELLO || t == NX_MSG_HEARTBEAT || t == NX_MSG_RESULT) {
        nx_msg_set_uint(msg, "free", free_slots(self));
        nx_msg_set_uint(msg, "received", self->received);
    }
    nx_msg_set_from(msg, self->name);
    int rc = nx_wire_send(self->dealer, NULL, msg, true);
    if (rc < 0)
        nx_warn("cannot send %s to the CEO: %s", nx_msg_type_name(nx_msg_type(msg)),
                nx_strerror(rc));
}

static void send_hello(employee_t *self) {
    self->last_hello_ms = nx_mono_ms();
    nx_msg_t *m = nx_msg_new(NX_MSG_HELLO);
    nx_msg_set_str(m, "name", self->name);
    nx_msg_set_str(m, "dept", self->dept->name);
    nx_msg_set_uint(m, "capacity", self->nslots);
    nx_msg_set_uint(m, "pid", (uint64_t)getpid());
    const char *node = getenv("NEXUS_NODE"); /* set by the node that started us */
    if (node && *node && strlen(node) <= NX_PROTO_MAX_NAME) {
        char copy[NX_PROTO_MAX_NAME + 1];
        snprintf(copy, sizeof copy, "%s", node);
        nx_utf8_sanitize(copy);
        nx_msg_set_str(m, "node", copy);
    }
    send_msg(self, m);
    nx_msg_destroy(&m);
}

static int connect_dealer(employee_t *self) {
    if (self->dealer) {
        zloop_reader_end(self->loop, self->dealer);
        zsock_destroy(&self->dealer);
    }
    self->dealer = zsock_new(ZMQ_DEALER);
    if (!self->dealer)
        return -ENOMEM;
    zsock_set_linger(self->dealer, 1000);
    zsock_set_reconnect_ivl(self->dealer, 100);
    zsock_set_reconnect_ivl_max(self->dealer, 2000);
    zsock_set_sndhwm(self->dealer, 0);
    if (zsock_connect(self->dealer, "%s", self->home.ceo) < 0)
        return -EINVAL;
    zloop_reader(self->loop, self->dealer, on_dealer, self);
    self->last_heard_ms = nx_mono_ms();
    self->received = 0;
    send_hello(self);
    return 0;
}

static void poller_add(employee_t *self, int fd, short events, zloop_fn handler, slot_t *slot) {
    zmq_pollitem_t item = {NULL, fd, events, 0};
    zloop_poller(self->loop, &item, handler, slot);
    zloop_poller_set_tolerant(self->loop, &item);
}

static void poller_end(employee_t *self, int *fd) {
    if (*fd < 0)
        return;
    zmq_pollitem_t item = {NULL, *fd, 0, 0};
    zloop_poller_end(self->loop, &item);
    close(*fd);
    *fd = -1;
}

static employee_t *s_self; /* handlers get the slot; the slot needs its employee */
static char *scrubbed(employee_t *self, const char *text);

static void slot_reset(slot_t *s) {
    if (s_self && s_self->loop) {
        if (s->soft_timer >= 0)
            zloop_timer_end(s_self->loop, s->soft_timer);
        if (s->hard_timer >= 0)
            zloop_timer_end(s_self->loop, s->hard_timer);
        if (s->sim_timer >= 0)
            zloop_timer_end(s_self->loop, s->sim_timer);
    }
    free(s->input);
    free(s->out);
    free(s->workspace);
    free(s->mbuf);
    if (s->msg_fd > 0) {
        if (s_self && s_self->loop)
            poller_end(s_self, &s->msg_fd);
        else
            close(s->msg_fd);
    }
    memset(s, 0, sizeof *s);
    s->msg_fd = -1;
    s->child.pidfd = s->child.stdin_fd = s->child.stdout_fd = s->child.stderr_fd = -1;
    s->child.status_fd = -1;
    s->soft_timer = s->hard_timer = s->sim_timer = -1;
}

/* Replaces every secret value in buf[0..*len) with [redacted:NAME], in
 * place (the buffer is reallocated when it grows). */
static void scrub(employee_t *self, char **buf, size_t *len) {
    for (size_t i = 0; i < self->nsecrets && *buf; i++) {
        const char *v = self->secrets[i].value;
        size_t vlen = strlen(v);
        if (!memmem(*buf, *len, v, vlen))
            continue;
        char *out = NULL;
        size_t outlen = 0;
        FILE *f = open_memstream(&out, &outlen);
        if (!f)
            return;
        const char *p = *buf, *end = *buf + *len, *hit;
        while ((hit = memmem(p, (size_t)(end - p), v, vlen))) {
            fwrite(p, 1, (size_t)(hit - p), f);
            fprintf(f, "[redacted:%s]", self->secrets[i].name);
            p = hit + vlen;
        }
        fwrite(p, 1, (size_t)(end - p), f);
        fclose(f);
        free(*buf);
        *buf = out;
        *len = outlen;
    }
}

static void send_result_report(employee_t *self, slot_t *s, bool ok, int exit_code, int sig,
                               const char *error, const nx_agent_report_t *rep);

static void send_result(employee_t *self, slot_t *s, bool ok, int exit_code, int sig,
                        const char *error) {
    send_result_report(self, s, ok, exit_code, sig, error, NULL);
}

/* A copy of text with the secrets scrubbed; the caller frees it. */
static char *scrubbed(employee_t *self, const char *text) {
    char *t = strdup(text);
    size_t len = t ? strlen(t) : 0;
    scrub(self, &t, &len);
    if (t)
        nx_utf8_sanitize(t); /* the CEO refuses a string that is not UTF-8 */
    return t;
}

/* The adapter's reading of the run: usage, verdict, subtasks. */
static void add_report(employee_t *self, nx_msg_t *m, const nx_agent_report_t *rep) {
    if (rep->tokens_in)
        nx_msg_set_uint(m, "tokens_in", rep->tokens_in);
    if (rep->tokens_out)
        nx_msg_set_uint(m, "tokens_out", rep->tokens_out);
    if (rep->cost_microusd)
        nx_msg_set_uint(m, "cost_microusd", rep->cost_microusd);
    /* A verdict counts from a reviewer, a plan from a planner: text that
     * only echoes its input (a rework request quoting QA) decides nothing. */
    const char *role = self->dept->role ? self->dept->role : "";
    if (rep->verdict && !strcmp(role, "qa"))
        nx_msg_set_str(m, "verdict", rep->verdict);
    if (rep->session) {
        char *t = scrubbed(self, rep->session);
        if (t)
            nx_msg_set_str(m, "session", t);
        free(t);
    }
    if (rep->nsubtasks && !strcmp(role, "product")) {
        /* One JSON array of strings; proto bodies are flat. */
        json_t *arr = json_array();
        for (size_t i = 0; i < rep->nsubtasks; i++) {
            char *t = scrubbed(self, rep->subtasks[i]);
            if (t)
                json_array_append_new(arr, json_string(t));
            free(t);
        }
        char *text = json_dumps(arr, JSON_COMPACT);
        if (text)
            nx_msg_set_str(m, "subtasks", text);
        free(text);
        json_decref(arr);
    }
}

static void send_result_report(employee_t *self, slot_t *s, bool ok, int exit_code, int sig,
                               const char *error, const nx_agent_report_t *rep) {
    nx_msg_t *m = nx_msg_new(NX_MSG_RESULT);
    nx_msg_set_uint(m, "task", (uint64_t)s->task);
    nx_msg_set_uint(m, "attempt", s->attempt);
    nx_msg_set_bool(m, "ok", ok);
    nx_msg_set_int(m, "exit_code", exit_code);
    nx_msg_set_int(m, "signal", sig);
    /* Nothing the agent printed leaves this process with a secret in it:
     * not the result, not the error, so not the ledger, events or logs. */
    scrub(self, &s->out, &s->out_len);
    nx_msg_set_bin(m, "output", s->out ? s->out : "", s->out_len);
    if (error) {
        char *e = scrubbed(self, error);
        nx_msg_set_str(m, "error", e ? e : "agent failed");
        free(e);
    }
    nx_msg_set_uint(m, "duration_ms", (uint64_t)(nx_mono_ms() - s->started_ms));
    if (rep)
        add_report(self, m, rep);
    send_msg(self, m);
    nx_msg_destroy(&m);
}

/* The last line of stderr that has text, sanitised for one-line messages. */
static void stderr_summary(const slot_t *s, char *buf, size_t len) {
    size_t end = s->err_len;
    while (end && (s->err[end - 1] == '\n' || s->err[end - 1] == '\r'))
        end--;
    size_t start = end;
    while (start && s->err[start - 1] != '\n')
        start--;
    size_t n = end - start < len - 1 ? end - start : len - 1;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s->err[start + i];
        if (c >= 0x20 && c < 0x7f)
            buf[j++] = (char)c;
    }
    buf[j] = '\0';
}

/* Each complete new line of stdout the adapter finds worth it becomes a
 * PROGRESS message (its secrets scrubbed); the CEO records it as a
 * task.progress event. */
static void progress_lines(employee_t *self, slot_t *s) {
    char *nl;
    while (s->scan_off < s->out_len &&
           (nl = memchr(s->out + s->scan_off, '\n', s->out_len - s->scan_off))) {
        const char *line = s->out + s->scan_off;
        size_t len = (size_t)(nl - line);
        s->scan_off += len + 1;
        char text[300];
        if (s->nprogress >= MAX_PROGRESS ||
            !nx_agent_progress(&self->dept->agent, line, len, text, sizeof text))
            continue;
        char *clean = scrubbed(self, text);
        if (!clean)
            continue;
        s->nprogress++;
        nx_msg_t *m = nx_msg_new(NX_MSG_PROGRESS);
        nx_msg_set_uint(m, "task", (uint64_t)s->task);
        nx_msg_set_uint(m, "attempt", s->attempt);
        nx_msg_set_str(m, "text", clean);
        send_msg(self, m);
        nx_msg_destroy(&m);
        free(clean);
    }
}

/* Reads what is available from fd into the slot. Returns 1 at EOF. */
static int drain(employee_t *self, slot_t *s, int fd, bool is_stdout) {
    char buf[65536];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : 1;
        if (r == 0)
            return 1;
        if (!is_stdout) {
            /* Keep only the tail of stderr. */
            if ((size_t)r >= STDERR_TAIL) {
                memcpy(s->err, buf + r - STDERR_TAIL, STDERR_TAIL);
                s->err_len = STDERR_TAIL;
            } else {
                size_t keep = STDERR_TAIL - (size_t)r < s->err_len ? STDERR_TAIL - (size_t)r : s->err_len;
                memmove(s->err, s->err + s->err_len - keep, keep);
                memcpy(s->err + keep, buf, (size_t)r);
                s->err_len = keep + (size_t)r;
            }
            continue;
        }
        if (s->flooded)
            continue;
        uint64_t cap = self->dept->agent.max_output;
        if (s->out_len + (size_t)r > cap) {
            s->flooded = true;
            nx_warn("task %lld: agent output passed max_output (%llu bytes); killing it",
                    (long long)s->task, (unsigned long long)cap);
            nx_sandbox_kill(&s->child, SIGKILL);
            return 1;
        }
        if (s->out_len + (size_t)r > s->out_cap) {
            size_t ncap = s->out_cap ? s->out_cap : 4096;
            while (ncap < s->out_len + (size_t)r)
                ncap *= 2;
            char *bigger = realloc(s->out, ncap);
            if (!bigger) {
                s->flooded = true;
                nx_sandbox_kill(&s->child, SIGKILL);
                return 1;
            }
            s->out = bigger;
            s->out_cap = ncap;
        }
        memcpy(s->out + s->out_len, buf, (size_t)r);
        s->out_len += (size_t)r;
        progress_lines(self, s);
    }
}

static int on_stdout(zloop_t *loop, zmq_pollitem_t *item, void *arg) {
    slot_t *s = arg;
    if (!s->used || s->child.stdout_fd != item->fd)
        return 0; /* the slot finished earlier in this loop pass */
    if (drain(s_self, s, s->child.stdout_fd, true))
        poller_end(s_self, &s->child.stdout_fd);
    return 0;
}

static int on_stderr(zloop_t *loop, zmq_pollitem_t *item, void *arg) {
    slot_t *s = arg;
    if (!s->used || s->child.stderr_fd != item->fd)
        return 0;
    if (drain(s_self, s, s->child.stderr_fd, false))
        poller_end(s_self, &s->child.stderr_fd);
    return 0;
}

static int on_stdin(zloop_t *loop, zmq_pollitem_t *item, void *arg) {
    slot_t *s = arg;
    if (!s->used || s->child.stdin_fd != item->fd)
        return 0;
    while (s->input_off < s->input_len) {
        ssize_t w = write(s->child.stdin_fd, s->input + s->input_off, s->input_len - s->input_off);
        if (w < 0) {
            if (errno == EAGAIN)
                return 0;
            if (errno == EINTR)
                continue;
            break; /* EPIPE: the agent does not read its input; that is its business */
        }
        s->input_off += (size_t)w;
    }
    poller_end(s_self, &s->child.stdin_fd);
    return 0;
}

/* ---- the agents' message channel (proto/PROTOCOL.md, "Agent messages") ---- */

#define MSG_LINE_MAX 65536

/* One line to the agent. Never blocks the employee: an agent that does not
 * read its channel loses what does not fit (and we say so in the log). */
static void to_agent(slot_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void to_agent(slot_t *s, const char *fmt, ...) {
    if (s->msg_fd < 0)
        return;
    char *line = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    for (int i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' '; /* one line per message */
    line = realloc(line, (size_t)n + 2);
    line[n++] = '\n';
    ssize_t w = send(s->msg_fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w != n)
        nx_warn("task %lld: the agent's message channel is full or closed; a line was lost",
                (long long)s->task);
    free(line);
}

/* Splits "WORD REST" off line (in place). */
static char *word(char **line) {
    char *p = *line;
    while (*p == ' ')
        p++;
    char *w = p;
    while (*p && *p != ' ')
        p++;
    if (*p)
        *p++ = '\0';
    *line = p;
    return w;
}

static void agent_line(employee_t *self, slot_t *s, char *line) {
    char *rest = line;
    char *verb = word(&rest), *ref = word(&rest);
    bool known = !strcmp(verb, "send") || !strcmp(verb, "ask") || !strcmp(verb, "publish") ||
                 !strcmp(verb, "answer");
    if (!known) {
        to_agent(s, "error %s unknown command '%.40s' (send, ask, publish, answer)",
                 *ref ? ref : "-", verb);
        return;
    }
    if (!*ref || strlen(ref) > NX_PROTO_MAX_NAME) {
        to_agent(s, "error - %s needs a reference word of at most %d bytes first", verb,
                 NX_PROTO_MAX_NAME);
        return;
    }
    nx_msg_t *m = nx_msg_new(NX_MSG_CHAT);
    nx_msg_set_str(m, "kind", verb);
    nx_msg_set_uint(m, "task", (uint64_t)s->task);
    if (!strcmp(verb, "answer")) {
        /* answer QID TEXT: the reference is the question's id */
        char *end;
        unsigned long long qid = strtoull(ref, &end, 10);
        if (*end || !qid) {
            to_agent(s, "error %s answer needs the question's number", ref);
            nx_msg_destroy(&m);
            return;
        }
        nx_msg_set_uint(m, "qid", qid);
        nx_msg_set_str(m, "ref", ref);
    } else {
        char *to = word(&rest);
        if (!*to) {
            to_agent(s, "error %s %s needs a recipient and a text", ref, verb);
            nx_msg_destroy(&m);
            return;
        }
        nx_msg_set_str(m, "ref", ref);
        nx_msg_set_str(m, "to", to);
    }
    char *text = scrubbed(self, rest);
    nx_msg_set_str(m, "text", text ? text : "");
    free(text);
    send_msg(self, m);
    nx_msg_destroy(&m);
}

static int on_msg_fd(zloop_t *loop, zmq_pollitem_t *item, void *arg) {
    slot_t *s = arg;
    employee_t *self = s_self;
    if (!s->used || s->msg_fd != item->fd)
        return 0;
    char buf[8192];
    for (;;) {
        ssize_t r = recv(s->msg_fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
                poller_end(self, &s->msg_fd); /* the agent closed it */
            return 0;
        }
        if (s->mlen + (size_t)r > MSG_LINE_MAX) {
            to_agent(s, "error - a line longer than %d bytes was dropped", MSG_LINE_MAX);
            s->mlen = 0;
            continue;
        }
        char *more = realloc(s->mbuf, s->mlen + (size_t)r + 1);
        if (!more)
            return 0;
        s->mbuf = more;
        memcpy(s->mbuf + s->mlen, buf, (size_t)r);
        s->mlen += (size_t)r;
        char *nl;
        while (s->mlen && (nl = memchr(s->mbuf, '\n', s->mlen))) {
            *nl = '\0';
            if (nl > s->mbuf && nl[-1] == '\r')
                nl[-1] = '\0';
            agent_line(self, s, s->mbuf);
            size_t used = (size_t)(nl - s->mbuf) + 1;
            memmove(s->mbuf, nl + 1, s->mlen - used);
            s->mlen -= used;
        }
    }
}

/* A CHAT from the CEO: a reply for one of our agents, or a message or
 * question for whichever agents we run now. */
static void on_chat(employee_t *self, const nx_msg_t *m) {
    const char *kind = nx_msg_str(m, "kind"), *text = nx_msg_str(m, "text");
    const char *ref = nx_msg_str(m, "ref"), *sender = nx_msg_str(m, "sender");
    int64_t task = (int64_t)nx_msg_uint(m, "task", 0);
    if (!text)
        text = "";
    bool delivered = false;
    for (uint32_t i = 0; i < self->nslots; i++) {
        slot_t *s = &self->slots[i];
        if (!s->used || s->msg_fd < 0)
            continue;
        if (!strcmp(kind, "msg")) {
            to_agent(s, "msg %s %s", sender ? sender : "?", text);
            delivered = true;
        } else if (!strcmp(kind, "question")) {
            to_agent(s, "question %llu %s %s", (unsigned long long)nx_msg_uint(m, "qid", 0),
                     sender ? sender : "?", text);
            delivered = true;
            break; /* one agent answers */
        } else if (s->task == task) {
            if (!strcmp(kind, "reply"))
                to_agent(s, "reply %s %s", ref ? ref : "-", text);
            else
                to_agent(s, "%s %s%s%s", kind, ref ? ref : "-", *text ? " " : "", text);
            delivered = true;
        }
    }
    if (!delivered)
        nx_info("a '%s' for our agents arrived with none of them running to take it", kind);
}

/* The agent exited: reap it, kill what it left in its process group, take
 * the rest of its output, report, free the slot. */
static int on_exit_fd(zloop_t *loop, zmq_pollitem_t *item, void *arg) {
    slot_t *s = arg;
    employee_t *self = s_self;
    int status = 0;
    if (!s->used || s->child.pidfd != item->fd)
        return 0;
    /* Kill what the agent left in its process group while the exited
     * leader is still a zombie: until it is reaped its pid (the group id)
     * cannot be reused, so the kill cannot hit another process. */
    siginfo_t info = {0};
    if (waitid(P_PID, (id_t)s->child.pid, &info, WEXITED | WNOHANG | WNOWAIT) < 0 ||
        info.si_pid == 0)
        return 0;
    nx_sandbox_kill(&s->child, SIGKILL);
    if (waitpid(s->child.pid, &status, 0) < 0)
        return 0;
    if (s->child.stdout_fd >= 0)
        drain(self, s, s->child.stdout_fd, true);
    if (s->child.stderr_fd >= 0)
        drain(self, s, s->child.stderr_fd, false);
    if (s->msg_fd >= 0) {
        /* What it said last on its channel goes out before its result. */
        zmq_pollitem_t it = {NULL, s->msg_fd, ZMQ_POLLIN, 0};
        on_msg_fd(loop, &it, s);
    }
    poller_end(self, &s->child.stdout_fd);
    poller_end(self, &s->child.stderr_fd);
    poller_end(self, &s->child.stdin_fd);
    poller_end(self, &s->child.pidfd);
    /* In a sandbox the pid we reaped is its init; this is the agent's. */
    status = nx_sandbox_reap(&s->child, status);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    char tail[256], error[512];
    stderr_summary(s, tail, sizeof tail);
    bool ok = !s->flooded && !s->limit && !s->cancelled && code == 0;
    if (s->cancelled)
        snprintf(error, sizeof error, "cancelled: the agent was killed");
    else if (s->limit && !strcmp(s->limit, "soft"))
        snprintf(error, sizeof error,
                 "soft time limit (%lld ms) exceeded: the agent was sent SIGTERM and %s",
                 (long long)s->soft_ms,
                 sig ? "died of it" : code == 0 ? "exited 0 too late" : "exited");
    else if (s->limit)
        snprintf(error, sizeof error, "hard time limit (%lld ms) exceeded: the agent was killed",
                 (long long)s->hard_ms);
    else if (s->flooded)
        snprintf(error, sizeof error,
                 "agent output exceeded max_output (%llu bytes); the agent was killed",
                 (unsigned long long)self->dept->agent.max_output);
    else if (sig)
        snprintf(error, sizeof error, "agent killed by signal %d (%s)%s%s", sig, strsignal(sig),
                 *tail ? ": " : "", tail);
    else if (code != 0)
        snprintf(error, sizeof error, "agent exited with status %d%s%s", code, *tail ? ": " : "",
                 tail);
    /* The adapter reads the output: the result, usage, a verdict, a plan.
     * Exiting with NX_AGENT_EXIT_REJECT is a review that rejects, not a
     * failure. */
    nx_agent_report_t rep = {0};
    bool clean = !s->flooded && !s->limit && !s->cancelled && !sig;
    if (clean && code == NX_AGENT_EXIT_REJECT)
        ok = true;
    if (clean) {
        char perr[512];
        int prc = nx_agent_parse(&self->dept->agent, s->out ? s->out : "", s->out_len, code, &rep,
                                 perr, sizeof perr);
        if (prc < 0 && ok) {
            ok = false;
            snprintf(error, sizeof error, "%s", perr);
        } else if (prc == 0 && rep.error && ok) {
            ok = false;
            snprintf(error, sizeof error, "%s", rep.error);
        } else if (prc == 0 && rep.error) {
            /* The agent's own account of its failure says more than stderr. */
            snprintf(error, sizeof error, "agent exited with status %d: %s", code, rep.error);
        }
        if (prc == 0 && rep.result) {
            free(s->out);
            s->out = rep.result;
            s->out_len = rep.result_len;
            rep.result = NULL;
        }
    }
    nx_debug("task %lld attempt %u done: %s", (long long)s->task, s->attempt,
             ok ? "ok" : "failed");
    if (s->flooded)
        s->out_len = 0;
    /* The slot is free before the result goes, so the credit it reports
     * counts it. */
    slot_t done = *s; /* takes input and out */
    s->input = s->out = NULL;
    slot_reset(s);
    send_result_report(self, &done, ok, code, sig, ok ? NULL : error, &rep);
    nx_agent_report_clear(&rep);
    free(done.input);
    free(done.out);
    return 0;
}

static int on_soft_limit(zloop_t *loop, int timer_id, void *arg) {
    slot_t *s = arg;
    s->soft_timer = -1;
    if (s->used && !s->limit) {
        nx_warn("task %lld: soft time limit (%lld ms) reached; sending SIGTERM",
                (long long)s->task, (long long)s->soft_ms);
        s->limit = "soft";
        nx_sandbox_kill(&s->child, SIGTERM);
    }
    return 0;
}

static int on_hard_limit(zloop_t *loop, int timer_id, void *arg) {
    slot_t *s = arg;
    s->hard_timer = -1;
    if (s->used) {
        nx_warn("task %lld: hard time limit (%lld ms) reached; killing the agent",
                (long long)s->task, (long long)s->hard_ms);
        s->limit = "hard";
        nx_sandbox_kill(&s->child, SIGKILL);
    }
    return 0;
}

/* The in-process sim finished its work time. */
static int on_sim_done(zloop_t *loop, int timer_id, void *arg) {
    slot_t *s = arg;
    employee_t *self = s_self;
    s->sim_timer = -1;
    const nx_agent_conf_t *a = &self->dept->agent;
    slot_t done = *s; /* takes input; the slot is free before the result goes */
    s->input = s->out = NULL;
    slot_reset(s);
    if (nx_agent_sim_fails(a->seed, done.input, done.input_len, done.attempt, a->fail_rate)) {
        send_result(self, &done, false, 1, 0, "sim: simulated failure");
    } else {
        const char *prefix = a->output_prefix ? a->output_prefix : "done: ";
        size_t plen = strlen(prefix);
        done.out = malloc(plen + done.input_len + 1);
        if (done.out) {
            memcpy(done.out, prefix, plen);
            memcpy(done.out + plen, done.input, done.input_len);
            done.out_len = plen + done.input_len;
        }
        send_result(self, &done, done.out != NULL, 0, 0, done.out ? NULL : "out of memory");
    }
    free(done.input);
    free(done.out);
    return 0;
}

static void on_cancel(employee_t *self, const nx_msg_t *m) {
    int64_t task = (int64_t)nx_msg_uint(m, "task", 0);
    for (uint32_t i = 0; i < self->nslots; i++) {
        slot_t *s = &self->slots[i];
        if (!s->used || s->task != task)
            continue;
        nx_info("task %lld attempt %u cancelled by the CEO", (long long)task, s->attempt);
        s->cancelled = true;
        if (s->sim_timer >= 0) {
            send_result(self, s, false, -1, 0, "cancelled");
            slot_reset(s);
        } else
            nx_sandbox_kill(&s->child, SIGKILL);
    }
}

static void start_task(employee_t *self, const nx_msg_t *m) {
    slot_t *s = NULL;
    for (uint32_t i = 0; i < self->nslots && !s; i++)
        if (!self->slots[i].used)
            s = &self->slots[i];
    slot_t overflow = {.soft_timer = -1, .hard_timer = -1, .sim_timer = -1};
    if (!s) {
        /* The CEO sent more than our credit: refuse this one loudly. */
        slot_reset(&overflow);
        overflow.task = (int64_t)nx_msg_uint(m, "task", 0);
        overflow.attempt = (uint32_t)nx_msg_uint(m, "attempt", 0);
        nx_warn("task %lld arrived with no free slot", (long long)overflow.task);
        send_result(self, &overflow, false, -1, 0, "employee had no free slot");
        return;
    }
    slot_reset(s);
    s->used = true;
    s->task = (int64_t)nx_msg_uint(m, "task", 0);
    s->attempt = (uint32_t)nx_msg_uint(m, "attempt", 0);
    s->started_ms = nx_mono_ms();
    size_t len;
    const void *in = nx_msg_bin(m, "input", &len);
    s->input = malloc(len ? len : 1);
    if (s->input && len)
        memcpy(s->input, in, len);
    s->input_len = s->input ? len : 0;
    if (nx_msg_str(m, "workspace"))
        s->workspace = strdup(nx_msg_str(m, "workspace"));
    s->soft_ms = (int64_t)nx_msg_uint(m, "soft_timeout_ms", 0);
    s->hard_ms = (int64_t)nx_msg_uint(m, "hard_timeout_ms", 0);
    const nx_agent_conf_t *a = &self->dept->agent;
    if (a->kind == NX_AGENT_SIM && a->inprocess) {
        int64_t work = nx_agent_sim_work_ms(a->seed, a->work_ms, a->jitter_ms,
                                            a->work_exponential, s->input, s->input_len,
                                            s->attempt);
        s->sim_timer = zloop_timer(self->loop, (size_t)(work > 0 ? work : 1), 1, on_sim_done, s);
        return;
    }

    char err[512];
    char env_task[64], env_attempt[64], env_emp[128], env_dept[128], env_role[128];
    snprintf(env_task, sizeof env_task, "NEXUS_TASK_ID=%lld", (long long)s->task);
    snprintf(env_attempt, sizeof env_attempt, "NEXUS_ATTEMPT=%u", s->attempt);
    snprintf(env_emp, sizeof env_emp, "NEXUS_EMPLOYEE=%s", self->name);
    snprintf(env_dept, sizeof env_dept, "NEXUS_DEPARTMENT=%s", self->dept->name);
    snprintf(env_role, sizeof env_role, "NEXUS_ROLE=%s", self->dept->role ? self->dept->role : "");
    char *envp[10 + 32] = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8",
                           env_task, env_attempt, env_emp, env_dept, env_role,
                           "NEXUS_MSG_FD=3", NULL};
    for (size_t i = 0; i < self->nagent_env && i < 32; i++)
        envp[9 + i] = self->agent_env[i];
    nx_agent_cmd_t cmd;
    char gitdir[PATH_MAX + 8];
    int rc = nx_agent_command(&self->dept->agent, self->exe, self->dept->role, s->input,
                              s->input_len, &cmd, err, sizeof err);
    if (rc == 0) {
        /* What the agent reads on stdin: the input, or nothing when the
         * adapter put it in an argument. */
        free(s->input);
        s->input = cmd.stdin_data;
        s->input_len = cmd.stdin_len;
        cmd.stdin_data = NULL;
        /* A task with a worktree works there: it and the repository's git
         * folder (objects, refs, the worktree's own metadata) writable,
         * everything else as the department's profile says. */
        nx_sandbox_profile_t profile = self->profile;
        if (s->workspace && self->company->repo && profile.nrw + 2 <= NX_SANDBOX_MAX_BINDS) {
            profile.rw[profile.nrw++] = s->workspace;
            snprintf(gitdir, sizeof gitdir, "%s/.git", self->company->repo);
            profile.rw[profile.nrw++] = gitdir;
        }
        int sv[2] = {-1, -1};
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
            sv[0] = sv[1] = -1;
        nx_spawn_opts_t opts = {.argv = cmd.argv, .envp = envp,
                                .cwd = s->workspace ? s->workspace : self->workspace,
                                .profile = self->dept->sandbox ? &profile : NULL,
                                .msg_fd = sv[1] > 2 ? sv[1] : 0};
        rc = nx_sandbox_spawn(&opts, &s->child, err, sizeof err);
        if (sv[1] >= 0)
            close(sv[1]);
        if (rc == 0 && sv[0] >= 0) {
            s->msg_fd = sv[0];
            poller_add(self, s->msg_fd, ZMQ_POLLIN, on_msg_fd, s);
        } else if (sv[0] >= 0)
            close(sv[0]);
    }
    nx_agent_cmd_clear(&cmd);
    if (rc < 0) {
        char msg[600];
        snprintf(msg, sizeof msg, "cannot start agent: %s", err);
        nx_warn("task %lld: %s", (long long)s->task, msg);
        send_result(self, s, false, -1, 0, msg);
        slot_reset(s);
        return;
    }
    nx_debug("task %lld attempt %u started, pid %d", (long long)s->task, s->attempt,
             (int)s->child.pid);
    poller_add(self, s->child.pidfd, ZMQ_POLLIN, on_exit_fd, s);
    poller_add(self, s->child.stdout_fd, ZMQ_POLLIN, on_stdout, s);
    poller_add(self, s->child.stderr_fd, ZMQ_POLLIN, on_stderr, s);
    poller_add(self, s->child.stdin_fd, ZMQ_POLLOUT, on_stdin, s);
    if (s->soft_ms > 0)
        s->soft_timer = zloop_timer(self->loop, (size_t)s->soft_ms, 1, on_soft_limit, s);
    if (s->hard_ms > 0)
        s->hard_timer = zloop_timer(self->loop, (size_t)s->hard_ms, 1, on_hard_limit, s);
}

static int on_dealer(zloop_t *loop, zsock_t *sock, void *arg) {
    employee_t *self = arg;
    for (int i = 0; i < 64; i++) {
        nx_msg_t *m = NULL;
        char err[256];
        int rc = nx_wire_recv(sock, false, NULL, &m, NULL, err, sizeof err);
        if (rc == -EAGAIN)
            break;
        if (rc < 0) {
            nx_warn("bad message from the CEO: %s", rc == NX_EBADMSG ? err : nx_strerror(rc));
            continue;
        }
        self->last_heard_ms = nx_mono_ms();
        switch (nx_msg_type(m)) {
        case NX_MSG_WELCOME:
            nx_info("registered with the CEO at %s", self->home.ceo);
            /* Tasks still running from before a CEO restart: report them so
             * that the CEO adopts them instead of letting their lease lapse. */
            for (uint32_t k = 0; k < self->nslots; k++)
                if (self->slots[k].used) {
                    nx_msg_t *r = nx_msg_new(NX_MSG_RUNNING);
                    nx_msg_set_uint(r, "task", (uint64_t)self->slots[k].task);
                    nx_msg_set_uint(r, "attempt", self->slots[k].attempt);
                    send_msg(self, r);
                    nx_msg_destroy(&r);
                }
            break;
        case NX_MSG_CANCEL: on_cancel(self, m); break;
        case NX_MSG_CHAT: on_chat(self, m); break;
        case NX_MSG_HEARTBEAT: break;
        case NX_MSG_TASK:
            self->received++;
            start_task(self, m);
            break;
        case NX_MSG_STOP:
            nx_info("the CEO asked us to stop");
            self->stopping = true;
            break;
        case NX_MSG_ERROR:
            if (nx_msg_str(m, "code") && !strcmp(nx_msg_str(m, "code"), "not_registered")) {
                /* Several messages may be refused at once; one hello will do. */
                if (nx_mono_ms() - self->last_hello_ms < self->company->heartbeat_ms)
                    break;
                nx_info("the CEO does not know us (it restarted?); saying hello again");
                send_hello(self);
            } else
                nx_warn("the CEO says: %s: %s", nx_msg_str(m, "code"), nx_msg_str(m, "message"));
            break;
        default: nx_warn("unexpected %s from the CEO", nx_msg_type_name(nx_msg_type(m))); break;
        }
        nx_msg_destroy(&m);
    }
    return self->stopping ? -1 : 0;
}

static int on_heartbeat(zloop_t *loop, int timer_id, void *arg) {
    employee_t *self = arg;
    int64_t silent = nx_mono_ms() - self->last_heard_ms;
    if (silent > self->company->heartbeat_ms * (int64_t)self->company->liveness) {
        nx_warn("no word from the CEO for %lld ms; reconnecting", (long long)silent);
        if (connect_dealer(self) < 0)
            return -1;
        return 0;
    }
    nx_msg_t *m = nx_msg_new(NX_MSG_HEARTBEAT);
    send_msg(self, m);
    nx_msg_destroy(&m);
    return 0;
}

static void add_secret(employee_t *self, const char *name, const char *value, size_t len) {
    if (len < 4)
        return; /* too short to tell from ordinary text */
    self->secrets = realloc(self->secrets, (self->nsecrets + 1) * sizeof *self->secrets);
    self->secrets[self->nsecrets].name = strdup(name);
    self->secrets[self->nsecrets].value = strndup(value, len);
    self->nsecrets++;
}

/* The department's credentials: variables from our environment go to its
 * agents (and only theirs); files are bound read-only into their sandbox.
 * Every value, and every long token in a file, is remembered for scrubbing. */
static void load_credentials(employee_t *self) {
    for (char **n = self->dept->credential_env; n && *n; n++) {
        const char *v = getenv(*n);
        if (!v) {
            nx_warn("credential variable %s is not set; %s's agents run without it", *n,
                    self->dept->name);
            continue;
        }
        char *kv = NULL;
        if (asprintf(&kv, "%s=%s", *n, v) < 0)
            continue;
        self->agent_env = realloc(self->agent_env, (self->nagent_env + 1) * sizeof(char *));
        self->agent_env[self->nagent_env++] = kv;
        add_secret(self, *n, v, strlen(v));
    }
    for (char **f = self->dept->credential_files; f && *f; f++) {
        if (self->profile.nro < NX_SANDBOX_MAX_BINDS)
            self->profile.ro[self->profile.nro++] = *f;
        FILE *fp = fopen(*f, "r");
        if (!fp)
            continue; /* a directory (a login folder): bound, nothing to scrub by content */
        char buf[65536];
        size_t n = fread(buf, 1, sizeof buf - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        const char *base = strrchr(*f, '/') ? strrchr(*f, '/') + 1 : *f;
        size_t start = 0, end = n;
        while (start < end && (buf[start] == ' ' || buf[start] == '\n' || buf[start] == '\t'))
            start++;
        while (end > start && (buf[end - 1] == ' ' || buf[end - 1] == '\n' || buf[end - 1] == '\t'))
            end--;
        add_secret(self, base, buf + start, end - start);
        /* Tokens inside a structured file (key: value lines). */
        char *save = NULL;
        for (char *tok = strtok_r(buf, " \t\n\r:=\"'", &save); tok;
             tok = strtok_r(NULL, " \t\n\r:=\"'", &save))
            if (strlen(tok) >= 16)
                add_secret(self, base, tok, strlen(tok));
    }
}

int nx_employee_run(const nx_employee_opts_t *opts) {
    employee_t self_ = {0}, *self = &self_;
    char err[512];
    int rc = nx_company_load(opts->company_path, &self->company, err, sizeof err);
    if (rc < 0) {
        nx_error("%s", err);
        return 2;
    }
    int idx = nx_company_employee(self->company, opts->name);
    if (idx < 0) {
        nx_error("%s: no employee named '%s'", opts->company_path, opts->name);
        nx_company_destroy(&self->company);
        return 2;
    }
    if ((rc = nx_home_resolve(opts->home, self->company, false, &self->home)) < 0) {
        nx_error("home folder: %s", nx_strerror(rc));
        nx_company_destroy(&self->company);
        return 2;
    }
    self->name = self->company->employees[idx].name;
    self->dept = &self->company->depts[self->company->employees[idx].dept];
    self->exe = opts->exe;
    self->nslots = self->dept->capacity;
    self->slots = calloc(self->nslots, sizeof *self->slots);
    for (uint32_t i = 0; i < self->nslots; i++)
        slot_reset(&self->slots[i]);
    s_self = self;
    signal(SIGPIPE, SIG_IGN);
    snprintf(self->workspace, sizeof self->workspace, "%s/workspaces", self->home.dir);
    mkdir(self->workspace, 0755);
    snprintf(self->workspace, sizeof self->workspace, "%s/workspaces/%s", self->home.dir,
             self->name);
    if (mkdir(self->workspace, 0755) < 0 && errno != EEXIST) {
        nx_error("cannot create the workspace %s: %s", self->workspace, strerror(errno));
        rc = 2;
        goto out;
    }
    nx_sandbox_profile_t *p = &self->profile;
    p->net = self->dept->net_host ? NX_NET_HOST : NX_NET_NONE;
    for (char **a = self->dept->net_allow; a && *a && p->nallow < NX_SANDBOX_MAX_BINDS; a++)
        p->allow[p->nallow++] = *a;
    if (p->nallow) {
        p->net = NX_NET_ALLOW;
        p->proxy_exe = self->exe;
    }
    p->rw[p->nrw++] = self->workspace;
    for (char **a = self->dept->sandbox_rw; a && *a && p->nrw < NX_SANDBOX_MAX_BINDS; a++)
        p->rw[p->nrw++] = *a;
    for (char **a = self->dept->sandbox_ro; a && *a && p->nro < NX_SANDBOX_MAX_BINDS; a++)
        p->ro[p->nro++] = *a;
    p->mem_bytes = self->dept->sandbox_mem;
    p->pids = self->dept->sandbox_pids;
    p->cpu_percent = self->dept->sandbox_cpu;
    load_credentials(self);
    if (!self->dept->sandbox)
        nx_warn("department %s has 'sandbox: none': its agents run unconfined, with this "
                "employee's rights",
                self->dept->name);
    self->loop = zloop_new();
    nx_signals_watch(self->loop, opts->sigfd);
    zloop_set_nonstop(self->loop, false);
    if (connect_dealer(self) < 0) {
        nx_error("cannot connect to the CEO at %s", self->home.ceo);
        rc = 2;
        goto out;
    }
    zloop_timer(self->loop, (size_t)self->company->heartbeat_ms, 0, on_heartbeat, self);
    nx_info("employee %s of %s up, capacity %u, CEO at %s", self->name, self->dept->name,
            self->nslots, self->home.ceo);
    zloop_start(self->loop);
    rc = 0;
out:
    /* Agents die with us; their tasks go back to the queue when the CEO
     * hears we left (or when our heartbeats stop). */
    for (uint32_t i = 0; i < self->nslots; i++)
        if (self->slots[i].used) {
            nx_sandbox_kill(&self->slots[i].child, SIGKILL);
            waitpid(self->slots[i].child.pid, NULL, 0);
            nx_child_close(&self->slots[i].child);
            slot_reset(&self->slots[i]);
        }
    if (self->dealer) {
        nx_msg_t *bye = nx_msg_new(NX_MSG_BYE);
        nx_msg_set_str(bye, "reason", self->stopping ? "stopped by the CEO" : "signal");
        send_msg(self, bye);
        nx_msg_destroy(&bye);
    }
    zloop_destroy(&self->loop);
    zsock_destroy(&self->dealer);
    free(self->slots);
    for (size_t i = 0; i < self->nsecrets; i++) {
        free(self->secrets[i].name);
        free(self->secrets[i].value);
    }
    free(self->secrets);
    for (size_t i = 0; i < self->nagent_env; i++)
        free(self->agent_env[i]);
    free(self->agent_env);
    nx_info("employee %s stopped", self->name);
    nx_company_destroy(&self->company);
    return rc;
}
