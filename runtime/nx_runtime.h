/*  nx_runtime - what every Nexus process links: time and size parsing,
 *  logging, the company file, the task ledger (SQLite), the home folder
 *  and the wire helpers that move nx_msg_t over czmq sockets.
 *
 *  Library code here does not log errors it returns; the caller decides.
 *  Fallible functions return 0 (or a count) or a negative NX_E* / errno. */
#ifndef NX_RUNTIME_H
#define NX_RUNTIME_H

#include <czmq.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "nx_base.h"
#include "nx_proto.h"

/* ---- logging ----
 * One line per record on stderr: time, level, process name, text. Secrets
 * never reach here by construction: callers log ids, not payloads. */
typedef enum { NX_LOG_DEBUG, NX_LOG_INFO, NX_LOG_WARN, NX_LOG_ERROR } nx_log_level_t;
void nx_log_init(const char *process_name);
void nx_log_set_level(nx_log_level_t level);
void nx_log(nx_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define nx_debug(...) nx_log(NX_LOG_DEBUG, __VA_ARGS__)
#define nx_info(...) nx_log(NX_LOG_INFO, __VA_ARGS__)
#define nx_warn(...) nx_log(NX_LOG_WARN, __VA_ARGS__)
#define nx_error(...) nx_log(NX_LOG_ERROR, __VA_ARGS__)

/* ---- stop signals ----
 * ZeroMQ's I/O threads may take a signal meant to interrupt the actor's
 * poll, so actors block SIGINT/SIGTERM in every thread (call this before
 * the first socket exists) and read them from a signalfd in their loop.
 * Returns the signalfd, or -errno. */
int nx_signals_block(void);
/* Adds a reader for that fd to loop: the loop ends on SIGINT/SIGTERM. */
void nx_signals_watch(zloop_t *loop, int sigfd);
/* Undoes nx_signals_block for this thread (for a child before exec). */
void nx_signals_unblock(void);

/* ---- the company file ---- */

/* Which adapter turns a task into a command and its output into a result
 * (actors/agents/, one file each). */
typedef enum {
    NX_AGENT_SIM,
    NX_AGENT_EXEC,
    NX_AGENT_CLAUDE,
    NX_AGENT_CODEX,
    NX_AGENT_COPILOT,
    NX_AGENT_GEMINI,
    NX_AGENT_AIDER,
    NX_AGENT__COUNT
} nx_agent_kind_t;
const char *nx_agent_kind_name(nx_agent_kind_t kind);
int nx_agent_kind_from_name(const char *name, nx_agent_kind_t *ret_kind);

typedef struct {
    nx_agent_kind_t kind;  /* which adapter runs the task */
    char **command;        /* exec: argv, NULL-terminated; "{input}" in an argument is
                            * replaced by the task input (then stdin is empty); owned */
    char *binary;          /* CLI adapters: the program to run (default: its name on PATH) */
    char *model;           /* CLI adapters: --model; owned, may be NULL */
    char *permission_mode; /* claude --permission-mode, gemini --approval-mode, codex
                            * --sandbox; owned, may be NULL */
    char **allowed_tools;  /* claude --allowedTools, copilot --allow-tool, gemini
                            * --allowed-tools; NULL-terminated; owned */
    char **args;           /* extra arguments after the adapter's own; owned */
    int64_t work_ms;       /* sim: mean work time */
    int64_t jitter_ms;     /* sim: +- uniform jitter on work time */
    bool work_exponential; /* sim: work time exponential with mean work_ms */
    double fail_rate;      /* sim: share of tasks that exit non-zero, 0..1 */
    double crash_rate;     /* sim: share of tasks that die of SIGSEGV, 0..1 */
    double reject_rate;    /* sim in a qa role: share of reviews that reject, 0..1 */
    uint32_t subtasks;     /* sim in a product role: subtasks its plan lists */
    uint64_t seed;         /* sim: makes failures and jitter reproducible */
    char *output_prefix;   /* sim: result = prefix + input; owned */
    uint64_t max_output;   /* bytes of stdout kept; past it the agent is killed */
    bool inprocess;        /* sim: simulate inside the employee, no process */
} nx_agent_conf_t;

/* OTP supervision: which siblings restart with a dead employee. */
typedef enum { NX_ONE_FOR_ONE, NX_ONE_FOR_ALL, NX_REST_FOR_ONE } nx_strategy_t;
/* OTP restart types: permanent always, transient after an abnormal exit,
 * temporary never. */
typedef enum { NX_PERMANENT, NX_TRANSIENT, NX_TEMPORARY } nx_restart_t;
const char *nx_strategy_name(nx_strategy_t s);
const char *nx_restart_name(nx_restart_t r);

typedef struct {
    char *name;              /* department name, unique; owned */
    int line;                /* where it is defined in the company file */
    char *role;              /* product, engineering, qa or any word; owned, may be NULL */
    nx_agent_conf_t agent;   /* the agent every employee here runs */
    uint32_t capacity;       /* tasks one employee runs at once */
    uint32_t max_attempts;   /* dispatches before a task is dead */
    int64_t retry_initial_ms;   /* first back-off before a retry */
    double retry_multiplier;    /* back-off growth per attempt */
    int64_t retry_max_ms;       /* back-off cap */
    bool retry_on_failure;      /* retry failed agents too, not only lost attempts */
    int64_t soft_timeout_ms;    /* SIGTERM to the agent's group; 0 = none */
    int64_t hard_timeout_ms;    /* SIGKILL; 0 = none */
    nx_strategy_t strategy;     /* supervision strategy of its employees */
    uint32_t intensity;         /* restarts allowed within period */
    int64_t period_ms;
    nx_restart_t restart;       /* default restart type of its employees */
    int64_t shutdown_ms;        /* grace between SIGTERM and SIGKILL */
    bool sandbox;               /* run agents isolated (profile strict); false = none */
    bool net_host;              /* sandbox network: host instead of none */
    char **net_allow;           /* sandbox network: allow only these "host:port"; owned */
    char **sandbox_ro;          /* extra read-only binds, NULL-terminated; owned */
    char **sandbox_rw;          /* extra writable binds, NULL-terminated; owned */
    uint64_t sandbox_mem;       /* memory limit in bytes; 0 = none */
    uint64_t sandbox_pids;      /* process limit; 0 = none */
    uint32_t sandbox_cpu;       /* CPU quota, percent of one core; 0 = none */
    char **credential_env;      /* variables passed to this department's agents only; owned */
    char **credential_files;    /* files bound read-only for its agents only (mode 0600); owned */
} nx_dept_conf_t;

typedef struct {
    char *name;           /* employee name, unique in the company; owned */
    size_t dept;          /* index into nx_company_t.depts */
    nx_restart_t restart; /* its restart type */
} nx_employee_conf_t;

/* A named sequence of departments: each stage's result is the next one's
 * input; a `reject` verdict from a qa stage sends the work back to the
 * stage before it, at most max_rejects times. */
typedef struct {
    char *name;               /* owned */
    size_t *stages;           /* indices into nx_company_t.depts; owned */
    size_t nstages;
    uint32_t max_rejects;
} nx_workflow_conf_t;

typedef struct {
    char *path;               /* the company file, absolute; owned */
    char *name;               /* the company's name; owned */
    char *ceo_endpoint;       /* ROUTER endpoint, NULL = ipc in the home; owned */
    char *events_endpoint;    /* XPUB endpoint, NULL = ipc in the home; owned */
    int64_t heartbeat_ms;     /* heartbeat interval both ways */
    int64_t ask_timeout_ms;   /* an agent's question unanswered this long is an error */
    uint32_t liveness;        /* missed heartbeats before a peer is dead */
    bool sync_full;           /* ledger fsyncs every commit (default) */
    nx_dept_conf_t *depts;    /* owned array */
    size_t ndepts;
    nx_employee_conf_t *employees; /* owned array, in start order */
    size_t nemployees;
    nx_workflow_conf_t *workflows; /* owned array */
    size_t nworkflows;
    char *repo;               /* git repository; each top-level task gets a worktree; owned */
    int64_t worktree_retention_ms; /* worktrees of finished tasks are removed after this */
} nx_company_t;

/* Loads and validates a company file. On failure returns NX_ECONFIG (or
 * -errno when the file cannot be read) and writes "FILE:LINE: FIELD:
 * cause" into err. On success *ret_company is the caller's. */
int nx_company_load(const char *path, nx_company_t **ret_company, char *err, size_t errlen);
void nx_company_destroy(nx_company_t **self_p);
/* Index of the department, or -1. */
int nx_company_dept(const nx_company_t *self, const char *name);
/* Index of the employee, or -1. */
int nx_company_employee(const nx_company_t *self, const char *name);
/* The workflow of that name, or NULL. */
const nx_workflow_conf_t *nx_company_workflow(const nx_company_t *self, const char *name);

/* ---- the home folder ----
 * `.nexus/` beside the company file unless --home or NEXUS_HOME says
 * otherwise. Holds ledger.db, ceo.sock, events.sock, logs/, nexus.pid. */
typedef struct {
    char dir[512];       /* the home folder, absolute */
    char ceo[600];       /* ROUTER endpoint */
    char events[600];    /* XPUB endpoint */
    char ledger[600];    /* ledger file */
    char logs[600];      /* log folder */
} nx_home_t;

/* Fills *ret_home from an explicit home (may be NULL), NEXUS_HOME, and the
 * company (may be NULL: then the home must be explicit or ./.nexus).
 * Creates the folders when `create` is set. Returns 0 or -errno. */
int nx_home_resolve(const char *home, const nx_company_t *company, bool create, nx_home_t *ret_home);

/* ---- the task ledger ----
 *
 *   submit ──> queued ──dispatch──> running ──ok──> succeeded
 *                ^                    │ └─fail──> failed
 *                └──employee lost─────┘      (attempts used up: dead)
 *
 * Every state change is a row update inside the caller's transaction
 * (nx_store_begin/commit): the CEO batches one loop iteration of work into
 * one commit, which is its group commit. */
typedef enum {
    NX_TASK_QUEUED,
    NX_TASK_RUNNING,
    NX_TASK_SUCCEEDED,
    NX_TASK_FAILED,
    NX_TASK_CANCELLED,
    NX_TASK_DEAD,
    NX_TASK__COUNT
} nx_task_state_t;

const char *nx_task_state_name(nx_task_state_t state);
int nx_task_state_from_name(const char *name, nx_task_state_t *ret_state);
static inline bool nx_task_state_final(nx_task_state_t s) {
    return s != NX_TASK_QUEUED && s != NX_TASK_RUNNING;
}

typedef struct {
    int64_t id;
    char *dept;            /* owned */
    void *input;           /* owned, input_len bytes (NUL-terminated too) */
    size_t input_len;
    int64_t priority;      /* higher runs first */
    nx_task_state_t state;
    uint32_t attempts;     /* dispatches so far */
    uint32_t max_attempts;
    char *idem_key;        /* owned, may be NULL */
    char *employee;        /* last employee, owned, may be NULL */
    int64_t exit_code;     /* of the accepted attempt; -1 if none */
    void *output;          /* owned, output_len bytes, may be NULL */
    size_t output_len;
    char *error;           /* owned, may be NULL */
    int64_t created_ms, started_ms, finished_ms; /* 0 = not yet */
    int64_t run_after_ms;  /* queued, but not before this time (retry back-off) */
    int64_t soft_timeout_ms, hard_timeout_ms; /* per-task limits; 0 = the department's */
    int64_t parent;        /* the workflow task this one belongs to; 0 = none */
    char *workflow;        /* a workflow task: the workflow's name (dept is "-"); owned */
    uint32_t stage;        /* a workflow task: index of its current stage */
    uint32_t rejects;      /* a workflow task: QA rejections so far */
    uint64_t tokens_in, tokens_out, cost_microusd; /* usage the agent reported */
    char *verdict;         /* "accept"/"reject" from a review; owned */
    char *workspace;       /* the git worktree its stages work in; owned */
    char *branch;          /* that worktree's branch; owned */
    char *base;            /* the commit the branch started from; owned */
    char *commits;         /* commits made, one "HASH subject" per line; owned */
} nx_task_t;

void nx_task_clear(nx_task_t *task); /* frees the owned fields */

typedef struct nx_store nx_store_t;

/* Opens (creating if needed) the ledger at path in WAL mode. `sync_full`
 * makes every commit durable against power loss, not just process death.
 * Returns 0 or NX_ESTORE with the cause in err. */
int nx_store_open(const char *path, bool sync_full, nx_store_t **ret_store, char *err, size_t errlen);
void nx_store_destroy(nx_store_t **self_p);
const char *nx_store_errmsg(nx_store_t *self);

int nx_store_begin(nx_store_t *self);
int nx_store_commit(nx_store_t *self);
int nx_store_rollback(nx_store_t *self);

/* Inserts a task from *task (id is ignored; state is queued, or running for
 * a workflow task, which no employee runs) and sets
 * *ret_id. With an idem_key that exists already, nothing is inserted, the
 * existing id is returned through *ret_id and the call returns 1. */
int nx_store_task_insert(nx_store_t *self, const nx_task_t *task, int64_t *ret_id);
/* Reads one task; NX_ENOTFOUND when there is no such id. */
int nx_store_task_get(nx_store_t *self, int64_t id, nx_task_t *ret_task);
/* Reads only the scheduling fields (no input/output). */
int nx_store_task_brief(nx_store_t *self, int64_t id, nx_task_t *ret_task);
/* queued -> running as attempt `attempt` on `employee`. */
int nx_store_task_start(nx_store_t *self, int64_t id, uint32_t attempt, const char *employee,
                        int64_t now_ms);
/* Records the end of an attempt and moves the task to `state` (a final
 * state, or queued for a retry). */
int nx_store_task_finish(nx_store_t *self, int64_t id, uint32_t attempt, nx_task_state_t state,
                         int64_t exit_code, const void *output, size_t output_len,
                         const char *error, int64_t now_ms);

typedef int (*nx_store_task_fn)(const nx_task_t *task, void *arg);
/* Calls fn for each task matching the filters (state < 0 and dept NULL
 * mean any) with an id above `after`, in id order, at most `limit` (0 = all). fn returning
 * non-zero stops the walk and that value is returned. `with_payload`
 * loads input and output. */
int nx_store_task_foreach(nx_store_t *self, int state, const char *dept, int64_t after,
                          uint64_t limit,
                          bool with_payload, nx_store_task_fn fn, void *arg);
/* Calls fn for each task whose parent is `parent`, in id order. */
int nx_store_task_children(nx_store_t *self, int64_t parent, bool with_payload,
                           nx_store_task_fn fn, void *arg);
/* A workflow task's position: its current stage and rejections so far. */
int nx_store_task_flow(nx_store_t *self, int64_t id, uint32_t stage, uint32_t rejects);
/* What the accepted attempt reported: tokens, cost, a review verdict. */
int nx_store_task_usage(nx_store_t *self, int64_t id, uint64_t tokens_in, uint64_t tokens_out,
                        uint64_t cost_microusd, const char *verdict);
/* Where a workflow task's stages work: its worktree, branch and base
 * commit (workspace NULL once the worktree is removed). */
int nx_store_task_workspace(nx_store_t *self, int64_t id, const char *workspace,
                            const char *branch, const char *base);
/* Calls fn for each finished top-level task that still has a worktree and
 * finished before before_ms (at most 100 per call). */
int nx_store_worktrees_done(nx_store_t *self, int64_t before_ms, nx_store_task_fn fn, void *arg);
/* The commits a task's stages made in its worktree. */
int nx_store_task_commits(nx_store_t *self, int64_t id, const char *commits);
/* running -> queued after attempt `attempt` ended with `outcome` ("lost",
 * "failed", ...; 0 = no attempt to close), eligible again at run_after_ms. */
int nx_store_task_requeue(nx_store_t *self, int64_t id, uint32_t attempt, const char *outcome,
                          int64_t exit_code, const char *error, int64_t run_after_ms,
                          int64_t now_ms);
/* -> cancelled (final); closes the running attempt when there is one. */
int nx_store_task_cancel(nx_store_t *self, int64_t id, uint32_t running_attempt,
                         const char *why, int64_t now_ms);
/* A final task becomes queued again with `extra_attempts` more to spend. */
int nx_store_task_retry(nx_store_t *self, int64_t id, uint32_t extra_attempts);
/* One line per attempt ("attempt 2 on qa-1: lost after 3001 ms: why"),
 * malloc'd into *ret_text (the caller frees). */
int nx_store_task_history(nx_store_t *self, int64_t id, char **ret_text);
/* Appends an event to the ledger's event log. */
int nx_store_event_append(nx_store_t *self, uint64_t seq, int64_t ts_ms, const char *topic,
                          int64_t task, const char *employee, const char *detail);
/* The highest event sequence stored (0 when none). */
uint64_t nx_store_event_last_seq(nx_store_t *self);
typedef int (*nx_store_event_fn)(uint64_t seq, int64_t ts_ms, const char *topic, int64_t task,
                                 const char *employee, const char *detail, void *arg);
/* The last `limit` events (oldest first) whose topic starts with prefix;
 * with task != 0, only those of that task and of the tasks under it. */
int nx_store_event_foreach(nx_store_t *self, const char *prefix, int64_t task, uint64_t limit,
                           nx_store_event_fn fn, void *arg);

/* ---- the wire ----
 * A frame sequence on a ROUTER is [identity][msgpack]; on a DEALER it is
 * [msgpack]. Helpers encode/decode and log nothing. */

/* Sends msg (which stays the caller's). identity may be NULL on a DEALER.
 * Returns 0, or -errno from zmq (EHOSTUNREACH on a gone peer with
 * ZMQ_ROUTER_MANDATORY, EAGAIN when it would block with dontwait). */
int nx_wire_send(zsock_t *sock, zframe_t *identity, const nx_msg_t *msg, bool dontwait);
/* Receives one message. On a ROUTER *ret_identity receives the identity
 * frame (caller's). A frame that does not decode yields the decode error
 * with the reason in err and *ret_msg NULL; *ret_id gets the envelope id
 * when known (0 otherwise). Returns -EAGAIN when nothing is waiting. */
int nx_wire_recv(zsock_t *sock, bool router, zframe_t **ret_identity, nx_msg_t **ret_msg,
                 uint64_t *ret_id, char *err, size_t errlen);

/* A process-wide id for outgoing messages. */
uint64_t nx_wire_next_id(void);

#endif
