"""Leases and stale results: an employee that stops answering (SIGSTOP)
loses its lease; the task goes back with a back-off and completes on
another employee; when the frozen employee wakes up its late result is
ignored as stale, so the task has exactly one accepted result; the
employee then registers again and takes work."""
import os
import signal
import time

from nxtest import Company, check, finish

COMPANY = """\
company: lease
ceo:
  heartbeat: 200ms
  liveness: 3
departments:
  work:
    agent: {kind: sim, work: 4s}
    employees: 2
    retry: {initial: 100ms, max: 400ms}
"""


def main():
    c = Company(COMPANY, "lease")
    try:
        check(c.up(), "the company starts")
        c.wait_until(lambda: len(c.json_lines("ps")) == 2, 20, "two employees")
        tid = c.run("submit", "--dept", "work", "important", check_rc=0).stdout.strip()

        def running():
            return c.json_lines("status", tid)[0]["state"] == "running"
        check(c.wait_until(running, 20, "running", step=0.05), "the task runs")
        holder = c.json_lines("status", tid)[0]["employee"]
        pid = {e["name"]: e["pid"] for e in c.json_lines("ps")}[holder]
        os.kill(pid, signal.SIGSTOP)
        w = c.run("wait", tid, "--timeout", "30s", "--json")
        st = c.json_lines("status", tid)[0]
        check(w.returncode == 0 and st["attempts"] == 2 and st["employee"] != holder,
              f"the task completed on the other employee: attempts {st['attempts']}, "
              f"{st['employee']}")
        check(any("lost" in h and "silent" in h for h in st["history"]),
              f"attempt 1 is recorded as lost: {st['history']}")
        os.kill(pid, signal.SIGCONT)
        time.sleep(5)
        with open(os.path.join(c.home, "logs", "ceo.log")) as f:
            log = f.read()
        check(f"stale result for task {tid} attempt 1 ignored" in log,
              "the woken employee's late result was ignored as stale")
        with c.db() as db:
            n = db.execute("select count(*) from attempts where task = ? and outcome = "
                           "'succeeded'", (int(tid),)).fetchone()[0]
        check(n == 1, "exactly one accepted result")
        st = c.json_lines("status", tid)[0]
        check(st["state"] == "succeeded" and st["attempts"] == 2, "the accepted one stands")
        stats = c.json_lines("stats")[0]
        check(stats["stale_results"] >= 1 and stats["requeued"] >= 1,
              f"stats count it: {stats['stale_results']} stale, {stats['requeued']} requeued")
        ps = {e["name"]: e for e in c.json_lines("ps")}
        check(ps[holder]["state"] != "gone" and ps[holder]["pid"] == pid,
              "the woken employee registered again (same process)")
        ids = [c.run("submit", "--dept", "work", f"after-{i}", check_rc=0).stdout.strip()
               for i in range(4)]
        for i in ids:
            c.run("wait", i, "--timeout", "60s", check_rc=0)
        ps = {e["name"]: e for e in c.json_lines("ps")}
        check(ps[holder]["done"] >= 1, f"and it takes work again ({ps[holder]['done']} done)")
    finally:
        c.close()
    finish()


main()
