"""Time limits, cancellation, dead tasks and `nexus retry`, and liveness:
- a soft limit sends SIGTERM, a hard one SIGKILL; the error says which;
- cancel of a queued task and of a running one (its agent is killed);
  cancelling a finished task is a clear error;
- a task whose attempts are used up is dead, keeps every attempt's error,
  is listed by `tasks --state dead`, and `nexus retry` puts it back;
- an agent that runs for more than 10 heartbeat intervals is not declared
  dead."""
import os
import time

from nxtest import Company, check, finish

COMPANY = """\
company: limits
ceo:
  heartbeat: 200ms
  liveness: 3
departments:
  slow:
    agent: {kind: exec, command: "sleep 30"}
    employees: 1
    timeout: {soft: 1s}
  defiant:
    agent: {kind: exec, command: ["sh", "-c", "trap '' TERM; sleep 30"]}
    employees: 1
    timeout: {soft: 500ms, hard: 1500ms}
  flaky:
    agent:
      kind: exec
      command: ["sh", "-c", "if [ -e flag ]; then echo fixed; else echo 'not yet' >&2; exit 1; fi"]
    employees: 1
    max_attempts: 2
    retry: {initial: 200ms, multiplier: 2, max: 1s, on_failure: true}
  long:
    agent: {kind: sim, work: 3s}
    employees: 1
  napper:
    agent: {kind: exec, command: "sleep 60"}
    employees: 1
"""


def status(c, tid):
    return c.json_lines("status", str(tid))[0]


def main():
    c = Company(COMPANY, "lim")
    # The agent runs sandboxed with its employee's workspace as its folder.
    flag = os.path.join(c.home, "workspaces", "flaky-1", "flag")
    try:
        check(c.up(), "the company starts")
        t0 = time.time()
        tid = c.run("submit", "--dept", "slow", "x", check_rc=0).stdout.strip()
        c.run("wait", tid, "--timeout", "20s")
        w = status(c, tid)
        check(w["state"] == "failed" and "soft time limit (1000 ms) exceeded" in w["error"],
              f"soft limit: {w['error']} after {time.time() - t0:.1f}s")
        tid = c.run("submit", "--dept", "defiant", "x", check_rc=0).stdout.strip()
        c.run("wait", tid, "--timeout", "20s")
        w = status(c, tid)
        check(w["state"] == "failed" and "hard time limit (1500 ms) exceeded" in w["error"],
              f"hard limit on an agent that ignores SIGTERM: {w['error']}")
        tid = c.run("submit", "--dept", "slow", "--soft-timeout", "300ms", "y",
                    check_rc=0).stdout.strip()
        c.run("wait", tid, "--timeout", "20s")
        check("soft time limit (300 ms)" in status(c, tid)["error"], "a per-task limit wins")

        # Cancel a running task: its agent dies.
        tid = c.run("submit", "--dept", "napper", "first", check_rc=0).stdout.strip()
        queued = c.run("submit", "--dept", "napper", "second", check_rc=0).stdout.strip()
        c.wait_until(lambda: status(c, tid)["state"] == "running", 10, "running", step=0.05)
        p = c.run("cancel", queued, "--json", check_rc=0)
        check('"state":"cancelled"' in p.stdout, "cancel of a queued task")
        napper = {e["name"]: e["pid"] for e in c.json_lines("ps")}["napper-1"]
        check(os.system(f"pgrep -P {napper} >/dev/null") == 0,
              "the running task's agent is there before the cancel")
        p = c.run("cancel", tid, "--json", check_rc=0)
        check('"state":"cancelled"' in p.stdout, "cancel of a running task")
        time.sleep(2)
        check(status(c, tid)["state"] == "cancelled" and status(c, queued)["state"] == "cancelled",
              "cancelled stays cancelled (the killed agent's result is ignored)")
        check(status(c, queued)["attempts"] == 0, "the queued one never ran")
        check(os.system(f"pgrep -P {napper} >/dev/null") != 0,
              "the cancelled agent is gone (its employee has no child left)")
        p = c.run("cancel", tid)
        check(p.returncode == 1 and "already been cancelled" in p.stderr,
              f"cancelling a finished task is an error: {p.stderr.strip()}")

        # Dead after max_attempts, then retry.
        tid = c.run("submit", "--dept", "flaky", "z", check_rc=0).stdout.strip()
        c.run("wait", tid, "--timeout", "20s")
        st = status(c, tid)
        check(st["state"] == "dead" and st["attempts"] == 2,
              f"dead after 2 attempts: {st['state']}, {st['error']}")
        hist = st.get("history", [])
        check(len(hist) == 2 and all("failed" in h and "not yet" in h for h in hist),
              f"every attempt's error is kept: {hist}")
        dead = c.json_lines("tasks", "--state", "dead")
        check([t["id"] for t in dead] == [int(tid)], "tasks --state dead lists it")
        open(flag, "w").close()
        p = c.run("retry", tid, "--json", check_rc=0)
        check('"state":"queued"' in p.stdout, "nexus retry puts it back")
        w = c.run("wait", tid, "--timeout", "20s", "--json")
        check(w.returncode == 0 and '"output":"fixed\\n"' in w.stdout, "and this time it succeeds")
        p = c.run("retry", tid)
        check(p.returncode == 1 and "only dead, failed or cancelled" in p.stderr,
              "retrying a succeeded task is an error")

        # A long agent (15 heartbeat intervals of 200 ms) is not declared dead.
        tid = c.run("submit", "--dept", "long", "marathon", check_rc=0).stdout.strip()
        w = c.run("wait", tid, "--timeout", "20s", "--json")
        check(w.returncode == 0 and '"attempts":1' in w.stdout,
              "an agent running 15 heartbeat intervals finishes in one attempt")
        with open(os.path.join(c.home, "logs", "ceo.log")) as f:
            check(" lost:" not in f.read(), "no employee was declared lost")
    finally:
        if os.path.exists(flag):
            os.unlink(flag)
        c.close()
    finish()


main()
