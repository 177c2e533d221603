/*  claude.c - Claude Code (npm @anthropic-ai/claude-code), checked against
 *  `claude --help` of version 2.1.197.
 *
 *    claude -p --output-format stream-json --verbose [--model M]
 *           [--permission-mode MODE] [--allowedTools T,T...] [args...]
 *
 *  The prompt goes on stdin (print mode reads it when no prompt argument
 *  is given). stream-json needs --verbose. Each stdout line is a JSON
 *  event: {"type":"system","subtype":"init",...}, "assistant" messages
 *  whose content holds text and tool_use blocks, "user" messages with
 *  tool results, and one final {"type":"result","subtype":"success" |
 *  "error_...","is_error":...,"result":"...","duration_ms":...,
 *  "total_cost_usd":...,"usage":{"input_tokens":...,"output_tokens":...},
 *  "session_id":"..."}. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents_int.h"

static int claude_command(const nx_agent_conf_t *conf, const char *exe, const char *role,
                          const void *input, size_t len, nx_agent_cmd_t *cmd, char *err,
                          size_t errlen) {
    argv_t av = {0};
    argv_program(&av, conf, "claude");
    argv_push(&av, "-p");
    argv_push(&av, "--output-format");
    argv_push(&av, "stream-json");
    argv_push(&av, "--verbose");
    argv_opt(&av, "--model", conf->model);
    argv_opt(&av, "--permission-mode", conf->permission_mode);
    if (conf->allowed_tools && conf->allowed_tools[0]) {
        /* One comma-separated value: the option is variadic, and a list
         * of separate words would swallow what follows it. */
        size_t n = 1;
        for (char **t = conf->allowed_tools; *t; t++)
            n += strlen(*t) + 1;
        char *joined = calloc(1, n);
        for (char **t = conf->allowed_tools; joined && *t; t++) {
            if (t != conf->allowed_tools)
                strcat(joined, ",");
            strcat(joined, *t);
        }
        if (joined)
            argv_opt(&av, "--allowedTools", joined);
        else
            av.oom = true;
        free(joined);
    }
    argv_extra(&av, conf);
    int rc = argv_finish(&av, cmd);
    return rc < 0 ? rc : input_stdin(input, len, cmd);
}

typedef struct {
    nx_agent_report_t *r;
    bool have_result;
} claude_walk_t;

static int claude_event(json_t *ev, void *arg, char *err, size_t errlen) {
    claude_walk_t *w = arg;
    const char *type = jstr(ev, "type");
    if (!type) {
        snprintf(err, errlen, "claude: an event has no \"type\"");
        return NX_EBADMSG;
    }
    if (jstr(ev, "session_id") && !w->r->session)
        w->r->session = strdup(jstr(ev, "session_id"));
    if (strcmp(type, "result") != 0)
        return 0;
    w->have_result = true;
    const char *text = jstr(ev, "result");
    int rc = report_result(w->r, text ? text : "", text ? strlen(text) : 0);
    if (rc < 0)
        return rc;
    w->r->duration_ms = juint(ev, "duration_ms");
    w->r->tokens_in = juint(ev, "usage.input_tokens") + juint(ev, "usage.cache_read_input_tokens") +
                      juint(ev, "usage.cache_creation_input_tokens");
    w->r->tokens_out = juint(ev, "usage.output_tokens");
    double cost = json_number_value(json_object_get(ev, "total_cost_usd"));
    w->r->cost_microusd = cost > 0 ? (uint64_t)(cost * 1e6 + 0.5) : 0;
    const char *sub = jstr(ev, "subtype");
    if (json_is_true(json_object_get(ev, "is_error")) || (sub && strcmp(sub, "success") != 0))
        return report_error(w->r, "claude: %s%s%s", sub ? sub : "error", text ? ": " : "",
                            text ? text : "");
    return 0;
}

static int claude_parse(const nx_agent_conf_t *conf, const char *out, size_t len, int exit_code,
                        nx_agent_report_t *r, char *err, size_t errlen) {
    claude_walk_t w = {r, false};
    int rc = jsonl_walk("claude", out, len, claude_event, &w, err, errlen);
    if (rc < 0)
        return rc;
    if (!w.have_result && exit_code == 0) {
        snprintf(err, errlen, "claude: the stream ended without a \"result\" event");
        return NX_EBADMSG;
    }
    return 0;
}

static int claude_progress(const char *line, size_t len, char *buf, size_t buflen) {
    json_t *ev = json_loadb(line, len, 0, NULL);
    int rc = 0;
    const char *type = jstr(ev, "type");
    if (type && !strcmp(type, "assistant")) {
        json_t *content = json_object_get(json_object_get(ev, "message"), "content");
        size_t i;
        json_t *block;
        json_array_foreach(content, i, block) {
            const char *bt = jstr(block, "type");
            if (bt && !strcmp(bt, "tool_use")) {
                char *input = json_dumps(json_object_get(block, "input"), JSON_COMPACT);
                char what[128];
                snprintf(what, sizeof what, "tool %s", jstr(block, "name") ? jstr(block, "name") : "?");
                rc = progress_text(buf, buflen, what, input);
                free(input);
                break;
            }
            if (bt && !strcmp(bt, "text") && jstr(block, "text")) {
                rc = progress_text(buf, buflen, "says", jstr(block, "text"));
                break;
            }
        }
    } else if (type && !strcmp(type, "system") && jstr(ev, "model"))
        rc = progress_text(buf, buflen, "session started", jstr(ev, "model"));
    json_decref(ev);
    return rc;
}

const adapter_t nx_adapter_claude = {claude_command, claude_parse, claude_progress};
