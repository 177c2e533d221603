/*  store.c - the task ledger on SQLite.
 *
 *  Invariants:
 *  - WAL journal; synchronous=FULL by default, so a committed row survives
 *    power loss, and NORMAL on request, which still survives the death of
 *    any process.
 *  - The CEO is the only writer. Each of its loop iterations is one
 *    transaction (group commit): many submits and results share one fsync.
 *  - `attempts` has one row per dispatch; `tasks.attempts` counts them. A
 *    task's accepted result is the one in `tasks`; the attempt rows keep
 *    every attempt's outcome and error. */
#define _GNU_SOURCE
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nx_runtime.h"

static const char *const s_schema =
    "CREATE TABLE IF NOT EXISTS tasks("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " dept TEXT NOT NULL,"
    " input BLOB NOT NULL,"
    " priority INTEGER NOT NULL DEFAULT 0,"
    " state INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " max_attempts INTEGER NOT NULL DEFAULT 3,"
    " idem_key TEXT UNIQUE,"
    " employee TEXT,"
    " exit_code INTEGER NOT NULL DEFAULT -1,"
    " output BLOB,"
    " error TEXT,"
    " created_ms INTEGER NOT NULL,"
    " started_ms INTEGER NOT NULL DEFAULT 0,"
    " finished_ms INTEGER NOT NULL DEFAULT 0,"
    " run_after_ms INTEGER NOT NULL DEFAULT 0,"
    " soft_ms INTEGER NOT NULL DEFAULT 0,"
    " hard_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks(state, id);"
    "CREATE TABLE IF NOT EXISTS attempts("
    " task INTEGER NOT NULL,"
    " n INTEGER NOT NULL,"
    " employee TEXT NOT NULL,"
    " started_ms INTEGER NOT NULL,"
    " finished_ms INTEGER NOT NULL DEFAULT 0,"
    " outcome TEXT,"
    " exit_code INTEGER,"
    " error TEXT,"
    " PRIMARY KEY(task, n));"
    "CREATE TABLE IF NOT EXISTS events("
    " seq INTEGER PRIMARY KEY,"
    " ts_ms INTEGER NOT NULL,"
    " topic TEXT NOT NULL,"
    " task INTEGER,"
    " employee TEXT,"
    " detail TEXT);"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
    "INSERT OR IGNORE INTO meta VALUES('schema', '2');";

/* Schema 2: workflows, usage and workspaces. A schema-1 ledger gains the
 * columns when it is opened; its tasks keep their values. */
static const char s_schema_2[] =
    "BEGIN IMMEDIATE;"
    "ALTER TABLE tasks ADD COLUMN parent INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN workflow TEXT;"
    "ALTER TABLE tasks ADD COLUMN stage INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN rejects INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN tokens_in INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN tokens_out INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN cost_microusd INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN verdict TEXT;"
    "ALTER TABLE tasks ADD COLUMN workspace TEXT;"
    "ALTER TABLE tasks ADD COLUMN branch TEXT;"
    "ALTER TABLE tasks ADD COLUMN base TEXT;"
    "ALTER TABLE tasks ADD COLUMN commits TEXT;"
    "CREATE INDEX IF NOT EXISTS tasks_by_parent ON tasks(parent) WHERE parent != 0;"
    "CREATE INDEX IF NOT EXISTS events_by_task ON events(task) WHERE task IS NOT NULL;"
    "UPDATE meta SET value = '2' WHERE key = 'schema';"
    "COMMIT;";

#define TASK_COLS                                                                          \
    "id, dept, priority, state, attempts, max_attempts, idem_key, employee, exit_code, error," \
    " created_ms, started_ms, finished_ms, run_after_ms, soft_ms, hard_ms, parent, workflow," \
    " stage, rejects, tokens_in, tokens_out, cost_microusd, verdict, workspace, branch, base," \
    " commits"

enum {
    ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_INSERT, ST_FIND_IDEM, ST_GET, ST_BRIEF, ST_START,
    ST_ATTEMPT_START, ST_FINISH, ST_ATTEMPT_FINISH, ST_EVENT, ST_REQUEUE, ST_RETRY, ST_FLOW,
    ST_USAGE, ST_COMMITS, ST__COUNT
};

static const char *const s_sql[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_INSERT] = "INSERT INTO tasks(dept, input, priority, state, max_attempts, idem_key,"
                  " created_ms, soft_ms, hard_ms, parent, workflow, stage, workspace, branch,"
                  " base) VALUES(?1, ?2, ?3, ?9, ?4, ?5, ?6, ?7, ?8, ?10, ?11, ?12, ?13, ?14,"
                  " ?15)",
    [ST_FIND_IDEM] = "SELECT id FROM tasks WHERE idem_key = ?1",
    [ST_GET] = "SELECT " TASK_COLS ", input, output FROM tasks WHERE id = ?1",
    [ST_BRIEF] = "SELECT " TASK_COLS " FROM tasks WHERE id = ?1",
    [ST_START] = "UPDATE tasks SET state = 1, attempts = ?2, employee = ?3, started_ms = ?4"
                 " WHERE id = ?1",
    [ST_ATTEMPT_START] = "INSERT OR REPLACE INTO attempts(task, n, employee, started_ms)"
                         " VALUES(?1, ?2, ?3, ?4)",
    [ST_FINISH] = "UPDATE tasks SET state = ?2, exit_code = ?3, output = ?4, error = ?5,"
                  " finished_ms = CASE WHEN ?2 >= 2 THEN ?6 ELSE 0 END WHERE id = ?1",
    [ST_ATTEMPT_FINISH] = "UPDATE attempts SET finished_ms = ?3, outcome = ?4, exit_code = ?5,"
                          " error = ?6 WHERE task = ?1 AND n = ?2",
    [ST_EVENT] = "INSERT INTO events(seq, ts_ms, topic, task, employee, detail)"
                 " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_REQUEUE] = "UPDATE tasks SET state = 0, error = ?2, run_after_ms = ?3 WHERE id = ?1",
    [ST_RETRY] = "UPDATE tasks SET state = 0, max_attempts = attempts + ?2, error = NULL,"
                 " finished_ms = 0, run_after_ms = 0, exit_code = -1 WHERE id = ?1",
    [ST_FLOW] = "UPDATE tasks SET stage = ?2, rejects = ?3 WHERE id = ?1",
    [ST_USAGE] = "UPDATE tasks SET tokens_in = ?2, tokens_out = ?3, cost_microusd = ?4,"
                 " verdict = ?5 WHERE id = ?1",
    [ST_COMMITS] = "UPDATE tasks SET commits = ?2 WHERE id = ?1",
};

struct nx_store {
    sqlite3 *db;                   /* the connection; only the CEO writes */
    sqlite3_stmt *st[ST__COUNT];   /* prepared once, reset after each use */
};

static const char *const s_state_names[NX_TASK__COUNT] = {
    "queued", "running", "succeeded", "failed", "cancelled", "dead"};

const char *nx_task_state_name(nx_task_state_t state) {
    return (unsigned)state < NX_TASK__COUNT ? s_state_names[state] : "?";
}

int nx_task_state_from_name(const char *name, nx_task_state_t *ret_state) {
    for (int i = 0; i < NX_TASK__COUNT; i++)
        if (!strcmp(name, s_state_names[i])) {
            *ret_state = (nx_task_state_t)i;
            return 0;
        }
    return NX_EUSAGE;
}

void nx_task_clear(nx_task_t *t) {
    free(t->workflow);
    free(t->verdict);
    free(t->workspace);
    free(t->branch);
    free(t->base);
    free(t->commits);
    free(t->dept);
    free(t->input);
    free(t->idem_key);
    free(t->employee);
    free(t->output);
    free(t->error);
    memset(t, 0, sizeof *t);
}

int nx_store_open(const char *path, bool sync_full, nx_store_t **ret_store, char *err,
                  size_t errlen) {
    nx_store_t *self = calloc(1, sizeof *self);
    if (!self)
        return -ENOMEM;
    char *msg = NULL;
    if (sqlite3_open_v2(path, &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(self->db, 5000);
    char pragmas[256];
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA foreign_keys=ON;"
             " PRAGMA wal_autocheckpoint=4000;",
             sync_full ? "FULL" : "NORMAL");
    if (sqlite3_exec(self->db, pragmas, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(self->db, s_schema, NULL, NULL, &msg) != SQLITE_OK)
        goto fail;
    sqlite3_stmt *probe = NULL;
    bool v1 = sqlite3_prepare_v2(self->db, "SELECT parent FROM tasks LIMIT 0", -1, &probe,
                                 NULL) != SQLITE_OK;
    sqlite3_finalize(probe);
    if (v1 && sqlite3_exec(self->db, s_schema_2, NULL, NULL, &msg) != SQLITE_OK)
        goto fail;
    for (int i = 0; i < ST__COUNT; i++)
        if (sqlite3_prepare_v3(self->db, s_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &self->st[i],
                               NULL) != SQLITE_OK)
            goto fail;
    *ret_store = self;
    return 0;
fail:
    snprintf(err, errlen, "ledger %s: %s", path, msg ? msg : sqlite3_errmsg(self->db));
    sqlite3_free(msg);
    nx_store_destroy(&self);
    return NX_ESTORE;
}

void nx_store_destroy(nx_store_t **self_p) {
    if (!self_p || !*self_p)
        return;
    nx_store_t *self = *self_p;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(self->st[i]);
    sqlite3_close(self->db);
    free(self);
    *self_p = NULL;
}

const char *nx_store_errmsg(nx_store_t *self) { return sqlite3_errmsg(self->db); }

/* Runs a prepared statement to completion and resets it. */
static int step_done(sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : NX_ESTORE;
}

int nx_store_begin(nx_store_t *self) { return step_done(self->st[ST_BEGIN]); }
int nx_store_commit(nx_store_t *self) { return step_done(self->st[ST_COMMIT]); }
int nx_store_rollback(nx_store_t *self) { return step_done(self->st[ST_ROLLBACK]); }

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s) {
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

int nx_store_task_insert(nx_store_t *self, const nx_task_t *task, int64_t *ret_id) {
    if (task->idem_key) {
        sqlite3_stmt *f = self->st[ST_FIND_IDEM];
        sqlite3_bind_text(f, 1, task->idem_key, -1, SQLITE_STATIC);
        int rc = sqlite3_step(f);
        int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(f, 0) : 0;
        sqlite3_reset(f);
        sqlite3_clear_bindings(f);
        if (rc == SQLITE_ROW) {
            *ret_id = id;
            return 1;
        }
        if (rc != SQLITE_DONE)
            return NX_ESTORE;
    }
    sqlite3_stmt *st = self->st[ST_INSERT];
    sqlite3_bind_text(st, 1, task->dept, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, task->input ? task->input : "", (int)task->input_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, task->priority);
    sqlite3_bind_int64(st, 4, task->max_attempts ? task->max_attempts : 3);
    bind_text_or_null(st, 5, task->idem_key);
    sqlite3_bind_int64(st, 6, task->created_ms);
    sqlite3_bind_int64(st, 7, task->soft_timeout_ms);
    sqlite3_bind_int64(st, 8, task->hard_timeout_ms);
    sqlite3_bind_int(st, 9, (int)task->state);
    sqlite3_bind_int64(st, 10, task->parent);
    bind_text_or_null(st, 11, task->workflow);
    sqlite3_bind_int64(st, 12, task->stage);
    bind_text_or_null(st, 13, task->workspace);
    bind_text_or_null(st, 14, task->branch);
    bind_text_or_null(st, 15, task->base);
    if (step_done(st) < 0)
        return NX_ESTORE;
    *ret_id = sqlite3_last_insert_rowid(self->db);
    return 0;
}

static char *col_strdup(sqlite3_stmt *st, int i) {
    const unsigned char *s = sqlite3_column_text(st, i);
    return s ? strdup((const char *)s) : NULL;
}

static void *col_blobdup(sqlite3_stmt *st, int i, size_t *ret_len) {
    const void *b = sqlite3_column_blob(st, i);
    int n = sqlite3_column_bytes(st, i);
    *ret_len = 0;
    if (!b && sqlite3_column_type(st, i) == SQLITE_NULL)
        return NULL;
    char *copy = malloc((size_t)n + 1);
    if (!copy)
        return NULL;
    if (n)
        memcpy(copy, b, (size_t)n);
    copy[n] = '\0';
    *ret_len = (size_t)n;
    return copy;
}

/* Fills t from a row whose first 28 columns are TASK_COLS, and columns
 * 28/29 are input/output when with_payload is set. */
static void row_to_task(sqlite3_stmt *st, nx_task_t *t, bool with_payload) {
    memset(t, 0, sizeof *t);
    t->id = sqlite3_column_int64(st, 0);
    t->dept = col_strdup(st, 1);
    t->priority = sqlite3_column_int64(st, 2);
    t->state = (nx_task_state_t)sqlite3_column_int(st, 3);
    t->attempts = (uint32_t)sqlite3_column_int(st, 4);
    t->max_attempts = (uint32_t)sqlite3_column_int(st, 5);
    t->idem_key = col_strdup(st, 6);
    t->employee = col_strdup(st, 7);
    t->exit_code = sqlite3_column_int64(st, 8);
    t->error = col_strdup(st, 9);
    t->created_ms = sqlite3_column_int64(st, 10);
    t->started_ms = sqlite3_column_int64(st, 11);
    t->finished_ms = sqlite3_column_int64(st, 12);
    t->run_after_ms = sqlite3_column_int64(st, 13);
    t->soft_timeout_ms = sqlite3_column_int64(st, 14);
    t->hard_timeout_ms = sqlite3_column_int64(st, 15);
    t->parent = sqlite3_column_int64(st, 16);
    t->workflow = col_strdup(st, 17);
    t->stage = (uint32_t)sqlite3_column_int(st, 18);
    t->rejects = (uint32_t)sqlite3_column_int(st, 19);
    t->tokens_in = (uint64_t)sqlite3_column_int64(st, 20);
    t->tokens_out = (uint64_t)sqlite3_column_int64(st, 21);
    t->cost_microusd = (uint64_t)sqlite3_column_int64(st, 22);
    t->verdict = col_strdup(st, 23);
    t->workspace = col_strdup(st, 24);
    t->branch = col_strdup(st, 25);
    t->base = col_strdup(st, 26);
    t->commits = col_strdup(st, 27);
    if (with_payload) {
        t->input = col_blobdup(st, 28, &t->input_len);
        t->output = col_blobdup(st, 29, &t->output_len);
    }
}

static int get_one(nx_store_t *self, int which, int64_t id, nx_task_t *ret_task) {
    sqlite3_stmt *st = self->st[which];
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        row_to_task(st, ret_task, which == ST_GET);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? NX_ENOTFOUND : NX_ESTORE;
}

int nx_store_task_get(nx_store_t *self, int64_t id, nx_task_t *ret_task) {
    return get_one(self, ST_GET, id, ret_task);
}

int nx_store_task_brief(nx_store_t *self, int64_t id, nx_task_t *ret_task) {
    return get_one(self, ST_BRIEF, id, ret_task);
}

int nx_store_task_start(nx_store_t *self, int64_t id, uint32_t attempt, const char *employee,
                        int64_t now_ms) {
    sqlite3_stmt *st = self->st[ST_START];
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, attempt);
    sqlite3_bind_text(st, 3, employee, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now_ms);
    if (step_done(st) < 0)
        return NX_ESTORE;
    st = self->st[ST_ATTEMPT_START];
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, attempt);
    sqlite3_bind_text(st, 3, employee, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now_ms);
    return step_done(st);
}

int nx_store_task_finish(nx_store_t *self, int64_t id, uint32_t attempt, nx_task_state_t state,
                         int64_t exit_code, const void *output, size_t output_len,
                         const char *error, int64_t now_ms) {
    sqlite3_stmt *st = self->st[ST_FINISH];
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int(st, 2, (int)state);
    sqlite3_bind_int64(st, 3, exit_code);
    if (output)
        sqlite3_bind_blob(st, 4, output, (int)output_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    bind_text_or_null(st, 5, error);
    sqlite3_bind_int64(st, 6, now_ms);
    if (step_done(st) < 0)
        return NX_ESTORE;
    if (attempt == 0)
        return 0;
    st = self->st[ST_ATTEMPT_FINISH];
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, attempt);
    sqlite3_bind_int64(st, 3, now_ms);
    sqlite3_bind_text(st, 4, state == NX_TASK_QUEUED ? "retry" : nx_task_state_name(state), -1,
                      SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, exit_code);
    bind_text_or_null(st, 6, error);
    return step_done(st);
}

/* Steps a bound statement over task rows, calling fn for each, then
 * finalizes it. Returns fn's first non-zero value, or NX_ESTORE. */
static int walk_tasks(sqlite3_stmt *st, bool with_payload, nx_store_task_fn fn, void *arg) {
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        nx_task_t t;
        row_to_task(st, &t, with_payload);
        ret = fn(&t, arg);
        nx_task_clear(&t);
        if (ret)
            break;
    }
    if (!ret && rc != SQLITE_DONE)
        ret = NX_ESTORE;
    sqlite3_finalize(st);
    return ret;
}

int nx_store_task_foreach(nx_store_t *self, int state, const char *dept, int64_t after,
                          uint64_t limit,
                          bool with_payload, nx_store_task_fn fn, void *arg) {
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT " TASK_COLS "%s FROM tasks"
             " WHERE (?1 < 0 OR state = ?1) AND (?2 IS NULL OR dept = ?2) AND id > ?4"
             " ORDER BY id%s",
             with_payload ? ", input, output" : "", limit ? " LIMIT ?3" : "");
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(self->db, sql, -1, &st, NULL) != SQLITE_OK)
        return NX_ESTORE;
    sqlite3_bind_int(st, 1, state);
    bind_text_or_null(st, 2, dept);
    sqlite3_bind_int64(st, 4, after);
    if (limit)
        sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    return walk_tasks(st, with_payload, fn, arg);
}

int nx_store_task_children(nx_store_t *self, int64_t parent, bool with_payload,
                           nx_store_task_fn fn, void *arg) {
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT " TASK_COLS "%s FROM tasks WHERE parent = ?1 ORDER BY id",
             with_payload ? ", input, output" : "");
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(self->db, sql, -1, &st, NULL) != SQLITE_OK)
        return NX_ESTORE;
    sqlite3_bind_int64(st, 1, parent);
    return walk_tasks(st, with_payload, fn, arg);
}

int nx_store_task_flow(nx_store_t *self, int64_t id, uint32_t stage, uint32_t rejects) {
    sqlite3_stmt *st = self->st[ST_FLOW];
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, stage);
    sqlite3_bind_int64(st, 3, rejects);
    return step_done(st);
}

int nx_store_task_usage(nx_store_t *self, int64_t id, uint64_t tokens_in, uint64_t tokens_out,
                        uint64_t cost_microusd, const char *verdict) {
    sqlite3_stmt *st = self->st[ST_USAGE];
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)tokens_in);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)tokens_out);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)cost_microusd);
    bind_text_or_null(st, 5, verdict);
    return step_done(st);
}

int nx_store_task_workspace(nx_store_t *self, int64_t id, const char *workspace,
                            const char *branch, const char *base) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(self->db,
                           "UPDATE tasks SET workspace = ?2, branch = ?3, base = ?4 WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return NX_ESTORE;
    sqlite3_bind_int64(st, 1, id);
    bind_text_or_null(st, 2, workspace);
    bind_text_or_null(st, 3, branch);
    bind_text_or_null(st, 4, base);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : NX_ESTORE;
    sqlite3_finalize(st);
    return rc;
}

int nx_store_worktrees_done(nx_store_t *self, int64_t before_ms, nx_store_task_fn fn, void *arg) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(self->db,
                           "SELECT " TASK_COLS " FROM tasks WHERE parent = 0 AND workspace IS NOT"
                           " NULL AND state >= 2 AND finished_ms > 0 AND finished_ms < ?1"
                           " ORDER BY id LIMIT 100",
                           -1, &st, NULL) != SQLITE_OK)
        return NX_ESTORE;
    sqlite3_bind_int64(st, 1, before_ms);
    return walk_tasks(st, false, fn, arg);
}

int nx_store_task_commits(nx_store_t *self, int64_t id, const char *commits) {
    sqlite3_stmt *st = self->st[ST_COMMITS];
    sqlite3_bind_int64(st, 1, id);
    bind_text_or_null(st, 2, commits);
    return step_done(st);
}

/* Ends attempt `attempt` with an outcome word, without touching the task. */
static int attempt_end(nx_store_t *self, int64_t id, uint32_t attempt, const char *outcome,
                       int64_t exit_code, const char *error, int64_t now_ms) {
    sqlite3_stmt *st = self->st[ST_ATTEMPT_FINISH];
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, attempt);
    sqlite3_bind_int64(st, 3, now_ms);
    sqlite3_bind_text(st, 4, outcome, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, exit_code);
    bind_text_or_null(st, 6, error);
    return step_done(st);
}

int nx_store_task_requeue(nx_store_t *self, int64_t id, uint32_t attempt, const char *outcome,
                          int64_t exit_code, const char *error, int64_t run_after_ms,
                          int64_t now_ms) {
    sqlite3_stmt *st = self->st[ST_REQUEUE];
    sqlite3_bind_int64(st, 1, id);
    bind_text_or_null(st, 2, error);
    sqlite3_bind_int64(st, 3, run_after_ms);
    if (step_done(st) < 0)
        return NX_ESTORE;
    return attempt ? attempt_end(self, id, attempt, outcome, exit_code, error, now_ms) : 0;
}

int nx_store_task_cancel(nx_store_t *self, int64_t id, uint32_t running_attempt,
                         const char *why, int64_t now_ms) {
    int rc = nx_store_task_finish(self, id, 0, NX_TASK_CANCELLED, -1, NULL, 0, why, now_ms);
    if (rc == 0 && running_attempt)
        rc = attempt_end(self, id, running_attempt, "cancelled", -1, why, now_ms);
    return rc;
}

int nx_store_task_retry(nx_store_t *self, int64_t id, uint32_t extra_attempts) {
    sqlite3_stmt *st = self->st[ST_RETRY];
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, extra_attempts);
    return step_done(st);
}

int nx_store_task_history(nx_store_t *self, int64_t id, char **ret_text) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(self->db,
                           "SELECT n, employee, started_ms, finished_ms, outcome, exit_code, error"
                           " FROM attempts WHERE task = ?1 ORDER BY n",
                           -1, &st, NULL) != SQLITE_OK)
        return NX_ESTORE;
    sqlite3_bind_int64(st, 1, id);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        sqlite3_finalize(st);
        return -ENOMEM;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t started = sqlite3_column_int64(st, 2), finished = sqlite3_column_int64(st, 3);
        const char *outcome = (const char *)sqlite3_column_text(st, 4);
        const char *error = (const char *)sqlite3_column_text(st, 6);
        fprintf(f, "attempt %d on %s: %s", sqlite3_column_int(st, 0),
                (const char *)sqlite3_column_text(st, 1), outcome ? outcome : "running");
        if (finished >= started && finished)
            fprintf(f, " after %lld ms", (long long)(finished - started));
        if (error)
            fprintf(f, ": %s", error);
        fputc('\n', f);
    }
    sqlite3_finalize(st);
    fclose(f);
    *ret_text = buf;
    return 0;
}

int nx_store_event_append(nx_store_t *self, uint64_t seq, int64_t ts_ms, const char *topic,
                          int64_t task, const char *employee, const char *detail) {
    sqlite3_stmt *st = self->st[ST_EVENT];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    sqlite3_bind_int64(st, 2, ts_ms);
    sqlite3_bind_text(st, 3, topic, -1, SQLITE_STATIC);
    if (task)
        sqlite3_bind_int64(st, 4, task);
    else
        sqlite3_bind_null(st, 4);
    bind_text_or_null(st, 5, employee);
    bind_text_or_null(st, 6, detail);
    return step_done(st);
}

uint64_t nx_store_event_last_seq(nx_store_t *self) {
    sqlite3_stmt *st;
    uint64_t seq = 0;
    if (sqlite3_prepare_v2(self->db, "SELECT max(seq) FROM events", -1, &st, NULL) != SQLITE_OK)
        return 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        seq = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return seq;
}

int nx_store_event_foreach(nx_store_t *self, const char *prefix, int64_t task, uint64_t limit,
                           nx_store_event_fn fn, void *arg) {
    sqlite3_stmt *st;
    /* With a task: its events and those of every task under it (stages,
     * subtasks), which together tell its story. */
    const char *sql = "WITH RECURSIVE tree(id) AS (SELECT ?3 UNION ALL"
                      "  SELECT t.id FROM tasks t JOIN tree ON t.parent = tree.id WHERE ?3 != 0)"
                      " SELECT * FROM (SELECT seq, ts_ms, topic, task, employee, detail"
                      " FROM events WHERE substr(topic, 1, length(?1)) = ?1"
                      " AND (?3 = 0 OR task IN tree)"
                      " ORDER BY seq DESC LIMIT ?2) ORDER BY seq";
    if (sqlite3_prepare_v2(self->db, sql, -1, &st, NULL) != SQLITE_OK)
        return NX_ESTORE;
    sqlite3_bind_text(st, 1, prefix ? prefix : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, limit ? (sqlite3_int64)limit : -1);
    sqlite3_bind_int64(st, 3, task);
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ret = fn((uint64_t)sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                 (const char *)sqlite3_column_text(st, 2), sqlite3_column_int64(st, 3),
                 (const char *)sqlite3_column_text(st, 4),
                 (const char *)sqlite3_column_text(st, 5), arg);
        if (ret)
            break;
    }
    if (!ret && rc != SQLITE_DONE)
        ret = NX_ESTORE;
    sqlite3_finalize(st);
    return ret;
}
