"""The control Raft group on real processes: election, replication through any node,
kill -9 of the leader (repeatedly) with committed data surviving, SIGSTOP of the leader
beyond the election timeout, and a 5-node cluster losing two nodes."""
import random
import os
import signal
import statistics
import subprocess
import threading
import time

from harness import CTL_BIN, Cluster, http, run_tests, wait_until

# Fast failure detection; few queue shards, so that tests of other things start light.
FAST = {"PEER_PING_MS": "100", "PEER_SUSPECT_MS": "500", "PEER_DOWN_MS": "1500", "QUEUE_SHARDS": "2"}


def group0(node):
    status, body = node.get("/v1/cluster")
    assert status == 200, body
    return body["groups"][0] if body["groups"] else None


def agreed_leader(nodes):
    """The leader every given node names, or None while they disagree or know none."""
    leaders = set()
    for n in nodes:
        g = group0(n)
        if g is None or not g["leader"]:
            return None
        leaders.add(g["leader"])
    return leaders.pop() if len(leaders) == 1 else None


def by_id(cluster, node_id):
    return next(n for n in cluster.nodes if n.node_id == node_id)


def put(node, key, value, timeout=5):
    return http(node.http_port, "PUT", f"/v1/kv/{key}", body={"value": value}, timeout=timeout)


def get(node, key, consistency="linearizable"):
    return http(node.http_port, "GET", f"/v1/kv/{key}?consistency={consistency}")


def write_until_ok(nodes, key, value, timeout):
    """Retries the write on the given nodes until one acknowledges it; the acknowledging node."""
    deadline = time.monotonic() + timeout
    while True:
        for n in nodes:
            try:
                status, body = put(n, key, value, timeout=2)
            except OSError:
                continue
            if status == 200:
                return body["revision"]
            assert status == 503, (status, body)
        if time.monotonic() > deadline:
            raise AssertionError(f"no write of {key} acknowledged within {timeout}s")
        time.sleep(0.01)


def check_all(nodes, acked):
    for key, value in acked.items():
        node = random.choice(nodes)
        status, body = get(node, key)
        assert status == 200 and body["value"] == value, (node.node_id, key, value, status, body)


def test_leader_kill9_repeatedly():
    random.seed(7)
    with Cluster(3, "raft-kill", extra_env=FAST) as c:
        c.start()
        wait_until(lambda: agreed_leader(c.nodes), 10, "a leader known to all nodes")
        acked = {}
        for i in range(30):
            key, value = f"k{i}", f"v{i}"
            status, body = put(random.choice(c.nodes), key, value)
            assert status == 200, body
            acked[key] = value
        check_all(c.nodes, acked)

        failovers = []
        for round_no in range(3):
            leader = by_id(c, agreed_leader(c.nodes))
            survivors = [n for n in c.nodes if n is not leader]
            leader.kill9()
            t0 = time.monotonic()
            write_until_ok(survivors, f"after-kill-{round_no}", "x", timeout=10)
            failovers.append(time.monotonic() - t0)
            acked[f"after-kill-{round_no}"] = "x"
            check_all(survivors, acked)
            leader.start()
            leader.wait_ready()
            wait_until(lambda: agreed_leader(c.nodes), 10, "the restarted node to follow the leader")
            # The restarted node catches up: a stale read on it sees the newest write.
            wait_until(lambda: get(leader, f"after-kill-{round_no}", "stale")[0] == 200, 10,
                       f"{leader.node_id} to catch up")
        print("  failover (kill -9 of the leader to the next acknowledged write): "
              + ", ".join(f"{t:.3f}s" for t in failovers) + f"; median {statistics.median(failovers):.3f}s")
        check_all(c.nodes, acked)


def test_leader_sigstop_then_sigcont():
    with Cluster(3, "raft-stop", extra_env=FAST) as c:
        c.start()
        old = by_id(c, wait_until(lambda: agreed_leader(c.nodes), 10, "a leader"))
        others = [n for n in c.nodes if n is not old]
        assert put(old, "before", "1")[0] == 200
        old.signal(signal.SIGSTOP)
        try:
            write_until_ok(others, "during", "2", timeout=10)
            new = wait_until(lambda: agreed_leader(others), 5, "a new leader among the others")
            assert new != old.node_id
        finally:
            log_before_wake = os.path.getsize(old.log_path)
            old.signal(signal.SIGCONT)
        # On waking it judges its peers afresh, not by the silence of its own pause: they
        # stay linked (declaring them down would leave it waiting 2-3 s for the one of the
        # pair that connects to connect again, while they see it linked).
        def since_wake():
            with open(old.log_path, errors="replace") as f:
                f.seek(log_before_wake)
                return f.read()
        wait_until(lambda: "did not run for" in since_wake(), 5, f"{old.node_id} to notice its own pause")
        wait_until(lambda: all(m["state"] in ("alive", "self") for m in old.members().values()), 5,
                   f"{old.node_id} to see its peers alive")
        assert "is down" not in since_wake(), since_wake()
        # The old leader rejoins as a follower without deposing the new leader.
        wait_until(lambda: agreed_leader(c.nodes) == new, 10, "all nodes to follow the new leader")
        term = group0(by_id(c, new))["term"]
        time.sleep(1.0)
        assert agreed_leader(c.nodes) == new and group0(by_id(c, new))["term"] == term, "the rejoining node disrupted"
        wait_until(lambda: get(old, "during", "stale")[0] == 200, 10, "the old leader to catch up")
        for n in c.nodes:
            status, body = get(n, "before")
            assert status == 200 and body["value"] == "1", body


def test_five_nodes_survive_two_failures():
    with Cluster(5, "raft-five", extra_env=FAST) as c:
        c.start()
        wait_until(lambda: agreed_leader(c.nodes), 10, "a leader of five")
        assert put(c.nodes[0], "a", "1")[0] == 200
        leader = by_id(c, agreed_leader(c.nodes))
        victims = [leader] + [n for n in c.nodes if n is not leader][:1]
        for v in victims:
            v.kill9()
        survivors = [n for n in c.nodes if n not in victims]
        write_until_ok(survivors, "b", "2", timeout=10)
        for n in survivors:
            status, body = get(n, "a")
            assert status == 200 and body["value"] == "1", body
        # With three of five down no write can commit: the answer is 503, never a false success.
        survivors[0].kill9()
        status, body = put(survivors[1], "c", "3", timeout=8)
        assert status == 503 and body["error"] == "unavailable", (status, body)


def test_kv_bad_input():
    with Cluster(1, "raft-input") as c:
        c.start()
        n = c.nodes[0]
        wait_until(lambda: agreed_leader(c.nodes), 10, "a single-node leader")
        cases = [
            (b"not json", 400, "not valid JSON"),
            (b"[1]", 400, "must be a JSON object"),
            (b"{}", 400, "needs \"value\""),
            (b'{"value": 5}', 400, "needs \"value\""),
        ]
        for raw, code, text in cases:
            status, body = http(n.http_port, "PUT", "/v1/kv/x", raw=raw)
            assert status == code and text in body["message"], (raw, status, body)
        status, body = http(n.http_port, "PUT", "/v1/kv/" + "k" * 600, body={"value": "v"})
        assert status == 400 and "limit is 512" in body["message"], body
        status, body = http(n.http_port, "GET", "/v1/kv/x?consistency=eventual")
        assert status == 400, body
        status, body = http(n.http_port, "GET", "/v1/kv/missing")
        assert status == 404 and body["error"] == "not_found", body
        assert put(n, "x", "y")[0] == 200
        status, body = http(n.http_port, "DELETE", "/v1/kv/x")
        assert status == 200 and body["revision"] > 0
        assert get(n, "x")[0] == 404


def test_kv_through_the_caf_client():
    with Cluster(3, "raft-ctl", extra_env=FAST) as c:
        c.start()
        leader = wait_until(lambda: agreed_leader(c.nodes), 10, "a leader")
        follower = next(n for n in c.nodes if n.node_id != leader)

        def ctl(node, *args):
            r = subprocess.run([CTL_BIN, "--node", node.address, *args], capture_output=True, text=True, timeout=30)
            return r.returncode, r.stdout.strip(), r.stderr.strip()
        rc, out, err = ctl(follower, "kv", "put", "color", "blue")
        assert rc == 0 and out.startswith("revision "), (rc, out, err)
        for n in c.nodes:
            assert ctl(n, "kv", "get", "color") == (0, "blue", ""), n.node_id
        assert ctl(c.nodes[0], "--stale", "kv", "get", "color")[:2] == (0, "blue")
        rc, out, err = ctl(follower, "kv", "del", "color")
        assert rc == 0, err
        rc, out, err = ctl(follower, "kv", "get", "color")
        assert rc == 1 and "not_found" in err, (rc, out, err)
        rc, out, err = ctl(follower, "kv", "put", "only-key")
        assert rc == 2 and "kv put needs KEY VALUE" in err, (rc, err)


def test_sigterm_under_load_exits_cleanly():
    with Cluster(3, "raft-term", extra_env=FAST) as c:
        c.start()
        wait_until(lambda: agreed_leader(c.nodes), 10, "a leader")
        stop = threading.Event()

        def writer(node, tag):
            i = 0
            while not stop.is_set():
                try:
                    put(node, f"{tag}-{i % 50}", "v", timeout=2)
                except OSError:
                    pass
                i += 1
        threads = [threading.Thread(target=writer, args=(n, f"w{k}")) for k, n in enumerate(c.nodes * 3)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        try:
            codes = [n.terminate(timeout=10) for n in c.nodes]
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert codes == [0, 0, 0], codes


def test_sigterm_of_the_leader_hands_over_leadership():
    with Cluster(3, "raft-handover", extra_env=FAST) as c:
        c.start()
        times = []
        for _ in range(2):
            leader = by_id(c, wait_until(lambda: agreed_leader(c.nodes), 10, "a leader"))
            others = [n for n in c.nodes if n is not leader]
            t0 = time.monotonic()
            assert leader.terminate() == 0
            new = wait_until(lambda: agreed_leader(others), 5, "a new leader")
            write_until_ok(others, "after-handover", "x", timeout=5)
            times.append(time.monotonic() - t0)
            assert new != leader.node_id
            # Every group it led hands over (the queue shards too): look for the control group.
            tail = leader.log_tail(300)
            assert f"group 0: handing leadership to {new}" in tail, tail
            leader.start()
            leader.wait_ready()
        print("  SIGTERM of the leader to the next acknowledged write: " + ", ".join(f"{t:.3f}s" for t in times))


def test_full_cluster_kill9_and_restart_recovers_from_the_wal():
    with Cluster(3, "raft-restart", extra_env=FAST) as c:
        c.start()
        wait_until(lambda: agreed_leader(c.nodes), 10, "a leader")
        acked = {}
        for i in range(200):
            key = f"r{i}"
            status, body = put(c.nodes[i % 3], key, f"value-{i}")
            assert status == 200, body
            acked[key] = f"value-{i}"
        for n in c.nodes:
            n.kill9()
        for n in c.nodes:
            n.start()
        for n in c.nodes:
            n.wait_ready()
        wait_until(lambda: agreed_leader(c.nodes), 10, "a leader after the restart")
        check_all(c.nodes, acked)
        for n in c.nodes:  # every replica recovered or caught up, not only the leader
            wait_until(lambda: get(n, "r199", "stale")[0] == 200, 10, f"{n.node_id} to hold r199")
            assert "recovered" in open(n.log_path).read()


def test_corrupt_wal_refuses_to_start():
    import glob
    import os
    with Cluster(3, "raft-corrupt", extra_env=FAST) as c:
        c.start()
        wait_until(lambda: agreed_leader(c.nodes), 10, "a leader")
        for i in range(50):
            assert put(c.nodes[0], f"c{i}", "x" * 100)[0] == 200
        victim = c.nodes[2]
        assert victim.terminate() == 0
        segment = sorted(glob.glob(os.path.join(victim.env["DATA_DIR"], "raft-0", "wal-*.log")))[0]
        with open(segment, "rb") as f:
            data = f.read()
        used = len(data.rstrip(b"\0"))  # a segment may be preallocated: records, then zeros
        with open(segment, "r+b") as f:  # flip a byte in the middle of the records
            f.seek(used // 2)
            f.write(bytes([data[used // 2] ^ 0xFF]))
        victim.start()
        assert victim.proc.wait(timeout=10) == 1
        tail = victim.log_tail(5)
        assert "refusing to start: the Raft log of group 0 cannot be trusted" in tail and "wal-" in tail, tail


if __name__ == "__main__":
    run_tests([test_leader_kill9_repeatedly, test_leader_sigstop_then_sigcont, test_five_nodes_survive_two_failures,
               test_kv_bad_input, test_kv_through_the_caf_client, test_sigterm_under_load_exits_cleanly,
               test_sigterm_of_the_leader_hands_over_leadership,
               test_full_cluster_kill9_and_restart_recovers_from_the_wal, test_corrupt_wal_refuses_to_start])
