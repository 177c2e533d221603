#!/usr/bin/python3
"""The Celery baseline of bench/run: no-op tasks through Celery 5 with a
Redis broker and result backend (Debian's python3-celery and redis-server),
two prefork worker processes, all on loopback. Measures, like bench_tasks:
tasks per second with many producers (the clock stops when every result is
back) and submit-to-result p50/p99 one at a time. Prints one JSON object.

Durability differs, and the JSON says so: Redis keeps its default (no fsync
per write), while the Nexus ledger fsyncs every commit.

Usage: celery_bench.py N CLIENTS LATENCY_N"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

APP = """
from celery import Celery
app = Celery("nxbench", broker="redis://127.0.0.1:{port}/0", backend="redis://127.0.0.1:{port}/1")
app.conf.update(task_acks_late=False, worker_prefetch_multiplier=64, result_expires=600,
                broker_connection_retry_on_startup=True)

@app.task
def noop(x):
    return x
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    n, clients, lat_n = (int(a) for a in sys.argv[1:4])
    work = tempfile.mkdtemp(prefix="nx-celery.")
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", work],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(os.path.join(work, "nxbench.py"), "w") as f:
        f.write(APP.format(port=port))
    worker = None
    ok = False
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "nxbench", "worker",
                                   "-c", "2", "-P", "prefork", "--without-heartbeat",
                                   "--without-gossip", "--without-mingle", "-l", "warning"],
                                  cwd=work, stdout=subprocess.DEVNULL,
                                  stderr=open(os.path.join(work, "worker.log"), "w"))
        sys.path.insert(0, work)
        import nxbench  # noqa: E402
        nxbench.noop.delay(0).get(timeout=60)  # the worker is up
        lat = []
        for i in range(lat_n):
            t0 = time.perf_counter()
            nxbench.noop.delay(i).get(timeout=30)
            lat.append((time.perf_counter() - t0) * 1e6)
        lat.sort()
        per_client = n // clients
        results = [[] for _ in range(clients)]

        def produce(k):
            results[k] = [nxbench.noop.delay(i) for i in range(per_client)]

        t0 = time.perf_counter()
        threads = [threading.Thread(target=produce, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        acked = time.perf_counter() - t0
        for rs in results:
            for r in rs:
                r.get(timeout=600)
        done = time.perf_counter() - t0
        total = per_client * clients
        print(json.dumps({
            "tasks": total, "clients": clients, "worker_processes": 2,
            "acked_per_sec": round(total / acked), "tasks_per_sec": round(total / done),
            "submit_to_result_p50_us": round(lat[len(lat) // 2]),
            "submit_to_result_p99_us": round(lat[(len(lat) * 99) // 100]),
            "latency_samples": lat_n, "broker": "redis (no fsync)",
            "celery": __import__("celery").__version__, "ok": True}), flush=True)
        ok = True
    finally:
        if worker:
            worker.terminate()
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
        redis.terminate()
        redis.wait()
        sys.stdout.flush()
        sys.stderr.flush()
        # Every AsyncResult would try to unsubscribe from the stopped Redis
        # at exit, retrying; there is nothing left to clean up.
        os._exit(0 if ok else 1)


if __name__ == "__main__":
    main()
