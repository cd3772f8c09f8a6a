"""The text protocol over raw sockets: pipelining, requests split anywhere, quit, long lines,
key and value limits, and the connection limit. Replies are asserted byte for byte."""

import time

import harness
from harness import expect

# A small session touching storage, retrieval, arithmetic and delete, and its exact replies.
SESSION = (b"set s 5 0 10\r\n0123456789\r\nget s t\r\nset n 0 0 1\r\n1\r\nincr n 7\r\n"
           b"delete s\r\n")
SESSION_REPLY = (b"STORED\r\nVALUE s 5 10\r\n0123456789\r\nEND\r\nSTORED\r\n8\r\nDELETED\r\n")
TOO_LARGE = b"SERVER_ERROR object too large for cache\r\n"


def set_request(key, value, flags=0):
    return b"set %s %d 0 %d\r\n%s\r\n" % (key, flags, len(value), value)


def test_pipelined_requests_are_answered_in_order(fx):
    requests, replies = [], []
    for i in range(200):
        key, value = b"p%d" % i, b"value-%d" % (i * 7919)
        requests += [set_request(key, value, i), b"get %s miss%d\r\n" % (key, i),
                     b"incr counter 1\r\n" if i else b"set counter 0 0 1\r\n0\r\n"]
        replies += [b"STORED\r\n", b"VALUE %s %d %d\r\n%s\r\nEND\r\n" % (key, i, len(value), value),
                    b"%d\r\n" % i if i else b"STORED\r\n"]
    requests.append(b"delete p0\r\ndelete p0\r\n")
    replies.append(b"DELETED\r\nNOT_FOUND\r\n")
    expect(fx.conn().request(b"".join(requests)), b"".join(replies), "pipelined replies")


def test_requests_split_at_every_byte_boundary_are_answered_the_same(fx):
    conn = fx.conn()
    expect(conn.request(SESSION), SESSION_REPLY, "the session in one send")
    for cut in range(1, len(SESSION)):
        conn.send(SESSION[:cut])
        time.sleep(0.002)  # let the server read the first part on its own
        expect(conn.request(SESSION[cut:]), SESSION_REPLY, f"split after byte {cut}")


def test_requests_sent_one_byte_at_a_time_are_answered_the_same(fx):
    conn = fx.conn()
    for byte in SESSION[:-1]:
        conn.send(bytes([byte]))
    expect(conn.request(SESSION[-1:]), SESSION_REPLY, "byte by byte")


def test_quit_closes_the_connection_after_earlier_replies(fx):
    conn = fx.conn()
    conn.send(b"set k 0 0 1\r\nv\r\nget k\r\nquit\r\nget k\r\n")
    expect(conn.read_for(2.0), (b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n", True),
           "(replies, closed)")


def test_line_over_2048_bytes_without_a_newline_closes_the_connection(fx):
    conn = fx.conn()
    conn.send(b"x" * 4096)
    expect(conn.read_for(2.0), (b"", True), "(replies, closed)")


def test_get_line_longer_than_2048_bytes_is_served(fx):
    conn = fx.conn()
    keys = [(b"%03d" % i) * 83 + b"k" for i in range(100)]  # 250-byte keys: a 25 KB line
    conn.request(b"".join(set_request(k, b"v%d" % i) for i, k in enumerate(keys) if i % 3 == 0))
    expected = b"".join(b"VALUE %s 0 %d\r\nv%d\r\n" % (k, len(b"v%d" % i), i)
                        for i, k in enumerate(keys) if i % 3 == 0)
    expect(conn.request(b"get " + b" ".join(keys) + b"\r\n"), expected + b"END\r\n", "reply")


def test_key_of_250_bytes_is_accepted_and_251_refused(fx):
    conn = fx.conn()
    k250, k251 = b"k" * 250, b"k" * 251
    expect(conn.request(set_request(k250, b"v") + b"get " + k250 + b"\r\n"),
           b"STORED\r\nVALUE " + k250 + b" 0 1\r\nv\r\nEND\r\n", "250-byte key")
    # The refused set does not read its data line, which then fails as a command.
    expect(conn.request(set_request(k251, b"v")),
           b"CLIENT_ERROR bad command line format\r\nERROR\r\n", "set with a 251-byte key")
    expect(conn.request(b"get " + k251 + b"\r\n"), b"CLIENT_ERROR bad command line format\r\n",
           "get with a 251-byte key")


def test_value_over_the_item_limit_is_refused_and_the_connection_stays_in_step(fx):
    conn = fx.conn()
    expect(conn.request(set_request(b"big", b"old")), b"STORED\r\n", "first value")
    huge = b"h" * (1024 * 1024 + 1)
    # The refused set swallows its data and also removes the key's old value.
    expect(conn.request(set_request(b"big", huge) + b"get big\r\n"), TOO_LARGE + b"END\r\n",
           "too large, then get")
    expect(conn.request(set_request(b"big", b"new") + b"get big\r\n"),
           b"STORED\r\nVALUE big 0 3\r\nnew\r\nEND\r\n", "the next set and get")
    expect(conn.request(b"set big 0 0 %d noreply\r\n%s\r\nget big\r\n" % (len(huge), huge)),
           b"END\r\n", "too large with noreply")


def test_item_size_flag_sets_the_largest_value(fx):
    for limit, refused, accepted in (("512k", 600_000, 400_000), ("2m", 2_200_000, 1_500_000)):
        conn = fx.conn(fx.server(item_max=limit))
        value = b"a" * accepted
        expect(conn.request(set_request(b"k", b"b" * refused) + b"get k\r\n"),
               TOO_LARGE + b"END\r\n", f"-I {limit}: {refused} bytes")
        expect(conn.request(set_request(b"k", value) + b"get k\r\n"),
               b"STORED\r\nVALUE k 0 %d\r\n%s\r\nEND\r\n" % (accepted, value),
               f"-I {limit}: {accepted} bytes")


def test_connection_limit_refuses_with_too_many_open_connections(fx):
    limit = 32
    srv = fx.server(max_conns=limit, threads=2)

    def connect():
        """(connection, first reply line) of a new connection that asked for the version."""
        conn = fx.conn(srv)
        conn.send(b"version\r\n")
        return conn, conn.read_line()

    accepted = []
    for _ in harness.bounded(limit + 2, 20.0):  # memcached refuses sooner: its own fds count
        conn, line = connect()
        if not line.startswith(b"VERSION "):
            break
        accepted.append(conn)
    expect(line, b"ERROR Too many open connections\r\n", f"reply after {len(accepted)} connections")
    expect(conn.read_for(2.0), (b"", True), "the refused connection is closed")
    if not accepted:
        raise AssertionError("the first connection was refused")
    expect(accepted[0].request(b"version\r\n").startswith(b"VERSION "), True, "older connection")
    accepted.pop().close()

    def reconnected():
        return connect()[1].startswith(b"VERSION ")
    expect(harness.poll(reconnected, 3.0), True, "a new connection after one closed")
