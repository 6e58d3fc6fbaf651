"""The Raft leader cut off from the majority by iptables on loopback: it steps down and
refuses writes, the majority elects a new leader and keeps committing, and after healing
the old leader rejoins as a follower without deposing the new one."""
import time

from harness import Cluster, Partition, http, run_tests, wait_until
from test_raft import FAST, agreed_leader, by_id, get, group0, put, write_until_ok


def test_isolated_leader_steps_down_and_rejoins_quietly():
    with Cluster(3, "partition", extra_env=FAST, distinct_uids=True) as c:
        c.start()
        old = by_id(c, wait_until(lambda: agreed_leader(c.nodes), 10, "a leader"))
        majority = [n for n in c.nodes if n is not old]
        assert put(old, "before", "1")[0] == 200
        with Partition(old):
            t0 = time.monotonic()
            write_until_ok(majority, "during", "2", timeout=10)
            new = wait_until(lambda: agreed_leader(majority), 5, "a leader in the majority")
            assert new != old.node_id
            print(f"  majority committed again {time.monotonic() - t0:.3f}s after the partition")
            # The minority side: check-quorum makes the old leader step down, and no write or
            # linearizable read succeeds there, within a bounded time.
            wait_until(lambda: group0(old)["role"] != "leader", 5, "the isolated leader to step down")
            t0 = time.monotonic()
            status, body = put(old, "minority", "x", timeout=10)
            assert status == 503 and body["error"] == "unavailable", (status, body)
            assert time.monotonic() - t0 < 6, "the refusal took too long"
            status, body = get(old, "before")
            assert status == 503, (status, body)
            term_during = group0(by_id(c, new))["term"]
        wait_until(lambda: agreed_leader(c.nodes) == new, 10, "the healed node to follow the new leader")
        wait_until(lambda: get(old, "during", "stale")[0] == 200, 10, "the healed node to catch up")
        time.sleep(1.0)
        assert agreed_leader(c.nodes) == new, "the healed node deposed the leader"
        assert group0(by_id(c, new))["term"] == term_during, "the healed node forced a new term"
        status, body = get(old, "minority", "stale")
        assert status == 404, "a write refused on the minority side must not appear later"


if __name__ == "__main__":
    run_tests([test_isolated_leader_steps_down_and_rejoins_quietly])
