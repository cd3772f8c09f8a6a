"""Hostile and careless clients: long lines, garbage, absurd numbers, huge multigets, dropped
and half-sent requests, connection storms, slow senders, clients that never read, churning value
sizes, the connection limit and the idle timeout.

After every scenario the server must still be alive, a fresh client must store and read back a
value, and the server's resident memory must stay within 1.25 x -m + 16 MiB.
"""

import os
import random
import socket
import struct
import time

import harness
from harness import expect

MEMORY_MB = 64
RSS_LIMIT = int(1.25 * MEMORY_MB * 2**20) + 16 * 2**20
# `make asan` and `make tsan` set MAGPIE_SANITIZER: shadow memory and the sanitizers' allocators
# inflate RSS several times over, so the RSS bound is checked in the plain build (`make test`)
# and the sanitizer runs check everything else.
RSS_CHECKED = not os.environ.get("MAGPIE_SANITIZER")
LARGE = 500 * 1024
CRLF = b"\r\n"
CONTROL_BYTES = b"\x00\x01\x07\x1b\x7f\r\n\t"
BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
BAD_TOKEN = b"CLIENT_ERROR bad token in command line format\r\n"
BAD_DELTA = b"CLIENT_ERROR invalid numeric delta argument\r\n"
BAD_EXPTIME = b"CLIENT_ERROR invalid exptime argument\r\n"
BAD_META_FLAG = b"CLIENT_ERROR invalid or duplicate flag\r\n"


def check_rss(srv, what):
    used = harness.rss(srv)
    if RSS_CHECKED and used > RSS_LIMIT:
        raise AssertionError(f"{what}: RSS {used >> 20} MiB is over the "
                             f"{RSS_LIMIT >> 20} MiB bound")


def check_healthy(fx, srv, what):
    """The server lives, serves a fresh client, and stays within the memory bound."""
    expect(srv.alive(), True, f"server alive after {what}")
    client = fx.client(srv)
    value = b"healthy after " + what.encode() + b" " + bytes(range(32, 127)) * 10
    expect(client.set("health:check", value), True, f"set after {what}")
    expect(client.get("health:check"), value, f"get after {what}")
    client.close()
    check_rss(srv, what)


def stat(conn, name):
    values = conn.stats()
    if name not in values:
        raise AssertionError(f"stats has no {name}")
    return int(values[name])


def wait_for_stat(conn, name, value, timeout=5.0):
    harness.poll(lambda: stat(conn, name) == value, timeout)
    current = stat(conn, name)
    if current != value:
        raise AssertionError(f"{name} after waiting up to {timeout}s: expected {value}, got "
                             f"{current}; stats conns: {conn.request(b'stats conns' + CRLF)!r}")


def used_chunks(conn):
    """The sum of every class's used_chunks in `stats slabs`."""
    total = 0
    for line in conn.request(b"stats slabs\r\n").split(b"\r\n"):
        parts = line.split()
        if len(parts) == 3 and parts[1].endswith(b":used_chunks"):
            total += int(parts[2])
    return total


def settled_stats(conn, timeout=3.0):
    """(curr_connections, total_connections) once they hold still: a connection the server
    accepted a moment ago (the harness's readiness probe) may not be counted yet."""
    def read():
        return stat(conn, "curr_connections"), stat(conn, "total_connections")
    readings = [read()]

    def still():
        time.sleep(0.05)
        readings.append(read())
        return readings[-1] == readings[-2]
    harness.poll(still, timeout)
    return readings[-1]


def hostile_server(fx, **opts):
    return fx.server(memory_mb=MEMORY_MB, **opts)


def test_line_without_newline_beyond_2048_bytes_closes_that_connection(fx):
    srv = hostile_server(fx)
    bystander = fx.conn(srv)
    expect(bystander.request(b"set calm 0 0 4\r\ncalm\r\n"), b"STORED\r\n", "bystander set")
    for junk in (b"set " + b"k" * 3000, b"x" * 3000, b"delete " + b"k" * 2100):
        c = fx.conn(srv)
        c.send(junk)
        expect(c.read_for(3.0), (b"", True), f"reply to {junk[:12]!r}... without newline")
    expect(bystander.request(b"get calm\r\n"), b"VALUE calm 0 4\r\ncalm\r\nEND\r\n",
           "the other connection still works")
    check_healthy(fx, srv, "long lines")


def test_random_binary_garbage_does_not_hurt_the_server(fx):
    srv = hostile_server(fx)
    rng = random.Random(20240605)
    commands = [b"set g 0 0 5\r\nhello\r\n", b"get g\r\n", b"incr n 1\r\n", b"mg g v t c\r\n",
                b"ms g 3 T10\r\nabc\r\n", b"delete g\r\n", b"gets g h i\r\n", b"ma n D5\r\n"]
    for _ in harness.bounded(40, 10.0):
        c = fx.conn(srv)
        try:
            for _ in range(6):
                if rng.random() < 0.5:
                    data = rng.randbytes(rng.randrange(1, 4096))
                else:  # a real command with NUL and control bytes spliced in
                    data = bytearray(rng.choice(commands))
                    for _ in range(rng.randrange(1, 4)):
                        data.insert(rng.randrange(len(data)), rng.choice(CONTROL_BYTES))
                    data = bytes(data)
                c.send(data)
            c.read_for(0.02)
        except OSError:
            pass  # the server may close a connection that sent nonsense
        c.close()
    check_healthy(fx, srv, "random garbage")


def test_nul_and_control_bytes_inside_commands_get_memcacheds_replies(fx):
    srv = hostile_server(fx)
    c = fx.conn(srv)
    for request, reply in [
            (b"set k\x01y 0 0 1\r\nx\r\nget k\x01y\r\n",
             b"STORED\r\nVALUE k\x01y 0 1\r\nx\r\nEND\r\n"),
            (b"get\x00 k\r\n", b"ERROR\r\n"),
            (b"\x00\x00\x00\r\n", b"ERROR\r\n"),
            (b"\x7f\x1b[A\r\n", b"ERROR\r\n"),
            (b"\r\n", b"ERROR\r\n"),
            (b"set k\x00y 0 0 1\r\nx\r\n", b"ERROR\r\nERROR\r\n"),
            (b"set k\t0 0 1\r\nx\r\n", b"ERROR\r\nERROR\r\n"),
            (b"set k2 0 0 1\r\nxy\r\n", b"CLIENT_ERROR bad data chunk\r\nERROR\r\n"),
            (b"ms k\x01 1\r\nx\r\nmg k\x01 v\r\n", b"HD\r\nVA 1\r\nx\r\n")]:
        expect(c.request(request), reply, f"reply to {request!r}")
    check_healthy(fx, srv, "control bytes")


ABSURD_NUMBERS = [
    (b"set k 0 0 99999999999999999999\r\nx\r\n", BAD_FORMAT + b"ERROR\r\n"),
    (b"set k 0 0 -1\r\nx\r\n", BAD_FORMAT + b"ERROR\r\n"),
    (b"set k 0 0 2147483648\r\nx\r\n", BAD_FORMAT + b"ERROR\r\n"),
    (b"set k -1 0 1\r\nx\r\n", BAD_FORMAT + b"ERROR\r\n"),
    (b"set k 18446744073709551616 0 1\r\nx\r\n", BAD_FORMAT + b"ERROR\r\n"),
    (b"set k 4294967295 0 1\r\nx\r\nget k\r\n", b"STORED\r\nVALUE k 4294967295 1\r\nx\r\nEND\r\n"),
    (b"set k 0 99999999999999999999 1\r\nx\r\n", BAD_FORMAT + b"ERROR\r\n"),
    (b"set k 0 -1 1\r\nx\r\nget k\r\n", b"STORED\r\nEND\r\n"),
    (b"set n 0 0 20\r\n18446744073709551615\r\nincr n 1\r\n", b"STORED\r\n0\r\n"),
    (b"incr n 18446744073709551616\r\n", BAD_DELTA),
    (b"set n 0 0 1\r\n5\r\nincr n 18446744073709551615\r\ndecr n 18446744073709551615\r\n",
     b"STORED\r\n4\r\n0\r\n"),
    (b"decr n 99999999999999999999\r\nincr n -1\r\n", BAD_DELTA + BAD_DELTA),
    (b"set n 0 0 21\r\n184467440737095516150\r\nincr n 1\r\n",
     b"STORED\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n"),
    (b"cas k 0 0 1 18446744073709551616\r\nx\r\n", BAD_FORMAT + b"ERROR\r\n"),
    (b"cas k 0 0 1 -1\r\nx\r\n", BAD_FORMAT + b"ERROR\r\n"),
    (b"set k 0 0 1\r\nx\r\ncas k 0 0 1 18446744073709551615\r\ny\r\n", b"STORED\r\nEXISTS\r\n"),
    (b"touch k 99999999999999999999\r\n", BAD_EXPTIME),
    (b"gat 99999999999999999999 k\r\n", BAD_EXPTIME),
    (b"flush_all 99999999999999999999\r\n", BAD_EXPTIME),
    (b"verbosity 99999999999999999999\r\n", BAD_FORMAT),
    (b"mg k v N99999999999999999999\r\n", BAD_TOKEN),
    (b"mg k T99999999999999999999\r\n", BAD_TOKEN),
    (b"mg k v R99999999999999999999\r\n", BAD_TOKEN),
    (b"mg k E18446744073709551616 v\r\n", b"CLIENT_ERROR invalid flag\r\n"),
    (b"ma k D99999999999999999999\r\n", BAD_META_FLAG),
    (b"ma k N0 J99999999999999999999\r\n", BAD_META_FLAG),
    (b"ms k 99999999999999999999\r\nx\r\n", BAD_FORMAT + b"ERROR\r\n"),
    (b"ms k 1 C18446744073709551616\r\nx\r\n", BAD_TOKEN),
    (b"ms k 1 T99999999999999999999\r\nx\r\n", BAD_TOKEN),
    (b"md k C99999999999999999999\r\n", BAD_META_FLAG),
]


def test_absurd_numbers_are_answered_with_errors(fx):
    srv = hostile_server(fx)
    c = fx.conn(srv)
    for request, reply in ABSURD_NUMBERS:
        expect(c.request(request), reply, f"reply to {request!r}")
    check_healthy(fx, srv, "absurd numbers")


def test_value_length_beyond_the_item_limit_is_refused_without_allocating_it(fx):
    srv = hostile_server(fx)
    c = fx.conn(srv)
    c.send(b"set huge 0 0 2000000000\r\n")
    if not harness.is_memcached(fx.binary):  # memcached answers only after swallowing the value
        expect(c.read_line(), b"SERVER_ERROR object too large for cache\r\n", "reply")
    for _ in range(16):  # 16 MiB of the announced 2 GB, swallowed
        c.send(b"z" * (1 << 20))
    check_rss(srv, "a 2 GB value announced")
    c.close()
    check_healthy(fx, srv, "a 2 GB value announced")


def test_get_with_20000_keys_answers_every_key_then_end(fx):
    srv = hostile_server(fx)
    c = fx.conn(srv)
    keys = [b"many:%05d" % i for i in range(20000)]
    stored = keys[::3]  # every third key exists; the others miss
    for start in range(0, len(stored), 1000):
        c.send(b"".join(b"set %s 0 0 %d noreply\r\n%s\r\n" % (k, len(k) + 2, b"v-" + k)
                        for k in stored[start:start + 1000]))
    expect(c.request(b""), b"", "noreply sets answer nothing")
    reply = c.request(b"get " + b" ".join(keys) + b"\r\n", timeout=10.0)
    expected = b"".join(b"VALUE %s 0 %d\r\nv-%s\r\n" % (k, len(k) + 2, k)
                        for k in stored) + b"END\r\n"
    expect(reply.count(b"VALUE "), len(stored), "VALUE lines")
    expect(reply == expected, True, "the whole reply, in key order, ending in END")
    check_healthy(fx, srv, "a 20,000-key get")


@harness.alone
def test_get_of_20000_16k_values_read_late_is_held_back_and_complete(fx):
    srv = hostile_server(fx)
    c = fx.conn(srv)
    keys = [b"mid:%04d" % i for i in range(2000)]
    value = b"m" * 16000  # the largest size that is copied into the reply rather than pinned
    for start in range(0, len(keys), 100):
        c.send(b"".join(b"set %s 0 0 %d noreply\r\n%s\r\n" % (k, len(value), value)
                        for k in keys[start:start + 100]))
    expect(c.request(b""), b"", "noreply sets answer nothing")
    asked = keys * 10  # 20,000 keys, 320 MB of replies: five times -m
    reader = socket.create_connection((harness.HOST, srv.port), timeout=harness.IO_TIMEOUT)
    try:
        reader.sendall(b"get " + b" ".join(asked) + b"\r\n")
        peak = 0
        for _ in harness.bounded(20, 2.0):  # the reader sits on its replies for a second
            peak = max(peak, harness.rss(srv))
            time.sleep(0.05)
        expected = sum(len(b"VALUE %s 0 %d\r\n" % (k, len(value))) + len(value) + 2
                       for k in asked) + len(b"END\r\n")
        received, tail = 0, b""
        for _ in harness.bounded(1 << 20, 60.0):  # 320 MB: slow under TSan on a loaded machine
            chunk = reader.recv(1 << 20)
            if not chunk:
                break
            received += len(chunk)
            tail = (tail + chunk)[-5:]
            peak = max(peak, harness.rss(srv))
            if received >= expected:
                break
        expect((received, tail), (expected, b"END\r\n"), "bytes of the reply and its end")
    finally:
        reader.close()
    if RSS_CHECKED and peak > RSS_LIMIT:
        raise AssertionError(f"RSS peaked at {peak >> 20} MiB (bound {RSS_LIMIT >> 20} MiB)")
    check_healthy(fx, srv, "a 320 MB multiget read late")


def test_values_dropped_halfway_leak_neither_memory_nor_connections(fx):
    srv = hostile_server(fx)
    watcher = fx.conn(srv)
    baseline, total_before = settled_stats(watcher)
    half = b"h" * 50000
    for batch in harness.bounded(10, 20.0):
        conns = []
        try:
            for i in range(100):
                conns.append(harness.Conn(srv.port))
                conns[-1].send(b"set half:%d 0 0 100000\r\n%s" % (batch * 100 + i, half))
        finally:
            for c in conns:
                c.close()
    wait_for_stat(watcher, "total_connections", total_before + 1000)  # all accepted,
    wait_for_stat(watcher, "curr_connections", baseline)  # and all closed
    expect(watcher.request(b"get half:0 half:999\r\n"), b"END\r\n", "half-sent values stored")
    # the items being read into were freed with their connections
    harness.poll(lambda: used_chunks(watcher) == 0, 5.0)
    expect(used_chunks(watcher), 0, "chunks in use after the half-sent values (stats slabs)")
    check_healthy(fx, srv, "1,000 values dropped halfway")


@harness.alone
def test_2000_connections_opened_and_dropped_leave_nothing_behind(fx):
    # Room for all 2,000: a slow (sanitized) server may not have seen earlier batches close yet,
    # and refusing those over -c is the limit working, not what this test is about.
    srv = hostile_server(fx, max_conns=4096)
    watcher = fx.conn(srv)
    baseline, total_before = settled_stats(watcher)
    for _ in harness.bounded(8, 20.0):
        conns = []
        try:
            for i in range(250):
                conns.append(socket.create_connection((harness.HOST, srv.port),
                                                      timeout=harness.IO_TIMEOUT))
                if i % 2:
                    conns[-1].sendall(b"get partial:%d" % i)  # cut off before its newline
        finally:
            for s in conns:
                s.close()
    wait_for_stat(watcher, "total_connections", total_before + 2000)  # all accepted,
    wait_for_stat(watcher, "curr_connections", baseline)  # and all closed
    check_healthy(fx, srv, "2,000 connections dropped")


def test_slow_senders_trickling_a_set_byte_by_byte_are_served_in_full(fx):
    srv = hostile_server(fx)
    slow = [fx.conn(srv) for _ in range(5)]
    brisk = fx.conn(srv)
    requests = [b"set slow:%d 0 0 100\r\n%s\r\n" % (i, b"%d" % i * 100) for i in range(5)]
    longest = max(len(r) for r in requests)
    for pos in harness.bounded(longest, 15.0):
        for c, request in zip(slow, requests):
            if pos < len(request):
                c.send(request[pos:pos + 1])
        if pos % 10 == 0:  # others are served while the slow ones trickle
            expect(brisk.request(b"version\r\n").startswith(b"VERSION "), True, "brisk client")
        time.sleep(0.002)
    for i, c in enumerate(slow):
        expect(c.read_line(), b"STORED\r\n", f"slow sender {i}")
        expect(c.request(b"get slow:%d\r\n" % i),
               b"VALUE slow:%d 0 100\r\n%s\r\nEND\r\n" % (i, b"%d" % i * 100), f"slow value {i}")
    check_healthy(fx, srv, "slow senders")


@harness.alone
def test_clients_that_never_read_large_values_are_held_back(fx):
    srv = hostile_server(fx)
    c = fx.conn(srv)
    big = random.Random(7).randbytes(LARGE)
    expect(c.request(b"set big 0 0 %d\r\n%s\r\n" % (LARGE, big)), b"STORED\r\n", "set big")
    flooders = [socket.create_connection((harness.HOST, srv.port)) for _ in range(4)]
    try:
        peak, sent = flood_without_reading(srv, flooders)
        # the server is still serving others while the flooders sit on their replies
        served = fx.client(srv)
        expect(served.set("while:flooded", b"still here"), True, "set while flooded")
        expect(served.get("while:flooded"), b"still here", "get while flooded")
        expect(served.get("big"), big, "a large get while flooded")
        for _ in harness.bounded(20, 1.0):
            peak = max(peak, harness.rss(srv))
            time.sleep(0.05)
    finally:
        for s in flooders:
            s.close()
    if RSS_CHECKED and peak > RSS_LIMIT:
        raise AssertionError(f"RSS peaked at {peak >> 20} MiB (bound {RSS_LIMIT >> 20} MiB) "
                             f"with {sent // len(b'get big' + CRLF)} unread gets of {LARGE} bytes")
    check_healthy(fx, srv, "clients that never read")


def flood_without_reading(srv, flooders):
    """Pipeline `get big` on every flooder, never reading, until none can send more: the server
    has stopped reading them. Returns (peak RSS meanwhile, bytes sent)."""
    for s in flooders:
        s.setblocking(False)
    burst = b"get big\r\n" * 1000  # half a gigabyte of replies per burst
    sent = [0] * len(flooders)
    peak = 0
    for _ in harness.bounded(4000, 4.0):
        progress = False
        for i, s in enumerate(flooders):
            try:
                sent[i] += s.send(burst)
                progress = True
            except BlockingIOError:
                pass
        peak = max(peak, harness.rss(srv))
        if not progress:
            break  # every flooder is stuck
    return peak, sum(sent)


def test_readers_dropped_mid_reply_release_the_values_they_were_sent(fx):
    srv = hostile_server(fx)
    watcher = fx.conn(srv)
    baseline, _ = settled_stats(watcher)
    keys = [b"pinned:%d" % i for i in range(40)]
    for key in keys:  # 40 values of 900 KB: more than half of -m
        expect(watcher.request(b"set %s 0 0 900000\r\n%s\r\n" % (key, b"p" * 900000)),
               b"STORED\r\n", f"set {key!r}")
    for _ in harness.bounded(4, 20.0):
        readers = [socket.create_connection((harness.HOST, srv.port), timeout=harness.IO_TIMEOUT)
                   for _ in range(50)]
        for s in readers:
            s.sendall(b"get " + b" ".join(keys) + b"\r\n")
        for s in readers:
            s.recv(100000)  # the reply has started: the server holds the values for writing
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # a reset, mid-reply
    wait_for_stat(watcher, "curr_connections", baseline)
    expect(watcher.request(b"".join(b"delete %s\r\n" % k for k in keys)),
           b"DELETED\r\n" * len(keys), "delete the values the readers were sent")
    # a deleted value's chunk is freed when the last reference to it is dropped
    harness.poll(lambda: used_chunks(watcher) == 0, 5.0)
    expect(used_chunks(watcher), 0, "chunks in use once every item is deleted (stats slabs)")
    # Every page must be free to move to another class now: nothing holds the deleted values.
    rng = random.Random(5)
    for batch_no in harness.bounded(200, 20.0):
        sizes = [rng.randrange(60000, 100000) for _ in range(20)]
        if batch_no * 20 * 80000 > 1.5 * MEMORY_MB * 2**20:
            break
        sets = b"".join(b"set after:%d:%d 0 0 %d\r\n%s\r\n" % (batch_no, i, n, b"a" * n)
                        for i, n in enumerate(sizes))
        reply = watcher.request(sets, timeout=10.0)
        if not harness.is_memcached(fx.binary):  # memcached may fail a store while pages move
            expect(reply, b"STORED\r\n" * len(sizes), f"batch {batch_no} of 20 sets of 60-100 KB")
    check_healthy(fx, srv, "readers dropped mid-reply")


def test_bursts_of_large_values_churning_size_classes(fx):
    srv = hostile_server(fx)
    c = fx.conn(srv)
    rng = random.Random(99)
    # each phase writes about 1.5 x -m in one size range, forcing evictions and page moves
    for phase, (low, high) in enumerate([(600000, 1000000), (60000, 100000), (6000, 10000),
                                         (200000, 400000), (600, 1000), (60000, 100000)]):
        written, n, stored = 0, 0, []
        for _ in harness.bounded(200000, 20.0):
            if written > 1.5 * MEMORY_MB * 2**20:
                break
            batch = []
            for _ in range(max(1, (1 << 21) // high)):  # about 2 MB per batch
                size = rng.randrange(low, high)
                batch.append((b"churn:%d:%d" % (phase, n), bytes([65 + n % 26]) * size))
                n += 1
                written += size
            replies = c.request(b"".join(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(v), v)
                                         for k, v in batch), timeout=10.0).split(b"\r\n")[:-1]
            expect(len(replies), len(batch), f"phase {phase}: replies to {len(batch)} sets")
            for (key, value), reply in zip(batch, replies):
                if reply == b"STORED":
                    stored = (stored + [(key, value)])[-3:]
                # memcached cannot always find a page for a class that owns none yet
                elif not (harness.is_memcached(fx.binary) and
                          reply == b"SERVER_ERROR out of memory storing object"):
                    raise AssertionError(f"phase {phase}: set {key!r} answered {reply!r}")
        check_rss(srv, f"churn phase {phase}")
        expect(len(stored), 3, f"phase {phase}: values stored")
        for key, value in stored:  # the newest values are there
            expect(c.request(b"get " + key + b"\r\n"),
                   b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key, len(value), value), f"get {key!r}")
    check_healthy(fx, srv, "churning size classes")


def test_eleventh_connection_gets_too_many_open_connections_and_is_closed(fx):
    if harness.is_memcached(fx.binary):
        return  # memcached cannot start with -c 10: it sets its file limit from -c
    srv = hostile_server(fx, max_conns=10)
    conns = [harness.Conn(srv.port)]
    try:
        # the harness's readiness probe was a connection too: wait until it is gone
        settled_stats(conns[0])
        wait_for_stat(conns[0], "curr_connections", 1)
        conns += [harness.Conn(srv.port) for _ in range(9)]
        for c in conns:
            expect(c.request(b"version\r\n").startswith(b"VERSION "), True, "one of the first 10")
        eleventh = fx.conn(srv)
        expect(eleventh.read_for(3.0), (b"ERROR Too many open connections\r\n", True),
               "the 11th connection")
        for i, c in enumerate(conns):
            expect(c.request(b"set keep:%d 0 0 1\r\n%d\r\n" % (i, i % 10)), b"STORED\r\n",
                   f"connection {i} after the refusal")
        expect(stat(conns[0], "rejected_connections"), 1, "rejected_connections")
        conns.pop().close()
        conns.pop().close()
        wait_for_stat(conns[0], "curr_connections", 8)  # room again, for a fresh client
        check_healthy(fx, srv, "the connection limit")
    finally:
        for c in conns:
            c.close()


def test_idle_timeout_closes_an_idle_connection_but_not_an_active_one(fx):
    srv = hostile_server(fx, extra=["-o", "idle_timeout=2"])
    idle, active = fx.conn(srv), fx.conn(srv)
    expect(idle.request(b"version\r\n").startswith(b"VERSION "), True, "idle conn's one command")
    started, closed_after = time.monotonic(), None
    for _ in harness.bounded(40, 6.0):
        expect(active.request(b"version\r\n").startswith(b"VERSION "), True, "active connection")
        if closed_after is None:
            data, closed = idle.read_for(0.25)
            expect(data, b"", "the idle connection gets no reply")
            if closed:
                closed_after = time.monotonic() - started
        else:
            time.sleep(0.25)
        if closed_after is not None and time.monotonic() - started > closed_after + 1.0:
            break
    if closed_after is None or not 1.5 <= closed_after <= 5.0:
        raise AssertionError(f"idle connection closed after {closed_after} s, expected 2..5 s")
    expect(stat(active, "idle_kicks"), 1, "idle_kicks")
    check_healthy(fx, srv, "the idle timeout")
