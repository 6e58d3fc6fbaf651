"""Replicated queues on real processes: semantics through any node (FIFO, visibility
timeouts, stale receipts, nack, dead letters and redrive, long polls), refusals of bad
input, shard leaders spread over the members, producers and consumers while nodes are
killed with -9 and restarted (no acknowledged message lost, no acked message back), and
a full-cluster kill -9 and restart."""
import random
import threading
import time

from harness import CTL_BIN, Cluster, http, run_tests, wait_until
from test_raft import FAST, agreed_leader

QUEUES = dict(FAST, QUEUE_SHARDS="4")


def push(node, queue, payload, timeout=8):
    return http(node.http_port, "POST", f"/v1/queues/{queue}/messages", body={"payload": payload}, timeout=timeout)


def pop(node, queue, consumer="c", max=1, visibility_ms=30000, wait_ms=0, timeout=None):
    body = {"consumer": consumer, "max": max, "visibility_ms": visibility_ms, "wait_ms": wait_ms}
    return http(node.http_port, "POST", f"/v1/queues/{queue}/dequeue", body=body, timeout=timeout or wait_ms / 1000 + 8)


def ack(node, queue, msg, receipt=None):
    body = {"id": msg["id"], "receipt": msg["receipt"] if receipt is None else receipt}
    return http(node.http_port, "POST", f"/v1/queues/{queue}/ack", body=body)


def nack(node, queue, msg, delay_ms=0):
    return http(node.http_port, "POST", f"/v1/queues/{queue}/nack",
                body={"id": msg["id"], "receipt": msg["receipt"], "delay_ms": delay_ms})


def stats(node, queue):
    return http(node.http_port, "GET", f"/v1/queues/{queue}")


def ready_cluster(c):
    c.start()
    wait_until(lambda: agreed_leader(c.nodes), 10, "a leader")
    # Every shard group elects too; the first push to each waits for that.
    wait_until(lambda: all(g["leader"] for g in c.nodes[0].get("/v1/cluster")[1]["groups"]), 10,
               "a leader in every group")


def test_semantics_through_any_node():
    with Cluster(3, "queues-basic", extra_env=QUEUES) as c:
        ready_cluster(c)
        a, b, d = c.nodes
        ids = [push(random.choice(c.nodes), "jobs", {"n": i})[1]["id"] for i in range(6)]
        assert len(set(ids)) == 6
        s, st = stats(b, "jobs")
        assert s == 200 and st["ready"] == 6 and st["in_flight"] == 0, st
        # FIFO first deliveries, max per call.
        s, got = pop(d, "jobs", max=4, visibility_ms=800)
        assert s == 200 and [m["payload"]["n"] for m in got["messages"]] == [0, 1, 2, 3], got
        first, second = got["messages"][0], got["messages"][1]
        assert ack(a, "jobs", first) == (200, {"acked": True})
        s, body = ack(a, "jobs", first)
        assert s == 404 and body["error"] == "not_found", "an acked message came back"
        assert nack(b, "jobs", second)[1] == {"requeued": True, "dead_lettered": False}
        # The rest of that delivery times out: the messages are ready again, and the old
        # receipt no longer deletes what another consumer holds.
        time.sleep(1.0)
        s, again = pop(a, "jobs", consumer="other", max=10, visibility_ms=30000)
        assert [m["payload"]["n"] for m in again["messages"]] == [1, 2, 3, 4, 5], again
        redelivered = {m["id"]: m for m in again["messages"]}
        third = got["messages"][2]
        s, body = ack(b, "jobs", third)
        assert s == 409 and body["error"] == "stale_receipt", (s, body)
        assert redelivered[third["id"]]["deliveries"] == 2
        for m in again["messages"]:
            assert ack(d, "jobs", m)[0] == 200
        s, st = stats(a, "jobs")
        assert (st["ready"], st["in_flight"], st["dead"]) == (0, 0, 0), st

        # Dead letters after max_deliveries, listed with payload and count, redriven.
        s, cfg = http(a.http_port, "PUT", "/v1/queues/poison/config", body={"max_deliveries": 2})
        assert s == 200 and cfg["max_deliveries"] == 2, cfg
        push(b, "poison", "bad")
        for attempt in range(2):
            m = pop(d, "poison")[1]["messages"][0]
            assert m["deliveries"] == attempt + 1
            out = nack(a, "poison", m)[1]
        assert out == {"requeued": False, "dead_lettered": True}, out
        s, dlq = http(b.http_port, "GET", "/v1/queues/poison/dlq")
        assert s == 200 and len(dlq["messages"]) == 1, dlq
        dead = dlq["messages"][0]
        assert dead["payload"] == "bad" and dead["deliveries"] == 2 and dead["reason"] == "max_deliveries", dead
        assert stats(d, "poison")[1]["dead"] == 1
        assert http(d.http_port, "POST", "/v1/queues/poison/redrive", body={"max": 10})[1] == {"redriven": 1}
        assert pop(a, "poison")[1]["messages"][0]["payload"] == "bad"

        # Long poll: answered as soon as a message arrives on another node.
        waiting = {}
        t = threading.Thread(target=lambda: waiting.update(r=pop(b, "later", wait_ms=8000), at=time.monotonic()))
        t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        push(d, "later", "now")
        t.join(10)
        assert waiting["r"][1]["messages"][0]["payload"] == "now" and waiting["at"] - t0 < 1.0, waiting
        s, empty = pop(a, "later", wait_ms=300)
        assert s == 200 and empty["messages"] == []

        # A batch ack settles each message on its own: a stale receipt fails only itself.
        for i in range(5):
            push(a, "batch", i)
        s, got = pop(b, "batch", max=5)
        msgs = got["messages"]
        assert len(msgs) == 5, got
        items = [{"id": m["id"], "receipt": m["receipt"]} for m in msgs]
        items[2]["receipt"] += 1
        s, out = http(d.http_port, "POST", "/v1/queues/batch/ack", body={"messages": items})
        assert s == 200 and out["acked"] == 4, (s, out)
        assert [r["id"] for r in out["results"]] == [m["id"] for m in msgs], out
        assert [r["acked"] for r in out["results"]] == [True, True, False, True, True], out
        assert out["results"][2]["error"] == "stale_receipt", out
        st = stats(a, "batch")[1]
        assert (st["ready"], st["in_flight"]) == (0, 1), st
        for bad in ({"messages": []}, {"messages": [{"id": "x"}]}, {"messages": "x"},
                    {"messages": [{"id": "x", "receipt": 1}] * 101}):
            s, body = http(a.http_port, "POST", "/v1/queues/batch/ack", body=bad)
            assert s == 400 and "messages" in body["message"], (bad, s, body)

        s, names = http(a.http_port, "GET", "/v1/queues")
        assert {"jobs", "poison", "later"} <= set(names["queues"]), names
        assert http(b.http_port, "DELETE", "/v1/queues/poison")[0] == 200
        assert stats(a, "poison")[0] == 404


def test_bad_input_is_refused_with_a_reason():
    with Cluster(3, "queues-bad", extra_env=QUEUES) as c:
        ready_cluster(c)
        n = c.nodes[0]
        s, out = http(n.http_port, "POST", "/v1/queues/q/messages", body={"nothing": 1})
        assert s == 400 and "payload" in out["message"], out
        s, out = http(n.http_port, "POST", "/v1/queues/q/messages", raw=b"{oops")
        assert s == 400, out
        s, out = push(n, "q", "x" * (300 * 1024))
        assert s == 413 and "262144" in out["message"], (s, out)
        s, out = push(n, "bad!name", 1)
        assert s == 400 and "name" in out["message"], (s, out)
        s, out = push(n, "q" * 300, 1)
        assert s == 400, (s, out)
        for body, word in [({"max": 0}, "max"), ({"max": 5000}, "max"), ({"max": -1}, "max"),
                           ({"visibility_ms": 0}, "visibility"), ({"wait_ms": 10**7}, "wait_ms"),
                           ({"consumer": 5}, "consumer")]:
            s, out = http(n.http_port, "POST", "/v1/queues/q/dequeue", body=body)
            assert s == 400 and word in out["message"], (body, s, out)
        s, out = http(n.http_port, "POST", "/v1/queues/q/ack", body={"id": "0-999999"})
        assert s == 404, (s, out)
        s, out = http(n.http_port, "POST", "/v1/queues/q/ack", body={"id": "nonsense"})
        assert s in (400, 404), (s, out)
        s, out = http(n.http_port, "POST", "/v1/queues/q/ack", body={})
        assert s == 400, (s, out)
        assert http(n.http_port, "GET", "/v1/health")[0] == 200


def test_shard_leaders_are_spread():
    with Cluster(3, "queues-spread", extra_env=dict(FAST, QUEUE_SHARDS="6")) as c:
        ready_cluster(c)

        def leaders():
            groups = c.nodes[0].get("/v1/cluster")[1]["groups"]
            return {g["leader"] for g in groups if g["group"] != 0 and g["leader"]}
        wait_until(lambda: len(leaders()) == 3, 10, "shard leaders on every member")


def test_producers_and_consumers_while_nodes_are_killed():
    with Cluster(3, "queues-chaos", extra_env=QUEUES) as c:
        ready_cluster(c)
        acked_enqueue, delivered, acked = set(), {}, set()
        problems = []
        mu = threading.Lock()
        done = threading.Event()

        def live():
            return [n for n in c.nodes if n.running()]

        def producer(p):
            i = 0
            while not done.is_set():
                payload = f"p{p}-{i}"
                try:
                    s, body = push(random.choice(live()), "work", payload, timeout=6)
                except OSError:
                    continue
                if s == 201:
                    with mu:
                        acked_enqueue.add(payload)
                    i += 1
                else:
                    time.sleep(0.05)

        def consumer(k):
            while True:
                try:
                    s, body = pop(random.choice(live()), "work", consumer=f"c{k}", max=5, visibility_ms=3000,
                                  wait_ms=200)
                except OSError:
                    continue
                if s != 200:
                    time.sleep(0.05)
                    continue
                if not body["messages"] and done.is_set():
                    return
                for m in body["messages"]:
                    with mu:
                        # A producer that retries an enqueue whose answer it lost may store the
                        # payload twice (at-least-once), under another id; ids must not return.
                        if m["id"] in acked:
                            problems.append(f"acked message {m['id']} ({m['payload']}) delivered again")
                        delivered[m["payload"]] = m["id"]
                    try:
                        s, out = ack(random.choice(live()), "work", m)
                    except OSError:
                        continue
                    if s == 200:
                        with mu:
                            acked.add(m["id"])

        threads = [threading.Thread(target=producer, args=(p,), daemon=True) for p in range(2)]
        threads += [threading.Thread(target=consumer, args=(k,), daemon=True) for k in range(2)]
        for t in threads:
            t.start()
        time.sleep(2)
        for victim in (c.nodes[0], c.nodes[2]):
            victim.kill9()
            time.sleep(2)
            victim.start()
            victim.wait_ready()
            time.sleep(1)
        time.sleep(1)
        done.set()
        for t in threads[:2]:
            t.join(20)
        for t in threads[2:]:
            t.join(40)
        lost = acked_enqueue - set(delivered)
        print(f"  {len(acked_enqueue)} enqueues acknowledged, {len(delivered)} delivered, {len(acked)} acked")
        assert not problems, problems[:5]
        assert not lost, f"{len(lost)} acknowledged messages never delivered, e.g. {sorted(lost)[:5]}"
        assert len(acked_enqueue) > 100, "too little progress"


def test_full_cluster_kill9_and_restart_loses_nothing():
    with Cluster(3, "queues-restart", extra_env=QUEUES) as c:
        ready_cluster(c)
        payloads = [f"m{i}" for i in range(40)]
        for p in payloads:
            assert push(random.choice(c.nodes), "durable", p)[0] == 201
        got = pop(c.nodes[1], "durable", max=5, visibility_ms=60000)[1]["messages"]
        for m in got:
            assert ack(c.nodes[0], "durable", m)[0] == 200
        for n in c.nodes:
            n.kill9()
        for n in c.nodes:
            n.start()
        for n in c.nodes:
            n.wait_ready()
        wait_until(lambda: stats(c.nodes[2], "durable")[0] == 200, 15, "the queue to be served again")
        s, st = stats(c.nodes[2], "durable")
        assert st["ready"] == 35 and st["in_flight"] == 0, st
        rest = pop(c.nodes[0], "durable", max=100)[1]["messages"]
        assert [m["payload"] for m in rest] == payloads[5:], rest


def test_rebalancing_when_a_member_is_added_and_removed():
    import json
    import subprocess
    with Cluster(4, "queues-rebalance", extra_env=QUEUES) as c:
        first, new = c.nodes[:3], c.nodes[3]
        for n in first:
            n.env["CLUSTER_NODES"] = ",".join(m.address for m in first if m is not n)
        new.env["CLUSTER_NODES"] = ",".join(n.address for n in first)
        new.env["CLUSTER_STATE"] = "existing"
        for n in first:
            n.start()
        for n in first:
            n.wait_ready()
        wait_until(lambda: agreed_leader(first), 10, "a leader")
        payloads = [f"r{i}" for i in range(40)]
        for i, p in enumerate(payloads):
            assert push(first[i % 3], f"rq{i % 8}", p)[0] == 201

        def shard_voters(node):
            groups = node.get("/v1/cluster")[1]["groups"]
            return {g["group"]: sorted(g["voters"]) for g in groups if g["group"] != 0}

        ctl = lambda node, *a: subprocess.run([CTL_BIN, "--node", node.address, "--json", *a],  # noqa: E731
                                              capture_output=True, text=True, timeout=60)
        new.start()
        new.wait_ready()
        r = ctl(first[0], "member", "add", "node-4")
        assert r.returncode == 0, r.stderr
        # The ring over four members gives node-4 some shards: their leaders add it.
        wait_until(lambda: any("node-4" in v for v in shard_voters(new).values()), 60, "node-4 to replicate a shard")
        r = ctl(new, "member", "remove", "node-1")
        assert r.returncode == 0, r.stderr
        # As an operator would: a removed member is stopped; it hands its shard leaderships
        # over on the way out, and the new leaders move the shards off it.
        assert c.nodes[0].terminate() == 0
        survivors = c.nodes[1:]
        wait_until(lambda: all("node-1" not in v and len(v) == 3 for v in shard_voters(survivors[0]).values())
                   and len(shard_voters(survivors[0])) >= 1, 90, "every shard to leave node-1")
        got = []
        for q in range(8):
            s, body = pop(random.choice(survivors), f"rq{q}", max=100)
            assert s == 200, body
            got += [m["payload"] for m in body["messages"]]
        assert sorted(got) == sorted(payloads), f"lost {set(payloads) - set(got)}"


def test_dsyncctl_queue_commands():
    import subprocess
    with Cluster(3, "queues-ctl", extra_env=QUEUES) as c:
        ready_cluster(c)
        ctl = [CTL_BIN, "--node", f"127.0.0.1:{c.nodes[2].node_port}", "--json"]
        run = lambda *a: subprocess.run(ctl + list(a), capture_output=True, text=True)  # noqa: E731
        pushed = run("queue", "push", "mail", '{"to": "ann"}')
        assert pushed.returncode == 0, pushed.stderr
        popped = run("--consumer", "x", "queue", "pop", "mail")
        assert popped.returncode == 0 and '"to":"ann"' in popped.stdout, popped.stdout
        import json
        m = json.loads(popped.stdout)["messages"][0]
        assert run("queue", "ack", "mail", m["id"], str(m["receipt"])).returncode == 0
        stats_out = json.loads(run("queue", "stats", "mail").stdout)
        assert stats_out["ready"] == 0 and stats_out["in_flight"] == 0
        bad = run("queue", "ack", "mail")
        assert bad.returncode == 2


if __name__ == "__main__":
    run_tests([test_semantics_through_any_node, test_bad_input_is_refused_with_a_reason, test_shard_leaders_are_spread,
               test_producers_and_consumers_while_nodes_are_killed, test_full_cluster_kill9_and_restart_loses_nothing,
               test_rebalancing_when_a_member_is_added_and_removed, test_dsyncctl_queue_commands])
