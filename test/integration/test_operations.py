"""Running the server: logging (-v, -vv, the start-up line), flag errors, -h and -V, SIGTERM,
and the `stats settings` / `stats conns` an operator reads.

memcached has no connection log at -v and no start-up line, and exits 1 on an unknown flag:
those parts are checked against Magpie only.
"""

import os
import re
import signal
import socket
import subprocess
import time

import harness
from harness import expect

RUN_TIMEOUT = 5.0


def output_of(srv):
    """Everything the server wrote to stdout and stderr so far."""
    srv.output.seek(0)
    return srv.output.read().decode(errors="replace")


def wait_for_output(srv, pattern, timeout=3.0):
    """The first match of `pattern` in the server's output, waiting for it at most `timeout` s."""
    found = harness.poll(lambda: re.search(pattern, output_of(srv)), timeout)
    if not found:
        raise AssertionError(f"server output never matched {pattern!r}; output:\n{srv.tail()}")
    return found


def run_binary(binary, *args):
    return subprocess.run([binary, *args], stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=RUN_TIMEOUT)


def stats(conn, which=b""):
    """`stats <which>` as a list of (name, value) pairs, in the order the server sent them."""
    reply = conn.request(b"stats " + which + b"\r\n")
    lines = reply.split(b"\r\n")
    expect(lines[-2:], [b"END", b""], f"end of stats {which.decode()}")
    pairs = []
    for line in lines[:-2]:
        parts = line.decode().split(" ", 2)
        expect(parts[0], "STAT", "stats line")
        pairs.append((parts[1], parts[2]))
    return pairs


def test_verbose_logs_connection_events_but_not_commands(fx):
    srv = fx.server(extra=["-v"])
    magpie = not harness.is_memcached(fx.binary)  # memcached logs no connection events at -v

    def events(kind):
        return len(re.findall(rf"magpie: conn \d+: {kind}\n", output_of(srv)))
    if magpie:  # the harness's readiness probe came and went first
        harness.poll(lambda: events("new tcp connection") == events("closed") > 0, 3.0)
        before = events("new tcp connection")
        expect(events("closed"), before, "connections logged as closed before the test's")
    c = fx.conn(srv)
    expect(c.request(b"set vkey 0 0 1\r\nx\r\n"), b"STORED\r\n")
    if magpie:
        expect(events("new tcp connection"), before + 1, "connections logged as new")
    c.close()
    if magpie:
        harness.poll(lambda: events("closed") == before + 1, 3.0)
        expect(events("closed"), before + 1, "connections logged as closed")
    # a later connection's reply proves the log has caught up with the first one's commands
    fx.conn(srv).request(b"version\r\n")
    time.sleep(0.2)
    expect(re.search(r"<\d+ set vkey", output_of(srv)), None, "a command logged at -v")


def test_very_verbose_logs_every_command(fx):
    srv = fx.server(extra=["-vv"])
    c = fx.conn(srv)
    expect(c.request(b"set vvkey 0 0 1\r\nx\r\nget vvkey\r\n"),
           b"STORED\r\nVALUE vvkey 0 1\r\nx\r\nEND\r\n")
    first = wait_for_output(srv, r"<(\d+) set vvkey 0 0 1\n")
    wait_for_output(srv, rf"<{first.group(1)} get vvkey\n")


def test_startup_line_names_the_effective_configuration(fx):
    if harness.is_memcached(fx.binary):
        return  # memcached writes no start-up line
    srv = fx.server(threads=3, memory_mb=48, max_conns=100, item_max="512k")
    line = wait_for_output(srv, r"magpie: magpie \S+ listening on [^\n]*\n").group(0)
    expected = (f"listening on 127.0.0.1:{srv.port}; threads 3, memory 48 MiB, "
                f"max item 524288 bytes, max connections 100,")
    if expected not in line:
        raise AssertionError(f"start-up line: expected it to contain {expected!r}, got {line!r}")


def test_unknown_flag_exits_64_with_a_message(fx):
    result = run_binary(fx.binary, "--no-such-flag")
    expect(result.stdout, b"", "stdout")
    if harness.is_memcached(fx.binary):  # memcached exits 1 here
        expect(result.returncode != 0, True, "memcached exits non-zero")
        expect(b"unrecognized option '--no-such-flag'" in result.stderr, True, "stderr names it")
        return
    expect(result.returncode, 64, "exit status")
    expect(result.stderr, b"magpie: unknown option: --no-such-flag; see magpie -h\n", "stderr")


def test_bad_flag_value_exits_64_with_a_message(fx):
    if harness.is_memcached(fx.binary):
        return  # memcached takes most malformed numbers as they come (atoi)
    for args, message in [
            (["-t", "0"], b"magpie: -t: threads must be a number from 1 to 256: 0\n"),
            (["-p", "70000"], b"magpie: -p: not a port number: 70000\n"),
            (["-m", "lots"], b"magpie: -m: not a memory size: lots\n"),
            (["-B", "udp"], b"magpie: -B udp: should be one of auto, binary, or ascii\n"),
            (["-p"], b"magpie: option -p needs a value; see magpie -h\n")]:
        result = run_binary(fx.binary, *args)
        expect(result.returncode, 64, f"exit status of {args}")
        expect(result.stderr, message, f"stderr of {args}")


def test_a_port_another_server_listens_on_makes_the_start_fail(fx):
    # Magpie binds each address once per worker with SO_REUSEPORT, which a second Magpie of the
    # same user could join unnoticed and take half the connections; it must fail instead, as a
    # second memcached does. Both servers have several workers, and the first keeps serving.
    first = fx.server(threads=2)
    c = fx.conn(first)
    expect(c.request(b"set k 0 0 1\r\nv\r\n"), b"STORED\r\n", "set on the first server")
    result = subprocess.run(harness.server_argv(fx.binary, first.port, threads=2), stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=RUN_TIMEOUT)
    expect(result.returncode != 0, True, f"the second server exited (status {result.returncode})")
    expect(b"Address already in use" in result.stderr, True, f"its message: {result.stderr[-300:]!r}")
    if not harness.is_memcached(fx.binary):
        expect(result.returncode, 1, "exit status")
    for _ in range(20):  # new connections, so the kernel's hash would have sent some to the second
        expect(fx.conn(first).request(b"get k\r\n"), b"VALUE k 0 1\r\nv\r\nEND\r\n", "get on the first server")


def test_help_exits_0_with_usage(fx):
    result = run_binary(fx.binary, "-h")
    expect(result.returncode, 0, "exit status")
    name = os.path.basename(fx.binary).encode()
    expect(result.stdout.startswith(name + b" "), True, f"usage starts with {name!r}")
    expect(b"-p" in result.stdout and b"-m" in result.stdout, True, "usage lists -p and -m")


def test_version_flag_exits_0_with_the_version(fx):
    result = run_binary(fx.binary, "-V")
    expect(result.returncode, 0, "exit status")
    if harness.is_memcached(fx.binary):
        expected = rb"memcached 1\.6\.\d+\n"
    else:
        expected = rb"magpie \d+\.\d+\.\d+\n"
    expect(bool(re.fullmatch(expected, result.stdout)), True, f"-V output {result.stdout!r}")


def sigterm_exits_0_in_time(fx, srv, what):
    """SIGTERM the server: it must exit 0 within a second (memcached, which notices signals on
    its once-a-second clock tick, within two)."""
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    try:
        status = srv.proc.wait(harness.STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {harness.STOP_TIMEOUT}s after SIGTERM")
    elapsed = time.monotonic() - started
    expect(status, 0, "exit status")
    limit = 2.0 if harness.is_memcached(fx.binary) else 1.0
    if elapsed >= limit:
        raise AssertionError(f"exit took {elapsed:.2f}s after SIGTERM{what}, expected under {limit}s")


def test_sigterm_with_a_client_connected_exits_0_within_a_second(fx):
    # Not fx.server(): the fixture fails a test whose server exited during it.
    srv = harness.Server(fx.binary)
    c = None
    try:
        c = harness.Conn(srv.port)
        expect(c.request(b"set term 0 0 2\r\nhi\r\n"), b"STORED\r\n")
        sigterm_exits_0_in_time(fx, srv, "")
        data, closed = c.read_for(1.0)
        expect((data, closed), (b"", True), "the connected client sees the connection closed")
    finally:
        if c:
            c.close()
        srv.stop()


def test_sigterm_with_clients_that_do_not_read_exits_0_within_a_second(fx):
    srv = harness.Server(fx.binary)
    flooders = []
    try:
        c = harness.Conn(srv.port)
        big = b"b" * (500 * 1024)
        expect(c.request(b"set big 0 0 %d\r\n%s\r\n" % (len(big), big)), b"STORED\r\n")
        c.close()
        flooders = [socket.create_connection((harness.HOST, srv.port)) for _ in range(4)]
        for s in flooders:
            s.setblocking(False)
        burst = b"get big\r\n" * 1000
        for _ in harness.bounded(2000, 3.0):  # until no flooder can send more: the server is stuck
            progress = False
            for s in flooders:
                try:
                    s.send(burst)
                    progress = True
                except BlockingIOError:
                    pass
            if not progress:
                break
        sigterm_exits_0_in_time(fx, srv, " with replies unread")
    finally:
        for s in flooders:
            s.close()
        srv.stop()


def test_verbosity_command_turns_command_logging_on_and_off(fx):
    srv = fx.server()
    c = fx.conn(srv)
    expect(c.request(b"verbosity 2\r\n"), b"OK\r\n", "verbosity 2")
    expect(c.request(b"get verbose-on\r\n"), b"END\r\n")
    wait_for_output(srv, r"<\d+ get verbose-on\n")
    expect(c.request(b"verbosity 0\r\nget verbose-off\r\n"), b"OK\r\nEND\r\n", "verbosity 0")
    expect(c.request(b"verbosity 2\r\nget verbose-again\r\n"), b"OK\r\nEND\r\n", "verbosity 2")
    wait_for_output(srv, r"<\d+ get verbose-again\n")
    expect(re.search(r"verbose-off", output_of(srv)), None, "a command logged at verbosity 0")


def test_stats_settings_uses_memcached_names_and_values(fx):
    srv = fx.server(threads=3, memory_mb=48, max_conns=100, item_max="512k")
    settings = dict(stats(fx.conn(srv), b"settings"))
    expected = {
        "maxbytes": str(48 << 20), "maxconns": "100", "tcpport": str(srv.port), "udpport": "0",
        "inter": "127.0.0.1", "verbosity": "0", "evictions": "on", "domain_socket": "NULL",
        "umask": "700", "num_threads": "3", "cas_enabled": "yes", "tcp_backlog": "1024",
        "item_size_max": "524288", "idle_timeout": "0", "slab_reassign": "yes",
        "slab_automove": "1", "lru_maintainer_thread": "yes"}
    expect({name: settings.get(name) for name in expected}, expected, "stats settings")


def test_stats_conns_lists_address_state_and_idle_seconds(fx):
    srv = fx.default
    idle, midvalue, asking = fx.conn(srv), fx.conn(srv), fx.conn(srv)
    expect(idle.request(b"version\r\n").startswith(b"VERSION "), True, "version")
    midvalue.send(b"set half 0 0 10\r\n01234")
    time.sleep(1.5)
    pairs = stats(asking, b"conns")
    by_fd = {}
    for name, value in pairs:
        fd, _, field = name.partition(":")
        expect(fd.isdigit() and field in ("addr", "listen_addr", "state", "secs_since_last_cmd"),
               True, f"stats conns name {name!r}")
        by_fd.setdefault(fd, {})[field] = value

    def entry(conn):
        addr = f"tcp:127.0.0.1:{conn.sock.getsockname()[1]}"
        found = [e for e in by_fd.values() if e.get("addr") == addr]
        expect(len(found), 1, f"entries for {addr} in {pairs}")
        return found[0]

    expect((entry(asking)["state"], entry(asking)["secs_since_last_cmd"]),
           ("conn_parse_cmd", "0"), "the asking connection")
    expect(entry(midvalue)["state"], "conn_nread", "the connection halfway through a value")
    expect(entry(idle)["secs_since_last_cmd"] in ("1", "2"), True,
           f"idle seconds of a connection idle for 1.5 s: {entry(idle)}")
    expect(midvalue.request(b"56789\r\n"), b"STORED\r\n", "the value completes")


def test_stats_items_leaves_out_classes_that_hold_no_items(fx):
    c = fx.conn(fx.default)
    expect(c.request(b"set emptied 0 0 1\r\nx\r\n"), b"STORED\r\n")
    numbers = [value for name, value in stats(c, b"items") if name.endswith(":number")]
    expect(numbers, ["1"], "items:N:number of every class listed, with one item stored")
    expect(c.request(b"delete emptied\r\n"), b"DELETED\r\n")
    # memcached lists a class only while it holds items (item_stats skips a class of size 0)
    expect(stats(c, b"items"), [], "stats items once the only item is deleted")
