/*  spawn.c - fork + exec of an agent with a setup-error pipe.
 *
 *  Between fork() and execve() the child calls only async-signal-safe
 *  functions. The steps run in one fixed order: session, parent-death
 *  signal, signals reset, stdio, close inherited fds, chdir, exec. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nx_sandbox.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

enum { STEP_SETSID = 1, STEP_PDEATHSIG, STEP_STDIO, STEP_CHDIR, STEP_EXEC };
static const char *const s_steps[] = {"?", "setsid", "prctl(PDEATHSIG)", "stdio", "chdir",
                                      "exec"};

typedef struct {
    int step;
    int err;
} setup_report_t;

static void child_fail(int fd, int step) {
    setup_report_t r = {step, errno};
    ssize_t w = write(fd, &r, sizeof r);
    (void)w;
    _exit(127);
}

static void close_pair(int p[2]) {
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
}

int nx_sandbox_spawn(const nx_spawn_opts_t *opts, nx_child_t *ret_child, char *err,
                     size_t errlen) {
    static char *const s_default_env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp",
                                          "LANG=C.UTF-8", NULL};
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1}, rep[2] = {-1, -1};
    int rc = 0;
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
        pipe2(rep, O_CLOEXEC) < 0) {
        rc = -errno;
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }
    char *const *envp = opts->envp ? opts->envp : s_default_env;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        rc = -errno;
        snprintf(err, errlen, "fork '%s': %s", opts->argv[0], strerror(errno));
        goto fail;
    }
    if (pid == 0) {
        if (setsid() < 0)
            child_fail(rep[1], STEP_SETSID);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
            child_fail(rep[1], STEP_PDEATHSIG);
        if (getppid() != parent)
            _exit(127); /* the parent died before PDEATHSIG was armed */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int s = 1; s < NSIG; s++)
            signal(s, SIG_DFL);
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(errp[1], 2) < 0)
            child_fail(rep[1], STEP_STDIO);
        /* Every other inherited fd goes, except the report pipe, which is
         * CLOEXEC and closes itself on a successful exec. */
        int keep = rep[1];
        if (keep > 3)
            syscall(SYS_close_range, 3, keep - 1, 0);
        syscall(SYS_close_range, keep + 1, ~0U, 0);
        if (opts->cwd && chdir(opts->cwd) < 0)
            child_fail(keep, STEP_CHDIR);
        execvpe(opts->argv[0], opts->argv, envp);
        child_fail(keep, STEP_EXEC);
    }
    close(in[0]);
    close(out[1]);
    close(errp[1]);
    close(rep[1]);
    in[0] = out[1] = errp[1] = rep[1] = -1;
    setup_report_t r;
    ssize_t n;
    do
        n = read(rep[0], &r, sizeof r);
    while (n < 0 && errno == EINTR);
    close(rep[0]);
    rep[0] = -1;
    if (n == (ssize_t)sizeof r) {
        waitpid(pid, NULL, 0);
        rc = -r.err;
        snprintf(err, errlen, "%s '%s': %s", s_steps[r.step < 1 || r.step > STEP_EXEC ? 0 : r.step],
                 opts->argv[0], strerror(r.err));
        goto fail;
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        rc = -errno;
        snprintf(err, errlen, "pidfd_open: %s", strerror(errno));
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
        goto fail;
    }
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(errp[0], F_SETFL, O_NONBLOCK);
    ret_child->pid = pid;
    ret_child->pidfd = pidfd;
    ret_child->stdin_fd = in[1];
    ret_child->stdout_fd = out[0];
    ret_child->stderr_fd = errp[0];
    return 0;
fail:
    close_pair(in);
    close_pair(out);
    close_pair(errp);
    close_pair(rep);
    return rc;
}

int nx_sandbox_kill(const nx_child_t *child, int sig) {
    if (child->pid <= 0)
        return -ESRCH;
    return kill(-child->pid, sig) < 0 ? -errno : 0;
}

void nx_child_close(nx_child_t *child) {
    int *fds[] = {&child->pidfd, &child->stdin_fd, &child->stdout_fd, &child->stderr_fd};
    for (size_t i = 0; i < 4; i++)
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
}
