/*  aider.c - aider (Python, `pip install aider-chat`; it is neither in
 *  Debian nor on npm, so its flags were checked against its documented
 *  options at aider.chat/docs/config/options.html, version 0.86, not a
 *  local --help).
 *
 *    aider --message PROMPT --yes-always --no-auto-commits --no-stream
 *          --no-pretty [--model M] [args...]
 *
 *  The result is what it prints. Usage comes from its report line,
 *  "Tokens: 4.5k sent, 1.2k received. Cost: $0.02 message, $0.05 session." */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents_int.h"

static int aider_command(const nx_agent_conf_t *conf, const char *exe, const char *role,
                         const void *input, size_t len, nx_agent_cmd_t *cmd, char *err,
                         size_t errlen) {
    argv_t av = {0};
    char *prompt;
    int rc = argv_prompt(&av, conf, "aider", input, len, &prompt, err, errlen);
    if (rc < 0)
        return rc;
    argv_push(&av, "--message");
    argv_push(&av, prompt);
    free(prompt);
    argv_push(&av, "--yes-always");
    argv_push(&av, "--no-auto-commits");
    argv_push(&av, "--no-stream");
    argv_push(&av, "--no-pretty");
    argv_opt(&av, "--model", conf->model);
    argv_extra(&av, conf);
    return argv_finish(&av, cmd);
}

/* "4.5k" -> 4500, "1.2M" -> 1200000, "341" -> 341. */
static uint64_t count(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (*end == 'k')
        v *= 1e3;
    else if (*end == 'M')
        v *= 1e6;
    return v > 0 ? (uint64_t)(v + 0.5) : 0;
}

static int aider_parse(const nx_agent_conf_t *conf, const char *out, size_t len, int exit_code,
                       nx_agent_report_t *r, char *err, size_t errlen) {
    int rc = report_result(r, out ? out : "", out ? len : 0);
    if (rc < 0)
        return rc;
    /* The last report line wins: aider prints one per exchange. */
    for (const char *p = r->result; (p = strstr(p, "Tokens: ")); p += 8) {
        char sent[32], recv[32];
        double cost;
        if (sscanf(p, "Tokens: %31s sent, %31s received. Cost: $%lf message", sent, recv, &cost) >=
            2) {
            r->tokens_in = count(sent);
            r->tokens_out = count(recv);
            if (strstr(p, "Cost: $") && sscanf(strstr(p, "Cost: $"), "Cost: $%lf", &cost) == 1)
                r->cost_microusd = (uint64_t)(cost * 1e6 + 0.5);
        }
    }
    return 0;
}

static int aider_progress(const char *line, size_t len, char *buf, size_t buflen) {
    char text[512];
    snprintf(text, sizeof text, "%.*s", (int)(len < sizeof text - 1 ? len : sizeof text - 1), line);
    if (!strncmp(text, "Applied edit to ", 16))
        return progress_text(buf, buflen, "edited", text + 16);
    if (!strncmp(text, "Tokens: ", 8))
        return progress_text(buf, buflen, "usage", text + 8);
    return 0;
}

const adapter_t nx_adapter_aider = {aider_command, aider_parse, aider_progress};
