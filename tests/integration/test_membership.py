"""Three real dsync-node processes started from environment variables: health, the
membership view, kill -9 and restart, SIGSTOP/SIGCONT, the CAF client, /metrics, and a
clean SIGTERM shutdown."""
import json
import os
import shutil
import signal
import socket
import subprocess
import time

from harness import CTL_BIN, Cluster, http, raw_http, run_tests, wait_until

PEER_ENV = {"PEER_PING_MS": "100", "PEER_SUSPECT_MS": "500", "PEER_DOWN_MS": "1500"}


def states(node):
    return {addr: m["state"] for addr, m in node.members().items()}


def sees(node, other, state):
    return node.members()[other.address]["state"] == state


def all_alive(cluster):
    for n in cluster.nodes:
        s = states(n)
        if len(s) != len(cluster.nodes) or s[n.address] != "self":
            return False
        if any(st != "alive" for addr, st in s.items() if addr != n.address):
            return False
    return True


def ctl(node, *args):
    out = subprocess.run([CTL_BIN, "--node", node.address, "--timeout", "3000", *args],
                         capture_output=True, text=True, timeout=30)
    return out.returncode, out.stdout, out.stderr


def test_three_nodes_from_environment():
    with Cluster(3, "membership", extra_env=PEER_ENV) as c:
        c.start()
        for n in c.nodes:
            status, body = n.get("/v1/health")
            assert status == 200 and body == {"node": n.node_id, "status": "ok"}, body
        wait_until(lambda: all_alive(c), 10, "every node to see the other two alive")
        status, body = c.nodes[0].get("/v1/cluster")
        assert body["node"] == "node-1" and body["leader"] is None and body["term"] == 0, body
        ids = {m["address"]: m["node_id"] for m in body["members"]}
        assert ids == {n.address: n.node_id for n in c.nodes}, ids

        # kill -9: the others see it down at once (the connection closes), well within 2 s.
        victim, watchers = c.nodes[2], c.nodes[:2]
        victim.kill9()
        t0 = time.monotonic()
        for w in watchers:
            wait_until(lambda: sees(w, victim, "down"), 2, f"{w.node_id} to see {victim.node_id} down")
        print(f"  kill -9 detected as down after {time.monotonic() - t0:.3f}s")

        # A restart on the same address is picked up again.
        victim.start()
        victim.wait_ready()
        t0 = time.monotonic()
        wait_until(lambda: all_alive(c), 5, "the restarted node to be alive everywhere")
        print(f"  restarted node alive everywhere after {time.monotonic() - t0:.3f}s")

        # SIGSTOP: nothing closes, so missed pings make it suspected, then down.
        frozen = c.nodes[1]
        frozen.signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            wait_until(lambda: sees(c.nodes[0], frozen, "suspected"), 2, "node-2 suspected")
            wait_until(lambda: sees(c.nodes[0], frozen, "down"), 3, "node-2 down")
            print(f"  SIGSTOP: down after {time.monotonic() - t0:.3f}s")
        finally:
            frozen.signal(signal.SIGCONT)
        wait_until(lambda: all_alive(c), 5, "node-2 alive again after SIGCONT")

        # The CAF client sees the same cluster.
        rc, out, err = ctl(c.nodes[1], "--json", "cluster", "status")
        assert rc == 0, err
        view = json.loads(out)
        assert view["node"] == "node-2", view
        assert sorted(m["state"] for m in view["members"]) == ["alive", "alive", "self"], view
        rc, out, err = ctl(c.nodes[0], "health")
        assert rc == 0 and out.strip() == "node-1 ok", (rc, out, err)
        rc, out, err = ctl(c.nodes[0], "cluster", "status")
        assert rc == 0 and "node-3" in out and "alive" in out, out

        # SIGTERM stops every node cleanly.
        for n in c.nodes:
            t0 = time.monotonic()
            assert n.terminate(timeout=10) == 0, n.log_tail()
            print(f"  {n.node_id} stopped by SIGTERM in {time.monotonic() - t0:.3f}s")
            assert "stopped" in n.log_tail(3)


def test_metrics_and_http_errors():
    with Cluster(2, "http", extra_env=PEER_ENV) as c:
        c.start()
        n = c.nodes[0]
        wait_until(lambda: all_alive(c), 10, "both nodes alive")
        status, text = n.get("/metrics")
        assert status == 200
        assert 'dsync_peers{state="alive"} 1' in text, text
        assert 'dsync_node_info{' in text and 'node="node-1"' in text
        assert "dsync_http_request_seconds_bucket" in text
        promtool = shutil.which("promtool")
        assert promtool, "promtool (Debian package prometheus) is required"
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        print(f"  promtool check metrics: exit 0 {check.stdout.strip()}{check.stderr.strip()}")

        status, body = http(n.http_port, "GET", "/v1/nope")
        assert status == 404 and body["error"] == "not_found", body
        status, body = http(n.http_port, "POST", "/v1/health", body={})
        assert status == 405 and body["error"] == "method_not_allowed", body
        status, body = http(n.http_port, "GET", "/v1/" + "x" * 2000)
        assert status == 414 and body["error"] == "uri_too_long", body
        status, body = http(n.http_port, "POST", "/v1/health", raw=b"x" * (2 << 20))
        assert status == 413 and body["error"] == "payload_too_large", (status, body)
        # The node keeps serving after all of that.
        assert n.get("/v1/health")[0] == 200

        # Raw HTTP: thousands of pipelined requests are answered in order; a malformed one
        # gets its 400 and the connection closes; Expect: 100-continue is honoured.
        pipelined = b"GET /v1/nope HTTP/1.1\r\nHost: x\r\n\r\n" * 3000
        replies = raw_http(n.http_port, pipelined + b"GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert replies.count(b"HTTP/1.1 404 Not Found") == 3000, replies[-300:]
        assert replies.rstrip().endswith(b'"status":"ok"}'), replies[-300:]
        replies = raw_http(n.http_port, b"GET /v1/health HTTP/1.1\r\n\r\nBROKEN\r\n\r\nGET /v1/health HTTP/1.1\r\n\r\n")
        assert replies.count(b"HTTP/1.1 200 OK") == 1 and b"HTTP/1.1 400 Bad Request" in replies, replies
        wait_until(lambda: n.get("/v1/cluster")[1]["leader"], 10, "a leader, for the write below")
        with socket.create_connection(("127.0.0.1", n.http_port), timeout=5) as s:
            body = b'{"value": "v"}'
            s.sendall(b"PUT /v1/kv/expect HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
            assert s.recv(100).startswith(b"HTTP/1.1 100 Continue"), "no 100 Continue"
            s.sendall(body)
            assert s.recv(1000).startswith(b"HTTP/1.1 200 OK")
        assert n.get("/v1/health")[0] == 200


def test_incompatible_peer_is_refused():
    # node-2 runs another coherence protocol: both sides refuse the link and say why.
    with Cluster(2, "refuse", extra_env=PEER_ENV,
                 per_node_env={1: {"CACHE_COHERENCE_PROTOCOL": "MOSI"}}) as c:
        c.start()
        a, b = c.nodes
        wait_until(lambda: sees(a, b, "refused") and sees(b, a, "refused"), 10, "mutual refusal")
        reason = a.members()[b.address]["reason"]
        assert "coherence protocol" in reason and "MOSI" in reason, reason
        status, text = a.get("/metrics")
        assert 'dsync_peer_handshakes_refused_total{by="us"}' in text, text
        assert "differs from ours" in a.log_tail(50)


if __name__ == "__main__":
    run_tests([test_three_nodes_from_environment, test_metrics_and_http_errors, test_incompatible_peer_is_refused])
