"""Connections at scale: many idle connections cost little memory, the server raises its own
descriptor limit for -c, and connect-close floods leave nothing behind (issue 21)."""

import os
import resource
import socket
import subprocess
import threading
import time

import harness
from harness import HOST, IO_TIMEOUT, bounded, expect, poll

IDLE_CONNS = 20000  # fewer when the hard limit on descriptors does not allow that many (see below)
IDLE_BYTES_MAX = 1024  # the resident memory one idle connection may cost the server
FLOOD_THREADS = 8
FLOOD_CYCLES = 2500  # per thread
RSS_SLACK = 4 << 20  # what a flood may leave resident beyond its baseline (allocator arenas)
# `make asan` and `make tsan` set MAGPIE_SANITIZER: shadow memory, the sanitizers' allocators and
# ASan's quarantine of freed memory make RSS say nothing of the server's own (test_hostile.py).
RSS_CHECKED = not os.environ.get("MAGPIE_SANITIZER")


def open_fds(srv):
    return len(os.listdir(f"/proc/{srv.proc.pid}/fd"))


def quiet_fds(srv):
    """The server's open descriptors once no connection of ours is open: the count, after the
    last connection's close has reached the server (the same three times, 50 ms apart)."""
    seen = []
    for _ in bounded(100, 10):
        seen.append(open_fds(srv))
        if len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3]:
            return seen[-1]
        time.sleep(0.05)
    raise AssertionError(f"the server's descriptors do not settle: {seen[-5:]}")


def fd_limit(srv):
    """The server's soft limit on open files, from /proc/PID/limits."""
    with open(f"/proc/{srv.proc.pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no 'Max open files' in /proc/PID/limits")


def allow_fds(n):
    """Let this process hold n descriptors (raising the hard limit needs root, as the suite runs)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard if hard == resource.RLIM_INFINITY else max(n, hard)))
    except (ValueError, OSError) as exc:
        raise AssertionError(f"this test needs {n} descriptors; the limit is {soft}/{hard}: {exc}")


def stat(srv, name):
    """One general stat, asked on a connection of its own."""
    conn = harness.Conn(srv.port)
    try:
        values = conn.stats()
    finally:
        conn.close()
    if name not in values:
        raise AssertionError(f"no {name} in stats: {values}")
    return int(values[name])


def roundtrip(sock, request, reply):
    sock.sendall(request)
    got = b""
    for _ in bounded(100, IO_TIMEOUT):
        if len(got) >= len(reply):
            break
        chunk = sock.recv(len(reply) - len(got))
        if not chunk:
            break
        got += chunk
    expect(got, reply, f"reply to {request[:40]!r}")


def test_the_server_raises_its_descriptor_limit_to_what_max_connections_needs(fx):
    # Started with the shell's usual soft limit of 1024 (the hard one as it is): -c 4000 needs more.
    srv = fx.server(threads=2, max_conns=4000, prefix=["prlimit", "--nofile=1024:"])
    if fd_limit(srv) < 4000:
        raise AssertionError(f"-c 4000: the server's limit on open files is {fd_limit(srv)}")


def test_a_descriptor_limit_that_cannot_be_raised_is_reported(fx):
    argv = ["prlimit", "--nofile=1024:1024"] + harness.server_argv(fx.binary, harness.free_port(), threads=2,
                                                                   max_conns=4000)
    if harness.is_memcached(fx.binary):  # memcached refuses to start (EX_OSERR)
        proc = subprocess.run(argv, capture_output=True, timeout=IO_TIMEOUT)
        expect(proc.returncode, 71, "memcached's exit status")
        return
    srv = fx.server(threads=2, max_conns=4000, prefix=["prlimit", "--nofile=1024:1024"])
    c = fx.conn(srv)
    expect(c.request(b"version\r\n").startswith(b"VERSION "), True, "it serves all the same")
    said = poll(lambda: "cannot be raised" in srv.tail(50), 5)
    if not said:
        raise AssertionError(f"nothing said about the descriptor limit:\n{srv.tail()}")


@harness.alone
def test_twenty_thousand_connections_used_once_then_idle_stay_small_and_all_answer_again(fx):
    # The server and this process each hold one descriptor per connection. Where the hard limit is
    # fixed (a container without CAP_SYS_RESOURCE) the test takes what it allows, less a margin.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    count = IDLE_CONNS if hard == resource.RLIM_INFINITY else min(IDLE_CONNS, hard - 200)
    allow_fds(count + 100)
    srv = fx.server(threads=2, max_conns=count + 50)
    socks = []
    fx.defer(lambda: [s.close() for s in socks])
    # The baseline: a few connections used and closed, so the workers' pools are warm.
    for i in range(8):
        with harness.connect(srv.port) as s:
            roundtrip(s, b"set warm 0 0 1\r\nw\r\n", b"STORED\r\n")
    before = harness.rss(srv)
    for i in bounded(count, 120):
        s = harness.connect(srv.port)
        socks.append(s)
        value = b"v%d" % i
        roundtrip(s, b"set k%d 0 0 %d\r\n%s\r\n" % (i, len(value), value), b"STORED\r\n")
    expect(len(socks), count, "connections opened and used")
    expect(stat(srv, "curr_connections"), count + 1, "curr_connections (with the one asking)")
    per_conn = (harness.rss(srv) - before) / count
    print(f"  {count} idle connections: {per_conn:.0f} bytes of RSS each")
    if RSS_CHECKED and per_conn > IDLE_BYTES_MAX:
        raise AssertionError(f"an idle connection costs {per_conn:.0f} bytes of RSS (at most {IDLE_BYTES_MAX})")
    # Every one of them still works, in the reverse order for good measure.
    for i in reversed(range(count)):
        value = b"v%d" % i
        roundtrip(socks[i], b"get k%d\r\n" % i, b"VALUE k%d 0 %d\r\n%s\r\nEND\r\n" % (i, len(value), value))


def flood(port, cycles, errors):
    """Connect, then one of: a request answered, a request and a close without reading, a close
    with nothing said. Then close."""
    try:
        for i in range(cycles):
            s = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
            try:
                kind = i % 3
                if kind == 0:
                    roundtrip(s, b"set f%d 0 0 4\r\nflud\r\nget f%d\r\n" % (i, i),
                              b"STORED\r\nVALUE f%d 0 4\r\nflud\r\nEND\r\n" % i)
                elif kind == 1:
                    s.sendall(b"get f%d f%d f%d\r\n" % (i, i - 1, i - 3))
            finally:
                s.close()
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def run_flood(port):
    errors = []
    threads = [threading.Thread(target=flood, args=(port, FLOOD_CYCLES, errors), daemon=True)
               for _ in range(FLOOD_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    if any(t.is_alive() for t in threads):
        raise AssertionError("the flood did not end within 120 s")


@harness.alone
def test_a_flood_of_connect_close_cycles_leaves_no_descriptor_or_buffer_behind(fx):
    srv = fx.server(threads=2, max_conns=4096)
    run_flood(srv.port)  # the baseline is taken after one flood: pools and arenas are warm then
    settled = poll(lambda: stat(srv, "curr_connections") == 1, 10)
    expect(bool(settled), True, "every connection of the first flood is closed")
    fds, before = quiet_fds(srv), harness.rss(srv)
    total = stat(srv, "total_connections")
    run_flood(srv.port)
    settled = poll(lambda: stat(srv, "curr_connections") == 1, 10)
    expect(bool(settled), True, "every connection of the second flood is closed")
    expect(stat(srv, "total_connections") - total >= FLOOD_THREADS * FLOOD_CYCLES, True,
           "the second flood's connections were all accepted")
    expect(quiet_fds(srv), fds, "descriptors open after the second flood")
    grown = harness.rss(srv) - before
    if RSS_CHECKED and grown > RSS_SLACK:
        raise AssertionError(f"RSS grew by {grown} bytes over a flood of {FLOOD_THREADS * FLOOD_CYCLES} "
                             f"connections (at most {RSS_SLACK})")
