/*  nx_agents - agent adapters: how a department's agent becomes a command
 *  line, and the built-in `sim` agent.
 *
 *  Today there are two adapters: `exec` (any command; the task input on
 *  stdin, the result is stdout) and `sim` (this very binary, run as
 *  `nexus agent-sim`, a deterministic stand-in for an AI agent). */
#ifndef NX_AGENTS_H
#define NX_AGENTS_H

#include "nx_runtime.h"

/* Builds the argv that runs conf's agent; `exe` is the path of the nexus
 * binary (for sim). *ret_argv is NULL-terminated and the caller's
 * (nx_agent_argv_free). Returns 0 or -ENOMEM. */
int nx_agent_argv(const nx_agent_conf_t *conf, const char *exe, char ***ret_argv);
void nx_agent_argv_free(char ***argv_p);

/* `nexus agent-sim [--seed N] [--work 20ms] [--jitter 5ms] [--fail-rate F]
 * [--output PREFIX]`: reads the task input from stdin, works for the
 * work time, writes PREFIX + input to stdout. Whether it fails, and the
 * jitter, are a pure function of seed, input and NEXUS_ATTEMPT, so a run
 * can be replayed. Lines of the input starting with '!' are directives for
 * tests and demos: "!exit N", "!crash", "!sleep MS", "!flood BYTES",
 * "!stderr TEXT". Returns the process exit code. */
int nx_agent_sim_main(int argc, char **argv);

/* The sim agent's decision for one attempt: 1 = fail, 0 = succeed. */
int nx_agent_sim_fails(uint64_t seed, const void *input, size_t len, uint32_t attempt,
                       double fail_rate);
/* The sim agent's work time for one attempt: work +- jitter, a pure
 * function of seed, input and attempt. The in-process sim uses both of
 * these, so it behaves exactly like the process one. */
int64_t nx_agent_sim_work_ms(uint64_t seed, int64_t work_ms, int64_t jitter_ms, const void *input,
                             size_t len, uint32_t attempt);

#endif
