/*  mount.c - the agent's filesystem: a fresh tmpfs root holding read-only
 *  binds of the system, a private /tmp, a new /proc, a minimal /dev and
 *  the profile's binds; then pivot_root into it and detach the host's.
 *
 *  The plan (paths, order) is computed by the parent; nx_mount_run() in
 *  the child performs it with system calls only. Binds keep their host
 *  path inside, so a workspace is at the same place for the agent. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox_int.h"

static int add(mount_plan_t *plan, op_kind_t kind, const char *src, const char *dst_inside,
               int mode) {
    mount_op_t *ops = realloc(plan->ops, (plan->nops + 1) * sizeof *ops);
    if (!ops)
        return -ENOMEM;
    plan->ops = ops;
    mount_op_t *op = &ops[plan->nops++];
    op->kind = kind;
    op->src = src ? strdup(src) : NULL;
    if (asprintf(&op->dst, "%s%s", plan->root, dst_inside) < 0)
        op->dst = NULL;
    op->mode = mode;
    return op->dst ? 0 : -ENOMEM;
}

/* Directories from the root down to path (exclusive), so a bind target's
 * parents exist. */
static int add_parents(mount_plan_t *plan, const char *path) {
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            int rc = add(plan, OP_MKDIR, NULL, buf, 0755);
            if (rc < 0)
                return rc;
            *p = '/';
        }
    return 0;
}

/* A host path into the same place inside: a symlink stays a symlink (as
 * /bin -> usr/bin on merged-/usr systems), a directory or file is bound. */
static int add_bind(mount_plan_t *plan, const char *path, bool rw, bool optional) {
    struct stat st;
    if (lstat(path, &st) < 0)
        return optional ? 0 : -errno;
    int rc = add_parents(plan, path);
    if (rc < 0)
        return rc;
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n < 0)
            return -errno;
        target[n] = '\0';
        return add(plan, OP_SYMLINK, target, path, 0);
    }
    rc = add(plan, S_ISDIR(st.st_mode) ? OP_MKDIR : OP_TOUCH, NULL, path,
             S_ISDIR(st.st_mode) ? 0755 : 0644);
    if (rc == 0)
        rc = add(plan, rw ? OP_BIND_RW : OP_BIND_RO, path, path, 0);
    return rc;
}

static bool under(const char *path, const char *dir) {
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

int nx_mount_plan(const nx_sandbox_profile_t *p, const char *exe, const char *cwd,
                  const char *proxy_socket, mount_plan_t *plan, char *err, size_t errlen) {
    static const char *const system_dirs[] = {"/usr", "/bin", "/sbin", "/lib", "/lib32",
                                              "/lib64", "/libx32", NULL};
    static const char *const etc_files[] = {
        "/etc/passwd", "/etc/group", "/etc/hosts", "/etc/nsswitch.conf", "/etc/resolv.conf",
        "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
        "/etc/alternatives", "/etc/ssl", "/etc/ca-certificates", "/etc/os-release",
        "/etc/debian_version", "/etc/mime.types", "/etc/gitconfig", NULL};
    memset(plan, 0, sizeof *plan);
    snprintf(plan->root, sizeof plan->root, "/tmp/.nexus-sandbox-%d", (int)getuid());
    snprintf(plan->oldroot, sizeof plan->oldroot, "%s/.oldroot", plan->root);
    /* The mount point is an empty directory on the host; every sandbox
     * mounts its own tmpfs over it inside its own mount namespace. */
    struct stat st;
    if (mkdir(plan->root, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "mkdir %s: %s", plan->root, strerror(errno));
        return -errno;
    }
    if (lstat(plan->root, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid()) {
        snprintf(err, errlen, "%s is not a directory of ours", plan->root);
        return -EPERM;
    }
    int rc = 0;
    for (int i = 0; system_dirs[i] && rc == 0; i++)
        rc = add_bind(plan, system_dirs[i], false, true);
    if (rc == 0)
        rc = add(plan, OP_MKDIR, NULL, "/etc", 0755);
    for (int i = 0; etc_files[i] && rc == 0; i++)
        rc = add_bind(plan, etc_files[i], false, true);
    /* /dev: a tmpfs with the harmless devices bound from the host. */
    if (rc == 0)
        rc = add(plan, OP_MKDIR, NULL, "/dev", 0755);
    if (rc == 0)
        rc = add(plan, OP_TMPFS, "mode=0755,size=64k", "/dev", 0);
    static const char *const devs[] = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                                       "/dev/urandom", NULL};
    for (int i = 0; devs[i] && rc == 0; i++) {
        rc = add(plan, OP_TOUCH, NULL, devs[i], 0666);
        if (rc == 0)
            rc = add(plan, OP_BIND_RW, devs[i], devs[i], 0);
    }
    static const char *const links[][2] = {{"/proc/self/fd", "/dev/fd"},
                                           {"/proc/self/fd/0", "/dev/stdin"},
                                           {"/proc/self/fd/1", "/dev/stdout"},
                                           {"/proc/self/fd/2", "/dev/stderr"}};
    for (size_t i = 0; i < 4 && rc == 0; i++)
        rc = add(plan, OP_SYMLINK, links[i][0], links[i][1], 0);
    if (rc == 0)
        rc = add(plan, OP_MKDIR, NULL, "/dev/shm", 01777);
    if (rc == 0)
        rc = add(plan, OP_TMPFS, "mode=1777,size=64m", "/dev/shm", 0);
    if (rc == 0)
        rc = add(plan, OP_MKDIR, NULL, "/proc", 0555);
    if (rc == 0)
        rc = add(plan, OP_PROC, NULL, "/proc", 0);
    char tmpopts[64];
    snprintf(tmpopts, sizeof tmpopts, "mode=1777,size=%llu",
             (unsigned long long)(p->tmp_bytes ? p->tmp_bytes : (256ull << 20)));
    if (rc == 0)
        rc = add(plan, OP_MKDIR, NULL, "/tmp", 01777);
    if (rc == 0)
        rc = add(plan, OP_TMPFS, tmpopts, "/tmp", 0);
    /* The agent's binary, when it is not in the system folders (a nexus
     * built in a source tree, a tool in /opt). */
    if (rc == 0 && exe && exe[0] == '/') {
        bool covered = false;
        for (int i = 0; system_dirs[i]; i++)
            covered |= under(exe, system_dirs[i]);
        /* Missing: leave it to execve to say so, with the step named. */
        if (!covered)
            rc = add_bind(plan, exe, false, true);
    }
    for (size_t i = 0; i < p->nro && rc == 0; i++) {
        rc = add_bind(plan, p->ro[i], false, false);
        if (rc < 0)
            snprintf(err, errlen, "read-only bind %s: %s", p->ro[i], strerror(-rc));
    }
    for (size_t i = 0; i < p->nrw && rc == 0; i++) {
        rc = add_bind(plan, p->rw[i], true, false);
        if (rc < 0)
            snprintf(err, errlen, "writable bind %s: %s", p->rw[i], strerror(-rc));
    }
    if (rc == 0 && cwd) {
        bool bound = false;
        for (size_t i = 0; i < p->nrw; i++)
            bound |= under(cwd, p->rw[i]);
        for (size_t i = 0; i < p->nro; i++)
            bound |= under(cwd, p->ro[i]);
        if (!bound) {
            rc = add_bind(plan, cwd, true, false);
            if (rc < 0)
                snprintf(err, errlen, "working directory %s: %s", cwd, strerror(-rc));
        }
    }
    if (rc == 0 && proxy_socket) {
        rc = add(plan, OP_MKDIR, NULL, "/run", 0755);
        if (rc == 0)
            rc = add(plan, OP_TOUCH, NULL, NX_PROXY_INSIDE, 0600);
        if (rc == 0)
            rc = add(plan, OP_BIND_RW, proxy_socket, NX_PROXY_INSIDE, 0);
    }
    if (rc < 0 && !*err)
        snprintf(err, errlen, "sandbox mount plan: %s", strerror(-rc));
    return rc;
}

void nx_mount_plan_free(mount_plan_t *plan) {
    for (size_t i = 0; i < plan->nops; i++) {
        free(plan->ops[i].src);
        free(plan->ops[i].dst);
    }
    free(plan->ops);
    plan->ops = NULL;
    plan->nops = 0;
}

/* ---- the child side: system calls only ---- */

static int run_op(const mount_plan_t *plan, const mount_op_t *op) {
    switch (op->kind) {
    case OP_MKDIR:
        return mkdir(op->dst, (mode_t)op->mode) < 0 && errno != EEXIST ? -errno : 0;
    case OP_TOUCH: {
        int fd = open(op->dst, O_WRONLY | O_CREAT | O_CLOEXEC, (mode_t)op->mode);
        if (fd < 0)
            return errno == EEXIST ? 0 : -errno;
        close(fd);
        return 0;
    }
    case OP_SYMLINK:
        return symlink(op->src, op->dst) < 0 && errno != EEXIST ? -errno : 0;
    case OP_TMPFS:
        return mount("tmpfs", op->dst, "tmpfs", MS_NOSUID | MS_NODEV, op->src) < 0 ? -errno : 0;
    case OP_PROC:
        return mount("proc", op->dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 ? -errno
                                                                                       : 0;
    case OP_BIND_RO:
    case OP_BIND_RW: {
        if (mount(op->src, op->dst, NULL, MS_BIND | MS_REC, NULL) < 0)
            return -errno;
        unsigned long flags = MS_BIND | MS_REMOUNT | MS_NOSUID;
        if (op->kind == OP_BIND_RO)
            flags |= MS_RDONLY;
        /* Device nodes are bound rw into /dev; everything else gets nodev. */
        if (strncmp(op->dst + strlen(plan->root), "/dev/", 5) != 0)
            flags |= MS_NODEV;
        return mount(NULL, op->dst, NULL, flags, NULL) < 0 ? -errno : 0;
    }
    }
    return -EINVAL;
}

int nx_mount_run(mount_plan_t *plan) {
    /* Nothing we mount may propagate back to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return plan->failed = "/", -errno;
    if (mount("tmpfs", plan->root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0)
        return plan->failed = plan->root, -errno;
    for (size_t i = 0; i < plan->nops; i++) {
        int rc = run_op(plan, &plan->ops[i]);
        if (rc < 0) {
            plan->failed = plan->ops[i].dst + strlen(plan->root);
            return rc;
        }
    }
    if (mkdir(plan->oldroot, 0700) < 0)
        return plan->failed = "/.oldroot", -errno;
    if (syscall(SYS_pivot_root, plan->root, plan->oldroot) < 0)
        return plan->failed = "pivot_root", -errno;
    if (chdir("/") < 0 || umount2("/.oldroot", MNT_DETACH) < 0)
        return plan->failed = "/.oldroot", -errno;
    rmdir("/.oldroot");
    /* The root itself is read-only; /tmp, /dev/shm and rw binds are not. */
    if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
        return plan->failed = "/ (read-only)", -errno;
    return 0;
}
