"""`stats`: every classic name is present, and counters move by exactly what the commands did.

Counts are compared as before/after differences, so they hold on any server and any run order.
"""

import os
import time

import harness
from harness import expect

CLASSIC = """pid uptime time version curr_connections total_connections cmd_get cmd_set get_hits
get_misses curr_items total_items bytes evictions limit_maxbytes threads delete_hits
delete_misses incr_hits incr_misses decr_hits decr_misses cas_hits cas_misses cas_badval
touch_hits touch_misses""".split()
# what commands move; connection counts also move with the harness's start-up probe
COUNTERS = [n for n in CLASSIC if n not in ("pid", "uptime", "time", "version", "limit_maxbytes",
                                            "threads", "curr_connections", "total_connections")]


def stats(client):
    return {name.decode(): value for name, value in client.stats().items()}


def changes(client, action):
    """Run action(); return the counters that changed, by how much."""
    before = stats(client)
    action()
    after = stats(client)
    return {n: after[n] - before[n] for n in COUNTERS if after[n] != before[n]}


def without(moved, *names):
    return {n: d for n, d in moved.items() if n not in names}


def test_stats_lists_every_classic_name(fx):
    missing = [n for n in CLASSIC if n not in stats(fx.client())]
    expect(missing, [], "names missing from stats")


def test_stats_describe_the_running_server(fx):
    srv = fx.server(threads=3, memory_mb=48)
    c = fx.client(srv)
    s = stats(c)
    expect((s["pid"], s["threads"], s["limit_maxbytes"]), (srv.proc.pid, 3, 48 * 1024 * 1024),
           "pid, threads, limit_maxbytes")
    expect(s["version"], c.version(), "version")
    if not 0 <= s["uptime"] < 60 or abs(s["time"] - time.time()) > 2:
        raise AssertionError(f"uptime {s['uptime']}, time {s['time']} (now {time.time():.0f})")


def test_get_counters_count_every_key(fx):
    c = fx.client()
    c.set(b"k", b"v")

    def reads():
        c.get(b"k")
        c.get(b"missing")
        c.get_many([b"k", b"m1", b"m2"])
        c.gets(b"k")
    expect(changes(c, reads), {"cmd_get": 6, "get_hits": 3, "get_misses": 3}, "counters")


def test_store_counters_count_attempts_and_stored_items(fx):
    c = fx.client()

    def stores():
        c.set_many({b"a": b"1", b"b": b"2", b"c": b"3"})
        c.set(b"a", b"4")
        c.add(b"a", b"5")        # not stored
        c.replace(b"zz", b"6")   # not stored
        c.append(b"b", b"7")
    moved = changes(c, stores)
    expect(without(moved, "bytes"), {"cmd_set": 7, "total_items": 5, "curr_items": 3}, "counters")
    if moved.get("bytes", 0) < 4:
        raise AssertionError(f"bytes grew by {moved.get('bytes')} after storing 4 bytes of values")


def test_delete_counters_and_bytes_return_to_before(fx):
    c = fx.client()
    before = stats(c)
    c.set(b"k", b"x" * 1000)
    if stats(c)["bytes"] < before["bytes"] + 1000:
        raise AssertionError("bytes did not grow by the 1000-byte value")

    def deletes():
        c.delete(b"k")
        c.delete(b"k")
    moved = changes(c, deletes)
    expect(without(moved, "bytes"), {"delete_hits": 1, "delete_misses": 1, "curr_items": -1},
           "counters")
    expect(stats(c)["bytes"], before["bytes"], "bytes after the delete")


def test_incr_and_decr_counters(fx):
    c = fx.client()
    c.set(b"n", b"5")

    def arithmetic():
        c.incr(b"n", 1)
        c.incr(b"n", 1)
        c.incr(b"missing", 1)
        c.decr(b"n", 1)
        c.decr(b"missing", 1)
        c.decr(b"missing", 1)
    expect(changes(c, arithmetic),
           {"incr_hits": 2, "incr_misses": 1, "decr_hits": 1, "decr_misses": 2}, "counters")


def test_cas_counters_tell_hits_misses_and_bad_values(fx):
    c = fx.client()
    c.set(b"k", b"v")

    def cases():
        _, token = c.gets(b"k")
        c.cas(b"k", b"w", token)           # hit
        c.cas(b"k", b"x", token)           # bad value: the token is stale now
        c.cas(b"missing", b"y", token)     # miss
    moved = changes(c, cases)
    expect(without(moved, "bytes"),
           {"cmd_get": 1, "get_hits": 1, "cmd_set": 3, "total_items": 1, "cas_hits": 1,
            "cas_badval": 1, "cas_misses": 1}, "counters")


def test_touch_and_gat_count_as_touches_not_gets(fx):
    c, conn = fx.client(), fx.conn()
    c.set(b"k", b"v")

    def touches():
        c.touch(b"k", 100)
        c.touch(b"missing", 100)
        conn.request(b"gat 100 k missing\r\ngats 100 k\r\n")
    expect(changes(c, touches), {"touch_hits": 3, "touch_misses": 2}, "counters")


def test_connection_counters_follow_opens_and_closes(fx):
    c = fx.client()

    def counts():
        s = stats(c)
        return s["curr_connections"], s["total_connections"]
    # the harness's start-up probe has come and gone once only this client is counted
    if not harness.poll(lambda: counts()[0] == 1, 2.0):
        raise AssertionError(f"curr_connections with one client connected: {counts()[0]}")
    total = counts()[1]
    conns = [fx.conn() for _ in range(3)]
    for conn in conns:
        conn.request(b"version\r\n")
    expect(harness.poll(lambda: counts() == (4, total + 3), 2.0), True,
           f"(curr, total) after 3 opens, from (1, {total}): {counts()}")
    for conn in conns:
        conn.close()
    expect(harness.poll(lambda: counts() == (1, total + 3), 2.0), True,
           f"(curr, total) after 3 closes, from (1, {total}): {counts()}")


def test_evictions_are_counted_when_memory_is_full(fx):
    srv = fx.server(memory_mb=8)
    c = fx.client(srv)
    value = os.urandom(10_000)
    for i in harness.bounded(3000, 30.0):  # 30 MB into 8 MiB
        expect(c.set(b"key%d" % i, value), True, f"set {i}")
    s = stats(c)
    if not (s["evictions"] > 0 and 0 < s["curr_items"] < 3000 and s["bytes"] <= 8 * 1024 * 1024):
        raise AssertionError(f"evictions {s['evictions']}, curr_items {s['curr_items']}, "
                             f"bytes {s['bytes']}")
    expect(c.get(b"key2999"), value, "the last key written")
