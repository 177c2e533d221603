"""The sandbox escape suite: every attack in escape_cases.py fails inside
`nexus sandbox run` in the specific way expected and works outside it, plus
the resource attacks (fork bomb, memory bomb, read-only bind, a process
that ignores SIGTERM). Runs as root, then again as an unprivileged user
(created here) when the machine lets unprivileged users have user
namespaces."""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from escape_cases import CASES, PRELUDE  # noqa: E402

NEXUS = os.environ.get("NEXUS_BIN") or os.path.join(os.path.dirname(__file__), "..", "..",
                                                    "build", "nexus")
PY = "/usr/bin/python3"
failures = 0


def check(cond, what):
    global failures
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures += 1


def outcome(p):
    if p.returncode in (128 + signal.SIGSYS, -signal.SIGSYS):
        return "SIGSYS"
    lines = p.stdout.strip().splitlines()
    return lines[-1] if lines else f"(no output, exit {p.returncode}: {p.stderr.strip()[-200:]})"


def run(code, inside, env, pass_fds=(), extra=()):
    cmd = [PY, "-c", PRELUDE + "\n" + code]
    if inside:
        cmd = [NEXUS, "sandbox", "run", *extra, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, pass_fds=pass_fds,
                          timeout=60)


def main():
    who = pwd.getpwuid(os.getuid()).pw_name
    print(f"running as {who} (uid {os.getuid()})", flush=True)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    secret = tempfile.TemporaryFile()
    os.set_inheritable(secret.fileno(), True)
    env = dict(os.environ, NX_PORT=str(listener.getsockname()[1]), NX_HOST_PID=str(os.getpid()),
               NX_FD=str(secret.fileno()))
    for name, code, want_in, want_out in CASES:
        if os.getuid() != 0 and name in (
                "mount", "setns", "socket(AF_PACKET)", "socket(AF_NETLINK)", "read /etc/shadow",
                "list /root", "keyctl", "userfaultfd", "personality(ADDR_NO_RANDOMIZE)",
                "clone(CLONE_NEWNS)", "ioctl(TIOCSTI)"):
            # The control needs root outside (or is root-only by design);
            # the inside half still runs.
            want_out = None
        fds = (secret.fileno(),)
        got_in = outcome(run(code, True, env, fds))
        got_out = outcome(run(code, False, env, fds)) if want_out else "(not applicable)"
        if want_out == "I386" and got_out == "NO-I386":
            # This kernel has no 32-bit emulation: int 0x80 faults everywhere
            # and there is nothing for the filter to stop. Say so.
            print("note: the kernel has no i386 emulation; the filter's kill of "
                  "i386 calls cannot be shown here", flush=True)
            want_in = want_out = "NO-I386"
        check(got_in == want_in and (want_out is None or got_out == want_out),
              f"{name}: inside {got_in} (want {want_in}), outside {got_out}"
              f"{'' if want_out is None else f' (want {want_out})'}")

    # --net allow: only the listed host:port, through the proxy.
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(8)
    allowed_port = listener.getsockname()[1]
    other_port = other.getsockname()[1]
    via = ("def via(port):\n"
           "    s = socket.create_connection(('127.0.0.1', 3128), timeout=5)\n"
           "    s.sendall(b'CONNECT 127.0.0.1:%d HTTP/1.1\\r\\n\\r\\n' % port)\n"
           "    return s.recv(200).split(b'\\r\\n')[0].decode()\n")
    code = via + f"print(via({allowed_port}) + ' | ' + via({other_port}))"
    got = outcome(run(code, True, env, extra=("--net", f"allow:127.0.0.1:{allowed_port}")))
    direct = outcome(run(f"s = socket.create_connection(('127.0.0.1', {other_port}), timeout=2); print('ok')", False, env))
    check(got == "HTTP/1.1 200 Connection established | HTTP/1.1 403 Forbidden" and direct == "ok",
          f"--net allow: the listed port is reachable through the proxy, another is refused: {got!r}"
          f" (outside, the other port is reachable directly: {direct})")
    code = f"\ntry:\n    socket.create_connection(('127.0.0.1', {allowed_port}), timeout=2); print('ok')\nexcept OSError as e:\n    print(E.errorcode.get(e.errno, 'timeout'))"
    check(outcome(run(code, True, env, extra=("--net", f"allow:127.0.0.1:{allowed_port}"))) == "ECONNREFUSED",
          "--net allow: even the listed port is not reachable without the proxy")
    other.close()

    # A read-only bind cannot be written; a writable one can.
    d = tempfile.mkdtemp(prefix="nx-esc-")
    os.chmod(d, 0o777)
    code = f"\ntry:\n    open('{d}/x', 'w').write('x'); print('ok')\nexcept OSError as e:\n    print(E.errorcode[e.errno])"
    check(outcome(run(code, True, env, extra=("--ro", d))) == "EROFS" and
          outcome(run(code, True, env, extra=("--rw", d))) == "ok",
          "writing a read-only bind fails with EROFS (a writable bind works)")
    shutil.rmtree(d, ignore_errors=True)

    # Fork bomb: held by the process limit.
    bomb = ("n = 0\nfor i in range(200):\n    try:\n        pid = os.fork()\n"
            "    except OSError:\n        break\n    if pid == 0:\n        import time; time.sleep(3); os._exit(0)\n"
            "    n += 1\nprint(n)")
    inside = run(bomb, True, env, extra=("--pids", "40"))
    outside = run(bomb, False, env)
    n_in = int(inside.stdout.split()[-1]) if inside.stdout.split() else -1
    n_out = int(outside.stdout.split()[-1]) if outside.stdout.split() else -1
    check(0 <= n_in < 40 and n_out == 200,
          f"fork bomb: {n_in} forks inside with --pids 40, {n_out} outside")

    # Memory bomb: held by the memory limit.
    mem = "b = bytearray(600 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('ok')"
    inside = run(mem, True, env, extra=("--mem", "256M"))
    outside = run(mem, False, env)
    check(inside.returncode != 0 and "ok" not in inside.stdout and outside.stdout.strip() == "ok",
          f"memory bomb: inside exit {inside.returncode} with --mem 256M "
          f"({(inside.stderr.strip().splitlines() or [''])[-1][:80]}), outside {outcome(outside)}")

    # A process that ignores SIGTERM is held by the hard limit.
    t0 = time.time()
    p = subprocess.run([NEXUS, "sandbox", "run", "--time", "1s", "--", "sh", "-c",
                        "trap '' TERM; sleep 30"], capture_output=True, text=True, timeout=60)
    took = time.time() - t0
    ctl = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 30"])
    time.sleep(0.3)
    ctl.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    survived = ctl.poll() is None
    ctl.kill()
    ctl.wait()
    check(p.returncode == 128 + signal.SIGKILL and took < 10 and survived,
          f"an agent ignoring SIGTERM is killed by the time limit: exit {p.returncode} after "
          f"{took:.1f}s (outside, SIGTERM alone left it running: {survived})")

    # Exit status passes through.
    p = subprocess.run([NEXUS, "sandbox", "run", "--", "sh", "-c", "exit 42"])
    check(p.returncode == 42, f"the command's exit status passes through ({p.returncode})")
    p = subprocess.run([NEXUS, "sandbox", "run", "--", "/no/such/binary"], capture_output=True,
                       text=True)
    check(p.returncode == 127 and "exec '/no/such/binary'" in p.stderr,
          f"a setup failure names the step: {p.stderr.strip()}")


def as_unprivileged():
    """Runs this file again as an unprivileged user, if user namespaces
    allow it for such users."""
    user = "nexus-test"
    try:
        pwd.getpwnam(user)
    except KeyError:
        if subprocess.run(["/usr/sbin/useradd", "--system", "--no-create-home", user]).returncode != 0:
            print("skip: cannot create a test user")
            return
    probe = subprocess.run(["/usr/sbin/runuser", "-u", user, "--", "unshare", "--user", "--map-root-user",
                            "true"], capture_output=True)
    if probe.returncode != 0:
        print("skip: this machine does not allow unprivileged user namespaces")
        return
    env = {"PATH": "/usr/bin:/bin", "NEXUS_BIN": os.path.abspath(NEXUS), "NX_AS_USER": "1",
           "HOME": "/tmp"}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    p = subprocess.run(["/usr/sbin/runuser", "-u", user, "--", PY, os.path.abspath(__file__)], env=env,
                       timeout=600)
    check(p.returncode == 0, "the suite passes as an unprivileged user too")


main()
if os.getuid() == 0 and not os.environ.get("NX_AS_USER"):
    as_unprivileged()
if failures:
    print(f"{failures} check(s) failed")
    sys.exit(1)
print("all checks passed")
