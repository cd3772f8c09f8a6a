"""The binary protocol side by side with memcached: the same raw requests go to real memcached and
to the server under test, and the replies must be identical byte for byte, with CAS values and
the version string masked.

Replies are split into packets by their headers. Each request is followed by a NOOP whose reply
(opaque SENTINEL) marks the end of the replies; requests that close the connection, leave the
server waiting or make it discard bytes of what follows are compared on what arrives within
QUIET seconds instead. A request may be a function of the last CAS value that server returned on
the connection, so each server is sent its own CAS values.
"""

import socket
import struct
import subprocess

import harness
import test_side_by_side as side_by_side
from harness import expect

QUIET = 0.3
MIB = 1024 * 1024
HDR = struct.Struct(">BBHBBHIIQ")
SENTINEL = 0x53454E54

GET, SET, ADD, REPLACE, DELETE, INCR, DECR, QUIT, FLUSH, GETQ, NOOP, VERSION = range(0x0C)
GETK, GETKQ, APPEND, PREPEND, STAT = 0x0C, 0x0D, 0x0E, 0x0F, 0x10
SETQ, ADDQ, REPLACEQ, DELETEQ, INCRQ, DECRQ, QUITQ, FLUSHQ, APPENDQ, PREPENDQ = range(0x11, 0x1B)
VERBOSITY, TOUCH, GAT, GATQ, GATK, GATKQ = 0x1B, 0x1C, 0x1D, 0x1E, 0x23, 0x24
SASL_LIST, SASL_AUTH = 0x20, 0x21


def packet(op, key=b"", ext=b"", value=b"", cas=0, opaque=0x0A0B0C0D, magic=0x80, keylen=None,
           extlen=None, bodylen=None):
    """A request; the lengths may be given to lie about the body."""
    body = ext + key + value
    return HDR.pack(magic, op, len(key) if keylen is None else keylen,
                    len(ext) if extlen is None else extlen, 0, 0,
                    len(body) if bodylen is None else bodylen, opaque, cas) + body


def store(key, value, flags=0, exptime=0, op=SET, cas=0):
    return packet(op, key, struct.pack(">II", flags, exptime), value, cas)


def arith(key, delta=1, initial=0, exptime=0, op=INCR, cas=0):
    return packet(op, key, struct.pack(">QQI", delta, initial, exptime), cas=cas)


def touch(key, exptime=0, op=TOUCH):
    return packet(op, key, struct.pack(">I", exptime))


def split(data):
    """(complete packets as (header fields, header bytes, body), bytes left over)."""
    packets, pos = [], 0
    while len(data) - pos >= HDR.size:
        fields = HDR.unpack_from(data, pos)
        end = pos + HDR.size + fields[6]
        if end > len(data):
            break
        packets.append((fields, data[pos:pos + HDR.size], data[pos + HDR.size:end]))
        pos = end
    return packets, data[pos:]


def normalize(data):
    """(the replies with CAS values and the version masked, the CAS values they held)."""
    packets, rest = split(data)
    out, cas = [], []
    for fields, header, body in packets:
        if fields[8]:
            cas.append(fields[8])
        if fields[1] == VERSION and fields[5] == 0:
            header, body = header[:8] + b"<length>" + header[12:], b"<version>"
        out.append(header[:16] + (b"<cas>" if fields[8] else b"<no cas>") + body)
    return b" | ".join(out) + (b" | left over: " + rest if rest else b""), cas


def ends_with_sentinel(data):
    packets, rest = split(data)
    return not rest and packets and packets[-1][0][1] == NOOP and packets[-1][0][7] == SENTINEL


class Pair(side_by_side.Pair):
    """memcached and the server under test, each with one connection, sent the same bytes in the
    binary protocol (by default with -B binary on both)."""

    CLOSED = b" <connection closed>"
    UNANSWERED = (AssertionError, BrokenPipeError, ConnectionResetError)

    def __init__(self, fx, protocol="binary", **opts):
        super().__init__(fx, extra=("-B", protocol) if protocol else (), **opts)

    def _fill(self, i, request):
        return request(self.cas[i]) if callable(request) else request

    def _shown(self, request):
        return request(0) if callable(request) else request

    def _ask(self, conn, data):
        """The request, then the NOOP sentinel; the replies up to the sentinel's."""
        conn.send(data + packet(NOOP, opaque=SENTINEL))
        return conn.read_until(ends_with_sentinel)

    def _normalize(self, reply):
        return normalize(reply)


# --- the simple commands -------------------------------------------------------------------

def test_binary_version_noop_and_quit(fx):
    p = Pair(fx)
    p.check(packet(VERSION), packet(NOOP), packet(NOOP, opaque=0xFFFFFFFF) + packet(VERSION))
    p.check_quiet(packet(QUIT))
    p.check_quiet(packet(QUITQ))
    p.check_quiet(store(b"k", b"v", op=SETQ) + packet(GETQ, b"k") + packet(QUITQ))


def test_binary_get_family_on_hits_and_misses(fx):
    p = Pair(fx)
    p.check(store(b"k", b"hello", flags=0xDEADBEEF), store(b"empty", b"", flags=1),
            packet(GET, b"k"), packet(GETK, b"k"), packet(GETQ, b"k"), packet(GETKQ, b"k"),
            packet(GET, b"empty"), packet(GETK, b"empty"),
            packet(GET, b"nope"), packet(GETK, b"nope"), packet(GETQ, b"nope"),
            packet(GETKQ, b"nope"), packet(GET, b"k" * 250), packet(GETK, bytes(range(1, 200))))


def test_binary_pipelined_quiet_gets_answer_only_hits(fx):
    """The classic multi-get: getkq for every key, then a noop; misses say nothing."""
    p = Pair(fx)
    keys = [b"key:%d" % i for i in range(60)]
    p.check(b"".join(store(k, b"v" * i, flags=i, op=SETQ) for i, k in enumerate(keys) if i % 3))
    p.check(b"".join(packet(GETKQ, k) for k in keys) + packet(NOOP),
            b"".join(packet(GETQ, k, opaque=i) for i, k in enumerate(keys)),
            b"".join(packet(GETKQ, b"miss:%d" % i) for i in range(100)) + packet(GETK, b"key:1"))


def test_binary_large_values_are_whole(fx):
    big, mid = bytes(range(256)) * 2000, b"m" * 50_000
    p = Pair(fx)
    p.check(store(b"big", big), store(b"mid", mid, flags=7),
            packet(GET, b"big"), packet(GETKQ, b"big") + packet(GETKQ, b"mid") + packet(NOOP),
            store(b"x", mid) + packet(GET, b"x") + store(b"y", big) + packet(GETK, b"y"),
            (store(b"slow", big)[:30], store(b"slow", big)[30:100_000],
             store(b"slow", big)[100_000:] + packet(GET, b"slow")),
            (packet(GET, b"big")[:10], packet(GET, b"big")[10:]))


# --- storage -------------------------------------------------------------------------------

def test_binary_storage_on_present_and_missing_keys(fx):
    p = Pair(fx)
    p.check(store(b"k", b"v1", flags=3, exptime=0), store(b"k", b"v2", op=ADD),
            store(b"new", b"n", op=ADD), store(b"missing", b"r", op=REPLACE),
            store(b"k", b"v3", 9, op=REPLACE), packet(APPEND, b"k", value=b"+a"),
            packet(PREPEND, b"k", value=b"p+"), packet(APPEND, b"missing", value=b"a"),
            packet(PREPEND, b"missing", value=b"p"), packet(GETK, b"k"), packet(GETK, b"new"),
            packet(GETK, b"missing"), store(b"k", b"", flags=7), packet(GET, b"k"))
    # quiet forms answer only their errors
    p.check(store(b"q", b"1", op=SETQ), store(b"q", b"2", op=ADDQ), store(b"q2", b"2", op=ADDQ),
            store(b"none", b"3", op=REPLACEQ), store(b"q", b"4", op=REPLACEQ),
            packet(APPENDQ, b"q", value=b"a"), packet(PREPENDQ, b"none", value=b"p"),
            packet(PREPENDQ, b"q", value=b"p"), packet(GET, b"q"), packet(GET, b"q2"))


def test_binary_cas_rules(fx):
    p = Pair(fx)
    p.check(store(b"k", b"v"), packet(GET, b"k"),
            lambda cas: store(b"k", b"stale", cas=cas + 1000),
            lambda cas: store(b"k", b"swapped", cas=cas), packet(GET, b"k"),
            lambda cas: store(b"k", b"again", cas=cas), packet(GETK, b"k"),
            lambda cas: store(b"k", b"by add", op=ADD, cas=cas), packet(GET, b"k"),
            lambda cas: store(b"k", b"by replace", op=REPLACE, cas=cas + 5),
            lambda cas: store(b"k", b"by replace", op=REPLACE, cas=cas), packet(GET, b"k"),
            lambda cas: packet(APPEND, b"k", value=b"!", cas=cas + 1),
            lambda cas: packet(APPEND, b"k", value=b"!", cas=cas), packet(GET, b"k"),
            store(b"gone", b"x", cas=12345), store(b"gone", b"x", op=SETQ, cas=12345),
            packet(GET, b"gone"))


def test_binary_value_too_large_and_key_too_long(fx):
    p = Pair(fx, item_max="1m")
    huge = b"h" * (MIB + 1)
    p.check(store(b"k", b"old"), store(b"k", huge), packet(GET, b"k"),
            store(b"k", b"old"), store(b"k", huge, op=ADD), store(b"k", huge, op=REPLACEQ),
            packet(APPEND, b"k", value=huge), packet(GET, b"k"),
            store(b"big", b"b" * (MIB - 1024)), packet(APPEND, b"big", value=b"more" * 300),
            packet(GETK, b"k"))
    p.check_quiet(packet(GET, b"x" * 251))
    p.check_quiet(store(b"y" * 300, b"v"))


# --- delete, incr, decr, touch, flush ------------------------------------------------------

def test_binary_delete(fx):
    p = Pair(fx)
    p.check(store(b"k", b"v"), packet(DELETE, b"k"), packet(DELETE, b"k"), packet(DELETEQ, b"k"),
            store(b"k", b"v"), packet(DELETEQ, b"k"), packet(GET, b"k"),
            store(b"k", b"v"), lambda cas: packet(DELETE, b"k", cas=cas + 1), packet(GET, b"k"),
            lambda cas: packet(DELETE, b"k", cas=cas), packet(GET, b"k"))


def test_binary_incr_and_decr(fx):
    p = Pair(fx)
    p.check(arith(b"n", 5, 10), arith(b"n", 5, 10), arith(b"n", 20, op=DECR), packet(GET, b"n"),
            arith(b"miss", 1, 1, exptime=0xFFFFFFFF), arith(b"miss", 1, 1, 0xFFFFFFFF, op=DECR),
            arith(b"n", 3, op=INCRQ), arith(b"n", 1, op=DECRQ), packet(GET, b"n"),
            arith(b"created", 1, 7, op=INCRQ), packet(GET, b"created"),
            store(b"w", b"18446744073709551615"), arith(b"w", 2), packet(GET, b"w"),
            store(b"text", b"abc"), arith(b"text"), arith(b"text", op=DECRQ),
            store(b"empty", b""), arith(b"empty"), lambda cas: arith(b"empty", 1, cas=cas + 7),
            # No get between the changes of d: memcached writes a new item rather than in place
            # while its LRU maintainer still holds one it was handed by a hit, at times of its own.
            store(b"d", b"100"), arith(b"d", 91, op=DECR), lambda cas: arith(b"d", 1, cas=cas + 1),
            lambda cas: arith(b"d", 1, cas=cas), packet(GET, b"d"),
            store(b"long", b"9" * 25), arith(b"long"), arith(b"t", 1, 5, exptime=100), packet(GET, b"t"))


def test_binary_touch_and_gat(fx):
    p = Pair(fx)
    p.check(store(b"k", b"v", flags=9), touch(b"k", 100), touch(b"nope"),
            touch(b"k", 0, op=GAT), touch(b"k", 0, op=GATQ), touch(b"k", 0, op=GATK),
            touch(b"k", 0, op=GATKQ), touch(b"nope", 0, op=GAT), touch(b"nope", 0, op=GATQ),
            touch(b"nope", 0, op=GATK), touch(b"nope", 0, op=GATKQ),
            touch(b"k", 0xFFFFFFF0, op=GAT), packet(GET, b"k"))


def test_binary_flush(fx):
    p = Pair(fx)
    p.check(store(b"a", b"1"), packet(FLUSH), packet(GET, b"a"), store(b"b", b"2"),
            packet(FLUSHQ), packet(GET, b"b"), store(b"c", b"3"),
            packet(FLUSH, ext=struct.pack(">I", 1000)), packet(GET, b"c"),
            packet(FLUSHQ, ext=struct.pack(">I", 0)), packet(GET, b"c"))


# --- errors --------------------------------------------------------------------------------

def test_binary_malformed_requests_are_refused_and_close(fx):
    p = Pair(fx)
    cases = [
        packet(SET, b"k", value=b"v"),                            # set without its extras
        packet(GET, b"k", ext=b"\0\0\0\0"),                       # get with extras
        packet(GET),                                              # get without a key
        packet(INCR, b"n", ext=b"\0" * 8),                        # incr with short extras
        packet(DELETE, b"k", value=b"x"),                         # delete with a body
        packet(VERSION, b"k"), packet(NOOP, value=b"x"), packet(QUIT, ext=b"\0"),
        packet(FLUSH, ext=b"\0\0"), packet(TOUCH, b"k"), packet(APPEND, b"k", ext=b"\0" * 8),
        packet(STAT, ext=b"\0\0\0\0"), packet(GETQ, b"k", value=b"x"),
        packet(GET, b"key", bodylen=2),                           # key longer than the body
        packet(SET, b"k", ext=b"\0" * 8, value=b"v", extlen=8, bodylen=5),
        packet(SASL_LIST, b"x"), packet(SASL_AUTH),
    ]
    for request in cases:
        p.check_quiet(store(b"before", b"1", op=SETQ) + packet(GETQ, b"before") + request
                      + packet(GET, b"after"))


def test_binary_bad_magic_closes_without_reply(fx):
    p = Pair(fx)
    p.check_quiet(packet(GET, b"k", magic=0x81))
    p.check_quiet(packet(NOOP) + packet(NOOP, magic=0x00))
    p.check_quiet(b"\x80" + b"\0" * 10)  # a header still incomplete: both wait


def test_binary_unknown_opcodes(fx):
    """Answered "Unknown command" (verbosity too: memcached 1.6.18 has no binary verbosity), after
    which memcached discards the body's length once more, past the extras and key it already read:
    so many bytes of what follows are eaten, here filler sent after a pause."""
    p = Pair(fx)
    p.check(packet(0x40), packet(0xFF), packet(0x30), packet(SASL_LIST),
            packet(SASL_AUTH, b"PLAIN", value=b"\0user\0pass"), packet(SASL_AUTH, b"PLAIN"))
    p.check((packet(VERBOSITY, ext=b"\0\0\0\1"), b"FILL"),
            (packet(0x31, b"key", value=b"value"), b"fil"), packet(VERBOSITY) + packet(GET, b"k"))


def test_binary_stats(fx):
    p = Pair(fx)
    p.check(packet(STAT, b"reset"), packet(STAT, b"bogus"), packet(STAT, b"detail"),
            packet(STAT, b"conns"), packet(STAT, b"items "))
    for conn, srv in zip(p.conns, p.servers):
        for group in (b"", b"settings", b"items", b"slabs", b"sizes"):
            conn.send(packet(STAT, group, opaque=77))
            reply = conn.read_until(lambda b: any(f[6] == 0 for f, _, _ in split(b)[0]))
            packets, rest = split(reply)
            expect(rest, b"", f"{srv.argv[0]} stats {group!r}: bytes after the end")
            for fields, _, body in packets:
                expect((fields[0], fields[1], fields[5], fields[7], fields[8]),
                       (0x81, STAT, 0, 77, 0), f"{srv.argv[0]} stats {group!r} header")
            names = [body[:f[2]] for f, _, body in packets[:-1]]
            expect(packets[-1][2], b"", "the last packet ends the list")
            if group == b"":
                for name in (b"pid", b"uptime", b"cmd_get", b"curr_items", b"total_items"):
                    expect(name in names, True, f"{srv.argv[0]} stats has {name!r}")
            if group == b"settings":
                at = names.index(b"binding_protocol")
                expect(packets[at][2][len(b"binding_protocol"):], b"binary", "binding_protocol")


# --- choosing the protocol -----------------------------------------------------------------

def test_auto_picks_the_protocol_by_first_byte(fx):
    p = Pair(fx, protocol=None)
    p.check(store(b"k", b"binary"), packet(GET, b"k"))
    for conn in [fx.conn(srv) for srv in p.servers]:
        expect(conn.request(b"get k\r\n"), b"VALUE k 0 6\r\nbinary\r\nEND\r\n", "text on auto")


def test_binary_only_server_closes_text_connections(fx):
    p = Pair(fx, protocol="binary")
    p.check_quiet(b"version\r\n")                         # 9 bytes: waits for a header
    p.check_quiet(b"get aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n")  # 24 and more: not 0x80, closes


def test_ascii_only_server_reads_binary_as_text(fx):
    p = Pair(fx, protocol="ascii")
    p.check_quiet(packet(NOOP))                             # no newline: both wait
    p.check_quiet(packet(GET, b"k\r\n"))                     # a line: an unknown command
    for srv in p.servers:
        conn = fx.conn(srv)
        reply = conn.request(b"stats settings\r\n")
        expect(b"STAT binding_protocol ascii\r\n" in reply, True,
               f"{srv.argv[0]} stats settings binding_protocol")


def test_binary_connection_counts_in_stats(fx):
    """get_hits, cmd_set, delete_misses... count binary requests as they count text ones."""
    conn = fx.conn()
    conn.send(store(b"a", b"1") + store(b"b", b"x") + packet(GET, b"a") + packet(GETQ, b"zz")
              + packet(DELETE, b"zz") + arith(b"b") + arith(b"n", 1, 1, 0xFFFFFFFF)
              + touch(b"a") + packet(NOOP, opaque=SENTINEL))
    conn.read_until(ends_with_sentinel)
    text = fx.conn().request(b"stats\r\n")
    stats = dict(line.split(b" ")[1:3] for line in text.split(b"\r\n") if line.startswith(b"STAT "))
    for name, value in ((b"cmd_get", b"2"), (b"get_hits", b"1"), (b"get_misses", b"1"),
                        (b"cmd_set", b"2"), (b"delete_misses", b"1"), (b"incr_hits", b"0"),
                        (b"incr_misses", b"1"), (b"cmd_touch", b"1"), (b"touch_hits", b"1")):
        expect(stats[name], value, name.decode())


def test_socket_shutdown_mid_request_is_harmless(fx):
    conn = fx.conn()
    conn.send(store(b"k", b"v" * 1000)[:500])
    conn.sock.shutdown(socket.SHUT_WR)
    expect(fx.conn().request(b"get k\r\n"), b"END\r\n", "nothing stored")


def test_health_probe_speaks_binary_with_dash_b_binary(fx):
    if harness.is_memcached(fx.binary):
        return  # --health is Magpie's
    srv = fx.server(extra=("-B", "binary"))
    for flags, status in ((["-B", "binary"], 0), (["-B", "auto"], 1)):
        probe = subprocess.run([fx.binary, *flags, "--health", f"{harness.HOST}:{srv.port}"],
                               capture_output=True, timeout=harness.IO_TIMEOUT)
        expect(probe.returncode, status, f"{' '.join(flags)} --health ({probe.stderr!r})")
