/*  sandbox_int.h - what the files of the sandbox module share.
 *
 *  The parent computes everything that allocates (the mount plan, the
 *  seccomp program, the uid maps) before clone(); the children only run
 *  system calls over that prepared data, because the employee that forks
 *  them is multi-threaded and only async-signal-safe calls are allowed
 *  between fork and execve. One file per kernel facility, as in nsjail. */
#ifndef NX_SANDBOX_INT_H
#define NX_SANDBOX_INT_H

#include <linux/filter.h>
#include <stddef.h>

#include "nx_sandbox.h"

/* The steps a child can fail at, reported to the parent with errno. */
enum {
    STEP_READY = 0, STEP_SETSID, STEP_PDEATHSIG, STEP_STDIO, STEP_MOUNT, STEP_PIVOT,
    STEP_HOSTNAME, STEP_NET, STEP_FORK, STEP_RLIMIT, STEP_CAPS, STEP_NNP, STEP_SECCOMP,
    STEP_CHDIR, STEP_EXEC, STEP_EXIT, STEP__COUNT
};
const char *nx_sandbox_step_name(int step);

typedef struct {
    int step;   /* STEP_* */
    int value;  /* errno, or the agent's wait status for STEP_EXIT */
} nx_report_t;

/* ---- mount.c: the new root ---- */
typedef enum { OP_MKDIR, OP_TOUCH, OP_SYMLINK, OP_BIND_RO, OP_BIND_RW, OP_TMPFS, OP_PROC } op_kind_t;
typedef struct {
    op_kind_t kind;
    char *src;    /* host path (binds), link target (symlink), mount data (tmpfs) */
    char *dst;    /* absolute path under the new root's mount point */
    int mode;     /* mkdir/touch mode */
} mount_op_t;
typedef struct {
    char root[256];    /* the (empty, host) directory the new root is mounted on */
    char oldroot[300]; /* root + "/.oldroot" */
    mount_op_t *ops;
    size_t nops;
    const char *failed; /* the dst of the op that failed, for the message */
} mount_plan_t;

/* Builds the plan for a profile: the system read-only, /proc, /dev, /tmp,
 * the profile's binds, and the agent's own binary when it lives outside
 * the bound system folders. Returns 0 or -errno (with err). */
int nx_mount_plan(const nx_sandbox_profile_t *p, const char *exe, const char *cwd,
                  const char *proxy_socket, mount_plan_t *plan, char *err, size_t errlen);
void nx_mount_plan_free(mount_plan_t *plan);
/* In the child: runs the plan and pivots into the new root. 0 or -errno. */
int nx_mount_run(mount_plan_t *plan);

/* ---- seccomp.c ---- */
/* Compiles the filter (libseccomp) into *prog (filter malloc'd). */
int nx_seccomp_compile(const nx_sandbox_profile_t *p, struct sock_fprog *prog, char *err,
                       size_t errlen);

/* ---- caps.c: privileges and rlimits (child side, syscalls only) ---- */
int nx_caps_drop_all(void);
int nx_rlimits_apply(const nx_sandbox_profile_t *p, bool have_cgroup);

/* ---- cgroup.c ---- */
/* Creates the child's cgroups (v2 where delegated, else v1 memory, pids,
 * cpu), sets the limits and moves pid in. Returns how many controllers
 * took effect (0 = none usable; the caller falls back to rlimits). */
int nx_cgroup_attach(const nx_sandbox_profile_t *p, pid_t pid, char dirs[3][160]);
void nx_cgroup_remove(char dirs[3][160]);
/* A one-line description of what cgroups this machine offers us. */
void nx_cgroup_describe(char *buf, size_t len);

/* ---- proxy.c ---- */
#define NX_PROXY_PORT 3128
#define NX_PROXY_INSIDE "/run/nexus-proxy.sock"
/* In init: listens on 127.0.0.1:3128 in the sandbox's network namespace and
 * forwards each connection to the bound proxy socket. */
int nx_proxy_forwarder_start(const char *unix_path);

/* ---- net.c ---- */
/* In a fresh network namespace: brings loopback up. */
int nx_net_loopback_up(void);

#endif
