"""Trust: wrong data is never served, and time follows the seconds that pass.

- Readers that pin one item more times than its reference count can hold: every stalled client
  still receives that item's bytes, and a key stored afterwards survives (the count is capped,
  as memcached's limited_get caps it, and never wraps).
- The wall clock stepped back an hour and forward five: TTLs and idle timeouts count elapsed
  seconds, and absolute exptimes mean the wall clock's time as it reads now. A preloaded library
  (wallclock_shim.c) moves the server's wall clock.
"""

import os
import resource
import selectors
import shutil
import socket
import tempfile
import time

import harness
from harness import expect

BIG = 16400           # over the 16 KiB a connection copies: pinned while it is written
STALLED = 4096        # connections that ask for it and never read
GETS_PER_LINE = 40    # keys per get line: 16 are pinned before the connection stops (256 KiB)


def big_value():
    """Bytes that cannot be mistaken for another value's, and hold no reply line."""
    return bytes((i * 7 + 3) % 251 for i in range(BIG))


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        raise AssertionError(f"this test needs {need} descriptors; the limit is {soft}")


def stalled_conn(path, request):
    """A unix-socket connection that sends `request` and then reads nothing. A unix socket holds
    what the server's send buffer holds (net.core.wmem_default, 208 KiB) and no more, where TCP
    would grow its buffers past the 256 KiB at which a connection stops and holds its pins."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(harness.IO_TIMEOUT)
    # A unix socket whose listen backlog is full refuses a connect with EAGAIN at once, where TCP
    # would wait; a server slowed down by a sanitizer falls behind 4096 quick connects. Try again.
    for _ in harness.bounded(1 << 20, harness.IO_TIMEOUT):
        try:
            s.connect(path)
            break
        except BlockingIOError:
            time.sleep(0.005)
    else:
        s.close()
        raise AssertionError(f"the listen backlog of {path} stayed full for {harness.IO_TIMEOUT}s")
    s.sendall(request)
    return s


class GetReader:
    """Checks one get line's replies as they arrive: every VALUE must be `key` with `value`."""

    def __init__(self, key, value):
        self.header = b"VALUE %s 0 %d\r\n" % (key, len(value))
        self.value = value
        self.buf = bytearray()
        self.values = 0
        self.done = False

    def feed(self, data):
        self.buf += data
        while not self.done:
            if self.buf.startswith(b"END\r\n"):
                if len(self.buf) != 5:
                    raise AssertionError(f"bytes after END: {bytes(self.buf[5:80])!r}")
                self.done = True
            elif self.buf.startswith(b"VALUE "):
                need = len(self.header) + len(self.value) + 2
                if len(self.buf) < need:
                    if len(self.buf) >= len(self.header) and not self.buf.startswith(self.header):
                        raise AssertionError(f"bad value header {bytes(self.buf[:60])!r}")
                    return
                if not self.buf.startswith(self.header):
                    raise AssertionError(f"bad value header {bytes(self.buf[:60])!r}")
                data_end = len(self.header) + len(self.value)
                if self.buf[len(self.header):data_end] != self.value or self.buf[data_end:need] != b"\r\n":
                    raise AssertionError("a stalled client received other bytes as the pinned value")
                del self.buf[:need]
                self.values += 1
            else:
                if len(self.buf) >= 6:
                    raise AssertionError(f"unexpected reply {bytes(self.buf[:60])!r}")
                return


def drain(conns, readers, timeout):
    """Read every connection to the end of its reply, checking as it goes."""
    sel = selectors.DefaultSelector()
    for s, r in zip(conns, readers):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, r)
    left = len(conns)
    for _ in harness.bounded(1 << 30, timeout):
        if left == 0:
            break
        for key, _ in sel.select(timeout=1.0):
            try:
                data = key.fileobj.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                raise AssertionError("a stalled client was disconnected")
            key.data.feed(data)
            if key.data.done:
                sel.unregister(key.fileobj)
                left -= 1
    sel.close()
    if left:
        raise AssertionError(f"{left} clients did not receive their whole reply within {timeout}s")


def conn_states(conn):
    lines = conn.request(b"stats conns\r\n").split(b"\r\n")
    return [line.split()[2] for line in lines if line.startswith(b"STAT ") and line.split()[1].endswith(b":state")]


@harness.alone
def test_readers_pinning_an_item_past_its_count_never_see_its_chunk_reused(fx):
    if harness.is_memcached(fx.binary):
        return  # memcached turns TCP off with -s; its own limit is the one this mirrors
    raise_fd_limit(2 * STALLED + 512)
    tmpdir = tempfile.mkdtemp(prefix="magpie-pins-")
    path = os.path.join(tmpdir, "m.sock")
    try:
        pin_scenario(fx, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def pin_scenario(fx, path):
    srv = fx.server(threads=4, memory_mb=64, max_conns=STALLED + 200, extra=["-s", path])
    ctl = fx.conn(srv)
    value = big_value()
    expect(ctl.request(b"set big 0 0 %d\r\n%s\r\n" % (BIG, value)), b"STORED\r\n", "set big")
    request = b"get" + b" big" * GETS_PER_LINE + b"\r\n"
    conns = []
    try:
        for _ in range(STALLED):
            conns.append(stalled_conn(path, request))
        # Every connection has answered what fits and stopped, holding its pins.
        # (60000 pins at 16 a connection: 3750 of them, or all 4096 where nothing caps the count)
        writing = harness.poll(lambda: conn_states(ctl).count(b"conn_mwrite") >= 3700, 60, 0.2)
        if not writing:
            raise AssertionError(f"only {conn_states(ctl).count(b'conn_mwrite')} connections stalled")
        # The key goes, and another of the same size is stored: it must not take the pinned chunk.
        expect(ctl.request(b"delete big\r\n"), b"DELETED\r\n", "delete big")
        other = bytes(reversed(value))
        expect(ctl.request(b"set other 0 0 %d\r\n%s\r\n" % (BIG, other)), b"STORED\r\n", "set other")
        readers = [GetReader(b"big", value) for _ in conns]
        drain(conns, readers, 240)
        pinned = sum(r.values for r in readers)
        if pinned < 55000:
            raise AssertionError(f"only {pinned} values were in flight: the scenario did not happen")
    finally:
        for s in conns:
            s.close()
    reply = ctl.request(b"get other\r\n")
    expect(reply, b"VALUE other 0 %d\r\n%s\r\nEND\r\n" % (BIG, other), "get other")
    stats = dict(line.split()[1:3] for line in ctl.request(b"stats\r\n").split(b"\r\n")
                 if line.startswith(b"STAT "))
    expect(stats[b"curr_items"], b"1", "curr_items")


# --- the wall clock steps ---------------------------------------------------------------------

HOUR = 3600


def shim_path(binary):
    return os.path.join(os.path.dirname(os.path.abspath(binary)), "test", "wallclock_shim.so")


def step_env(shim, offset_file):
    env = {"LD_PRELOAD": shim, "MAGPIE_WALL_OFFSET_FILE": offset_file}
    if os.environ.get("MAGPIE_SANITIZER") == "address":
        # ASan wants its runtime first among the libraries; the shim only moves clocks.
        env["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
    return env


def test_ttls_idle_timeouts_and_absolute_times_follow_elapsed_time_when_the_wall_clock_steps(fx):
    if harness.is_memcached(fx.binary):
        return  # memcached counts absolute exptimes from the wall clock at its start
    shim = shim_path(fx.binary)
    if not os.path.exists(shim):
        raise AssertionError(f"{shim} is missing: make builds it with the integration tests")
    with tempfile.NamedTemporaryFile("w", delete=False) as f:
        f.write("0")
        offset_file = f.name

    def step(seconds):
        with open(offset_file, "w") as out:
            out.write(str(seconds))

    try:
        srv = fx.server(extra=["-o", "idle_timeout=3"], env=step_env(shim, offset_file))
        c, idle = fx.conn(srv), fx.conn(srv)
        expect(c.request(b"set short 0 3 1\r\ns\r\nset long 0 30 1\r\nl\r\n"), b"STORED\r\nSTORED\r\n", "sets")
        started = time.monotonic()
        expect(idle.request(b"version\r\n")[:8], b"VERSION ", "idle connection")

        step(-HOUR)  # back an hour
        time.sleep(1.5)  # the server's clock ticks through the step
        data, closed = idle.read_for(0.1)
        if closed:
            raise AssertionError("the wall clock stepped back and an idle connection was closed at once")
        expect(idle.request(b"version\r\n")[:8], b"VERSION ", "idle connection after the step back")
        # c too, or it would be quiet 3.5 s at its next request, past idle_timeout=3
        expect(c.request(b"version\r\n")[:8], b"VERSION ", "connection c after the step back")
        # "short" was stored 3 s before: once 3 real seconds have passed it is gone.
        harness.poll(lambda: time.monotonic() - started > 3.5, 5)
        expect(c.request(b"get short\r\n"), b"END\r\n", "a 3 s TTL after 3.5 s, the clock stepped back")

        # Active just before the step, so a close seen below is the step's doing: quiet since the
        # step back, it would have been quiet 3.4 s by then, and a 3 s timeout counted on a
        # one-second clock closes anywhere from 3 to 5 real seconds.
        expect(idle.request(b"version\r\n")[:8], b"VERSION ", "idle connection before the step forward")
        step(5 * HOUR)  # forward five
        time.sleep(1.5)
        expect(c.request(b"get long\r\n"), b"VALUE long 0 1\r\nl\r\nEND\r\n",
               "a 30 s TTL 5 s in, the clock stepped forward five hours")
        data, closed = idle.read_for(0.1)
        if closed:
            raise AssertionError("the wall clock stepped forward and an idle connection was closed at once")
        expect(idle.request(b"version\r\n")[:8], b"VERSION ", "idle connection after the step forward")

        # Absolute exptimes are times on the wall clock as it reads now.
        wall = int(time.time()) + 5 * HOUR
        expect(c.request(b"set ahead 0 %d 1\r\na\r\nset behind 0 %d 1\r\nb\r\nget ahead behind\r\n"
                         % (wall + 60, wall - 60)),
               b"STORED\r\nSTORED\r\nVALUE ahead 0 1\r\na\r\nEND\r\n", "absolute exptimes after the step")

        # And idleness is still measured: quiet for more than 3 real seconds, it is closed.
        data, closed = idle.read_for(6)
        if not closed:
            raise AssertionError("an idle connection outlived idle_timeout=3 by 6 s")
    finally:
        os.unlink(offset_file)
