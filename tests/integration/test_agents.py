"""Every agent adapter, end to end: a company whose departments run each
agent CLI (a fake that checks the documented flags and replays the CLI's
real output format from tests/fixtures/), sandboxed as usual. A good run
gives the adapter's result and usage; the CLI's own error, a stream cut
mid-line, an agent that exits early and one that hangs each fail the task
with a clear error; progress lines become task.progress events; a secret
the agent prints never reaches the ledger."""
import glob
import os
import shutil
import subprocess

from nxtest import Company, check, finish

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
FAKE = os.path.realpath(os.path.join(FIXTURES, "fake-agent.py"))
KINDS = ["claude", "codex", "copilot", "gemini", "aider"]
SECRET = "sk-fake-9c1d7e3a5b2f4680"


def company():
    depts = []
    for k in KINDS:
        depts.append(f"""\
  {k}:
    agent:
      kind: {k}
      binary: {FAKE}
      args: ["--fake={k}"]
      model: test-model
    employees: 1
    capacity: 2
    timeout: {{soft: 4s, hard: 5s}}
    max_attempts: 1
    sandbox:
      ro: [{os.path.realpath(FIXTURES)}]
      env: [FAKE_SECRET]
""")
    return "company: agents\ndepartments:\n" + "".join(depts)


def example_files():
    """examples/agents/*.yaml are valid company files (their CLIs and keys
    are not here, so they are loaded, not run)."""
    for path in sorted(glob.glob(os.path.join(FIXTURES, "..", "..", "examples", "agents",
                                              "*.yaml"))):
        c = Company(open(path).read(), "agx")
        subprocess.run(["git", "init", "-q", os.path.join(c.dir, "product-repo")], check=True)
        p = c.run("ps")
        check(p.returncode == 3 and "no company is running" in p.stderr,
              f"{os.path.basename(path)} loads (then finds no CEO): {p.stderr.strip()[:120]}")
        shutil.rmtree(c.dir, ignore_errors=True)


def main():
    example_files()
    os.environ["FAKE_SECRET"] = SECRET
    c = Company(company(), "agt")
    try:
        check(c.up(), "the company with one department per agent CLI starts")
        ids = {}
        for k in KINDS:
            for case in ("ok", "error", "malformed", "early", "hang", "secret"):
                if case in ("error", "malformed") and k in ("copilot", "aider"):
                    continue  # plain-text CLIs have no stream format to break
                ids[(k, case)] = c.run("submit", "--dept", k, f"please {case} now",
                                       check_rc=0).stdout.strip()
        res = {}
        for key, tid in ids.items():
            c.run("wait", tid, "--timeout", "30s")
            res[key] = c.json_lines("status", tid)[0]

        expect_out = {"claude": "All 3 tests pass; the --verbose flag is added in cli.py.",
                      "codex": "Added the --verbose flag to cli.py; all 3 tests pass.",
                      "gemini": "Added the --verbose flag; all 3 tests pass.",
                      "copilot": "all 3 pass", "aider": "Applied edit to cli.py"}
        for k in KINDS:
            t = res[(k, "ok")]
            check(t["state"] == "succeeded" and expect_out[k] in (t["output"] or ""),
                  f"{k}: a good run succeeds with the adapter's result: {t['state']} "
                  f"{(t['output'] or t['error'] or '')[:120]!r}")
        usage = {k: (res[(k, "ok")].get("tokens_in"), res[(k, "ok")].get("tokens_out"),
                     res[(k, "ok")].get("cost_microusd")) for k in KINDS}
        check(usage["claude"] == (5616, 310, 42100) and usage["codex"][:2] == (24763, 122)
              and usage["gemini"][:2] == (2100, 350) and usage["aider"] == (4500, 1200, 30000),
              f"usage reaches the ledger as each CLI reports it: {usage}")
        for k in ("claude", "codex", "gemini"):
            t = res[(k, "error")]
            check(t["state"] == "failed" and k + ":" in (t["error"] or ""),
                  f"{k}: its own error report is the task's error: {t['error']!r}")
            t = res[(k, "malformed")]
            check(t["state"] == "failed" and "is not a JSON object" in (t["error"] or ""),
                  f"{k}: a stream cut mid-line fails with the line named: {t['error']!r}")
        for k in KINDS:
            t = res[(k, "early")]
            check(t["state"] == "failed" and "exited with status 1" in (t["error"] or ""),
                  f"{k}: an agent that exits early fails: {t['error']!r}")
            t = res[(k, "hang")]
            check(t["state"] == "failed" and "time limit" in (t["error"] or ""),
                  f"{k}: an agent that hangs is stopped by the time limit: {t['error']!r}")
            t = res[(k, "secret")]
            check(t["state"] == "succeeded" and SECRET not in (t["output"] or ""),
                  f"{k}: a secret in the agent's output is redacted: "
                  f"{(t['output'] or '')[:80]!r}")
        events = c.run("events", "--topic", "task.progress", "--limit", "1000").stdout
        check("tool Bash" in events and "run: bash -lc 'pytest -q'" in events
              and "tool run_shell_command" in events and "edited: cli.py" in events,
              "progress lines of claude, codex, gemini and aider become task.progress events")
        story = c.run("events", "--task", ids[("claude", "ok")]).stdout
        check("task.submitted" in story and "task.progress" in story and "task.succeeded" in story,
              "`nexus events --task` tells one task's story")
        db = c.db()
        leaked = db.execute("select count(*) from tasks where output like ? or error like ?",
                            (f"%{SECRET}%", f"%{SECRET}%")).fetchone()[0]
        leaked += db.execute("select count(*) from events where detail like ?",
                             (f"%{SECRET}%",)).fetchone()[0]
        check(leaked == 0, "the secret is nowhere in the ledger's tasks or events")
        check(SECRET not in c.logs(), "nor in the logs")
    finally:
        c.close()
    finish()


if __name__ == "__main__":
    main()
