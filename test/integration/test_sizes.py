"""Values of every size: pages stay 1 MiB whatever -I is, and values over the largest slab class
(half a page) are chains of chunks. Each test runs memcached 1.6.18 beside the server under test
with the same flags and requires the same replies."""

import harness
from harness import MEMCACHED, expect

KIB, MIB = 1024, 1024 * 1024
# The mix: three values each of these sizes, about 37 MB in all.
MIXED_SIZES = (100, 1000, 10 * 1000, 100 * 1000, 300 * 1000, 1000 * 1000, 3000 * 1000, 8000 * 1000)


def value_of(key, size):
    """A value whose bytes depend on the key and the offset, so a chunk out of place shows."""
    seed = (key * (size // len(key) + 1))[:size]
    return bytes((b + i // 4096) % 256 for i, b in enumerate(seed)) if size <= 4096 else \
        (seed[:4096] + b"".join(b"%08d" % (i // 8) for i in range(4096, size, 8)))[:size]


def store(conn, key, value, flags=0, cmd=b"set"):
    return conn.request(b"%s %s %d 0 %d\r\n%s\r\n" % (cmd, key, flags, len(value), value), timeout=30)


def get(conn, key, cmd=b"get"):
    return conn.request(b"%s %s\r\n" % (cmd, key), timeout=30)


def hit(key, value, flags=0):
    return b"VALUE %s %d %d\r\n%s\r\nEND\r\n" % (key, flags, len(value), value)


def both(fx, **opts):
    """memcached and the server under test, started with the same flags, one connection each."""
    servers = [fx.server(MEMCACHED, **opts), fx.server(**opts)]
    return [(srv, fx.conn(srv)) for srv in servers]


def test_mixed_sizes_under_a_large_item_max_are_all_kept(fx):
    for srv, conn in both(fx, threads=2, memory_mb=64, item_max="16m"):
        who = "memcached" if harness.is_memcached(srv.argv[0]) else "magpie"
        values = {}
        for size in MIXED_SIZES:
            for n in range(3):
                key = b"mixed:%d:%d" % (size, n)
                values[key] = value_of(key, size)
                expect(store(conn, key, values[key]), b"STORED\r\n", f"{who}: set of {size} bytes")
        kept = [key for key, value in values.items() if get(conn, key) == hit(key, value)]
        expect(len(kept), len(values), f"{who}: values read back whole")
