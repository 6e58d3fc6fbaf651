"""Committed writes per second and latency: a 3-node dsync cluster against a 3-node etcd
cluster (Debian etcd-server), both on loopback with real fsync to the same disk, driven
by the same closed-loop client (dsync-bench kv-put) at the same concurrency. The systems
run one after the other, never at the same time, and the order alternates per round.

    python3 tests/perf/raft_commit.py [--clients 1,16,64,256] [--seconds 10] [--rounds 2]
                                      [--workload kv-put|lock-cycle|lock-contend]

lock-cycle: every client takes and gives back its own lock (dsync's lock API against
etcd's /v3/lock/lock and /v3/lock/unlock with a lease per client); lock-contend: all
clients contend for one lock (hand-offs per second).

Prints a table; --markdown FILE also writes it as Markdown. With one client count per run
(e.g. --clients 4) each round also shows how busy the machine was and its CPU time per
operation.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import json

BUILD = os.environ.get("DSYNC_BUILD", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"))
BENCH = os.environ.get("DSYNC_BENCH_BIN", os.path.join(BUILD, "app", "dsync-bench"))
os.environ.setdefault("DSYNC_NODE_BIN", os.path.join(BUILD, "app", "dsync-node"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Cluster, free_ports, wait_until  # noqa: E402


def machine_jiffies():
    """(busy, total) CPU time of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)  # idle and iowait are not busy


def bench(target, endpoints, clients, seconds, workload="kv-put", extra=()):
    """One dsync-bench run. With one client count, each row also gets the machine's busy share
    and its CPU time per operation (servers, load generator and kernel together): on a
    saturated machine the throughput of two systems is the inverse ratio of the latter."""
    before = machine_jiffies()
    out = subprocess.run([BENCH, workload, "--target", target, "--endpoints", ",".join(endpoints),
                          "--clients", ",".join(map(str, clients)), "--seconds", str(seconds), "--json", *extra],
                         capture_output=True, text=True, check=True)
    after = machine_jiffies()
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    busy, total = after[0] - before[0], after[1] - before[1]
    if len(rows) == 1 and total > 0 and rows[0]["ops"] > 0:
        rows[0]["machine_busy"] = busy / total
        rows[0]["machine_us_per_op"] = busy * 1e6 / os.sysconf("SC_CLK_TCK") / rows[0]["ops"]
    return rows


def run_dsync(clients, seconds, workload="kv-put"):
    with Cluster(3, "perf-dsync", extra_env={"LOG_LEVEL": "warn"}) as c:
        c.start()

        def leader():
            import urllib.request
            body = json.load(urllib.request.urlopen(f"http://127.0.0.1:{c.nodes[0].http_port}/v1/cluster"))
            return body["leader"]
        wait_until(leader, 15, "a dsync leader")
        return bench("dsync", [f"127.0.0.1:{n.http_port}" for n in c.nodes], clients, seconds, workload)


def run_etcd(clients, seconds, workload="kv-put"):
    etcd = shutil.which("etcd")
    if not etcd:
        raise SystemExit("etcd not found: apt-get install etcd-server")
    work = tempfile.mkdtemp(prefix="perf-etcd-")
    ports = free_ports(6)
    peers = ",".join(f"e{i}=http://127.0.0.1:{ports[3 + i]}" for i in range(3))
    procs = []
    try:
        for i in range(3):
            procs.append(subprocess.Popen(
                [etcd, "--name", f"e{i}", "--data-dir", os.path.join(work, f"e{i}"),
                 "--listen-client-urls", f"http://127.0.0.1:{ports[i]}",
                 "--advertise-client-urls", f"http://127.0.0.1:{ports[i]}",
                 "--listen-peer-urls", f"http://127.0.0.1:{ports[3 + i]}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{ports[3 + i]}",
                 "--initial-cluster", peers, "--initial-cluster-state", "new", "--log-level", "error"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        def healthy():
            import urllib.request
            return all(json.load(urllib.request.urlopen(f"http://127.0.0.1:{p}/health", timeout=1)).get("health")
                       == "true" for p in ports[:3])
        wait_until(healthy, 30, "etcd to be healthy", interval=0.2)
        return bench("etcd", [f"127.0.0.1:{p}" for p in ports[:3]], clients, seconds, workload)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", default="1,16,64,256")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workload", default="kv-put", choices=["kv-put", "lock-cycle", "lock-contend"])
    ap.add_argument("--markdown")
    a = ap.parse_args()
    clients = [int(x) for x in a.clients.split(",")]
    results = {"dsync": {c: [] for c in clients}, "etcd": {c: [] for c in clients}}
    for r in range(a.rounds):
        order = [("dsync", run_dsync), ("etcd", run_etcd)]
        if r % 2:
            order.reverse()
        for name, fn in order:
            for row in fn(clients, a.seconds, a.workload):
                results[name][row["clients"]].append(row)
                print(f"round {r + 1} {name:5} clients={row['clients']:<4} {row['ops_per_s']:9.0f} ops/s "
                      f"p50={row['p50_ms']:.2f}ms p99={row['p99_ms']:.2f}ms errors={row['errors']}"
                      + (f" machine busy {100 * row['machine_busy']:.0f}%, {row['machine_us_per_op']:.0f} us CPU/op"
                         if "machine_busy" in row else ""), flush=True)

    def med(rows, key):
        return statistics.median(x[key] for x in rows)
    lines = ["| clients | dsync ops/s | etcd ops/s | ratio | dsync p50 / p99 ms | etcd p50 / p99 ms |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in clients:
        d, e = results["dsync"][c], results["etcd"][c]
        lines.append(f"| {c} | {med(d, 'ops_per_s'):.0f} | {med(e, 'ops_per_s'):.0f} | "
                     f"{med(d, 'ops_per_s') / med(e, 'ops_per_s'):.2f}x | "
                     f"{med(d, 'p50_ms'):.2f} / {med(d, 'p99_ms'):.2f} | {med(e, 'p50_ms'):.2f} / {med(e, 'p99_ms'):.2f} |")
    table = "\n".join(lines)
    print(f"\n{a.workload}: medians of {a.rounds} rounds, {a.seconds}s each, {time.strftime('%Y-%m-%d %H:%M')}\n{table}")
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
