"""Nothing acknowledged is lost when the CEO is killed with SIGKILL:
1. a task submitted while no employee runs survives a kill -9 of the CEO
   and completes after the CEO and a node start again;
2. a task that is running when the CEO is killed still completes exactly
   once after the CEO restarts (its employee reconnects)."""
import os
import signal
import time

from nxtest import Company, check, finish

COMPANY = """\
company: durable
ceo:
  heartbeat: 200ms
departments:
  engineering:
    agent: {kind: sim, output: "done: "}
    employees: 2
"""


def main():
    c = Company(COMPANY, "dur")
    try:
        ceo = c.start("ceo")
        check(c.wait_serving(), "the CEO serves")
        p = c.run("submit", "--dept", "engineering", "survive the crash", check_rc=0)
        tid = p.stdout.strip()
        check(tid.isdigit(), f"submit printed the task id {tid} once durable")
        st = c.run("status", tid, "--json", check_rc=0)
        check('"state":"queued"' in st.stdout, "the task is queued (no employee yet)")
        os.kill(ceo.pid, signal.SIGKILL)
        ceo.wait()
        check(c.run("status", tid).returncode != 0, "with the CEO dead, status fails")
        c.start("ceo")
        check(c.wait_serving(), "a new CEO serves on the same ledger")
        c.start("node")
        w = c.run("wait", tid, "--timeout", "60s", "--json", check_rc=0)
        check('"state":"succeeded"' in w.stdout and '"output":"done: survive the crash"' in w.stdout,
              "the task submitted before the kill completed after the restart")

        # A task running when the CEO dies.
        p = c.run("submit", "--dept", "engineering", "!sleep 1500\nslow work", check_rc=0)
        slow = p.stdout.strip()

        def running():
            return '"state":"running"' in c.run("status", slow, "--json").stdout
        check(c.wait_until(running, 30, "the slow task to run", step=0.05), "the slow task runs")
        ceo2 = c.procs[1]
        os.kill(ceo2.pid, signal.SIGKILL)
        ceo2.wait()
        c.start("ceo")
        check(c.wait_serving(), "the CEO restarted while the task ran")
        w = c.run("wait", slow, "--timeout", "60s", "--json", check_rc=0)
        check('"state":"succeeded"' in w.stdout, "the running task still completed")
        with c.db() as db:
            n = db.execute("select count(*) from attempts where task = ? and outcome ="
                           " 'succeeded'", (int(slow),)).fetchone()[0]
            total = db.execute("select count(*) from tasks").fetchone()[0]
        check(n == 1, "it has exactly one accepted result")
        check(total == 2, "the ledger holds both tasks and no others")
    finally:
        c.close()
    finish()


main()
