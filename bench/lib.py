"""Shared helpers for the Magpie benchmarks: servers, /proc readings, a raw client.

Every benchmark compares two servers speaking the memcached text protocol: the
reference (memcached) and the candidate (Magpie). This module owns what they
share, so each script only says what load it drives and what it reports:

- `Server`: start a binary on a free 127.0.0.1 port with memcached-compatible
  flags, wait until it accepts, read its CPU time and RSS, stop it. Always use
  it as a context manager so the process is stopped on every path.
- `Conn`: a blocking raw-socket client with just enough of the protocol for
  the scripts (pipelined sets, multi-get, stats).
- argument, table and result-file helpers.

Standard library only; run the scripts with /usr/bin/python3 (the chart in
compare also needs Debian's python3-matplotlib).
"""

import argparse
import collections
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
RESULTS_DIR = os.path.join(BENCH_DIR, "results")
HOST = "127.0.0.1"
MIB = 1024 * 1024

# The names used for the two servers throughout the scripts, in run order.
REFERENCE = "memcached"
CANDIDATE = "magpie"
SERVERS = (REFERENCE, CANDIDATE)


# ---------------------------------------------------------------- arguments

def arg_parser(description):
    """A parser with the options every benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--magpie", default=os.path.join(REPO_DIR, "build", "magpie"),
                   help="Magpie binary (default: build/magpie in the repo)")
    p.add_argument("--memcached", default="/usr/bin/memcached",
                   help="reference memcached binary (default: /usr/bin/memcached)")
    p.add_argument("--results-dir", default=RESULTS_DIR,
                   help="where JSON (and charts) are written (default: bench/results)")
    return p


def binaries(args):
    """{server name: absolute path}, failing early if one is missing."""
    paths = {REFERENCE: os.path.abspath(args.memcached), CANDIDATE: os.path.abspath(args.magpie)}
    for name, path in paths.items():
        if not os.access(path, os.X_OK):
            raise SystemExit(f"{name} binary not found or not executable: {path}")
    return paths


# ---------------------------------------------------------------- servers

def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def proc_cpu_seconds(pid):
    """utime + stime of a process, in seconds (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def proc_wakeups(pid):
    """Voluntary context switches of all a process's threads: each is a thread that went to sleep
    (in epoll_wait, a lock, a condition) and was woken again (/proc/PID/task/*/status)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return total


def proc_rss_bytes(pid):
    """Resident set size of a process (VmRSS in /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def machine_cpu_seconds():
    """(total, busy) CPU seconds of all CPUs since boot (from /proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    total = sum(ticks[:8])  # guest time is already inside user time
    return total / hz, (total - ticks[3] - ticks[4]) / hz  # less idle and iowait


def machine_busy(seconds=1.0):
    """Fraction of all CPUs' time spent busy over the next `seconds`."""
    total0, busy0 = machine_cpu_seconds()
    time.sleep(seconds)
    total1, busy1 = machine_cpu_seconds()
    return (busy1 - busy0) / max(total1 - total0, 1e-9)


class Server:
    """One server process on a free port; a context manager that always stops it.

    Flags are memcached's: -p -l -t -m -c -U 0, and -I when item_max is given;
    `extra` flags follow them.
    memcached refuses to run as root without `-u root`, so that flag is added
    only when we are root and the binary's name starts with "memcached" (Magpie
    is not expected to take -u).
    """

    def __init__(self, name, path, threads=2, memory_mib=64, max_conns=1024,
                 item_max=None, start_timeout=10.0, extra=()):
        self.name = name
        self.path = path
        self.port = free_port()
        self.argv = [path, "-p", str(self.port), "-l", HOST, "-t", str(threads),
                     "-m", str(memory_mib), "-c", str(max_conns), "-U", "0"]
        if item_max:
            self.argv += ["-I", str(item_max)]
        self.argv += list(extra)  # flags of one server only (Magpie's --metrics, say)
        if os.geteuid() == 0 and os.path.basename(path).startswith("memcached"):
            self.argv += ["-u", "root"]
        self.start_timeout = start_timeout
        self.proc = None
        # A file, not a pipe: a server that logs a lot must never block on it.
        self.stderr = tempfile.TemporaryFile()

    @property
    def pid(self):
        return self.proc.pid

    def __enter__(self):
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.stderr)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def _wait_ready(self):
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stderr.seek(0)
                err = self.stderr.read()[-4000:].decode(errors="replace")
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                                   f"{' '.join(self.argv)}\n{err}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not accept on port {self.port} "
                           f"within {self.start_timeout} s")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.stderr.close()

    def cpu_seconds(self):
        return proc_cpu_seconds(self.pid)

    def wakeups(self):
        return proc_wakeups(self.pid)

    def rss_bytes(self):
        return proc_rss_bytes(self.pid)


# ---------------------------------------------------------------- raw client

class ProtocolError(RuntimeError):
    pass


class Conn:
    """A blocking connection speaking the memcached text protocol.

    Requests are sent as the caller builds them (so many can be pipelined in
    one sendall); replies are read from one buffer. A server may answer a
    `noreply` set with an error anyway (memcached sends SERVER_ERROR out of
    memory), and such a line arrives before the reply read next: it is
    counted in `unexpected` (line -> count) and skipped.
    """

    def __init__(self, port, host=HOST, timeout=30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0
        self.unexpected = collections.Counter()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ProtocolError("server closed the connection")
        if self.pos > (1 << 20):
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += chunk

    def readline(self):
        """The next line without its CRLF."""
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end >= 0:
                line = bytes(self.buf[self.pos:end])
                self.pos = end + 2
                return line
            self._fill()

    def _read_block(self, n):
        """n bytes of data followed by CRLF."""
        while len(self.buf) - self.pos < n + 2:
            self._fill()
        data = bytes(self.buf[self.pos:self.pos + n])
        if self.buf[self.pos + n:self.pos + n + 2] != b"\r\n":
            raise ProtocolError("data block not terminated by CRLF")
        self.pos += n + 2
        return data

    def _stray(self, line):
        """Count an error line that answers an earlier noreply command."""
        if not line.startswith((b"SERVER_ERROR", b"CLIENT_ERROR", b"ERROR")):
            raise ProtocolError(f"unexpected reply line: {line[:80]!r}")
        self.unexpected[line.decode(errors="replace")] += 1

    def read_values(self):
        """The items of one get reply, as {key: (flags, data)}, up to END."""
        items = {}
        while True:
            line = self.readline()
            if line == b"END":
                return items
            if not line.startswith(b"VALUE "):
                self._stray(line)
                continue
            parts = line.split()
            items[parts[1]] = (int(parts[2]), self._read_block(int(parts[3])))

    def get_multi(self, keys, per_command=100, per_send=1000):
        """Fetch keys with multi-gets of per_command keys, per_send keys a round trip.

        Bounding a round trip keeps the request small enough to sit in the
        socket buffers, so the server never blocks writing replies we are not
        yet reading while we block sending.
        """
        items = {}
        for start in range(0, len(keys), per_send):
            group = keys[start:start + per_send]
            chunks = [group[i:i + per_command] for i in range(0, len(group), per_command)]
            self.send(b"".join(b"get " + b" ".join(c) + b"\r\n" for c in chunks))
            for _ in chunks:
                items.update(self.read_values())
        return items

    def stats(self):
        """`stats` as {name: str}."""
        self.send(b"stats\r\n")
        out = {}
        while True:
            line = self.readline()
            if line == b"END":
                return out
            if line.startswith(b"STAT "):
                _, name, value = line.decode().split(" ", 2)
                out[name] = value
            else:
                self._stray(line)


def set_noreply_batch(keys, values, flags=0, exptime=0):
    """The bytes of one pipelined batch of `set ... noreply` commands."""
    return b"".join(b"set %s %d %d %d noreply\r\n%s\r\n" % (k, flags, exptime, len(v), v)
                    for k, v in zip(keys, values))


def key_name(prefix, i):
    return b"%s:%010d" % (prefix, i)


def value_for(i, size):
    """A deterministic value for key number i, so a read can be checked."""
    seed = b"%010d" % i
    return (seed * (size // len(seed) + 1))[:size]


def fill_until_evicting(conn, size, prefix=b"key", overfill=1.3, batch=2000,
                        check_every=20000, max_keys=None, time_limit=120.0):
    """Write distinct keys prefix:%010d until the server evicts and is clearly full.

    Stops once `stats` shows evictions > 0 and the keys written reach
    overfill x curr_items, or at max_keys / time_limit (whichever first).
    Returns (keys written, last stats, whether it evicted).
    """
    written = 0
    deadline = time.monotonic() + time_limit
    stats = {}
    while True:
        for _ in range(max(1, check_every // batch)):
            ids = range(written, written + batch)
            conn.send(set_noreply_batch([key_name(prefix, i) for i in ids],
                                        [value_for(i, size) for i in ids]))
            written += batch
        stats = conn.stats()  # also a barrier: every set before it is done
        evicted = int(stats.get("evictions", 0)) > 0
        if evicted and written >= overfill * int(stats.get("curr_items", 0)):
            return written, stats, True
        if (max_keys and written >= max_keys) or time.monotonic() > deadline:
            return written, stats, evicted


# ---------------------------------------------------------------- reporting

def ratio(candidate, reference):
    if candidate is None or reference in (None, 0):
        return None
    return candidate / reference


def verdict(value, op, target):
    """'PASS'/'FAIL' for value op target, 'SKIP' when there is no value."""
    if value is None:
        return "SKIP"
    ok = value >= target if op == ">=" else value <= target
    return "PASS" if ok else "FAIL"


def fmt(value, spec=".2f"):
    return "-" if value is None else format(value, spec)


def table(headers, rows):
    """Rows of strings as an aligned text table (first column left-aligned)."""
    cols = list(zip(headers, *rows))
    widths = [max(len(str(c)) for c in col) for col in cols]
    def line(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out)


def timestamp():
    return time.strftime("%Y%m%d-%H%M%S")


def write_results(results_dir, name, data, stamp=None):
    """Write name-latest.json (and name-<stamp>.json if stamp); return the paths."""
    os.makedirs(results_dir, exist_ok=True)
    paths = [os.path.join(results_dir, f"{name}-latest.json")]
    if stamp:
        paths.insert(0, os.path.join(results_dir, f"{name}-{stamp}.json"))
    for path in paths:
        with open(path, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
    return paths


def header(title, paths, extra=""):
    """Print what runs against what, and how busy the machine is beforehand.

    Returns the busy fraction, for the results file: figures taken while
    something else (a build, a test suite) uses the CPUs are noise.
    """
    print(f"== {title}")
    for name in SERVERS:
        print(f"   {name:9} {paths[name]}")
    if extra:
        print(f"   {extra}")
    busy = machine_busy()
    print(f"   machine busy before start: {busy:.0%} of {os.cpu_count()} CPUs"
          + ("  WARNING: something else is running; figures will be noisy" if busy > 0.2 else ""))
    print(flush=True)
    return busy
