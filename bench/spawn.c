/*  bench_spawn - sandboxed spawn latency: `nexus sandbox run -- /bin/true`
 *  against a plain fork + exec of /bin/true, `bwrap` with comparable
 *  isolation, and `unshare` from util-linux, all measured in one run on
 *  the same machine; and nx_sandbox_spawn() called from a running process,
 *  the path an employee takes for every agent (no nexus binary to start).
 *  Prints JSON: p50/p99/mean per method and the ratios.
 *
 *  Usage: bench_spawn NEXUS_BINARY [N]   (N spawns per method, default 200) */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nx_sandbox.h"

extern char **environ;

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    const char *name;
    char *const *argv;
    double p50, p99, mean;
    int failures;
    bool ran;
} method_t;

/* Sorts the n samples (us) into p50/p99/mean (ms) and frees them. */
static void summarize(method_t *m, double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += t[i];
    m->p50 = t[n / 2] / 1000;
    m->p99 = t[(n * 99) / 100 >= n ? n - 1 : (n * 99) / 100] / 1000;
    m->mean = sum / n / 1000;
    m->ran = m->failures < n;
    free(t);
}

static void measure(method_t *m, int n) {
    double *t = calloc((size_t)n, sizeof *t);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", 1, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", 1, 0);
    for (int i = 0; i < n; i++) {
        double t0 = now_us();
        pid_t pid;
        int st = -1;
        if (posix_spawn(&pid, m->argv[0], &fa, NULL, m->argv, environ) == 0)
            waitpid(pid, &st, 0);
        t[i] = now_us() - t0;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            m->failures++;
    }
    posix_spawn_file_actions_destroy(&fa);
    summarize(m, t, n);
}

/* The path an employee takes: nx_sandbox_spawn() from a running process,
 * without starting the nexus binary. */
static void measure_library(method_t *m, int n) {
    double *t = calloc((size_t)n, sizeof *t);
    nx_sandbox_profile_t p = {.net = NX_NET_NONE};
    char *argv[] = {"/bin/true", NULL};
    nx_spawn_opts_t o = {.argv = argv, .profile = &p};
    for (int i = 0; i < n; i++) {
        double t0 = now_us();
        nx_child_t c;
        char err[256];
        int st = -1;
        if (nx_sandbox_spawn(&o, &c, err, sizeof err) == 0) {
            waitpid(c.pid, &st, 0);
            st = nx_sandbox_reap(&c, st);
        }
        t[i] = now_us() - t0;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            m->failures++;
    }
    summarize(m, t, n);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_spawn NEXUS_BINARY [N]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 200;
    char *nexus_argv[] = {argv[1], "sandbox", "run", "--", "/bin/true", NULL};
    char *plain_argv[] = {"/bin/true", NULL};
    /* bwrap with what `nexus sandbox run` does: new namespaces, a read-only
     * system, /proc, /dev, a private /tmp, capabilities dropped. */
    char *bwrap_argv[] = {"/usr/bin/bwrap", "--unshare-all", "--die-with-parent",
                          "--new-session", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin",
                          "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64",
                          "/lib64", "--symlink", "usr/sbin", "/sbin", "--proc", "/proc", "--dev",
                          "/dev", "--tmpfs", "/tmp", "--cap-drop", "ALL", "/bin/true", NULL};
    char *unshare_argv[] = {"/usr/bin/unshare", "--user", "--map-root-user", "--pid", "--fork",
                            "--mount", "--ipc", "--uts", "--net", "/bin/true", NULL};
    method_t m[] = {{"fork_exec", plain_argv, 0, 0, 0, 0, false},
                    {"nexus_sandbox", nexus_argv, 0, 0, 0, 0, false},
                    {"bwrap", bwrap_argv, 0, 0, 0, 0, false},
                    {"unshare", unshare_argv, 0, 0, 0, 0, false},
                    {"nexus_sandbox_library", plain_argv, 0, 0, 0, 0, false}};
    size_t nm = sizeof m / sizeof m[0];
    for (size_t i = 0; i < nm; i++) {
        if (access(m[i].argv[0], X_OK) != 0) {
            fprintf(stderr, "bench_spawn: %s: %s not found, skipped\n", m[i].name, m[i].argv[0]);
            continue;
        }
        fprintf(stderr, "bench_spawn: %s x %d ...\n", m[i].name, n);
        if (i == nm - 1)
            measure_library(&m[i], n);
        else
            measure(&m[i], n);
    }
    printf("{\n  \"benchmark\": \"sandboxed spawn of /bin/true\",\n  \"spawns\": %d,\n", n);
    printf("  \"cpus\": %ld,\n  \"results\": {\n", sysconf(_SC_NPROCESSORS_ONLN));
    bool first = true;
    for (size_t i = 0; i < nm; i++) {
        if (!m[i].ran)
            continue;
        printf("%s    \"%s\": {\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"mean_ms\": %.3f, "
               "\"failures\": %d}",
               first ? "" : ",\n", m[i].name, m[i].p50, m[i].p99, m[i].mean, m[i].failures);
        first = false;
    }
    printf("\n  },\n  \"ratios\": {");
    first = true;
    if (m[1].ran && m[0].ran) {
        printf("\"nexus_p50_vs_fork_exec\": %.2f", m[1].p50 / m[0].p50);
        first = false;
    }
    if (m[1].ran && m[2].ran)
        printf("%s\"nexus_p50_vs_bwrap\": %.2f", first ? "" : ", ", m[1].p50 / m[2].p50);
    if (m[4].ran && m[2].ran)
        printf(", \"nexus_library_p50_vs_bwrap\": %.2f, \"nexus_library_p50_vs_fork_exec\": %.2f",
               m[4].p50 / m[2].p50, m[4].p50 / m[0].p50);
    printf("}\n}\n");
    return 0;
}
