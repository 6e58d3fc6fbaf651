"""The lock service on real processes: grants, waiting and hand-over, leases that lapse,
deadlock detection across nodes, refusals of bad input, dsyncctl lock run, the minority
side of a partition, and many clients contending for one lock while leaders are killed,
checked by a fencing-token guarded resource and a counter that must not lose updates."""
import os
import random
import subprocess
import threading
import time

from harness import CTL_BIN, Cluster, Partition, http, run_tests, wait_until
from test_raft import FAST, agreed_leader, by_id, group0


def acquire(node, lock, client, mode="exclusive", wait_ms=0, ttl_ms=10000, timeout=None):
    body = {"client": client, "mode": mode, "wait_ms": wait_ms, "ttl_ms": ttl_ms}
    return http(node.http_port, "POST", f"/v1/locks/{lock}/acquire", body=body,
                timeout=timeout or (wait_ms / 1000 + 8))


def release(node, lock, client):
    return http(node.http_port, "POST", f"/v1/locks/{lock}/release", body={"client": client})


def refresh(node, lock, client):
    return http(node.http_port, "POST", f"/v1/locks/{lock}/refresh", body={"client": client})


def status(node, lock):
    return http(node.http_port, "GET", f"/v1/locks/{lock}")


def in_thread(fn, *args, **kwargs):
    """Runs fn in a thread; the returned dict gets "result" (or "error") when it ends."""
    out = {}

    def run():
        try:
            out["result"] = fn(*args, **kwargs)
        except Exception as e:  # reported by the caller
            out["error"] = e
        out["at"] = time.monotonic()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    out["thread"] = t
    return out


def test_grant_wait_handover_and_status():
    with Cluster(3, "locks-basic", extra_env=FAST) as c:
        c.start()
        wait_until(lambda: agreed_leader(c.nodes), 10, "a leader")
        a, b, d = c.nodes
        s, g1 = acquire(a, "L", "alice")
        assert s == 200 and g1["granted"] and g1["mode"] == "exclusive" and g1["token"] > 0, g1
        # Idempotent: the same client asking again gets the same grant.
        s, again = acquire(b, "L", "alice")
        assert s == 200 and again["token"] == g1["token"], again
        s, body = acquire(d, "L", "bob")
        assert s == 409 and body["error"] == "timeout", (s, body)
        s, body = release(b, "L", "bob")
        assert s == 409 and body["error"] == "not_held", (s, body)
        # bob waits (through another node); alice's release hands the lock over at once.
        waiting = in_thread(acquire, d, "L", "bob", wait_ms=10000)
        wait_until(lambda: len(status(a, "L")[1]["waiters"]) == 1, 5, "bob to be queued")
        s, st = status(b, "L")
        assert st["mode"] == "exclusive" and st["holders"][0]["client"] == "alice", st
        assert st["holders"][0]["token"] == g1["token"] and 0 < st["holders"][0]["expires_in_ms"] <= 10000, st
        assert st["waiters"][0]["client"] == "bob" and st["waiters"][0]["mode"] == "exclusive", st
        s, r = refresh(a, "L", "alice")
        assert s == 200 and r["token"] == g1["token"], r
        t0 = time.monotonic()
        assert release(a, "L", "alice") == (200, {"released": True})
        waiting["thread"].join(10)
        s, g2 = waiting["result"]
        assert s == 200 and g2["token"] > g1["token"], (s, g2)
        assert waiting["at"] - t0 < 1.0, "the waiter was not granted promptly"
        # Shared holders together; an exclusive request queues behind them, and a later
        # shared request queues behind the exclusive one (no writer starvation).
        assert release(b, "L", "bob")[0] == 200
        assert acquire(a, "S", "r1", mode="shared")[0] == 200
        assert acquire(b, "S", "r2", mode="shared")[0] == 200
        writer = in_thread(acquire, d, "S", "w", wait_ms=10000)
        wait_until(lambda: len(status(a, "S")[1]["waiters"]) == 1, 5, "the writer to be queued")
        s, body = acquire(a, "S", "r3", mode="shared")
        assert s == 409 and body["error"] == "timeout", "a reader overtook a queued writer"
        release(a, "S", "r1")
        release(b, "S", "r2")
        writer["thread"].join(10)
        assert writer["result"][0] == 200 and writer["result"][1]["mode"] == "exclusive", writer


def test_lease_lapses_and_the_next_waiter_is_granted():
    with Cluster(3, "locks-lease", extra_env=FAST) as c:
        c.start()
        wait_until(lambda: agreed_leader(c.nodes), 10, "a leader")
        a, b, _ = c.nodes
        assert acquire(a, "lease", "vanishing", ttl_ms=600)[0] == 200
        t0 = time.monotonic()
        s, g = acquire(b, "lease", "patient", wait_ms=5000)
        waited = time.monotonic() - t0
        assert s == 200 and g["client"] == "patient", (s, g)
        assert 0.3 < waited < 2.0, f"granted after {waited:.2f}s; the lease was 0.6s"
        s, body = refresh(a, "lease", "vanishing")
        assert s == 409 and body["error"] == "not_held", (s, body)
        # A waiter whose wait_ms passes is answered with a timeout.
        t0 = time.monotonic()
        s, body = acquire(a, "lease", "impatient", wait_ms=700)
        assert s == 409 and body["error"] == "timeout", (s, body)
        assert 0.6 < time.monotonic() - t0 < 2.5
        assert status(b, "lease")[1]["waiters"] == []


def test_deadlock_across_nodes_is_refused_at_once():
    with Cluster(3, "locks-deadlock", extra_env=FAST) as c:
        c.start()
        wait_until(lambda: agreed_leader(c.nodes), 10, "a leader")
        a, b, d = c.nodes
        assert acquire(a, "L1", "alice")[0] == 200
        assert acquire(b, "L2", "bob")[0] == 200
        assert acquire(d, "L3", "carol", mode="shared")[0] == 200
        alice = in_thread(acquire, a, "L2", "alice", wait_ms=20000)
        wait_until(lambda: len(status(a, "L2")[1]["waiters"]) == 1, 5, "alice to wait for L2")
        bob = in_thread(acquire, b, "L3", "bob", wait_ms=20000)
        wait_until(lambda: len(status(a, "L3")[1]["waiters"]) == 1, 5, "bob to wait for L3")
        # carol closes alice -> bob -> carol -> alice: refused at once, naming the cycle.
        t0 = time.monotonic()
        s, body = acquire(d, "L1", "carol", wait_ms=20000)
        assert s == 409 and body["error"] == "deadlock", (s, body)
        assert time.monotonic() - t0 < 2, "the deadlock was not answered at once"
        cycle = body["cycle"]
        assert cycle[0] == cycle[-1] == "carol" and set(cycle) == {"carol", "alice", "bob", "L1", "L2", "L3"}, cycle
        # The others still wait; releasing breaks the chain in order.
        assert "result" not in alice and "result" not in bob
        release(d, "L3", "carol")
        bob["thread"].join(10)
        assert bob["result"][0] == 200
        release(b, "L2", "bob")
        alice["thread"].join(10)
        assert alice["result"][0] == 200


def test_bad_input_is_refused_with_a_reason():
    with Cluster(3, "locks-bad", extra_env=FAST) as c:
        c.start()
        wait_until(lambda: agreed_leader(c.nodes), 10, "a leader")
        n = c.nodes[0]
        path = "/v1/locks/L/acquire"
        cases = [
            ({"mode": "exclusive"}, "client"),
            ({"client": "x", "mode": "banana"}, "mode"),
            ({"client": "x", "wait_ms": -1}, "wait_ms"),
            ({"client": "x", "wait_ms": 1.5}, "wait_ms"),
            ({"client": "x", "ttl_ms": 10}, "ttl_ms"),
            ({"client": "x", "ttl_ms": 10**12}, "ttl_ms"),
            ({"client": "x", "wait_ms": 10**9}, "wait_ms"),
            ({"client": ""}, "client"),
            ({"client": "c" * 1000}, "client"),
        ]
        for body, word in cases:
            s, out = http(n.http_port, "POST", path, body=body)
            assert s == 400 and out["error"] == "bad_request" and word in out["message"], (body, s, out)
        s, out = http(n.http_port, "POST", "/v1/locks/" + "n" * 300 + "/acquire", body={"client": "x"})
        assert s == 400 and "256" in out["message"], (s, out)
        s, out = http(n.http_port, "POST", path, raw=b"{not json")
        assert s == 400, (s, out)
        s, out = http(n.http_port, "POST", "/v1/locks/L/release", body={})
        assert s == 400, (s, out)
        assert http(n.http_port, "GET", "/v1/health")[0] == 200


def test_dsyncctl_lock_run_holds_the_lock_while_the_command_runs():
    with Cluster(3, "locks-ctl", extra_env=FAST) as c:
        c.start()
        wait_until(lambda: agreed_leader(c.nodes), 10, "a leader")
        node = c.nodes[1]
        out_file = os.path.join(c.workdir, "token.txt")
        ctl = [CTL_BIN, "--node", f"127.0.0.1:{node.node_port}"]
        run = subprocess.Popen(ctl + ["--ttl", "900", "lock", "run", "job", "--", "sh", "-c",
                                      f'echo "$DSYNC_LOCK_TOKEN" > {out_file}; sleep 2; exit 3'])
        try:
            wait_until(lambda: os.path.exists(out_file) and open(out_file).read().strip(), 10, "the command to run")
            # Held past its 0.9 s lease: lock run refreshes it.
            time.sleep(1.2)
            busy = subprocess.run(ctl + ["--client", "other", "lock", "acquire", "job"], capture_output=True, text=True)
            assert busy.returncode == 1 and "timeout" in busy.stderr, (busy.returncode, busy.stderr)
            held = subprocess.run(ctl + ["--json", "lock", "status", "job"], capture_output=True, text=True, check=True)
            assert f'"token":{open(out_file).read().strip()}' in held.stdout, held.stdout
        finally:
            code = run.wait(20)
        assert code == 3, f"lock run exited {code}, not the command's 3"
        assert status(node, "job")[1]["mode"] == "free"
        bad = subprocess.run(ctl + ["lock", "run", "job"], capture_output=True, text=True)
        assert bad.returncode == 2 and "NAME -- COMMAND" in bad.stderr


def test_minority_side_grants_nothing():
    with Cluster(3, "locks-partition", extra_env=FAST, distinct_uids=True) as c:
        c.start()
        old = by_id(c, wait_until(lambda: agreed_leader(c.nodes), 10, "a leader"))
        majority = [n for n in c.nodes if n is not old]
        assert acquire(old, "P", "holder", ttl_ms=2000)[0] == 200
        with Partition(old):
            wait_until(lambda: group0(old)["role"] != "leader", 5, "the isolated leader to step down")
            t0 = time.monotonic()
            s, body = acquire(old, "Q", "minority", timeout=20)
            assert s == 503 and body["error"] == "unavailable", (s, body)
            assert time.monotonic() - t0 < 10, "the refusal took too long"
            # The holder cut off with the minority keeps P only until its lease lapses.
            s, g = acquire(majority[0], "P", "majority", wait_ms=10000)
            assert s == 200 and g["client"] == "majority", (s, g)


class GuardedResource:
    """A resource that refuses holders with a fencing token older than one it has seen and
    notices two holders inside it at once, plus a counter that only the lock protects: its
    read-modify-write loses an update whenever two holders run it at the same time."""

    def __init__(self):
        self.mu = threading.Lock()
        self.highest = 0
        self.inside = None
        self.counter = 0
        self.refused = 0
        self.overlaps = []

    def enter(self, token):
        with self.mu:
            if token < self.highest:
                self.refused += 1
                return False
            if self.inside is not None:
                self.overlaps.append((self.inside, token))
            self.highest = token
            self.inside = token
            return True

    def increment(self):
        with self.mu:
            value = self.counter
        time.sleep(0.002)  # a read-modify-write that a second holder would break
        with self.mu:
            self.counter = value + 1

    def leave(self, token):
        with self.mu:
            if self.inside == token:
                self.inside = None


def test_contention_while_leaders_are_killed():
    with Cluster(3, "locks-chaos", extra_env=FAST) as c:
        c.start()
        wait_until(lambda: agreed_leader(c.nodes), 10, "a leader")
        resource = GuardedResource()
        done = threading.Event()
        stats = {"sections": 0, "errors": 0}
        stats_mu = threading.Lock()

        def live_nodes():
            return [n for n in c.nodes if n.running()]

        crashes = []

        def worker(name):
            try:
                work(name)
            except Exception as e:  # a worker that dies would hide lost progress
                crashes.append(f"{name}: {type(e).__name__}: {e}")

        def work(name):
            rng = random.Random(name)
            while not done.is_set():
                node = rng.choice(live_nodes())
                try:
                    s, g = acquire(node, "counter", name, wait_ms=8000, ttl_ms=4000)
                except OSError:
                    continue
                if s != 200:
                    with stats_mu:
                        stats["errors"] += 1
                    time.sleep(0.05)
                    continue
                token = g["token"]
                if resource.enter(token):
                    resource.increment()
                    with stats_mu:
                        stats["sections"] += 1
                    resource.leave(token)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    try:
                        s, body = release(rng.choice(live_nodes()), "counter", name)
                    except OSError:
                        continue
                    if s == 200 or (s == 409 and body["error"] == "not_held"):
                        break
                    time.sleep(0.05)

        threads = [threading.Thread(target=worker, args=(f"client-{i}",), daemon=True) for i in range(6)]
        for t in threads:
            t.start()
        time.sleep(2)
        for _ in range(2):
            leader = by_id(c, wait_until(lambda: agreed_leader(live_nodes()), 10, "a leader"))
            leader.kill9()
            time.sleep(2)
            leader.start()
            leader.wait_ready()
            time.sleep(1)
        time.sleep(2)
        done.set()
        for t in threads:
            t.join(30)
        print(f"  {stats['sections']} critical sections, {resource.refused} stale tokens refused, "
              f"{stats['errors']} failed acquires, {len(resource.overlaps)} overlaps")
        assert crashes == [], crashes
        assert resource.overlaps == [], f"two holders at once: {resource.overlaps[:5]}"
        assert resource.counter == stats["sections"], "an update was lost"
        assert stats["sections"] > 50, "too little progress under contention"


if __name__ == "__main__":
    tests = [test_grant_wait_handover_and_status, test_lease_lapses_and_the_next_waiter_is_granted,
             test_deadlock_across_nodes_is_refused_at_once, test_bad_input_is_refused_with_a_reason,
             test_dsyncctl_lock_run_holds_the_lock_while_the_command_runs, test_contention_while_leaders_are_killed,
             test_minority_side_grants_nothing]
    run_tests(tests)
