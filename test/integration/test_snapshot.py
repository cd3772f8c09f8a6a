"""Restarting with the cache: -e PATH (--memory-file) and -o snapshot_interval=N.

Each test runs the server several times over one file: a run stores items and is stopped by a
signal (the snapshot is written), the next run loads it. Servers here are started and stopped by
the tests themselves (harness.Server), since a server exiting is the point. memcached's -e is a
different thing (a memory file on tmpfs, kept only after SIGUSR1): these tests are Magpie's.
"""

import ctypes
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile

import harness
from harness import expect

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = 256


def magpie_only(fx):
    return not harness.is_memcached(fx.binary)


class Snapdir:
    """A temporary directory for one test's snapshot file, removed at the end."""

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="magpie-snap-")
        self.path = os.path.join(self.dir, "cache.snap")
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


def start(fx, path, extra=(), env=None, **opts):
    """A server with -e path; the caller stops it (stop() or harness' _terminate)."""
    return harness.Server(fx.binary, env=env, extra=["-e", path, *extra], **opts)


def output_of(srv):
    srv.output.seek(0)
    return srv.output.read().decode(errors="replace")


def stop(srv, sig=signal.SIGTERM):
    """Signal the server, wait for it to exit; (exit status, everything it logged)."""
    srv.proc.send_signal(sig)
    try:
        status = srv.proc.wait(harness.STOP_TIMEOUT * 2)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        srv.proc.wait(harness.STOP_TIMEOUT)
        raise AssertionError(f"still running {harness.STOP_TIMEOUT * 2}s after {sig.name}")
    out = output_of(srv)
    srv.output.close()
    return status, out


def value_of(i, size):
    seed = b"<%d>" % i
    return (seed * (size // len(seed) + 1))[:size]


def fill(conn, ids, size, flags=0, exptime=0, prefix=b"key"):
    """Pipelined sets of prefix:i for each i, then a round trip so all are stored."""
    ids = list(ids)
    for start_at in range(0, len(ids), 500):
        conn.send(b"".join(b"set %s:%d %d %d %d noreply\r\n%s\r\n"
                           % (prefix, i, flags, exptime, size, value_of(i, size))
                           for i in ids[start_at:start_at + 500]))
    expect(conn.request(b""), b"", "replies to sets with noreply")


def held(conn, ids, size, prefix=b"key"):
    """Which of the keys are there; any value that is there must be exactly the one stored."""
    ids = list(ids)
    present = set()
    for start_at in range(0, len(ids), 100):
        chunk = ids[start_at:start_at + 100]
        reply = conn.request(b"get " + b" ".join(b"%s:%d" % (prefix, i) for i in chunk) + b"\r\n")
        for m in re.finditer(rb"VALUE %s:(\d+) \d+ (\d+)\r\n" % prefix, reply):
            i, n = int(m.group(1)), int(m.group(2))
            data = reply[m.end():m.end() + n]
            expect(data, value_of(i, size), f"value of {prefix.decode()}:{i}")
            present.add(i)
    return present


def loaded_count(out):
    m = re.search(r"snapshot \S+: loaded (\d+) items", out)
    if not m:
        raise AssertionError(f"no 'loaded' line in the log:\n{out[-2000:]}")
    return int(m.group(1))


# ---- restart with items -----------------------------------------------------------------------


def test_items_ttls_flags_and_cas_survive_sigterm_sigint_and_sigusr1(fx):
    if not magpie_only(fx):
        return
    with Snapdir() as d:
        srv = start(fx, d.path)
        c = harness.Conn(srv.port)
        expect(c.request(b"set plain 0 0 5\r\nhello\r\nset flagged 3735928559 1000 3\r\nabc\r\n"
                         b"set binary 7 0 4\r\n\x00\r\n\xff\r\n"), b"STORED\r\n" * 3, "sets")
        before = c.request(b"gets plain flagged binary\r\n")
        c.close()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            status, out = stop(srv, sig)
            expect(status, 0, f"exit status after {sig.name}")
            if not re.search(r"snapshot \S+: wrote 3 items", out):
                raise AssertionError(f"no 'wrote 3 items' after {sig.name}:\n{out[-1500:]}")
            srv = start(fx, d.path)
            c = harness.Conn(srv.port)
            expect(c.request(b"gets plain flagged binary\r\n"), before, f"gets after {sig.name}")
            ttl = c.request(b"mg flagged t\r\n")
            m = re.fullmatch(rb"HD t(\d+)\r\n", ttl)
            if not m or not 900 <= int(m.group(1)) <= 1000:
                raise AssertionError(f"TTL after {sig.name}: {ttl!r}")
            c.close()
        expect(loaded_count(output_of(srv)), 3, "items loaded")
        c = harness.Conn(srv.port)
        cas = int(re.search(rb"VALUE plain 0 5 (\d+)", before).group(1))
        largest = max(int(x) for x in re.findall(rb" (\d+)\r\n", before))
        expect(c.request(b"cas plain 0 0 3 %d\r\nnew\r\n" % cas), b"STORED\r\n",
               "cas with the CAS from before the restarts")
        after = c.request(b"gets plain\r\n")
        if int(re.search(rb"VALUE plain 0 3 (\d+)", after).group(1)) <= largest:
            raise AssertionError(f"a new CAS at or below the old ones: {after!r} after {before!r}")
        c.close()
        expect(stop(srv)[0], 0, "exit status")


def test_items_that_expire_while_the_server_is_down_are_dropped(fx):
    if not magpie_only(fx):
        return
    shim = os.path.join(os.path.dirname(os.path.abspath(fx.binary)), "test", "wallclock_shim.so")
    if not os.path.exists(shim):
        raise AssertionError(f"{shim} is missing: make builds it with the integration tests")
    with Snapdir() as d:
        offset = os.path.join(d.dir, "offset")
        with open(offset, "w") as f:
            f.write("0")
        env = {"LD_PRELOAD": shim, "MAGPIE_WALL_OFFSET_FILE": offset}
        if os.environ.get("MAGPIE_SANITIZER") == "address":
            env["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
        srv = start(fx, d.path, env=env)
        c = harness.Conn(srv.port)
        expect(c.request(b"set ten-minutes 0 600 1\r\na\r\nset two-hours 0 7200 1\r\nb\r\n"
                         b"set forever 0 0 1\r\nc\r\n"), b"STORED\r\n" * 3, "sets")
        c.close()
        expect(stop(srv)[0], 0, "exit status")
        with open(offset, "w") as f:
            f.write("3600")  # the server comes back an hour later by the wall clock
        srv = start(fx, d.path, env=env)
        c = harness.Conn(srv.port)
        expect(c.request(b"get ten-minutes two-hours forever\r\n"),
               b"VALUE two-hours 0 1\r\nb\r\nVALUE forever 0 1\r\nc\r\nEND\r\n", "what is left")
        m = re.fullmatch(rb"HD t(\d+)\r\n", c.request(b"mg two-hours t\r\n"))
        if not m or not 3500 <= int(m.group(1)) <= 3600:
            raise AssertionError(f"two-hours should have about an hour left: {m}")
        c.close()
        status, out = stop(srv)
        expect(status, 0, "exit status")
        if not re.search(r"loaded 2 items .*1 expired", out):
            raise AssertionError(f"the log does not say one item expired:\n{out[-1500:]}")


# ---- changed settings -------------------------------------------------------------------------


def test_a_smaller_memory_limit_keeps_the_hot_items(fx):
    if not magpie_only(fx):
        return
    n, size = 40000, 1000
    hot = range(0, n, 20)
    with Snapdir() as d:
        srv = start(fx, d.path, memory_mb=64)
        c = harness.Conn(srv.port)
        fill(c, range(n), size)
        for _ in range(3):
            held(c, hot, size)
        c.close()
        expect(stop(srv)[0], 0, "exit status")
        srv = start(fx, d.path, memory_mb=8)
        try:
            c = harness.Conn(srv.port)
            present_hot = held(c, hot, size)
            present = held(c, range(n), size)
            c.close()
        finally:
            status, out = stop(srv)
        expect(len(present_hot), len(hot), "hot items back under -m 8")
        if not 4000 <= len(present) < n:
            raise AssertionError(f"{len(present)} items under -m 8; expected as many as fit")
        if not re.search(r"without room under -m", out):
            raise AssertionError(f"the log does not say what did not fit:\n{out[-1500:]}")


def test_other_threads_factor_chunk_size_connections_and_a_smaller_item_max(fx):
    if not magpie_only(fx):
        return
    with Snapdir() as d:
        srv = start(fx, d.path, item_max="1m")
        c = harness.Conn(srv.port)
        fill(c, range(200), 300, prefix=b"small")
        fill(c, range(5), 200 * 1024, prefix=b"large")
        c.close()
        expect(stop(srv)[0], 0, "exit status")
        srv = start(fx, d.path, threads=2, max_conns=100, item_max="100k",
                    extra=["-f", "1.25", "-n", "48"])
        try:
            c = harness.Conn(srv.port)
            expect(len(held(c, range(200), 300, prefix=b"small")), 200, "small items")
            expect(len(held(c, range(5), 200 * 1024, prefix=b"large")), 0, "items over -I")
            c.close()
        finally:
            status, out = stop(srv)
        expect(status, 0, "exit status")
        if not re.search(r"loaded 200 items .*5 over -I", out):
            raise AssertionError(f"the log does not count the items over -I:\n{out[-1500:]}")


# ---- damaged files ----------------------------------------------------------------------------


def xxh3(data):
    lib = ctypes.CDLL("libxxhash.so.0")
    lib.XXH3_64bits.restype = ctypes.c_uint64
    lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    return lib.XXH3_64bits(data, len(data))


def other_version(data):
    """The same file, its header saying format version 2 (and its checksum matching)."""
    header = bytearray(data[:HEADER])
    header[8:12] = (2).to_bytes(4, "little")
    header[248:256] = xxh3(bytes(header[:248])).to_bytes(8, "little")
    return bytes(header) + data[HEADER:]


def flipped(data):
    at = len(data) // 2
    return data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1:]


DAMAGE = {
    "empty": (lambda data: b"", r"the file is empty"),
    "truncated": (lambda data: data[:len(data) * 6 // 10], r"truncated"),
    "random": (lambda data: random.Random(7).randbytes(len(data)), r"header is damaged"),
    "flipped byte": (flipped, r"fails its checksum"),
    "other version": (other_version, r"format version 2"),
}


def test_a_damaged_file_never_stops_the_start_nor_serves_a_damaged_value(fx):
    if not magpie_only(fx):
        return
    n, size = 3000, 700
    with Snapdir() as d:
        srv = start(fx, d.path)
        c = harness.Conn(srv.port)
        fill(c, range(n), size)
        c.close()
        expect(stop(srv)[0], 0, "exit status")
        with open(d.path, "rb") as f:
            good = f.read()
        for kind, (damage, says) in DAMAGE.items():
            with open(d.path, "wb") as f:
                f.write(damage(good))
            srv = start(fx, d.path)
            try:
                c = harness.Conn(srv.port)
                present = held(c, range(n), size)  # every value there is checked whole
                expect(c.request(b"set after 0 0 2\r\nok\r\nget after\r\n"),
                       b"STORED\r\nVALUE after 0 2\r\nok\r\nEND\r\n", f"serving after a {kind} file")
                c.close()
            finally:
                srv.proc.kill()  # no snapshot of this run: the next kind starts from the good file
                srv.proc.wait(harness.STOP_TIMEOUT)
                out = output_of(srv)
                srv.output.close()
            if not re.search(says, out):
                raise AssertionError(f"{kind}: the log does not say {says!r}:\n{out[-1500:]}")
            expect(len(present), loaded_count(out), f"{kind}: items served against items loaded")
            if kind in ("truncated", "flipped byte"):
                if not 0 < len(present) < n:
                    raise AssertionError(f"{kind}: {len(present)} of {n} items came back")
            else:
                expect(len(present), 0, f"{kind}: items loaded")


def test_a_memcached_memory_file_is_not_taken_for_a_snapshot(fx):
    if not magpie_only(fx):
        return
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with Snapdir() as d:
        path = os.path.join(shm or d.dir, f"magpie-test-mc-{os.getpid()}")
        try:
            mc = harness.Server(harness.MEMCACHED, memory_mb=64, extra=["-e", path])
            c = harness.Conn(mc.port)
            fill(c, range(100), 100)
            c.close()
            stop(mc, signal.SIGUSR1)
            srv = start(fx, path)
            c = harness.Conn(srv.port)
            expect(held(c, range(100), 100), set(), "items from memcached's file")
            c.close()
            status, out = stop(srv)
            expect(status, 0, "exit status")
            if not re.search(r"header is damaged", out):
                raise AssertionError(f"the log does not say the file is not a snapshot:\n{out[-1500:]}")
        finally:
            for p in (path, path + ".tmp", path + ".meta"):
                if os.path.exists(p):
                    os.unlink(p)


# ---- writing safely ---------------------------------------------------------------------------


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_kill_9_in_the_middle_of_the_write_leaves_the_previous_snapshot(fx):
    if not magpie_only(fx):
        return
    shim = os.path.join(os.path.dirname(os.path.abspath(fx.binary)), "test", "stall_shim.so")
    if not os.path.exists(shim):
        raise AssertionError(f"{shim} is missing: make builds it with the integration tests")
    with Snapdir() as d:
        srv = start(fx, d.path)
        c = harness.Conn(srv.port)
        fill(c, range(1000), 200, prefix=b"first")
        c.close()
        expect(stop(srv)[0], 0, "exit status")
        previous = digest(d.path)

        # 20 MB to write: the writer's first 8 MiB buffer goes out, the second stops the server.
        marker = os.path.join(d.dir, "stalled")
        env = {"LD_PRELOAD": shim, "MAGPIE_STALL_MARKER": marker, "MAGPIE_STALL_AFTER": str(9 << 20)}
        if os.environ.get("MAGPIE_SANITIZER") == "address":
            env["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
        srv = start(fx, d.path, env=env)
        c = harness.Conn(srv.port)
        fill(c, range(20000), 1000, prefix=b"second")
        c.close()
        srv.proc.send_signal(signal.SIGTERM)
        stalled = harness.poll(lambda: os.path.exists(marker), 10.0)
        srv.proc.kill()
        srv.proc.wait(harness.STOP_TIMEOUT)
        srv.output.close()
        expect(stalled, True, "the writer stopped mid-write")
        if os.path.getsize(d.path + ".tmp") < 4 << 20:
            raise AssertionError("the unfinished file holds less than was written before the stop")
        expect(digest(d.path), previous, "the snapshot after a kill -9 mid-write")

        srv = start(fx, d.path)
        c = harness.Conn(srv.port)
        expect(len(held(c, range(1000), 200, prefix=b"first")), 1000, "items of the last snapshot")
        expect(len(held(c, range(20000), 1000, prefix=b"second")), 0, "items never written")
        c.close()
        status, out = stop(srv)
        expect(status, 0, "exit status")
        if not re.search(r"removed \S+\.tmp, left unfinished", out):
            raise AssertionError(f"the log does not say the unfinished file was removed:\n{out[-1500:]}")
        expect(os.path.exists(d.path + ".tmp"), False, "the unfinished file after the next start")


def test_snapshot_interval_keeps_what_a_crash_would_lose(fx):
    if not magpie_only(fx):
        return
    with Snapdir() as d:
        srv = start(fx, d.path, extra=["-o", "snapshot_interval=1"])
        c = harness.Conn(srv.port)
        fill(c, range(500), 100)
        expect(c.request(b"stats settings\r\n").count(b"STAT snapshot_interval 1\r\n"), 1,
               "stats settings")
        c.close()

        # Each snapshot renames a new file into place: the second one after the sets began
        # after them, and holds them.
        def inode():
            try:
                return os.stat(d.path).st_ino
            except FileNotFoundError:
                return None
        seen = [inode()]

        def two_more():
            cur = inode()
            if cur is not None and cur != seen[-1]:
                seen.append(cur)
            return len(seen) >= 3
        renewed = harness.poll(two_more, 10.0)
        srv.proc.kill()  # a crash: nothing written at exit
        srv.proc.wait(harness.STOP_TIMEOUT)
        srv.output.close()
        expect(renewed, True, "two snapshots written while serving")

        srv = start(fx, d.path)
        c = harness.Conn(srv.port)
        expect(len(held(c, range(500), 100)), 500, "items after a kill -9")
        c.close()
        expect(stop(srv)[0], 0, "exit status")


def test_a_snapshot_that_cannot_be_written_exits_1_and_says_why(fx):
    if not magpie_only(fx):
        return
    with Snapdir() as d:
        path = os.path.join(d.dir, "no-such-dir", "cache.snap")
        srv = start(fx, path)
        c = harness.Conn(srv.port)
        expect(c.request(b"set k 0 0 1\r\nv\r\n"), b"STORED\r\n", "set")
        c.close()
        status, out = stop(srv)
        expect(status, 1, "exit status")
        if not re.search(r"cannot create the temporary file: No such file or directory", out):
            raise AssertionError(f"the log does not say why:\n{out[-1500:]}")


def test_snapshot_interval_without_e_is_a_usage_error(fx):
    if not magpie_only(fx):
        return
    result = subprocess.run([fx.binary, "-o", "snapshot_interval=5"], stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=5)
    expect(result.returncode, 64, "exit status")
    expect(b"snapshot_interval needs -e" in result.stderr, True, f"message {result.stderr!r}")
