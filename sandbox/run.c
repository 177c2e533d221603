/*  run.c - `nexus sandbox run` and `nexus sandbox check`: the sandbox as
 *  a command of its own, like bwrap or nsjail. It passes the command's
 *  exit status through (128 + signal when it was killed). */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nx_base.h"
#include "sandbox_int.h"

static bool file_has(const char *path, const char *what) {
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char buf[256];
    bool found = false;
    while (fgets(buf, sizeof buf, f))
        found |= strstr(buf, what) != NULL;
    fclose(f);
    return found;
}

int nx_sandbox_check(char *buf, size_t len) {
    FILE *out = fmemopen(buf, len, "w");
    if (!out)
        return -ENOMEM;
    /* The real test: build a sandbox and run /bin/true in it. */
    nx_sandbox_profile_t p = {.net = NX_NET_NONE};
    char *argv[] = {"/bin/true", NULL};
    nx_spawn_opts_t o = {.argv = argv, .profile = &p};
    nx_child_t child;
    char err[512];
    int rc = nx_sandbox_spawn(&o, &child, err, sizeof err);
    if (rc == 0) {
        int st;
        waitpid(child.pid, &st, 0);
        st = nx_sandbox_reap(&child, st);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            rc = -EIO;
            snprintf(err, sizeof err, "/bin/true exited with status %d inside", st);
        }
    }
    fprintf(out, "user namespaces: %s\n",
            access("/proc/self/ns/user", F_OK) == 0 ? "yes" : "no");
    fprintf(out, "seccomp filters: %s\n",
            file_has("/proc/self/status", "Seccomp_filters") ? "yes" : "unknown");
    char cg[200];
    nx_cgroup_describe(cg, sizeof cg);
    fprintf(out, "%s\n", cg);
    fprintf(out, "landlock: %s (not used yet)\n",
            file_has("/sys/kernel/security/lsm", "landlock") ? "available" : "not available");
    fprintf(out, "sandbox: %s%s\n", rc == 0 ? "works" : "FAILS: ", rc == 0 ? "" : err);
    fclose(out);
    return rc;
}

static int add_bind(const char **list, size_t *n, const char *path, const char *what) {
    if (*n >= NX_SANDBOX_MAX_BINDS) {
        fprintf(stderr, "nexus sandbox: too many %s binds (at most %d)\n", what,
                NX_SANDBOX_MAX_BINDS);
        return -1;
    }
    if (path[0] != '/') {
        fprintf(stderr, "nexus sandbox: --%s %s: the path must be absolute\n", what, path);
        return -1;
    }
    list[(*n)++] = path;
    return 0;
}

static void usage(FILE *f) {
    fputs("usage: nexus sandbox run [--net none|host|allow:HOST:PORT,...] [--ro PATH] [--rw PATH] [--mem 512M]\n"
          "                         [--pids 64] [--cpu PERCENT] [--time 30s] [--cwd DIR] -- CMD ARGS\n"
          "       nexus sandbox check\n",
          f);
}

int nx_sandbox_main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "check")) {
        char buf[2048];
        int rc = nx_sandbox_check(buf, sizeof buf);
        fputs(buf, stdout);
        return rc == 0 ? 0 : 1;
    }
    if (strcmp(argv[1], "run") != 0) {
        fprintf(stderr, "nexus sandbox: unknown command '%s' (run, check)\n", argv[1]);
        return 2;
    }
    static const struct option opts[] = {
        {"net", required_argument, 0, 'n'},  {"ro", required_argument, 0, 'r'},
        {"rw", required_argument, 0, 'w'},   {"mem", required_argument, 0, 'm'},
        {"pids", required_argument, 0, 'p'}, {"cpu", required_argument, 0, 'c'},
        {"time", required_argument, 0, 't'}, {"cwd", required_argument, 0, 'd'},
        {"profile", required_argument, 0, 'P'}, {0, 0, 0, 0}};
    nx_sandbox_profile_t p = {.net = NX_NET_NONE};
    int64_t time_ms = 0;
    const char *cwd = NULL;
    int opt;
    optind = 1;
    char **sub = argv + 1;
    int subc = argc - 1;
    while ((opt = getopt_long(subc, sub, "+", opts, NULL)) != -1) {
        switch (opt) {
        case 'n':
            if (!strcmp(optarg, "none"))
                p.net = NX_NET_NONE;
            else if (!strcmp(optarg, "host"))
                p.net = NX_NET_HOST;
            else if (!strncmp(optarg, "allow:", 6)) {
                p.net = NX_NET_ALLOW;
                static char list[2048];
                snprintf(list, sizeof list, "%s", optarg + 6);
                char *save = NULL;
                for (char *e = strtok_r(list, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
                    if (p.nallow >= NX_SANDBOX_MAX_BINDS || !strchr(e, ':')) {
                        fprintf(stderr, "nexus sandbox: --net allow: '%s' is not HOST:PORT (at "
                                        "most %d)\n",
                                e, NX_SANDBOX_MAX_BINDS);
                        return 2;
                    }
                    p.allow[p.nallow++] = e;
                }
            } else {
                fprintf(stderr, "nexus sandbox: --net %s: expected none, host or "
                                "allow:HOST:PORT,...\n",
                        optarg);
                return 2;
            }
            break;
        case 'r':
            if (add_bind(p.ro, &p.nro, optarg, "ro") < 0)
                return 2;
            break;
        case 'w':
            if (add_bind(p.rw, &p.nrw, optarg, "rw") < 0)
                return 2;
            break;
        case 'm':
            if (nx_parse_size(optarg, &p.mem_bytes) < 0) {
                fprintf(stderr, "nexus sandbox: --mem %s: not a size (like 512M)\n", optarg);
                return 2;
            }
            break;
        case 'p': p.pids = strtoull(optarg, NULL, 10); break;
        case 'c': p.cpu_percent = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 't':
            if (nx_parse_duration(optarg, &time_ms) < 0) {
                fprintf(stderr, "nexus sandbox: --time %s: not a duration (like 30s)\n", optarg);
                return 2;
            }
            break;
        case 'd': cwd = optarg; break;
        case 'P':
            if (strcmp(optarg, "strict") != 0) {
                fprintf(stderr, "nexus sandbox: unknown profile '%s' (strict)\n", optarg);
                return 2;
            }
            break;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= subc) {
        fprintf(stderr, "nexus sandbox run: no command given (nexus sandbox run -- CMD ARGS)\n");
        return 2;
    }
    static char self_exe[4096];
    ssize_t len = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (len > 0)
        p.proxy_exe = self_exe;
    nx_spawn_opts_t o = {.argv = sub + optind, .cwd = cwd, .profile = &p, .inherit_stdio = true};
    extern char **environ;
    o.envp = environ;
    nx_child_t child;
    char err[512];
    int rc = nx_sandbox_spawn(&o, &child, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "nexus sandbox: %s\n", err);
        return 127;
    }
    /* Wall-clock limit: SIGTERM to the whole sandbox, SIGKILL 2 s later. */
    int64_t deadline = time_ms ? nx_mono_ms() + time_ms : 0;
    bool termed = false;
    signal(SIGINT, SIG_IGN); /* the terminal's Ctrl-C reaches the sandbox itself */
    for (;;) {
        struct pollfd pfd = {child.pidfd, POLLIN, 0};
        int timeout = -1;
        if (deadline)
            timeout = (int)(deadline - nx_mono_ms() > 0 ? deadline - nx_mono_ms() : 0);
        int n = poll(&pfd, 1, timeout);
        if (n > 0)
            break;
        if (n == 0 && deadline) {
            fprintf(stderr, "nexus sandbox: time limit (%lld ms) reached; %s\n",
                    (long long)time_ms, termed ? "killing it" : "sending SIGTERM");
            nx_sandbox_kill(&child, termed ? SIGKILL : SIGTERM);
            deadline = termed ? 0 : nx_mono_ms() + 2000;
            termed = true;
        }
    }
    int st;
    waitpid(child.pid, &st, 0);
    st = nx_sandbox_reap(&child, st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return WEXITSTATUS(st);
}
