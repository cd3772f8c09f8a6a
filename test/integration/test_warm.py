"""Warming from a peer: --warm-from HOST:PORT copies a running memcached's or Magpie's items while
the server serves.

The peers are a real memcached 1.6.18, another Magpie, and small fake servers written here (a
peer that sends garbage, one that never answers, one older than memcached 1.6 that knows only
`get`). Servers here are Magpie's: memcached has no --warm-from, so each test returns at once when
the binary under test is memcached.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

import harness
from harness import MEMCACHED, expect

SANITIZED = bool(os.environ.get("MAGPIE_SANITIZER"))
ENDED = ("done", "failed", "stopped")


def magpie_only(fx):
    return not harness.is_memcached(fx.binary)


def wait_ended(conn, timeout):
    """The server's stats once its warm-up has ended (done, failed or stopped)."""
    last = harness.poll(lambda: (lambda s: s if s["warm_state"] in ENDED else None)(conn.stats()), timeout, 0.1)
    if not last:
        raise AssertionError(f"the warm-up did not end within {timeout}s: {conn.stats()}")
    return last


def log_of(srv):
    srv.output.seek(0)
    return srv.output.read().decode(errors="replace")


def value_of(i):
    seed = b"<%d>" % i
    size = 10 + i % 190
    return (seed * (size // len(seed) + 1))[:size]


def flags_of(i):
    return i if i % 5 == 0 else 0


def ttl_of(i):
    return 3600 if i % 4 == 0 else 0


def fill(port, n, prefix=b"key"):
    """n items prefix:i, pipelined with noreply, then one round trip."""
    conn = harness.Conn(port)
    for start in range(0, n, 2000):
        conn.send(b"".join(b"set %s:%d %d %d %d noreply\r\n%s\r\n"
                           % (prefix, i, flags_of(i), ttl_of(i), len(value_of(i)), value_of(i))
                           for i in range(start, min(n, start + 2000))))
    expect(conn.request(b""), b"", "replies to sets with noreply")
    conn.close()


def check_copies(conn, ids, prefix=b"key"):
    """How many of prefix:i are there; every one there has its value and flags."""
    ids = list(ids)
    found = 0
    for start in range(0, len(ids), 100):
        chunk = ids[start:start + 100]
        reply = conn.request(b"get " + b" ".join(b"%s:%d" % (prefix, i) for i in chunk) + b"\r\n")
        for m in re.finditer(rb"VALUE %s:(\d+) (\d+) (\d+)\r\n" % prefix, reply):
            i, flags, n = int(m.group(1)), int(m.group(2)), int(m.group(3))
            expect(reply[m.end():m.end() + n], value_of(i), f"value of key {i}")
            expect(flags, flags_of(i), f"flags of key {i}")
            found += 1
    return found


def check_ttls(conn, ids, prefix=b"key"):
    """Each item there has about the TTL it was stored with (mg's t)."""
    reply = conn.request(b"".join(b"mg %s:%d t O%d\r\n" % (prefix, i, i) for i in ids))
    for m in re.finditer(rb"HD t(-?\d+) O(\d+)\r\n", reply):
        i, t = int(m.group(2)), int(m.group(1))
        if ttl_of(i) == 0:
            expect(t, -1, f"TTL of key {i}")
        elif not ttl_of(i) - 120 <= t <= ttl_of(i):
            raise AssertionError(f"TTL of key {i}: {t}, stored with {ttl_of(i)}")


def warm_server(fx, peer_port, extra=(), **opts):
    return fx.server(extra=["--warm-from", f"{harness.HOST}:{peer_port}", *extra], **opts)


# ---- from memcached and from Magpie -------------------------------------------------------------


def test_200k_items_from_memcached_come_over_with_values_flags_and_ttls(fx):
    if not magpie_only(fx):
        return
    n = 50_000 if SANITIZED else 200_000
    peer = fx.server(MEMCACHED, threads=2, memory_mb=256)
    fill(peer.port, n)
    started = time.monotonic()
    srv = warm_server(fx, peer.port, memory_mb=256, threads=2)
    c = fx.conn(srv)
    s = wait_ended(c, 120)
    waited = time.monotonic() - started
    expect(s["warm_state"], "done", "warm_state")
    # memcached's crawler may pass over an item its LRU maintainer is moving: hence 99%, not all
    listed, copied = int(s["warm_keys_listed"]), int(s["warm_items_copied"])
    if copied < n * 0.99:
        raise AssertionError(f"{copied} of {n} copied: {s}")
    expect(copied + int(s["warm_items_skipped"]), listed, f"copied and skipped of the keys listed: {s}")
    expect(check_copies(c, range(n)), copied, "items there with their values and flags")
    check_ttls(c, range(0, n, 97))
    print(f"    warm-up: {copied} of {n} items ({listed} listed) from memcached in {float(s['warm_seconds']):.2f} s "
          f"({waited:.2f} s from the start of the server){' (sanitizer build)' if SANITIZED else ''}")
    log = log_of(srv)
    if not re.search(r"warm-up from \S+: done in [\d.]+ s \(the listing ended\): %d items copied" % copied, log):
        raise AssertionError(f"no 'done' line in the log:\n{log[-2000:]}")
    # The copy asked with u: the peer's items were not marked as read by it.
    expect(re.fullmatch(rb"HD h0\r\n", fx.conn(peer).request(b"mg key:7 h\r\n")) is not None, True,
           "key:7 still unread at the peer")


def test_a_magpie_peer_gives_binary_keys_stale_items_and_its_recache_token_back(fx):
    if not magpie_only(fx):
        return
    peer = fx.server(threads=2)
    p = fx.conn(peer)
    expect(p.request(b"set plain 7 0 5\r\nhello\r\nms YSBi 3 b F9 T500\r\nx\x00y\r\n"
                     b"set stale 0 0 3\r\nold\r\nmd stale I q\r\n"),
           b"STORED\r\nHD\r\nSTORED\r\n", "the peer's items")
    srv = warm_server(fx, peer.port)
    c = fx.conn(srv)
    s = wait_ended(c, 30)
    expect(s["warm_state"], "done", "warm_state")
    expect(c.request(b"get plain\r\n"), b"VALUE plain 7 5\r\nhello\r\nEND\r\n", "plain")
    m = re.fullmatch(rb"VA 3 f9 t(\d+) kYSBi b\r\nx\x00y\r\n", c.request(b"mg YSBi b v f t k\r\n"))
    if not m or not 400 <= int(m.group(1)) <= 500:
        raise AssertionError(f"the key 'a b' (base64 YSBi): {c.request(b'mg YSBi b v f t k')!r}")
    # A stale item comes over stale, and its first reader here is handed the recache token ...
    expect(c.request(b"mg stale v\r\n"), b"VA 3 X W\r\nold\r\n", "the stale item here")
    # ... and the copy's own read handed the peer's back: its next client wins it there too.
    expect(p.request(b"mg stale v\r\n"), b"VA 3 X W\r\nold\r\n", "the stale item at the peer")
    expect((s["warm_keys_listed"], s["warm_items_copied"]), ("3", "3"), f"listed and copied: {s}")


def test_a_key_stored_here_first_is_not_overwritten(fx):
    if not magpie_only(fx):
        return
    n = 1000
    peer = fx.server(MEMCACHED, threads=2)
    fill(peer.port, n)
    srv = warm_server(fx, peer.port, extra=["-o", "warm_rate=500"])
    c = fx.conn(srv)
    mine = range(0, n, 5)
    expect(c.request(b"".join(b"set key:%d 1 0 4\r\nmine\r\n" % i for i in mine)), b"STORED\r\n" * len(mine),
           "live sets while the copy runs")
    s = wait_ended(c, 30)
    expect(s["warm_state"], "done", "warm_state")
    reply = c.request(b"get " + b" ".join(b"key:%d" % i for i in mine) + b"\r\n")
    expect(reply.count(b" 1 4\r\nmine\r\n"), len(mine), "live values left as they were")
    copied, present = int(s["warm_items_copied"]), int(s["warm_items_present"])
    listed = int(s["warm_keys_listed"])
    # memcached's crawler passes over an item locked or in use at that moment (seen: 999 of 1000)
    if listed < n - n // 100:
        raise AssertionError(f"the peer listed {listed} of its {n} keys: {s}")
    expect(copied + present, listed, f"copied and left alone: {s}")
    if present < len(mine) * 3 // 4:
        raise AssertionError(f"only {present} of the {len(mine)} live keys were found stored first: {s}")


def test_an_empty_memcached_is_a_warm_up_done_with_nothing(fx):
    if not magpie_only(fx):
        return
    peer = fx.server(MEMCACHED, threads=2)  # answers the listing "NOTSTARTED no items to crawl"
    c = fx.conn(warm_server(fx, peer.port))
    s = wait_ended(c, 30)
    expect((s["warm_state"], s["warm_keys_listed"], s["warm_items_copied"]), ("done", "0", "0"), "the warm-up")


def test_a_busy_crawler_is_asked_again(fx):
    if not magpie_only(fx):
        return
    asked = []

    def answer(line):
        if line == b"lru_crawler metadump all":
            asked.append(line)
            return b"BUSY currently processing crawler request\r\n" if len(asked) < 3 else LISTING + b"END\r\n"
        return meta_answer(lambda k, o: b"VA 1 f0 t-1 h0 l0 c1 O%s\r\nv\r\n" % o)(line)
    c = fx.conn(warm_server(fx, fake_peer(fx, answer).port))
    s = wait_ended(c, 30)
    expect((s["warm_state"], s["warm_items_copied"], len(asked)), ("done", "10", 3), "the warm-up after two BUSY")


def test_a_restart_with_a_snapshot_asks_the_peer_only_for_what_is_new(fx):
    if not magpie_only(fx):
        return
    peer = fx.server(MEMCACHED, threads=2)
    fill(peer.port, 1000)
    snapdir = tempfile.mkdtemp(prefix="magpie-warm-")
    fx.defer(lambda: shutil.rmtree(snapdir, ignore_errors=True))
    path = os.path.join(snapdir, "cache.snap")
    first = harness.Server(fx.binary, extra=["-e", path])
    try:
        c = harness.Conn(first.port)
        for i in range(600):
            c.send(b"set key:%d 0 0 5 noreply\r\nsaved\r\n" % i)
        expect(c.request(b""), b"", "sets")
        c.close()
        first.proc.send_signal(signal.SIGTERM)
        expect(first.proc.wait(harness.STOP_TIMEOUT * 2), 0, "exit status")
    finally:
        first.stop()
    gets_before = int(fx.conn(peer).stats()["cmd_get"])
    srv = warm_server(fx, peer.port, extra=["-e", path])
    c = fx.conn(srv)
    s = wait_ended(c, 30)
    expect((s["warm_state"], s["warm_items_present"], s["warm_items_copied"], s["snapshot_loaded_items"]),
           ("done", "600", "400", "600"), f"the warm-up: {s}")
    expect(int(fx.conn(peer).stats()["cmd_get"]) - gets_before, 400, "gets the peer answered")
    expect(c.request(b"get key:5 key:700\r\n"), b"VALUE key:5 0 5\r\nsaved\r\nVALUE key:700 700 %d\r\n%s\r\nEND\r\n"
           % (len(value_of(700)), value_of(700)), "a saved key and a copied one")


# ---- peers that fail ----------------------------------------------------------------------------


def test_a_peer_that_refuses_the_listing_ends_the_warm_up(fx):
    if not magpie_only(fx):
        return
    peer = fx.server(extra=["-o", "no_lru_crawler"])
    failed_with(fx, peer, r"the peer refused the listing \(lru_crawler metadump all\): \"CLIENT_ERROR lru crawler "
                          r"disabled\"")


def test_an_unreachable_peer_ends_the_warm_up_and_the_server_serves(fx):
    if not magpie_only(fx):
        return
    srv = warm_server(fx, harness.free_port())
    c = fx.conn(srv)
    s = wait_ended(c, 30)
    expect(s["warm_state"], "failed", "warm_state")
    expect(c.request(b"set k 0 0 1\r\nv\r\nget k\r\n"), b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n", "serving")
    if not re.search(r"warm-up from \S+: failed after [\d.]+ s: cannot connect \(values\): connection refused",
                     log_of(srv)):
        raise AssertionError(f"no 'failed' line in the log:\n{log_of(srv)[-1500:]}")


def test_a_peer_killed_mid_copy_ends_the_warm_up_and_what_was_copied_stays(fx):
    if not magpie_only(fx):
        return
    n = 20000
    peer = harness.Server(MEMCACHED, threads=2)  # not fx.server(): it is meant to die
    fx.defer(peer.stop)
    fill(peer.port, n)
    srv = warm_server(fx, peer.port, extra=["-o", "warm_rate=4000"])
    c = fx.conn(srv)
    harness.poll(lambda: int(c.stats()["warm_items_copied"]) >= 1000, 30)
    peer.proc.send_signal(signal.SIGKILL)
    peer.proc.wait(harness.STOP_TIMEOUT)
    s = wait_ended(c, 30)
    expect(s["warm_state"], "failed", "warm_state")
    copied = int(s["warm_items_copied"])
    if not 1000 <= copied < n:
        raise AssertionError(f"copied {copied} of {n}")
    expect(check_copies(c, range(n)), copied, "items there, whole")
    expect(c.request(b"set k 0 0 1\r\nv\r\nget k\r\n"), b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n", "serving")
    # whichever the server sees first: the close, or a reset of a request it was writing
    if not re.search(r"warm-up from \S+: failed after [\d.]+ s: (the peer (closed|broke) the connection|cannot write "
                     r"to the peer)", log_of(srv)):
        raise AssertionError(f"no 'failed' line in the log:\n{log_of(srv)[-1500:]}")


class FakePeer:
    """A server on a free port that answers each request line with answer(line) (bytes, or None
    to close the connection, or "silent" to read on and answer nothing)."""

    def __init__(self, answer):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind((harness.HOST, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.threads = []
        self.requests = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, conn):
        conn.settimeout(0.2)
        buf = b""
        with conn:
            for _ in harness.bounded(10 ** 6, 60):
                if self.stop.is_set():
                    return
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    self.requests.append(line)
                    out = self.answer(line)
                    if out is None:
                        return
                    if out != "silent":
                        try:
                            conn.sendall(out)
                        except OSError:  # the server closed first (it gave up on this peer), as in recv
                            return

    def close(self):
        self.stop.set()
        self.sock.close()
        for t in self.threads:
            t.join(2)


def fake_peer(fx, answer):
    peer = FakePeer(answer)
    fx.defer(peer.close)
    return peer


LISTING = b"".join(b"key=k%d exp=-1 la=1700000000 cas=%d fetch=no cls=1 size=60\n" % (i, i + 1) for i in range(10))


def meta_answer(value_line):
    """A fake memcached 1.6: version, the listing above, and value_line(key, opaque) for mg."""
    def answer(line):
        if line == b"version":
            return b"VERSION 1.6.18\r\n"
        if line == b"lru_crawler metadump all":
            return LISTING + b"END\r\n"
        if line.startswith(b"mg "):
            parts = line.split()
            return value_line(parts[1], parts[-1][1:])
        return b"ERROR\r\n"
    return answer


def failed_with(fx, peer, reason, extra=()):
    srv = warm_server(fx, peer.port, extra=extra)
    c = fx.conn(srv)
    s = wait_ended(c, 30)
    expect(s["warm_state"], "failed", f"warm_state ({reason})")
    expect(c.request(b"set k 0 0 1\r\nv\r\nget k\r\n"), b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n", "serving")
    if not re.search(r"warm-up from \S+: failed after [\d.]+ s: " + reason, log_of(srv)):
        raise AssertionError(f"no 'failed ... {reason}' line in the log:\n{log_of(srv)[-1500:]}")
    return s


def test_a_peer_that_sends_garbage_ends_the_warm_up(fx):
    if not magpie_only(fx):
        return
    # garbage in the listing, after keys that are copied
    def listing_garbage(line):
        if line == b"lru_crawler metadump all":
            return LISTING + b"\x00\xffgarbage\n"
        return meta_answer(lambda k, o: b"VA 1 f0 t-1 h0 l0 c1 O%s\r\nv\r\n" % o)(line)
    failed_with(fx, fake_peer(fx, listing_garbage), r"the peer's listing holds garbage: \"\\x00\\xffgarbage\"")
    # a value longer than it said
    s = failed_with(fx, fake_peer(fx, meta_answer(lambda k, o: b"VA 1 O%s\r\nvalue\r\n" % o)),
                    r"a value not followed by \\r\\n")
    expect(s["warm_items_copied"], "0", "items copied from a peer whose values are garbage")
    # answers out of order
    failed_with(fx, fake_peer(fx, meta_answer(lambda k, o: b"EN O%d\r\n" % (int(o) + 1))),
                r"an answer out of order or without its request's number: \"EN O1\"")
    # a reply that is no reply
    failed_with(fx, fake_peer(fx, meta_answer(lambda k, o: b"HTTP/1.1 400 Bad Request\r\n")),
                r"the peer sent garbage: \"HTTP/1.1 400 Bad Request\"")
    # no version
    failed_with(fx, fake_peer(fx, lambda line: b"+OK\r\n" if line == b"version" else "silent"),
                r"the peer's answer to version is not a version: \"\+OK\"")


def test_a_peer_that_cannot_be_connected_to_ends_the_warm_up_after_warm_timeout(fx):
    if not magpie_only(fx):
        return
    # A listener whose accept queue is full and that never accepts: the kernel drops further SYNs,
    # so a connect neither succeeds nor fails.
    lsock = socket.socket()
    lsock.bind((harness.HOST, 0))
    lsock.listen(0)
    fx.defer(lsock.close)
    fillers = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(lsock.getsockname())
        fillers.append(s)
        fx.defer(s.close)
    time.sleep(0.2)
    srv = warm_server(fx, lsock.getsockname()[1], extra=["-o", "warm_timeout=1"])
    c = fx.conn(srv)
    s = wait_ended(c, 30)
    expect(s["warm_state"], "failed", "warm_state")
    if not re.search(r"warm-up from \S+: failed after [\d.]+ s: cannot connect \(values\) within 1 s", log_of(srv)):
        raise AssertionError(f"no 'cannot connect within' line in the log:\n{log_of(srv)[-1500:]}")


def test_a_peer_that_stops_answering_ends_the_warm_up_after_warm_timeout(fx):
    if not magpie_only(fx):
        return
    peer = fake_peer(fx, meta_answer(lambda k, o: "silent"))
    failed_with(fx, peer, r"no answer from the peer for 1 s \(values\)", extra=["-o", "warm_timeout=1"])


def test_a_peer_older_than_memcached_1_6_is_copied_with_get(fx):
    if not magpie_only(fx):
        return
    now = int(time.time())
    listing = (b"key=old%%3A1 exp=%d la=%d cas=1 fetch=yes cls=1 size=60\n" % (now + 1000, now - 600) +
               b"key=old%3A2 exp=-1 la=0 cas=2 fetch=no cls=1 size=60\n"
               b"key=gone exp=-1 la=0 cas=3 fetch=no cls=1 size=60\n"
               b"key=a%20b exp=-1 la=0 cas=4 fetch=no cls=1 size=60\n"
               b"END\r\n")
    values = {b"old:1": b"VALUE old:1 5 3\r\none\r\nEND\r\n", b"old:2": b"VALUE old:2 0 3\r\ntwo\r\nEND\r\n",
              b"gone": b"END\r\n"}

    def answer(line):
        if line == b"version":
            return b"VERSION 1.5.22\r\n"
        if line == b"lru_crawler metadump all":
            return listing
        if line.startswith(b"get "):
            return values[line[4:]]
        return b"ERROR\r\n"
    srv = warm_server(fx, fake_peer(fx, answer).port)
    c = fx.conn(srv)
    s = wait_ended(c, 30)
    expect((s["warm_state"], s["warm_keys_listed"], s["warm_items_copied"], s["warm_items_missing"],
            s["warm_items_bad_key"]), ("done", "4", "2", "1", "1"), f"the warm-up: {s}")
    m = re.fullmatch(rb"VA 3 f5 t(\d+) l(\d+) h1\r\none\r\n", c.request(b"mg old:1 v f t l h\r\n"))
    if not m or not 900 <= int(m.group(1)) <= 1000 or not 540 <= int(m.group(2)) <= 720:
        raise AssertionError(f"old:1: {c.request(b'mg old:1 v f t l h')!r}")
    expect(c.request(b"mg old:2 v f t h\r\n"), b"VA 3 f0 t-1 h0\r\ntwo\r\n", "old:2")
    if "copying with get" not in log_of(srv):
        raise AssertionError(f"the log does not say it copies with get:\n{log_of(srv)[-1500:]}")


# ---- limits, shutdown, settings -----------------------------------------------------------------


def test_items_over_this_servers_item_size_are_skipped_and_counted(fx):
    if not magpie_only(fx):
        return
    peer = fx.server(MEMCACHED, threads=2, item_max="4m")
    p = fx.conn(peer)
    big = b"b" * (2 * 1024 * 1024)
    expect(p.request(b"set big 0 0 %d\r\n%s\r\nset small 0 0 1\r\ns\r\n" % (len(big), big)), b"STORED\r\n" * 2,
           "the peer's items")
    srv = warm_server(fx, peer.port)  # -I 1m
    c = fx.conn(srv)
    s = wait_ended(c, 30)
    expect((s["warm_state"], s["warm_items_copied"], s["warm_items_too_large"]), ("done", "1", "1"), f"the warm-up {s}")
    expect(c.request(b"get big small\r\n"), b"VALUE small 0 1\r\ns\r\nEND\r\n", "what came over")


def test_large_values_come_over_whole_into_chains(fx):
    if not magpie_only(fx):
        return
    peer = fx.server(MEMCACHED, threads=2, memory_mb=64, item_max="16m")
    p = fx.conn(peer)
    values = {b"L%d" % size: bytes((i * 7 + size) % 251 for i in range(4096)) * (size // 4096) + b"e" * (size % 4096)
              for size in (600 * 1000, 1024 * 1024, 3 * 1000 * 1000, 8 * 1000 * 1000)}
    for key, value in values.items():
        expect(p.request(b"set %s 5 0 %d\r\n%s\r\n" % (key, len(value), value), timeout=30), b"STORED\r\n",
               "the peer's items")
    srv = warm_server(fx, peer.port, memory_mb=64, item_max="16m")
    c = fx.conn(srv)
    s = wait_ended(c, 60)
    expect((s["warm_state"], s["warm_items_copied"]), ("done", str(len(values))), f"the warm-up {s}")
    for key, value in values.items():
        expect(c.request(b"get %s\r\n" % key, timeout=30) == b"VALUE %s 5 %d\r\n%s\r\nEND\r\n" % (key, len(value), value),
               True, f"{key!r} byte for byte")


def test_a_full_cache_ends_the_copy_and_nothing_is_evicted(fx):
    if not magpie_only(fx):
        return
    n = 60000  # about 12 MB at the peer, against 4 MB here
    peer = fx.server(MEMCACHED, threads=2, memory_mb=64)
    fill(peer.port, n)
    srv = warm_server(fx, peer.port, memory_mb=4)
    c = fx.conn(srv)
    s = wait_ended(c, 60)
    expect(s["warm_state"], "done", "warm_state")
    copied, no_room = int(s["warm_items_copied"]), int(s["warm_items_no_room"])
    if not 0 < copied < n or no_room == 0:
        raise AssertionError(f"a full cache: {s}")
    expect(c.stats()["evictions"], "0", "evictions by the copy")
    expect(check_copies(c, range(n)), copied, "items there")
    if "memory (-m) is full" not in log_of(srv):
        raise AssertionError(f"no 'memory is full' line in the log:\n{log_of(srv)[-1500:]}")


def test_sigterm_during_the_copy_stops_it_and_the_server_exits_0(fx):
    if not magpie_only(fx):
        return
    peer = fx.server(MEMCACHED, threads=2)
    fill(peer.port, 5000)
    srv = harness.Server(fx.binary, extra=["--warm-from", f"{harness.HOST}:{peer.port}", "-o", "warm_rate=100"])
    try:
        c = harness.Conn(srv.port)
        expect(c.stats()["warm_state"] in ("connecting", "copying"), True, "the copy runs")
        c.close()
        srv.proc.send_signal(signal.SIGTERM)
        expect(srv.proc.wait(harness.STOP_TIMEOUT), 0, "exit status")
        if not re.search(r"warm-up from \S+: stopped after [\d.]+ s: the server is stopping", log_of(srv)):
            raise AssertionError(f"no 'stopped' line in the log:\n{log_of(srv)[-1500:]}")
    finally:
        srv.stop()


def test_settings_stats_and_metrics_show_the_warm_up_and_the_snapshot(fx):
    if not magpie_only(fx):
        return
    peer = fx.server(MEMCACHED, threads=2)
    fill(peer.port, 100)
    snapdir = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"magpie-warm-{os.getpid()}-{harness.free_port()}")
    os.makedirs(snapdir)
    fx.defer(lambda: subprocess.run(["rm", "-rf", snapdir], check=False))
    srv = warm_server(fx, peer.port, extra=["-o", "warm_rate=1000,warm_timeout=7", "--metrics", f"{harness.HOST}:0",
                                            "-e", os.path.join(snapdir, "cache.snap")])
    c = fx.conn(srv)
    s = wait_ended(c, 30)
    settings = c.stats(b"settings")
    expect((settings["warm_from"], settings["warm_rate"], settings["warm_timeout"]),
           (f"{harness.HOST}:{peer.port}", "1000", "7"), "stats settings")
    expect((s["warm_state"], s["warm_items_copied"], s["snapshot_loaded_items"], s["snapshot_saves"]),
           ("done", "100", "0", "0"), "stats")
    url = re.search(r"metrics (on )?(http://\S+/metrics)", log_of(srv)).group(2)
    page = urllib.request.urlopen(url, timeout=harness.IO_TIMEOUT).read().decode()
    for line in ('magpie_warm_state{state="done"} 1', 'magpie_warm_state{state="copying"} 0',
                 "magpie_warm_items_copied_total 100", 'magpie_warm_items_skipped_total{reason="present"} 0',
                 "magpie_snapshot_loaded_items 0", "magpie_snapshot_saves_total 0"):
        if line not in page.splitlines():
            raise AssertionError(f"no line {line!r} on the metrics page")
    plain = fx.server()
    expect([k for k in fx.conn(plain).stats() if k.startswith(("warm_", "snapshot_"))], [],
           "warm_ and snapshot_ stats without --warm-from and -e")


def test_a_warm_from_that_is_not_host_and_port_is_a_usage_error(fx):
    if not magpie_only(fx):
        return
    for bad in ("nohostport", "host:0", "::1:11211", "host:99999"):
        proc = subprocess.run([fx.binary, "-p", str(harness.free_port()), "--warm-from", bad],
                              capture_output=True, timeout=harness.START_TIMEOUT)
        expect(proc.returncode, 64, f"exit status for --warm-from {bad}")
        expect(b"--warm-from: not HOST:PORT" in proc.stderr, True, f"message for {bad}: {proc.stderr!r}")
