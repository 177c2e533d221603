/*  node.c - the node actor: an OTP-style supervisor of the employees on
 *  this host.
 *
 *  Each department is a supervision group with a strategy, an intensity
 *  and a period; each employee has a restart type:
 *
 *      child exits ──> restart wanted? (permanent: always; transient: only
 *           │           after an abnormal exit; temporary: never)
 *           └─yes──> more than `intensity` restarts within `period`?
 *                      ├─yes──> give up: stop the department, tell the CEO
 *                      └─no───> one_for_one:  restart the child
 *                               one_for_all:  stop the others, restart all
 *                               rest_for_one: stop the later ones, restart
 *                                             the child and those
 *
 *  Stopping is always SIGTERM, then SIGKILL after the department's shutdown
 *  grace, in reverse start order, as OTP does. */
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

typedef struct {
    const char *name;      /* borrowed from the company */
    size_t dept;           /* its supervision group */
    nx_restart_t restart;  /* its restart type */
    pid_t pid;             /* 0 when not running */
    bool finished;         /* ended and not to be restarted */
    uint64_t restarts;
} child_t;

typedef struct {
    int64_t *restarts;     /* monotonic times of recent restarts, oldest first */
    size_t n;
    bool gave_up;          /* intensity exceeded: nothing here runs any more */
} group_t;

typedef struct {
    nx_company_t *company;
    nx_home_t home;
    const char *exe;
    char name[NX_PROTO_MAX_NAME + 1];
    child_t *children;     /* in start order (the company file's order) */
    size_t nchildren;
    group_t *groups;       /* one per department */
    zsock_t *dealer;
    zloop_t *loop;
    bool stopping;
} node_t;

static void spawn_employee(node_t *self, child_t *c) {
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
        char *argv[] = {(char *)self->exe, "employee", "--name", (char *)c->name, "--company",
                        self->company->path, "--home", self->home.dir, NULL};
        execv(self->exe, argv);
        _exit(127);
    }
    if (logfd >= 0)
        close(logfd);
    if (pid < 0) {
        nx_error("cannot start employee %s: %s", c->name, strerror(errno));
        return;
    }
    c->pid = pid;
    nx_info("started employee %s (pid %d)", c->name, (int)pid);
}

/* SIGTERM, then SIGKILL after the grace period; waits for the exit. */
static void stop_child(node_t *self, child_t *c) {
    if (!c->pid)
        return;
    int64_t grace = self->company->depts[c->dept].shutdown_ms;
    kill(c->pid, SIGTERM);
    int64_t deadline = nx_mono_ms() + grace;
    while (nx_mono_ms() < deadline) {
        if (waitpid(c->pid, NULL, WNOHANG) == c->pid) {
            c->pid = 0;
            return;
        }
        usleep(5000);
    }
    nx_warn("employee %s did not stop within %lld ms; killing it", c->name, (long long)grace);
    kill(c->pid, SIGKILL);
    waitpid(c->pid, NULL, 0);
    c->pid = 0;
}

static void send_node(node_t *self, nx_msg_t *m) {
    nx_msg_set_id(m, nx_wire_next_id());
    nx_msg_set_from(m, self->name);
    nx_wire_send(self->dealer, NULL, m, true);
}

static void send_hello(node_t *self) {
    nx_msg_t *m = nx_msg_new(NX_MSG_NODE_HELLO);
    nx_msg_set_str(m, "name", self->name);
    nx_msg_set_uint(m, "pid", (uint64_t)getpid());
    send_node(self, m);
    nx_msg_destroy(&m);
    /* A new CEO must learn which departments this node gave up on. */
    for (size_t d = 0; d < self->company->ndepts; d++)
        if (self->groups[d].gave_up) {
            nx_msg_t *s = nx_msg_new(NX_MSG_SUPERVISOR);
            nx_msg_set_str(s, "dept", self->company->depts[d].name);
            nx_msg_set_str(s, "state", "gave_up");
            nx_msg_set_str(s, "detail", "restart intensity exceeded; its employees are stopped");
            send_node(self, s);
            nx_msg_destroy(&s);
        }
}

/* Counts a restart in the group's window; true when it exceeds intensity. */
static bool intensity_exceeded(node_t *self, size_t d) {
    const nx_dept_conf_t *dc = &self->company->depts[d];
    group_t *g = &self->groups[d];
    int64_t now = nx_mono_ms();
    size_t keep = 0;
    for (size_t i = 0; i < g->n; i++)
        if (now - g->restarts[i] < dc->period_ms)
            g->restarts[keep++] = g->restarts[i];
    g->n = keep;
    g->restarts = realloc(g->restarts, (g->n + 1) * sizeof *g->restarts);
    g->restarts[g->n++] = now;
    return g->n > dc->intensity;
}

static void give_up(node_t *self, size_t d) {
    const nx_dept_conf_t *dc = &self->company->depts[d];
    char detail[256];
    snprintf(detail, sizeof detail,
             "more than %u restart(s) within %lld ms; supervisor gave up and stopped the "
             "department's employees",
             dc->intensity, (long long)dc->period_ms);
    nx_error("department %s: %s", dc->name, detail);
    self->groups[d].gave_up = true;
    for (size_t i = self->nchildren; i-- > 0;)
        if (self->children[i].dept == d)
            stop_child(self, &self->children[i]);
    nx_msg_t *m = nx_msg_new(NX_MSG_SUPERVISOR);
    nx_msg_set_str(m, "dept", dc->name);
    nx_msg_set_str(m, "state", "gave_up");
    nx_msg_set_str(m, "detail", detail);
    send_node(self, m);
    nx_msg_destroy(&m);
}

/* Applies the department's strategy after child `idx` died. */
static void restart_after(node_t *self, size_t idx) {
    child_t *dead = &self->children[idx];
    size_t d = dead->dept;
    nx_strategy_t strategy = self->company->depts[d].strategy;
    /* Which siblings go down with it: none, all, or those started later. */
    for (size_t i = self->nchildren; i-- > 0;) {
        child_t *c = &self->children[i];
        if (c->dept != d || i == idx || !c->pid)
            continue;
        if (strategy == NX_ONE_FOR_ALL || (strategy == NX_REST_FOR_ONE && i > idx)) {
            nx_info("%s: stopping %s (%s)", self->company->depts[d].name, c->name,
                    nx_strategy_name(strategy));
            stop_child(self, c);
        }
    }
    for (size_t i = 0; i < self->nchildren; i++) {
        child_t *c = &self->children[i];
        if (c->dept != d || c->pid || c->finished)
            continue;
        bool mine = i == idx || strategy == NX_ONE_FOR_ALL ||
                    (strategy == NX_REST_FOR_ONE && i > idx);
        if (mine) {
            c->restarts++;
            spawn_employee(self, c);
        }
    }
}

static void child_exited(node_t *self, child_t *c, int status) {
    size_t idx = (size_t)(c - self->children);
    c->pid = 0;
    bool normal = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    char how[64];
    if (WIFSIGNALED(status))
        snprintf(how, sizeof how, "was killed by signal %d", WTERMSIG(status));
    else
        snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
    bool wanted = c->restart == NX_PERMANENT || (c->restart == NX_TRANSIENT && !normal);
    if (!wanted || self->stopping) {
        nx_info("employee %s %s; %s, so it is not restarted", c->name, how,
                nx_restart_name(c->restart));
        c->finished = true;
        return;
    }
    if (self->groups[c->dept].gave_up)
        return;
    nx_warn("employee %s %s; restarting (%s, %s)", c->name, how, nx_restart_name(c->restart),
            nx_strategy_name(self->company->depts[c->dept].strategy));
    if (intensity_exceeded(self, c->dept)) {
        c->finished = true;
        give_up(self, c->dept);
        return;
    }
    restart_after(self, idx);
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
            send_hello(self);
        nx_msg_destroy(&m);
    }
    return self->stopping ? -1 : 0;
}

static int on_tick(zloop_t *loop, int timer_id, void *arg) {
    node_t *self = arg;
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        for (size_t i = 0; i < self->nchildren; i++)
            if (self->children[i].pid == pid)
                child_exited(self, &self->children[i], status);
    return 0;
}

static int on_heartbeat(zloop_t *loop, int timer_id, void *arg) {
    node_t *self = arg;
    nx_msg_t *m = nx_msg_new(NX_MSG_HEARTBEAT);
    send_node(self, m);
    nx_msg_destroy(&m);
    return 0;
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
    if (opts->name)
        snprintf(self->name, sizeof self->name, "%s", opts->name);
    else if (gethostname(self->name, sizeof self->name - 1) < 0)
        snprintf(self->name, sizeof self->name, "node");
    /* Which departments this node runs: all, or those it was given. */
    bool *mine = calloc(self->company->ndepts ? self->company->ndepts : 1, sizeof *mine);
    for (size_t d = 0; d < self->company->ndepts; d++)
        mine[d] = opts->departments == NULL;
    if (opts->departments) {
        char *list = strdup(opts->departments), *save = NULL;
        for (char *dn = strtok_r(list, ",", &save); dn; dn = strtok_r(NULL, ",", &save)) {
            int d = nx_company_dept(self->company, dn);
            if (d < 0) {
                nx_error("--departments: no department '%s' in %s", dn, opts->company_path);
                free(list);
                free(mine);
                nx_company_destroy(&self->company);
                return 2;
            }
            mine[d] = true;
        }
        free(list);
    }
    self->children = calloc(self->company->nemployees ? self->company->nemployees : 1,
                            sizeof *self->children);
    self->groups = calloc(self->company->ndepts, sizeof *self->groups);
    for (size_t i = 0; i < self->company->nemployees; i++) {
        if (!mine[self->company->employees[i].dept])
            continue;
        child_t *ch = &self->children[self->nchildren++];
        ch->name = self->company->employees[i].name;
        ch->dept = self->company->employees[i].dept;
        ch->restart = self->company->employees[i].restart;
    }
    free(mine);
    setenv("NEXUS_NODE", self->name, 1); /* its employees say which node runs them */
    self->dealer = zsock_new(ZMQ_DEALER);
    zsock_set_linger(self->dealer, 500);
    zsock_set_reconnect_ivl(self->dealer, 100);
    zsock_set_reconnect_ivl_max(self->dealer, 2000);
    zsock_connect(self->dealer, "%s", self->home.ceo);
    send_hello(self);
    for (size_t i = 0; i < self->nchildren; i++)
        spawn_employee(self, &self->children[i]);
    nx_info("node %s supervising %zu employee(s)", self->name, self->nchildren);
    self->loop = zloop_new();
    nx_signals_watch(self->loop, opts->sigfd);
    zloop_reader(self->loop, self->dealer, on_dealer, self);
    zloop_timer(self->loop, 20, 0, on_tick, self);
    zloop_timer(self->loop, (size_t)self->company->heartbeat_ms, 0, on_heartbeat, self);
    zloop_start(self->loop);
    self->stopping = true;
    nx_info("node %s stopping its employees", self->name);
    for (size_t i = self->nchildren; i-- > 0;)
        stop_child(self, &self->children[i]);
    nx_msg_t *bye = nx_msg_new(NX_MSG_BYE);
    send_node(self, bye);
    nx_msg_destroy(&bye);
    zloop_destroy(&self->loop);
    zsock_destroy(&self->dealer);
    for (size_t d = 0; d < self->company->ndepts; d++)
        free(self->groups[d].restarts);
    free(self->groups);
    free(self->children);
    nx_company_destroy(&self->company);
    return 0;
}
