/*  nx_cli - the `nexus` command: one executable, one subcommand per verb.
 *
 *  Exit codes (docs/cli.md): 0 success; 1 the operation failed (a task
 *  failed, the CEO refused); 2 usage or configuration error; 3 the CEO
 *  could not be reached; 124 `wait` timed out. */
#ifndef NX_CLI_H
#define NX_CLI_H

#define NX_EXIT_OK 0
#define NX_EXIT_FAIL 1
#define NX_EXIT_USAGE 2
#define NX_EXIT_UNREACH 3
#define NX_EXIT_TIMEOUT 124

/* Runs `nexus ARGS...`; returns the process exit code. */
int nx_cli_main(int argc, char **argv);

#endif
