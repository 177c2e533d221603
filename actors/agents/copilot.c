/*  copilot.c - GitHub Copilot CLI (npm @github/copilot; the old
 *  `gh copilot` extension is deprecated), checked against `copilot --help`
 *  of version 1.0.102.
 *
 *    copilot -p PROMPT -s --no-color --no-ask-user [--model M]
 *            (--allow-tool T)... | --allow-all-tools   [args...]
 *
 *  -s prints only the agent's answer, which becomes the result. Without
 *  tool permissions copilot cannot work unattended, so a profile that
 *  names no tools gets --allow-all-tools: the sandbox is the boundary. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "agents_int.h"

static int copilot_command(const nx_agent_conf_t *conf, const char *exe, const char *role,
                           const void *input, size_t len, nx_agent_cmd_t *cmd, char *err,
                           size_t errlen) {
    argv_t av = {0};
    char *prompt;
    int rc = argv_prompt(&av, conf, "copilot", input, len, &prompt, err, errlen);
    if (rc < 0)
        return rc;
    argv_push(&av, "-p");
    argv_push(&av, prompt);
    free(prompt);
    argv_push(&av, "-s");
    argv_push(&av, "--no-color");
    argv_push(&av, "--no-ask-user");
    argv_opt(&av, "--model", conf->model);
    if (conf->allowed_tools && conf->allowed_tools[0])
        for (char **t = conf->allowed_tools; *t; t++)
            argv_opt(&av, "--allow-tool", *t);
    else
        argv_push(&av, "--allow-all-tools");
    argv_extra(&av, conf);
    return argv_finish(&av, cmd);
}

const adapter_t nx_adapter_copilot = {copilot_command, parse_text, NULL};
