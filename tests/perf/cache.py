"""Cache throughput and latency on a local 3-node dsync cluster over one redis-server, per
coherence protocol: read hits (all clients on one node, then spread over all nodes), a
read-mostly (95/5) and a write-heavy (50/50) mix over a small (100) and a large (10000) key
set from all nodes; coherence messages and Redis operations per request. The peer, in the
same run at the same concurrency: Redis GET/SET timed by the same client (dsync-bench
--target redis, the same keys and mixes) and by redis-benchmark.

    python3 tests/perf/cache.py [--seconds 5] [--clients 16] [--markdown FILE]
"""
import argparse
import csv
import io
import subprocess
import time

from raft_commit import bench
from harness import TMP_ROOT, Cluster, Redis, http, wait_until


def totals(c):
    out = {"messages": 0, "redis_ops": 0}
    for n in c.nodes:
        s = http(n.http_port, "GET", "/v1/cache")[1]
        out["messages"] += s["messages_sent"]
        out["redis_ops"] += s["memory_reads"] + s["memory_writes"]
    return out


WORKLOADS = (("read-hit, one node", 0, 100), ("read-hit", 0, 100), ("mix 95/5", 5, 100), ("mix 95/5", 5, 10000),
             ("mix 50/50", 50, 100), ("mix 50/50", 50, 10000))


def warm_up(target, endpoints, keys):
    for writes in (100, 0):
        bench(target, endpoints, [3], 2, "cache-mix", extra=["--keys", str(keys), "--write-percent", str(writes)])


def run_redis(redis, seconds, clients):
    """The same workloads against redis-server itself, as GET and SET."""
    rows = []
    endpoint = [f"127.0.0.1:{redis.port}"]
    for name, writes, keys in WORKLOADS:
        if name == "read-hit":
            continue  # one server: the same as the row before
        if name.startswith("read-hit"):
            warm_up("redis", endpoint, keys)
        row = bench("redis", endpoint, [clients], seconds, "cache-mix",
                    extra=["--keys", str(keys), "--write-percent", str(writes)])[0]
        row.update(protocol="Redis", name=name.replace(", one node", ""), keys=keys, messages_per_op=0,
                   redis_per_op=1)
        rows.append(row)
        print(f"Redis {row['name']:9} keys={keys:<5} ops/s={row['ops_per_s']:8.0f} p50={row['p50_ms']:.3f}ms "
              f"p99={row['p99_ms']:.3f}ms errors={row['errors']}", flush=True)
    return rows


def run_protocol(protocol, redis, seconds, clients):
    rows = []
    env = {"LOG_LEVEL": "warn", "QUEUE_SHARDS": "1", "REDIS_PORT": str(redis.port), "CACHE_COHERENCE_PROTOCOL": protocol,
           "CACHE_SIZE": "100000"}
    with Cluster(3, f"perf-cache-{protocol}", extra_env=env) as c:
        c.start()
        wait_until(lambda: all(http(n.http_port, "GET", "/v1/cache")[1]["epoch"] > 0 for n in c.nodes), 20,
                   "every cache to serve", interval=0.2)
        everywhere = [f"127.0.0.1:{n.http_port}" for n in c.nodes]
        for name, writes, keys in WORKLOADS:
            endpoints = everywhere[:1] if name == "read-hit, one node" else everywhere
            if name.startswith("read-hit"):  # every key gets a value, then every node reads every key
                warm_up("dsync", everywhere, keys)
            before = totals(c)
            row = bench("dsync", endpoints, [clients], seconds, "cache-mix",
                        extra=["--keys", str(keys), "--write-percent", str(writes)])[0]
            after = totals(c)
            ops = max(row["ops"], 1)
            row.update(protocol=protocol, name=name, keys=keys,
                       messages_per_op=(after["messages"] - before["messages"]) / ops,
                       redis_per_op=(after["redis_ops"] - before["redis_ops"]) / ops)
            rows.append(row)
            print(f"{protocol:5} {name:9} keys={keys:<5} ops/s={row['ops_per_s']:8.0f} p50={row['p50_ms']:.3f}ms "
                  f"p99={row['p99_ms']:.3f}ms msgs/op={row['messages_per_op']:.2f} redis/op={row['redis_per_op']:.3f} "
                  f"errors={row['errors']}", flush=True)
    return rows


def redis_benchmark(redis, clients, requests=200000):
    out = subprocess.run(["redis-benchmark", "-p", str(redis.port), "-c", str(clients), "-n", str(requests),
                          "-t", "get,set", "--csv"], capture_output=True, text=True, check=True).stdout
    rows = {}
    for r in csv.DictReader(io.StringIO(out)):
        rows[r["test"]] = {"ops_per_s": float(r["rps"]), "p50_ms": float(r["p50_latency_ms"]),
                           "p99_ms": float(r["p99_latency_ms"])}
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--markdown")
    a = ap.parse_args()
    rows = []
    with Redis(TMP_ROOT) as redis:
        peer = redis_benchmark(redis, a.clients)
        rows += run_redis(redis, a.seconds, a.clients)
        for protocol in ("MESI", "MOSI", "MOESI"):
            rows += run_protocol(protocol, redis, a.seconds, a.clients)
        rows += run_redis(redis, a.seconds, a.clients)  # again: the machine's speed drifts
    lines = [f"redis-benchmark, {a.clients} clients: GET {peer['GET']['ops_per_s']:.0f}/s p50 {peer['GET']['p50_ms']:.3f} ms "
             f"p99 {peer['GET']['p99_ms']:.3f} ms; SET {peer['SET']['ops_per_s']:.0f}/s p50 {peer['SET']['p50_ms']:.3f} ms",
             "",
             "| protocol | workload | keys | ops/s | p50 / p99 ms | messages/op | Redis ops/op |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['protocol']} | {r['name']} | {r['keys']} | {r['ops_per_s']:.0f} | "
                     f"{r['p50_ms']:.3f} / {r['p99_ms']:.3f} | {r['messages_per_op']:.2f} | {r['redis_per_op']:.3f} |")
    table = "\n".join(lines)
    print(f"\ncache, {a.seconds}s per row, {a.clients} clients, {time.strftime('%Y-%m-%d %H:%M')}\n{table}")
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
