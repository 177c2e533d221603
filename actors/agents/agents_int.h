/*  agents_int.h - what the adapter files share; not a public header. */
#ifndef NX_AGENTS_INT_H
#define NX_AGENTS_INT_H

#include <jansson.h>

#include "nx_agents.h"

/* The largest input passed as one argument (Linux caps one argument at
 * 128 KiB, MAX_ARG_STRLEN). */
#define ARG_INPUT_MAX (120u * 1024)

/* A growing argv. Every push copies its string; an allocation failure
 * is remembered and reported by argv_finish. */
typedef struct {
    char **v;
    size_t n, cap;
    bool oom;
} argv_t;

void argv_push(argv_t *a, const char *s);
void argv_pushf(argv_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The CLI's binary: conf->binary, or its name. */
void argv_program(argv_t *a, const nx_agent_conf_t *conf, const char *name);
/* flag and value, when value is set (--model M, ...). */
void argv_opt(argv_t *a, const char *flag, const char *value);
/* For CLIs that take the prompt as an argument: *ret_prompt (the caller's)
 * and av started with the program. NX_EUSAGE when the input is too large. */
int argv_prompt(argv_t *av, const nx_agent_conf_t *conf, const char *name, const void *input,
                size_t len, char **ret_prompt, char *err, size_t errlen);
/* conf->args, after the adapter's own. */
void argv_extra(argv_t *a, const nx_agent_conf_t *conf);
/* Hands the argv to cmd. Returns 0 or -ENOMEM. */
int argv_finish(argv_t *a, nx_agent_cmd_t *cmd);

/* The input as a C string for an argument; NX_EUSAGE when too large. */
int input_arg(const void *input, size_t len, char **ret, char *err, size_t errlen);
/* The input, copied for stdin. */
int input_stdin(const void *input, size_t len, nx_agent_cmd_t *cmd);

/* Calls fn for each non-empty line of a JSON-lines stream, parsed. A line
 * that is not a JSON object fails the walk with its number. */
typedef int (*jsonl_fn)(json_t *obj, void *arg, char *err, size_t errlen);
int jsonl_walk(const char *agent, const char *out, size_t len, jsonl_fn fn, void *arg, char *err,
               size_t errlen);

/* Sets report->result to a copy of text (len bytes). */
int report_result(nx_agent_report_t *r, const char *text, size_t len);
int report_error(nx_agent_report_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A string member of obj, or NULL. */
const char *jstr(const json_t *obj, const char *key);
/* An integer member of obj (or nested "a.b"), 0 when missing. */
uint64_t juint(const json_t *obj, const char *path);
/* One line of text for a progress event, cut to fit. */
int progress_text(char *buf, size_t buflen, const char *what, const char *text);

/* One adapter: the three things every agent file provides. */
typedef struct {
    int (*command)(const nx_agent_conf_t *conf, const char *exe, const char *role,
                   const void *input, size_t len, nx_agent_cmd_t *cmd, char *err, size_t errlen);
    int (*parse)(const nx_agent_conf_t *conf, const char *out, size_t len, int exit_code,
                 nx_agent_report_t *r, char *err, size_t errlen);
    int (*progress)(const char *line, size_t len, char *buf, size_t buflen); /* may be NULL */
} adapter_t;

extern const adapter_t nx_adapter_exec, nx_adapter_sim, nx_adapter_claude, nx_adapter_codex,
    nx_adapter_copilot, nx_adapter_gemini, nx_adapter_aider;

/* Text adapters (exec, sim, copilot, aider): the result is stdout. */
int parse_text(const nx_agent_conf_t *conf, const char *out, size_t len, int exit_code,
               nx_agent_report_t *r, char *err, size_t errlen);

#endif
