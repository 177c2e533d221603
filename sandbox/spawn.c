/*  spawn.c - starting an agent: plain (fork + exec) or sandboxed (clone
 *  into new namespaces, an init, then the agent).
 *
 *  The sandboxed child runs its steps in one fixed order:
 *
 *    init:  wait for the parent's go (uid/gid maps and cgroups written)
 *           -> setsid -> death signal -> stdio -> mounts + pivot_root
 *           -> hostname -> loopback -> read the seccomp filter (the parent
 *           compiles it meanwhile) -> vfork the agent -> reap, forward
 *              signals, report the agent's exit status, exit
 *    agent: rlimits -> chdir -> close fds -> drop capabilities
 *           -> no_new_privs -> seccomp (last) -> execve
 *
 *  Between clone/fork and execve only system calls run: everything that
 *  allocates was prepared by the parent. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox_int.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static const char *const s_steps[STEP__COUNT] = {
    "ready", "setsid", "prctl(PDEATHSIG)", "stdio", "mount", "pivot_root", "sethostname",
    "loopback", "fork", "setrlimit", "drop capabilities", "no_new_privs", "seccomp", "chdir",
    "exec", "exit"};

const char *nx_sandbox_step_name(int step) {
    return step >= 0 && step < STEP__COUNT ? s_steps[step] : "?";
}

static void report(int fd, int step, int value) {
    nx_report_t r = {step, value};
    ssize_t w = write(fd, &r, sizeof r);
    (void)w;
}

static void child_fail(int fd, int step) {
    report(fd, step, errno);
    _exit(127);
}

static void close_pair(int p[2]) {
    for (int i = 0; i < 2; i++)
        if (p[i] >= 0) {
            close(p[i]);
            p[i] = -1;
        }
}

/* Closes every fd from 3 up but those in keep (ascending, -1s ignored). */
static void close_except(const int *keep, size_t n) {
    unsigned lo = 3;
    for (size_t i = 0; i < n; i++) {
        if (keep[i] < (int)lo)
            continue;
        if ((unsigned)keep[i] > lo)
            syscall(SYS_close_range, lo, (unsigned)keep[i] - 1, 0);
        lo = (unsigned)keep[i] + 1;
    }
    syscall(SYS_close_range, lo, ~0U, 0);
}

static int cmp_int(const void *a, const void *b) {
    return *(const int *)a - *(const int *)b;
}

static void close_others(int a, int b, int c) {
    int keep[3] = {a, b, c};
    qsort(keep, 3, sizeof *keep, cmp_int);
    close_except(keep, 3);
}

static int read_full(int fd, void *buf, size_t len) {
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void reset_signals(void) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int s = 1; s < NSIG; s++)
        signal(s, SIG_DFL);
}

typedef struct {
    const nx_spawn_opts_t *opts;
    char *const *envp;
    int in[2], out[2], err[2]; /* stdio pipes, -1 when inherited */
    int rep[2];                /* child -> parent reports */
    int go[2];                 /* parent -> init: maps are written, then the filter */
    mount_plan_t plan;
    struct sock_fprog filter;
    bool have_cgroup;
    int msg_hi;                /* the message channel, moved out of the way (>= 100) */
} spawn_t;

static void child_stdio(spawn_t *s, int repfd) {
    /* The message channel goes high first, so that no dup2 below lands on it. */
    if (s->opts->msg_fd > 2 && (s->msg_hi = fcntl(s->opts->msg_fd, F_DUPFD_CLOEXEC, 100)) < 0)
        child_fail(repfd, STEP_STDIO);
    if (s->opts->inherit_stdio)
        return;
    if (dup2(s->in[0], 0) < 0 || dup2(s->out[1], 1) < 0 || dup2(s->err[1], 2) < 0)
        child_fail(repfd, STEP_STDIO);
}

/* The agent: the last steps, then execve. */
static void agent_exec(spawn_t *s, int repfd, bool sandboxed) {
    const nx_spawn_opts_t *o = s->opts;
    if (sandboxed && nx_rlimits_apply(o->profile, s->have_cgroup) < 0)
        child_fail(repfd, STEP_RLIMIT);
    if (o->cwd && chdir(o->cwd) < 0)
        child_fail(repfd, STEP_CHDIR);
    int msg = -1;
    if (s->msg_hi >= 0) {
        if (repfd == 3 && (repfd = fcntl(3, F_DUPFD_CLOEXEC, 4)) < 0)
            child_fail(3, STEP_STDIO);
        if (dup2(s->msg_hi, 3) < 0) /* fd 3, without close-on-exec */
            child_fail(repfd, STEP_STDIO);
        msg = 3;
    }
    close_others(repfd, msg, -1);
    if (sandboxed) {
        if (nx_caps_drop_all() < 0)
            child_fail(repfd, STEP_CAPS);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            child_fail(repfd, STEP_NNP);
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &s->filter) < 0)
            child_fail(repfd, STEP_SECCOMP);
    }
    execvpe(o->argv[0], o->argv, s->envp);
    child_fail(repfd, STEP_EXEC);
}

static volatile pid_t s_agent; /* in init: the agent's pid, for signal forwarding */

static void forward(int sig) {
    if (s_agent > 0)
        kill(s_agent, sig);
}

/* pid 1 of the sandbox. */
static void init_main(spawn_t *s) {
    int repfd = s->rep[1];
    char go;
    close(s->go[1]);
    if (read(s->go[0], &go, 1) != 1)
        _exit(127); /* the parent died or refused before we started */
    s->have_cgroup = go == 'c'; /* set by the parent after our clone */
    if (setsid() < 0)
        child_fail(repfd, STEP_SETSID);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        child_fail(repfd, STEP_PDEATHSIG);
    child_stdio(s, repfd);
    close_others(repfd, s->go[0], s->msg_hi); /* nothing else of the employee's goes inside */
    int rc = nx_mount_run(&s->plan);
    if (rc < 0) {
        errno = -rc;
        child_fail(repfd, STEP_MOUNT);
    }
    if (sethostname("nexus-sandbox", 13) < 0)
        child_fail(repfd, STEP_HOSTNAME);
    if (s->opts->profile->net != NX_NET_HOST && (rc = nx_net_loopback_up()) < 0) {
        errno = -rc;
        child_fail(repfd, STEP_NET);
    }
    if (s->opts->profile->net == NX_NET_ALLOW &&
        (rc = nx_proxy_forwarder_start(NX_PROXY_INSIDE)) < 0) {
        errno = -rc;
        child_fail(repfd, STEP_NET);
    }
    /* The seccomp filter: the parent compiles it while we build the root. */
    static struct sock_filter insns[BPF_MAXINSNS];
    uint32_t ninsns = 0;
    if (read_full(s->go[0], &ninsns, sizeof ninsns) < 0 || ninsns == 0 || ninsns > BPF_MAXINSNS ||
        read_full(s->go[0], insns, ninsns * sizeof *insns) < 0) {
        errno = EPROTO;
        child_fail(repfd, STEP_SECCOMP);
    }
    close(s->go[0]);
    s->filter = (struct sock_fprog){.len = (unsigned short)ninsns, .filter = insns};
    /* The agent reports exec failures to us on its own pipe; we pass the
     * outcome on, so that the parent learns "ready" only after execve. */
    int ap[2];
    if (pipe2(ap, O_CLOEXEC) < 0)
        child_fail(repfd, STEP_FORK);
    /* vfork: the agent borrows our memory until its execve, so nothing is
     * copied for it; it makes system calls only, then execs or _exits. */
    pid_t agent = vfork();
    if (agent < 0)
        child_fail(repfd, STEP_FORK);
    if (agent == 0) {
        close(ap[0]);
        close(repfd);
        reset_signals();
        agent_exec(s, ap[1], true);
    }
    s_agent = agent;
    close(ap[1]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    nx_report_t r;
    ssize_t n;
    do
        n = read(ap[0], &r, sizeof r);
    while (n < 0 && errno == EINTR);
    close(ap[0]);
    if (n == (ssize_t)sizeof r) {
        report(repfd, r.step, r.value);
        _exit(127);
    }
    /* Our stdio belongs to the agent now; keep none of it open. */
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
    }
    report(repfd, STEP_READY, 0);
    nx_caps_drop_all();
    int status = 0;
    for (;;) {
        int st;
        pid_t p = waitpid(-1, &st, 0);
        if (p < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p == agent) {
            status = st;
            break; /* leaving kills whatever the agent left behind */
        }
    }
    report(repfd, STEP_EXIT, status);
    _exit(0);
}

/* Starts `nexus sandbox-proxy` outside the sandbox and waits until its
 * socket exists. */
static int start_proxy(const nx_sandbox_profile_t *p, pid_t *ret_pid, char path[108], char *err,
                       size_t errlen) {
    static unsigned s_counter;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/.nexus-proxy-%d", (int)getuid());
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "mkdir %s: %s", dir, strerror(errno));
        return -errno;
    }
    snprintf(path, 108, "%s/%d-%u.sock", dir, (int)getpid(), s_counter++);
    if (!p->proxy_exe) {
        snprintf(err, errlen, "net allow: no proxy binary given");
        return -EINVAL;
    }
    char *argv[NX_SANDBOX_MAX_BINDS + 4];
    size_t n = 0;
    argv[n++] = (char *)p->proxy_exe;
    argv[n++] = "sandbox-proxy";
    argv[n++] = path;
    for (size_t i = 0; i < p->nallow; i++)
        argv[n++] = (char *)p->allow[i];
    argv[n] = NULL;
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(ready[1], 1);
        reset_signals();
        execv(argv[0], argv);
        _exit(127);
    }
    close(ready[1]);
    char c = 0;
    ssize_t got = pid > 0 ? read(ready[0], &c, 1) : -1;
    close(ready[0]);
    if (pid < 0 || got != 1 || c != 'r') {
        snprintf(err, errlen, "net allow: the proxy did not start");
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        return -EIO;
    }
    *ret_pid = pid;
    return 0;
}

static int write_proc(pid_t pid, const char *file, const char *text) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = write(fd, text, strlen(text)) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int nx_sandbox_spawn(const nx_spawn_opts_t *opts, nx_child_t *ret_child, char *err,
                     size_t errlen) {
    static char *const s_default_env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp",
                                          "LANG=C.UTF-8", NULL};
    spawn_t s;
    memset(&s, 0, sizeof s);
    s.opts = opts;
    s.msg_hi = -1;
    s.envp = opts->envp ? opts->envp : s_default_env;
    int *all[] = {s.in, s.out, s.err, s.rep, s.go};
    for (size_t i = 0; i < 5; i++)
        all[i][0] = all[i][1] = -1;
    char cgroups[3][160] = {"", "", ""};
    bool sandboxed = opts->profile != NULL;
    pid_t proxy_pid = 0;        /* net allow: the proxy outside */
    char proxy_path[108] = "";  /* its socket */
    char **allow_env = NULL;    /* the environment with the proxy variables */
    int rc = 0;
    pid_t pid = -1;
    err[0] = '\0';
    if ((!opts->inherit_stdio && (pipe2(s.in, O_CLOEXEC) < 0 || pipe2(s.out, O_CLOEXEC) < 0 ||
                                  pipe2(s.err, O_CLOEXEC) < 0)) ||
        pipe2(s.rep, O_CLOEXEC) < 0 || (sandboxed && pipe2(s.go, O_CLOEXEC) < 0)) {
        rc = -errno;
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }
    if (sandboxed && opts->profile->net == NX_NET_ALLOW &&
        (rc = start_proxy(opts->profile, &proxy_pid, proxy_path, err, errlen)) < 0)
        goto fail;
    if (proxy_pid) {
        /* The agent's environment plus the proxy variables every CLI honours. */
        size_t n = 0;
        while (s.envp[n])
            n++;
        allow_env = calloc(n + 5, sizeof *allow_env);
        if (!allow_env) {
            rc = -ENOMEM;
            goto fail;
        }
        memcpy(allow_env, s.envp, n * sizeof *allow_env);
        allow_env[n++] = "HTTPS_PROXY=http://127.0.0.1:3128";
        allow_env[n++] = "https_proxy=http://127.0.0.1:3128";
        allow_env[n++] = "HTTP_PROXY=http://127.0.0.1:3128";
        allow_env[n++] = "http_proxy=http://127.0.0.1:3128";
        s.envp = allow_env;
    }
    if (sandboxed) {
        const char *exe = strchr(opts->argv[0], '/') ? opts->argv[0] : NULL;
        if ((rc = nx_mount_plan(opts->profile, exe, opts->cwd, proxy_pid ? proxy_path : NULL,
                                &s.plan, err, errlen)) < 0)
            goto fail;
        unsigned long flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC |
                              CLONE_NEWUTS | CLONE_NEWCGROUP;
        if (opts->profile->net != NX_NET_HOST)
            flags |= CLONE_NEWNET;
        pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0)
            init_main(&s);
    } else {
        pid_t parent = getpid();
        pid = fork();
        if (pid == 0) {
            if (setsid() < 0)
                child_fail(s.rep[1], STEP_SETSID);
            if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                child_fail(s.rep[1], STEP_PDEATHSIG);
            if (getppid() != parent)
                _exit(127);
            reset_signals();
            child_stdio(&s, s.rep[1]);
            agent_exec(&s, s.rep[1], false);
        }
    }
    if (pid < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s '%s': %s", sandboxed ? "clone" : "fork", opts->argv[0],
                 strerror(errno));
        goto fail;
    }
    close(s.rep[1]);
    s.rep[1] = -1;
    if (sandboxed) {
        close(s.go[0]);
        s.go[0] = -1;
        /* One id inside (0) mapped to ours outside: the agent is "root" in a
         * namespace where it holds no capability and owns nothing of the
         * host that is not bound in. */
        char map[64];
        snprintf(map, sizeof map, "0 %d 1\n", (int)getuid());
        rc = write_proc(pid, "uid_map", map);
        if (rc == 0)
            rc = write_proc(pid, "setgroups", "deny");
        snprintf(map, sizeof map, "0 %d 1\n", (int)getgid());
        if (rc == 0)
            rc = write_proc(pid, "gid_map", map);
        if (rc < 0) {
            snprintf(err, errlen, "user namespace maps for '%s': %s", opts->argv[0],
                     strerror(-rc));
            goto fail_child;
        }
        s.have_cgroup = nx_cgroup_attach(opts->profile, pid, cgroups) > 0;
        const nx_sandbox_profile_t *pr = opts->profile;
        static bool s_said;
        if (!s.have_cgroup && (pr->mem_bytes || pr->pids || pr->cpu_percent) && !s_said) {
            /* Said once per process, as the fallback is the same every time. */
            s_said = true;
            fprintf(stderr, "nexus sandbox: no usable cgroup here; memory and process limits "
                            "fall back to rlimits (RLIMIT_AS, RLIMIT_NPROC), and no CPU quota\n");
        }
        if (write(s.go[1], s.have_cgroup ? "c" : "g", 1) != 1) {
            rc = -errno;
            snprintf(err, errlen, "sandbox start: %s", strerror(errno));
            goto fail_child;
        }
        /* The filter does not depend on the profile yet: compile it once per
         * process (an employee spawns many agents), the first time while the
         * new sandbox builds its root on the other core. */
        static struct sock_fprog s_filter;
        if (!s_filter.filter &&
            (rc = nx_seccomp_compile(opts->profile, &s_filter, err, errlen)) < 0)
            goto fail_child;
        uint32_t ninsns = s_filter.len;
        if (write(s.go[1], &ninsns, sizeof ninsns) != (ssize_t)sizeof ninsns ||
            write(s.go[1], s_filter.filter, ninsns * sizeof *s_filter.filter) !=
                (ssize_t)(ninsns * sizeof *s_filter.filter)) {
            rc = -EPIPE;
            snprintf(err, errlen, "sandbox start: the sandbox went away before its filter");
            goto fail_child;
        }
        close(s.go[1]);
        s.go[1] = -1;
    }
    nx_report_t r;
    ssize_t n;
    do
        n = read(s.rep[0], &r, sizeof r);
    while (n < 0 && errno == EINTR);
    bool ok = sandboxed ? (n == (ssize_t)sizeof r && r.step == STEP_READY) : n == 0;
    if (!ok) {
        if (n == (ssize_t)sizeof r) {
            rc = -r.value;
            if (r.step == STEP_MOUNT)
                snprintf(err, errlen, "sandbox mount of '%s' for '%s': %s",
                         s.plan.failed ? s.plan.failed : "?", opts->argv[0], strerror(r.value));
            else
                snprintf(err, errlen, "%s '%s': %s", nx_sandbox_step_name(r.step), opts->argv[0],
                         strerror(r.value));
        } else {
            rc = -ECHILD;
            snprintf(err, errlen, "sandbox for '%s' died while starting", opts->argv[0]);
        }
        goto fail_child;
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        rc = -errno;
        snprintf(err, errlen, "pidfd_open: %s", strerror(errno));
        goto fail_child;
    }
    memset(ret_child, 0, sizeof *ret_child);
    ret_child->pid = pid;
    ret_child->pidfd = pidfd;
    ret_child->stdin_fd = s.in[1];
    ret_child->stdout_fd = s.out[0];
    ret_child->stderr_fd = s.err[0];
    ret_child->status_fd = -1;
    if (sandboxed) {
        ret_child->status_fd = s.rep[0];
        s.rep[0] = -1;
    }
    memcpy(ret_child->cgroups, cgroups, sizeof cgroups);
    ret_child->proxy_pid = proxy_pid;
    memcpy(ret_child->proxy_path, proxy_path, sizeof proxy_path);
    free(allow_env);
    for (int i = 0; i < 3; i++) {
        int fd = i == 0 ? s.in[1] : i == 1 ? s.out[0] : s.err[0];
        if (fd >= 0)
            fcntl(fd, F_SETFL, O_NONBLOCK);
    }
    s.in[1] = s.out[0] = s.err[0] = -1;
    close_pair(s.in);
    close_pair(s.out);
    close_pair(s.err);
    close_pair(s.rep);
    nx_mount_plan_free(&s.plan);
    return 0;
fail_child:
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    nx_cgroup_remove(cgroups);
fail:
    if (proxy_pid) {
        kill(proxy_pid, SIGKILL);
        waitpid(proxy_pid, NULL, 0);
        unlink(proxy_path);
    }
    free(allow_env);
    for (size_t i = 0; i < 5; i++)
        close_pair(all[i]);
    nx_mount_plan_free(&s.plan);
    return rc;
}

int nx_sandbox_kill(const nx_child_t *child, int sig) {
    if (child->pid <= 0)
        return -ESRCH;
    return kill(-child->pid, sig) < 0 ? -errno : 0;
}

int nx_sandbox_reap(nx_child_t *child, int raw) {
    int status = raw;
    if (child->status_fd >= 0) {
        fcntl(child->status_fd, F_SETFL, O_NONBLOCK);
        nx_report_t r;
        while (read(child->status_fd, &r, sizeof r) == (ssize_t)sizeof r)
            if (r.step == STEP_EXIT)
                status = r.value;
    }
    nx_child_close(child);
    nx_cgroup_remove(child->cgroups);
    if (child->proxy_pid > 0) {
        kill(child->proxy_pid, SIGKILL);
        waitpid(child->proxy_pid, NULL, 0);
        unlink(child->proxy_path);
        child->proxy_pid = 0;
    }
    return status;
}

void nx_child_close(nx_child_t *child) {
    int *fds[] = {&child->pidfd, &child->stdin_fd, &child->stdout_fd, &child->stderr_fd,
                  &child->status_fd};
    for (size_t i = 0; i < 5; i++)
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
}
