/*  bench_route - actor-to-actor messages through a router, Nexus against a
 *  raw ZeroMQ broker, measured in one run with the same libzmq.
 *
 *  raw:    DEALER a -> ROUTER broker -> DEALER b and back. The broker, a
 *          child process, forwards [to][payload] as [from][payload] by
 *          identity and decodes nothing.
 *  nexus:  two employees a and b registered with a running `nexus ceo`,
 *          each holding a task (only agents at work may talk); a sends
 *          `chat send employee:b TEXT`, the CEO decodes, checks, records
 *          the message in the ledger (group commit) and delivers it to b,
 *          which answers the same way. One round trip is a -> b -> a.
 *
 *  For each body size (64 B, 4 KB): round-trip p50/p99 one at a time, and
 *  round trips per second with `inflight` outstanding. Prints JSON.
 *
 *  Usage: bench_route raw [N] [INFLIGHT]
 *         bench_route nexus CEO_ENDPOINT DEPT [N] [INFLIGHT]
 *  (the nexus mode needs a CEO whose company has employees named
 *  bench-a and bench-b in DEPT; bench/run starts it). */
#define _GNU_SOURCE
#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nx_runtime.h"

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double p50_us, p99_us, per_sec;
} figure_t;

/* ---- the transport under test ---- */

typedef struct {
    bool nexus;
    zsock_t *a, *b;        /* the two actors */
    int64_t task_a, task_b;
    int64_t last_hb_us;
    uint64_t sent;         /* messages a has sent */
} pair_t;

static void raw_send(zsock_t *s, const char *to, const char *body, size_t len) {
    zmsg_t *m = zmsg_new();
    zmsg_addstr(m, to);
    zmsg_addmem(m, body, len);
    zmsg_send(&m, s);
}

static void nexus_send(zsock_t *s, const char *from, const char *to, int64_t task,
                       const char *body) {
    nx_msg_t *m = nx_msg_new(NX_MSG_CHAT);
    nx_msg_set_id(m, nx_wire_next_id());
    nx_msg_set_from(m, from);
    nx_msg_set_str(m, "kind", "send");
    nx_msg_set_str(m, "ref", "r");
    nx_msg_set_str(m, "to", to);
    nx_msg_set_str(m, "text", body);
    nx_msg_set_uint(m, "task", (uint64_t)task);
    nx_wire_send(s, NULL, m, false);
    nx_msg_destroy(&m);
}

static void heartbeat(pair_t *p) {
    if (!p->nexus || now_us() - p->last_hb_us < 300000)
        return;
    p->last_hb_us = now_us();
    zsock_t *both[] = {p->a, p->b};
    for (int i = 0; i < 2; i++) {
        nx_msg_t *m = nx_msg_new(NX_MSG_HEARTBEAT);
        nx_msg_set_id(m, nx_wire_next_id());
        nx_msg_set_uint(m, "free", 0);
        nx_wire_send(both[i], NULL, m, false);
        nx_msg_destroy(&m);
    }
}

/* Reads one message from s (it is readable): 1 when it is a delivery, 0
 * for anything else (an ack, a heartbeat), -1 when the CEO refused. */
static int recv_one(pair_t *p, zsock_t *s) {
    if (!p->nexus) {
        zmsg_t *m = zmsg_recv(s);
        zmsg_destroy(&m);
        return 1;
    }
    nx_msg_t *m = NULL;
    char err[256];
    uint64_t id;
    if (nx_wire_recv(s, false, NULL, &m, &id, err, sizeof err) < 0)
        return 0;
    int rc = 0;
    if (nx_msg_type(m) == NX_MSG_CHAT && !strcmp(nx_msg_str(m, "kind"), "msg"))
        rc = 1;
    else if (nx_msg_type(m) == NX_MSG_CHAT && !strcmp(nx_msg_str(m, "kind"), "error")) {
        fprintf(stderr, "bench_route: the CEO refused: %s\n", nx_msg_str(m, "text"));
        rc = -1;
    }
    nx_msg_destroy(&m);
    return rc;
}

/* Waits for the next delivery on s. Returns 0, or -1 (refused, or 10 s of
 * silence). */
static int recv_delivery(pair_t *p, zsock_t *s) {
    for (;;) {
        heartbeat(p);
        zmq_pollitem_t it = {zsock_resolve(s), 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 10000) <= 0)
            return -1;
        int rc = recv_one(p, s);
        if (rc != 0)
            return rc > 0 ? 0 : -1;
    }
}

static void a_to_b(pair_t *p, const char *body, size_t len) {
    if (p->nexus)
        nexus_send(p->a, "bench-a", "employee:bench-b", p->task_a, body);
    else
        raw_send(p->a, "b", body, len);
}

static void b_to_a(pair_t *p, const char *body, size_t len) {
    if (p->nexus)
        nexus_send(p->b, "bench-b", "employee:bench-a", p->task_b, body);
    else
        raw_send(p->b, "a", body, len);
}

/* One at a time: n round trips, p50/p99. */
static int latency(pair_t *p, const char *body, size_t len, int n, figure_t *f) {
    double *t = calloc((size_t)n, sizeof *t);
    for (int i = 0; i < n; i++) {
        double t0 = now_us();
        a_to_b(p, body, len);
        if (recv_delivery(p, p->b) < 0)
            return -1;
        b_to_a(p, body, len);
        if (recv_delivery(p, p->a) < 0)
            return -1;
        t[i] = now_us() - t0;
    }
    qsort(t, (size_t)n, sizeof *t, cmp);
    f->p50_us = t[n / 2];
    f->p99_us = t[(n * 99) / 100];
    free(t);
    return 0;
}

/* `inflight` round trips outstanding: b echoes everything it gets. */
static int throughput(pair_t *p, const char *body, size_t len, int n, int inflight,
                      figure_t *f) {
    int sent = 0, done = 0;
    double t0 = now_us();
    while (sent < inflight && sent < n) {
        a_to_b(p, body, len);
        sent++;
    }
    while (done < n) {
        heartbeat(p);
        zmq_pollitem_t items[2] = {{zsock_resolve(p->b), 0, ZMQ_POLLIN, 0},
                                   {zsock_resolve(p->a), 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, 10000) <= 0) {
            fprintf(stderr, "bench_route: stalled after %d of %d round trips\n", done, n);
            return -1;
        }
        int rc;
        if ((items[0].revents & ZMQ_POLLIN) && (rc = recv_one(p, p->b)) != 0) {
            if (rc < 0)
                return -1;
            b_to_a(p, body, len);
        }
        if ((items[1].revents & ZMQ_POLLIN) && (rc = recv_one(p, p->a)) != 0) {
            if (rc < 0)
                return -1;
            done++;
            if (sent < n) {
                a_to_b(p, body, len);
                sent++;
            }
        }
    }
    f->per_sec = n / ((now_us() - t0) / 1e6);
    return 0;
}

/* ---- setting up ---- */

static pid_t start_broker(const char *endpoint) {
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    zsock_t *r = zsock_new(ZMQ_ROUTER);
    zsock_set_router_mandatory(r, 1);
    zsock_set_sndhwm(r, 0);
    zsock_set_rcvhwm(r, 0);
    if (zsock_bind(r, "%s", endpoint) < 0)
        _exit(1);
    for (;;) {
        zmsg_t *m = zmsg_recv(r);
        if (!m)
            break;
        zframe_t *from = zmsg_pop(m), *to = zmsg_pop(m);
        zmsg_prepend(m, &from);
        zmsg_prepend(m, &to);
        zmsg_send(&m, r);
        zmsg_destroy(&m);
    }
    _exit(0);
}

static zsock_t *dealer(const char *endpoint, const char *identity) {
    zsock_t *s = zsock_new(ZMQ_DEALER);
    if (identity)
        zsock_set_identity(s, identity);
    zsock_set_sndhwm(s, 0);
    zsock_set_rcvhwm(s, 0);
    zsock_connect(s, "%s", endpoint);
    return s;
}

/* Registers as an employee and waits for its task: a registered employee
 * with a running task is an agent that may talk. */
static int employee_up(zsock_t *s, const char *name, const char *dept, int64_t *ret_task) {
    nx_msg_t *m = nx_msg_new(NX_MSG_HELLO);
    nx_msg_set_id(m, nx_wire_next_id());
    nx_msg_set_from(m, name);
    nx_msg_set_str(m, "name", name);
    nx_msg_set_str(m, "dept", dept);
    nx_msg_set_uint(m, "capacity", 1);
    nx_wire_send(s, NULL, m, false);
    nx_msg_destroy(&m);
    double deadline = now_us() + 20e6;
    while (now_us() < deadline) {
        zmq_pollitem_t it = {zsock_resolve(s), 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 500) <= 0)
            continue;
        nx_msg_t *r = NULL;
        char err[256];
        uint64_t id;
        if (nx_wire_recv(s, false, NULL, &r, &id, err, sizeof err) < 0)
            continue;
        if (nx_msg_type(r) == NX_MSG_TASK) {
            *ret_task = (int64_t)nx_msg_uint(r, "task", 0);
            nx_msg_destroy(&r);
            return 0;
        }
        if (nx_msg_type(r) == NX_MSG_ERROR) {
            fprintf(stderr, "bench_route: %s refused: %s\n", name, nx_msg_str(r, "message"));
            nx_msg_destroy(&r);
            return -1;
        }
        nx_msg_destroy(&r);
    }
    fprintf(stderr, "bench_route: %s got no task within 20 s\n", name);
    return -1;
}

static int submit(const char *endpoint, const char *dept) {
    zsock_t *c = dealer(endpoint, NULL);
    nx_msg_t *m = nx_msg_new(NX_MSG_SUBMIT);
    nx_msg_set_id(m, nx_wire_next_id());
    nx_msg_set_str(m, "dept", dept);
    nx_msg_set_bin(m, "input", "bench: hold this task", 21);
    nx_wire_send(c, NULL, m, false);
    nx_msg_destroy(&m);
    zmq_pollitem_t it = {zsock_resolve(c), 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&it, 1, 10000) > 0 ? 0 : -1;
    zsock_destroy(&c);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "raw") && strcmp(argv[1], "nexus")) ||
        (!strcmp(argv[1], "nexus") && argc < 4)) {
        fprintf(stderr, "usage: bench_route raw [N] [INFLIGHT]\n"
                        "       bench_route nexus CEO_ENDPOINT DEPT [N] [INFLIGHT]\n");
        return 2;
    }
    zsys_init();
    zsys_set_logstream(stderr);
    bool nexus = !strcmp(argv[1], "nexus");
    int ai = nexus ? 4 : 2;
    int n = argc > ai ? atoi(argv[ai]) : 2000;
    int inflight = argc > ai + 1 ? atoi(argv[ai + 1]) : 100;
    pair_t p = {.nexus = nexus};
    pid_t broker = 0;
    char endpoint[256];
    if (nexus) {
        snprintf(endpoint, sizeof endpoint, "%s", argv[2]);
        p.a = dealer(endpoint, NULL);
        p.b = dealer(endpoint, NULL);
        if (submit(endpoint, argv[3]) < 0 || submit(endpoint, argv[3]) < 0 ||
            employee_up(p.a, "bench-a", argv[3], &p.task_a) < 0 ||
            employee_up(p.b, "bench-b", argv[3], &p.task_b) < 0)
            return 1;
    } else {
        snprintf(endpoint, sizeof endpoint, "ipc:///tmp/nx-bench-broker-%d.sock", (int)getpid());
        broker = start_broker(endpoint);
        p.a = dealer(endpoint, "a");
        p.b = dealer(endpoint, "b");
        zclock_sleep(200); /* both identities known to the broker */
    }
    static const size_t sizes[] = {64, 4096};
    printf("{\"transport\": \"%s\", \"round_trips\": %d, \"inflight\": %d, \"sizes\": {",
           nexus ? "nexus" : "raw_zmq_broker", n, inflight);
    int rc = 0;
    for (size_t i = 0; i < 2 && rc == 0; i++) {
        char *body = malloc(sizes[i] + 1);
        memset(body, 'x', sizes[i]);
        body[sizes[i]] = '\0';
        figure_t f = {0};
        /* warm up, then measure */
        rc = latency(&p, body, sizes[i], n / 10 + 1, &f);
        if (rc == 0)
            rc = latency(&p, body, sizes[i], n, &f);
        if (rc == 0)
            rc = throughput(&p, body, sizes[i], n * 5, inflight, &f);
        printf("%s\"%zu\": {\"rt_p50_us\": %.1f, \"rt_p99_us\": %.1f, \"rt_per_sec\": %.0f}",
               i ? ", " : "", sizes[i], f.p50_us, f.p99_us, f.per_sec);
        free(body);
    }
    printf("}, \"ok\": %s}\n", rc == 0 ? "true" : "false");
    zsock_destroy(&p.a);
    zsock_destroy(&p.b);
    if (broker) {
        kill(broker, SIGKILL);
        waitpid(broker, NULL, 0);
        unlink(endpoint + 6);
    }
    return rc == 0 ? 0 : 1;
}
