"""Helpers for the integration tests: a company in a temporary home, driven
through the real `nexus` binary, inspected through the real SQLite ledger.

Python's standard library only, so the tests need nothing from pip."""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

NEXUS = os.environ.get("NEXUS_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "nexus")
RAWSEND = os.environ.get("NX_RAWSEND", "")

_failures = 0


def check(cond, what):
    """Records and prints one assertion; the test exits non-zero at the end
    if any failed."""
    global _failures
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        _failures += 1
    return cond


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def sanitizer_check(where, text):
    """Every process of the tests is built with ASan+UBSan: any report in
    its output fails the test."""
    for mark in SANITIZER_MARKS:
        if mark in text:
            i = text.index(mark)
            check(False, f"no sanitizer report from {where}: {text[i:i + 1500]}")
            return


def finish():
    if _failures:
        print(f"{_failures} check(s) failed")
        sys.exit(1)
    print("all checks passed")


class Company:
    def __init__(self, yaml_text, tag="t"):
        # Short paths: ipc socket names are limited to 107 bytes.
        self.dir = tempfile.mkdtemp(prefix=f"nx{tag}.", dir="/tmp")
        self.file = os.path.join(self.dir, "company.yaml")
        with open(self.file, "w") as f:
            f.write(yaml_text)
        self.home = os.path.join(self.dir, ".nexus")
        self.procs = []

    def run(self, *args, input=None, timeout=120, check_rc=None):
        p = subprocess.run([NEXUS, *args], cwd=self.dir, input=input, capture_output=True,
                           text=True, timeout=timeout)
        sanitizer_check(f"nexus {' '.join(args)[:60]}", p.stderr)
        if check_rc is not None and p.returncode != check_rc:
            print(f"command nexus {' '.join(args)} exited {p.returncode}, "
                  f"expected {check_rc}\nstdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}",
                  flush=True)
        return p

    def json_lines(self, *args):
        p = self.run(*args, "--json", check_rc=0)
        return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]

    def up(self):
        p = self.run("up", "-d", check_rc=0)
        return p.returncode == 0

    def start(self, verb, *extra, log=None):
        """Starts `nexus VERB` in the background (a real process we can kill)."""
        out = open(log or os.path.join(self.dir, f"{verb}.out"), "ab")
        p = subprocess.Popen([NEXUS, verb, *extra, "--company", self.file], cwd=self.dir,
                             stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def wait_serving(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.run("ps", timeout=10).returncode == 0:
                return True
            time.sleep(0.1)
        return False

    def db(self):
        return sqlite3.connect(os.path.join(self.home, "ledger.db"), timeout=30)

    def wait_until(self, pred, timeout, what, step=0.5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pred():
                return True
            time.sleep(step)
        print(f"timed out after {timeout}s waiting for {what}", flush=True)
        return False

    def logs(self):
        out = []
        for root, _, files in os.walk(self.dir):
            for f in files:
                if f.endswith(".log") or f.endswith(".out"):
                    path = os.path.join(root, f)
                    with open(path, errors="replace") as fh:
                        out.append(f"== {path}\n" + fh.read()[-3000:])
        return "\n".join(out)

    def close(self, keep_on_failure=True):
        self.run("down", timeout=60)
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        time.sleep(0.3)  # let the last employees flush their logs
        sanitizer_check("the company's processes", self.logs())
        if _failures and keep_on_failure:
            print(self.logs())
        if os.environ.get("NX_KEEP"):
            print(f"kept {self.dir}")
            return
        shutil.rmtree(self.dir, ignore_errors=True)


def mp(obj):
    """A minimal msgpack encoder (maps, strings, ints, bools, bytes) for
    hand-made frames in the bad-input tests."""
    if isinstance(obj, bool):
        return b"\xc3" if obj else b"\xc2"
    if isinstance(obj, int):
        if 0 <= obj < 128:
            return bytes([obj])
        if obj >= 0:
            return b"\xcf" + obj.to_bytes(8, "big")
        return b"\xd3" + obj.to_bytes(8, "big", signed=True)
    if isinstance(obj, str):
        b = obj.encode()
        return (bytes([0xa0 | len(b)]) if len(b) < 32 else b"\xda" + len(b).to_bytes(2, "big")) + b
    if isinstance(obj, bytes):
        return b"\xc5" + len(obj).to_bytes(2, "big") + obj
    if isinstance(obj, dict):
        out = b"\xde" + len(obj).to_bytes(2, "big")
        for k, v in obj.items():
            out += mp(k) + mp(v)
        return out
    raise TypeError(type(obj))


def envelope(type_, body, v=1, id_=77):
    return mp({"v": v, "type": type_, "id": id_, "from": "test", "to": "ceo", "corr": 0,
               "body": body})
