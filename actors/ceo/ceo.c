/*  ceo.c - the CEO actor.
 *
 *  One loop iteration = one ledger transaction (group commit):
 *
 *      ROUTER readable
 *        └─ drain up to BATCH messages ── each applies its ledger writes
 *           inside the open transaction and queues its replies
 *        └─ schedule: queued tasks -> employees with free credit
 *        └─ COMMIT (one fsync for the whole batch)
 *        └─ flush: replies, TASK dispatches, events
 *
 *  Nothing is acknowledged before it is committed: replies wait in the
 *  outbox until COMMIT returns. If a commit fails the CEO exits without
 *  sending them, so no client ever holds an id the ledger lacks.
 *
 *  Invariants:
 *  - A queued task is in its department's heap (or is skipped there once
 *    the ledger says it is no longer queued).
 *  - A task has exactly one accepted result: the first RESULT for any of
 *    its attempts while it is not final. Later ones are logged and ignored.
 *  - An employee never holds more dispatched tasks than its free credit. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nx_ceo.h"
#include "nx_runtime.h"

#define BATCH 1024
#define MAX_WAIT_MS (3600 * 1000)
#define PAGE_MAX 1000

typedef struct {
    int64_t task;
    uint32_t attempt;
} held_t;

typedef enum { EMP_ALIVE, EMP_GONE } emp_state_t;

typedef struct {
    char name[NX_PROTO_MAX_NAME + 1]; /* unique in the company */
    size_t dept;                      /* index into company->depts */
    zframe_t *identity;               /* routing id of its current socket */
    char *idkey;                      /* identity as a hash key (owned) */
    uint64_t pid;                     /* its process id, as it said */
    uint32_t capacity;                /* slots it announced */
    uint32_t free;                    /* credit: tasks we may still send */
    uint64_t done, failed;            /* results accepted from it */
    int64_t last_heard_ms;            /* monotonic */
    emp_state_t state;
    held_t *held;                     /* dispatched, no result yet (owned) */
    size_t nheld, held_cap;
} emp_t;

typedef struct {
    char name[NX_PROTO_MAX_NAME + 1];
    zframe_t *identity;
    char *idkey;
    int64_t last_heard_ms;
} node_t;

typedef struct {
    int64_t priority;
    int64_t id;
} qitem_t;

typedef struct {
    qitem_t *items; /* binary heap: higher priority, then lower id, first */
    size_t n, cap;
    emp_t **emps;   /* employees of the department, for round robin */
    size_t nemps, emps_cap;
    size_t rr;      /* next employee to try */
} dept_q_t;

typedef struct {
    zframe_t *identity;
    uint64_t corr;
    int64_t task;
    int64_t deadline_ms; /* monotonic */
} waiter_t;

typedef struct {
    zframe_t *identity; /* NULL for events */
    nx_msg_t *msg;
} out_t;

typedef struct {
    nx_company_t *company;
    nx_home_t home;
    nx_store_t *store;
    zsock_t *router;       /* employees, nodes, clients */
    zsock_t *xpub;         /* the event bus */
    zloop_t *loop;
    zhashx_t *emps;        /* name -> emp_t (owns) */
    zhashx_t *emp_by_id;   /* idkey -> emp_t (borrowed) */
    zhashx_t *nodes;       /* idkey -> node_t (owns) */
    dept_q_t *queues;      /* one per department */
    zlistx_t *waiters;     /* waiter_t (owns) */
    zlistx_t *outbox;      /* out_t waiting for COMMIT (owns) */
    bool in_txn;           /* a ledger transaction is open */
    uint64_t event_seq;    /* last event sequence number */
    bool shutting_down;
    int64_t shutdown_deadline_ms;
    int exit_code;
} ceo_t;

/* ---- small helpers ---- */

static char *idkey_of(zframe_t *identity) { return zframe_strhex(identity); }

static void out_destroy(void **item) {
    out_t *o = *item;
    if (!o)
        return;
    zframe_destroy(&o->identity);
    nx_msg_destroy(&o->msg);
    free(o);
    *item = NULL;
}

static void waiter_destroy(void **item) {
    waiter_t *w = *item;
    if (!w)
        return;
    zframe_destroy(&w->identity);
    free(w);
    *item = NULL;
}

static void emp_destroy(void **item) {
    emp_t *e = *item;
    if (!e)
        return;
    zframe_destroy(&e->identity);
    zstr_free(&e->idkey);
    free(e->held);
    free(e);
    *item = NULL;
}

static void node_destroy(void **item) {
    node_t *n = *item;
    if (!n)
        return;
    zframe_destroy(&n->identity);
    zstr_free(&n->idkey);
    free(n);
    *item = NULL;
}

/* Queues msg for `identity` (copied); takes ownership of *msg_p. */
static void reply(ceo_t *self, zframe_t *identity, nx_msg_t **msg_p) {
    if (!*msg_p)
        return;
    out_t *o = calloc(1, sizeof *o);
    o->identity = identity ? zframe_dup(identity) : NULL;
    o->msg = *msg_p;
    *msg_p = NULL;
    nx_msg_set_id(o->msg, nx_wire_next_id());
    nx_msg_set_from(o->msg, "ceo");
    zlistx_add_end(self->outbox, o);
}

static void reply_error(ceo_t *self, zframe_t *identity, const nx_msg_t *req, const char *code,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void reply_error(ceo_t *self, zframe_t *identity, const nx_msg_t *req, const char *code,
                        const char *fmt, ...) {
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    nx_msg_t *m = nx_msg_error_reply(req, code, "%s", text);
    reply(self, identity, &m);
}

/* Records an event in the ledger and queues it for the bus. */
static void event(ceo_t *self, const char *topic, int64_t task, const char *employee,
                  const char *dept, const char *state, const char *detail) {
    uint64_t seq = ++self->event_seq;
    int64_t now = nx_now_ms();
    nx_store_event_append(self->store, seq, now, topic, task, employee, detail);
    nx_msg_t *m = nx_msg_new(NX_MSG_EVENT);
    nx_msg_set_str(m, "topic", topic);
    nx_msg_set_uint(m, "seq", seq);
    nx_msg_set_uint(m, "ts_ms", (uint64_t)now);
    if (task)
        nx_msg_set_uint(m, "task", (uint64_t)task);
    if (employee)
        nx_msg_set_str(m, "employee", employee);
    if (dept)
        nx_msg_set_str(m, "dept", dept);
    if (state)
        nx_msg_set_str(m, "state", state);
    if (detail)
        nx_msg_set_str(m, "detail", detail);
    reply(self, NULL, &m);
}

/* ---- the department heaps ---- */

static bool q_before(const qitem_t *a, const qitem_t *b) {
    return a->priority != b->priority ? a->priority > b->priority : a->id < b->id;
}

static void q_push(dept_q_t *q, int64_t priority, int64_t id) {
    if (q->n == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 64;
        q->items = realloc(q->items, q->cap * sizeof *q->items);
    }
    size_t i = q->n++;
    q->items[i] = (qitem_t){priority, id};
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!q_before(&q->items[i], &q->items[p]))
            break;
        qitem_t t = q->items[i];
        q->items[i] = q->items[p];
        q->items[p] = t;
        i = p;
    }
}

static int64_t q_pop(dept_q_t *q) {
    int64_t id = q->items[0].id;
    q->items[0] = q->items[--q->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->n && q_before(&q->items[l], &q->items[m]))
            m = l;
        if (r < q->n && q_before(&q->items[r], &q->items[m]))
            m = r;
        if (m == i)
            break;
        qitem_t t = q->items[i];
        q->items[i] = q->items[m];
        q->items[m] = t;
        i = m;
    }
    return id;
}

static void q_add_emp(dept_q_t *q, emp_t *e) {
    for (size_t i = 0; i < q->nemps; i++)
        if (q->emps[i] == e)
            return;
    if (q->nemps == q->emps_cap) {
        q->emps_cap = q->emps_cap ? q->emps_cap * 2 : 8;
        q->emps = realloc(q->emps, q->emps_cap * sizeof *q->emps);
    }
    q->emps[q->nemps++] = e;
}

/* ---- transactions ---- */

static void txn_begin(ceo_t *self) {
    if (self->in_txn)
        return;
    if (nx_store_begin(self->store) < 0) {
        nx_error("ledger: cannot begin a transaction: %s", nx_store_errmsg(self->store));
        exit(1);
    }
    self->in_txn = true;
}

static void emp_lost(ceo_t *self, emp_t *e, const char *why);
static void schedule(ceo_t *self);

/* Commits, then sends everything the transaction produced. A dispatch that
 * cannot be delivered marks its employee lost, which needs another
 * transaction; hence the loop. */
static void txn_end(ceo_t *self) {
    while (self->in_txn) {
        schedule(self);
        if (nx_store_commit(self->store) < 0) {
            /* Nothing of this batch was acknowledged; exiting keeps it so. */
            nx_error("ledger: commit failed: %s; exiting without acknowledging the batch",
                     nx_store_errmsg(self->store));
            exit(1);
        }
        self->in_txn = false;
        zlistx_t *lost = NULL;
        out_t *o;
        while ((o = zlistx_detach(self->outbox, NULL))) {
            if (!o->identity) {
                const char *topic = nx_msg_str(o->msg, "topic");
                void *buf;
                size_t len;
                if (nx_msg_encode(o->msg, &buf, &len) == 0) {
                    zmq_send(zsock_resolve(self->xpub), topic, strlen(topic),
                             ZMQ_SNDMORE | ZMQ_DONTWAIT);
                    zmq_send(zsock_resolve(self->xpub), buf, len, ZMQ_DONTWAIT);
                    free(buf);
                }
            } else {
                int rc = nx_wire_send(self->router, o->identity, o->msg, true);
                if (rc < 0 && nx_msg_type(o->msg) == NX_MSG_TASK) {
                    char *key = idkey_of(o->identity);
                    emp_t *e = zhashx_lookup(self->emp_by_id, key);
                    zstr_free(&key);
                    if (e && e->state == EMP_ALIVE) {
                        if (!lost)
                            lost = zlistx_new();
                        zlistx_add_end(lost, e);
                    }
                } else if (rc < 0)
                    nx_debug("reply %s not delivered: %s", nx_msg_type_name(nx_msg_type(o->msg)),
                             nx_strerror(rc));
            }
            void *item = o;
            out_destroy(&item);
        }
        if (lost) {
            txn_begin(self);
            for (emp_t *e = zlistx_first(lost); e; e = zlistx_next(lost))
                if (e->state == EMP_ALIVE)
                    emp_lost(self, e, "unreachable when a task was sent");
            zlistx_destroy(&lost);
        }
    }
}

/* ---- tasks ---- */

static nx_msg_t *task_info(const nx_task_t *t, bool with_payload) {
    nx_msg_t *m = nx_msg_new(NX_MSG_TASK_INFO);
    nx_msg_set_uint(m, "task", (uint64_t)t->id);
    nx_msg_set_str(m, "dept", t->dept ? t->dept : "");
    nx_msg_set_str(m, "state", nx_task_state_name(t->state));
    nx_msg_set_int(m, "priority", t->priority);
    nx_msg_set_uint(m, "attempts", t->attempts);
    nx_msg_set_uint(m, "max_attempts", t->max_attempts);
    if (with_payload && t->input)
        nx_msg_set_bin(m, "input", t->input, t->input_len);
    if (with_payload && t->output)
        nx_msg_set_bin(m, "output", t->output, t->output_len);
    if (t->error)
        nx_msg_set_str(m, "error", t->error);
    if (t->employee)
        nx_msg_set_str(m, "employee", t->employee);
    if (nx_task_state_final(t->state) && t->exit_code >= 0)
        nx_msg_set_int(m, "exit_code", t->exit_code);
    nx_msg_set_uint(m, "created_ms", (uint64_t)t->created_ms);
    if (t->started_ms)
        nx_msg_set_uint(m, "started_ms", (uint64_t)t->started_ms);
    if (t->finished_ms)
        nx_msg_set_uint(m, "finished_ms", (uint64_t)t->finished_ms);
    if (t->idem_key)
        nx_msg_set_str(m, "idem_key", t->idem_key);
    return m;
}

/* Answers every waiter on a task that just became final. */
static void wake_waiters(ceo_t *self, int64_t task) {
    if (zlistx_size(self->waiters) == 0)
        return;
    nx_task_t t;
    if (nx_store_task_get(self->store, task, &t) < 0)
        return;
    waiter_t *w = zlistx_first(self->waiters);
    while (w) {
        void *handle_ = zlistx_cursor(self->waiters);
        waiter_t *next = zlistx_next(self->waiters);
        if (w->task == task) {
            nx_msg_t *m = task_info(&t, true);
            nx_msg_set_corr(m, w->corr);
            reply(self, w->identity, &m);
            zlistx_delete(self->waiters, handle_);
        }
        w = next;
    }
    nx_task_clear(&t);
}

static void held_remove(emp_t *e, int64_t task) {
    for (size_t i = 0; i < e->nheld; i++)
        if (e->held[i].task == task) {
            e->held[i] = e->held[--e->nheld];
            return;
        }
}

/* Puts a task back in its queue after losing attempt `attempt`. */
static void requeue(ceo_t *self, int64_t task, uint32_t attempt, const char *why) {
    nx_task_t t;
    if (nx_store_task_brief(self->store, task, &t) < 0)
        return;
    if (t.state == NX_TASK_RUNNING && t.attempts == attempt) {
        nx_store_task_finish(self->store, task, attempt, NX_TASK_QUEUED, -1, NULL, 0, why,
                             nx_now_ms());
        int d = nx_company_dept(self->company, t.dept);
        if (d >= 0)
            q_push(&self->queues[d], t.priority, task);
        event(self, "task.requeued", task, t.employee, t.dept, "queued", why);
    }
    nx_task_clear(&t);
}

static void emp_gone(ceo_t *self, emp_t *e, const char *why, bool left) {
    char detail[256];
    snprintf(detail, sizeof detail, "employee %s %s: %s", e->name, left ? "left" : "lost", why);
    if (left && e->nheld == 0)
        nx_info("%s", detail);
    else
        nx_warn("%s; re-queueing its %zu task(s)", detail, e->nheld);
    for (size_t i = 0; i < e->nheld; i++)
        requeue(self, e->held[i].task, e->held[i].attempt, detail);
    e->nheld = 0;
    e->free = 0;
    e->state = EMP_GONE;
    if (e->idkey) {
        zhashx_delete(self->emp_by_id, e->idkey);
        zstr_free(&e->idkey);
    }
    zframe_destroy(&e->identity);
    event(self, left ? "employee.left" : "employee.lost", 0, e->name,
          self->company->depts[e->dept].name, "gone", why);
}

static void emp_lost(ceo_t *self, emp_t *e, const char *why) { emp_gone(self, e, why, false); }

static void schedule(ceo_t *self) {
    int64_t now = nx_now_ms();
    for (size_t d = 0; d < self->company->ndepts; d++) {
        dept_q_t *q = &self->queues[d];
        while (q->n > 0) {
            emp_t *e = NULL;
            for (size_t k = 0; k < q->nemps && !e; k++) {
                emp_t *cand = q->emps[(q->rr + k) % q->nemps];
                if (cand->state == EMP_ALIVE && cand->free > 0) {
                    e = cand;
                    q->rr = (q->rr + k + 1) % q->nemps;
                }
            }
            if (!e)
                break;
            int64_t id = q_pop(q);
            nx_task_t t;
            if (nx_store_task_get(self->store, id, &t) < 0)
                continue;
            if (t.state != NX_TASK_QUEUED) {
                nx_task_clear(&t);
                continue; /* finished or cancelled while it waited */
            }
            if (t.attempts >= t.max_attempts) {
                char why[600];
                snprintf(why, sizeof why, "gave up after %u attempt(s); last: %s", t.attempts,
                         t.error ? t.error : "unknown");
                nx_store_task_finish(self->store, id, 0, NX_TASK_DEAD, -1, NULL, 0, why, now);
                event(self, "task.dead", id, NULL, t.dept, "dead", why);
                wake_waiters(self, id);
                nx_task_clear(&t);
                continue;
            }
            uint32_t attempt = t.attempts + 1;
            nx_store_task_start(self->store, id, attempt, e->name, now);
            nx_msg_t *m = nx_msg_new(NX_MSG_TASK);
            nx_msg_set_uint(m, "task", (uint64_t)id);
            nx_msg_set_uint(m, "attempt", attempt);
            nx_msg_set_str(m, "dept", t.dept);
            nx_msg_set_bin(m, "input", t.input ? t.input : "", t.input_len);
            nx_msg_set_int(m, "priority", t.priority);
            nx_msg_set_to(m, e->name);
            reply(self, e->identity, &m);
            if (e->nheld == e->held_cap) {
                e->held_cap = e->held_cap ? e->held_cap * 2 : 4;
                e->held = realloc(e->held, e->held_cap * sizeof *e->held);
            }
            e->held[e->nheld++] = (held_t){id, attempt};
            e->free--;
            event(self, "task.started", id, e->name, t.dept, "running", NULL);
            nx_task_clear(&t);
        }
    }
}

/* ---- handlers ---- */

static void on_submit(ceo_t *self, zframe_t *from, const nx_msg_t *m) {
    const char *dept = nx_msg_str(m, "dept");
    int d = nx_company_dept(self->company, dept);
    if (d < 0) {
        char known[512] = "";
        for (size_t i = 0; i < self->company->ndepts; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                     self->company->depts[i].name);
        reply_error(self, from, m, "unknown_department", "no department '%s' (known: %s)", dept,
                    known);
        return;
    }
    nx_task_t t = {0};
    t.dept = (char *)dept;
    t.input = (void *)nx_msg_bin(m, "input", &t.input_len);
    t.priority = nx_msg_int(m, "priority", 0);
    t.max_attempts = (uint32_t)nx_msg_uint(m, "max_attempts", self->company->depts[d].max_attempts);
    if (t.max_attempts == 0 || t.max_attempts > 1000)
        t.max_attempts = self->company->depts[d].max_attempts;
    t.idem_key = (char *)nx_msg_str(m, "idem_key");
    if (t.idem_key && !*t.idem_key)
        t.idem_key = NULL;
    t.created_ms = nx_now_ms();
    int64_t id;
    int rc = nx_store_task_insert(self->store, &t, &id);
    if (rc < 0) {
        nx_error("ledger: cannot insert a task: %s", nx_store_errmsg(self->store));
        reply_error(self, from, m, "ledger", "the ledger refused the task");
        return;
    }
    nx_msg_t *r = nx_msg_new(NX_MSG_SUBMITTED);
    nx_msg_set_corr(r, nx_msg_id(m));
    nx_msg_set_uint(r, "task", (uint64_t)id);
    nx_msg_set_bool(r, "existing", rc == 1);
    reply(self, from, &r);
    if (rc == 0) {
        q_push(&self->queues[d], t.priority, id);
        event(self, "task.submitted", id, NULL, dept, "queued", NULL);
    }
}

static void on_status(ceo_t *self, zframe_t *from, const nx_msg_t *m, bool wait) {
    int64_t id = (int64_t)nx_msg_uint(m, "task", 0);
    nx_task_t t;
    if (nx_store_task_get(self->store, id, &t) < 0) {
        reply_error(self, from, m, "not_found", "no task %lld", (long long)id);
        return;
    }
    if (wait && !nx_task_state_final(t.state)) {
        waiter_t *w = calloc(1, sizeof *w);
        w->identity = zframe_dup(from);
        w->corr = nx_msg_id(m);
        w->task = id;
        uint64_t tmo = nx_msg_uint(m, "timeout_ms", MAX_WAIT_MS);
        w->deadline_ms = nx_mono_ms() + (int64_t)(tmo > MAX_WAIT_MS ? MAX_WAIT_MS : tmo);
        zlistx_add_end(self->waiters, w);
    } else {
        nx_msg_t *r = task_info(&t, true);
        nx_msg_set_corr(r, nx_msg_id(m));
        reply(self, from, &r);
    }
    nx_task_clear(&t);
}

typedef struct {
    ceo_t *self;
    zframe_t *from;
    uint64_t corr;
    uint64_t count;
} list_ctx_t;

static int list_one(const nx_task_t *t, void *arg) {
    list_ctx_t *c = arg;
    nx_msg_t *r = task_info(t, true);
    nx_msg_set_corr(r, c->corr);
    reply(c->self, c->from, &r);
    c->count++;
    return 0;
}

static void send_end(ceo_t *self, zframe_t *from, uint64_t corr, uint64_t count) {
    nx_msg_t *r = nx_msg_new(NX_MSG_END);
    nx_msg_set_corr(r, corr);
    nx_msg_set_uint(r, "count", count);
    reply(self, from, &r);
}

static void on_tasks(ceo_t *self, zframe_t *from, const nx_msg_t *m) {
    int state = -1;
    const char *sname = nx_msg_str(m, "state");
    if (sname) {
        nx_task_state_t s;
        if (nx_task_state_from_name(sname, &s) < 0) {
            reply_error(self, from, m, "bad_request",
                        "unknown state '%s' (queued, running, succeeded, failed, cancelled, dead)",
                        sname);
            return;
        }
        state = (int)s;
    }
    const char *dept = nx_msg_str(m, "dept");
    if (dept && nx_company_dept(self->company, dept) < 0) {
        reply_error(self, from, m, "unknown_department", "no department '%s'", dept);
        return;
    }
    uint64_t limit = nx_msg_uint(m, "limit", PAGE_MAX);
    if (limit == 0 || limit > PAGE_MAX)
        limit = PAGE_MAX;
    list_ctx_t c = {self, from, nx_msg_id(m), 0};
    nx_store_task_foreach(self->store, state, dept, (int64_t)nx_msg_uint(m, "after", 0), limit,
                          true, list_one, &c);
    send_end(self, from, c.corr, c.count);
}

typedef struct {
    ceo_t *self;
    zframe_t *from;
    uint64_t corr;
    uint64_t count;
} ev_ctx_t;

static int event_one(uint64_t seq, int64_t ts_ms, const char *topic, int64_t task,
                     const char *employee, const char *detail, void *arg) {
    ev_ctx_t *c = arg;
    nx_msg_t *r = nx_msg_new(NX_MSG_EVENT);
    nx_msg_set_corr(r, c->corr);
    nx_msg_set_str(r, "topic", topic);
    nx_msg_set_uint(r, "seq", seq);
    nx_msg_set_uint(r, "ts_ms", (uint64_t)ts_ms);
    if (task)
        nx_msg_set_uint(r, "task", (uint64_t)task);
    if (employee)
        nx_msg_set_str(r, "employee", employee);
    if (detail)
        nx_msg_set_str(r, "detail", detail);
    reply(c->self, c->from, &r);
    c->count++;
    return 0;
}

static void on_events(ceo_t *self, zframe_t *from, const nx_msg_t *m) {
    uint64_t limit = nx_msg_uint(m, "limit", 100);
    if (limit == 0 || limit > PAGE_MAX)
        limit = PAGE_MAX;
    ev_ctx_t c = {self, from, nx_msg_id(m), 0};
    nx_store_event_foreach(self->store, nx_msg_str(m, "topic"), limit, event_one, &c);
    send_end(self, from, c.corr, c.count);
}

static int emp_by_name_cmp(const void *a, const void *b) {
    return strcmp((*(emp_t *const *)a)->name, (*(emp_t *const *)b)->name);
}

static void on_ps(ceo_t *self, zframe_t *from, const nx_msg_t *m) {
    size_t n = zhashx_size(self->emps), i = 0;
    emp_t **all = calloc(n ? n : 1, sizeof *all);
    for (emp_t *e = zhashx_first(self->emps); e; e = zhashx_next(self->emps))
        all[i++] = e;
    qsort(all, n, sizeof *all, emp_by_name_cmp);
    for (i = 0; i < n; i++) {
        emp_t *e = all[i];
        nx_msg_t *r = nx_msg_new(NX_MSG_EMPLOYEE_INFO);
        nx_msg_set_corr(r, nx_msg_id(m));
        nx_msg_set_str(r, "name", e->name);
        nx_msg_set_str(r, "dept", self->company->depts[e->dept].name);
        nx_msg_set_str(r, "state", e->state == EMP_GONE ? "gone" : e->nheld ? "busy" : "idle");
        nx_msg_set_uint(r, "pid", e->pid);
        nx_msg_set_uint(r, "capacity", e->capacity);
        nx_msg_set_uint(r, "busy", e->nheld);
        nx_msg_set_uint(r, "done", e->done);
        nx_msg_set_uint(r, "failed", e->failed);
        if (e->nheld)
            nx_msg_set_uint(r, "current", (uint64_t)e->held[0].task);
        reply(self, from, &r);
    }
    free(all);
    send_end(self, from, nx_msg_id(m), n);
}

static void on_hello(ceo_t *self, zframe_t *from, const char *key, const nx_msg_t *m) {
    const char *name = nx_msg_str(m, "name");
    const char *dept = nx_msg_str(m, "dept");
    int ei = nx_company_employee(self->company, name);
    int d = nx_company_dept(self->company, dept);
    if (ei < 0 || d < 0 || (size_t)d != self->company->employees[ei].dept) {
        nx_warn("refusing hello from '%s' of '%s': not in the company file", name, dept);
        reply_error(self, from, m, "unknown_employee",
                    "employee '%s' of department '%s' is not in the company file", name, dept);
        return;
    }
    emp_t *e = zhashx_lookup(self->emps, name);
    if (!e) {
        e = calloc(1, sizeof *e);
        snprintf(e->name, sizeof e->name, "%s", name);
        e->dept = (size_t)d;
        zhashx_insert(self->emps, name, e);
        q_add_emp(&self->queues[d], e);
    }
    uint64_t pid = nx_msg_uint(m, "pid", 0);
    bool same_socket = e->idkey && !strcmp(e->idkey, key);
    if (!same_socket && e->state == EMP_ALIVE && e->identity && pid != e->pid)
        emp_lost(self, e, "replaced by a new process of the same name");
    if (!same_socket) {
        if (e->idkey) {
            zhashx_delete(self->emp_by_id, e->idkey);
            zstr_free(&e->idkey);
        }
        zframe_destroy(&e->identity);
        e->identity = zframe_dup(from);
        e->idkey = strdup(key);
        zhashx_insert(self->emp_by_id, key, e);
    }
    e->pid = pid;
    e->capacity = (uint32_t)nx_msg_uint(m, "capacity", 1);
    uint64_t free_slots = nx_msg_uint(m, "free", e->capacity);
    /* Tasks we dispatched that it has not answered still occupy slots. */
    e->free = free_slots > e->nheld ? (uint32_t)(free_slots - e->nheld) : 0;
    bool was_gone = e->state == EMP_GONE;
    e->state = EMP_ALIVE;
    e->last_heard_ms = nx_mono_ms();
    nx_msg_t *r = nx_msg_new(NX_MSG_WELCOME);
    nx_msg_set_corr(r, nx_msg_id(m));
    nx_msg_set_uint(r, "heartbeat_ms", (uint64_t)self->company->heartbeat_ms);
    nx_msg_set_uint(r, "liveness", self->company->liveness);
    reply(self, from, &r);
    nx_info("employee %s (%s, pid %llu) registered, %u free of %u", name, dept,
            (unsigned long long)pid, e->free, e->capacity);
    if (!same_socket || was_gone)
        event(self, "employee.joined", 0, name, dept, "idle", NULL);
}

static void on_result(ceo_t *self, emp_t *e, const nx_msg_t *m) {
    int64_t id = (int64_t)nx_msg_uint(m, "task", 0);
    uint32_t attempt = (uint32_t)nx_msg_uint(m, "attempt", 0);
    if (e) {
        bool was_held = false;
        for (size_t i = 0; i < e->nheld; i++)
            if (e->held[i].task == id && e->held[i].attempt == attempt)
                was_held = true;
        held_remove(e, id);
        /* Every result returns one credit, even a stale one: the slot on
         * the employee is free again either way. */
        if (was_held || e->free + e->nheld < e->capacity)
            e->free++;
    }
    nx_task_t t;
    if (nx_store_task_brief(self->store, id, &t) < 0) {
        nx_warn("result for unknown task %lld ignored", (long long)id);
        return;
    }
    if (nx_task_state_final(t.state) || attempt == 0 || attempt > t.attempts) {
        nx_info("stale result for task %lld attempt %u ignored (task is %s after %u attempt(s))",
                (long long)id, attempt, nx_task_state_name(t.state), t.attempts);
        nx_task_clear(&t);
        return;
    }
    bool ok = nx_msg_bool(m, "ok", false);
    size_t outlen;
    const void *out = nx_msg_bin(m, "output", &outlen);
    const char *error = nx_msg_str(m, "error");
    nx_task_state_t st = ok ? NX_TASK_SUCCEEDED : NX_TASK_FAILED;
    nx_store_task_finish(self->store, id, attempt, st, nx_msg_int(m, "exit_code", -1), out,
                         outlen, ok ? NULL : (error ? error : "agent failed"), nx_now_ms());
    if (e) {
        if (ok)
            e->done++;
        else
            e->failed++;
    }
    event(self, ok ? "task.succeeded" : "task.failed", id, e ? e->name : nx_msg_from(m), t.dept,
          nx_task_state_name(st), ok ? NULL : error);
    wake_waiters(self, id);
    nx_task_clear(&t);
}

static void on_node_hello(ceo_t *self, zframe_t *from, const char *key, const nx_msg_t *m) {
    node_t *n = zhashx_lookup(self->nodes, key);
    if (!n) {
        n = calloc(1, sizeof *n);
        n->identity = zframe_dup(from);
        n->idkey = strdup(key);
        zhashx_insert(self->nodes, key, n);
    }
    snprintf(n->name, sizeof n->name, "%s", nx_msg_str(m, "name"));
    n->last_heard_ms = nx_mono_ms();
    nx_msg_t *r = nx_msg_new(NX_MSG_WELCOME);
    nx_msg_set_corr(r, nx_msg_id(m));
    nx_msg_set_uint(r, "heartbeat_ms", (uint64_t)self->company->heartbeat_ms);
    nx_msg_set_uint(r, "liveness", self->company->liveness);
    reply(self, from, &r);
    nx_info("node %s registered", n->name);
    if (self->shutting_down) {
        nx_msg_t *stop = nx_msg_new(NX_MSG_STOP);
        nx_msg_set_str(stop, "reason", "company shutting down");
        reply(self, from, &stop);
    }
}

static void begin_shutdown(ceo_t *self, const char *why) {
    if (self->shutting_down)
        return;
    self->shutting_down = true;
    self->shutdown_deadline_ms = nx_mono_ms() + 10000;
    nx_info("shutting down: %s", why);
    for (node_t *n = zhashx_first(self->nodes); n; n = zhashx_next(self->nodes)) {
        nx_msg_t *stop = nx_msg_new(NX_MSG_STOP);
        nx_msg_set_str(stop, "reason", why);
        reply(self, n->identity, &stop);
    }
    event(self, "company.shutdown", 0, NULL, NULL, NULL, why);
}

static void handle(ceo_t *self, zframe_t *from, nx_msg_t *m) {
    char *key = idkey_of(from);
    emp_t *e = zhashx_lookup(self->emp_by_id, key);
    node_t *n = e ? NULL : zhashx_lookup(self->nodes, key);
    if (e)
        e->last_heard_ms = nx_mono_ms();
    if (n)
        n->last_heard_ms = nx_mono_ms();
    nx_msg_type_t type = nx_msg_type(m);
    switch (type) {
    case NX_MSG_PING: {
        nx_msg_t *r = nx_msg_new(NX_MSG_PONG);
        nx_msg_set_corr(r, nx_msg_id(m));
        reply(self, from, &r);
        break;
    }
    case NX_MSG_SUBMIT:
        if (self->shutting_down)
            reply_error(self, from, m, "shutting_down", "the company is shutting down");
        else
            on_submit(self, from, m);
        break;
    case NX_MSG_STATUS: on_status(self, from, m, false); break;
    case NX_MSG_WAIT: on_status(self, from, m, true); break;
    case NX_MSG_TASKS: on_tasks(self, from, m); break;
    case NX_MSG_EVENTS: on_events(self, from, m); break;
    case NX_MSG_PS: on_ps(self, from, m); break;
    case NX_MSG_HELLO: on_hello(self, from, key, m); break;
    case NX_MSG_NODE_HELLO: on_node_hello(self, from, key, m); break;
    case NX_MSG_SHUTDOWN: {
        nx_msg_t *r = nx_msg_new(NX_MSG_OK);
        nx_msg_set_corr(r, nx_msg_id(m));
        reply(self, from, &r);
        begin_shutdown(self, "requested by a client");
        break;
    }
    case NX_MSG_RESULT:
        on_result(self, e, m);
        if (!e)
            reply_error(self, from, m, "not_registered", "say hello first");
        break;
    case NX_MSG_HEARTBEAT:
        if (!e && !n)
            reply_error(self, from, m, "not_registered", "say hello first");
        break;
    case NX_MSG_BYE:
        if (e && e->state == EMP_ALIVE)
            emp_gone(self, e, nx_msg_str(m, "reason") ? nx_msg_str(m, "reason") : "said bye",
                     true);
        else if (n) {
            nx_info("node %s left", n->name);
            zhashx_delete(self->nodes, key);
        }
        break;
    default:
        reply_error(self, from, m, "unexpected", "the CEO does not accept '%s' messages",
                    nx_msg_type_name(type));
        break;
    }
    zstr_free(&key);
}

static int on_router(zloop_t *loop, zsock_t *sock, void *arg) {
    ceo_t *self = arg;
    txn_begin(self);
    for (int i = 0; i < BATCH; i++) {
        zframe_t *from = NULL;
        nx_msg_t *m = NULL;
        uint64_t id = 0;
        char err[256];
        int rc = nx_wire_recv(sock, true, &from, &m, &id, err, sizeof err);
        if (rc == -EAGAIN) {
            zframe_destroy(&from);
            break;
        }
        if (rc < 0) {
            if (from) {
                char *key = idkey_of(from);
                nx_warn("bad message from peer %.12s: %s", key, err);
                zstr_free(&key);
                const char *code = rc == NX_EUNKTYPE  ? "unknown_type"
                                   : rc == NX_EVERSION ? "bad_version"
                                   : rc == NX_ETOOBIG  ? "too_big"
                                                       : "bad_message";
                nx_msg_t *r = nx_msg_error_reply(NULL, code, "%s", err);
                nx_msg_set_corr(r, id);
                reply(self, from, &r);
            }
            zframe_destroy(&from);
            continue;
        }
        handle(self, from, m);
        nx_msg_destroy(&m);
        zframe_destroy(&from);
    }
    txn_end(self);
    /* The last node has said bye after a shutdown: nothing left to wait for. */
    return self->shutting_down && zhashx_size(self->nodes) == 0 ? -1 : 0;
}

static int on_tick(zloop_t *loop, int timer_id, void *arg) {
    ceo_t *self = arg;
    int64_t now = nx_mono_ms();
    int64_t dead_after = self->company->heartbeat_ms * (int64_t)self->company->liveness;
    txn_begin(self);
    for (emp_t *e = zhashx_first(self->emps); e; e = zhashx_next(self->emps)) {
        if (e->state != EMP_ALIVE)
            continue;
        if (now - e->last_heard_ms > dead_after) {
            char why[128];
            snprintf(why, sizeof why, "silent for %lld ms", (long long)(now - e->last_heard_ms));
            emp_lost(self, e, why);
            continue;
        }
        nx_msg_t *hb = nx_msg_new(NX_MSG_HEARTBEAT);
        reply(self, e->identity, &hb);
    }
    zlistx_t *gone = zlistx_new();
    for (node_t *n = zhashx_first(self->nodes); n; n = zhashx_next(self->nodes)) {
        if (now - n->last_heard_ms > dead_after) {
            nx_warn("node %s silent for %lld ms; forgetting it", n->name,
                    (long long)(now - n->last_heard_ms));
            zlistx_add_end(gone, n->idkey);
            continue;
        }
        nx_msg_t *hb = nx_msg_new(NX_MSG_HEARTBEAT);
        reply(self, n->identity, &hb);
    }
    for (char *k = zlistx_first(gone); k; k = zlistx_next(gone))
        zhashx_delete(self->nodes, k);
    zlistx_destroy(&gone);
    waiter_t *w = zlistx_first(self->waiters);
    while (w) {
        void *handle_ = zlistx_cursor(self->waiters);
        waiter_t *next = zlistx_next(self->waiters);
        if (now >= w->deadline_ms) {
            nx_msg_t *r = nx_msg_error_reply(NULL, "timeout", "task %lld is not finished yet",
                                             (long long)w->task);
            nx_msg_set_corr(r, w->corr);
            reply(self, w->identity, &r);
            zlistx_delete(self->waiters, handle_);
        }
        w = next;
    }
    txn_end(self);
    if (self->shutting_down && (zhashx_size(self->nodes) == 0 || now > self->shutdown_deadline_ms))
        return -1;
    return 0;
}

static int load_queues(ceo_t *self) {
    int n = nx_store_requeue_running(self->store, "the CEO restarted while it ran", nx_now_ms());
    if (n < 0)
        return n;
    if (n > 0)
        nx_info("%d task(s) that were running when the CEO stopped are queued again", n);
    return 0;
}

typedef struct {
    ceo_t *self;
    size_t count;
} load_ctx_t;

static int load_one(const nx_task_t *t, void *arg) {
    load_ctx_t *c = arg;
    int d = nx_company_dept(c->self->company, t->dept);
    if (d < 0) {
        nx_warn("task %lld is for department '%s', which the company file no longer has; it "
                "stays queued",
                (long long)t->id, t->dept);
        return 0;
    }
    q_push(&c->self->queues[d], t->priority, t->id);
    c->count++;
    return 0;
}

int nx_ceo_run(const nx_ceo_opts_t *opts) {
    ceo_t self_ = {0}, *self = &self_;
    char err[512];
    int rc = nx_company_load(opts->company_path, &self->company, err, sizeof err);
    if (rc < 0) {
        nx_error("%s", err);
        return 2;
    }
    self->exit_code = 0;
    if ((rc = nx_home_resolve(opts->home, self->company, true, &self->home)) < 0) {
        nx_error("home folder: %s", nx_strerror(rc));
        rc = 2;
        goto out;
    }
    if (nx_store_open(self->home.ledger, self->company->sync_full, &self->store, err,
                      sizeof err) < 0) {
        nx_error("%s", err);
        rc = 2;
        goto out;
    }
    self->queues = calloc(self->company->ndepts, sizeof *self->queues);
    self->emps = zhashx_new();
    zhashx_set_destructor(self->emps, emp_destroy);
    self->emp_by_id = zhashx_new();
    self->nodes = zhashx_new();
    zhashx_set_destructor(self->nodes, node_destroy);
    self->waiters = zlistx_new();
    zlistx_set_destructor(self->waiters, waiter_destroy);
    self->outbox = zlistx_new();
    zlistx_set_destructor(self->outbox, out_destroy);

    int64_t t0 = nx_mono_ms();
    if (nx_store_begin(self->store) < 0 || load_queues(self) < 0) {
        nx_error("ledger: cannot recover: %s", nx_store_errmsg(self->store));
        rc = 1;
        goto out;
    }
    load_ctx_t lc = {self, 0};
    if (nx_store_task_foreach(self->store, NX_TASK_QUEUED, NULL, 0, 0, false, load_one, &lc) < 0 ||
        nx_store_commit(self->store) < 0) {
        nx_error("ledger: cannot load the queue: %s", nx_store_errmsg(self->store));
        rc = 1;
        goto out;
    }
    self->event_seq = nx_store_event_last_seq(self->store);

    self->router = zsock_new(ZMQ_ROUTER);
    self->xpub = zsock_new(ZMQ_XPUB);
    if (!self->router || !self->xpub) {
        nx_error("cannot create sockets");
        rc = 2;
        goto out;
    }
    zsock_set_router_mandatory(self->router, 1);
    zsock_set_sndhwm(self->router, 100000);
    zsock_set_rcvhwm(self->router, 100000);
    zsock_set_linger(self->router, 2000);
    zsock_set_sndhwm(self->xpub, 10000);
    zsock_set_linger(self->xpub, 0);
    if (strncmp(self->home.ceo, "ipc://", 6) == 0)
        unlink(self->home.ceo + 6); /* a socket file left by a killed CEO */
    if (strncmp(self->home.events, "ipc://", 6) == 0)
        unlink(self->home.events + 6);
    if (zsock_bind(self->router, "%s", self->home.ceo) < 0) {
        nx_error("cannot bind the CEO socket %s: %s", self->home.ceo, zmq_strerror(zmq_errno()));
        rc = 2;
        goto out;
    }
    if (zsock_bind(self->xpub, "%s", self->home.events) < 0) {
        nx_error("cannot bind the event socket %s: %s", self->home.events,
                 zmq_strerror(zmq_errno()));
        rc = 2;
        goto out;
    }
    nx_info("CEO of '%s' serving on %s (events on %s); %zu queued task(s) recovered in %lld ms",
            self->company->name, self->home.ceo, self->home.events, lc.count,
            (long long)(nx_mono_ms() - t0));
    self->loop = zloop_new();
    nx_signals_watch(self->loop, opts->sigfd);
    zloop_reader(self->loop, self->router, on_router, self);
    zloop_timer(self->loop, (size_t)self->company->heartbeat_ms, 0, on_tick, self);
    signal(SIGPIPE, SIG_IGN);
    zloop_start(self->loop);
    if (self->in_txn)
        txn_end(self);
    if (strncmp(self->home.ceo, "ipc://", 6) == 0)
        unlink(self->home.ceo + 6);
    if (strncmp(self->home.events, "ipc://", 6) == 0)
        unlink(self->home.events + 6);
    nx_info("CEO stopped");
    rc = self->exit_code;
out:
    zloop_destroy(&self->loop);
    zsock_destroy(&self->router);
    zsock_destroy(&self->xpub);
    zlistx_destroy(&self->outbox);
    zlistx_destroy(&self->waiters);
    zhashx_destroy(&self->emp_by_id);
    zhashx_destroy(&self->emps);
    zhashx_destroy(&self->nodes);
    if (self->queues)
        for (size_t i = 0; i < self->company->ndepts; i++) {
            free(self->queues[i].items);
            free(self->queues[i].emps);
        }
    free(self->queues);
    nx_store_destroy(&self->store);
    nx_company_destroy(&self->company);
    return rc;
}
