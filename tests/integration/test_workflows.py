"""Workflows, the way a software company works: examples/software-company.yaml
on a real git repository (Product plans and splits, Engineering commits in
the task's worktree, QA rejects some work back to Engineering). Then the
limits: a review that always rejects fails after max_rejects with the
history; a stage that fails fails its workflow; cancelling a workflow
cancels what runs under it; a CEO killed mid-workflow loses nothing; a
finished task's worktree is removed after the retention, its branch kept."""
import os
import shutil
import signal
import subprocess
import time

from nxtest import Company, check, finish

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                       "software-company.yaml")


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                          check=True).stdout


def make_repo(c):
    repo = os.path.join(c.dir, "product-repo")
    subprocess.run(["git", "init", "-q", repo], check=True)
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty",
        "-m", "initial commit")
    return repo


def tree(c, tid):
    return c.json_lines("tree", str(tid))


def children(nodes, parent):
    return [n for n in nodes if n.get("parent") == parent]


def check_tree(c, repo, tid, max_rejects):
    """The shape every feature of the example must have."""
    nodes = tree(c, tid)
    root = nodes[0]
    ok = root["workflow"] == "feature" and root["depth"] == 0
    product = [n for n in children(nodes, root["id"]) if not n.get("workflow")]
    subs = [n for n in children(nodes, root["id"]) if n.get("workflow")]
    ok &= len(product) == 1 and product[0]["dept"] == "product" and len(subs) == 2
    eng_ok = 0
    for s in subs:
        stages = children(nodes, s["id"])
        depts = [n["dept"] for n in stages]
        rejects = [n for n in stages if n.get("verdict") == "reject"]
        # engineering, qa, then engineering + qa again for every rejection
        ok &= depts == ["engineering", "qa"] * (len(depts) // 2) and len(depts) >= 2
        ok &= len(rejects) <= max_rejects + 1
        if s["state"] == "succeeded":
            ok &= stages[-1].get("verdict") == "accept" and s.get("rejects", 0) == len(rejects)
        else:
            ok &= len(rejects) == max_rejects + 1 and "rejected" in (s["error"] or "")
        for n in stages:
            if n["dept"] == "engineering" and n["state"] == "succeeded":
                eng_ok += 1
        if len(stages) > 2:
            rework = c.json_lines("status", str(stages[2]["id"]))[0]["input"]
            ok &= "qa rejected the work; its findings" in rework
    commits = git(repo, "log", "--format=%s", f"{root['base']}..{root['branch']}").splitlines()
    ok &= len(commits) == eng_ok and root["branch"] == f"nexus/{tid}"
    if not ok:  # show the tree that did not fit
        for n in nodes:
            print("   ", n["depth"] * "  ", n["id"], n["dept"], n["state"], n.get("verdict"), n.get("parent"), (n.get("error") or "")[:100])
    return ok, nodes, len(commits), sum(len([n for n in children(nodes, s["id"])
                                              if n.get("verdict") == "reject"]) for s in subs)


def example_company():
    c = Company(open(EXAMPLE).read(), "wf")
    repo = make_repo(c)
    try:
        check(c.up(), "examples/software-company.yaml starts on a fresh git repository")
        ids = [c.run("submit", "--workflow", "feature", f"feature {i}: {name}",
                     check_rc=0).stdout.strip()
               for i, name in enumerate(["login", "search", "password reset", "export",
                                         "dark mode", "audit log"])]
        for tid in ids:
            c.run("wait", tid, "--timeout", "60s")
        total_rejects = 0
        for tid in ids:
            ok, nodes, ncommits, rejects = check_tree(c, repo, tid, 2)
            total_rejects += rejects
            check(ok, f"feature {tid}: product plan -> 2 subtasks -> engineering/qa rounds, "
                      f"{ncommits} commit(s) on nexus/{tid}, {rejects} rejection(s), "
                      f"{nodes[0]['state']}")
            check(os.path.isdir(os.path.join(c.home, "worktrees", tid)),
                  f"feature {tid} has its own worktree")
        check(total_rejects > 0, f"QA rejected some work ({total_rejects} rejection(s))")
        diff = c.run("diff", ids[0], check_rc=0).stdout
        st = c.json_lines("status", ids[0])[0]
        check(all(line.split(" ", 1)[0] in diff for line in st.get("commits", [])) and
              "+# Work for task" in diff,
              f"`nexus diff` shows the commits the status lists ({len(st.get('commits', []))})")
        text = c.run("tree", ids[0]).stdout
        check("workflow feature" in text and "stage 1 product" in text and "eng-" in text,
              "`nexus tree` prints stages, employees and states")
    finally:
        c.close()


LIMITS = """\
company: limits
repo: ./product-repo
worktree_retention: 1s
workflows:
  picky: {{stages: [build, review], max_rejects: 2}}
  broken: build -> fail -> review
  slow: {{stages: slowbuild -> review, max_rejects: 2}}
departments:
  build:
    role: engineering
    agent: {{kind: sim, work: 50ms}}
    employees: 1
  slowbuild:
    role: engineering
    agent: {{kind: sim, work: 1500ms}}
    employees: 2
  fail:
    agent: {{kind: exec, command: ["sh", "-c", "echo broken >&2; exit 4"]}}
    employees: 1
    max_attempts: 2
    retry: {{initial: 50ms, on_failure: true}}
  review:
    role: qa
    agent: {{kind: sim, work: 20ms, reject_rate: {reject}}}
    employees: 1
"""


def limits():
    c = Company(LIMITS.format(reject=1.0), "wfl")
    repo = make_repo(c)
    try:
        check(c.up(), "the limits company starts")
        picky = c.run("submit", "--workflow", "picky", "a tiny fix", check_rc=0).stdout.strip()
        broken = c.run("submit", "--workflow", "broken", "anything", check_rc=0).stdout.strip()
        c.run("wait", picky, "--timeout", "30s")
        c.run("wait", broken, "--timeout", "30s")
        p = c.json_lines("status", picky)[0]
        nodes = tree(c, picky)
        check(p["state"] == "failed" and "rejected 3 time(s), more than max_rejects (2)" in
              p["error"] and p["error"].count("review task") == 3,
              f"a review that always rejects fails after max_rejects, with the history: "
              f"{p['error'][:160]!r}")
        check([n["dept"] for n in nodes[1:]] == ["build", "review"] * 3,
              "the tree shows three rounds of build and review")
        b = c.json_lines("status", broken)[0]
        check(b["state"] == "failed" and "stage 2/3 (fail)" in b["error"] and
              "dead" in b["error"], f"a failing stage fails its workflow: {b['error'][:160]!r}")
        check(len(tree(c, broken)) == 3, "and no later stage ran")

        slow = c.run("submit", "--workflow", "slow", "cancel me", check_rc=0).stdout.strip()
        time.sleep(0.8)
        c.run("cancel", slow, check_rc=0)
        c.run("wait", slow, "--timeout", "10s")
        states = [n["state"] for n in tree(c, slow)]
        check(states == ["cancelled", "cancelled"],
              f"cancelling a workflow cancels its running stage: {states}")

        # A CEO killed in the middle of workflows: they all finish, once.
        ids = [c.run("submit", "--workflow", "slow", f"survive {i}", check_rc=0).stdout.strip()
               for i in range(4)]
        time.sleep(1.0)
        pid = int(open(os.path.join(c.home, "ceo.pid")).read()) if os.path.exists(
            os.path.join(c.home, "ceo.pid")) else None
        ceo = subprocess.run(["pgrep", "-f", "nexus ceo"], capture_output=True, text=True)
        pids = [int(x) for x in ceo.stdout.split()] if not pid else [pid]
        for x in pids:
            os.kill(x, signal.SIGKILL)
        check(len(pids) >= 1, f"the CEO was killed with SIGKILL mid-workflow ({pids})")
        # `nexus up` supervises the CEO and restarts it.
        check(c.wait_until(lambda: c.run("ps", timeout=10).returncode == 0, 30,
                           "the CEO to come back"), "the CEO is back")
        for tid in ids:
            c.run("wait", tid, "--timeout", "60s")
        ok = True
        for tid in ids:
            nodes = tree(c, tid)
            # review rejects everything here: 3 rounds, then failed; each stage exactly once
            ok &= nodes[0]["state"] == "failed" and [n["dept"] for n in nodes[1:]] == \
                ["slowbuild", "review"] * 3 and all(n["state"] == "succeeded" for n in nodes[1:])
            if not ok:
                print("   ", [(n["dept"], n["state"], n["attempts"]) for n in nodes])
        check(ok, "every workflow went on after the CEO restart, each stage ran to one result")

        # Retention: finished worktrees go, branches stay.
        wt = os.path.join(c.home, "worktrees", picky)
        check(c.wait_until(lambda: not os.path.exists(wt), 10, "the worktree to go"),
              "a finished task's worktree is removed after the retention")
        check(f"nexus/{picky}" in git(repo, "branch", "--list", "nexus/*"),
              "its branch stays")
        check(c.run("diff", picky).returncode == 0, "and `nexus diff` still works")
        p = c.run("submit", "--workflow", "nope", "x")
        check(p.returncode == 1 and "no workflow 'nope' (known: picky, broken, slow)" in p.stderr,
              f"an unknown workflow is a clear error: {p.stderr.strip()}")
    finally:
        c.close()


def bad_files():
    for text, want in [
        ("company: x\nworkflows: {f: a -> b}\ndepartments: {a: {agent: sim, employees: 1}}\n",
         "workflows.f.stages: stage 'b' is not a department"),
        ("company: x\nrepo: ./nowhere\ndepartments: {a: {agent: sim, employees: 1}}\n",
         "is not a folder"),
        ("company: x\nworkflows: {f: {stages: [a], max_reject: 1}}\n"
         "departments: {a: {agent: sim, employees: 1}}\n",
         "unknown key (known: stages, max_rejects)"),
    ]:
        c = Company(text, "wfb")
        p = c.run("up", "-d")
        check(p.returncode == 2 and want in p.stderr, f"broken company file: {p.stderr.strip()}")
        shutil.rmtree(c.dir, ignore_errors=True)


def main():
    example_company()
    limits()
    bad_files()
    finish()


if __name__ == "__main__":
    main()
