/*  sim.c - the adapter for the built-in simulated agent: `nexus agent-sim`
 *  (sim_main.c) with the department's settings and role; the input on
 *  stdin, the result is stdout (a JSON plan or verdict for product and qa
 *  roles, which the common structured-tail reader picks up). */
#define _GNU_SOURCE
#include "agents_int.h"

static int sim_command(const nx_agent_conf_t *conf, const char *exe, const char *role,
                       const void *input, size_t len, nx_agent_cmd_t *cmd, char *err,
                       size_t errlen) {
    argv_t av = {0};
    argv_push(&av, exe);
    argv_push(&av, "agent-sim");
    argv_pushf(&av, "--seed=%llu", (unsigned long long)conf->seed);
    argv_pushf(&av, "--work=%lldms", (long long)conf->work_ms);
    argv_pushf(&av, "--jitter=%lldms", (long long)conf->jitter_ms);
    if (conf->work_exponential)
        argv_push(&av, "--exponential");
    argv_pushf(&av, "--fail-rate=%.6f", conf->fail_rate);
    argv_pushf(&av, "--crash-rate=%.6f", conf->crash_rate);
    argv_pushf(&av, "--reject-rate=%.6f", conf->reject_rate);
    argv_pushf(&av, "--subtasks=%u", conf->subtasks);
    if (role)
        argv_pushf(&av, "--role=%s", role);
    argv_pushf(&av, "--output=%s", conf->output_prefix ? conf->output_prefix : "done: ");
    argv_extra(&av, conf);
    int rc = argv_finish(&av, cmd);
    return rc < 0 ? rc : input_stdin(input, len, cmd);
}

const adapter_t nx_adapter_sim = {sim_command, parse_text, NULL};
