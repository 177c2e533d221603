"""Agents talk through the CEO: on fd 3 an agent sends to an employee, a
department or all of one, asks and waits for the answer, answers, and
publishes on a topic (examples/agent-chat.sh wraps the line protocol).
Messages from one sender to one receiver keep their order; an unknown or
idle recipient is a clear error back to the agent; a question nobody
answers times out; every message is in the ledger with its task."""
import json
import os
import time

from nxtest import Company, check, finish

EXAMPLES = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                         "examples"))
CHAT = os.path.join(EXAMPLES, "agent-chat.sh")

LISTENER = r'''
import os, sys, time
fd = int(os.environ["NEXUS_MSG_FD"])
f = os.fdopen(fd, "r", buffering=1)
out = os.fdopen(os.dup(fd), "w", buffering=1)
end = time.time() + 20
got = []
while time.time() < end:
    line = f.readline()
    if not line:
        break
    line = line.rstrip("\n")
    got.append(line)
    parts = line.split(" ", 3)
    if parts[0] == "question":
        out.write("answer %s six times seven is 42\n" % parts[1])
    if any(l.endswith(" m20") for l in got) and any(l.startswith("question ") for l in got):
        break
print("\n".join(got))
'''

COMPANY = f"""\
company: chat
ceo: {{ask_timeout: 2s}}
departments:
  talker:
    agent: {{kind: exec, command: ["bash", "-c", "$0 $(cat)", "{CHAT}"]}}
    employees: 1
    capacity: 4
    sandbox: {{ro: ["{EXAMPLES}"]}}
  sender:
    agent: {{kind: exec, command: ["bash", "-c", "for i in $(seq 1 20); do {CHAT} send dept:listener m$i || exit 1; done; echo sent"]}}
    employees: 1
    sandbox: {{ro: ["{EXAMPLES}"]}}
  listener:
    agent: {{kind: exec, command: ["python3", "-c", {json.dumps(LISTENER)}]}}
    employees: 1
    capacity: 2
  silent:
    agent: {{kind: exec, command: ["sleep", "6"]}}
    employees: 1
"""


def main():
    c = Company(COMPANY, "chat")
    try:
        check(c.up(), "the company starts")
        listen = c.run("submit", "--dept", "listener", "listen", check_rc=0).stdout.strip()
        quiet = c.run("submit", "--dept", "silent", "sit", check_rc=0).stdout.strip()
        check(c.wait_until(lambda: all(c.json_lines("status", t)[0]["state"] == "running"
                                       for t in (listen, quiet)), 20, "the listeners to run"),
              "the listener and the silent agent are running")
        time.sleep(0.5)
        sender = c.run("submit", "--dept", "sender", "go", check_rc=0).stdout.strip()
        asks = c.run("submit", "--dept", "talker", "ask employee:listener-1 what_is_6x7",
                     check_rc=0).stdout.strip()
        pub = c.run("submit", "--dept", "talker", "publish builds build-42-green",
                    check_rc=0).stdout.strip()
        nope = c.run("submit", "--dept", "talker", "send dept:nope hello",
                     check_rc=0).stdout.strip()
        timeout = c.run("submit", "--dept", "talker", "ask dept:silent anyone",
                        check_rc=0).stdout.strip()
        res = {}
        for t in (sender, asks, pub, nope, timeout, listen, quiet):
            c.run("wait", t, "--timeout", "30s")
            res[t] = c.json_lines("status", t)[0]
        check(res[sender]["state"] == "succeeded", f"20 messages sent: {res[sender]['error']}")
        lines = (res[listen]["output"] or "").splitlines()
        msgs = [l.split(" ")[2] for l in lines if l.startswith("msg sender-1 ")]
        check(msgs == [f"m{i}" for i in range(1, 21)],
              f"one sender's messages arrive in order: {msgs[:5]}...{msgs[-3:]}")
        check(any(l.startswith("question ") and "talker-1 what_is_6x7" in l for l in lines),
              "the question reached the listener with its asker's name")
        check(res[asks]["state"] == "succeeded" and
              "six times seven is 42" in (res[asks]["output"] or ""),
              f"the asker got the answer: {res[asks]['output']!r} {res[asks]['error']!r}")
        check(res[pub]["state"] == "succeeded" and
              "build-42-green" in c.run("events", "--topic", "agent.builds").stdout,
              "publish puts the text on the bus as agent.builds")
        check(res[nope]["state"] == "failed" and "no department 'nope'" in (res[nope]["error"] or ""),
              f"an unknown recipient is a clear error back to the agent: {res[nope]['error']!r}")
        check(res[timeout]["state"] == "failed" and
              "no answer from silent-1 within 2000 ms" in (res[timeout]["error"] or ""),
              f"a question nobody answers times out: {res[timeout]['error']!r}")
        idle = c.run("submit", "--dept", "talker", "send dept:listener late", check_rc=0).stdout.strip()
        c.run("wait", idle, "--timeout", "30s")
        e = c.json_lines("status", idle)[0]["error"] or ""
        check("no agent of department 'listener' is running now" in e,
              f"a department with no running agent is an error, not a silent drop: {e!r}")
        story = c.run("events", "--task", sender, "--limit", "1000").stdout
        check(story.count("message.sent") == 20, "the sender's story has its 20 messages")
        story = c.run("events", "--task", listen, "--limit", "1000").stdout
        check(story.count("message.received") == 21,
              f"the listener's story has the 20 messages and the question it received "
              f"({story.count('message.received')})")
        story = c.run("events", "--task", asks, "--limit", "1000").stdout
        check("message.asked" in story and "message.answered" in story,
              "the asker's story has its question and the answer")
    finally:
        c.close()
    finish()


if __name__ == "__main__":
    main()
