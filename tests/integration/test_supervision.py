"""The node supervises employees as an OTP supervisor does: each strategy
(one_for_one, one_for_all, rest_for_one), the restart types (permanent,
transient, temporary), and a department given up when its restart
intensity is exceeded (seen in `nexus ps`, the log and the event bus)."""
import os
import signal
import time

from nxtest import Company, check, finish

COMPANY = """\
company: sup
ceo:
  heartbeat: 200ms
departments:
  solo:
    agent: {kind: sim, inprocess: true}
    employees: [s1, s2, s3]
    supervision: {strategy: one_for_one, intensity: 10, period: 10s, shutdown: 2s}
  all:
    agent: {kind: sim, inprocess: true}
    employees: [a1, a2, a3]
    supervision: {strategy: one_for_all, intensity: 10, period: 10s}
  rest:
    agent: {kind: sim, inprocess: true}
    employees: [r1, r2, r3]
    supervision: {strategy: rest_for_one, intensity: 10, period: 10s}
  types:
    agent: {kind: sim, inprocess: true}
    employees:
      - {name: perm, restart: permanent}
      - {name: trans, restart: transient}
      - {name: temp, restart: temporary}
  fragile:
    agent: {kind: sim, inprocess: true}
    employees: [f1]
    supervision: {intensity: 2, period: 30s}
"""
NAMES = ["s1", "s2", "s3", "a1", "a2", "a3", "r1", "r2", "r3", "perm", "trans", "temp", "f1"]


def pids(c):
    return {e["name"]: e["pid"] for e in c.json_lines("ps") if e["state"] != "gone"}


def settle(c, expect_alive, timeout=20):
    """Waits until exactly the named employees are registered and alive."""
    result = {}

    def ok():
        nonlocal result
        result = pids(c)
        return set(result) == set(expect_alive) and all(
            os.path.exists(f"/proc/{p}") for p in result.values())
    c.wait_until(ok, timeout, f"employees {sorted(expect_alive)}", step=0.2)
    return result


def main():
    c = Company(COMPANY, "sup")
    try:
        check(c.up(), "the company starts")
        before = settle(c, NAMES)
        check(set(before) == set(NAMES), "all 13 employees registered")

        os.kill(before["s2"], signal.SIGKILL)
        time.sleep(0.5)
        after = settle(c, NAMES)
        check(after["s2"] != before["s2"] and after["s1"] == before["s1"] and
              after["s3"] == before["s3"], "one_for_one: only the dead employee restarted")

        before = after
        os.kill(before["a2"], signal.SIGKILL)
        time.sleep(0.5)
        after = settle(c, NAMES)
        check(all(after[n] != before[n] for n in ("a1", "a2", "a3")),
              "one_for_all: all three restarted")
        check(after["s1"] == before["s1"], "...and no other department was touched")

        before = after
        os.kill(before["r2"], signal.SIGKILL)
        time.sleep(0.5)
        after = settle(c, NAMES)
        check(after["r1"] == before["r1"] and after["r2"] != before["r2"] and
              after["r3"] != before["r3"], "rest_for_one: r2 and the later r3 restarted, r1 kept")

        before = after
        os.kill(before["perm"], signal.SIGKILL)
        os.kill(before["trans"], signal.SIGKILL)
        os.kill(before["temp"], signal.SIGKILL)
        time.sleep(0.5)
        after = settle(c, [n for n in NAMES if n != "temp"])
        check("temp" not in after and after["perm"] != before["perm"] and
              after["trans"] != before["trans"],
              "killed: permanent and transient restarted, temporary not")
        before = after
        os.kill(before["trans"], signal.SIGTERM)   # a clean exit (status 0)
        os.kill(before["perm"], signal.SIGTERM)
        time.sleep(0.5)
        after = settle(c, [n for n in NAMES if n not in ("temp", "trans")])
        check("trans" not in after and after["perm"] != before["perm"],
              "a clean exit: transient not restarted, permanent restarted")

        # Three deaths within 30 s with intensity 2: the department is given up.
        for _ in range(3):
            p = settle(c, [n for n in NAMES if n not in ("temp", "trans")], timeout=10).get("f1")
            if p:
                os.kill(p, signal.SIGKILL)
            time.sleep(0.6)
        time.sleep(0.5)
        ps = {e["name"]: e for e in c.json_lines("ps")}
        check(ps["f1"]["state"] == "gone" and "supervisor gave up" in ps["f1"].get("note", ""),
              f"nexus ps shows the fragile department given up: {ps['f1']}")
        ev = c.json_lines("events", "--topic", "department.")
        check(any(e["topic"] == "department.failed" for e in ev),
              f"the event bus says so: {[e['topic'] for e in ev]}")
        with open(os.path.join(c.home, "logs", "node.log")) as f:
            log = f.read()
        check("department fragile: more than 2 restart(s) within 30000 ms" in log,
              "the node's log says so")
        p = c.run("ps")
        check("! department: more than 2 restart(s)" in p.stdout, "and the table shows it")
        time.sleep(1)
        check(not any(e["name"] == "f1" and e["state"] != "gone" for e in c.json_lines("ps")),
              "the node stopped restarting it")
        t0 = time.time()
        check(c.run("down", check_rc=0).returncode == 0, "nexus down stops the rest")
        check(time.time() - t0 < 20, f"within the shutdown grace ({time.time() - t0:.1f}s)")
    finally:
        c.close()
    finish()


main()
