"""What a user sees of the scheduler and the CLI: priorities then FIFO
within a department, idempotency keys, `ps`, `tasks` filters, and the live
event bus (`events --follow`)."""
import json
import subprocess
import time

from nxtest import NEXUS, Company, check, finish

COMPANY = """\
company: sched
departments:
  engineering:
    agent: {kind: sim, work: 20ms}
    employees: 1
  qa:
    agent: {kind: sim}
    employees: 1
"""


def main():
    c = Company(COMPANY, "sch")
    try:
        c.start("ceo")
        check(c.wait_serving(), "the CEO serves (no node yet, so tasks wait)")
        ids = {}
        for i in range(4):
            ids[f"low-{i}"] = int(c.run("submit", "--dept", "engineering", f"low-{i}",
                                        check_rc=0).stdout)
            ids[f"high-{i}"] = int(c.run("submit", "--dept", "engineering", "--priority", "10",
                                         f"high-{i}", check_rc=0).stdout)
        a = c.json_lines("submit", "--dept", "qa", "--idempotency-key", "release-1", "ship it")
        b = c.json_lines("submit", "--dept", "qa", "--idempotency-key", "release-1", "ship it")
        check(a[0]["id"] == b[0]["id"] and not a[0]["existing"] and b[0]["existing"],
              f"the same idempotency key returns the same task: {a} {b}")
        queued = c.json_lines("tasks", "--state", "queued", "--dept", "engineering")
        check(len(queued) == 8, f"tasks --state queued --dept engineering lists {len(queued)}")

        follow = subprocess.Popen([NEXUS, "events", "--follow", "--topic", "task.succeeded",
                                   "--limit", "0", "--json"], cwd=c.dir, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        c.start("node")
        last = max(ids.values())
        check(c.run("wait", str(last), "--timeout", "60s").returncode == 0, "the work gets done")
        for name in ids:
            c.run("wait", str(ids[name]), "--timeout", "60s", check_rc=0)
        tasks = {t["input"]: t for t in c.json_lines("tasks", "--dept", "engineering")}
        order = sorted(tasks, key=lambda k: tasks[k]["started_ms"])
        check(order == [f"high-{i}" for i in range(4)] + [f"low-{i}" for i in range(4)],
              f"higher priority first, then FIFO: {order}")
        ps = c.json_lines("ps")
        check(sorted(e["name"] for e in ps) == ["engineering-1", "qa-1"] and
              sum(e["done"] for e in ps) == 9, f"ps shows both employees and the work: {ps}")
        deadline = time.time() + 10
        seen = []
        while time.time() < deadline and len(seen) < 9:
            line = follow.stdout.readline()
            if line:
                seen.append(json.loads(line))
        follow.terminate()
        follow.wait(10)
        check(len(seen) == 9 and all(e["topic"] == "task.succeeded" for e in seen),
              f"events --follow streamed the {len(seen)} live task.succeeded events")
        seqs = [e["seq"] for e in seen]
        check(seqs == sorted(seqs), "in sequence order")
        hist = c.json_lines("events", "--limit", "1000")
        topics = {e["topic"] for e in hist}
        check({"task.submitted", "task.started", "task.succeeded", "employee.joined"} <= topics,
              f"the stored history has every kind of event: {sorted(topics)}")
    finally:
        c.close()
    finish()


main()
