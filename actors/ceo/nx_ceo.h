/*  nx_ceo - the CEO: the only router, the scheduler and the ledger's owner.
 *
 *  One ROUTER serves employees, nodes and clients (the message type tells
 *  them apart, as in Majordomo); one XPUB publishes the event bus. See
 *  docs/architecture.md for the message flow. */
#ifndef NX_CEO_H
#define NX_CEO_H

typedef struct {
    const char *company_path; /* the company file */
    const char *home;         /* NULL = derived from the company file */
    int sigfd;                /* from nx_signals_block(), -1 = none */
} nx_ceo_opts_t;

/* Runs until SIGTERM/SIGINT or a SHUTDOWN request. Returns a process exit
 * code: 0 after a clean stop, 1 on a ledger failure, 2 when the company
 * file or the sockets are unusable (the reason is logged). */
int nx_ceo_run(const nx_ceo_opts_t *opts);

#endif
