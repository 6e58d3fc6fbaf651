"""Membership change of the control group on real processes: a fourth node started with
CLUSTER_STATE=existing and only one member's address is added (learner, catch-up,
promotion) while writes go on; every member finds it through the address the control group
records. Then an original member - the leader if possible - is removed, and the cluster
keeps committing; a member restarted with its old CLUSTER_NODES finds the fourth node."""
import os
import subprocess
import threading
import time

from harness import CTL_BIN, Cluster, http, run_tests, wait_until
from test_raft import FAST, agreed_leader, by_id, get, group0, put, write_until_ok


def ctl(node, *args):
    r = subprocess.run([CTL_BIN, "--node", node.address, "--json", *args], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout.strip(), r.stderr.strip()


def linked(a, b):
    return any(m["node_id"] == b.node_id and m["state"] == "alive" for m in a.members().values())


def test_add_a_fourth_node_then_remove_the_leader():
    import json
    with Cluster(4, "reconfig", extra_env=FAST) as c:
        first, new = c.nodes[:3], c.nodes[3]
        for n in first:
            n.env["CLUSTER_NODES"] = ",".join(m.address for m in first if m is not n)
        new.env["CLUSTER_STATE"] = "existing"
        for n in first:
            n.start()
        for n in first:
            n.wait_ready()
        first_leader = wait_until(lambda: agreed_leader(first), 10, "a leader of the first three")
        # node-4 knows only a follower, which forwards the add (with node-4's address) to the
        # leader; the others learn the address from the control group's log.
        via = next(n for n in first if n.node_id != first_leader)
        new.env["CLUSTER_NODES"] = via.address
        for i in range(100):
            assert put(first[i % 3], f"k{i}", f"v{i}")[0] == 200

        # Writes keep going during the change; every acknowledged one must survive it.
        acked, stop = {}, threading.Event()

        def writer():
            i = 0
            while not stop.is_set():
                try:
                    status, _ = put(first[i % 3], f"w{i}", str(i), timeout=3)
                    if status == 200:
                        acked[f"w{i}"] = str(i)
                except OSError:
                    pass
                i += 1
        t = threading.Thread(target=writer)
        t.start()
        try:
            new.start()
            new.wait_ready()
            rc, out, err = ctl(via, "member", "add", "node-4")
            assert rc == 0, (rc, out, err)
            assert sorted(json.loads(out)["voters"]) == ["node-1", "node-2", "node-3", "node-4"], out
            wait_until(lambda: get(new, "k99", "stale")[0] == 200, 10, "node-4 to catch up")
            wait_until(lambda: all(linked(n, new) and linked(new, n) for n in first), 10,
                       "node-4 and the first three to link")
            assert group0(new)["role"] == "follower"

            leader = by_id(c, agreed_leader(c.nodes))
            rc, out, err = ctl(new, "member", "remove", leader.node_id)
            assert rc == 0, (rc, out, err)
            assert leader.node_id not in json.loads(out)["voters"], out
        finally:
            stop.set()
            t.join()
        remaining = [n for n in c.nodes if n is not leader]
        wait_until(lambda: agreed_leader(remaining) not in (None, leader.node_id), 10, "a leader among the rest")
        leader.kill9()  # removed: the other three are the whole cluster now
        write_until_ok(remaining, "after", "x", timeout=10)
        for key, value in list(acked.items()) + [("k0", "v0"), ("after", "x")]:
            status, body = get(remaining[0], key)
            assert status == 200 and body["value"] == value, (key, status, body)
        print(f"  {len(acked)} writes acknowledged during the change, all readable afterwards")
        # A member restarted with its old CLUSTER_NODES (without node-4) finds node-4 in the log.
        old = next(n for n in remaining if n is not new)
        old.terminate()
        log_start = os.path.getsize(old.log_path)
        old.start()
        old.wait_ready()
        wait_until(lambda: linked(old, new), 10, f"{old.node_id} to link to node-4 again")
        with open(old.log_path, errors="replace") as f:
            f.seek(log_start)
            assert "learned member node-4 at " + new.address + " from the control group" in f.read()
        # A node that is not running cannot be added; the answer says why, at once.
        rc, out, err = ctl(remaining[0], "member", "add", "ghost")
        assert rc == 1 and "node ghost is not linked" in err, (rc, out, err)
        status, body = http(remaining[0].http_port, "POST", "/v1/cluster/members", body={"node_id": "ghost"})
        assert status == 400 and "not linked" in body["message"], (status, body)
        status, body = http(remaining[0].http_port, "POST", "/v1/cluster/members", body={})
        assert status == 400 and "node_id" in body["message"], (status, body)


if __name__ == "__main__":
    run_tests([test_add_a_fourth_node_then_remove_the_leader])
