"""The attacks of the sandbox escape suite. Each case is a snippet of
Python run twice by /usr/bin/python3: inside `nexus sandbox run` and, as the
control, outside it. It prints one line; `inside` and `outside` say what
that line must be, so a case passes only if the attack fails inside AND
works outside (no case can pass by being broken).

Snippets get `libc` (ctypes), `sc(nr, *args)` -> (ret, errno) and `E`
(errno names) from PRELUDE."""

PRELUDE = r'''
import ctypes, errno as E, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return r, ctypes.get_errno()
def res(r):
    ret, err = r
    print("ok" if ret >= 0 else E.errorcode.get(err, str(err)))
'''

# getpid through int 0x80 (the i386 ABI) from executable memory, in a
# child: it is killed by SIGSYS (the filter), or by SIGSEGV when the kernel
# has no 32-bit emulation at all, or it returns (a kernel with emulation and
# no filter).
INT80 = r"""
import mmap, signal
pid = os.fork()
if pid == 0:
    m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    m.write(bytes([0xb8, 20, 0, 0, 0, 0xcd, 0x80, 0xc3]))
    f = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))
    f()
    os._exit(0)
st = os.waitpid(pid, 0)[1]
sig = os.WTERMSIG(st) if os.WIFSIGNALED(st) else 0
print({0: 'I386', signal.SIGSYS: 'SIGSYS', signal.SIGSEGV: 'NO-I386'}.get(sig, str(sig)))
"""

# x86_64 system call numbers
CASES = [
    # name, snippet, inside, outside
    ("ptrace", "res(sc(101, 0, 0, 0, 0))", "EPERM", "ok"),
    ("process_vm_readv",
     "buf = ctypes.create_string_buffer(8); src = ctypes.create_string_buffer(b'abcdefg');"
     "iov1 = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8);"
     "iov2 = (ctypes.c_void_p * 2)(ctypes.addressof(src), 8);"
     "res(sc(310, os.getpid(), ctypes.addressof(iov1), 1, ctypes.addressof(iov2), 1, 0))",
     "EPERM", "ok"),
    ("mount", "os.makedirs('/tmp/nx-esc-mnt', exist_ok=True);"
              "r = libc.mount(b'none', b'/tmp/nx-esc-mnt', b'tmpfs', 0, None);"
              "e = ctypes.get_errno(); libc.umount2(b'/tmp/nx-esc-mnt', 2);"
              "print('ok' if r == 0 else E.errorcode[e])", "EPERM", "ok"),
    ("unshare(CLONE_NEWUSER)", "res(sc(272, 0x10000000))", "EPERM", "ok"),
    ("setns", "fd = os.open('/proc/self/ns/uts', os.O_RDONLY); res(sc(308, fd, 0))", "EPERM", "ok"),
    ("clone(CLONE_NEWNS)",
     "r = sc(56, 0x00020000 | 17, 0, 0, 0, 0)\n"
     "if r[0] == 0: os._exit(0)\n"
     "if r[0] > 0: os.waitpid(r[0], 0)\n"
     "res(r)", "EPERM", "ok"),
    ("clone3", "r = sc(435, 0, 0); print('ENOSYS' if r[1] == E.ENOSYS else 'other')",
     "ENOSYS", "other"),
    ("bpf", "r = sc(321, 0, 0, 0); print('EPERM' if r[1] == E.EPERM else 'other')",
     "EPERM", "other"),
    ("perf_event_open", "r = sc(298, 0, 0, -1, -1, 0); print('EPERM' if r[1] == E.EPERM else 'other')",
     "EPERM", "other"),
    ("keyctl", "res(sc(250, 0, -3, 0))", "EPERM", "ok"),
    ("add_key", "r = sc(248, b'user', b'nx-esc', b'x', 1, -3); print('EPERM' if r[1] == E.EPERM else 'other')",
     "EPERM", "other"),
    ("userfaultfd", "res(sc(323, 0))", "EPERM", "ok"),
    ("io_uring_setup", "p = ctypes.create_string_buffer(120); r = sc(425, 4, ctypes.addressof(p));"
                       "print('EPERM' if r[1] == E.EPERM else 'other')", "EPERM", "other"),
    ("open_by_handle_at", "r = sc(304, -100, 0, 0); print('EPERM' if r[1] == E.EPERM else 'other')",
     "EPERM", "other"),
    ("kexec_load", "r = sc(246, 0, 0, 0, 0); print('EPERM' if r[1] == E.EPERM else 'other')",
     "EPERM", "other"),
    ("init_module", "r = sc(175, 0, 0, b''); print('EPERM' if r[1] == E.EPERM else 'other')",
     "EPERM", "other"),
    ("delete_module", "r = sc(176, b'nx_no_such_module', 0); print('EPERM' if r[1] == E.EPERM else 'other')",
     "EPERM", "other"),
    ("personality(ADDR_NO_RANDOMIZE)", "res(sc(135, 0x0040000))", "EPERM", "ok"),
    ("ioctl(TIOCSTI)",
     "import pty, fcntl, termios\n"
     "fd = 0\n"
     "try:\n"
     "    m, s = pty.openpty(); fd = s\n"
     "except OSError: pass\n"
     "r = sc(16, fd, 0x5412, ctypes.addressof(ctypes.c_char(b'x')))\n"
     "print('EPERM' if r[1] == E.EPERM else 'other')", "EPERM", "other"),
    ("socket(AF_PACKET)", "res(sc(41, 17, 3, 0))", "EAFNOSUPPORT", "ok"),
    ("socket(AF_NETLINK)", "res(sc(41, 16, 3, 0))", "EAFNOSUPPORT", "ok"),
    ("read /etc/shadow", "\ntry:\n    open('/etc/shadow').read(); print('ok')\nexcept OSError as e:\n    print(E.errorcode[e.errno])",
     "ENOENT", "ok"),
    ("list /root", "\ntry:\n    os.listdir('/root'); print('ok')\nexcept OSError as e:\n    print(E.errorcode[e.errno])",
     "ENOENT", "ok"),
    ("see host processes", "n = len([p for p in os.listdir('/proc') if p.isdigit()]);"
                           "print('few' if n <= 3 else 'many')", "few", "many"),
    ("signal a host process", "res((-1 if libc.kill(int(os.environ['NX_HOST_PID']), 0) else 0, ctypes.get_errno()))",
     "ESRCH", "ok"),
    ("TCP to the host's loopback",
     "s = socket.socket(); s.settimeout(2)\n"
     "try:\n    s.connect(('127.0.0.1', int(os.environ['NX_PORT']))); print('ok')\n"
     "except OSError as e:\n    print(E.errorcode.get(e.errno, 'timeout'))", "ECONNREFUSED", "ok"),
    ("capabilities and no_new_privs (setuid gains nothing)",
     "st = open('/proc/self/status').read();"
     "caps = [l.split()[1] for l in st.splitlines() if l.startswith(('CapEff', 'CapBnd'))];"
     "nnp = [l.split()[1] for l in st.splitlines() if l.startswith('NoNewPrivs')][0];"
     "print('none' if set(caps) == {'0000000000000000'} and nnp == '1' else 'some')",
     "none", "some"),
    # The other ABIs of an x86_64 kernel: the filter kills the process. x32
    # calls are native calls with bit 30 set; i386 calls go through int 0x80.
    ("x32 system call", "r = sc(0x40000000 + 39); print('ran')", "SIGSYS", "ran"),
    ("i386 system call (int 0x80)", INT80, "SIGSYS", "I386"),
    ("inherited fd", "\ntry:\n    os.fstat(int(os.environ['NX_FD'])); print('ok')\nexcept OSError as e:\n    print(E.errorcode[e.errno])",
     "EBADF", "ok"),
]
