/*  seccomp.c - the system call filter, compiled with libseccomp in the
 *  parent and loaded by the agent's process last, just before execve.
 *
 *  Default allow, like Docker's profile in spirit but written as a block
 *  list of what escapes use; each blocked call fails with EPERM, except
 *  clone3, whose flags live in memory a filter cannot read: it fails with
 *  ENOSYS so that libc falls back to clone, whose flags are checked.
 *  System calls of other ABIs (i386, x32) kill the process. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sandbox_int.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef TIOCLINUX
#define TIOCLINUX 0x541C
#endif

static const char *const s_blocked[] = {
    "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount", "umount2",
    "pivot_root", "move_mount", "open_tree", "fsopen", "fsmount", "fspick", "fsconfig",
    "mount_setattr", "unshare", "setns", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "bpf", "perf_event_open", "keyctl", "add_key",
    "request_key", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "open_by_handle_at", "name_to_handle_at", "acct", "swapon", "swapoff", "reboot",
    "syslog", "lookup_dcookie", "quotactl", "nfsservctl", "vhangup", "iopl", "ioperm",
    "create_module", "get_kernel_syms", "query_module", "uselib", "kcmp", "fanotify_init",
    "pidfd_getfd", NULL};

int nx_seccomp_compile(const nx_sandbox_profile_t *p, struct sock_fprog *prog, char *err,
                       size_t errlen) {
    int rc = 0, fd = -1;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) {
        snprintf(err, errlen, "seccomp_init failed");
        return -ENOMEM;
    }
#define TRY(call, what)                                                           \
    do {                                                                          \
        if ((rc = (call)) < 0) {                                                  \
            snprintf(err, errlen, "seccomp %s: %s", what, strerror(-rc));         \
            goto out;                                                             \
        }                                                                         \
    } while (0)
    TRY(seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS), "bad arch");
    for (int i = 0; s_blocked[i]; i++) {
        int nr = seccomp_syscall_resolve_name(s_blocked[i]);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not on this architecture */
        TRY(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0), s_blocked[i]);
    }
    TRY(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0), "clone3");
    const uint64_t ns_flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
                              CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP | CLONE_NEWTIME;
    /* clone with any namespace flag: one rule per flag (a rule's conditions
     * are AND-ed, and there is no "masked not-equal"). */
    for (int bit = 0; bit < 64; bit++) {
        uint64_t flag = 1ull << bit;
        if (!(ns_flags & flag))
            continue;
        TRY(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)),
            "clone flags");
    }
    /* Terminal injection: the ioctl number is an int, compare the low 32 bits. */
    TRY(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                         SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI)),
        "TIOCSTI");
    TRY(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                         SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCLINUX)),
        "TIOCLINUX");
    /* personality: refuse the flags that weaken the address space (no
     * randomisation, executable reads, page zero). libseccomp allows one
     * condition per argument, so each flag is a rule; bit 31 in the mask
     * spares the query personality(0xffffffff). */
    static const uint64_t bad_personality[] = {0x0040000 /* ADDR_NO_RANDOMIZE */,
                                               0x0400000 /* READ_IMPLIES_EXEC */,
                                               0x0100000 /* MMAP_PAGE_ZERO */,
                                               0x0200000 /* ADDR_COMPAT_LAYOUT */,
                                               0x0800000 /* ADDR_LIMIT_32BIT */};
    for (size_t i = 0; i < sizeof bad_personality / sizeof bad_personality[0]; i++)
        TRY(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, bad_personality[i] | 0x80000000u,
                                     bad_personality[i])),
            "personality");
    /* Socket families: Unix, IPv4 and IPv6 only; raw packet, netlink,
     * bluetooth, vsock... fail with EAFNOSUPPORT, as if the kernel lacked
     * them. One condition per argument, so: 0, 3..9, and above 10. */
    TRY(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
                         SCMP_A0(SCMP_CMP_GT, AF_INET6)),
        "socket");
    for (int fam = 0; fam < AF_INET6; fam++)
        if (fam != AF_UNIX && fam != AF_INET)
            TRY(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
                                 SCMP_A0(SCMP_CMP_EQ, (uint64_t)fam)),
                "socket");
    (void)p;
    fd = memfd_create("nexus-seccomp", MFD_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "memfd_create: %s", strerror(errno));
        goto out;
    }
    TRY(seccomp_export_bpf(ctx, fd), "export");
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || size % sizeof(struct sock_filter)) {
        rc = -EINVAL;
        snprintf(err, errlen, "seccomp export produced %lld bytes", (long long)size);
        goto out;
    }
    prog->len = (unsigned short)(size / sizeof(struct sock_filter));
    prog->filter = malloc((size_t)size);
    if (!prog->filter || pread(fd, prog->filter, (size_t)size, 0) != size) {
        free(prog->filter);
        prog->filter = NULL;
        rc = -EIO;
        snprintf(err, errlen, "seccomp: cannot read the program back");
    }
out:
#undef TRY
    if (fd >= 0)
        close(fd);
    seccomp_release(ctx);
    return rc;
}
