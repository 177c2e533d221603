/*  ceo_int.h - the CEO's state, shared by ceo.c (the loop, dispatch,
 *  results) and workflow.c (workflows, subtasks, worktrees). Not a public
 *  header: other modules use nx_ceo.h. */
#ifndef NX_CEO_INT_H
#define NX_CEO_INT_H

#include "nx_ceo.h"
#include "nx_runtime.h"

#define BATCH 1024
#define MAX_WAIT_MS (3600 * 1000)
#define PAGE_MAX 1000
#define MAX_WAITERS 100000

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
    char node[NX_PROTO_MAX_NAME + 1]; /* the node that runs it, as it said ("" = none) */
    uint32_t capacity;                /* slots it announced */
    uint32_t free;                    /* credit: tasks we may still send */
    uint64_t sent;                    /* TASKs sent on its socket (in its count) */
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

/* A task waiting out its retry back-off. */
typedef struct {
    int64_t run_after_ms; /* wall clock */
    int64_t priority;
    int64_t id;
    size_t dept;
} delayed_t;

/* A task the ledger says is running but whose employee this CEO has not
 * heard of (it was dispatched by a previous CEO). Its lease lapses at
 * `deadline_ms` unless the employee reports it with RUNNING. */
typedef struct {
    int64_t task;
    uint32_t attempt;
    int64_t deadline_ms; /* monotonic */
} orphan_t;

typedef struct {
    uint64_t messages, commits, submitted, succeeded, failed, requeued, stale, events,
        cancelled;
} stats_t;

/* An agent's question waiting for its answer (chat.c). In memory only: a
 * CEO restart ends the agents' conversations, not their tasks. */
typedef struct {
    uint64_t qid;
    char asker[NX_PROTO_MAX_NAME + 1];  /* the employee whose agent asked */
    char target[NX_PROTO_MAX_NAME + 1]; /* the employee whose agent must answer */
    char ref[NX_PROTO_MAX_NAME + 1];    /* the asking agent's reference */
    int64_t task;                       /* the asking agent's task */
    int64_t deadline_ms;                /* monotonic */
} question_t;

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
    delayed_t *delayed;    /* min-heap by run_after_ms */
    size_t ndelayed, delayed_cap;
    orphan_t *orphans;     /* running tasks of a previous CEO */
    size_t norphans;
    char **dept_notes;     /* per department: why its supervisor gave up, or NULL */
    stats_t stats;
    int64_t started_ms;    /* monotonic */
    unsigned rng;          /* jitter */
    int64_t last_reap_ms;  /* monotonic: when worktrees were last reaped */
    question_t *questions; /* open questions between agents (chat.c) */
    size_t nquestions, questions_cap;
    uint64_t next_qid;
    size_t chat_rr;        /* round robin for "dept:NAME" recipients */
} ceo_t;

/* ---- ceo.c, for workflow.c ---- */

/* Records an event in the ledger and queues it for the bus. */
void ceo_event(ceo_t *self, const char *topic, int64_t task, const char *employee,
               const char *dept, const char *state, const char *detail);
/* Puts a queued task in its department's heap. */
void ceo_queue(ceo_t *self, size_t dept, int64_t priority, int64_t id);
/* Answers every waiter on a task if it is final now. */
void ceo_wake_waiters(ceo_t *self, int64_t task);

/* ---- workflow.c ---- */

/* `nexus submit --workflow NAME`: the workflow task (running while its
 * stages run), its worktree when the company has a repo, and its first
 * stage task, all in the open transaction. Returns 0 with *ret_id, or a
 * negative code with the cause in err. */
int wf_submit(ceo_t *self, const nx_workflow_conf_t *w, const nx_msg_t *m, int64_t *ret_id,
              char *err, size_t errlen);
/* A task that belongs to a workflow (parent != 0) reached a final state;
 * `result` is the RESULT that ended it (NULL when it did not end with
 * one: dead, cancelled). Moves the workflow on. */
void wf_child_final(ceo_t *self, int64_t task, const nx_msg_t *result);
/* Removes the worktrees of top-level tasks finished before the retention. */
void wf_reap_worktrees(ceo_t *self);
/* `nexus tree ID`: the task and everything under it, as task_info
 * messages with a depth, then END. */
void wf_tree(ceo_t *self, zframe_t *from, const nx_msg_t *m);
/* ---- chat.c ---- */

/* A CHAT from employee e: routes an agent's message, question, answer or
 * publication, records it in the ledger, and answers e. */
void chat_on_message(ceo_t *self, emp_t *e, const nx_msg_t *m);
/* Questions past their deadline: the asker gets an error. */
void chat_tick(ceo_t *self);

/* task_info for one task (ceo.c). */
nx_msg_t *ceo_task_info(const nx_task_t *t, bool with_payload);
/* Queues a reply for after COMMIT (ceo.c). */
void ceo_reply(ceo_t *self, zframe_t *identity, nx_msg_t **msg_p);
/* Sends at once, before COMMIT: only for what acknowledges nothing (an
 * agent's message on its way to another agent). */
void ceo_send_now(ceo_t *self, zframe_t *identity, nx_msg_t **msg_p);

#endif
