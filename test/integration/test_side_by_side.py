"""Side by side with memcached: the same raw bytes go to real memcached and to the server under
test, and the replies must be identical byte for byte, with CAS numbers and the version string
masked.

Each request is followed by the sentinel `mn`, whose `MN` reply marks the end of the replies;
requests that leave the server waiting for more bytes (or that close the connection) are
compared on what arrives within QUIET seconds instead. A request given as a tuple is sent piece
by piece with a pause between. In a request, `{CAS}` stands for the last CAS number that server
returned on this connection and `{CAS+1}` for one more, so each server is sent its own numbers.
"""

import re
import time

import harness
from harness import MEMCACHED, expect

QUIET = 0.3
K250, K251 = b"k" * 250, b"x" * 251
VALUE_LINE = re.compile(rb"VALUE (\S+) (\d+) (\d+)(?: (\d+))?\r\n")
MIB = 1024 * 1024


def normalize(reply):
    """(reply with CAS numbers and version masked, the CAS numbers it held). VALUE data blocks
    are skipped by their length, so data that looks like a reply line is left alone."""
    out, cas, pos = [], [], 0
    while pos < len(reply):
        m = VALUE_LINE.match(reply, pos)
        if m:
            key, flags, length, unique = m.groups()
            if unique is not None:
                cas.append(int(unique))
            out.append(b"VALUE %s %s %s%s\r\n" % (key, flags, length, b"" if unique is None
                                                  else b" <cas>"))
            pos = m.end() + int(length) + 2
            out.append(reply[m.end():pos])
            continue
        end = reply.find(b"\n", pos) + 1 or len(reply)
        line = reply[pos:end]
        out.append(b"VERSION <version>\r\n" if re.fullmatch(rb"VERSION \S+\r\n", line) else line)
        pos = end
    return b"".join(out), cas


class Pair:
    """memcached and the server under test, each with one connection, sent the same bytes.
    A protocol other than text says, in a subclass, how a request is made for each server (_fill),
    shown (_shown), sent with its sentinel and answered (_ask), and compared (_normalize)."""

    CLOSED = b"<connection closed>"
    UNANSWERED = (AssertionError,)  # no complete reply in time: what came is in the message

    def __init__(self, fx, extra=(), **opts):
        self.fx = fx
        self.servers = [fx.server(MEMCACHED, threads=2, extra=extra, **opts),
                        fx.server(threads=2, extra=extra, **opts)]
        self.conns = [fx.conn(srv) for srv in self.servers]
        self.cas = [0, 0]

    def check(self, *requests):
        """Each request, then the sentinel, to both servers; the replies must be equal."""
        for request in requests:
            self._compare(request, None)

    def check_quiet(self, request, seconds=QUIET):
        """A request that leaves the server waiting, or closes: compare what comes in `seconds`."""
        self._compare(request, seconds)

    def settle(self, request, reply, timeout=6.0):
        """Repeat request on each server until it answers `reply` (for time-driven changes)."""
        for i, conn in enumerate(self.conns):
            if not harness.poll(lambda: conn.request(request) == reply, timeout):
                raise AssertionError(f"{self.servers[i].argv[0]} never answered {reply!r} to "
                                     f"{request!r} within {timeout}s")

    def _fill(self, i, data):
        data = data.replace(b"{CAS}", b"%d" % self.cas[i])
        return data.replace(b"{CAS+1}", b"%d" % (self.cas[i] + 1))

    def _shown(self, piece):
        return piece

    def _ask(self, conn, data):
        return conn.request(data)

    def _normalize(self, reply):
        return normalize(reply)

    def _exchange(self, i, request, quiet):
        conn = self.conns[i]
        *pieces, last = request if isinstance(request, tuple) else (request,)
        closed = False
        try:
            for piece in pieces:
                conn.send(self._fill(i, piece))
                time.sleep(0.01)
            if quiet is None:
                reply = self._ask(conn, self._fill(i, last))
            else:
                conn.send(self._fill(i, last))
                reply, closed = conn.read_for(quiet)
        except harness.Closed as exc:
            reply, closed = exc.received, True
        except self.UNANSWERED as exc:
            return f"<{exc}>".encode()
        if closed:  # later requests go on a new connection
            self.conns[i] = self.fx.conn(self.servers[i])
        masked, cas = self._normalize(reply)
        self.cas[i] = cas[-1] if cas else self.cas[i]
        return masked + (self.CLOSED if closed else b"")

    def _compare(self, request, quiet):
        expected = self._exchange(0, request, quiet)
        actual = self._exchange(1, request, quiet)
        if actual != expected:
            at = next(i for i in range(len(expected) + 1)
                      if expected[i:i + 1] != actual[i:i + 1])
            sent = b"".join(self._shown(p) for p in (request if isinstance(request, tuple) else (request,)))
            raise AssertionError(
                f"replies differ from byte {at}\n"
                f"    request:           {show(sent)}\n"
                f"    memcached:         {show(expected)}\n"
                f"    server under test: {show(actual)}")


def show(data, limit=600):
    text = repr(data)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(data)} bytes)"


def store(key, value, flags=0, exptime=0, command=b"set", extra=b""):
    return b"%s %s %d %d %d%s\r\n%s\r\n" % (command, key, flags, exptime, len(value), extra, value)


# --- commands and lines the server does not understand -------------------------------------

def test_unknown_commands_and_wrong_case(fx):
    Pair(fx).check(b"bogus\r\n", b"GET k\r\n", b"Set k 0 0 1\r\nx\r\n", b"QUIT\r\n",
                   b"gett k\r\n", b"getk\r\n", b"stats bogus\r\n", b"stats bogus x\r\n")


def test_empty_and_blank_lines(fx):
    Pair(fx).check(b"\r\n", b"\n", b" \r\n", b"   \n", b"\r\r\n", b"\r\n\r\n\n")


def test_line_endings_lf_and_crlf(fx):
    p = Pair(fx)
    p.check(b"set a 0 0 1\nx\r\nget a\n", b"gets a\n", b"get a\r\r\n", b"get a\rb\r\n",
            b"append a 0 0 1\ny\r\nget a\r\n", b"delete a\n", b"get a\n")
    # a value must end in \r\n, so the "g" of "get" completes the value: a bad data chunk
    p.check((b"set b 0 0 1\r\ny\n", b"get b\r\n"), b"get b\r\n")


def test_nul_bytes_in_command_lines(fx):
    Pair(fx).check(b"set a 0 0 1\r\nx\r\n", b"get a\x00b\r\n", b"get\x00 a\r\n", b"\x00\r\n",
                   b"set b\x00c 0 0 1\r\nx\r\n", b"get b\r\n", b"incr a\x00 1\r\n",
                   b"set c 0 0 3\r\na\x00b\r\nget c\r\n")


def test_whitespace_between_tokens(fx):
    Pair(fx).check(b"set  e  3  0  1\r\nx\r\n", b"set f 0 0 1 \r\ny\r\n", b"  get e\r\n",
                   b"get  e   f \r\n", b"get\te\r\n", b"delete e \r\n", b"delete f  noreply\r\n",
                   b"get e f\r\n")


def test_keys_with_control_and_high_bytes(fx):
    Pair(fx).check(store(b"k\x01\x7f\xff", b"v"), b"get k\x01\x7f\xff\r\n",
                   b"delete k\x01\x7f\xff\r\n", b"get k\x01\x7f\xff\r\n")


# --- storage commands ----------------------------------------------------------------------

def test_storage_commands_on_present_and_missing_keys(fx):
    Pair(fx).check(
        store(b"k", b"v1", flags=3), b"gets k\r\n",
        store(b"k", b"v2", command=b"add"), store(b"new", b"n", command=b"add"),
        store(b"missing", b"r", command=b"replace"), store(b"k", b"v3", 9, command=b"replace"),
        store(b"k", b"+a", 5, command=b"append"), store(b"k", b"p+", 5, command=b"prepend"),
        store(b"missing", b"a", command=b"append"), store(b"missing", b"p", command=b"prepend"),
        b"gets k new missing\r\n", store(b"k", b"", flags=7), b"get k\r\n")


def test_storage_command_token_counts(fx):
    Pair(fx).check(
        b"set\r\n", b"set k\r\n", b"set k 0\r\n", b"set k 0 0\r\nx\r\n",
        b"set k 0 0 1 extra\r\nx\r\n", b"set k 0 0 1 noreply extra\r\nx\r\n",
        b"set k 0 0 1 a b c d e f g h i j k l m n o p q r s t u v w x y z\r\nx\r\n",
        b"add k 0 0 1 2 3\r\nx\r\n", b"append k 0 0\r\n", b"prepend k 0\r\n",
        b"replace k 0 0 1 2\r\ny\r\n", b"cas k 0 0 1\r\nx\r\n", b"cas k 0 0 1 1 2 3\r\nx\r\n",
        b"get k\r\n")


def set_with(field, values):
    """For each value, a set of key k<i> with that value in `field`, then a get of k<i>."""
    requests = []
    for i, value in enumerate(values):
        fields = {b"flags": b"0", b"exptime": b"0", b"length": b"1", field: value}
        requests.append(b"set k%d %s %s %s\r\nx\r\nget k%d\r\n" % (
            i, fields[b"flags"], fields[b"exptime"], fields[b"length"], i))
    return requests


# memcached parses with strtoul/strtol into 64 bits, then stores in 32: flags wrap modulo 2^32
# (4294967296 is 0), exptime and length wrap as int32 (2147483648 is negative), and only a
# number over 64 bits or with junk after it is refused.

def test_storage_bad_flags(fx):
    Pair(fx).check(*set_with(b"flags", [
        b"-1", b"x", b"1x", b"0x1", b"1.5", b"-0", b"+1", b"4294967295", b"4294967296",
        b"18446744073709551615", b"18446744073709551616"]))


def test_storage_bad_exptime(fx):
    Pair(fx).check(*set_with(b"exptime", [
        b"x", b"1.5", b"1x", b"2147483647", b"2147483648", b"-2147483649", b"4294967296",
        b"99999999999", b"9223372036854775808"]))


def test_storage_bad_length(fx):
    Pair(fx).check(*set_with(b"length", [
        b"-1", b"x", b"1x", b"+1", b"01", b"-0", b"2147483647", b"2147483648", b"4294967297",
        b"18446744073709551617", b"18446744073709551616"]))


def test_length_is_taken_modulo_2_to_the_32(fx):
    wrapped = b"w" * 2_000_000  # 2^32 + 2000000 wraps to 2000000: too large, and swallowed
    Pair(fx).check(b"set k 0 0 %d\r\n%s\r\nget k\r\n" % (2**32 + len(wrapped), wrapped),
                   b"set k 0 0 %d\r\nab\r\nget k\r\n" % (2**32 + 2))


def test_bad_data_chunk(fx):
    Pair(fx).check(
        store(b"k", b"old"), b"set k 0 0 1\r\nxy\r\n", b"get k\r\n",
        b"set k 0 0 1\r\nxyzw\r\n", b"set k 0 0 2\r\nab\r\r\n", b"set k 0 0 0\r\nx\r\n",
        b"set k 0 0 1 noreply\r\nxy\r\n", b"append k 0 0 1\r\nzz\r\n",
        b"add n 0 0 1\r\nzz\r\n", b"get k n\r\n", b"gets k\r\n", b"cas k 0 0 1 {CAS}\r\nzz\r\n",
        b"get k\r\n")


def test_large_values_with_more_in_the_same_send(fx):
    """Values long enough to be read straight into their item, sent together with what follows
    them: the next requests come in with the value's end and are answered in order, a value with a
    bad end included."""
    big, mid = b"b" * 100_000, b"m" * 50_000
    Pair(fx).check(
        store(b"a", big) + store(b"b", mid) + b"get a b\r\n",
        b"set c 0 0 %d\r\n%sXYget c\r\n" % (len(mid), mid),
        store(b"d", big) + b"get d\r\n" * 3 + store(b"e", mid) + b"get e\r\n")


def test_value_too_large_for_the_item_limit(fx):
    huge = b"h" * (MIB + 1)
    Pair(fx).check(
        store(b"k", b"old"), store(b"k", huge), b"get k\r\n",
        store(b"k", b"old"), store(b"k", huge, command=b"add"),
        store(b"k", huge, command=b"replace"), store(b"k", huge, command=b"append"),
        store(b"k", huge, extra=b" noreply"), b"get k\r\n",
        store(b"k", b"old"), b"gets k\r\n", b"cas k 0 0 %d {CAS}\r\n%s\r\n" % (len(huge), huge),
        b"get k\r\n", store(b"big", b"b" * (MIB - 1024)), store(b"big", b"more", command=b"append"),
        store(b"big", b"more", command=b"prepend"), b"get k\r\n")


def test_requests_sent_in_pieces(fx):
    Pair(fx).check(
        (b"se", b"t k 0 0 5\r", b"\nab", b"cde\r", b"\nget k", b"\r\n"),
        (b"set k 0 0 2000000\r\n", b"v" * 1_000_000, b"v" * 1_000_000 + b"\r\nget k\r\n"),
        (b"get a" + b" k" * 1500, b"\r\n"), (b"incr", b" n 1\r\n"))


# --- retrieval -----------------------------------------------------------------------------

def test_get_and_gets_with_hits_and_misses(fx):
    keys = b" ".join(b"m%d" % i for i in range(40))
    Pair(fx).check(
        store(b"a", b"1", flags=1), store(b"b", b"22", flags=2), store(b"m7", b""),
        b"get a\r\n", b"get nope\r\n", b"get a nope b a\r\n", b"gets a b nope\r\n",
        b"get " + keys + b"\r\n", b"gets " + keys + b" a\r\n", b"get\r\n", b"gets\r\n")


def test_binary_safe_values(fx):
    everything = bytes(range(256))
    tricky = b"END\r\nVALUE k 0 1\r\nx\r\nVERSION 1\r\n\r\n"
    Pair(fx).check(store(b"all", everything, flags=255), b"get all\r\n", b"gets all\r\n",
                   store(b"tricky", tricky), b"get tricky all\r\n",
                   store(b"all", b"\r\n\x00", command=b"append"), b"get all\r\n",
                   store(b"nul", b"\x00" * 10), b"get nul\r\n")


def test_keys_of_250_and_251_bytes(fx):
    p = Pair(fx)
    p.check(store(K250, b"v"), b"get " + K250 + b"\r\n", b"gets " + K250 + b"\r\n",
            b"touch " + K250 + b" 0\r\n", b"gat 0 " + K250 + b"\r\n",
            store(K250, b"1"), b"incr " + K250 + b" 1\r\n", b"decr " + K250 + b" 1\r\n",
            b"delete " + K250 + b"\r\n")
    p.check(store(b"a", b"1"), store(K251, b"v"), store(K251, b"v", extra=b" noreply"),
            store(K251, b"v", command=b"add"), store(K251, b"v", command=b"append"),
            b"cas " + K251 + b" 0 0 1 1\r\nv\r\n", b"get " + K251 + b"\r\n",
            b"get a " + K251 + b" a\r\n", b"gets " + K251 + b"\r\n", b"delete " + K251 + b"\r\n",
            b"delete " + K251 + b" noreply\r\n", b"incr " + K251 + b" 1\r\n",
            b"decr " + K251 + b" 1\r\n", b"touch " + K251 + b" 0\r\n", b"gat 0 " + K251 + b"\r\n",
            b"gats 0 a " + K251 + b"\r\n", b"get a\r\n")


def test_get_line_over_2048_bytes_is_read_to_its_newline(fx):
    Pair(fx).check(store(b"a", b"1"), (b"get a " + b"k" * 3000, b"\r\n"),
                   (b"get " + b"a " * 1500, b"\r\n"))


def test_other_line_over_2048_bytes_without_newline_closes(fx):
    p = Pair(fx)
    p.check_quiet(b"x" * 4096)
    p.check_quiet(b"set " + b"k" * 4096)
    p.check(b"version\r\n")


# --- arithmetic ----------------------------------------------------------------------------

def test_incr_and_decr_values(fx):
    Pair(fx).check(
        store(b"n", b"10"), b"incr n 5\r\n", b"decr n 3\r\n", b"get n\r\n",
        b"incr missing 1\r\n", b"decr missing 1\r\n",
        store(b"max", b"18446744073709551615"), b"incr max 1\r\n", b"get max\r\n",
        b"incr max 18446744073709551615\r\n", b"get max\r\n",
        store(b"z", b"5"), b"decr z 6\r\n", b"decr z 1\r\n", b"get z\r\n",
        store(b"shrink", b"100"), b"decr shrink 1\r\n", b"get shrink\r\n", b"decr shrink 90\r\n",
        b"get shrink\r\n", b"incr shrink 91\r\n", b"get shrink\r\n",
        store(b"grow", b"99", flags=4), b"incr grow 1\r\n", b"gets grow\r\n",
        b"incr n 0\r\n", b"decr n 18446744073709551615\r\n", b"get n\r\n")


def test_incr_and_decr_on_unusual_values(fx):
    values = [b"", b"x", b"12a", b"-1", b" 12", b"1 2 3", b"00000000000000000000001",
              b"18446744073709551616", b"1\r\n", b"\t7", b"0x10", b"99999999999999999999"]
    requests = []
    for i, value in enumerate(values):
        requests += [store(b"v%d" % i, value), b"incr v%d 1\r\n" % i, b"get v%d\r\n" % i]
    Pair(fx).check(*requests)


def test_incr_and_decr_bad_deltas_and_token_counts(fx):
    Pair(fx).check(
        store(b"n", b"5"), b"incr n x\r\n", b"incr n -1\r\n", b"incr n 1abc\r\n",
        b"incr n 18446744073709551616\r\n", b"incr n +1\r\n", b"incr n 01\r\n", b"decr n -0\r\n",
        b"incr n 1.5\r\n", b"incr n\r\n", b"incr\r\n", b"decr n\r\n", b"incr n 1 2\r\n",
        b"incr n 1 2 3\r\n", b"decr n 1 noreply x\r\n", b"get n\r\n")


# --- cas, delete, touch, gat ---------------------------------------------------------------

def test_cas_outcomes(fx):
    Pair(fx).check(
        b"cas k 0 0 1 1\r\nx\r\n", store(b"k", b"a", flags=2), b"gets k\r\n",
        b"cas k 0 0 1 {CAS+1}\r\nb\r\n", b"cas k 0 0 1 0\r\nb\r\n", b"cas k 5 0 1 {CAS}\r\nb\r\n",
        b"cas k 0 0 1 {CAS}\r\nc\r\n", b"gets k\r\n", b"cas k 0 0 1 {CAS} noreply\r\nd\r\n",
        b"gets k\r\n", b"delete k\r\n", b"cas k 0 0 1 {CAS}\r\ne\r\n", b"get k\r\n")


def test_cas_bad_unique_values(fx):
    Pair(fx).check(
        store(b"k", b"a"), b"cas k 0 0 1 x\r\ny\r\n", b"cas k 0 0 1 -1\r\ny\r\n",
        b"cas k 0 0 1 -0\r\ny\r\n", b"cas k 0 0 1 18446744073709551616\r\ny\r\n",
        b"cas k 0 0 1 18446744073709551615\r\ny\r\n", b"cas k 0 0 1 1x\r\ny\r\n", b"get k\r\n")


def test_delete_forms(fx):
    Pair(fx).check(
        store(b"k", b"v"), b"delete k 0\r\n", store(b"k", b"v"), b"delete k noreply\r\n",
        b"get k\r\n", store(b"k", b"v"), b"delete k 1\r\n", b"delete k x\r\n",
        b"delete k 0 0\r\n", b"delete k noreply x\r\n", b"get k\r\n", b"delete k 0 noreply\r\n",
        b"delete k\r\n", b"delete k noreply\r\n", b"delete\r\n", b"get k\r\n")


def test_touch_forms(fx):
    Pair(fx).check(
        store(b"k", b"v"), b"touch k 100\r\n", b"touch missing 100\r\n", b"touch k\r\n",
        b"touch\r\n", b"touch k x\r\n", b"touch k 1.5\r\n", b"touch k 100 noreply\r\n",
        b"touch missing 100 noreply\r\n", b"touch k x noreply\r\n", b"touch k 100 20\r\n",
        b"touch k 100 noreply x\r\n", b"get k\r\n", b"touch k -1\r\n", b"get k\r\n")


def test_gat_and_gats_forms(fx):
    Pair(fx).check(
        store(b"k", b"v", flags=6), store(b"j", b"w"), b"gat 100 k\r\n", b"gats 100 k\r\n",
        b"gat 100 k missing j k\r\n", b"gats 0 j nope\r\n", b"gat\r\n", b"gat 100\r\n",
        b"gats\r\n", b"gat x k\r\n", b"gat 1.5 k\r\n", b"gat noreply k\r\n",
        b"gats 0 k noreply\r\n", b"gat -1 k\r\n", b"get k j\r\n")


# --- noreply -------------------------------------------------------------------------------

def test_noreply_on_every_command_that_takes_it(fx):
    p = Pair(fx)
    p.check(store(b"k", b"1", extra=b" noreply"), store(b"k", b"2", command=b"add",
                                                          extra=b" noreply"),
            store(b"a", b"3", command=b"add", extra=b" noreply"),
            store(b"k", b"4", command=b"replace", extra=b" noreply"),
            store(b"missing", b"5", command=b"replace", extra=b" noreply"),
            store(b"k", b"6", command=b"append", extra=b" noreply"),
            store(b"k", b"7", command=b"prepend", extra=b" noreply"),
            store(b"missing", b"8", command=b"append", extra=b" noreply"),
            b"gets a missing k\r\n")  # {CAS} below is k's, the last one returned
    p.check(b"cas k 0 0 1 {CAS} noreply\r\n9\r\n", b"cas k 0 0 1 {CAS} noreply\r\nX\r\n",
            b"cas missing 0 0 1 1 noreply\r\nX\r\n",
            b"incr k 5 noreply\r\n", b"decr k 2 noreply\r\n", b"incr missing 1 noreply\r\n",
            b"incr a x noreply\r\n", b"incr k 1 2 noreply\r\n", b"touch k 100 noreply\r\n",
            b"touch missing 1 noreply\r\n", b"delete a noreply\r\n", b"delete a noreply\r\n",
            b"verbosity 1 noreply\r\n", b"verbosity noreply\r\n", b"get k a\r\n",
            b"flush_all noreply\r\n", b"get k\r\n", b"flush_all 0 noreply\r\n")


# --- flush_all, expiry ---------------------------------------------------------------------

def test_flush_all_forms(fx):
    requests = []
    for form in [b"flush_all", b"flush_all 0", b"flush_all noreply", b"flush_all 0 noreply",
                 b"flush_all -1", b"flush_all 0 0", b"flush_all x", b"flush_all 0 0 0",
                 b"flush_all 1.5", b"flush_all 0 x y"]:
        requests += [store(b"k", b"v"), form + b"\r\n", b"get k\r\n"]
    Pair(fx).check(*requests)


def test_flush_all_with_a_delay(fx):
    p = Pair(fx)
    p.check(store(b"k", b"v"), b"flush_all 2\r\nget k\r\n")  # one send: no clock tick between
    p.settle(b"get k\r\n", b"END\r\n")
    p.check(b"get k\r\n")


def server_time(conn):
    """The server's own relative clock, in whole seconds: `stats` uptime, which moves when the
    server ticks, and is the clock flush_all and TTLs count on (time follows the wall clock)."""
    for line in conn.request(b"stats\r\n").split(b"\r\n"):
        if line.startswith(b"STAT uptime "):
            return int(line.split()[2])
    raise AssertionError("no STAT uptime")


def flush_boundary(fx, conn, delay):
    """flush_all `delay` on one server, then a key stored every 50 ms for delay + 1 s: which of
    them survive, each with the second of the server's clock it was stored in, and the second the
    flush was sent in. Keys whose second is uncertain (the clock ticked during the store) are
    left out."""
    for _ in harness.bounded(20, 30):
        t = server_time(conn)
        expect(conn.request(b"flush_all %d\r\n" % delay), b"OK\r\n", "flush_all")
        if server_time(conn) == t:
            break
    stored = {}
    for i in harness.bounded(int((delay + 1) / 0.05), delay + 10):
        before = server_time(conn)
        key = b"fb%d" % i
        expect(conn.request(store(key, b"v")), b"STORED\r\n", "set")
        if server_time(conn) == before:
            stored[key] = before
        time.sleep(0.05)
    harness.poll(lambda: server_time(conn) >= t + delay + 1, delay + 5)
    reply = conn.request(b"get " + b" ".join(stored) + b"\r\n")
    alive = set(re.findall(rb"VALUE (\S+) ", reply))
    return t, stored, alive


def test_flush_all_with_a_delay_flushes_what_is_stored_up_to_the_end_of_its_last_second(fx):
    """flush_all N sent in the server's second T flushes what is stored up to the end of second
    T + N - 1 (memcached's oldest_live), and nothing stored from T + N on: on each server, by its
    own clock, which ticks at its own moment."""
    for binary in (MEMCACHED, fx.binary):
        conn = fx.conn(fx.server(binary, threads=2))
        t, stored, alive = flush_boundary(fx, conn, 2)
        expected = {k for k, second in stored.items() if second >= t + 2}
        if alive != expected or not expected or len(expected) == len(stored):
            wrong = sorted((second, k in alive) for k, second in stored.items()
                           if (k in alive) != (k in expected))
            raise AssertionError(f"{binary}: flush_all 2 sent at {t}; stored at {sorted(set(stored.values()))}; "
                                 f"(second, survived) wrongly: {wrong[:10]}")


def test_flush_all_with_an_absolute_time_in_the_past(fx):
    p = Pair(fx)
    now = int(time.time())
    # before either server started: memcached flushes nothing, and forgets a pending flush
    p.check(store(b"k", b"v"), b"flush_all %d\r\n" % (now - 3600), b"get k\r\n")
    p.check(b"flush_all 2\r\n", b"flush_all %d\r\n" % (now - 3600))
    time.sleep(3)
    p.check(b"get k\r\n")
    # after they started, but past: everything stored so far goes at once
    p.check(b"flush_all %d\r\n" % int(time.time() - 1), b"get k\r\n", store(b"k2", b"v"), b"get k2\r\n")


def test_exptime_forms(fx):
    now = int(time.time())
    Pair(fx).check(
        store(b"neg", b"v", exptime=-1), store(b"past", b"v", exptime=now - 100),
        store(b"future", b"v", exptime=now + 100), store(b"rel", b"v", exptime=100),
        store(b"month", b"v", exptime=2592000), store(b"month1", b"v", exptime=2592001),
        b"get neg past future rel month month1\r\n",
        store(b"neg", b"v"), b"touch neg -1\r\n", b"touch future %d\r\n" % (now - 100),
        b"get neg future\r\n")


def test_relative_exptime_expires(fx):
    p = Pair(fx)
    p.check(store(b"k", b"v", exptime=2), b"get k\r\n")
    p.settle(b"get k\r\n", b"END\r\n")
    p.check(b"get k\r\n", store(b"k", b"w", command=b"add"))


# --- the rest ------------------------------------------------------------------------------

def test_verbosity_forms(fx):
    Pair(fx).check(b"verbosity\r\n", b"verbosity 1\r\n", b"verbosity 0\r\n", b"verbosity x\r\n",
                   b"verbosity -1\r\n", b"verbosity 1 2\r\n", b"verbosity 1 2 3\r\n",
                   b"verbosity 1 noreply x\r\n")


def test_version_forms(fx):
    Pair(fx).check(b"version\r\n", b"version x\r\n", b"version x y z\r\n")


def test_stats_reset(fx):
    Pair(fx).check(b"stats reset\r\n", b"stats  reset\r\n", b"stats reset x\r\n")


def test_quit_forms(fx):
    p = Pair(fx)
    p.check(b"quit\r\n")
    p.check(b"quit x\r\n")
    p.check(store(b"k", b"v") + b"get k\r\nquit\r\nget k\r\n")
    p.check(b"get k\r\n")
