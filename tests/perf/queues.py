"""Queue throughput on a local 3-node dsync cluster with fsync: enqueue, and
enqueue -> dequeue -> ack round trips with 4 producers and 4 consumers, 64-byte and
1 KiB payloads, over 1 and 16 queues; etcd puts at the same concurrency in the same run
as the replicated-write reference.

    python3 tests/perf/queues.py [--seconds 10] [--markdown FILE]
"""
import argparse
import time

from raft_commit import BENCH, bench, run_etcd  # noqa: F401  (BENCH: the binary in use)
from harness import Cluster, wait_until


def run_dsync_queues(seconds):
    rows = []
    with Cluster(3, "perf-queues", extra_env={"LOG_LEVEL": "warn"}) as c:
        c.start()

        def every_group_led():
            groups = c.nodes[0].get("/v1/cluster")[1]["groups"]
            return len(groups) > 1 and all(g["leader"] for g in groups)
        wait_until(every_group_led, 30, "a leader in every group", interval=0.2)
        time.sleep(6)  # leaders move to their preferred members
        endpoints = [f"127.0.0.1:{n.http_port}" for n in c.nodes]
        for payload in (64, 1024):
            for queues in (1, 16):
                for workload, clients in (("queue-enqueue", 4), ("queue-roundtrip", 8)):
                    row = bench("dsync", endpoints, [clients], seconds, workload,
                                extra=["--value-bytes", str(payload), "--queues", str(queues)])[0]
                    row.update(payload=payload, queues=queues)
                    rows.append(row)
                    print(f"{workload:15} payload={payload:<5} queues={queues:<3} enqueued/s={row['ops_per_s']:8.0f} "
                          f"consumed/s={row['consumed_per_s']:8.0f} p50={row['p50_ms']:.2f}ms p99={row['p99_ms']:.2f}ms "
                          f"errors={row['errors']}", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--markdown")
    a = ap.parse_args()
    rows = run_dsync_queues(a.seconds)
    etcd = {r["clients"]: r for r in run_etcd([4, 8], a.seconds)}
    lines = ["| workload | payload | queues | enqueued/s | consumed/s | enqueue p50 / p99 ms | etcd puts/s (same clients) | ratio |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        e = etcd[r["clients"]]
        rate = r["ops_per_s"] if r["workload"] == "queue-enqueue" else r["consumed_per_s"]
        lines.append(f"| {r['workload']} | {r['payload']} | {r['queues']} | {r['ops_per_s']:.0f} | "
                     f"{r['consumed_per_s']:.0f} | {r['p50_ms']:.2f} / {r['p99_ms']:.2f} | {e['ops_per_s']:.0f} | "
                     f"{rate / e['ops_per_s']:.2f}x |")
    table = "\n".join(lines)
    print(f"\nqueues, {a.seconds}s per row, {time.strftime('%Y-%m-%d %H:%M')}\n{table}")
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
