"""Credentials reach only the agents whose department names them: a
variable from the environment and a private file (bound read-only). A
secret an agent prints never reaches the ledger, the events or the logs:
it is replaced by [redacted:NAME]. A credential file that group or others
can read is refused."""
import glob
import os

from nxtest import Company, check, finish

ENV_SECRET = "envsecret-7f3a9c2e41b8d605"
FILE_SECRET = "filesecret-0d9e8c7b6a5f4e3d"
AGENT = ('echo "env=$NX_TEST_TOKEN"; cat CREDS 2>&1 || true; '
         'if [ -n "$FAIL" ]; then echo "leaked $NX_TEST_TOKEN" >&2; exit 3; fi')

COMPANY = """\
company: creds
departments:
  keyed:
    agent: {{kind: exec, command: ["sh", "-c", '{agent}']}}
    employees: 1
    sandbox:
      env: [NX_TEST_TOKEN]
      credential_files: [{creds}]
  keyed-fail:
    agent: {{kind: exec, command: ["sh", "-c", 'FAIL=1; {agent}']}}
    employees: 1
    sandbox:
      env: [NX_TEST_TOKEN]
  other:
    agent: {{kind: exec, command: ["sh", "-c", '{agent}']}}
    employees: 1
"""


def main():
    os.environ["NX_TEST_TOKEN"] = ENV_SECRET
    probe = Company("company: x\n", "cred")
    creds = os.path.join(probe.dir, "token.txt")
    with open(creds, "w") as f:
        f.write(FILE_SECRET + "\n")
    os.chmod(creds, 0o644)
    text = COMPANY.format(agent=AGENT.replace("CREDS", creds), creds=creds)
    with open(probe.file, "w") as f:
        f.write(text)
    p = probe.run("up", "-d")
    check(p.returncode == 2 and "is readable by group or others (mode 0644); chmod 600 it"
          in p.stderr, f"a group-readable credential file is refused: {p.stderr.strip()}")
    os.chmod(creds, 0o600)
    c = probe
    try:
        check(c.up(), "the company starts")
        ids = {d: c.run("submit", "--dept", d, "go", check_rc=0).stdout.strip()
               for d in ("keyed", "keyed-fail", "other")}
        res = {}
        for d, tid in ids.items():
            c.run("wait", tid, "--timeout", "30s")
            res[d] = c.json_lines("status", tid)[0]
        out = res["keyed"]["output"]
        check("env=[redacted:NX_TEST_TOKEN]" in out and "[redacted:token.txt]" in out,
              f"its own agent got the variable and the file, scrubbed in the result: {out!r}")
        err = res["keyed-fail"]["error"] or ""
        check("leaked [redacted:NX_TEST_TOKEN]" in err, f"scrubbed in the error too: {err!r}")
        other = res["other"]["output"]
        check("env=\n" in other and "No such file" in other and ENV_SECRET not in other,
              f"another department's agent sees neither: {other!r}")
        c.run("events", "--limit", "1000")
        blobs = []
        for path in glob.glob(os.path.join(c.home, "**", "*"), recursive=True):
            if os.path.isfile(path) and not path.endswith(".sock"):
                with open(path, "rb") as f:
                    blobs.append((path, f.read()))
        leaked = [p for p, b in blobs if ENV_SECRET.encode() in b or FILE_SECRET.encode() in b]
        check(not leaked, f"no secret in the ledger, its WAL, the logs or the workspaces: {leaked}")
        ev = c.run("events", "--limit", "1000", "--json").stdout
        check(ENV_SECRET not in ev and FILE_SECRET not in ev, "nor on the event bus")
    finally:
        c.close()
    finish()


main()
