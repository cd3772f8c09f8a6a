"""Scaling out as memcached does: a client hashes keys over a pool of nodes, and losing a node
loses only its share of the keys."""

import signal

from pymemcache.client.hash import HashClient

import harness
from harness import expect

KEYS = [f"scale:{i:05d}" for i in range(10000)]
BATCH = 500


def value_of(key):
    return b"value-of-" + key.encode()


def curr_items(conn):
    for line in conn.request(b"stats\r\n").split(b"\r\n"):
        if line.startswith(b"STAT curr_items "):
            return int(line.split()[2])
    raise AssertionError("stats has no curr_items")


def pool_client(servers):
    """A HashClient that drops a node at its first connection failure and keeps it dropped."""
    return HashClient([(harness.HOST, s.port) for s in servers],
                      connect_timeout=harness.IO_TIMEOUT, timeout=harness.IO_TIMEOUT,
                      ignore_exc=True, retry_attempts=0, dead_timeout=600, default_noreply=False)


def fill(client):
    for start in range(0, len(KEYS), BATCH):
        batch = {k: value_of(k) for k in KEYS[start:start + BATCH]}
        expect(client.set_many(batch), [], f"keys that failed to store from {start}")


def get_all(client):
    found = {}
    for start in range(0, len(KEYS), BATCH):
        found.update(client.get_many(KEYS[start:start + BATCH]))
    return found


def test_hash_client_spreads_keys_evenly_over_three_nodes(fx):
    nodes = [fx.server(threads=2) for _ in range(3)]
    client = pool_client(nodes)
    try:
        fill(client)
        counts = [curr_items(fx.conn(n)) for n in nodes]
    finally:
        client.close()
    expect(sum(counts), len(KEYS), f"items over all nodes {counts}")
    for count in counts:
        if not 0.20 * len(KEYS) <= count <= 0.45 * len(KEYS):
            raise AssertionError(f"a node holds {count} of {len(KEYS)} keys, outside 20%..45%: "
                                 f"{counts}")


def test_losing_a_node_loses_only_its_keys(fx):
    survivors = [fx.server(threads=2) for _ in range(2)]
    # Not fx.server(): the fixture fails a test whose server exited during it.
    doomed = harness.Server(fx.binary, threads=2)
    client = pool_client(survivors + [doomed])
    try:
        fill(client)
        # where each key lives, asked of each node directly
        on_doomed = set()
        direct = fx.client(doomed)
        for start in range(0, len(KEYS), BATCH):
            on_doomed.update(direct.get_many(KEYS[start:start + BATCH]))
        direct.close()
        kept = {k.encode(): value_of(k) for k in KEYS if k not in on_doomed}
        expect(0 < len(on_doomed) < len(KEYS), True,
               f"the doomed node holds {len(on_doomed)} keys")

        doomed.proc.send_signal(signal.SIGTERM)
        expect(doomed.proc.wait(harness.STOP_TIMEOUT), 0, "exit status of the stopped node")
        found = {k.encode(): v for k, v in get_all(client).items()}
        missing = sorted(set(kept) - set(found))[:5]
        expect(missing, [], "keys of the surviving nodes that the pool no longer returns")
        expect(found, kept, "what the pool returns with one node down")

        # the dead node is out of the pool: its keys now hash to the survivors
        lost = sorted(on_doomed)[0]
        expect(client.set(lost, b"stored again"), True, f"set {lost} with a node down")
        expect(client.get(lost), b"stored again", f"get {lost} with a node down")
    finally:
        client.close()
        doomed.stop()
