"""Starting nodes: the example cluster files, one cluster file for all members, and bad
configuration refused by the real binary with one clear line and a non-zero exit."""
import os
import re
import socket
import subprocess
import tempfile

from harness import NODE_BIN, TMP_ROOT, Cluster, free_ports, run_tests, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def launch(args=(), env=None, cwd=None, timeout=20):
    full = {"PATH": os.environ.get("PATH", "")}
    full.update(env or {})
    return subprocess.run([NODE_BIN, *args], env=full, cwd=cwd or TMP_ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_example_cluster_files_parse():
    for name, count in (("cluster-3.ini", 3), ("cluster-5.ini", 5)):
        path = os.path.join(REPO, "config", name)
        for i in range(1, count + 1):
            r = launch(["--config-file=" + path, "--dump-config"], {"NODE_ID": f"node-{i}"})
            assert r.returncode == 0, r.stderr
            assert f'node-port = {4999 + i}' in r.stdout, r.stdout
            peers = re.search(r'cluster-nodes = "(.*)"', r.stdout).group(1).split(",")
            assert len(peers) == count - 1 and f"127.0.0.1:{4999 + i}" not in peers, peers


def test_one_cluster_file_for_all_members():
    with Cluster(3, "clusterfile") as c:
        path = os.path.join(c.workdir, "cluster.ini")
        with open(path, "w") as f:
            f.write('cluster-id = "from-file"\npeer-ping-ms = 100\npeer-suspect-ms = 500\npeer-down-ms = 1500\n'
                    "[members]\n")
            for n in c.nodes:
                f.write(f'{n.node_id} = "127.0.0.1:{n.node_port}"\n')
        for n in c.nodes:
            # Only NODE_ID, HTTP_PORT and DATA_DIR come from the environment now.
            n.env = {k: v for k, v in n.env.items() if k in ("NODE_ID", "HTTP_PORT", "DATA_DIR")}
            n.start(["--config-file=" + path])
        for n in c.nodes:
            n.wait_ready()

        def all_alive():
            for n in c.nodes:
                status, body = n.get("/v1/cluster")
                if body["cluster_id"] != "from-file":
                    return False
                if sorted(m["state"] for m in body["members"]) != ["alive", "alive", "self"]:
                    return False
            return True
        wait_until(all_alive, 10, "all members alive from one cluster file")


def test_bad_configuration_is_refused_with_one_clear_line():
    d = tempfile.mkdtemp(prefix="badcfg-", dir=TMP_ROOT)
    bad_ini = os.path.join(d, "bad.ini")
    with open(bad_ini, "w") as f:
        f.write("node-id = n1\nnode-prot = 5000\n")
    cases = [
        ({}, [], "NODE_ID is required"),
        ({"NODE_ID": "n1", "NODE_PORT": "abc"}, [], "NODE_PORT=abc: not a port number"),
        ({"NODE_ID": "n1", "NODE_PORT": "70000"}, [], "NODE_PORT=70000: not a port number"),
        ({"NODE_ID": "n1", "CACHE_COHERENCE_PROTOCOL": "MOXI"}, [], "'MOXI' is not a coherence protocol"),
        ({"NODE_ID": "n1", "NODE_PORT": "5000", "CLUSTER_NODES": "127.0.0.1:5001,localhost:5000"}, [],
         "CLUSTER_NODES lists this node itself (localhost:5000)"),
        ({"NODE_ID": "n1", "CLUSTER_NODES": "a:1,a:1"}, [], "lists a:1 twice"),
        ({"NODE_ID": "n1", "DATA_DIR": os.path.join(d, "missing")}, [], "does not exist"),
        ({"NODE_ID": "n1", "LOG_LEVEL": "chatty"}, [], "'chatty' is not a log level"),
        ({}, ["--config-file=" + bad_ini], "bad.ini line 2: unknown setting 'node-prot'"),
        ({}, ["--config-file=" + os.path.join(d, "nope.ini")], "cannot read config file"),
        ({"NODE_ID": "n1"}, ["--no-such-flag=1"], "unknown option --no-such-flag"),
        ({"NODE_ID": "n1"}, ["--scheduler.max-threads=two"], "bad CAF option"),
    ]
    for env, args, expected in cases:
        r = launch(args, env, cwd=d)
        assert r.returncode == 2, (env, args, r.returncode, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (env, args, r.stderr)
        assert "terminate" not in r.stderr and "Aborted" not in r.stderr


def test_port_in_use_and_shared_data_dir():
    d = tempfile.mkdtemp(prefix="busy-", dir=TMP_ROOT)
    node_port, http_port = free_ports(2)
    holder = socket.socket()
    holder.bind(("127.0.0.1", node_port))
    holder.listen()
    try:
        r = launch([], {"NODE_ID": "n1", "NODE_PORT": str(node_port), "HTTP_PORT": str(http_port),
                        "DATA_DIR": d})
        assert r.returncode == 1 and f"cannot listen on 127.0.0.1:{node_port}" in r.stderr, r.stderr
    finally:
        holder.close()
    with Cluster(1, "shared-dir") as c:
        c.start()
        r = launch([], {"NODE_ID": "other", "NODE_PORT": str(free_ports(1)[0]), "DATA_DIR": c.nodes[0].env["DATA_DIR"]})
        assert r.returncode == 2 and "is in use by another dsync-node" in r.stderr, r.stderr


def test_help_lists_every_setting():
    r = launch(["--help"])
    assert r.returncode == 0
    for env in ("NODE_ID", "NODE_HOST", "NODE_PORT", "CLUSTER_NODES", "REDIS_HOST", "REDIS_PORT", "CACHE_SIZE",
                "CACHE_COHERENCE_PROTOCOL", "LOG_LEVEL", "HTTP_PORT", "DATA_DIR"):
        assert env in r.stdout, env


if __name__ == "__main__":
    run_tests([test_example_cluster_files_parse, test_one_cluster_file_for_all_members,
               test_bad_configuration_is_refused_with_one_clear_line, test_port_in_use_and_shared_data_dir,
               test_help_lists_every_setting])
