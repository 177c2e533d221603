/*  gemini.c - Gemini CLI (npm @google/gemini-cli), checked against
 *  `gemini --help` of version 0.61.0.
 *
 *    gemini -p PROMPT --output-format stream-json [-m M]
 *           [--approval-mode MODE] [--allowed-tools T...] [args...]
 *
 *  (-p is appended to stdin when stdin has text, so stdin stays empty.)
 *  stream-json prints JSON lines: {"type":"init","session_id","model"},
 *  "message" {"role":"user"|"assistant","content","delta"}, "tool_use"
 *  {"tool_name","parameters"}, "tool_result" {"status","output"},
 *  "error" {"severity","message"}, and a final "result" {"status":
 *  "success"|"error","error":{...},"stats":{"input_tokens",
 *  "output_tokens","duration_ms",...}}. The assistant's messages, joined,
 *  are the result. Exit codes: 0 ok, 1 error, 42 bad input, 53 turn limit. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents_int.h"

static int gemini_command(const nx_agent_conf_t *conf, const char *exe, const char *role,
                          const void *input, size_t len, nx_agent_cmd_t *cmd, char *err,
                          size_t errlen) {
    argv_t av = {0};
    char *prompt;
    int rc = argv_prompt(&av, conf, "gemini", input, len, &prompt, err, errlen);
    if (rc < 0)
        return rc;
    argv_push(&av, "-p");
    argv_push(&av, prompt);
    free(prompt);
    argv_push(&av, "--output-format");
    argv_push(&av, "stream-json");
    argv_opt(&av, "-m", conf->model);
    argv_opt(&av, "--approval-mode", conf->permission_mode);
    for (char **t = conf->allowed_tools; t && *t; t++)
        argv_opt(&av, "--allowed-tools", *t);
    argv_extra(&av, conf);
    return argv_finish(&av, cmd);
}

typedef struct {
    nx_agent_report_t *r;
    char *text; /* the assistant's messages so far */
    size_t len;
    bool have_result;
} gemini_walk_t;

static int gemini_event(json_t *ev, void *arg, char *err, size_t errlen) {
    gemini_walk_t *w = arg;
    const char *type = jstr(ev, "type");
    if (!type) {
        snprintf(err, errlen, "gemini: an event has no \"type\"");
        return NX_EBADMSG;
    }
    if (!strcmp(type, "init") && jstr(ev, "session_id") && !w->r->session)
        w->r->session = strdup(jstr(ev, "session_id"));
    else if (!strcmp(type, "message")) {
        const char *role = jstr(ev, "role"), *content = jstr(ev, "content");
        if (role && content && !strcmp(role, "assistant")) {
            size_t n = strlen(content);
            char *more = realloc(w->text, w->len + n + 1);
            if (!more)
                return -ENOMEM;
            memcpy(more + w->len, content, n + 1);
            w->text = more;
            w->len += n;
        }
    } else if (!strcmp(type, "result")) {
        w->have_result = true;
        json_t *stats = json_object_get(ev, "stats");
        w->r->tokens_in = juint(stats, "input_tokens");
        w->r->tokens_out = juint(stats, "output_tokens");
        w->r->duration_ms = juint(stats, "duration_ms");
        const char *status = jstr(ev, "status");
        if (status && strcmp(status, "success") != 0) {
            const char *msg = jstr(json_object_get(ev, "error"), "message");
            return report_error(w->r, "gemini: %s%s%s", status, msg ? ": " : "", msg ? msg : "");
        }
    }
    return 0;
}

static int gemini_parse(const nx_agent_conf_t *conf, const char *out, size_t len, int exit_code,
                        nx_agent_report_t *r, char *err, size_t errlen) {
    gemini_walk_t w = {r, NULL, 0, false};
    int rc = jsonl_walk("gemini", out, len, gemini_event, &w, err, errlen);
    if (rc == 0 && !w.have_result && exit_code == 0) {
        snprintf(err, errlen, "gemini: the stream ended without a \"result\" event");
        rc = NX_EBADMSG;
    }
    if (rc == 0)
        rc = report_result(r, w.text ? w.text : "", w.len);
    free(w.text);
    return rc;
}

static int gemini_progress(const char *line, size_t len, char *buf, size_t buflen) {
    json_t *ev = json_loadb(line, len, 0, NULL);
    int rc = 0;
    const char *type = jstr(ev, "type");
    if (type && !strcmp(type, "tool_use")) {
        char *params = json_dumps(json_object_get(ev, "parameters"), JSON_COMPACT);
        char what[128];
        snprintf(what, sizeof what, "tool %s", jstr(ev, "tool_name") ? jstr(ev, "tool_name") : "?");
        rc = progress_text(buf, buflen, what, params);
        free(params);
    } else if (type && !strcmp(type, "error"))
        rc = progress_text(buf, buflen, "warning", jstr(ev, "message"));
    else if (type && !strcmp(type, "init"))
        rc = progress_text(buf, buflen, "session started", jstr(ev, "model"));
    json_decref(ev);
    return rc;
}

const adapter_t nx_adapter_gemini = {gemini_command, gemini_parse, gemini_progress};
