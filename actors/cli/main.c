/*  main.c - the `nexus` launcher. The sandbox verbs run from here, linked
 *  against libc and libseccomp only, so that `nexus sandbox run` starts as
 *  fast as a sandbox tool should; so does `nexus agent-sim`, the simulated
 *  agent that runs inside those sandboxes. Every other verb lives in
 *  libnexus-core.so (ZeroMQ, SQLite, YAML, ...), loaded from beside this
 *  executable or from ../lib/nexus/ when installed. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nx_agents.h"
#include "nx_cli.h"
#include "nx_sandbox.h"

static void *load_core(char *path, size_t len) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        fprintf(stderr, "nexus: /proc/self/exe: %s\n", strerror(errno));
        return NULL;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    *slash = '\0';
    snprintf(path, len, "%s/libnexus-core.so", exe);
    if (access(path, F_OK) != 0)
        snprintf(path, len, "%s/../lib/nexus/libnexus-core.so", exe);
    return dlopen(path, RTLD_NOW | RTLD_LOCAL);
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "sandbox"))
        return nx_sandbox_main(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "agent-sim"))
        _exit(nx_agent_sim_main(argc - 1, argv + 1)); /* see nx_cli_main */
    if (argc >= 2 && !strcmp(argv[1], "sandbox-proxy"))
        return nx_proxy_main(argc - 1, argv + 1);

    char path[PATH_MAX + 64] = "libnexus-core.so";
    void *core = load_core(path, sizeof path);
    int (*cli_main)(int, char **) = core ? (int (*)(int, char **))dlsym(core, "nx_cli_main") : NULL;
    if (!cli_main) {
        const char *why = dlerror();
        fprintf(stderr, "nexus: cannot load %s: %s\n", path, why ? why : "no nx_cli_main in it");
        return NX_EXIT_USAGE;
    }
    return cli_main(argc, argv);
}
