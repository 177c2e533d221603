/*  node.c - the node actor: spawns and restarts employees.
 *
 *  Child state:   (none) ──spawn──> running ──exit──> waiting ──delay──> spawn
 *  The restart delay doubles from 100 ms up to 5 s while an employee keeps
 *  dying within 10 s of its start, and resets once it has lived longer. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nx_node.h"
#include "nx_runtime.h"

#define GRACE_MS 5000

typedef struct {
    const char *name;       /* borrowed from the company */
    pid_t pid;              /* 0 when not running */
    int64_t started_ms;     /* monotonic */
    int64_t restart_at_ms;  /* monotonic; 0 = no restart pending */
    int64_t delay_ms;       /* next restart delay */
    uint64_t restarts;
} child_t;

typedef struct {
    nx_company_t *company;
    nx_home_t home;
    const char *exe;
    const char *company_path;
    const char *home_arg;
    char name[NX_PROTO_MAX_NAME + 1];
    child_t *children;
    size_t nchildren;
    zsock_t *dealer;
    zloop_t *loop;
    bool stopping;
} node_t;

static pid_t spawn_employee(node_t *self, child_t *c) {
    char logpath[700];
    snprintf(logpath, sizeof logpath, "%s/%s.log", self->home.logs, c->name);
    int logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        setpgid(0, 0);
        if (logfd >= 0) {
            dup2(logfd, 1);
            dup2(logfd, 2);
        }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        char *argv[12];
        int n = 0;
        argv[n++] = (char *)self->exe;
        argv[n++] = "employee";
        argv[n++] = "--name";
        argv[n++] = (char *)c->name;
        argv[n++] = "--company";
        argv[n++] = (char *)self->company_path;
        argv[n++] = "--home";
        argv[n++] = self->home.dir;
        argv[n] = NULL;
        execv(self->exe, argv);
        _exit(127);
    }
    if (logfd >= 0)
        close(logfd);
    if (pid < 0) {
        nx_error("cannot start employee %s: %s", c->name, strerror(errno));
        return -1;
    }
    c->pid = pid;
    c->started_ms = nx_mono_ms();
    c->restart_at_ms = 0;
    nx_info("started employee %s (pid %d)", c->name, (int)pid);
    return pid;
}

static void send_node(node_t *self, nx_msg_type_t type) {
    nx_msg_t *m = nx_msg_new(type);
    nx_msg_set_id(m, nx_wire_next_id());
    nx_msg_set_from(m, self->name);
    if (type == NX_MSG_NODE_HELLO) {
        nx_msg_set_str(m, "name", self->name);
        nx_msg_set_uint(m, "pid", (uint64_t)getpid());
    }
    nx_wire_send(self->dealer, NULL, m, true);
    nx_msg_destroy(&m);
}

static int on_dealer(zloop_t *loop, zsock_t *sock, void *arg) {
    node_t *self = arg;
    for (;;) {
        nx_msg_t *m = NULL;
        char err[256];
        int rc = nx_wire_recv(sock, false, NULL, &m, NULL, err, sizeof err);
        if (rc == -EAGAIN)
            break;
        if (rc < 0) {
            nx_warn("bad message from the CEO: %s", err);
            continue;
        }
        if (nx_msg_type(m) == NX_MSG_STOP) {
            nx_info("the CEO asked us to stop: %s",
                    nx_msg_str(m, "reason") ? nx_msg_str(m, "reason") : "");
            self->stopping = true;
        } else if (nx_msg_type(m) == NX_MSG_ERROR && nx_msg_str(m, "code") &&
                   !strcmp(nx_msg_str(m, "code"), "not_registered"))
            send_node(self, NX_MSG_NODE_HELLO);
        nx_msg_destroy(&m);
    }
    return self->stopping ? -1 : 0;
}

static int on_tick(zloop_t *loop, int timer_id, void *arg) {
    node_t *self = arg;
    int64_t now = nx_mono_ms();
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < self->nchildren; i++) {
            child_t *c = &self->children[i];
            if (c->pid != pid)
                continue;
            c->pid = 0;
            if (now - c->started_ms > 10000)
                c->delay_ms = 100;
            c->restart_at_ms = now + c->delay_ms;
            nx_warn("employee %s (pid %d) %s %d; restarting in %lld ms", c->name, (int)pid,
                    WIFSIGNALED(status) ? "killed by signal" : "exited with status",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                    (long long)c->delay_ms);
            c->delay_ms = c->delay_ms * 2 > 5000 ? 5000 : c->delay_ms * 2;
        }
    }
    for (size_t i = 0; i < self->nchildren; i++) {
        child_t *c = &self->children[i];
        if (!c->pid && c->restart_at_ms && now >= c->restart_at_ms) {
            c->restarts++;
            spawn_employee(self, c);
        }
    }
    return 0;
}

static int on_heartbeat(zloop_t *loop, int timer_id, void *arg) {
    send_node(arg, NX_MSG_HEARTBEAT);
    return 0;
}

/* Reverse start order: SIGTERM each, wait up to the grace period, then
 * SIGKILL what is left. */
static void stop_children(node_t *self) {
    for (size_t i = self->nchildren; i-- > 0;) {
        child_t *c = &self->children[i];
        if (!c->pid)
            continue;
        kill(c->pid, SIGTERM);
        int64_t deadline = nx_mono_ms() + GRACE_MS;
        while (nx_mono_ms() < deadline) {
            if (waitpid(c->pid, NULL, WNOHANG) == c->pid) {
                c->pid = 0;
                break;
            }
            usleep(10000);
        }
        if (c->pid) {
            nx_warn("employee %s did not stop within %d ms; killing it", c->name, GRACE_MS);
            kill(c->pid, SIGKILL);
            waitpid(c->pid, NULL, 0);
            c->pid = 0;
        }
    }
}

int nx_node_run(const nx_node_opts_t *opts) {
    node_t self_ = {0}, *self = &self_;
    char err[512];
    int rc = nx_company_load(opts->company_path, &self->company, err, sizeof err);
    if (rc < 0) {
        nx_error("%s", err);
        return 2;
    }
    if ((rc = nx_home_resolve(opts->home, self->company, true, &self->home)) < 0) {
        nx_error("home folder: %s", nx_strerror(rc));
        nx_company_destroy(&self->company);
        return 2;
    }
    self->exe = opts->exe;
    self->company_path = self->company->path;
    if (opts->name)
        snprintf(self->name, sizeof self->name, "%s", opts->name);
    else if (gethostname(self->name, sizeof self->name - 1) < 0)
        snprintf(self->name, sizeof self->name, "node");
    self->nchildren = self->company->nemployees;
    self->children = calloc(self->nchildren ? self->nchildren : 1, sizeof *self->children);
    for (size_t i = 0; i < self->nchildren; i++) {
        self->children[i].name = self->company->employees[i].name;
        self->children[i].delay_ms = 100;
    }
    self->dealer = zsock_new(ZMQ_DEALER);
    zsock_set_linger(self->dealer, 500);
    zsock_set_reconnect_ivl(self->dealer, 100);
    zsock_set_reconnect_ivl_max(self->dealer, 2000);
    zsock_connect(self->dealer, "%s", self->home.ceo);
    send_node(self, NX_MSG_NODE_HELLO);
    for (size_t i = 0; i < self->nchildren; i++)
        spawn_employee(self, &self->children[i]);
    nx_info("node %s supervising %zu employee(s)", self->name, self->nchildren);
    self->loop = zloop_new();
    nx_signals_watch(self->loop, opts->sigfd);
    zloop_reader(self->loop, self->dealer, on_dealer, self);
    zloop_timer(self->loop, 50, 0, on_tick, self);
    zloop_timer(self->loop, (size_t)self->company->heartbeat_ms, 0, on_heartbeat, self);
    zloop_start(self->loop);
    nx_info("node %s stopping its employees", self->name);
    stop_children(self);
    send_node(self, NX_MSG_BYE);
    zloop_destroy(&self->loop);
    zsock_destroy(&self->dealer);
    free(self->children);
    nx_company_destroy(&self->company);
    return 0;
}
