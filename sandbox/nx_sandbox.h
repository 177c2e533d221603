/*  nx_sandbox - starts an agent process and keeps it on a leash.
 *
 *  Every agent is started through nx_sandbox_spawn(). With a profile it
 *  runs isolated: new user, pid, mount, ipc, uts, cgroup and (unless the
 *  profile says `host`) network namespaces; a fresh root on tmpfs with
 *  read-only binds of the system, a writable workspace and a private /tmp;
 *  every capability dropped, no_new_privs, a seccomp filter loaded last,
 *  just before execve; rlimits and cgroup limits. Without a profile
 *  (`profile: none`) it is a plain fork + exec in its own session.
 *
 *  Process shape with a profile:
 *
 *      employee ──clone(new namespaces)──> init (pid 1 inside; our code)
 *                                            └─fork──> agent (execve)
 *
 *  init reaps every process inside, forwards SIGTERM/SIGINT/SIGHUP to the
 *  agent, and before it exits writes the agent's wait status to the status
 *  pipe, so that nx_sandbox_reap() can report "killed by signal 9" even
 *  though init itself exited normally.
 *
 *  A setup failure in either child is reported to the parent through a
 *  pipe as the step and its errno, so the caller gets
 *  "mount /usr: Permission denied" rather than an exit code 127. */
#ifndef NX_SANDBOX_H
#define NX_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* none: loopback only; host: the host's network; allow: loopback plus an
 * HTTP CONNECT proxy (HTTPS_PROXY) that reaches only the listed host:port. */
typedef enum { NX_NET_NONE, NX_NET_HOST, NX_NET_ALLOW } nx_net_mode_t;

#define NX_SANDBOX_MAX_BINDS 16

typedef struct {
    nx_net_mode_t net;        /* none: only loopback, in its own namespace */
    const char *ro[NX_SANDBOX_MAX_BINDS]; /* extra read-only binds (same path inside) */
    size_t nro;
    const char *rw[NX_SANDBOX_MAX_BINDS]; /* writable binds (same path inside) */
    size_t nrw;
    uint64_t mem_bytes;       /* memory limit (cgroup; RLIMIT_AS without one); 0 = none */
    uint64_t pids;            /* process limit (cgroup pids.max; RLIMIT_NPROC without) */
    uint32_t cpu_percent;     /* CPU quota in percent of one core (cgroup); 0 = none */
    uint64_t fsize_bytes;     /* RLIMIT_FSIZE; 0 = 1 GiB */
    uint64_t nofile;          /* RLIMIT_NOFILE; 0 = 1024 */
    uint64_t tmp_bytes;       /* size of the private /tmp; 0 = 256 MiB */
    const char *allow[NX_SANDBOX_MAX_BINDS]; /* net allow: "host:port" entries */
    size_t nallow;
    const char *proxy_exe;    /* net allow: the nexus binary that runs the proxy */
} nx_sandbox_profile_t;

typedef struct {
    char *const *argv;   /* argv[0] is looked up in PATH when it has no '/' */
    char *const *envp;   /* the whole environment; NULL = PATH, HOME, LANG only */
    const char *cwd;     /* working directory, NULL = inherit (or / when sandboxed) */
    const nx_sandbox_profile_t *profile; /* NULL = no sandbox (plain fork + exec) */
    bool inherit_stdio;  /* the child shares our stdin/stdout/stderr (no pipes) */
    int msg_fd;          /* above 2: the agent gets this fd as its fd 3 (the employee's
                          * message channel); 0 = none */
} nx_spawn_opts_t;

typedef struct {
    pid_t pid;        /* the agent, or the sandbox's init; its process group */
    int pidfd;        /* readable when pid exits (pidfd_open) */
    int stdin_fd;     /* write end of the agent's stdin, non-blocking; -1 if inherited */
    int stdout_fd;    /* read end of its stdout, non-blocking; -1 if inherited */
    int stderr_fd;    /* read end of its stderr, non-blocking; -1 if inherited */
    int status_fd;    /* init's report of the agent's wait status; -1 without sandbox */
    char cgroups[3][160]; /* cgroup directories to remove after exit ("" = none) */
    pid_t proxy_pid;      /* net allow: the proxy process, 0 = none */
    char proxy_path[108]; /* net allow: its Unix socket on the host */
} nx_child_t;

/* Starts the agent. On success returns 0 and fills *ret_child; the caller
 * owns its fds and must reap the pid, then call nx_sandbox_reap(). On
 * failure returns -errno, writes "step 'argv0': cause" into err, and leaves
 * nothing behind. */
int nx_sandbox_spawn(const nx_spawn_opts_t *opts, nx_child_t *ret_child, char *err,
                     size_t errlen);

/* Sends sig to the child's whole process group (the whole sandbox). */
int nx_sandbox_kill(const nx_child_t *child, int sig);

/* After pid was reaped with wait status `raw`: returns the agent's own wait
 * status (from init's report when sandboxed), closes every fd and removes
 * the child's cgroups. */
int nx_sandbox_reap(nx_child_t *child, int raw);

/* Closes the fds that are still open (each set to -1). */
void nx_child_close(nx_child_t *child);

/* What this machine supports, one line per facility, into buf. Returns 0
 * when a sandbox can be built here, NX-style negative errno otherwise. */
int nx_sandbox_check(char *buf, size_t len);

/* `nexus sandbox-proxy SOCKET HOST:PORT...`: the allowlisting proxy that a
 * `net: allow` sandbox reaches through its bound socket. Internal. */
int nx_proxy_main(int argc, char **argv);

/* `nexus sandbox run [options] -- CMD ARGS` and `nexus sandbox check`.
 * Returns a process exit code: the command's, or 128 + signal. */
int nx_sandbox_main(int argc, char **argv);

#endif
