"""ASCII authentication (-Y FILE): side by side with memcached -Y, byte for byte, then what only
the server under test is asked to do with it: authentication over TLS and on a unix socket,
pymemcache as the client, SIGHUP reloading the file, and the flags and files it refuses.

Before a connection authenticates, requests are sent one at a time and their one-line replies
compared: memcached 1.6.18 answers only the last of several requests that arrive together then (it
writes each reply over the one before in the same response object), where the server under test
answers each, as it does after authenticating. After it, the usual `mn` sentinel.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile

import harness
from harness import MEMCACHED, expect

USERS = b"alice:secret\nbob:hunter2\r\n"  # a "\r\n" line end too, as files may have
BAD_TOKEN = b"CLIENT_ERROR bad authentication token format\r\n"
UNAUTH = b"CLIENT_ERROR unauthenticated\r\n"
FAILURE = b"CLIENT_ERROR authentication failure\r\n"
QUIET = 0.3


def users_file(fx, content=USERS):
    d = tempfile.mkdtemp(prefix="magpie-auth-")
    fx.defer(lambda: shutil.rmtree(d, True))
    path = os.path.join(d, "users")
    with open(path, "wb") as f:
        f.write(content)
    return path


def auth(user, password):
    value = user + b" " + password
    return b"set auth 0 0 %d\r\n%s\r\n" % (len(value), value)


def pre_request(conn, data):
    """The one-line reply to one request from a connection not yet authenticated."""
    conn.send(data)
    return conn.read_line()


class Pair:
    """memcached -Y and the server under test -Y, one connection each, sent the same bytes."""

    def __init__(self, fx, path, extra=()):
        flags = ["-Y", path, *extra]
        self.servers = [fx.server(MEMCACHED, threads=2, extra=flags), fx.server(threads=2, extra=flags)]
        self.conns = [fx.conn(s) for s in self.servers]

    def same(self, send, data, what):
        replies = [send(c, data) for c in self.conns]
        expect(replies[1], replies[0], f"{what}: reply to {data[:60]!r} (memcached's first)")
        return replies[1]

    def pre(self, data, expected=None):
        reply = self.same(pre_request, data, "before authenticating")
        if expected is not None:
            expect(reply, expected, f"reply to {data[:60]!r}")

    def post(self, data, expected=None):
        reply = self.same(lambda c, d: c.request(d), data, "after authenticating")
        if expected is not None:
            expect(reply, expected, f"reply to {data[:60]!r}")

    def quiet(self, data):
        return self.same(lambda c, d: (c.send(d), c.read_for(QUIET))[1], data, "waiting or closing")


def test_every_command_is_refused_until_the_connection_authenticates(fx):
    p = Pair(fx, users_file(fx))
    for request in (b"get foo\r\n", b"version\r\n", b"stats\r\n", b"quit\r\n", b"flush_all\r\n",
                    b"mn\r\n", b"mg foo v\r\n", b"bogus\r\n"):
        p.pre(request, UNAUTH)
    p.pre(b"set k 0 0\r\n", UNAUTH)  # too few tokens: not an authentication
    p.pre(b"set k 0 0 abc\r\n", UNAUTH)  # a length that is no number
    p.pre(b"add k 0 0 12\r\n", UNAUTH)  # only set authenticates
    p.pre(auth(b"alice", b"wrong"), FAILURE)
    p.pre(auth(b"alice", b"secre"), FAILURE)
    p.pre(auth(b"alice", b"secrets"), FAILURE)
    p.pre(auth(b"carol", b"secret"), FAILURE)
    p.pre(auth(b"alice", b"hunter2"), FAILURE)  # bob's password
    p.pre(b"set a 0 0 5\r\nalice\r\n", BAD_TOKEN)  # one token
    p.pre(b"set a 0 0 12\r\nalice secretXY", b"CLIENT_ERROR bad command line termination\r\n")
    p.pre(b"get foo\r\n", UNAUTH)  # still not authenticated
    p.post(auth(b"alice", b"secret"), b"STORED\r\n")
    p.post(b"set k 0 0 1\r\nv\r\nget k\r\n", b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n")
    # an authentication after that is an ordinary set
    p.post(auth(b"bob", b"hunter2"), b"STORED\r\n")
    p.post(b"get auth\r\n", b"VALUE auth 0 11\r\nbob hunter2\r\nEND\r\n")


def test_operator_commands_are_refused_until_the_connection_authenticates(fx):
    """The admin commands, key listings, watchers and shutdown (-A) wait for an authentication
    like any other command."""
    p = Pair(fx, users_file(fx), extra=["-A"])
    for request in (b"lru_crawler metadump all\r\n", b"watch mutations\r\n", b"slabs automove 1\r\n",
                    b"cache_memlimit 64\r\n", b"stats conns\r\n", b"stats detail dump\r\n",
                    b"stats cachedump 1 0\r\n", b"shutdown\r\n", b"refresh_certs\r\n"):
        p.pre(request, UNAUTH)
    p.post(auth(b"alice", b"secret"), b"STORED\r\n")  # shutdown did not stop either server
    p.post(b"slabs automove 1\r\n", b"OK\r\n")


def test_any_key_flags_and_exptime_and_extra_tokens_authenticate(fx):
    p = Pair(fx, users_file(fx))
    p.pre(b"set whatever 123 -1 17 noreply\r\nbob hunter2 extra\r\n", b"STORED\r\n")
    p.post(b"get whatever\r\n", b"END\r\n")  # nothing was stored by it


def test_counters_and_stats_settings_as_memcached(fx):
    path = users_file(fx)
    p = Pair(fx, path)
    for request, reply in ((auth(b"alice", b"nope"), FAILURE), (auth(b"bob", b"nope"), FAILURE),
                           (b"get x\r\n", UNAUTH), (b"set a 0 0 1\r\nx\r\n", BAD_TOKEN)):
        p.pre(request, reply)
    p.post(auth(b"bob", b"hunter2"), b"STORED\r\n")
    for conn in p.conns:
        lines = dict(line.split(b" ")[1:3] for line in conn.request(b"stats\r\n").split(b"\r\n")
                     if line.startswith(b"STAT "))
        expect((lines[b"auth_cmds"], lines[b"auth_errors"]), (b"3", b"2"), "auth_cmds, auth_errors")
        settings = dict(line.split(b" ")[1:3] for line in
                        conn.request(b"stats settings\r\n").split(b"\r\n") if line.startswith(b"STAT "))
        expect((settings[b"auth_enabled_ascii"], settings[b"auth_enabled_sasl"],
                settings[b"binding_protocol"]), (path.encode(), b"no", b"ascii"), "stats settings")


def test_binary_requests_and_long_lines_are_handled_as_memcached(fx):
    p = Pair(fx, users_file(fx))
    p.quiet(harness.BINARY_VERSION)  # no line end: both wait for one
    reply, closed = p.quiet(b"\n")
    expect((reply, closed), (UNAUTH, False), "the binary request's bytes, once a line ends")
    expect(p.quiet(b"x" * 3000)[1], True, "a line with no end in 2048 bytes closes the connection")


def test_requests_sent_together_before_authenticating_are_each_answered(fx):
    if harness.is_memcached(fx.binary):
        return  # memcached answers only the last (see the top of this file)
    srv = fx.server(extra=["-Y", users_file(fx)])
    conn = fx.conn(srv)
    conn.send(b"get foo\r\nversion\r\n" + auth(b"alice", b"no") + b"set a 0 0 1\r\nx\r\n" +
              auth(b"alice", b"secret") + b"get foo\r\n")
    expect(conn.read_until(lambda b: b.endswith(b"END\r\n")),
           UNAUTH * 2 + FAILURE + BAD_TOKEN + b"STORED\r\nEND\r\n", "each request's reply")


def test_a_password_too_long_to_be_one_is_refused(fx):
    if harness.is_memcached(fx.binary):
        return  # memcached closes the connection (or, from 2 KB, answers the wrong request)
    path = users_file(fx)
    srv = fx.server(extra=["-Y", path])
    conn = fx.conn(srv)
    value = b"alice " + b"x" * 20000
    conn.send(b"set a 0 0 %d\r\n%s\r\n" % (len(value), value) + b"get a\r\n")
    expect(conn.read_until(lambda b: b.count(b"\r\n") == 2), FAILURE + UNAUTH,
           "a 20 KB authentication, then a get")
    expect(conn.request(auth(b"alice", b"secret")), b"STORED\r\n", "then one that is right")


def test_blank_lines_and_more_than_eight_users_are_read(fx):
    if harness.is_memcached(fx.binary):
        return  # memcached refuses a blank line and reads the first 8 users only
    lines = b"\n".join(b"user%d:pass%d" % (i, i) for i in range(20))
    srv = fx.server(extra=["-Y", users_file(fx, b"\n" + lines + b"\n\n")])
    expect(fx.conn(srv).request(auth(b"user19", b"pass19")), b"STORED\r\n", "the 20th user")


def test_pymemcache_authenticates_with_a_set(fx):
    srv = fx.server(extra=["-Y", users_file(fx)])
    client = fx.client(srv)
    try:
        client.get("before")
        raise AssertionError("a get before authenticating was answered")
    except Exception as exc:  # pymemcache raises its MemcacheClientError for CLIENT_ERROR
        expect("unauthenticated" in str(exc), True, f"the error: {exc}")
    expect(client.set("auth", b"alice secret"), True, "set auth 'alice secret'")
    expect(client.set("k", b"v"), True, "set after authenticating")
    expect(client.get("k"), b"v", "get after authenticating")


def test_authentication_over_tls(fx):
    srv = fx.server(extra=["-Y", users_file(fx)] + harness.tls_flags(), tls=harness.tls_context())
    tls = fx.conn(srv)
    expect(pre_request(tls, b"get x\r\n"), UNAUTH, "over TLS, before authenticating")
    expect(pre_request(tls, auth(b"bob", b"nope")), FAILURE, "over TLS, a wrong password")
    expect(tls.request(auth(b"bob", b"hunter2") + b"set t 0 0 1\r\n1\r\nget t\r\n"),
           b"STORED\r\nSTORED\r\nVALUE t 0 1\r\n1\r\nEND\r\n", "over TLS")


def test_authentication_on_a_unix_socket_beside_tcp(fx):
    if harness.is_memcached(fx.binary):
        return  # memcached listens on the unix socket alone when given -s
    d = tempfile.mkdtemp(prefix="magpie-auth-unix-")
    fx.defer(lambda: shutil.rmtree(d, True))
    sock_path = os.path.join(d, "m.sock")
    srv = fx.server(extra=["-Y", users_file(fx), "-s", sock_path])
    expect(pre_request(fx.conn(srv), b"get t\r\n"), UNAUTH, "over TCP, before authenticating")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.settimeout(harness.IO_TIMEOUT)
    unix.connect(sock_path)
    fx.defer(unix.close)
    unix.sendall(b"get t\r\n")
    expect(unix.recv(4096), UNAUTH, "on the unix socket, before authenticating")
    unix.sendall(auth(b"alice", b"secret") + b"set t 0 0 1\r\n1\r\nget t\r\n")
    reply = b""
    for _ in harness.bounded(100, harness.IO_TIMEOUT):
        if reply.endswith(b"END\r\n"):
            break
        chunk = unix.recv(4096)
        if not chunk:
            break
        reply += chunk
    expect(reply, b"STORED\r\nSTORED\r\nVALUE t 0 1\r\n1\r\nEND\r\n", "on the unix socket")


def test_sighup_reads_the_file_again(fx):
    path = users_file(fx)
    for binary in (MEMCACHED, fx.binary):
        with open(path, "wb") as f:
            f.write(USERS)
        srv = fx.server(binary, extra=["-Y", path])
        conn = fx.conn(srv)
        expect(pre_request(conn, auth(b"carol", b"new")), FAILURE, f"{binary}: carol before")
        with open(path, "wb") as f:
            f.write(b"carol:new\n")
        srv.proc.send_signal(signal.SIGHUP)
        # memcached reloads on its next clock tick: ask until it is done
        ok = harness.poll(lambda: pre_request(fx.conn(srv), auth(b"carol", b"new")) == b"STORED\r\n", 5.0)
        expect(bool(ok), True, f"{binary}: carol's password after SIGHUP")
        expect(pre_request(fx.conn(srv), auth(b"alice", b"secret")), FAILURE, f"{binary}: alice, gone")
        with open(path, "wb") as f:
            f.write(b"no colon on this line\n")
        srv.proc.send_signal(signal.SIGHUP)
        expect(pre_request(fx.conn(srv), auth(b"carol", b"new")), b"STORED\r\n",
               f"{binary}: a malformed file leaves the users as they were")
        expect(srv.alive(), True, f"{binary} alive after SIGHUP")


def run_binary(binary, *args):
    return subprocess.run([binary, *args], stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=harness.START_TIMEOUT)


def test_flags_and_files_it_refuses_as_memcached(fx):
    good = users_file(fx)
    bad = users_file(fx, b"alice:secret\nno colon\n")
    port = str(harness.free_port())
    for binary in (MEMCACHED, fx.binary):
        base = harness.server_argv(binary, port)[1:]
        result = run_binary(binary, *base, "-Y", good, "-B", "binary")
        expect(result.returncode, 64, f"{binary} -Y -B binary: exit status")
        expect(b"You cannot allow the BINARY protocol while using ascii authentication tokens" in
               result.stderr, True, f"{binary} -Y -B binary: {result.stderr!r}")
        result = run_binary(binary, *base, "-Y", bad)
        expect(result.returncode, 1, f"{binary} -Y with a malformed file: exit status")
        expect(b"has a malformed entry. Should be 'user:password'" in result.stderr, True,
               f"{binary} -Y malformed: {result.stderr!r}")
        result = run_binary(binary, *base, "-Y", good + ".missing")
        expect(result.returncode, 1, f"{binary} -Y with no such file: exit status")
        expect(b"Could not open authfile [" in result.stderr, True, f"{binary}: {result.stderr!r}")
