"""Chaos: a company of 12 employees in three departments (in-process sim,
sim agent processes, exec agents) takes 5,000 tasks from concurrent
clients while employees, the node and the CEO are killed with SIGKILL
again and again (`nexus up` restarts the CEO and the node, the node
restarts employees). At the end every task is `succeeded` -- except the
ones the test made to always fail, which are `dead` -- each with exactly
one accepted result. Prints the kills and the redeliveries.

Bounded: the chaos phase lasts CHAOS_SECONDS, the whole test stops itself
after a few minutes."""
import os
import random
import signal
import subprocess
import threading
import time

from nxtest import NEXUS, Company, check, finish

COMPANY = """\
company: chaos
ceo:
  heartbeat: 200ms
  liveness: 3
departments:
  plan:
    agent: {kind: sim, inprocess: true, work: 5ms, jitter: 5ms, output: "plan: "}
    employees: 4
    capacity: 4
    max_attempts: 30
    retry: {initial: 50ms, multiplier: 2, max: 500ms}
    supervision: {intensity: 1000, period: 10s, shutdown: 1s}
  build:
    agent: {kind: sim, output: "build: "}
    employees: 4
    capacity: 2
    max_attempts: 30
    retry: {initial: 50ms, multiplier: 2, max: 500ms, on_failure: true}
    supervision: {intensity: 1000, period: 10s, shutdown: 1s}
  check:
    agent: {kind: exec, command: ["sh", "-c", "printf 'check: '; cat"]}
    employees: 4
    capacity: 2
    max_attempts: 30
    retry: {initial: 50ms, multiplier: 2, max: 500ms}
    supervision: {intensity: 1000, period: 10s, shutdown: 1s}
"""
TASKS = 5000
DOOMED = 10
CHAOS_SECONDS = float(os.environ.get("NX_CHAOS_SECONDS", "45"))
PREFIX = {"plan": "plan: ", "build": "build: ", "check": "check: "}


def submit_all(c, dept, lines, key):
    """Submits with idempotency keys and retries the whole batch while the
    CEO is down: keys make a resubmitted line return its first id."""
    deadline = time.time() + 240
    text = "\n".join(lines) + "\n"
    while time.time() < deadline:
        p = subprocess.run([NEXUS, "submit", "--dept", dept, "--lines", "--idempotency-key", key],
                           cwd=c.dir, input=text, capture_output=True, text=True, timeout=120)
        if p.returncode == 0:
            return [int(x) for x in p.stdout.split()]
        time.sleep(0.5)
    return None


def main():
    c = Company(COMPANY, "chaos")
    rng = random.Random(42)
    kills = {"employee": 0, "node": 0, "ceo": 0}
    try:
        check(c.up(), "the company starts")
        c.wait_until(lambda: len(c.json_lines("ps")) == 12, 30, "12 employees")
        work = []
        for i in range(TASKS):
            dept = ("plan", "build", "check")[i % 3]
            work.append((dept, f"task-{i}"))
        results = {}

        def client(k, dept, lines):
            results[k] = submit_all(c, dept, lines, f"chaos-{k}")
        threads = []
        for k, dept in enumerate(("plan", "build", "check") * 2):
            lines = [w for d, w in work if d == dept][k // 3::2]
            t = threading.Thread(target=client, args=(k, dept, lines))
            t.start()
            threads.append((t, dept, lines))
        doomed = [c.run("submit", "--dept", "build", "--max-attempts", "2",
                        "--idempotency-key", f"doomed-{i}", f"!exit 7\ndoomed-{i}").stdout.strip()
                  for i in range(DOOMED)]

        t0 = time.time()
        t_end = t0 + CHAOS_SECONDS
        # The CEO dies three times, spread over the chaos (`nexus up` allows
        # five restarts a minute); employees and the node die at random.
        ceo_kills = [t0 + CHAOS_SECONDS * f for f in (0.2, 0.5, 0.8)]
        while time.time() < t_end:
            time.sleep(rng.uniform(0.2, 0.6))
            r = rng.random()
            try:
                if ceo_kills and time.time() >= ceo_kills[0]:
                    ceo_kills.pop(0)
                    pid = int(subprocess.check_output(["pgrep", "-f", f"nexus ceo --company {c.file}"]).split()[0])
                    os.kill(pid, signal.SIGKILL)
                    kills["ceo"] += 1
                elif r < 0.06:
                    pid = int(subprocess.check_output(["pgrep", "-f", f"nexus node --company {c.file}"]).split()[0])
                    os.kill(pid, signal.SIGKILL)
                    kills["node"] += 1
                else:
                    # The node's children are the employees. (Matching command
                    # lines would also hit an agent between fork and exec, when it
                    # still carries its employee's command line.)
                    node = subprocess.check_output(
                        ["pgrep", "-f", f"nexus node --company {c.file}"]).split()[0]
                    out = subprocess.check_output(["pgrep", "-P", node], text=True)
                    mine = [int(x) for x in out.split()]
                    if mine:
                        os.kill(rng.choice(mine), signal.SIGKILL)
                        kills["employee"] += 1
            except (subprocess.CalledProcessError, FileNotFoundError, ProcessLookupError, IndexError):
                pass
        for t, _, _ in threads:
            t.join(300)
        ids = {}
        for k, (t, dept, lines) in enumerate(threads):
            got = results.get(k)
            check(got is not None and len(got) == len(lines),
                  f"client {k} ({dept}) had all {len(lines)} submits acknowledged")
            for line, tid in zip(lines, got or []):
                ids[tid] = (dept, line)
        check(len(ids) == TASKS, f"{len(ids)} distinct tasks acknowledged")

        def settled():
            try:
                with c.db() as db:
                    return db.execute("select count(*) from tasks where state < 2").fetchone()[0] == 0
            except Exception:
                return False
        check(c.wait_until(settled, 300, "every task to be final", step=1), "every task is final")
        with c.db() as db:
            rows = {r[0]: r[1:] for r in db.execute("select id, state, output, attempts from tasks")}
            accepted = dict(db.execute("select task, count(*) from attempts where outcome ="
                                       " 'succeeded' group by task").fetchall())
            redelivered = db.execute("select count(*) from attempts where outcome in"
                                     " ('lost', 'failed')").fetchone()[0]
            lost = db.execute("select count(*) from attempts where outcome = 'lost'").fetchone()[0]
        bad = [tid for tid, (dept, line) in ids.items()
               if rows[tid][0] != 2 or rows[tid][1].decode() != PREFIX[dept] + line]
        check(not bad, f"every task succeeded with its output ({len(bad)} did not)")
        for b in bad[:3]:
            print(c.run("status", str(b)).stdout, flush=True)
        check(all(accepted.get(tid) == 1 for tid in ids), "each has exactly one accepted result")
        check(all(rows[int(d)][0] == 5 and int(d) not in accepted for d in doomed),
              f"the {DOOMED} doomed tasks are dead, with no accepted result")
        check(len(rows) == TASKS + DOOMED, f"the ledger holds {len(rows)} tasks, no more")
        print(f"chaos: {kills['employee']} employee, {kills['node']} node and {kills['ceo']} CEO "
              f"kill(s) in {CHAOS_SECONDS:.0f}s; {redelivered} attempt(s) redelivered "
              f"({lost} lost with their employee or CEO)", flush=True)
        check(kills["employee"] > 10 and kills["ceo"] == 3 and kills["node"] >= 1,
              "the chaos really happened")
    finally:
        c.close()
    finish()


main()
