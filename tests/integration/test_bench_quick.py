"""`bench/run --quick`: every benchmark step runs against its baselines
(raw ZeroMQ broker, Erlang, Celery + Redis, raw SQLite, bwrap, unshare) with
small counts, and writes valid JSON with every figure and the plots. Speed
is never asserted here: docs/benchmarks.md has the numbers of a full run."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from nxtest import NEXUS, check, finish

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def main():
    build = os.path.dirname(os.path.abspath(NEXUS))
    out = tempfile.mkdtemp(prefix="nxbq.")
    try:
        p = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run"), "--quick",
                            "--build", build, "--out", out], capture_output=True, text=True,
                           timeout=1500)
        print(p.stderr[-4000:])
        check(p.returncode == 0, f"bench/run --quick exits 0 ({p.returncode})")
        with open(os.path.join(out, "results.json")) as f:
            res = json.load(f)
        for step in ("spawn", "routing", "tasks", "scale", "recovery"):
            st = res["steps"].get(step, {})
            check(st.get("ok") is True, f"step {step} ran: {st.get('error', 'ok')[:300]}")
        steps_with_figures = {fig["step"] for fig in res["figures"]}
        check(steps_with_figures == {"spawn", "routing", "tasks", "scale", "recovery"},
              f"every step wrote figures: {sorted(steps_with_figures)}")
        check(all(isinstance(fig["nexus"], (int, float)) and fig["nexus"] > 0
                  for fig in res["figures"]), "every figure has a positive Nexus value")
        check(all(fig["ratio"] is None or fig["ratio"] > 0 for fig in res["figures"]),
              "every ratio is positive")
        for k in ("cpus", "memory_mib", "kernel"):
            check(k in res["machine"], f"results.json names the machine's {k}")
        check(sorted(res.get("plots", [])) == ["latency.png", "scale.png"] and
              all(os.path.getsize(os.path.join(out, png)) > 1000 for png in res["plots"]),
              f"gnuplot drew the plots: {res.get('plots')}")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
