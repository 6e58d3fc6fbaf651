"""The coherent cache on a real 3-node cluster with a real redis-server: line states across
nodes for MESI, MOSI and MOESI, eviction with write-back, delete, invalidate, a node killed
while it owns a dirty line, a node stopped long enough to be declared dead, Redis going
away and coming back, bad input, and a history of concurrent reads and writes from every
node checked for stale reads."""
import random
import signal
import threading
import time

from harness import CTL_BIN, TMP_ROOT, Cluster, Partition, Redis, http, run_tests, wait_until
from test_raft import FAST, agreed_leader


def cache_cluster(name, redis, protocol="MESI", distinct_uids=False, **env):
    extra = dict(FAST, QUEUE_SHARDS="1", REDIS_PORT=str(redis.port), CACHE_COHERENCE_PROTOCOL=protocol)
    extra.update(env)
    return Cluster(3, name, extra_env=extra, distinct_uids=distinct_uids)


def serving(c):
    c.start()
    wait_until(lambda: agreed_leader(c.nodes), 10, "a leader")
    wait_until(lambda: all(http(n.http_port, "GET", "/v1/cache")[1]["epoch"] > 0 for n in c.nodes), 15,
               "every node's cache to serve")


def put(node, key, value):
    return http(node.http_port, "PUT", f"/v1/cache/{key}", body={"value": value})


def get(node, key):
    return http(node.http_port, "GET", f"/v1/cache/{key}")


def redis_get(redis, key):
    reply = redis.command("GET", key)
    return None if reply.startswith(b"$-1") else reply.split(b"\r\n")[1].decode()


def test_states_across_nodes_for_each_protocol():
    expected_after_owner_read = {"MESI": "S", "MOSI": "O", "MOESI": "O"}
    for protocol in ("MESI", "MOSI", "MOESI"):
        with Redis(TMP_ROOT) as redis, cache_cluster(f"cache-{protocol}", redis, protocol) as c:
            serving(c)
            a, b, d = c.nodes
            assert put(a, "k", "v1") == (200, {"ok": True})
            assert get(a, "k")[1]["state"] == "M"
            s, body = get(b, "k")
            assert s == 200 and body == {"key": "k", "value": "v1", "state": "S"}, body
            assert get(a, "k")[1]["state"] == expected_after_owner_read[protocol], protocol
            # A write elsewhere invalidates every other copy before it completes.
            assert put(d, "k", "v2")[0] == 200
            assert get(d, "k")[1]["state"] == "M"
            for n in (a, b):
                s, body = get(n, "k")
                assert body["value"] == "v2", (protocol, n.node_id, body)
            # A key only one node reads is held exclusively where the protocol has E.
            redis.command("SET", "fresh", "r")
            state = get(b, "fresh")[1]["state"]
            assert state == ("S" if protocol == "MOSI" else "E"), (protocol, state)
            s, stats = http(a.http_port, "GET", "/v1/cache")
            assert stats["protocol"] == protocol and stats["hits"] >= 1, stats
            # Published with the cache's next tick (the hits with the first tick after one).
            wait_until(lambda: all(m in http(a.http_port, "GET", "/metrics")[1]
                                   for m in ('dsync_cache_lines{state="', "dsync_cache_hits_total")), 5,
                       "the cache's metrics")
            metrics = http(a.http_port, "GET", "/metrics")[1]
            assert "dsync_cache_hits_total" in metrics and 'dsync_cache_messages_total{type="' in metrics


def test_eviction_writes_back_and_delete_and_invalidate():
    with Redis(TMP_ROOT) as redis, cache_cluster("cache-evict", redis, "MOESI", CACHE_SIZE="2") as c:
        serving(c)
        a, b, _ = c.nodes
        for i in range(3):
            assert put(a, f"e{i}", f"v{i}")[0] == 200
        # Capacity 2: the least recently used dirty line goes back to Redis. The put that
        # evicted it does not wait for that write (the home directory does it), so poll.
        wait_until(lambda: redis_get(redis, "e0") == "v0", 5, "the evicted dirty line e0 in Redis")
        assert get(b, "e0")[1]["value"] == "v0"
        # Invalidate writes dirty data back and drops every copy; the next read misses.
        assert put(a, "inv", "dirty")[0] == 200
        assert redis_get(redis, "inv") is None
        assert http(b.http_port, "POST", "/v1/cache/inv/invalidate")[0] == 200
        assert redis_get(redis, "inv") == "dirty"
        assert get(a, "inv")[1] == {"key": "inv", "value": "dirty", "state": "E"}
        # Delete removes the key everywhere, Redis included.
        assert put(b, "gone", "x")[0] == 200
        get(a, "gone")
        assert http(a.http_port, "DELETE", "/v1/cache/gone")[0] == 200
        assert redis_get(redis, "gone") is None
        for n in c.nodes:
            assert get(n, "gone")[0] == 404


def test_node_killed_while_owning_a_dirty_line():
    with Redis(TMP_ROOT) as redis, cache_cluster("cache-kill", redis, "MOESI") as c:
        serving(c)
        a, b, d = c.nodes
        assert put(a, "x", "old")[0] == 200
        assert http(a.http_port, "POST", "/v1/cache/x/invalidate")[0] == 200  # "old" is in Redis
        assert put(d, "x", "new-but-dirty")[0] == 200  # only in d's cache
        d.kill9()
        # Write-back's loss window: the line reverts to the last value in Redis, and no
        # node ever serves the dead node's value or a stale copy.
        served = []  # every value answered meanwhile (503s while d is being declared down)

        def reverted():
            s, body = get(b, "x")
            if s == 200:
                served.append(body["value"])
            return s == 200 and body["value"] == "old"
        wait_until(reverted, 15, "the line to revert to Redis' value")
        assert set(served) == {"old"}, f"served while reverting: {served}"
        assert get(a, "x")[1]["value"] == "old"
        d.start()
        d.wait_ready()
        wait_until(lambda: get(d, "x")[0] == 200 and get(d, "x")[1]["value"] == "old", 15,
                   "the restarted node to serve the key again")


def test_frozen_node_serves_no_stale_value():
    """A node stopped (SIGSTOP) long enough to be declared dead must not answer from the line
    it held when it resumes: meanwhile its peers took over for it and another node wrote the
    key. The read is sent while the node is stopped, so that it is the first thing the node
    sees when it resumes: it must fail (the node is rejoining) or return the new value. The
    node then rejoins as a new incarnation and serves the new value."""
    for protocol in ("MESI", "MOESI"):
        with Redis(TMP_ROOT) as redis, cache_cluster(f"cache-frozen-{protocol}", redis, protocol) as c:
            serving(c)
            a, b, d = c.nodes
            assert put(a, "f", "old")[0] == 200
            for _ in range(2):  # b holds the line; the second read is a hit
                assert get(b, "f")[1]["value"] == "old"
            answers = []
            reader = threading.Thread(target=lambda: answers.append(get_slow(b, "f")))
            b.signal(signal.SIGSTOP)
            try:
                # Completes once the others declared b dead (b cannot acknowledge anything).
                wait_until(lambda: put(d, "f", "new")[0] == 200, 20, "the write while b is stopped", interval=0.2)
                reader.start()
                time.sleep(0.5)  # the request waits in b's socket
            finally:
                b.signal(signal.SIGCONT)
            reader.join(25)
            assert answers, f"{protocol}: b did not answer"
            s, body = answers[0]
            assert s == 503 or (s == 200 and body["value"] == "new"), (
                f"{protocol}: b answered {s} {body} after it resumed; 'new' was written while it was stopped")
            wait_until(lambda: get(b, "f")[0] == 200, 20, "b to rejoin the cache")
            s, body = get(b, "f")
            assert body["value"] == "new", (protocol, s, body)
            for n in (a, d):
                # Until b answers their first Probe after it came back, they serve no copy (503).
                s, body = wait_until(lambda: (lambda r: r if r[0] == 200 else None)(get(n, "f")), 10,
                                     f"{n.node_id} to serve again")
                assert body["value"] == "new", (protocol, n.node_id, body)


class OneWayPartition(Partition):
    """The node still receives everything, but nothing it sends arrives (its answers, its
    pings, its TCP acknowledgements), except on its HTTP port: iptables' owner match on
    the packets of the node's sockets."""

    def isolate(self):
        n = self.node
        assert n.uid is not None, "start the cluster with distinct_uids=True"
        self._ipt("-N", self.chain)
        self.active = True
        self._ipt("-I", "OUTPUT", "-j", self.chain)
        self._ipt("-A", self.chain, "-p", "tcp", "-m", "owner", "--uid-owner", str(n.uid), "-m", "multiport", "!",
                  "--sports", str(n.http_port), "-j", "DROP")


def test_cut_off_node_serves_no_stale_value():
    """A node that keeps running but is cut off from its peers (both ways, or one way: it
    still receives but nothing it sends arrives) must not answer reads from its lines once
    its peers may have declared it dead and written the keys without it. It reads its keys
    in a loop the whole time (before and after the others declare it down, and across the
    healing); no read that began after a write completed may return the older value, and
    after healing every node serves the new values."""
    keys = [f"cut{i:02}" for i in range(12)]  # some are homed on the cut-off node
    for protocol, cut in (("MESI", Partition), ("MOESI", OneWayPartition)):
        with Redis(TMP_ROOT) as redis, cache_cluster(f"cache-cut-{protocol}", redis, protocol,
                                                     distinct_uids=True) as c:
            serving(c)
            a, b, d = c.nodes
            for k in keys:
                assert put(a, k, "old")[0] == 200
                for _ in range(2):  # d holds the line; the second read is a hit
                    s, body = get(d, k)
                    assert s == 200 and body["value"] == "old", (protocol, k, s, body)
            done_at = {}  # key -> monotonic time its new value was acknowledged
            reads = []    # (start, key, status, value)
            stop = threading.Event()

            def reader(k):  # one per key: a read waiting for a home that is away blocks only its key
                while not stop.is_set():
                    t0 = time.monotonic()
                    try:
                        s, body = http(d.http_port, "GET", f"/v1/cache/{k}", timeout=8)
                    except OSError as e:
                        s, body = 0, str(e)
                    value = body.get("value") if s == 200 and isinstance(body, dict) else None
                    reads.append((t0, k, s, value))
                    time.sleep(0.02)

            threads = [threading.Thread(target=reader, args=(k,), daemon=True) for k in keys]
            for t in threads:
                t.start()
            try:
                with cut(d):
                    t_cut = time.monotonic()
                    for k in keys:  # completes once the others declared d dead
                        wait_until(lambda: put(a if k < "cut06" else b, k, "new")[0] == 200, 20,
                                   f"the write of {k} on the majority side", interval=0.1)
                        done_at[k] = time.monotonic()
                    time.sleep(2.0)  # d keeps being read after the others moved on
                # Healed: d comes back (it may rejoin); every node serves the new values.
                for n in c.nodes:
                    for k in keys:
                        # One read per try: a rejoining node may answer 503 between two reads.
                        wait_until(lambda: (lambda r: r[0] == 200 and r[1]["value"] == "new")(get(n, k)), 30,
                                   f"{n.node_id} to serve the new value of {k} after healing", interval=0.1)
                time.sleep(1.0)
            finally:
                stop.set()
                for t in threads:
                    t.join(15)
            stale = [(round(t - t_cut, 3), k, s, v) for t, k, s, v in reads
                     if v == "old" and k in done_at and t >= done_at[k]]
            during = [r for r in reads if r[0] >= t_cut]
            print(f"  {protocol} ({cut.__name__}): {len(during)} reads of the cut-off node after the cut, "
                  f"{sum(1 for r in during if r[2] == 200)} answered, {len(stale)} stale")
            assert not stale, f"{protocol}: the cut-off node answered the old value after the write: {stale[:5]}"
            assert any(r[2] == 200 and r[3] == "new" for r in reads if r[0] >= max(done_at.values())), protocol


def get_slow(node, key):
    """A read that may wait for a node that is stopped."""
    return http(node.http_port, "GET", f"/v1/cache/{key}", timeout=20)


def test_redis_away_and_back():
    with Redis(TMP_ROOT) as redis, cache_cluster("cache-redis", redis, "MESI") as c:
        serving(c)
        a, b, _ = c.nodes
        assert put(a, "hot", "1")[0] == 200
        assert get(a, "hot")[0] == 200
        redis.kill()
        # Hits keep being served; a miss needs Redis and fails with a reason naming it.
        assert get(a, "hot")[1]["value"] == "1"
        t0 = time.monotonic()
        s, body = get(b, "cold")
        assert s == 503 and "Redis" in body["message"], (s, body)
        assert time.monotonic() - t0 < 7
        redis.start()
        wait_until(lambda: get(b, "cold")[0] == 404, 15, "misses to work again after Redis is back")


def test_bad_input():
    with Redis(TMP_ROOT) as redis, cache_cluster("cache-bad", redis) as c:
        serving(c)
        n = c.nodes[0]
        assert http(n.http_port, "PUT", "/v1/cache/k", body={"nothing": 1})[0] == 400
        assert http(n.http_port, "PUT", "/v1/cache/k", body={"value": 5})[0] == 400
        assert http(n.http_port, "PUT", "/v1/cache/k", raw=b"{oops")[0] == 400
        s, body = http(n.http_port, "PUT", "/v1/cache/" + "k" * 600, body={"value": "v"})
        assert s == 400 and "512" in body["message"], (s, body)
        s, body = http(n.http_port, "PUT", "/v1/cache/big", raw=('{"value":"' + "x" * (2 << 20) + '"}').encode())
        assert s == 413, (s, body)
        assert http(n.http_port, "GET", "/v1/health")[0] == 200


def test_concurrent_history_has_no_stale_reads():
    """Writers put increasing values per key from every node; a read must never return a
    value older than one whose write had completed before the read started."""
    with Redis(TMP_ROOT) as redis, cache_cluster("cache-history", redis, "MOESI", CACHE_SIZE="3") as c:
        serving(c)
        keys = ["h0", "h1", "h2", "h3"]
        done_before = {k: 0 for k in keys}  # highest value whose put completed
        mu = threading.Lock()
        problems = []
        checked = {n.node_id: 0 for n in c.nodes}  # reads that came after a completed write
        stop = time.monotonic() + 6

        def guarded(fn):
            def run(*args):
                try:
                    fn(*args)
                except Exception as e:  # a thread's failure must fail the test
                    problems.append(f"{fn.__name__}{args}: {type(e).__name__}: {e}")
            return run

        @guarded
        def writer(k, node):
            v = 0
            while time.monotonic() < stop:
                v += 1
                s, _ = put(node, k, str(v))
                if s == 200:
                    with mu:
                        done_before[k] = max(done_before[k], v)

        @guarded
        def reader(node):
            while time.monotonic() < stop:
                k = random.choice(keys)
                with mu:
                    floor = done_before[k]
                s, body = get(node, k)
                if floor == 0 and s == 404:
                    continue  # nothing written yet
                if s != 200:
                    problems.append(f"{node.node_id} answered {s} {body} for {k}")
                    continue
                checked[node.node_id] += floor > 0
                if int(body["value"]) < floor:
                    problems.append(f"{node.node_id} read {k}={body['value']} after {floor} was written")

        threads = [threading.Thread(target=writer, args=(k, c.nodes[i % 3])) for i, k in enumerate(keys)]
        threads += [threading.Thread(target=reader, args=(n,)) for n in c.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads), "a reader or writer hung"
        assert not problems, problems[:5]
        assert all(v > 10 for v in done_before.values()), done_before
        assert all(n > 50 for n in checked.values()), f"too few reads checked: {checked}"


def test_write_then_read_elsewhere_never_stale():
    """Hits are answered from each node's mirror of its readable lines, without the cache
    actor. A put that completed must have taken every other copy away first: a read on a
    node that had the line Shared, right after the put's answer, sees the new value (200
    rounds, the writer rotating over the nodes)."""
    for protocol in ("MESI", "MOESI"):
        with Redis(TMP_ROOT) as redis, cache_cluster(f"cache-fast-{protocol}", redis, protocol) as c:
            serving(c)
            nodes = c.nodes
            assert put(nodes[0], "fast", "v0")[0] == 200
            last = "v0"
            for i in range(1, 201):
                writer = nodes[i % 3]
                others = [n for n in nodes if n is not writer]
                # Every node holds the line readable (twice: the second read is a hit).
                for n in nodes:
                    for _ in range(2):
                        s, body = get(n, "fast")
                        assert s == 200 and body["value"] == last, (protocol, i, n.node_id, s, body)
                for n in others:
                    state = get(n, "fast")[1]["state"]
                    assert state in ("S", "O", "E", "M"), (protocol, i, n.node_id, state)
                last = f"v{i}"
                assert put(writer, "fast", last) == (200, {"ok": True}), (protocol, i)
                for n in others + [writer]:
                    s, body = get(n, "fast")
                    assert s == 200 and body["value"] == last, (
                        f"{protocol} round {i}: {n.node_id} read {body} after {writer.node_id} wrote {last}")
            s, stats = http(nodes[0].http_port, "GET", "/v1/cache")
            assert stats["hits"] >= 200, stats


def test_dsyncctl_cache_commands():
    import subprocess
    with Redis(TMP_ROOT) as redis, cache_cluster("cache-ctl", redis) as c:
        serving(c)
        ctl = [CTL_BIN, "--node", f"127.0.0.1:{c.nodes[1].node_port}"]
        assert subprocess.run(ctl + ["cache", "put", "c", "v"], capture_output=True).returncode == 0
        out = subprocess.run(ctl + ["cache", "get", "c"], capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.startswith("v  (M)"), out.stdout
        stats = subprocess.run(ctl + ["--json", "cache", "stats"], capture_output=True, text=True)
        assert '"protocol":"MESI"' in stats.stdout, stats.stdout
        assert subprocess.run(ctl + ["cache", "del", "c"], capture_output=True).returncode == 0
        assert subprocess.run(ctl + ["cache", "get", "c"], capture_output=True).returncode == 1


if __name__ == "__main__":
    run_tests([test_states_across_nodes_for_each_protocol, test_eviction_writes_back_and_delete_and_invalidate,
               test_node_killed_while_owning_a_dirty_line, test_frozen_node_serves_no_stale_value,
               test_cut_off_node_serves_no_stale_value,
               test_redis_away_and_back, test_bad_input,
               test_concurrent_history_has_no_stale_reads, test_write_then_read_elsewhere_never_stale,
               test_dsyncctl_cache_commands])
