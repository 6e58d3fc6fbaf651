"""Runs real dsync-node processes on loopback for integration tests.

Every node is started with PR_SET_PDEATHSIG, so it dies with the test process even when
the test is killed (CTest timeout); `Cluster` also kills its nodes on exit, on failure
and on SIGTERM. Nothing here talks to anything but 127.0.0.1.
"""
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

NODE_BIN = os.environ.get("DSYNC_NODE_BIN", "dsync-node")
CTL_BIN = os.environ.get("DSYNC_CTL_BIN", "dsyncctl")
TMP_ROOT = os.environ.get("DSYNC_TEST_TMP", tempfile.gettempdir())
os.makedirs(TMP_ROOT, exist_ok=True)

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _as_user(uid):
    """preexec_fn: drop to uid (so iptables can tell the node's packets apart), then die
    with the parent (a credential change clears the death signal, so it comes second)."""
    def run():
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        _die_with_parent()
    return run


def free_ports(n):
    """n distinct loopback ports that were free a moment ago."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls predicate until it returns a truthy value; fails naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
        except Exception as e:  # a node still starting refuses connections
            last = e
            if not isinstance(e, (OSError, urllib.error.URLError, ValueError, AssertionError)):
                raise
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def raw_http(port, data, timeout=15):
    """Sends bytes on one connection and reads everything until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def http(port, method, path, body=None, raw=None, timeout=5):
    """(status, parsed JSON or text) of one request to 127.0.0.1:port."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text, ctype = r.status, r.read().decode(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        status, text, ctype = e.code, e.read().decode(), e.headers.get("Content-Type", "")
    return status, (json.loads(text) if "json" in ctype else text)


class Node:
    def __init__(self, cluster, index, node_id, node_port, http_port, env, uid=None):
        self.cluster, self.index, self.node_id, self.uid = cluster, index, node_id, uid
        self.node_port, self.http_port, self.env = node_port, http_port, env
        self.proc = None
        self.log_path = os.path.join(cluster.workdir, f"{node_id}.log")

    def start(self, extra_args=()):
        env = dict(os.environ)
        env.update(self.env)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([NODE_BIN, *extra_args], env=env, cwd=self.cluster.workdir,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     preexec_fn=_as_user(self.uid) if self.uid is not None else _die_with_parent)
        log.close()
        return self

    def wait_ready(self, timeout=10):
        wait_until(lambda: self.alive_process() and http(self.http_port, "GET", "/v1/health")[0] == 200,
                   timeout, f"{self.node_id} to answer /v1/health")

    def running(self):
        """True while the process runs (no matter how it stopped otherwise)."""
        return self.proc is not None and self.proc.poll() is None

    def alive_process(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.node_id} exited with {self.proc.returncode}:\n{self.log_tail()}")
        return True

    def get(self, path):
        return http(self.http_port, "GET", path)

    def members(self):
        """{address: member} as this node sees them."""
        status, body = self.get("/v1/cluster")
        assert status == 200, (status, body)
        return {m["address"]: m for m in body["members"]}

    def signal(self, sig):
        """Sends `sig`; for SIGSTOP, returns once every thread has stopped (delivery is
        asynchronous, and a test must not race a node that still runs for a moment)."""
        self.proc.send_signal(sig)
        if sig == signal.SIGSTOP:
            wait_until(self._stopped, 5, f"{self.node_id} to stop", interval=0.005)

    def _stopped(self):
        tasks = f"/proc/{self.proc.pid}/task"
        try:
            states = [open(f"{tasks}/{t}/stat").read().rsplit(")", 1)[1].split()[0] for t in os.listdir(tasks)]
        except FileNotFoundError:
            return False
        return all(s in ("T", "t") for s in states)

    def kill9(self):
        self.proc.kill()
        self.proc.wait(timeout=10)

    def terminate(self, timeout=10):
        """SIGTERM, then the exit code (the node must stop by itself within timeout)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def address(self):
        return f"127.0.0.1:{self.node_port}"


class Cluster:
    """n nodes configured by environment variables, as in the original design."""

    def __init__(self, n, name="cluster", extra_env=None, per_node_env=None, distinct_uids=False):
        """distinct_uids: run node i as uid 31000 + i (root only), so that Partition can
        match its packets with iptables' owner module."""
        if distinct_uids and os.geteuid() != 0:
            raise RuntimeError("this test cuts nodes off with iptables and needs root, as CI has")
        self.workdir = tempfile.mkdtemp(prefix=f"{name}-", dir=TMP_ROOT)
        ports = free_ports(2 * n)
        self.nodes = []
        for i in range(n):
            node_port, http_port = ports[i], ports[n + i]
            others = ",".join(f"127.0.0.1:{p}" for p in ports[:n] if p != node_port)
            env = {"NODE_ID": f"node-{i + 1}", "NODE_HOST": "127.0.0.1", "NODE_PORT": str(node_port),
                   "HTTP_PORT": str(http_port), "CLUSTER_NODES": others,
                   "DATA_DIR": os.path.join(self.workdir, f"node-{i + 1}"), "LOG_LEVEL": "debug"}
            os.makedirs(env["DATA_DIR"])
            uid = 31000 + i if distinct_uids else None
            if uid is not None:
                os.chown(env["DATA_DIR"], uid, uid)
            env.update(extra_env or {})
            env.update((per_node_env or {}).get(i, {}))
            self.nodes.append(Node(self, i, env["NODE_ID"], node_port, http_port, env, uid))
        if distinct_uids:
            os.chmod(self.workdir, 0o755)
        self._old_term = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, *_):
        self.kill_all()
        sys.exit(1)

    def start(self):
        for n in self.nodes:
            n.start()
        for n in self.nodes:
            n.wait_ready()
        return self

    def kill_all(self):
        for n in self.nodes:
            if n.proc and n.proc.poll() is None:
                try:
                    n.proc.send_signal(signal.SIGCONT)
                    n.proc.kill()
                    n.proc.wait(timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.kill_all()
        signal.signal(signal.SIGTERM, self._old_term)
        # A fault that passes unnoticed otherwise: CAF lost the route a peer's messages
        # come in on, so that node can answer none of that peer's requests.
        anonymous = [n.node_id for n in self.nodes if "arrived without a sender" in n.log_tail(10**6)]
        if exc_type is not None or anonymous:
            for n in self.nodes:
                print(f"--- log of {n.node_id} ---\n{n.log_tail(60)}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if anonymous and exc_type is None:
            raise AssertionError(f"a peer's handshake arrived without a sender on {', '.join(anonymous)}")
        return False


class Redis:
    """A real redis-server on a free loopback port, without persistence; killed on exit and
    when the test process dies."""

    def __init__(self, workdir):
        self.port = free_ports(1)[0]
        self.workdir = workdir
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.workdir, "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        wait_until(lambda: self.ping(), 10, f"redis-server on port {self.port}")
        return self

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args):
        """One command in RESP; the raw reply bytes."""
        payload = f"*{len(args)}\r\n".encode()
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            payload += f"${len(a)}\r\n".encode() + a + b"\r\n"
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(payload)
            return s.recv(1 << 20)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.kill()
        return False


class Partition:
    """Cuts one node (started with distinct_uids) off from its peers with iptables on
    loopback, in both directions, while its HTTP port stays reachable for the test.

    Connections the node opens (owner match) and connections to its CAF port are marked
    and dropped; connections it already has are dropped by their local ports. heal()
    removes every rule; the rules are also removed if the test fails."""

    def __init__(self, node):
        self.node = node
        self.chain = f"DSYNC{os.getpid() % 100000}N{node.index}"
        self.active = False

    def _ipt(self, *args, check=True):
        return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True, check=check)

    def _local_ports(self):
        out = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True, check=True).stdout
        ports = set()
        for line in out.splitlines():
            if f"pid={self.node.proc.pid}," in line:
                local = line.split()[3]
                ports.add(int(local.rsplit(":", 1)[1]))
        ports.discard(self.node.http_port)
        return sorted(ports)

    def isolate(self):
        n = self.node
        assert n.uid is not None, "start the cluster with distinct_uids=True"
        mark = str(0x4000 + n.index)
        self._ipt("-N", self.chain)
        self.active = True
        self._ipt("-I", "OUTPUT", "-j", self.chain)
        self._ipt("-A", self.chain, "-p", "tcp", "-m", "owner", "--uid-owner", str(n.uid), "-j", "CONNMARK", "--set-mark", mark)
        self._ipt("-A", self.chain, "-p", "tcp", "--dport", str(n.node_port), "-j", "CONNMARK", "--set-mark", mark)
        for port in self._local_ports():
            self._ipt("-A", self.chain, "-p", "tcp", "-m", "multiport", "--ports", str(port), "-j", "DROP")
        self._ipt("-A", self.chain, "-p", "tcp", "-m", "connmark", "--mark", mark, "-m", "multiport", "!", "--ports",
                  str(n.http_port), "-j", "DROP")

    def heal(self):
        if not self.active:
            return
        self._ipt("-D", "OUTPUT", "-j", self.chain, check=False)
        self._ipt("-F", self.chain, check=False)
        self._ipt("-X", self.chain, check=False)
        self.active = False

    def __enter__(self):
        self.isolate()
        return self

    def __exit__(self, *exc):
        self.heal()
        return False


def run_tests(tests):
    """Runs each test function, prints one line each and the closing count; exits 1 on failure."""
    passed = failed = 0
    for t in tests:
        start = time.monotonic()
        try:
            t()
        except Exception as e:
            failed += 1
            print(f"FAIL {t.__name__} ({time.monotonic() - start:.1f}s): {type(e).__name__}: {e}", flush=True)
            import traceback
            traceback.print_exc()
        else:
            passed += 1
            print(f"ok   {t.__name__} ({time.monotonic() - start:.1f}s)", flush=True)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
