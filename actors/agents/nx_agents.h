/*  nx_agents - agent adapters: how a task becomes the command line, the
 *  environment and the stdin of one agent CLI, and how that CLI's output
 *  becomes a result, progress lines and usage. One file per agent:
 *
 *    exec.c     any command; the input on stdin or in "{input}" arguments
 *    sim.c      `nexus agent-sim`, the built-in simulated agent
 *    claude.c   Claude Code:  claude -p --output-format stream-json --verbose
 *    codex.c    Codex:        codex exec --json PROMPT  (stdin empty)
 *    copilot.c  Copilot CLI:  copilot -p PROMPT -s
 *    gemini.c   Gemini CLI:   gemini -p PROMPT --output-format stream-json
 *    aider.c    aider:        aider --message PROMPT --yes-always --no-auto-commits --no-stream
 *
 *  Structured results, whatever the agent: when the result text is, or
 *  ends with, a JSON object, its "verdict" ("accept"/"reject") and
 *  "subtasks" (a list of strings) are read from it. An agent may also say
 *  "reject" by exiting with NX_AGENT_EXIT_REJECT. */
#ifndef NX_AGENTS_H
#define NX_AGENTS_H

#include "nx_runtime.h"

/* The exit status by which an agent in a review stage rejects the work. */
#define NX_AGENT_EXIT_REJECT 10

/* What to run for one task. */
typedef struct {
    char **argv;       /* NULL-terminated; owned */
    char *stdin_data;  /* written to the agent's stdin, then closed; owned, may be NULL */
    size_t stdin_len;
} nx_agent_cmd_t;

/* What one run produced, as its adapter reads it. */
typedef struct {
    char *result;          /* becomes the task's output; owned */
    size_t result_len;
    char *error;           /* the agent reported a failure; owned, NULL when none */
    char *verdict;         /* "accept" or "reject" when it gave one; owned */
    char **subtasks;       /* from a plan; owned, NULL-terminated, NULL when none */
    size_t nsubtasks;
    uint64_t tokens_in, tokens_out; /* 0 when not reported */
    uint64_t cost_microusd;         /* US dollars x 1e6; 0 when not reported */
    uint64_t duration_ms;           /* as the agent reports it; 0 when not */
    char *session;         /* the CLI's session or thread id; owned, may be NULL */
} nx_agent_report_t;

/* Builds what runs `input` on conf's agent. `exe` is the nexus binary
 * (for sim); `role` the department's role (may be NULL). Returns 0, or
 * NX_EUSAGE with the cause in err (an input too large for an argument). */
int nx_agent_command(const nx_agent_conf_t *conf, const char *exe, const char *role,
                     const void *input, size_t len, nx_agent_cmd_t *ret_cmd, char *err,
                     size_t errlen);
void nx_agent_cmd_clear(nx_agent_cmd_t *cmd);

/* Reads the agent's whole stdout after it exited with exit_code. Returns
 * 0 with *ret filled, or NX_EBADMSG when the output is not in the CLI's
 * format (err names the line and the cause). */
int nx_agent_parse(const nx_agent_conf_t *conf, const char *out, size_t len, int exit_code,
                   nx_agent_report_t *ret, char *err, size_t errlen);
void nx_agent_report_clear(nx_agent_report_t *report);

/* One complete line of the agent's stdout, as it streams: writes a short
 * progress text ("tool Bash: git status", "says: ...") into buf and
 * returns 1, or returns 0 when the line is not worth an event. */
int nx_agent_progress(const nx_agent_conf_t *conf, const char *line, size_t len, char *buf,
                      size_t buflen);

/* `nexus agent-sim [--seed N] [--work 20ms] [--jitter 5ms] [--exponential]
 * [--fail-rate F] [--crash-rate F] [--role R] [--reject-rate F]
 * [--subtasks N] [--output PREFIX]`: reads the task input from stdin,
 * works for the work time, writes PREFIX + input to stdout. By role:
 * `product` writes a JSON plan with N subtasks; `qa` a JSON verdict that
 * rejects at reject-rate; `engineering` commits a file when its folder is
 * a git worktree. Every decision is a pure function of seed, input and
 * NEXUS_ATTEMPT, so a run can be replayed. Lines of the input starting
 * with '!' are directives for tests and demos: "!exit N", "!crash",
 * "!sleep MS", "!flood BYTES", "!stderr TEXT". Returns the exit code. */
int nx_agent_sim_main(int argc, char **argv);

/* The sim agent's decision for one attempt: 1 = fail, 0 = succeed. */
int nx_agent_sim_fails(uint64_t seed, const void *input, size_t len, uint32_t attempt,
                       double fail_rate);
/* The sim agent's work time for one attempt: work +- jitter (or drawn
 * from an exponential distribution with mean work), a pure function of
 * seed, input and attempt. The in-process sim uses both of these, so it
 * behaves exactly like the process one. */
int64_t nx_agent_sim_work_ms(uint64_t seed, int64_t work_ms, int64_t jitter_ms, bool exponential,
                             const void *input, size_t len, uint32_t attempt);

#endif
