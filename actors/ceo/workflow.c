/*  workflow.c - workflows: a named sequence of departments, run as tasks.
 *
 *  A workflow task (W) is a ledger row that no employee runs: it is
 *  `running` while its stages run, and its children are
 *
 *    stage tasks   ordinary tasks with parent = W, one per stage run; the
 *                  result of stage k is the input of stage k+1
 *    subflows      workflow tasks with parent = W, one per subtask of a
 *                  plan; each runs the stages after the one that planned
 *
 *      W ──stage 0 (product)──> plan with subtasks? ──no──> stage 1 ...
 *                                      └─yes─> subflow per subtask, each from stage 1;
 *                                              W ends when all of them have
 *      a stage with verdict `reject` ──> the stage before it again, with the
 *      findings appended, at most max_rejects times; then W fails with the
 *      history of rejections.
 *
 *  Every step runs inside the CEO's open transaction, in the same commit
 *  as the result that caused it, so a CEO crash never leaves a workflow
 *  between two stages. With `repo:` in the company file a top-level W gets
 *  a git worktree on branch nexus/<id>; every stage under it works there,
 *  and W records the commits. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ceo_int.h"

#define TREE_MAX 10000

/* ---- git ---- */

/* Runs `git -C dir ARGS` and keeps the first outlen-1 bytes of its
 * stdout (trailing newlines cut). Returns its exit status, or -errno. */
static int run_git(const char *dir, const char *const *args, char *out, size_t outlen) {
    extern char **environ;
    const char *argv[24] = {"git", "-C", dir};
    size_t n = 3;
    for (size_t i = 0; args[i] && n < 23; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&at, &none); /* the CEO blocks its stop signals */
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
    pid_t pid;
    int rc = posix_spawnp(&pid, "git", &fa, &at, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        return -rc;
    }
    size_t len = 0;
    char sink[4096];
    for (;;) {
        char *dst = len + 1 < outlen ? out + len : sink;
        size_t room = len + 1 < outlen ? outlen - 1 - len : sizeof sink;
        ssize_t r = read(p[0], dst, room);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (dst != sink)
            len += (size_t)r;
    }
    close(p[0]);
    if (outlen) {
        while (len && out[len - 1] == '\n')
            len--;
        out[len] = '\0';
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -EIO;
}

/* A worktree for top-level task id on branch nexus/<id>, from HEAD. */
static int worktree_add(ceo_t *self, int64_t id, char *path, size_t pathlen, char *branch,
                        size_t branchlen, char *base, size_t baselen, char *err, size_t errlen) {
    const char *repo = self->company->repo;
    snprintf(path, pathlen, "%s/worktrees/%lld", self->home.dir, (long long)id);
    snprintf(branch, branchlen, "nexus/%lld", (long long)id);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/worktrees", self->home.dir);
    mkdir(dir, 0755);
    const char *head[] = {"rev-parse", "HEAD", NULL};
    if (run_git(repo, head, base, baselen) != 0 || !*base) {
        snprintf(err, errlen, "repo %s: git rev-parse HEAD failed (a repository with no commit?)",
                 repo);
        return -EINVAL;
    }
    const char *add[] = {"worktree", "add", "-q", "-b", branch, path, base, NULL};
    char out[256];
    if (run_git(repo, add, out, sizeof out) != 0) {
        snprintf(err, errlen, "repo %s: git worktree add %s failed (does branch %s exist?)", repo,
                 path, branch);
        return -EINVAL;
    }
    return 0;
}

/* W's commits, one "HASH subject" per line, into the ledger: once, when
 * the top-level task ends (git runs inside the CEO's loop). */
static void record_commits(ceo_t *self, const nx_task_t *w) {
    if (!w->workspace || !w->base)
        return;
    char range[200], out[8192];
    snprintf(range, sizeof range, "%s..HEAD", w->base);
    const char *log[] = {"log", "--reverse", "--format=%h %s", range, NULL};
    if (run_git(w->workspace, log, out, sizeof out) == 0)
        nx_store_task_commits(self->store, w->id, out);
}

/* ---- the workflow steps ---- */

static const nx_workflow_conf_t *conf_of(ceo_t *self, const nx_task_t *w) {
    return nx_company_workflow(self->company, w->workflow);
}

/* Queues the task that runs stage `stage` of workflow task w. */
static int start_stage(ceo_t *self, const nx_task_t *w, const nx_workflow_conf_t *wc,
                       uint32_t stage, uint32_t rejects, const void *input, size_t len) {
    size_t d = wc->stages[stage];
    const nx_dept_conf_t *dc = &self->company->depts[d];
    nx_task_t t = {0};
    t.dept = dc->name;
    t.input = (void *)input;
    t.input_len = len;
    t.priority = w->priority;
    t.max_attempts = dc->max_attempts;
    t.created_ms = nx_now_ms();
    t.parent = w->id;
    t.stage = stage;
    t.workspace = w->workspace;
    t.soft_timeout_ms = w->soft_timeout_ms;
    t.hard_timeout_ms = w->hard_timeout_ms;
    int64_t id;
    int rc = nx_store_task_insert(self->store, &t, &id);
    if (rc < 0)
        return rc;
    nx_store_task_flow(self->store, w->id, stage, rejects);
    ceo_queue(self, d, t.priority, id);
    char detail[200];
    snprintf(detail, sizeof detail, "stage %u/%zu (%s) of workflow %s, task %lld", stage + 1,
             wc->nstages, dc->name, wc->name, (long long)w->id);
    ceo_event(self, "task.submitted", id, NULL, dc->name, "queued", detail);
    return 0;
}

/* Ends workflow task w, and tells its own parent. */
static void finish(ceo_t *self, nx_task_t *w, nx_task_state_t state, const void *output,
                   size_t outlen, const char *error) {
    if (!w->parent) /* subflows share the top-level task's worktree and its record */
        record_commits(self, w);
    nx_store_task_finish(self->store, w->id, 0, state, state == NX_TASK_SUCCEEDED ? 0 : -1,
                         output, outlen, error, nx_now_ms());
    ceo_event(self, state == NX_TASK_SUCCEEDED ? "task.succeeded" : "task.failed", w->id, NULL,
              w->dept, nx_task_state_name(state), error);
    ceo_wake_waiters(self, w->id);
    if (w->parent)
        wf_child_final(self, w->id, NULL);
}

typedef struct {
    char *last_input; /* the input of the latest task of stage `stage`; owned */
    uint32_t stage;
    char *history;    /* rejections, one per line (open_memstream) */
    size_t hlen;
    FILE *hf;
    size_t subflows, done, failed;
    char *outputs;    /* subflow outputs, joined */
    size_t olen;
    FILE *of;
    char why[600];    /* the first subflow failure */
} scan_t;

static int scan_child(const nx_task_t *t, void *arg) {
    scan_t *s = arg;
    if (t->workflow) {
        s->subflows++;
        if (!nx_task_state_final(t->state))
            return 0;
        s->done++;
        if (t->state == NX_TASK_SUCCEEDED) {
            fprintf(s->of, "## subtask %lld\n", (long long)t->id);
            fwrite(t->output ? t->output : "", 1, t->output_len, s->of);
            fputc('\n', s->of);
        } else if (!s->failed++)
            snprintf(s->why, sizeof s->why, "subtask %lld %s: %s", (long long)t->id,
                     nx_task_state_name(t->state), t->error ? t->error : "?");
        return 0;
    }
    if (t->verdict && !strcmp(t->verdict, "reject") && s->hf) {
        size_t n = 0;
        const char *o = t->output ? t->output : "";
        while (n < t->output_len && n < 200 && o[n] != '\n')
            n++;
        fprintf(s->hf, "%s task %lld rejected: %.*s\n", t->dept, (long long)t->id, (int)n, o);
    }
    if (t->stage == s->stage && t->input) {
        free(s->last_input);
        s->last_input = strndup(t->input, t->input_len);
    }
    return 0;
}

/* Every subflow of w has ended: w ends too. */
static void subflows_check(ceo_t *self, nx_task_t *w) {
    scan_t s = {.stage = UINT32_MAX};
    s.of = open_memstream(&s.outputs, &s.olen);
    if (!s.of)
        return;
    nx_store_task_children(self->store, w->id, true, scan_child, &s);
    fclose(s.of);
    if (s.subflows && s.done == s.subflows) {
        if (s.failed)
            finish(self, w, NX_TASK_FAILED, NULL, 0, s.why);
        else
            finish(self, w, NX_TASK_SUCCEEDED, s.outputs, s.olen, NULL);
    }
    free(s.outputs);
    free(s.last_input);
}

/* A review rejected stage `stage`'s work: back to the stage before it. */
static void rework(ceo_t *self, nx_task_t *w, const nx_workflow_conf_t *wc, const nx_task_t *qa) {
    uint32_t back = qa->stage > 0 ? qa->stage - 1 : 0;
    scan_t s = {.stage = back};
    s.hf = open_memstream(&s.history, &s.hlen);
    s.of = fopen("/dev/null", "w");
    nx_store_task_children(self->store, w->id, true, scan_child, &s);
    if (s.hf)
        fclose(s.hf);
    if (s.of)
        fclose(s.of);
    if (w->rejects >= wc->max_rejects) {
        char *why = NULL;
        if (asprintf(&why, "rejected %u time(s), more than max_rejects (%u) allows:\n%s",
                     w->rejects + 1, wc->max_rejects, s.history ? s.history : "") < 0)
            why = NULL;
        finish(self, w, NX_TASK_FAILED, NULL, 0, why ? why : "rejected too many times");
        free(why);
    } else {
        /* The work that was rejected, and why. */
        const char *prev = s.last_input ? s.last_input : (const char *)w->input;
        char *input = NULL;
        int n = asprintf(&input, "%s\n\n--- review %u: %s rejected the work; its findings ---\n%.*s",
                         prev ? prev : "", w->rejects + 1, qa->dept, (int)qa->output_len,
                         qa->output ? (const char *)qa->output : "");
        if (n >= 0) {
            char detail[160];
            snprintf(detail, sizeof detail, "rejection %u of at most %u: back to %s",
                     w->rejects + 1, wc->max_rejects, self->company->depts[wc->stages[back]].name);
            ceo_event(self, "workflow.rejected", w->id, NULL, w->dept, "running", detail);
            start_stage(self, w, wc, back, w->rejects + 1, input, (size_t)n);
        }
        free(input);
    }
    free(s.history);
    free(s.last_input);
}

/* A plan listed subtasks: one subflow each, from the next stage. */
static void split(ceo_t *self, nx_task_t *w, const nx_workflow_conf_t *wc, uint32_t next,
                  json_t *subs) {
    size_t i;
    json_t *it;
    size_t n = 0;
    json_array_foreach(subs, i, it) {
        const char *text = json_string_value(it);
        if (!text)
            continue;
        nx_task_t c = {0};
        c.dept = w->dept;
        c.input = (void *)text;
        c.input_len = strlen(text);
        c.priority = w->priority;
        c.max_attempts = 1;
        c.created_ms = nx_now_ms();
        c.state = NX_TASK_RUNNING;
        c.parent = w->id;
        c.workflow = w->workflow;
        c.stage = next;
        c.workspace = w->workspace;
        c.soft_timeout_ms = w->soft_timeout_ms;
        c.hard_timeout_ms = w->hard_timeout_ms;
        int64_t id;
        if (nx_store_task_insert(self->store, &c, &id) < 0)
            continue;
        c.id = id;
        ceo_event(self, "task.submitted", id, NULL, w->dept, "running", "subtask of a plan");
        start_stage(self, &c, wc, next, 0, text, strlen(text));
        n++;
    }
    nx_store_task_flow(self->store, w->id, next, w->rejects);
    char detail[120];
    snprintf(detail, sizeof detail, "the plan has %zu subtask(s)", n);
    ceo_event(self, "workflow.split", w->id, NULL, w->dept, "running", detail);
    if (n == 0)
        finish(self, w, NX_TASK_FAILED, NULL, 0, "the plan's subtasks were all empty");
}

void wf_child_final(ceo_t *self, int64_t task, const nx_msg_t *result) {
    nx_task_t c, w;
    if (nx_store_task_get(self->store, task, &c) < 0)
        return;
    if (!c.parent || nx_store_task_get(self->store, c.parent, &w) < 0) {
        nx_task_clear(&c);
        return;
    }
    const nx_workflow_conf_t *wc = conf_of(self, &w);
    if (nx_task_state_final(w.state) || !w.workflow) {
        /* Cancelled or failed already: what is under it no longer matters. */
    } else if (!wc) {
        char why[200];
        snprintf(why, sizeof why, "workflow '%s' is no longer in the company file", w.workflow);
        finish(self, &w, NX_TASK_FAILED, NULL, 0, why);
    } else if (c.workflow) {
        subflows_check(self, &w);
    } else if (c.state != NX_TASK_SUCCEEDED) {
        char why[700];
        snprintf(why, sizeof why, "stage %u/%zu (%s) task %lld %s: %s", c.stage + 1, wc->nstages,
                 c.dept, (long long)c.id, nx_task_state_name(c.state), c.error ? c.error : "?");
        finish(self, &w, NX_TASK_FAILED, NULL, 0, why);
    } else if (c.verdict && !strcmp(c.verdict, "reject")) {
        rework(self, &w, wc, &c);
    } else {
        json_t *subs = NULL;
        const char *text = result ? nx_msg_str(result, "subtasks") : NULL;
        if (text)
            subs = json_loads(text, 0, NULL);
        uint32_t next = c.stage + 1;
        if (next < wc->nstages && json_is_array(subs) && json_array_size(subs) > 0)
            split(self, &w, wc, next, subs);
        else if (next < wc->nstages)
            start_stage(self, &w, wc, next, w.rejects, c.output ? c.output : "", c.output_len);
        else
            finish(self, &w, NX_TASK_SUCCEEDED, c.output ? c.output : "", c.output_len, NULL);
        json_decref(subs);
    }
    nx_task_clear(&w);
    nx_task_clear(&c);
}

int wf_submit(ceo_t *self, const nx_workflow_conf_t *wc, const nx_msg_t *m, int64_t *ret_id,
              char *err, size_t errlen) {
    char dept[NX_PROTO_MAX_NAME + 2];
    snprintf(dept, sizeof dept, "@%s", wc->name);
    nx_task_t w = {0};
    w.dept = dept;
    w.input = (void *)nx_msg_bin(m, "input", &w.input_len);
    w.priority = nx_msg_int(m, "priority", 0);
    w.max_attempts = 1;
    w.idem_key = (char *)nx_msg_str(m, "idem_key");
    if (w.idem_key && !*w.idem_key)
        w.idem_key = NULL;
    w.created_ms = nx_now_ms();
    w.state = NX_TASK_RUNNING;
    w.workflow = wc->name;
    w.soft_timeout_ms = (int64_t)nx_msg_uint(m, "soft_timeout_ms", 0);
    w.hard_timeout_ms = (int64_t)nx_msg_uint(m, "hard_timeout_ms", 0);
    int64_t id;
    int rc = nx_store_task_insert(self->store, &w, &id);
    if (rc < 0) {
        snprintf(err, errlen, "the ledger refused the task: %s", nx_store_errmsg(self->store));
        return rc;
    }
    *ret_id = id;
    if (rc == 1)
        return 1; /* the same idempotency key: that task */
    w.id = id;
    ceo_event(self, "task.submitted", id, NULL, dept, "running", NULL);
    char path[800], branch[64], base[64];
    if (self->company->repo) {
        char why[600];
        if (worktree_add(self, id, path, sizeof path, branch, sizeof branch, base, sizeof base, why,
                         sizeof why) < 0) {
            /* Accepted, then failed with the cause: the client holds an id. */
            nx_warn("task %lld: %s", (long long)id, why);
            finish(self, &w, NX_TASK_FAILED, NULL, 0, why);
            return 0;
        }
        nx_store_task_workspace(self->store, id, path, branch, base);
        w.workspace = path;
        w.branch = branch;
        w.base = base;
    }
    rc = start_stage(self, &w, wc, 0, 0, w.input, w.input_len);
    if (rc < 0) {
        snprintf(err, errlen, "the ledger refused the first stage: %s",
                 nx_store_errmsg(self->store));
        return rc;
    }
    return 0;
}

/* ---- worktrees ---- */

static int reap_one(const nx_task_t *t, void *arg) {
    ceo_t *self = arg;
    const char *rm[] = {"worktree", "remove", "--force", t->workspace, NULL};
    char out[256];
    int rc = run_git(self->company->repo, rm, out, sizeof out);
    if (rc != 0 && access(t->workspace, F_OK) == 0) {
        nx_warn("task %lld: cannot remove its worktree %s (git exited %d)", (long long)t->id,
                t->workspace, rc);
        return 0;
    }
    /* The branch stays, so `nexus diff` still works. */
    nx_store_task_workspace(self->store, t->id, NULL, t->branch, t->base);
    ceo_event(self, "workspace.removed", t->id, NULL, t->dept, nx_task_state_name(t->state),
              t->workspace);
    return 0;
}

void wf_reap_worktrees(ceo_t *self) {
    nx_store_worktrees_done(self->store, nx_now_ms() - self->company->worktree_retention_ms,
                            reap_one, self);
}

/* ---- nexus tree ---- */

typedef struct {
    ceo_t *self;
    zframe_t *from;
    uint64_t corr;
    uint64_t count;
    uint32_t depth;
} tree_ctx_t;

static int tree_one(const nx_task_t *t, void *arg) {
    tree_ctx_t *c = arg;
    if (c->count >= TREE_MAX)
        return 1;
    nx_msg_t *r = ceo_task_info(t, false);
    nx_msg_set_corr(r, c->corr);
    nx_msg_set_uint(r, "depth", c->depth);
    ceo_reply(c->self, c->from, &r);
    c->count++;
    c->depth++;
    nx_store_task_children(c->self->store, t->id, false, tree_one, c);
    c->depth--;
    return 0;
}

void wf_tree(ceo_t *self, zframe_t *from, const nx_msg_t *m) {
    int64_t id = (int64_t)nx_msg_uint(m, "task", 0);
    nx_task_t t;
    if (nx_store_task_brief(self->store, id, &t) < 0) {
        nx_msg_t *e = nx_msg_error_reply(m, "not_found", "no task %lld", (long long)id);
        ceo_reply(self, from, &e);
        return;
    }
    tree_ctx_t c = {self, from, nx_msg_id(m), 0, 0};
    tree_one(&t, &c);
    nx_task_clear(&t);
    nx_msg_t *r = nx_msg_new(NX_MSG_END);
    nx_msg_set_corr(r, c.corr);
    nx_msg_set_uint(r, "count", c.count);
    ceo_reply(self, from, &r);
}
