/*  nx_node - one per host: starts the employees the company file lists and
 *  restarts one that dies, with a back-off so a crash loop cannot spin.
 *
 *  Each employee is `nexus employee --name N`, its stdout and stderr
 *  appended to HOME/logs/N.log. On SIGTERM or a STOP from the CEO the node
 *  stops its employees in reverse start order: SIGTERM, then SIGKILL after
 *  the grace period. With `departments`, it supervises only those
 *  departments' employees: one node per host, each with its share. */
#ifndef NX_NODE_H
#define NX_NODE_H

typedef struct {
    const char *company_path; /* the company file */
    const char *home;         /* NULL = derived from the company file */
    int sigfd;                /* from nx_signals_block(), -1 = none */
    const char *exe;          /* the nexus binary */
    const char *name;         /* this node's name, NULL = the host name */
    const char *departments;  /* "a,b": only these departments' employees; NULL = all */
} nx_node_opts_t;

/* Runs until SIGTERM/SIGINT or STOP. Returns a process exit code. */
int nx_node_run(const nx_node_opts_t *opts);

#endif
