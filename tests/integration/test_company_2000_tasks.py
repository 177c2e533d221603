"""A real company (CEO, node, six employee processes in two departments)
takes 2,000 tasks from eight concurrent clients; every task succeeds exactly
once with the expected output, and `nexus tasks --json` agrees with the
ledger."""
import collections
import subprocess
import time

from nxtest import NEXUS, Company, check, finish

COMPANY = """\
company: load
ceo:
  heartbeat: 500ms
departments:
  engineering:
    agent: {kind: sim, output: "eng: "}
    employees: 4
    capacity: 2
  qa:
    agent: {kind: exec, command: ["sh", "-c", "printf 'qa: '; cat"]}
    employees: 2
    capacity: 2
"""
CLIENTS, PER_CLIENT = 8, 250


def main():
    c = Company(COMPANY, "load")
    try:
        check(c.up(), "nexus up -d starts the company")
        check(c.wait_until(lambda: len(c.json_lines("ps")) == 6, 30, "6 employees"),
              "six employee processes registered")
        t0 = time.time()
        clients = []
        expected = {}
        for k in range(CLIENTS):
            dept = "engineering" if k % 2 == 0 else "qa"
            lines = [f"job-{k}-{i}" for i in range(PER_CLIENT)]
            for line in lines:
                expected[line] = ("eng: " if dept == "engineering" else "qa: ") + line
            p = subprocess.Popen([NEXUS, "submit", "--dept", dept, "--lines"], cwd=c.dir,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            clients.append((p, "\n".join(lines) + "\n"))
        ids = []
        for p, text in clients:
            out, err = p.communicate(text, timeout=300)
            check(p.returncode == 0, f"a client submitted {PER_CLIENT} tasks ({err.strip()[:200]})")
            ids += [int(x) for x in out.split()]
        submit_s = time.time() - t0
        check(len(ids) == CLIENTS * PER_CLIENT and len(set(ids)) == len(ids),
              f"{len(ids)} distinct task ids acknowledged in {submit_s:.1f}s")

        def all_done():
            with c.db() as db:
                return db.execute("select count(*) from tasks where state >= 2").fetchone()[0] \
                    >= CLIENTS * PER_CLIENT
        check(c.wait_until(all_done, 400, "all tasks to finish", step=1),
              f"all tasks finished ({time.time() - t0:.1f}s after the first submit)")

        listed = c.json_lines("tasks")
        check(len(listed) == CLIENTS * PER_CLIENT, f"nexus tasks --json lists {len(listed)} tasks")
        by_input = collections.Counter(t["input"] for t in listed)
        check(set(by_input) == set(expected) and max(by_input.values()) == 1,
              "every submitted input appears exactly once")
        bad = [t for t in listed if t["state"] != "succeeded" or t["output"] != expected[t["input"]]]
        check(not bad, f"every task succeeded with the expected output ({len(bad)} did not)")
        if bad:
            print(bad[:5])
        with c.db() as db:
            rows = {r[0]: r[1:] for r in db.execute(
                "select id, state, output, attempts, employee from tasks")}
            multi = db.execute("select task, count(*) from attempts where outcome = 'succeeded'"
                               " group by task having count(*) != 1").fetchall()
            accepted = db.execute("select count(distinct task) from attempts"
                                  " where outcome = 'succeeded'").fetchone()[0]
        check(not multi and accepted == CLIENTS * PER_CLIENT,
              "the ledger holds exactly one accepted result per task")
        agree = all(rows[t["id"]][0] == 2 and rows[t["id"]][1].decode() == t["output"]
                    and rows[t["id"]][2] == t["attempts"] and rows[t["id"]][3] == t["employee"]
                    for t in listed)
        check(agree, "nexus tasks --json agrees with the ledger row by row")
        ps = c.json_lines("ps")
        depts = {e["dept"] for e in ps}
        check(depts == {"engineering", "qa"} and sum(e["done"] for e in ps) == len(ids),
              f"employees of both departments did the work: {[(e['name'], e['done']) for e in ps]}")
        check(c.run("down", check_rc=0).returncode == 0, "nexus down stops the company")
    finally:
        c.close()
    finish()


main()
