"""Random input on every HTTP endpoint of a real 3-node cluster (with Redis): bodies of random
JSON (wrong types, huge numbers, nesting, long strings) or random bytes, odd names and query
strings, every method. Every answer must be a well-formed HTTP/1.1 response with a JSON body
(except /metrics), no status >= 500 other than 503/504, no node may die, and the cluster must
still serve afterwards. The seed is printed; DSYNC_FUZZ_SEED and DSYNC_FUZZ_REQUESTS replay or
extend a run."""
import json
import os
import random
import socket
import subprocess
import time

from harness import CTL_BIN, TMP_ROOT, Cluster, Redis, http, raw_http, run_tests, wait_until
from test_cache import cache_cluster, serving

FIELDS = ["client", "mode", "type", "wait_ms", "ttl_ms", "token", "value", "payload", "messages", "id",
          "receipt", "max", "visibility_ms", "delay_ms", "max_deliveries", "dlq", "key", "node_id",
          "consumer", "requeue", "data"]
PATHS = ["/v1/kv/{n}", "/v1/locks/{n}/acquire", "/v1/locks/{n}/release", "/v1/locks/{n}/refresh",
         "/v1/locks/{n}", "/v1/queues", "/v1/queues/{n}/messages", "/v1/queues/{n}/dequeue",
         "/v1/queues/{n}/ack", "/v1/queues/{n}/nack", "/v1/queues/{n}", "/v1/queues/{n}/config",
         "/v1/queues/{n}/dlq", "/v1/queues/{n}/redrive", "/v1/cache/{n}", "/v1/cache/{n}/invalidate",
         "/v1/cache", "/v1/cluster", "/v1/cluster/members", "/v1/cluster/members/{n}", "/v1/health", "/metrics"]
NAMES = ["a", "q1", "lock-1", "%00", "%2F", "a%20b", "x" * 300, "..", "%C3%A9", "%", "a/b", "", "~", "%ff"]
QUERIES = ["", "", "", "?wait_ms=-1", "?max=abc", "?x=%ZZ", "?max=100000", "?wait_ms=99999999999999999999", "?&&=="]
METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]


def random_scalar(rng):
    return rng.choice([None, True, False, 0, -1, 1, 2**31, 2**63, -2**63, 2**64 + 5, 1e308, -0.5, 3.7, "", "x",
                       "a" * rng.choice([1, 100, 1000, 70000]), "\u0000", "\u00e9", "../..", "shared",
                       "exclusive", [], {}, [1, 2], {"a": 1}])


def random_value(rng, depth=0):
    if depth > 2 or rng.random() < 0.6:
        return random_scalar(rng)
    if rng.random() < 0.5:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(FIELDS): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def random_request(rng):
    path = rng.choice(PATHS).replace("{n}", rng.choice(NAMES)) + rng.choice(QUERIES)
    method = rng.choice(METHODS)
    r = rng.random()
    if r < 0.15:
        body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    elif r < 0.25:
        body = json.dumps(random_value(rng)).encode()
    else:
        body = json.dumps({rng.choice(FIELDS): random_value(rng) for _ in range(rng.randint(0, 6))}).encode()
    head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return method, path, head.encode() + body


def check_answer(method, path, data):
    """What is wrong with the answer, or None."""
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        return f"not an HTTP/1.1 response: {data[:120]!r}"
    status = int(head.split()[1])
    if status >= 500 and status not in (503, 504):
        return f"status {status}: {body[:300]!r}"
    if body and not path.startswith("/metrics"):
        try:
            json.loads(body)
        except ValueError:
            return f"status {status} with a body that is not JSON: {body[:120]!r}"
    return None


def test_random_requests_never_break_a_node():
    seed = int(os.environ.get("DSYNC_FUZZ_SEED", random.randrange(1 << 30)))
    count = int(os.environ.get("DSYNC_FUZZ_REQUESTS", "4000"))
    print(f"  seed {seed} ({count} requests; replay with DSYNC_FUZZ_SEED={seed})", flush=True)
    rng = random.Random(seed)
    with Redis(TMP_ROOT) as redis, cache_cluster("http-input", redis, "MOESI") as c:
        serving(c)
        problems = []
        for i in range(count):
            method, path, request = random_request(rng)
            try:
                problem = check_answer(method, path, raw_http(rng.choice(c.nodes).http_port, request))
            except OSError as e:
                problem = f"no answer: {e}"
            if problem:
                problems.append(f"request {i}: {method} {path}: {problem}")
            if i % 250 == 0:
                dead = [n.node_id for n in c.nodes if n.proc.poll() is not None]
                assert not dead, f"{dead} died by request {i} (seed {seed})"
        assert not problems, f"seed {seed}: " + "\n".join(problems[:10])
        assert all(n.proc.poll() is None for n in c.nodes), f"a node died (seed {seed})"
        # Still serving: a write, a lock and a cache line go through.
        node = c.nodes[0]
        wait_until(lambda: http(node.http_port, "PUT", "/v1/kv/after-fuzz", body={"value": "ok"})[0] == 200, 10,
                   "a write after the random requests")
        assert http(c.nodes[1].http_port, "GET", "/v1/kv/after-fuzz")[1]["value"] == "ok"
        status, _ = http(node.http_port, "POST", "/v1/locks/after-fuzz/acquire", body={"client": "c1"})
        assert status == 200, status
        assert http(c.nodes[2].http_port, "PUT", "/v1/cache/after-fuzz", body={"value": "v"})[0] == 200


def ctl(node, *args):
    out = subprocess.run([CTL_BIN.encode(), b"--node", node.address.encode(), b"--timeout", b"3000", *args],
                         capture_output=True, timeout=30)
    return out.returncode, out.stdout.decode("utf-8", "replace"), out.stderr.decode("utf-8", "replace")


def test_names_that_are_not_utf8():
    """Names and values are bytes to dsync's CAF API: ones that are not UTF-8 are listed over
    HTTP and printed by dsyncctl --json with replacement characters, never a crash."""
    with Cluster(3, "not-utf8", extra_env={"QUEUE_SHARDS": "2"}) as c:
        c.start()
        node = c.nodes[0]
        wait_until(lambda: ctl(node, b"kv", b"put", b"k", b"v")[0] == 0, 15, "a leader")
        rc, out, err = ctl(node, b"--client", b"c\xff", b"lock", b"acquire", b"L")
        assert rc == 0, (rc, out, err)
        status, body = http(node.http_port, "GET", "/v1/locks/L")
        assert status == 200 and body["holders"][0]["client"] == "c\ufffd", (status, body)
        rc, out, err = ctl(node, b"--json", b"lock", b"status", b"L")
        assert rc == 0 and json.loads(out)["holders"][0]["client"] == "c\ufffd", (rc, out, err)
        assert ctl(node, b"kv", b"put", b"key\xfe", b"value\xfe")[0] == 0
        rc, out, err = ctl(node, b"--json", b"kv", b"get", b"key\xfe")
        assert rc == 0 and json.loads(out)["value"] == "value\ufffd", (rc, out, err)
        # A payload that is neither JSON nor UTF-8 is refused, not sent altered.
        rc, out, err = ctl(node, b"queue", b"push", b"q", b"\xff")
        assert rc == 2 and "neither JSON nor UTF-8" in err, (rc, out, err)
        assert all(n.proc.poll() is None for n in c.nodes)


def test_connections_that_misbehave():
    """The HTTP loop's connection handling: a client that sends thousands of requests without
    reading the answers gets them all, in order, once it reads; a connection over
    HTTP_MAX_CONNECTIONS gets a 503 that names the setting; a request that stalls gets a 408
    after 10 s; a client that shuts its side still gets its answers; a refused request's
    unread body does not cost the client its answer."""
    with Cluster(1, "http-conns", extra_env={"HTTP_MAX_CONNECTIONS": "8"}) as c:
        c.start()
        port = c.nodes[0].http_port
        wait_until(lambda: http(port, "GET", "/v1/health")[0] == 200, 10, "the node to serve")

        # Answers (~3 MB) far beyond what the sockets buffer: the node must hold them back
        # until the client reads, and lose none.
        count = 20000
        with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n" * count
                      + b"GET /v1/nope HTTP/1.1\r\nConnection: close\r\n\r\n")
            time.sleep(1)
            out = b""
            while chunk := s.recv(1 << 20):
                out += chunk
        assert out.count(b"HTTP/1.1 200 OK") == count, out.count(b"HTTP/1.1 200 OK")
        assert out.rstrip().endswith(b'"error":"not_found","message":"no such endpoint: GET /v1/nope"}'), out[-200:]

        # The connection limit: 8 open, the 9th is told why and closed; then room again.
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(8)]
        try:
            for s in held:  # each is served, so each is counted by now
                s.sendall(b"GET /v1/health HTTP/1.1\r\n\r\n")
                assert s.recv(4096).startswith(b"HTTP/1.1 200 OK")
            refused = raw_http(port, b"GET /v1/health HTTP/1.1\r\n\r\n")
            assert refused.startswith(b"HTTP/1.1 503") and b"HTTP_MAX_CONNECTIONS is 8" in refused, refused
        finally:
            for s in held:
                s.close()
        wait_until(lambda: http(port, "GET", "/v1/health")[0] == 200, 5, "room for a connection again")

        # A request whose headers never end: 408, then the connection closes.
        with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            out = s.recv(4096)
            waited = time.monotonic() - started
            assert out.startswith(b"HTTP/1.1 408") and b"request_timeout" in out, out
            assert 9 <= waited <= 12, waited
            assert s.recv(4096) == b"", "the connection stays open after the 408"

        # A client that shuts its sending side after its requests (HTTP/1.0 tools, nc) still
        # gets every answer, the first one from the node actor, then the connection closes.
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /v1/cluster HTTP/1.1\r\n\r\nGET /v1/health HTTP/1.1\r\n\r\n")
                s.shutdown(socket.SHUT_WR)
                out = b""
                while chunk := s.recv(65536):
                    out += chunk
                assert out.count(b"HTTP/1.1 200 OK") == 2 and b'"members"' in out, out[:300]

        # A malformed request followed at once by more bytes: the 400 arrives, not a reset.
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /v1/health?x=%ZZ HTTP/1.1\r\nContent-Length: 5\r\n\r\n")
                s.sendall(b"hello" + b"x" * 100000)
                out = b""
                while chunk := s.recv(65536):
                    out += chunk
                assert out.startswith(b"HTTP/1.1 400") and b"malformed %-escape" in out, out[:200]
        assert c.nodes[0].proc.poll() is None


if __name__ == "__main__":
    run_tests([test_random_requests_never_break_a_node, test_names_that_are_not_utf8, test_connections_that_misbehave])
