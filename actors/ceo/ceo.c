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

#include "ceo_int.h"

static void task_final(ceo_t *self, int64_t task, int64_t parent, const nx_msg_t *result);

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
    self->stats.events++;
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

static void d_push(ceo_t *self, delayed_t item) {
    if (self->ndelayed == self->delayed_cap) {
        self->delayed_cap = self->delayed_cap ? self->delayed_cap * 2 : 64;
        self->delayed = realloc(self->delayed, self->delayed_cap * sizeof *self->delayed);
    }
    size_t i = self->ndelayed++;
    self->delayed[i] = item;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (self->delayed[p].run_after_ms <= self->delayed[i].run_after_ms)
            break;
        delayed_t t = self->delayed[i];
        self->delayed[i] = self->delayed[p];
        self->delayed[p] = t;
        i = p;
    }
}

static delayed_t d_pop(ceo_t *self) {
    delayed_t top = self->delayed[0];
    self->delayed[0] = self->delayed[--self->ndelayed];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < self->ndelayed && self->delayed[l].run_after_ms < self->delayed[m].run_after_ms)
            m = l;
        if (r < self->ndelayed && self->delayed[r].run_after_ms < self->delayed[m].run_after_ms)
            m = r;
        if (m == i)
            break;
        delayed_t t = self->delayed[i];
        self->delayed[i] = self->delayed[m];
        self->delayed[m] = t;
        i = m;
    }
    return top;
}

/* Queues a task now, or after its back-off. */
static void enqueue(ceo_t *self, size_t dept, int64_t priority, int64_t id, int64_t run_after) {
    if (run_after > nx_now_ms())
        d_push(self, (delayed_t){run_after, priority, id, dept});
    else
        q_push(&self->queues[dept], priority, id);
}

/* Moves tasks whose back-off is over into their department's queue. */
static void release_delayed(ceo_t *self) {
    int64_t now = nx_now_ms();
    while (self->ndelayed && self->delayed[0].run_after_ms <= now) {
        delayed_t d = d_pop(self);
        q_push(&self->queues[d.dept], d.priority, d.id);
    }
}

/* Temporal-style retry back-off: initial * multiplier^(attempt-1), capped,
 * with "equal jitter" (half fixed, half random) so that tasks lost together
 * do not come back together. */
static int64_t backoff_ms(ceo_t *self, const nx_dept_conf_t *d, uint32_t attempt) {
    double ms = (double)d->retry_initial_ms;
    for (uint32_t i = 1; i < attempt && ms < (double)d->retry_max_ms; i++)
        ms *= d->retry_multiplier;
    if (ms > (double)d->retry_max_ms)
        ms = (double)d->retry_max_ms;
    int64_t half = (int64_t)ms / 2;
    return half + (half > 0 ? (int64_t)(rand_r(&self->rng) % (unsigned)(half + 1)) : 0);
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
static void orphan_remove(ceo_t *self, int64_t task);

/* Commits, then sends everything the transaction produced. A dispatch that
 * cannot be delivered marks its employee lost, which needs another
 * transaction; hence the loop. */
static void txn_end(ceo_t *self) {
    while (self->in_txn) {
        schedule(self);
        self->stats.commits++;
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
    if (t->state == NX_TASK_QUEUED && t->run_after_ms > nx_now_ms())
        nx_msg_set_uint(m, "run_after_ms", (uint64_t)t->run_after_ms);
    if (t->parent)
        nx_msg_set_uint(m, "parent", (uint64_t)t->parent);
    if (t->workflow)
        nx_msg_set_str(m, "workflow", t->workflow);
    if (t->workflow || t->parent)
        nx_msg_set_uint(m, "stage", t->stage);
    if (t->rejects)
        nx_msg_set_uint(m, "rejects", t->rejects);
    if (t->tokens_in)
        nx_msg_set_uint(m, "tokens_in", t->tokens_in);
    if (t->tokens_out)
        nx_msg_set_uint(m, "tokens_out", t->tokens_out);
    if (t->cost_microusd)
        nx_msg_set_uint(m, "cost_microusd", t->cost_microusd);
    const char *strs[][2] = {{"verdict", t->verdict}, {"workspace", t->workspace},
                             {"branch", t->branch},   {"base", t->base},
                             {"commits", t->commits}};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (strs[i][1])
            nx_msg_set_str(m, strs[i][0], strs[i][1]);
    return m;
}

/* Answers every waiter on a task if it is final now. */
static void wake_waiters(ceo_t *self, int64_t task) {
    if (zlistx_size(self->waiters) == 0)
        return;
    nx_task_t t;
    if (nx_store_task_get(self->store, task, &t) < 0)
        return;
    if (!nx_task_state_final(t.state)) {
        nx_task_clear(&t);
        return;
    }
    char *hist = NULL;
    nx_store_task_history(self->store, task, &hist);
    waiter_t *w = zlistx_first(self->waiters);
    while (w) {
        void *handle_ = zlistx_cursor(self->waiters);
        waiter_t *next = zlistx_next(self->waiters);
        if (w->task == task) {
            nx_msg_t *m = task_info(&t, true);
            if (hist && *hist)
                nx_msg_set_str(m, "history", hist);
            nx_msg_set_corr(m, w->corr);
            reply(self, w->identity, &m);
            zlistx_delete(self->waiters, handle_);
        }
        w = next;
    }
    free(hist);
    nx_task_clear(&t);
}

/* The employee's own count is the truth: free slots it reported, less the
 * tasks sent that it had not received yet when it reported. */
static void credit_update(emp_t *e, const nx_msg_t *m) {
    if (!nx_msg_has(m, "free") || !nx_msg_has(m, "received"))
        return;
    uint64_t reported = nx_msg_uint(m, "free", 0), received = nx_msg_uint(m, "received", 0);
    uint64_t in_flight = e->sent > received ? e->sent - received : 0;
    e->free = reported > in_flight ? (uint32_t)(reported - in_flight) : 0;
}


/* Ends attempt `attempt` of a running task that did not succeed: back to
 * the queue after a back-off, or `dead` (or `final_state` when retrying is
 * not wanted) once its attempts are used up. Every attempt keeps its error
 * in the ledger. */
static void retry_or_end(ceo_t *self, const nx_task_t *t, uint32_t attempt, const char *outcome,
                         int64_t exit_code, const char *why, bool retry, nx_task_state_t final_state,
                         const void *output, size_t output_len) {
    int64_t now = nx_now_ms();
    int d = nx_company_dept(self->company, t->dept);
    if (retry && d >= 0 && attempt < t->max_attempts) {
        int64_t delay = backoff_ms(self, &self->company->depts[d], attempt);
        nx_store_task_requeue(self->store, t->id, attempt, outcome, exit_code, why, now + delay,
                              now);
        enqueue(self, (size_t)d, t->priority, t->id, now + delay);
        self->stats.requeued++;
        char detail[700];
        snprintf(detail, sizeof detail, "%s; attempt %u of %u again in %lld ms", why,
                 attempt + 1, t->max_attempts, (long long)delay);
        event(self, "task.requeued", t->id, t->employee, t->dept, "queued", detail);
        return;
    }
    nx_task_state_t st = retry ? NX_TASK_DEAD : final_state;
    char msg[700];
    if (st == NX_TASK_DEAD)
        snprintf(msg, sizeof msg, "gave up after %u attempt(s); last: %s", attempt, why);
    else
        snprintf(msg, sizeof msg, "%s", why);
    if (st == NX_TASK_DEAD) {
        /* The attempt keeps its own outcome ("lost", "failed"); the task is dead. */
        nx_store_task_requeue(self->store, t->id, attempt, outcome, exit_code, why, 0, now);
        nx_store_task_finish(self->store, t->id, 0, st, exit_code, output, output_len, msg, now);
    } else
        nx_store_task_finish(self->store, t->id, attempt, st, exit_code, output, output_len, msg,
                             now);
    self->stats.failed++;
    event(self, st == NX_TASK_DEAD ? "task.dead" : "task.failed", t->id, t->employee, t->dept,
          nx_task_state_name(st), msg);
    task_final(self, t->id, t->parent, NULL);
}

/* Puts a running task back after losing attempt `attempt` (employee dead,
 * lease lapsed). Ignored when the task has moved on since. */
static void requeue(ceo_t *self, int64_t task, uint32_t attempt, const char *why) {
    nx_task_t t;
    if (nx_store_task_brief(self->store, task, &t) < 0)
        return;
    if (t.state == NX_TASK_RUNNING && t.attempts == attempt) {
        retry_or_end(self, &t, attempt, "lost", -1, why, true, NX_TASK_DEAD, NULL, 0);
        wake_waiters(self, task);
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
    release_delayed(self);
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
                task_final(self, id, t.parent, NULL);
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
            const nx_dept_conf_t *dc = &self->company->depts[d];
            int64_t soft = t.soft_timeout_ms ? t.soft_timeout_ms : dc->soft_timeout_ms;
            int64_t hard = t.hard_timeout_ms ? t.hard_timeout_ms : dc->hard_timeout_ms;
            if (soft)
                nx_msg_set_uint(m, "soft_timeout_ms", (uint64_t)soft);
            if (hard)
                nx_msg_set_uint(m, "hard_timeout_ms", (uint64_t)hard);
            if (t.workspace)
                nx_msg_set_str(m, "workspace", t.workspace);
            nx_msg_set_to(m, e->name);
            reply(self, e->identity, &m);
            if (e->nheld == e->held_cap) {
                e->held_cap = e->held_cap ? e->held_cap * 2 : 4;
                e->held = realloc(e->held, e->held_cap * sizeof *e->held);
            }
            e->held[e->nheld++] = (held_t){id, attempt};
            e->free--;
            e->sent++;
            event(self, "task.started", id, e->name, t.dept, "running", NULL);
            nx_task_clear(&t);
        }
    }
}

/* ---- what workflow.c uses (ceo_int.h) ---- */

void ceo_event(ceo_t *self, const char *topic, int64_t task, const char *employee,
               const char *dept, const char *state, const char *detail) {
    event(self, topic, task, employee, dept, state, detail);
}

void ceo_queue(ceo_t *self, size_t dept, int64_t priority, int64_t id) {
    q_push(&self->queues[dept], priority, id);
}

void ceo_wake_waiters(ceo_t *self, int64_t task) { wake_waiters(self, task); }

nx_msg_t *ceo_task_info(const nx_task_t *t, bool with_payload) {
    return task_info(t, with_payload);
}

void ceo_reply(ceo_t *self, zframe_t *identity, nx_msg_t **msg_p) { reply(self, identity, msg_p); }

void ceo_send_now(ceo_t *self, zframe_t *identity, nx_msg_t **msg_p) {
    nx_msg_set_id(*msg_p, nx_wire_next_id());
    nx_msg_set_from(*msg_p, "ceo");
    int rc = nx_wire_send(self->router, identity, *msg_p, true);
    if (rc < 0)
        nx_debug("%s not delivered: %s", nx_msg_type_name(nx_msg_type(*msg_p)), nx_strerror(rc));
    nx_msg_destroy(msg_p);
}

/* A task reached a final state: a workflow it belongs to moves on. */
static void task_final(ceo_t *self, int64_t task, int64_t parent, const nx_msg_t *result) {
    if (parent)
        wf_child_final(self, task, result);
}

/* ---- handlers ---- */

static void on_submit_workflow(ceo_t *self, zframe_t *from, const nx_msg_t *m) {
    const char *name = nx_msg_str(m, "workflow");
    const nx_workflow_conf_t *w = nx_company_workflow(self->company, name);
    if (!w) {
        char known[512] = "";
        for (size_t i = 0; i < self->company->nworkflows; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                     self->company->workflows[i].name);
        reply_error(self, from, m, "unknown_workflow", "no workflow '%s' (known: %s)", name,
                    *known ? known : "none; add 'workflows:' to the company file");
        return;
    }
    int64_t id;
    char err[512];
    int rc = wf_submit(self, w, m, &id, err, sizeof err);
    if (rc < 0) {
        reply_error(self, from, m, "ledger", "%s", err);
        return;
    }
    nx_msg_t *r = nx_msg_new(NX_MSG_SUBMITTED);
    nx_msg_set_corr(r, nx_msg_id(m));
    nx_msg_set_uint(r, "task", (uint64_t)id);
    nx_msg_set_bool(r, "existing", rc == 1);
    reply(self, from, &r);
}

static void on_submit(ceo_t *self, zframe_t *from, const nx_msg_t *m) {
    const char *dept = nx_msg_str(m, "dept");
    if (nx_msg_str(m, "workflow") && dept) {
        reply_error(self, from, m, "bad_message", "submit: give 'dept' or 'workflow', not both");
        return;
    }
    if (nx_msg_str(m, "workflow")) {
        on_submit_workflow(self, from, m);
        return;
    }
    if (!dept) {
        reply_error(self, from, m, "bad_message", "submit: 'dept' or 'workflow' is required");
        return;
    }
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
    t.soft_timeout_ms = (int64_t)nx_msg_uint(m, "soft_timeout_ms", 0);
    t.hard_timeout_ms = (int64_t)nx_msg_uint(m, "hard_timeout_ms", 0);
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
    if (wait && !nx_task_state_final(t.state) && zlistx_size(self->waiters) >= MAX_WAITERS)
        reply_error(self, from, m, "busy", "too many clients are waiting (%d); try again",
                    MAX_WAITERS);
    else if (wait && !nx_task_state_final(t.state)) {
        waiter_t *w = calloc(1, sizeof *w);
        w->identity = zframe_dup(from);
        w->corr = nx_msg_id(m);
        w->task = id;
        uint64_t tmo = nx_msg_uint(m, "timeout_ms", MAX_WAIT_MS);
        w->deadline_ms = nx_mono_ms() + (int64_t)(tmo > MAX_WAIT_MS ? MAX_WAIT_MS : tmo);
        zlistx_add_end(self->waiters, w);
    } else {
        nx_msg_t *r = task_info(&t, true);
        char *hist = NULL;
        if (nx_store_task_history(self->store, id, &hist) == 0 && hist && *hist)
            nx_msg_set_str(r, "history", hist);
        free(hist);
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
    nx_store_event_foreach(self->store, nx_msg_str(m, "topic"), (int64_t)nx_msg_uint(m, "task", 0), limit,
                           event_one, &c);
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
        if (self->dept_notes[e->dept])
            nx_msg_set_str(r, "note", self->dept_notes[e->dept]);
        if (e->node[0])
            nx_msg_set_str(r, "node", e->node);
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
    if (!same_socket && e->nheld) {
        /* Tasks sent to its old socket may never have arrived: they wait as
         * orphans until the employee reports them (RUNNING) or their lease
         * lapses. */
        int64_t deadline = nx_mono_ms() + self->company->heartbeat_ms * (int64_t)self->company->liveness;
        self->orphans = realloc(self->orphans, (self->norphans + e->nheld) * sizeof *self->orphans);
        for (size_t i = 0; i < e->nheld; i++)
            self->orphans[self->norphans++] = (orphan_t){e->held[i].task, e->held[i].attempt, deadline};
        e->nheld = 0;
    }
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
    snprintf(e->node, sizeof e->node, "%s", nx_msg_str(m, "node") ? nx_msg_str(m, "node") : "");
    e->capacity = (uint32_t)nx_msg_uint(m, "capacity", 1);
    /* On a new socket its count of received tasks is the baseline for what
     * is in flight. A repeated hello on the same socket must not reset it:
     * tasks sent since are still on their way. */
    if (!same_socket)
        e->sent = nx_msg_uint(m, "received", 0);
    e->free = (uint32_t)nx_msg_uint(m, "free", e->capacity);
    credit_update(e, m);
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
        for (size_t i = 0; i < e->nheld; i++)
            if (e->held[i].task == id && e->held[i].attempt == attempt) {
                e->held[i] = e->held[--e->nheld];
                break;
            }
        credit_update(e, m);
    }
    nx_task_t t;
    if (nx_store_task_brief(self->store, id, &t) < 0) {
        nx_warn("result for unknown task %lld ignored", (long long)id);
        return;
    }
    bool ok = nx_msg_bool(m, "ok", false);
    /* A success is accepted from any attempt while the task is not final;
     * a failure only from the current running attempt (an older attempt's
     * failure changes nothing: the task was already given another go). */
    bool current = t.state == NX_TASK_RUNNING && attempt == t.attempts;
    if (nx_task_state_final(t.state) || attempt == 0 || attempt > t.attempts || (!ok && !current)) {
        self->stats.stale++;
        nx_info("stale result for task %lld attempt %u ignored (task is %s after %u attempt(s))",
                (long long)id, attempt, nx_task_state_name(t.state), t.attempts);
        nx_task_clear(&t);
        return;
    }
    orphan_remove(self, id);
    size_t outlen;
    const void *out = nx_msg_bin(m, "output", &outlen);
    const char *error = nx_msg_str(m, "error");
    nx_store_task_usage(self->store, id, nx_msg_uint(m, "tokens_in", 0),
                        nx_msg_uint(m, "tokens_out", 0), nx_msg_uint(m, "cost_microusd", 0),
                        nx_msg_str(m, "verdict"));
    if (ok) {
        nx_store_task_finish(self->store, id, attempt, NX_TASK_SUCCEEDED,
                             nx_msg_int(m, "exit_code", 0), out, outlen, NULL, nx_now_ms());
        self->stats.succeeded++;
        const char *verdict = nx_msg_str(m, "verdict");
        char detail[64] = "";
        if (verdict)
            snprintf(detail, sizeof detail, "verdict: %s", verdict);
        event(self, "task.succeeded", id, e ? e->name : nx_msg_from(m), t.dept, "succeeded",
              verdict ? detail : NULL);
        task_final(self, id, t.parent, m);
    } else {
        int d = nx_company_dept(self->company, t.dept);
        bool retry = d >= 0 && self->company->depts[d].retry_on_failure;
        free(t.employee);
        t.employee = strdup(e ? e->name : nx_msg_from(m));
        retry_or_end(self, &t, attempt, "failed", nx_msg_int(m, "exit_code", -1),
                     error ? error : "agent failed", retry, NX_TASK_FAILED, out, outlen);
    }
    if (e) {
        if (ok)
            e->done++;
        else
            e->failed++;
    }
    wake_waiters(self, id);
    nx_task_clear(&t);
}

/* Finds who holds a running task; NULL for none (or an orphan). */
static emp_t *holder_of(ceo_t *self, int64_t task) {
    for (emp_t *e = zhashx_first(self->emps); e; e = zhashx_next(self->emps))
        for (size_t i = 0; i < e->nheld; i++)
            if (e->held[i].task == task)
                return e;
    return NULL;
}

static void orphan_remove(ceo_t *self, int64_t task) {
    for (size_t i = 0; i < self->norphans; i++)
        if (self->orphans[i].task == task) {
            self->orphans[i] = self->orphans[--self->norphans];
            return;
        }
}

static void reply_task(ceo_t *self, zframe_t *from, const nx_msg_t *m, int64_t id) {
    nx_task_t t;
    if (nx_store_task_get(self->store, id, &t) == 0) {
        nx_msg_t *r = task_info(&t, true);
        nx_msg_set_corr(r, nx_msg_id(m));
        reply(self, from, &r);
        nx_task_clear(&t);
    }
}

static int cancel_child(const nx_task_t *t, void *arg);

/* Cancels a queued or running task; a workflow task takes every unfinished
 * task under it along. */
static void cancel_task(ceo_t *self, const nx_task_t *t, const char *why) {
    int64_t id = t->id;
    uint32_t running = t->state == NX_TASK_RUNNING && !t->workflow ? t->attempts : 0;
    nx_store_task_cancel(self->store, id, running, why, nx_now_ms());
    if (running) {
        emp_t *e = holder_of(self, id);
        if (e && e->state == EMP_ALIVE) {
            nx_msg_t *c = nx_msg_new(NX_MSG_CANCEL);
            nx_msg_set_uint(c, "task", (uint64_t)id);
            nx_msg_set_uint(c, "attempt", running);
            reply(self, e->identity, &c);
        }
        orphan_remove(self, id);
    }
    /* A queued one stays in its heap until popped, where its state makes
     * the scheduler skip it. */
    self->stats.cancelled++;
    event(self, "task.cancelled", id, t->employee, t->dept, "cancelled",
          t->workflow ? "with everything under it" : running ? "its agent was killed"
                                                              : "it never ran");
    wake_waiters(self, id);
    if (t->workflow)
        nx_store_task_children(self->store, id, false, cancel_child, self);
    else
        task_final(self, id, t->parent, NULL);
}

static int cancel_child(const nx_task_t *t, void *arg) {
    if (!nx_task_state_final(t->state))
        cancel_task(arg, t, "cancelled with its workflow");
    return 0;
}

static void on_cancel(ceo_t *self, zframe_t *from, const nx_msg_t *m) {
    int64_t id = (int64_t)nx_msg_uint(m, "task", 0);
    nx_task_t t;
    if (nx_store_task_brief(self->store, id, &t) < 0) {
        reply_error(self, from, m, "not_found", "no task %lld", (long long)id);
        return;
    }
    if (nx_task_state_final(t.state)) {
        reply_error(self, from, m, "already_final",
                    "task %lld has already %s; only queued or running tasks can be cancelled",
                    (long long)id, t.state == NX_TASK_SUCCEEDED ? "succeeded"
                                   : t.state == NX_TASK_FAILED  ? "failed"
                                   : t.state == NX_TASK_DEAD    ? "died"
                                                                : "been cancelled");
        nx_task_clear(&t);
        return;
    }
    cancel_task(self, &t, "cancelled by a client");
    reply_task(self, from, m, id);
    nx_task_clear(&t);
}

static void on_retry(ceo_t *self, zframe_t *from, const nx_msg_t *m) {
    int64_t id = (int64_t)nx_msg_uint(m, "task", 0);
    nx_task_t t;
    if (nx_store_task_brief(self->store, id, &t) < 0) {
        reply_error(self, from, m, "not_found", "no task %lld", (long long)id);
        return;
    }
    int d = nx_company_dept(self->company, t.dept);
    if (t.workflow || t.parent) {
        /* Its stages decided its fate together; a retry of one piece would
         * not move the workflow, so say what to do instead. */
        reply_error(self, from, m, "bad_state",
                    "task %lld is part of a workflow; submit the workflow again instead",
                    (long long)id);
        nx_task_clear(&t);
        return;
    }
    if (!nx_task_state_final(t.state) || t.state == NX_TASK_SUCCEEDED || d < 0) {
        reply_error(self, from, m, "bad_state",
                    "task %lld is %s; only dead, failed or cancelled tasks can be retried",
                    (long long)id, nx_task_state_name(t.state));
        nx_task_clear(&t);
        return;
    }
    nx_store_task_retry(self->store, id, self->company->depts[d].max_attempts);
    q_push(&self->queues[d], t.priority, id);
    event(self, "task.retried", id, NULL, t.dept, "queued", "retried by a client");
    reply_task(self, from, m, id);
    nx_task_clear(&t);
}

/* An employee (re)registered with a task still running from before: adopt
 * it, or tell the employee to stop when the task has moved on. */
static void on_running(ceo_t *self, emp_t *e, const nx_msg_t *m) {
    int64_t id = (int64_t)nx_msg_uint(m, "task", 0);
    uint32_t attempt = (uint32_t)nx_msg_uint(m, "attempt", 0);
    if (!e)
        return;
    for (size_t i = 0; i < self->norphans; i++)
        if (self->orphans[i].task == id && self->orphans[i].attempt == attempt) {
            self->orphans[i] = self->orphans[--self->norphans];
            if (e->nheld == e->held_cap) {
                e->held_cap = e->held_cap ? e->held_cap * 2 : 4;
                e->held = realloc(e->held, e->held_cap * sizeof *e->held);
            }
            e->held[e->nheld++] = (held_t){id, attempt};
            nx_info("task %lld attempt %u adopted: %s still runs it", (long long)id, attempt,
                    e->name);
            return;
        }
    for (size_t i = 0; i < e->nheld; i++)
        if (e->held[i].task == id)
            return; /* we know already */
    nx_msg_t *c = nx_msg_new(NX_MSG_CANCEL);
    nx_msg_set_uint(c, "task", (uint64_t)id);
    nx_msg_set_uint(c, "attempt", attempt);
    reply(self, e->identity, &c);
    nx_info("task %lld attempt %u on %s has moved on; told it to stop", (long long)id, attempt,
            e->name);
}

static void on_supervisor(ceo_t *self, const nx_msg_t *m) {
    const char *dept = nx_msg_str(m, "dept");
    int d = nx_company_dept(self->company, dept);
    if (d < 0)
        return;
    const char *detail = nx_msg_str(m, "detail");
    free(self->dept_notes[d]);
    self->dept_notes[d] = NULL;
    if (!strcmp(nx_msg_str(m, "state"), "gave_up")) {
        self->dept_notes[d] = strdup(detail ? detail : "its supervisor gave up");
        nx_error("department %s: %s", dept, self->dept_notes[d]);
        event(self, "department.failed", 0, NULL, dept, "gave_up", detail);
    }
}

static void on_stats(ceo_t *self, zframe_t *from, const nx_msg_t *m) {
    nx_msg_t *r = nx_msg_new(NX_MSG_STATS_INFO);
    nx_msg_set_corr(r, nx_msg_id(m));
    stats_t *st = &self->stats;
    nx_msg_set_uint(r, "messages", st->messages);
    nx_msg_set_uint(r, "commits", st->commits);
    nx_msg_set_uint(r, "submitted", st->submitted);
    nx_msg_set_uint(r, "succeeded", st->succeeded);
    nx_msg_set_uint(r, "failed", st->failed);
    nx_msg_set_uint(r, "requeued", st->requeued);
    nx_msg_set_uint(r, "stale_results", st->stale);
    nx_msg_set_uint(r, "events", st->events);
    nx_msg_set_uint(r, "cancelled", st->cancelled);
    uint64_t queued = 0, running = self->norphans, alive = 0;
    for (size_t d = 0; d < self->company->ndepts; d++)
        queued += self->queues[d].n;
    for (emp_t *e = zhashx_first(self->emps); e; e = zhashx_next(self->emps)) {
        running += e->nheld;
        alive += e->state == EMP_ALIVE;
    }
    nx_msg_set_uint(r, "queued", queued);
    nx_msg_set_uint(r, "delayed", self->ndelayed);
    nx_msg_set_uint(r, "running", running);
    nx_msg_set_uint(r, "employees", alive);
    nx_msg_set_uint(r, "uptime_ms", (uint64_t)(nx_mono_ms() - self->started_ms));
    reply(self, from, &r);
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
    self->stats.messages++;
    switch (type) {
    case NX_MSG_CANCEL: on_cancel(self, from, m); break;
    case NX_MSG_RETRY: on_retry(self, from, m); break;
    case NX_MSG_STATS: on_stats(self, from, m); break;
    case NX_MSG_RUNNING:
        if (e)
            on_running(self, e, m);
        else
            reply_error(self, from, m, "not_registered", "say hello first");
        break;
    case NX_MSG_SUPERVISOR: on_supervisor(self, m); break;
    case NX_MSG_PING: {
        nx_msg_t *r = nx_msg_new(NX_MSG_PONG);
        nx_msg_set_corr(r, nx_msg_id(m));
        reply(self, from, &r);
        break;
    }
    case NX_MSG_SUBMIT:
        if (self->shutting_down)
            reply_error(self, from, m, "shutting_down", "the company is shutting down");
        else {
            self->stats.submitted++;
            on_submit(self, from, m);
        }
        break;
    case NX_MSG_TREE: wf_tree(self, from, m); break;
    case NX_MSG_CHAT:
        if (e)
            chat_on_message(self, e, m);
        else
            reply_error(self, from, m, "not_registered", "say hello first");
        break;
    case NX_MSG_PROGRESS:
        if (e) {
            char text[400];
            snprintf(text, sizeof text, "attempt %llu: %s",
                     (unsigned long long)nx_msg_uint(m, "attempt", 0), nx_msg_str(m, "text"));
            event(self, "task.progress", (int64_t)nx_msg_uint(m, "task", 0), e->name,
                  self->company->depts[e->dept].name, "running", text);
        } else
            reply_error(self, from, m, "not_registered", "say hello first");
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
        if (e)
            credit_update(e, m);
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

/* Releases tasks whose back-off is over (50 ms granularity). */
static int on_backoff_tick(zloop_t *loop, int timer_id, void *arg) {
    ceo_t *self = arg;
    if (self->ndelayed && self->delayed[0].run_after_ms <= nx_now_ms()) {
        txn_begin(self);
        txn_end(self); /* txn_end schedules, which releases */
    }
    return 0;
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
    for (size_t i = 0; i < self->norphans;) {
        if (now < self->orphans[i].deadline_ms) {
            i++;
            continue;
        }
        orphan_t o = self->orphans[i];
        self->orphans[i] = self->orphans[--self->norphans];
        nx_warn("task %lld attempt %u: its lease lapsed (no employee reported it after the CEO "
                "restarted)",
                (long long)o.task, o.attempt);
        requeue(self, o.task, o.attempt, "lease lapsed: no employee reported it after a CEO restart");
    }
    chat_tick(self);
    /* Reap at least every minute, and often enough for a short retention. */
    int64_t every = self->company->worktree_retention_ms / 2;
    every = every < 1000 ? 1000 : every > 60000 ? 60000 : every;
    if (self->company->repo && now - self->last_reap_ms > every) {
        self->last_reap_ms = now;
        wf_reap_worktrees(self);
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

typedef struct {
    ceo_t *self;
    size_t count;
} load_ctx_t;

/* A task the previous CEO left running: its employee may still be at it,
 * so it gets a lease of two liveness periods to say so (RUNNING) before it
 * is queued again. */
static int load_running(const nx_task_t *t, void *arg) {
    load_ctx_t *c = arg;
    ceo_t *self = c->self;
    if (t->workflow)
        return 0; /* no employee runs it: it waits for its stages, which are in the ledger */
    self->orphans = realloc(self->orphans, (self->norphans + 1) * sizeof *self->orphans);
    self->orphans[self->norphans++] =
        (orphan_t){t->id, t->attempts,
                   nx_mono_ms() + 2 * self->company->heartbeat_ms * (int64_t)self->company->liveness};
    c->count++;
    return 0;
}

static int load_one(const nx_task_t *t, void *arg) {
    load_ctx_t *c = arg;
    int d = nx_company_dept(c->self->company, t->dept);
    if (d < 0) {
        nx_warn("task %lld is for department '%s', which the company file no longer has; it "
                "stays queued",
                (long long)t->id, t->dept);
        return 0;
    }
    enqueue(c->self, (size_t)d, t->priority, t->id, t->run_after_ms);
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
    self->started_ms = t0;
    self->rng = (unsigned)(nx_now_ms() ^ getpid());
    self->dept_notes = calloc(self->company->ndepts, sizeof *self->dept_notes);
    load_ctx_t lc = {self, 0}, rc_ = {self, 0};
    if (nx_store_task_foreach(self->store, NX_TASK_QUEUED, NULL, 0, 0, false, load_one, &lc) < 0 ||
        nx_store_task_foreach(self->store, NX_TASK_RUNNING, NULL, 0, 0, false, load_running,
                              &rc_) < 0) {
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
    nx_info("CEO of '%s' serving on %s (events on %s); recovered %zu queued and %zu running "
            "task(s) in %lld ms",
            self->company->name, self->home.ceo, self->home.events, lc.count, rc_.count,
            (long long)(nx_mono_ms() - t0));
    self->loop = zloop_new();
    nx_signals_watch(self->loop, opts->sigfd);
    zloop_reader(self->loop, self->router, on_router, self);
    zloop_timer(self->loop, (size_t)self->company->heartbeat_ms, 0, on_tick, self);
    zloop_timer(self->loop, 50, 0, on_backoff_tick, self);
    signal(SIGPIPE, SIG_IGN);
    zloop_start(self->loop);
    if (self->in_txn)
        txn_end(self);
    if (strncmp(self->home.ceo, "ipc://", 6) == 0)
        unlink(self->home.ceo + 6);
    if (strncmp(self->home.events, "ipc://", 6) == 0)
        unlink(self->home.events + 6);
    nx_info("CEO stopped: %llu message(s) in %llu commit(s), %llu task(s) submitted",
            (unsigned long long)self->stats.messages, (unsigned long long)self->stats.commits,
            (unsigned long long)self->stats.submitted);
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
    free(self->delayed);
    free(self->orphans);
    free(self->questions);
    if (self->dept_notes)
        for (size_t i = 0; i < self->company->ndepts; i++)
            free(self->dept_notes[i]);
    free(self->dept_notes);
    nx_store_destroy(&self->store);
    nx_company_destroy(&self->company);
    return rc;
}
