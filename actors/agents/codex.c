/*  codex.c - Codex CLI (npm @openai/codex), checked against
 *  `codex exec --help` of codex-cli 0.169.0.
 *
 *    codex exec --json --skip-git-repo-check [--model M] [--sandbox MODE]
 *               [args...] PROMPT        (stdin is /dev/null)
 *
 *  With a prompt argument and stdin piped, codex appends stdin to the
 *  prompt, so the employee gives it an empty stdin. --json prints JSON
 *  lines: {"type":"thread.started","thread_id":...}, "turn.started",
 *  "item.started"/"item.completed" with an item whose "type" is
 *  agent_message (its "text"), command_execution ("command"),
 *  file_change, reasoning, ...; "turn.completed" with {"usage":
 *  {"input_tokens","cached_input_tokens","output_tokens"}}; and
 *  "turn.failed" {"error":{"message"}} or "error" {"message"}. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents_int.h"

static int codex_command(const nx_agent_conf_t *conf, const char *exe, const char *role,
                         const void *input, size_t len, nx_agent_cmd_t *cmd, char *err,
                         size_t errlen) {
    argv_t av = {0};
    char *prompt;
    int rc = argv_prompt(&av, conf, "codex", input, len, &prompt, err, errlen);
    if (rc < 0)
        return rc;
    argv_push(&av, "exec");
    argv_push(&av, "--json");
    argv_push(&av, "--skip-git-repo-check");
    argv_opt(&av, "--model", conf->model);
    argv_opt(&av, "--sandbox", conf->permission_mode);
    argv_extra(&av, conf);
    argv_push(&av, prompt);
    free(prompt);
    return argv_finish(&av, cmd); /* no stdin_data: the agent's stdin is empty */
}

typedef struct {
    nx_agent_report_t *r;
    bool completed, failed;
} codex_walk_t;

static int codex_event(json_t *ev, void *arg, char *err, size_t errlen) {
    codex_walk_t *w = arg;
    const char *type = jstr(ev, "type");
    if (!type) {
        snprintf(err, errlen, "codex: an event has no \"type\"");
        return NX_EBADMSG;
    }
    if (!strcmp(type, "thread.started") && jstr(ev, "thread_id") && !w->r->session)
        w->r->session = strdup(jstr(ev, "thread_id"));
    else if (!strcmp(type, "item.completed")) {
        json_t *item = json_object_get(ev, "item");
        const char *it = jstr(item, "type");
        if (it && !strcmp(it, "agent_message") && jstr(item, "text"))
            return report_result(w->r, jstr(item, "text"), strlen(jstr(item, "text")));
    } else if (!strcmp(type, "turn.completed")) {
        w->completed = true;
        w->r->tokens_in += juint(ev, "usage.input_tokens");
        w->r->tokens_out += juint(ev, "usage.output_tokens");
    } else if (!strcmp(type, "turn.failed") || !strcmp(type, "error")) {
        w->failed = true;
        const char *msg = jstr(json_object_get(ev, "error"), "message");
        if (!msg)
            msg = jstr(ev, "message");
        return report_error(w->r, "codex: %s", msg ? msg : type);
    }
    return 0;
}

static int codex_parse(const nx_agent_conf_t *conf, const char *out, size_t len, int exit_code,
                       nx_agent_report_t *r, char *err, size_t errlen) {
    codex_walk_t w = {r, false, false};
    int rc = jsonl_walk("codex", out, len, codex_event, &w, err, errlen);
    if (rc < 0)
        return rc;
    if (!w.completed && !w.failed && exit_code == 0) {
        snprintf(err, errlen, "codex: the stream ended without \"turn.completed\"");
        return NX_EBADMSG;
    }
    return r->result ? 0 : report_result(r, "", 0);
}

static int codex_progress(const char *line, size_t len, char *buf, size_t buflen) {
    json_t *ev = json_loadb(line, len, 0, NULL);
    int rc = 0;
    const char *type = jstr(ev, "type");
    json_t *item = json_object_get(ev, "item");
    const char *it = jstr(item, "type");
    if (type && it && !strcmp(type, "item.started") && !strcmp(it, "command_execution"))
        rc = progress_text(buf, buflen, "run", jstr(item, "command"));
    else if (type && it && !strcmp(type, "item.completed") && !strcmp(it, "agent_message"))
        rc = progress_text(buf, buflen, "says", jstr(item, "text"));
    else if (type && it && !strcmp(type, "item.completed") && !strcmp(it, "file_change"))
        rc = progress_text(buf, buflen, "changed files", NULL);
    json_decref(ev);
    return rc;
}

const adapter_t nx_adapter_codex = {codex_command, codex_parse, codex_progress};
