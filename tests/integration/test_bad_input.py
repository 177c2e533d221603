"""Bad input gets a clear error and a non-zero exit, never a crash:
broken company files, unknown commands, unknown departments and task ids,
malformed and truncated frames sent to the CEO's socket, agents that exit
non-zero, crash, or write 100 MB."""
import os
import subprocess

from nxtest import NEXUS, RAWSEND, Company, check, envelope, finish

GOOD = """\
company: bad
departments:
  engineering:
    agent: {kind: sim}
    employees: 1
  flood:
    agent:
      kind: exec
      command: ["sh", "-c", "head -c 100000000 /dev/zero; echo tail"]
      max_output: 1M
    employees: 1
"""


def broken_files():
    cases = [
        ("company: x\ndepartments:\n  qa:\n    agent: sim\n    employes: 1\n",
         "company.yaml:5: departments.qa.employes: unknown key"),
        ("company: x\ndepartments:\n  qa:\n    agent: {kind: robot}\n    employees: 1\n",
         "company.yaml:4: departments.qa.agent.kind: unknown agent kind 'robot'"),
        ("company: x\ndepartments:\n  qa: [\n", "company.yaml:4: YAML syntax error"),
        ("company: x\n", "departments: 'departments' is missing"),
        ("company: x\ndepartments:\n  qa:\n    agent: sim\n    employees: -2\n",
         "company.yaml:5: departments.qa.employees: '-2' is not a whole number"),
    ]
    for text, expect in cases:
        c = Company(text, "cfg")
        p = c.run("up", "-d")
        check(p.returncode == 2 and expect in p.stderr,
              f"broken company file: exit {p.returncode}, says: {p.stderr.strip()}")
        c.close()


def rawsend(c, frame):
    p = subprocess.run([RAWSEND, f"ipc://{c.home}/ceo.sock"], input=frame, capture_output=True,
                       timeout=30)
    return p.stdout.decode().strip()


def main():
    broken_files()
    p = subprocess.run([NEXUS, "frobnicate"], capture_output=True, text=True)
    check(p.returncode == 2 and "unknown command 'frobnicate'" in p.stderr,
          f"unknown command: exit {p.returncode}: {p.stderr.strip()}")

    c = Company(GOOD, "bad")
    try:
        p = c.run("status", "1")
        check(p.returncode == 3 and "no company is running" in p.stderr,
              f"no company: exit {p.returncode}: {p.stderr.strip()}")
        check(c.up(), "the company starts")
        p = c.run("up", "-d")
        check(p.returncode == 1 and "already up" in p.stderr, "a second 'up' is refused")
        p = c.run("submit", "--dept", "marketing", "sell it")
        check(p.returncode == 1 and "no department 'marketing' (known: engineering, flood)"
              in p.stderr, f"unknown department: {p.stderr.strip()}")
        p = c.run("submit", "hello")
        check(p.returncode == 2 and "give --dept" in p.stderr and "or --workflow" in p.stderr,
              f"submit without --dept: {p.stderr.strip()}")
        p = c.run("status", "424242")
        check(p.returncode == 1 and "no task 424242" in p.stderr,
              f"unknown task id: {p.stderr.strip()}")
        p = c.run("wait", "banana")
        check(p.returncode == 2 and "'banana' is not a task id" in p.stderr, "a non-numeric id")
        p = c.run("tasks", "--state", "sleeping")
        check(p.returncode == 2 and "unknown state 'sleeping'" in p.stderr, "an unknown state")

        # Malformed frames straight onto the CEO's socket.
        replies = {
            "garbage": rawsend(c, b"\xc1\xc1 not msgpack"),
            "truncated": rawsend(c, envelope("submit", {"dept": "engineering", "input": "x"})[:-3]),
            "unknown type": rawsend(c, envelope("teleport", {})),
            "bad version": rawsend(c, envelope("ping", {}, v=9)),
            "missing field": rawsend(c, envelope("submit", {"input": "x"})),
            "wrong kind": rawsend(c, envelope("status", {"task": "seven"})),
            "huge array claim": rawsend(c, b"\xdd\xff\xff\xff\xff"),
            "not for the CEO": rawsend(c, envelope("welcome", {"heartbeat_ms": 1, "liveness": 1})),
        }
        expect = {
            "garbage": "error bad_message", "truncated": "error bad_message",
            "unknown type": "error unknown_type unknown message type 'teleport'",
            "bad version": "error bad_version protocol version 9",
            "missing field": "error bad_message submit: 'dept' or 'workflow' is required",
            "wrong kind": "error bad_message status: field 'task' must be a non-negative integer",
            "huge array claim": "error bad_message",
            "not for the CEO": "error unexpected",
        }
        for k, v in replies.items():
            check(v.startswith(expect[k]), f"{k}: the CEO answered '{v}'")
        p = c.run("submit", "--dept", "engineering", "still serving?", check_rc=0)
        w = c.run("wait", p.stdout.strip(), "--timeout", "30s", "--json")
        check(w.returncode == 0 and '"state":"succeeded"' in w.stdout,
              "after all that the CEO still serves")
        with open(os.path.join(c.home, "logs", "ceo.log")) as f:
            log = f.read()
        check("unknown message type 'teleport'" in log, "the CEO logged the bad frames")

        # Agents that misbehave.
        tid = c.run("submit", "--dept", "engineering", "!stderr compile error: x.c:3\n!exit 3",
                    check_rc=0).stdout.strip()
        w = c.run("wait", tid, "--timeout", "30s", "--json")
        check(w.returncode == 1 and '"state":"failed"' in w.stdout and
              "agent exited with status 3: compile error: x.c:3" in w.stdout,
              f"an agent that exits 3: wait exits {w.returncode}: {w.stdout.strip()[:300]}")
        tid = c.run("submit", "--dept", "engineering", "!crash", check_rc=0).stdout.strip()
        w = c.run("wait", tid, "--timeout", "30s", "--json")
        check(w.returncode == 1 and "killed by signal 6" in w.stdout, "an agent that aborts")
        tid = c.run("submit", "--dept", "flood", "x", check_rc=0).stdout.strip()
        w = c.run("wait", tid, "--timeout", "60s", "--json")
        check(w.returncode == 1 and "exceeded max_output (1048576 bytes)" in w.stdout,
              f"an agent that writes 100 MB is cut off: {w.stdout.strip()[:300]}")
        ps = {e["name"]: e for e in c.json_lines("ps")}
        rss = 0
        with open(f"/proc/{ps['flood-1']['pid']}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    rss = int(line.split()[1])
        check(0 < rss < 200 * 1024, f"the employee's peak memory stayed at {rss} kB")
        tid = c.run("submit", "--dept", "flood", "again", check_rc=0).stdout.strip()
        w = c.run("wait", tid, "--timeout", "60s", "--json")
        check('"state":"failed"' in w.stdout and ps["flood-1"]["pid"] ==
              {e["name"]: e for e in c.json_lines("ps")}["flood-1"]["pid"],
              "the same employee process takes the next task")
        events = c.json_lines("events", "--topic", "task.failed")
        check(len(events) == 4, f"the event bus recorded the {len(events)} failures")
    finally:
        c.close()
    finish()


main()
