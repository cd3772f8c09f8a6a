"""Shared helpers for the integration suite: servers, connections, clients, checks.

A test is a plain function `test_<behaviour>(fx)` in a `test_*.py` module. `fx` is a Fixture:
it starts servers on free loopback ports and, when the test ends, closes every connection it
opened and stops every server (SIGTERM, then SIGKILL after a timeout). A server that died during
the test fails the test, with the tail of its output.

Every wait here is bounded: socket operations by IO_TIMEOUT, polling loops by both an iteration
count and a deadline.
"""

import atexit
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import types

from pymemcache.client.base import Client

HOST = "127.0.0.1"
MEMCACHED = "/usr/bin/memcached"
IO_TIMEOUT = 5.0
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
SENTINEL, SENTINEL_REPLY = b"mn\r\n", b"MN\r\n"
BINARY_VERSION = b"\x80\x0b" + b"\0" * 22  # the probe of a server started with -B binary


class Closed(Exception):
    """The server closed the connection while a reply was awaited; `received` is what came
    before the close."""

    def __init__(self, received):
        super().__init__(f"connection closed by the server after {received[:300]!r}")
        self.received = received


def is_memcached(binary):
    return os.path.basename(binary) == "memcached"


# ---- TLS: certificates made once per run with the openssl tool, and client contexts ---------------

_certs = None


def _openssl(*args, cwd):
    result = subprocess.run(["openssl", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {result.stderr[-500:]}")


def _issue(d, name, subject, ca=None, server=False):
    """<name>.key and <name>.pem in d: self-signed (a CA) when ca is None, else signed by ca."""
    if ca is None:
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "30",
                 "-subj", f"/CN={subject}", cwd=d)
        return
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server
                else "extendedKeyUsage=clientAuth\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={subject}", cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "30", "-extfile", ext, cwd=d)


def certs():
    """Paths of test certificates, made on first use and removed at exit: `ca` and `other_ca`
    (two CAs), `server` (127.0.0.1, by ca), `server2` (127.0.0.1, by other_ca), `client` (by ca)
    and `rogue` (a client by other_ca); each name has name.pem and name.key in `dir`."""
    global _certs
    if _certs is None:
        d = tempfile.mkdtemp(prefix="magpie-certs-")
        atexit.register(shutil.rmtree, d, True)
        _issue(d, "ca", "Magpie test CA")
        _issue(d, "other_ca", "Another CA")
        _issue(d, "server", "127.0.0.1", ca="ca", server=True)
        _issue(d, "server2", "127.0.0.1", ca="other_ca", server=True)
        _issue(d, "client", "magpie client", ca="ca")
        _issue(d, "rogue", "rogue client", ca="other_ca")
        _certs = types.SimpleNamespace(dir=d, **{
            n: types.SimpleNamespace(pem=os.path.join(d, f"{n}.pem"), key=os.path.join(d, f"{n}.key"))
            for n in ("ca", "other_ca", "server", "server2", "client", "rogue")})
    return _certs


def tls_flags(cert="server", verify=None, ca=None, extra=""):
    """The -Z flags for a server presenting `cert`; verify: ssl_verify_mode; ca: ssl_ca_cert."""
    c = certs()
    opts = f"ssl_chain_cert={getattr(c, cert).pem},ssl_key={getattr(c, cert).key}"
    if verify is not None:
        opts += f",ssl_verify_mode={verify}"
    if ca:
        opts += f",ssl_ca_cert={getattr(c, ca).pem}"
    return ["-Z", "-o", opts + (f",{extra}" if extra else "")]


def tls_context(trust="ca", cert=None, version=None):
    """A client context trusting `trust` (None: no verification), presenting `cert` if given,
    limited to TLS `version` ("1.2", "1.3") if given."""
    c = certs()
    ctx = ssl.create_default_context(cafile=getattr(c, trust).pem) if trust else \
        ssl._create_unverified_context()
    if cert:
        ctx.load_cert_chain(getattr(c, cert).pem, getattr(c, cert).key)
    if version:
        v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
        ctx.minimum_version = ctx.maximum_version = v
    return ctx


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def server_argv(binary, port, threads=4, memory_mb=64, max_conns=1024, item_max=None, extra=(), prefix=()):
    """The command line, with memcached's flags; memcached alone gets -U 0 (and -u root).
    `extra` is appended as is; `prefix` comes first (a command that runs the server, as prlimit)."""
    argv = list(prefix) + [binary, "-p", str(port), "-l", HOST, "-t", str(threads), "-m", str(memory_mb),
            "-c", str(max_conns)]
    if item_max:
        argv += ["-I", item_max]
    if is_memcached(binary):
        argv += ["-U", "0"] + (["-u", "root"] if os.geteuid() == 0 else [])
    return argv + list(extra)


def rss(srv):
    """The server's resident set size in bytes (VmRSS)."""
    with open(f"/proc/{srv.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/PID/status")


def alone(fn):
    """Marks a test that loads the machine (thousands of connections, hundreds of MB in flight):
    run.py -j runs it after the others, with nothing beside it, so neither it nor they wait on
    the other's load."""
    fn.alone = True
    return fn


def bounded(iterations, seconds):
    """Yield 0, 1, ... at most `iterations` times and for at most `seconds`: the shape of every
    loop in the suite."""
    deadline = time.monotonic() + seconds
    for i in range(iterations):
        if time.monotonic() > deadline:
            return
        yield i


def poll(probe, timeout, interval=0.05):
    """Call probe() until it returns something truthy or `timeout` seconds pass; return the
    last result."""
    result = None
    for _ in bounded(int(timeout / interval) + 1, timeout):
        result = probe()
        if result:
            break
        time.sleep(interval)
    return result


def run_threads(workers, timeout):
    """Run each callable in its own thread and wait at most `timeout` seconds for all of them;
    re-raise the first exception any of them raised."""
    errors = []

    def wrap(work):
        try:
            work()
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(w,), daemon=True) for w in workers]
    deadline = time.monotonic() + timeout
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if errors:
        raise errors[0]
    if any(t.is_alive() for t in threads):
        raise AssertionError(f"worker threads still running after {timeout}s")


class Server:
    """One server process listening on a free port of 127.0.0.1."""

    def __init__(self, binary, env=None, tls=None, **opts):
        """`env`: variables to add to the server's environment; `tls`: the client context its
        port speaks TLS with (the readiness probe and fx.conn use it)."""
        self.output = tempfile.TemporaryFile()  # its stdout and stderr, shown if it dies
        self.tls = tls
        environ = dict(os.environ, **(env or {}))
        for _ in range(3):  # another process may take the free port before the server binds it
            self.port = free_port()
            self.argv = server_argv(binary, self.port, **opts)
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, env=environ,
                                         stdout=self.output, stderr=self.output)
            if poll(self._ready, START_TIMEOUT, 0.01) and self.alive():
                return
            self._terminate()
        message = f"server did not start: {' '.join(self.argv)}\n{self.tail()}"
        self.output.close()
        raise RuntimeError(message)

    def _ready(self):
        if not self.alive():
            return True  # exited: stop waiting, the caller sees it
        try:
            # A whole round trip, not just a connect: the server has then accepted and counted
            # this probe before any test reads its connection statistics.
            with connect(self.port, self.tls) as probe:
                binary = "-B" in self.argv and self.argv[self.argv.index("-B") + 1] == "binary"
                probe.sendall(BINARY_VERSION if binary else b"version\r\n")
                reply = b""
                while not (len(reply) >= 24 + int.from_bytes(reply[8:12], "big") if binary
                           else reply.endswith(b"\r\n")):
                    chunk = probe.recv(256)
                    if not chunk:
                        return False
                    reply += chunk
            return True
        except OSError:  # ssl.SSLError among them
            return False

    def alive(self):
        return self.proc.poll() is None

    def tail(self, lines=20):
        self.output.seek(0)
        return b"\n".join(self.output.read().splitlines()[-lines:]).decode(errors="replace")

    def _terminate(self):
        """SIGTERM, then SIGKILL after STOP_TIMEOUT."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)

    def stop(self):
        self._terminate()
        self.output.close()


def connect(port, tls=None):
    """A TCP connection to 127.0.0.1:port, with TLS through the context `tls` if given (the
    handshake done)."""
    sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is None:
        return sock
    try:
        return tls.wrap_socket(sock, server_hostname=HOST)
    except BaseException:
        sock.close()
        raise


class Conn:
    """A raw client connection, over TLS if the server speaks it. Replies accumulate in a buffer
    until a read takes them."""

    def __init__(self, port, tls=None):
        self.sock = connect(port, tls)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _take(self):
        out, self.buf = self.buf, b""
        return out

    def _recv(self, timeout):
        """One recv into the buffer; raises Closed on end of stream or reset."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(1 << 20)
        except (ConnectionResetError, ssl.SSLError):  # a TLS alert or a reset ends it too
            chunk = b""
        if not chunk:
            raise Closed(self._take())
        self.buf += chunk

    def read_until(self, done, timeout=IO_TIMEOUT):
        """Read until done(buffer) is true; return and clear the buffer."""
        deadline = time.monotonic() + timeout
        for _ in bounded(1 << 20, timeout):
            if done(self.buf):
                break
            try:
                self._recv(deadline - time.monotonic())
            except socket.timeout:
                pass
        if not done(self.buf):
            raise AssertionError(f"no complete reply within {timeout}s; got {self.buf[:300]!r}")
        return self._take()

    def read_line(self, timeout=IO_TIMEOUT):
        return self.read_until(lambda b: b.endswith(b"\r\n"), timeout)

    def read_for(self, seconds):
        """Whatever arrives within `seconds`, stopping early at a close: (data, closed)."""
        deadline = time.monotonic() + seconds
        for _ in bounded(1 << 20, seconds):
            try:
                self._recv(deadline - time.monotonic())
            except socket.timeout:
                break
            except Closed as closed:
                return closed.received, True
        return self._take(), False

    def request(self, data, timeout=IO_TIMEOUT):
        """Send data followed by the `mn` sentinel and return every reply before the sentinel's.
        (A value ending in "\\r\\nMN" would end the read early; no test stores one.)"""
        self.send(data + SENTINEL)
        out = self.read_until(
            lambda b: b == SENTINEL_REPLY or b.endswith(b"\r\n" + SENTINEL_REPLY), timeout)
        return out[:-len(SENTINEL_REPLY)]

    def stats(self, group=b""):
        """`stats [group]` as {name: value} (both str); the reply must end with END."""
        reply = self.request(b"stats" + (b" " + group if group else b"") + b"\r\n")
        if not reply.endswith(b"END\r\n"):
            raise AssertionError(f"stats {group.decode()}: no END in {reply[-200:]!r}")
        out = {}
        for line in reply.split(b"\r\n")[:-2]:
            parts = line.split(b" ", 2)
            if len(parts) == 3 and parts[0] == b"STAT":
                out[parts[1].decode()] = parts[2].decode()
        return out

    def close(self):
        self.sock.close()


class Fixture:
    """What a test receives: `binary` plus factories for servers, raw connections and
    pymemcache clients, all cleaned up when the test ends."""

    def __init__(self, binary):
        self.binary = binary
        self._servers, self._closers = [], []
        self._default = None

    def server(self, binary=None, **opts):
        """A new server of `binary` (default: the one under test) with the given options
        (threads, memory_mb, max_conns, item_max, extra, env)."""
        srv = Server(binary or self.binary, **opts)
        self._servers.append(srv)
        return srv

    @property
    def default(self):
        """The test's default server, started on first use."""
        if self._default is None:
            self._default = self.server()
        return self._default

    def conn(self, server=None, tls=None):
        """A raw connection; over TLS with the server's own context, or `tls` if given."""
        srv = server or self.default
        c = Conn(srv.port, tls or srv.tls)
        self._closers.append(c.close)
        return c

    def client(self, server=None, tls=None):
        """A pymemcache client; over TLS (its tls_context) as for conn()."""
        srv = server or self.default
        c = Client((HOST, srv.port), connect_timeout=IO_TIMEOUT, timeout=IO_TIMEOUT,
                   default_noreply=False, tls_context=tls or srv.tls)
        self._closers.append(c.close)
        return c

    def defer(self, close):
        """Call close() when the test ends, before the servers stop (helper processes, files)."""
        self._closers.append(close)

    def teardown(self):
        """Close everything and start stopping the servers; return a list of problems (servers
        that died during the test)."""
        for close in reversed(self._closers):
            try:
                close()
            except OSError:
                pass
        problems = []
        for srv in self._servers:
            if not srv.alive():
                problems.append(f"server {' '.join(srv.argv)} exited during the test with "
                                f"status {srv.proc.returncode}:\n{srv.tail()}")
            stop_in_background(srv)
        return problems


# memcached takes up to a second to exit after SIGTERM (it waits for its clock tick), so
# servers are stopped in background threads while the next test runs.
_stoppers = []


def stop_in_background(srv):
    thread = threading.Thread(target=srv.stop, daemon=True)
    thread.start()
    _stoppers.append(thread)


def wait_for_stopped_servers():
    deadline = time.monotonic() + 2 * STOP_TIMEOUT + 1
    for thread in _stoppers:
        thread.join(max(0.0, deadline - time.monotonic()))


def expect(actual, expected, what="value"):
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")
