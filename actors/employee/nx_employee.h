/*  nx_employee - one employee process: a DEALER to the CEO that announces
 *  its capacity, takes tasks, runs each task's agent through the sandbox
 *  seam with the input on stdin, and returns the result.
 *
 *  Output is read without blocking and capped: past the department's
 *  max_output the agent's process group is killed and the task fails with
 *  a message that says so, so a flood never grows the employee. */
#ifndef NX_EMPLOYEE_H
#define NX_EMPLOYEE_H

typedef struct {
    const char *company_path; /* the company file */
    const char *home;         /* NULL = derived from the company file */
    int sigfd;                /* from nx_signals_block(), -1 = none */
    const char *name;         /* this employee, as named in the company file */
    const char *exe;          /* the nexus binary, for the sim agent */
} nx_employee_opts_t;

/* Runs until SIGTERM/SIGINT or a STOP from the CEO. Returns a process exit
 * code: 0 after a clean stop, 2 when the configuration is unusable (the
 * reason is logged). */
int nx_employee_run(const nx_employee_opts_t *opts);

#endif
