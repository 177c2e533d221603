/*  nx_sandbox - starts an agent process and keeps it on a leash.
 *
 *  Today this is the single seam through which every agent is started:
 *  fork + exec in its own session and process group, death with its parent,
 *  every inherited fd closed, stdin/stdout/stderr on pipes. The namespace,
 *  seccomp and cgroup layers plug in behind nx_sandbox_spawn() without its
 *  callers changing.
 *
 *  A setup failure in the child (chdir, exec, ...) is reported to the parent
 *  through a CLOEXEC pipe as the step and its errno, so the caller gets
 *  "exec 'claude': No such file or directory" rather than an exit code 127. */
#ifndef NX_SANDBOX_H
#define NX_SANDBOX_H

#include <stddef.h>
#include <sys/types.h>

typedef struct {
    char *const *argv;   /* argv[0] is looked up in PATH when it has no '/' */
    char *const *envp;   /* the whole environment; NULL = PATH, HOME, LANG only */
    const char *cwd;     /* working directory, NULL = inherit */
} nx_spawn_opts_t;

typedef struct {
    pid_t pid;        /* the agent; also its process group and session id */
    int pidfd;        /* readable when the agent exits (pidfd_open) */
    int stdin_fd;     /* write end of the agent's stdin, non-blocking */
    int stdout_fd;    /* read end of its stdout, non-blocking */
    int stderr_fd;    /* read end of its stderr, non-blocking */
} nx_child_t;

/* Starts the agent. On success returns 0 and fills *ret_child; the caller
 * owns its fds (nx_child_close) and must reap the pid. On failure returns
 * -errno, writes "step 'argv0': cause" into err, and leaves nothing behind. */
int nx_sandbox_spawn(const nx_spawn_opts_t *opts, nx_child_t *ret_child, char *err,
                     size_t errlen);

/* Sends sig to the agent's whole process group. */
int nx_sandbox_kill(const nx_child_t *child, int sig);

/* Closes the fds that are still open (each set to -1). */
void nx_child_close(nx_child_t *child);

#endif
