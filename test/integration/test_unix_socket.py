"""The unix socket listener: -s PATH with -a MODE, next to the TCP port.

memcached turns TCP off when given -s, so against it the server is started here, on the unix
socket alone, and the TCP parts are left out.
"""

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import tempfile

from pymemcache.client.base import Client

import harness
from harness import expect


def unix_request(path, data, end=b"END\r\n", timeout=harness.IO_TIMEOUT):
    """Send data over the unix socket and read until the reply ends with `end`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(data)
        reply = b""
        for _ in harness.bounded(1 << 16, timeout):
            if reply.endswith(end):
                return reply
            chunk = s.recv(1 << 16)
            if not chunk:
                raise AssertionError(f"connection closed; received {reply[:300]!r}")
            reply += chunk
        raise AssertionError(f"no reply ending in {end!r} within {timeout}s: {reply[:300]!r}")


def connectable(path):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(harness.IO_TIMEOUT)
            s.connect(path)
        return True
    except OSError:
        return False


def restore_umask(old):
    if old is not None:
        os.umask(old)


@contextlib.contextmanager
def server_on_unix_socket(fx, mode, stale=False, umask=None):
    """(path, harness.Server or None) of a server listening on <tmpdir>/m.sock with `mode`.
    stale: leave a dead socket file at the path first, as a crashed server would; umask: the
    umask the server starts with."""
    tmpdir = tempfile.mkdtemp(prefix="magpie-unix-")
    path = os.path.join(tmpdir, "m.sock")
    proc = None
    if stale:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(path)
    old_umask = os.umask(umask) if umask is not None else None
    try:
        if not harness.is_memcached(fx.binary):
            srv = fx.server(extra=["-s", path, "-a", mode])
            restore_umask(old_umask)
            if not harness.poll(lambda: connectable(path), harness.START_TIMEOUT):
                raise AssertionError(f"nothing listens on {path}:\n{srv.tail()}")
            yield path, srv
            return
        argv = [fx.binary, "-s", path, "-a", mode, "-U", "0"]
        argv += ["-u", "root"] if os.geteuid() == 0 else []
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        restore_umask(old_umask)
        if not harness.poll(lambda: proc.poll() is not None or connectable(path),
                            harness.START_TIMEOUT) or proc.poll() is not None:
            raise AssertionError(f"{' '.join(argv)} did not start")
        yield path, None
    finally:
        restore_umask(old_umask)
        if proc:
            proc.terminate()
            try:
                proc.wait(harness.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(harness.STOP_TIMEOUT)
        shutil.rmtree(tmpdir, ignore_errors=True)


def test_unix_socket_file_has_the_requested_mode(fx):
    with server_on_unix_socket(fx, "0770") as (path, _):
        mode = os.stat(path).st_mode
        expect(stat.S_ISSOCK(mode), True, "the path is a socket")
        expect(oct(stat.S_IMODE(mode)), oct(0o770), "socket file mode")


def test_set_and_get_over_the_unix_socket(fx):
    with server_on_unix_socket(fx, "0770") as (path, _):
        client = Client(path, connect_timeout=harness.IO_TIMEOUT, timeout=harness.IO_TIMEOUT,
                        default_noreply=False)
        try:
            expect(client.set("unix:key", b"over a unix socket", expire=0), True, "set")
            expect(client.get("unix:key"), b"over a unix socket", "get")
            expect(client.get("unix:missing"), None, "get of a missing key")
        finally:
            client.close()


def test_unix_socket_and_tcp_share_one_cache(fx):
    with server_on_unix_socket(fx, "0770") as (path, srv):
        if srv is None:
            return  # memcached serves no TCP once given -s
        unix_client = Client(path, timeout=harness.IO_TIMEOUT, default_noreply=False)
        try:
            expect(unix_client.set("shared", b"from unix"), True, "set over unix")
            c = fx.conn(srv)
            expect(c.request(b"get shared\r\n"), b"VALUE shared 0 9\r\nfrom unix\r\nEND\r\n",
                   "get over TCP")
        finally:
            unix_client.close()


def test_stats_settings_shows_the_domain_socket(fx):
    with server_on_unix_socket(fx, "0770") as (path, _):
        reply = unix_request(path, b"stats settings\r\n").decode()
        settings = dict(line.split(" ", 2)[1:] for line in reply.split("\r\n")
                        if line.startswith("STAT "))
        expect((settings.get("domain_socket"), settings.get("umask")), (path, "770"),
               "domain_socket and umask")


def test_health_probe_reaches_the_unix_socket(fx):
    if harness.is_memcached(fx.binary):
        return  # --health is Magpie's
    with server_on_unix_socket(fx, "0770") as (path, _):
        probe = subprocess.run([fx.binary, "--health", path], capture_output=True,
                               timeout=harness.IO_TIMEOUT)
        expect(probe.returncode, 0, f"--health {path} exit status ({probe.stderr!r})")


def test_a_stale_socket_file_is_replaced(fx):
    with server_on_unix_socket(fx, "0770", stale=True) as (path, _):
        expect(unix_request(path, b"version\r\n", end=b"\r\n").startswith(b"VERSION "), True,
               "version over a socket that replaced a stale file")


def test_a_narrow_umask_does_not_change_the_socket_mode(fx):
    with server_on_unix_socket(fx, "0770", umask=0o077) as (path, _):
        expect(oct(stat.S_IMODE(os.stat(path).st_mode)), oct(0o770), "socket file mode")
