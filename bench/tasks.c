/*  bench_tasks - no-op tasks end to end through a running company: durable
 *  submit, dispatch, the agent, durable result.
 *
 *    throughput: CLIENTS DEALERs each submit N/CLIENTS tasks with up to 256
 *                in flight; the clock stops when the CEO counts them all
 *                succeeded (stats), so it includes every result's commit.
 *    latency:    one at a time: submit, then wait for the result.
 *
 *  And the ledger's ceiling: raw SQLite inserts into a table like the
 *  ledger's, WAL and synchronous=FULL as the ledger, one commit per insert
 *  and 1,000 per commit (the CEO's group commit batches like the latter).
 *
 *  Usage: bench_tasks nexus CEO_ENDPOINT DEPT N CLIENTS LATENCY_N
 *         bench_tasks sqlite FILE N
 *  Prints JSON. */
#define _GNU_SOURCE
#include <czmq.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static zsock_t *dealer(const char *endpoint) {
    zsock_t *s = zsock_new(ZMQ_DEALER);
    zsock_set_sndhwm(s, 0);
    zsock_set_rcvhwm(s, 0);
    zsock_connect(s, "%s", endpoint);
    return s;
}

static void send_msg(zsock_t *s, nx_msg_t **m) {
    nx_msg_set_id(*m, nx_wire_next_id());
    nx_msg_set_from(*m, "bench");
    nx_wire_send(s, NULL, *m, false);
    nx_msg_destroy(m);
}

/* The next message on s within 30 s, or NULL. */
static nx_msg_t *recv_msg(zsock_t *s) {
    zmq_pollitem_t it = {zsock_resolve(s), 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, 30000) <= 0)
        return NULL;
    nx_msg_t *m = NULL;
    char err[256];
    uint64_t id;
    nx_wire_recv(s, false, NULL, &m, &id, err, sizeof err);
    return m;
}

static nx_msg_t *submit_msg(const char *dept, int i) {
    char input[64];
    int n = snprintf(input, sizeof input, "no-op %d", i);
    nx_msg_t *m = nx_msg_new(NX_MSG_SUBMIT);
    nx_msg_set_str(m, "dept", dept);
    nx_msg_set_bin(m, "input", input, (size_t)n);
    return m;
}

static uint64_t succeeded(zsock_t *s) {
    nx_msg_t *m = nx_msg_new(NX_MSG_STATS);
    send_msg(s, &m);
    nx_msg_t *r = recv_msg(s);
    uint64_t v = r && nx_msg_type(r) == NX_MSG_STATS_INFO ? nx_msg_uint(r, "succeeded", 0) : 0;
    nx_msg_destroy(&r);
    return v;
}

/* One client process: n submits, up to 256 in flight. */
static int client(const char *endpoint, const char *dept, int n, int base) {
    zsock_t *s = dealer(endpoint);
    int sent = 0, acked = 0;
    while (acked < n) {
        while (sent < n && sent - acked < 256) {
            nx_msg_t *m = submit_msg(dept, base + sent);
            send_msg(s, &m);
            sent++;
        }
        nx_msg_t *r = recv_msg(s);
        if (!r || nx_msg_type(r) != NX_MSG_SUBMITTED) {
            fprintf(stderr, "bench_tasks: a submit was not acknowledged\n");
            return 1;
        }
        nx_msg_destroy(&r);
        acked++;
    }
    zsock_destroy(&s);
    return 0;
}

static int bench_nexus(const char *endpoint, const char *dept, int n, int clients, int lat_n) {
    zsock_t *s = dealer(endpoint);
    /* One at a time: submit, then wait for the result. */
    double *t = calloc((size_t)lat_n, sizeof *t);
    for (int i = 0; i < lat_n; i++) {
        double t0 = now_us();
        nx_msg_t *m = submit_msg(dept, -i);
        send_msg(s, &m);
        nx_msg_t *r = recv_msg(s);
        if (!r || nx_msg_type(r) != NX_MSG_SUBMITTED) {
            fprintf(stderr, "bench_tasks: submit failed\n");
            return 1;
        }
        uint64_t id = nx_msg_uint(r, "task", 0);
        nx_msg_destroy(&r);
        m = nx_msg_new(NX_MSG_WAIT);
        nx_msg_set_uint(m, "task", id);
        nx_msg_set_uint(m, "timeout_ms", 30000);
        send_msg(s, &m);
        r = recv_msg(s);
        if (!r || nx_msg_type(r) != NX_MSG_TASK_INFO || strcmp(nx_msg_str(r, "state"), "succeeded")) {
            fprintf(stderr, "bench_tasks: task %llu did not succeed\n", (unsigned long long)id);
            return 1;
        }
        nx_msg_destroy(&r);
        t[i] = now_us() - t0;
    }
    qsort(t, (size_t)lat_n, sizeof *t, cmp);
    double p50 = t[lat_n / 2], p99 = t[(lat_n * 99) / 100];
    free(t);

    uint64_t before = succeeded(s);
    double t0 = now_us();
    for (int c = 0; c < clients; c++) {
        if (fork() == 0) {
            zsys_shutdown();
            _exit(client(endpoint, dept, n / clients, c * (n / clients)));
        }
    }
    int st, failed = 0;
    for (int c = 0; c < clients; c++)
        if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
            failed++;
    double acked_s = (now_us() - t0) / 1e6;
    int total = (n / clients) * clients;
    double deadline = now_us() + 600e6;
    while (!failed && succeeded(s) < before + (uint64_t)total && now_us() < deadline)
        zclock_sleep(5);
    double done_s = (now_us() - t0) / 1e6;
    printf("{\"tasks\": %d, \"clients\": %d, \"acked_per_sec\": %.0f, \"tasks_per_sec\": %.0f, "
           "\"submit_to_result_p50_us\": %.0f, \"submit_to_result_p99_us\": %.0f, "
           "\"latency_samples\": %d, \"ok\": %s}\n",
           total, clients, total / acked_s, total / done_s, p50, p99, lat_n,
           failed ? "false" : "true");
    zsock_destroy(&s);
    return failed ? 1 : 0;
}

/* Rows shaped like the ledger's, with its durability settings. */
static double sqlite_rate(const char *path, int n, int per_commit) {
    unlink(path);
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return -1;
    sqlite3_exec(db,
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                 "CREATE TABLE tasks(id INTEGER PRIMARY KEY AUTOINCREMENT, dept TEXT NOT NULL,"
                 " input BLOB NOT NULL, priority INTEGER, state INTEGER, created_ms INTEGER);",
                 NULL, NULL, NULL);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db,
                       "INSERT INTO tasks(dept, input, priority, state, created_ms)"
                       " VALUES('bench', ?1, 0, 0, ?2)",
                       -1, &st, NULL);
    double t0 = now_us();
    for (int i = 0; i < n; i++) {
        if (i % per_commit == 0)
            sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        char input[32];
        int len = snprintf(input, sizeof input, "no-op %d", i);
        sqlite3_bind_blob(st, 1, input, len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, i);
        sqlite3_step(st);
        sqlite3_reset(st);
        if (i % per_commit == per_commit - 1 || i == n - 1)
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    }
    double rate = n / ((now_us() - t0) / 1e6);
    sqlite3_finalize(st);
    sqlite3_close(db);
    unlink(path);
    return rate;
}

int main(int argc, char **argv) {
    if (argc >= 7 && !strcmp(argv[1], "nexus")) {
        zsys_init();
        return bench_nexus(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
    }
    if (argc >= 4 && !strcmp(argv[1], "sqlite")) {
        int n = atoi(argv[3]);
        double one = sqlite_rate(argv[2], n / 10 > 100 ? n / 10 : 100, 1);
        double batched = sqlite_rate(argv[2], n, 1000);
        printf("{\"inserts_per_sec_one_per_commit\": %.0f, \"inserts_per_sec_1000_per_commit\": "
               "%.0f, \"synchronous\": \"FULL\", \"journal\": \"WAL\"}\n",
               one, batched);
        return 0;
    }
    fprintf(stderr, "usage: bench_tasks nexus CEO_ENDPOINT DEPT N CLIENTS LATENCY_N\n"
                    "       bench_tasks sqlite FILE N\n");
    return 2;
}
