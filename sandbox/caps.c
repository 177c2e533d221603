/*  caps.c - capabilities, no_new_privs and rlimits. Runs in the child
 *  between fork and execve: raw system calls only. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox_int.h"

/* Empties the bounding, ambient, effective, permitted and inheritable sets. */
int nx_caps_drop_all(void) {
    for (int cap = 0; cap <= 63; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            return -errno;
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{0, 0, 0}, {0, 0, 0}};
    if (syscall(SYS_capset, &hdr, data) < 0)
        return -errno;
    return 0;
}

static int limit(int resource, uint64_t value) {
    struct rlimit rl = {value, value};
    return setrlimit(resource, &rl) < 0 ? -errno : 0;
}

int nx_rlimits_apply(const nx_sandbox_profile_t *p, bool have_cgroup) {
    int rc = 0;
    rc |= limit(RLIMIT_CORE, 0);
    rc |= limit(RLIMIT_FSIZE, p->fsize_bytes ? p->fsize_bytes : (1ull << 30));
    rc |= limit(RLIMIT_NOFILE, p->nofile ? p->nofile : 1024);
    /* Without a cgroup the rlimits are the only brake; with one, the
     * cgroup is exact and these would only get in the way. */
    if (!have_cgroup && p->mem_bytes)
        rc |= limit(RLIMIT_AS, p->mem_bytes);
    if (!have_cgroup && p->pids)
        rc |= limit(RLIMIT_NPROC, p->pids);
    return rc ? -EPERM : 0;
}
