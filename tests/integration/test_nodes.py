"""Deploying over several hosts: the CEO listens on TCP, and each host runs
`nexus node --departments ...` with its share of the company. Here two
nodes on loopback split three departments; tasks for each department run
on the right node (`nexus ps` names it); when one host dies (its node and
employees killed with SIGKILL) the other host's departments go on, and the
dead host's running task is queued again and finishes when a node comes
back; an unknown department is refused."""
import os
import signal
import socket
import time

from nxtest import Company, check, finish


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    port, events = free_port(), free_port()
    c = Company(f"""\
company: spread
ceo: {{endpoint: "tcp://127.0.0.1:{port}", events: "tcp://127.0.0.1:{events}"}}
departments:
  product: {{agent: {{kind: sim, work: 50ms}}, employees: 1}}
  engineering: {{agent: {{kind: sim, work: 50ms}}, employees: 2}}
  qa: {{agent: {{kind: sim, work: 1500ms}}, employees: 1}}
""", "nodes")
    try:
        c.start("ceo")
        check(c.wait_serving(), "the CEO serves on TCP")
        bad = c.run("node", "--departments", "product,nope", "--company", c.file)
        check(bad.returncode == 2 and "no department 'nope'" in bad.stderr,
              f"an unknown department is refused: {bad.stderr.strip()[-120:]}")
        c.start("node", "--name", "host-a", "--departments", "product,engineering")
        node_b = c.start("node", "--name", "host-b", "--departments", "qa")
        check(c.wait_until(lambda: len([e for e in c.json_lines("ps") if e["state"] != "gone"])
                           == 4, 30, "four employees"), "two nodes bring up the four employees")
        nodes = {e["name"]: e.get("node") for e in c.json_lines("ps")}
        check(nodes == {"product-1": "host-a", "engineering-1": "host-a",
                        "engineering-2": "host-a", "qa-1": "host-b"},
              f"each employee runs on its node: {nodes}")
        ids = [c.run("submit", "--dept", d, "work", check_rc=0).stdout.strip()
               for d in ("product", "engineering", "qa")]
        time.sleep(0.6)
        node_b.send_signal(signal.SIGKILL)  # host-b dies, with qa's task running:
        os.system(f"pkill -KILL -f 'employee --name qa-1 --company {c.file}'")  # all of it
        for t in ids[:2]:
            c.run("wait", t, "--timeout", "30s")
        states = [c.json_lines("status", t)[0]["state"] for t in ids]
        check(states[:2] == ["succeeded", "succeeded"],
              f"host-a's departments go on while host-b is down: {states}")
        c.start("node", "--name", "host-b2", "--departments", "qa")
        c.run("wait", ids[2], "--timeout", "60s")
        qa = c.json_lines("status", ids[2])[0]
        check(qa["state"] == "succeeded" and qa["attempts"] >= 2,
              f"qa's task is queued again and finishes on the new node: {qa['state']}, "
              f"{qa['attempts']} attempt(s)")
    finally:
        c.close()
    finish()


if __name__ == "__main__":
    main()
