/*  cgroup.c - memory, process and CPU limits through cgroups.
 *
 *  cgroup v2 where the unified hierarchy has the controllers delegated to
 *  us; otherwise the v1 memory, pids and cpu hierarchies (a hybrid host,
 *  like this project's CI, has v1 writable as root and an empty v2 tree).
 *  Each sandbox gets nexus/<pid> in every hierarchy used; the parent moves
 *  the sandbox's init in before it starts, and removes the groups after. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox_int.h"

static int write_file(const char *dir, const char *file, const char *value) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, value, strlen(value));
    int rc = n < 0 ? -errno : 0;
    close(fd);
    return rc;
}

static bool v2_has(const char *controller) {
    static char buf[256];
    int fd = open("/sys/fs/cgroup/cgroup.subtree_control", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    return strstr(buf, controller) != NULL;
}

/* Makes base/nexus/<pid>; returns 0 and the path, or -errno. */
static int make_group(const char *base, pid_t pid, char out[160]) {
    char parent[160];
    snprintf(parent, sizeof parent, "%s/nexus", base);
    if (mkdir(parent, 0755) < 0 && errno != EEXIST)
        return -errno;
    snprintf(out, 160, "%s/%d", parent, (int)pid);
    if (mkdir(out, 0755) < 0 && errno != EEXIST) {
        out[0] = '\0';
        return -errno;
    }
    return 0;
}

int nx_cgroup_attach(const nx_sandbox_profile_t *p, pid_t pid, char dirs[3][160]) {
    char value[64], pidstr[32];
    int used = 0;
    snprintf(pidstr, sizeof pidstr, "%d", (int)pid);
    for (int i = 0; i < 3; i++)
        dirs[i][0] = '\0';
    if (!p->mem_bytes && !p->pids && !p->cpu_percent)
        return 0;
    if (v2_has("memory") && v2_has("pids")) {
        if (make_group("/sys/fs/cgroup", pid, dirs[0]) < 0)
            return 0;
        if (p->mem_bytes) {
            snprintf(value, sizeof value, "%llu", (unsigned long long)p->mem_bytes);
            used += write_file(dirs[0], "memory.max", value) == 0;
            write_file(dirs[0], "memory.swap.max", "0");
        }
        if (p->pids) {
            snprintf(value, sizeof value, "%llu", (unsigned long long)p->pids);
            used += write_file(dirs[0], "pids.max", value) == 0;
        }
        if (p->cpu_percent) {
            snprintf(value, sizeof value, "%u 100000", p->cpu_percent * 1000);
            used += write_file(dirs[0], "cpu.max", value) == 0;
        }
        if (write_file(dirs[0], "cgroup.procs", pidstr) < 0)
            used = 0;
        return used;
    }
    struct {
        const char *base, *file;
        uint64_t value;
    } v1[3] = {{"/sys/fs/cgroup/memory", "memory.limit_in_bytes", p->mem_bytes},
               {"/sys/fs/cgroup/pids", "pids.max", p->pids},
               {"/sys/fs/cgroup/cpu", "cpu.cfs_quota_us", p->cpu_percent * 1000ull}};
    for (int i = 0; i < 3; i++) {
        if (!v1[i].value || make_group(v1[i].base, pid, dirs[i]) < 0)
            continue;
        snprintf(value, sizeof value, "%llu", (unsigned long long)v1[i].value);
        if (i == 2)
            write_file(dirs[i], "cpu.cfs_period_us", "100000");
        if (i == 0)
            write_file(dirs[i], "memory.memsw.limit_in_bytes", value);
        if (write_file(dirs[i], v1[i].file, value) == 0 &&
            write_file(dirs[i], "cgroup.procs", pidstr) == 0)
            used++;
    }
    return used;
}

void nx_cgroup_remove(char dirs[3][160]) {
    for (int i = 0; i < 3; i++)
        if (dirs[i][0]) {
            rmdir(dirs[i]);
            dirs[i][0] = '\0';
        }
}

void nx_cgroup_describe(char *buf, size_t len) {
    bool v2 = v2_has("memory") && v2_has("pids");
    bool mem = access("/sys/fs/cgroup/memory/cgroup.procs", W_OK) == 0;
    bool pids = access("/sys/fs/cgroup/pids/cgroup.procs", W_OK) == 0;
    bool cpu = access("/sys/fs/cgroup/cpu/cgroup.procs", W_OK) == 0;
    if (v2)
        snprintf(buf, len, "cgroup v2 with memory and pids delegated: yes");
    else if (mem || pids || cpu)
        snprintf(buf, len, "cgroup v2 controllers: none; cgroup v1: memory %s, pids %s, cpu %s",
                 mem ? "yes" : "no", pids ? "yes" : "no", cpu ? "yes" : "no");
    else
        snprintf(buf, len, "cgroups: none usable (limits fall back to rlimits)");
}
