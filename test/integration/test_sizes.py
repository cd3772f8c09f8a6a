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


def test_sets_gets_and_cas_of_large_values_answer_as_memcached(fx):
    """Values on each side of the largest class (half a page) and of a page, in one request and
    pipelined, read whole, with gets' CAS used for a cas."""
    half = 512 * KIB
    sizes = (half - 100, half - 48, half, half + 1, MIB - 60, MIB, MIB + 1, 2 * MIB + 3, 5 * MIB)
    replies = []
    for srv, conn in both(fx, threads=2, memory_mb=64, item_max="8m"):
        who = "memcached" if harness.is_memcached(srv.argv[0]) else "magpie"
        got = []
        keys = [b"v:%d" % size for size in sizes]
        for key, size in zip(keys, sizes):
            got.append(store(conn, key, value_of(key, size), flags=size % 65536))
        # every value in one get, and pipelined gets: one reply each, in order
        got.append(get(conn, b" ".join(keys)))
        got.append(conn.request(b"".join(b"get %s\r\n" % key for key in keys), timeout=60))
        reply = get(conn, keys[5], cmd=b"gets")
        cas = reply.split(b"\r\n", 1)[0].split()[-1]
        new = value_of(b"cas", MIB + 7)
        got.append(conn.request(b"cas %s 0 0 %d %s\r\n%s\r\n" % (keys[5], len(new), cas, new)))
        got.append(conn.request(b"cas %s 0 0 %d %s\r\n%s\r\n" % (keys[5], len(new), cas, new)))
        got.append(get(conn, keys[5]))
        replies.append((who, got))
    (_, theirs), (_, ours) = replies
    for i, (a, b) in enumerate(zip(theirs, ours)):
        expect(b, a, f"reply {i} (of {len(theirs)}), {len(b)} bytes against memcached's {len(a)}")
    expect(ours[-3:-1], [b"STORED\r\n", b"EXISTS\r\n"], "cas with the CAS gets gave, then again")


def test_append_and_prepend_on_large_values_answer_as_memcached(fx):
    """Appends that take a value past the largest class and past a page, prepends onto a chain, and
    the values read back, as memcached has them."""
    half = 512 * KIB
    replies = []
    for srv, conn in both(fx, threads=2, memory_mb=64, item_max="8m"):
        got = []
        base = value_of(b"a", half - 80)
        got.append(store(conn, b"a", base, flags=3))
        for n, cmd in enumerate((b"append", b"prepend", b"append", b"prepend", b"append")):
            piece = value_of(b"piece%d" % n, 300 * KIB if n % 2 == 0 else 17)
            got.append(store(conn, b"a", piece, flags=99, cmd=cmd))
            got.append(get(conn, b"a"))
        got.append(store(conn, b"missing", b"x" * 100, cmd=b"append"))
        got.append(store(conn, b"missing", value_of(b"m", MIB), cmd=b"prepend"))
        # append's own value over the largest class, onto a small value
        got.append(store(conn, b"small", b"s"))
        got.append(store(conn, b"small", value_of(b"big piece", 3 * MIB), cmd=b"append"))
        got.append(get(conn, b"small"))
        replies.append(got)
    for i, (a, b) in enumerate(zip(*replies)):
        expect(b, a, f"reply {i}, {len(b)} bytes against memcached's {len(a)}")


def test_meta_commands_on_large_values_answer_as_memcached(fx):
    """ms, mg with its value and flags, ma refused on a chain, md, and ms's append mode onto a
    chained value."""
    big = value_of(b"m", 3 * MIB + 11)
    piece = value_of(b"p", 600 * KIB)
    session = [
        b"ms m %d F5 T0\r\n%s\r\n" % (len(big), big),
        b"mg m s v f\r\n",
        b"mg m k s t v q\r\n",  # (no mn of its own: memcached drops one after a quiet command, by timing)
        b"ma m\r\n",
        b"ms m %d MA\r\n%s\r\n" % (len(piece), piece),
        b"mg m s v\r\n",
        b"ms m %d MP\r\n%s\r\n" % (3, b"pre"),
        b"mg m s v f\r\n",
        b"ms m %d I\r\n%s\r\n" % (len(big), big),
        b"mg m s v\r\n",
        b"md m q\r\n",
        b"mg m v\r\n",
    ]
    replies = []
    for srv, conn in both(fx, threads=2, memory_mb=64, item_max="8m"):
        replies.append([conn.request(req, timeout=30) for req in session])
    for req, a, b in zip(session, *replies):
        expect(b, a, f"reply to {req[:40]!r}, {len(b)} bytes against memcached's {len(a)}")


def test_binary_protocol_reads_and_writes_chained_values(fx):
    """A 3 MB value stored and read with the binary protocol, byte for byte."""
    import struct
    srv = fx.server(threads=2, memory_mb=64, item_max="8m")
    conn = fx.conn(srv)
    value = value_of(b"bin", 3 * MIB + 5)
    key = b"bin"
    extras = struct.pack(">II", 7, 0)
    body = extras + key + value
    setreq = struct.pack(">BBHBBHIIQ", 0x80, 0x01, len(key), len(extras), 0, 0, len(body), 1, 0) + body
    getreq = struct.pack(">BBHBBHIIQ", 0x80, 0x00, len(key), 0, 0, 0, len(key), 2, 0) + key
    conn.send(setreq + getreq)
    want = 24 + 24 + 4 + len(value)
    reply = conn.read_until(lambda b: len(b) >= want, timeout=30)
    expect(reply[1] == 0x01 and reply[6:8] == b"\0\0", True, "the set's reply")
    get_reply = reply[24:]
    expect(struct.unpack(">H", get_reply[6:8])[0], 0, "the get's status")
    expect(struct.unpack(">I", get_reply[24:28])[0], 7, "the flags")
    expect(get_reply[28:] == value, True, "the value, byte for byte")


def test_many_readers_of_a_chained_value_that_is_replaced_see_whole_values(fx):
    """Readers pin a chain while it is written to them; writers replace it meanwhile and the cache
    evicts chains to make room: every reply is one whole value of those stored."""
    srv = fx.server(threads=4, memory_mb=32, item_max="8m")
    values = [value_of(b"r%d" % i, 2 * MIB + i) for i in range(4)]
    replies = {hit(b"r", v) for v in values}
    expect(store(fx.conn(srv), b"r", values[0]), b"STORED\r\n", "the first value")
    errors = []

    def reader():
        conn = fx.conn(srv)
        for _ in range(8):
            reply = get(conn, b"r")
            if reply not in replies:
                errors.append(reply[:80])

    def writer():
        conn = fx.conn(srv)
        for i in range(20):
            expect(store(conn, b"r", values[i % 4]), b"STORED\r\n", "a replacing set")
            expect(store(conn, b"filler%d" % i, values[(i + 1) % 4]), b"STORED\r\n", "a filler")

    harness.run_threads([reader, reader, reader, writer], timeout=120)
    expect(errors, [], "replies that were not a whole stored value")
    stats = dict(line.split()[1:3] for line in fx.conn(srv).request(b"stats\r\n").decode().splitlines()
                 if line.startswith("STAT "))
    expect(int(stats["evictions"]) > 0, True, f"evictions under 32 MB: {stats['evictions']}")


def test_stats_count_a_chained_item_once(fx):
    """curr_items and stats items' numbers count items, not the chunks of their chains; the largest
    class is half a page, as memcached's slab_chunk_max."""
    if harness.is_memcached(fx.binary):
        return  # Magpie's classes and pages
    srv = fx.server(threads=2, memory_mb=64, item_max="16m")
    conn = fx.conn(srv)
    for i, size in enumerate((100, MIB, 3 * MIB, 8 * MIB)):
        expect(store(conn, b"s%d" % i, value_of(b"s", size)), b"STORED\r\n", f"set of {size}")

    def stats(arg=b""):
        lines = conn.request(b"stats %s\r\n" % arg if arg else b"stats\r\n").decode().splitlines()
        return dict(line.split()[1:3] for line in lines if line.startswith("STAT "))

    expect(stats()["curr_items"], "4", "curr_items")
    numbers = [int(v) for k, v in stats(b"items").items() if k.endswith(":number")]
    expect(sum(numbers), 4, "the items of stats items")
    slabs = stats(b"slabs")
    sizes = [int(v) for k, v in slabs.items() if k.endswith(":chunk_size")]
    expect(max(sizes), 512 * KIB, "the largest class's chunk size")
    expect(stats(b"settings")["item_size_max"], str(16 * MIB), "item_size_max")
    # 12 MiB of values, 24 half-page chunks: 12 pages, none wasted
    top = max(sizes)
    cls = next(k.split(":")[0] for k, v in slabs.items() if k.endswith(":chunk_size") and int(v) == top)
    expect((slabs[f"{cls}:total_pages"], slabs[f"{cls}:used_chunks"]), ("12", "24"), "the largest class's pages")


def test_item_max_up_to_1024m_is_accepted(fx):
    srv = fx.server(threads=2, memory_mb=2048, item_max="1024m")
    conn = fx.conn(srv)
    value = value_of(b"g", 20 * MIB)
    expect(store(conn, b"g", value), b"STORED\r\n", "a 20 MB value")
    expect(get(conn, b"g") == hit(b"g", value), True, "read back whole")
