"""The meta commands (mg ms md ma me mn), side by side with memcached, and the stampede
protection they exist for.

Side by side: the same raw sessions go to the server under test and to memcached, and the replies
must be identical once CAS numbers are masked (the `c` flag's token and a VALUE line's fifth
field) and TTLs are allowed one second of clock skew between the two processes. `me` is compared
on Magpie alone (Magpie has no `la=`, and sizes and classes differ), and the `l` flag, which
Magpie does not support, is left out of the comparison.
"""

import re
import threading

import harness
from harness import expect

CAS_TOKEN = re.compile(rb"c\d+")
TTL_TOKEN = re.compile(rb"t-?\d+")
VERSION_LINE = re.compile(rb"(?:^|(?<=\r\n))VERSION [^\r\n]*\r\n\Z")
META_CODES = {b"HD", b"VA", b"EN", b"NS", b"EX", b"NF"}

# Each session is a list of requests sent in order on one connection. Sessions use mn, so the
# end of a request's replies is marked by a `version` sent after it instead.
# "{cas}" is replaced by the last CAS this server returned in the session, "{cas-1}" by one less.
SESSIONS = {
    "mg flags v f s t k O q on hit and miss": [
        b"ms mg1 5 T0 F7\r\nhello\r\n",
        b"mg mg1 v f s t k O99\r\n",
        b"mg mg1 v c\r\n",
        b"mg mg1\r\n",
        b"mg mg1 k q\r\n",
        b"mg mg1 s v q O7\r\n",
        b"mg mg1-missing v\r\n",
        b"mg mg1-missing v q O8\r\n",
        b"mg mg1-missing k O9\r\n",
        b"mn\r\n",
    ],
    "mg T updates the TTL and t reports it": [
        b"ms ttl1 3 T100\r\nabc\r\n",
        b"mg ttl1 t v\r\n",
        b"mg ttl1 T30 t\r\n",
        b"mg ttl1 t T0\r\n",
        b"mg ttl1 t\r\n",
        b"ms ttl2 1 T-1\r\nx\r\n",
        b"mg ttl2 v\r\n",
    ],
    "mg N vivifies on miss: one W, then Z, then the winner stores with C": [
        b"mg viv1 v c N30 t\r\n",
        b"mg viv1 v c N30 t\r\n",
        b"mg viv1 s v\r\n",
        b"ms viv1 5 T300 C{cas}\r\nalice\r\n",
        b"mg viv1 v t c\r\n",
        b"mg viv1 v N30\r\n",
    ],
    "mg R wins a recache once the TTL is under the token": [
        b"ms rec1 2 T10\r\nhi\r\n",
        b"mg rec1 v R30 t\r\n",
        b"mg rec1 v R30 t\r\n",
        b"mg rec1 v R5 t\r\n",
        b"ms rec2 2 T300\r\nhi\r\n",
        b"mg rec2 v R30 t\r\n",
        b"mg rec2 v R30 t c\r\n",
    ],
    "md I marks stale: X W once, then X Z, until a set replaces it": [
        b"ms st1 2\r\nhi\r\n",
        b"md st1 I T30\r\n",
        b"mg st1 v t c\r\n",
        b"mg st1 v t\r\n",
        b"mg st1 s\r\n",
        b"ms st1 3 T60\r\nnew\r\n",
        b"mg st1 v t\r\n",
        b"md st1-missing I\r\n",
    ],
    "ms I with an older CAS stores a stale value": [
        b"ms inv1 3 c\r\nold\r\n",
        b"ms inv1 3 c\r\nnew\r\n",
        b"ms inv1 5 I C{cas-1}\r\nolder\r\n",
        b"mg inv1 v c\r\n",
        b"ms inv1 5 C{cas-1}\r\nolder\r\n",
        b"ms inv1 5 C{cas}\r\nfresh\r\n",
        b"mg inv1 v\r\n",
    ],
    "ms modes E A P R S and an invalid mode": [
        b"ms mode1 1 MA\r\nx\r\n",
        b"ms mode1 1 MP\r\nx\r\n",
        b"ms mode1 1 MR\r\nx\r\n",
        b"ms mode1 1 ME\r\nx\r\n",
        b"ms mode1 1 ME\r\ny\r\n",
        b"ms mode1 2 MA\r\nzz\r\n",
        b"ms mode1 2 MP\r\naa\r\n",
        b"mg mode1 v\r\n",
        b"ms mode1 1 MR\r\nr\r\n",
        b"mg mode1 v\r\n",
        b"ms mode1 1 MS\r\ns\r\n",
        b"mg mode1 v\r\n",
        b"ms mode1 1 ma\r\nx\r\n",
        b"ms mode1 1 MX\r\nx\r\n",
        b"ms mode1 1 ME q\r\nx\r\n",
        b"ms mode1 1 MA C1\r\nx\r\n",
    ],
    "ms flags F T c k O q b and C": [
        b"ms fl1 2 F4294967295 T0 c k O1\r\nab\r\n",
        b"mg fl1 f v\r\n",
        b"ms fl1 2 F0 q\r\ncd\r\n",
        b"mg fl1 f v\r\n",
        b"ms fl1 2 Fabc\r\nef\r\n",
        b"ms fl1 2 C99999\r\nef\r\n",
        b"ms fl1 2 C99999 q O2\r\nef\r\n",
        b"ms fl1-missing 2 C1\r\nef\r\n",
        b"mg fl1 c\r\n",
        b"ms fl1 2 C{cas} c\r\ngh\r\n",
        b"mg fl1 v c\r\n",
        b"ms ZmwyLWJpbmFyeQ== 2 b k\r\nij\r\n",
        b"mg ZmwyLWJpbmFyeQ== b v k\r\n",
        b"mg fl2-binary v k\r\n",
    ],
    "ma incr and decr: N J D M T C q v t c": [
        b"ma ar1\r\n",
        b"ma ar1 q\r\n",
        b"ma ar1 N0 J10 v\r\n",
        b"ma ar1 v\r\n",
        b"ma ar1 MD D20 v\r\n",
        b"ma ar1 D5 v t c\r\n",
        b"ma ar1 q D1\r\n",
        b"mg ar1 v\r\n",
        b"ma ar1 M- v\r\n",
        b"ma ar1 M+ D3 v\r\n",
        b"ma ar1 MI v T100 t\r\n",
        b"ma ar1 MX\r\n",
        b"ma ar1 C99999 v\r\n",
        b"ma ar1 c\r\n",
        b"ma ar1 C{cas} v c\r\n",
        b"ms ar2 20\r\n18446744073709551615\r\n",
        b"ma ar2 v\r\n",
        b"ms ar3 2\r\nab\r\n",
        b"ma ar3\r\n",
        b"ma ar4 N0 q\r\n",
        b"mg ar4 v\r\n",
        b"ma ar5 J5 v\r\n",
        b"ma YXI2 b N0 J7 v k\r\n",
    ],
    "md flags k O q C T and misses": [
        b"md del-missing\r\n",
        b"md del-missing q\r\n",
        b"ms del1 1\r\nx\r\n",
        b"md del1 k O5\r\n",
        b"md del1\r\n",
        b"ms del2 1 c\r\nx\r\n",
        b"md del2 C99999\r\n",
        b"md del2 C99999 q\r\n",
        b"md del2 C{cas} q\r\n",
        b"mg del2 v\r\n",
        b"ms del3 1\r\nx\r\n",
        b"md del3 T30\r\n",
        b"ms ZGVsNA== 1 b\r\nx\r\n",
        b"md ZGVsNA== b k\r\n",
        b"md ZGVsNA== b\r\n",
    ],
    "mn and pipelined quiet commands": [
        b"mn\r\n",
        b"ms q1 1 q\r\na\r\nms q2 1 q\r\nb\r\nmg q1 v q k\r\nmg q-miss v q k\r\n"
        b"mg q2 v q k\r\nmd q1 q\r\nmd q1 q\r\nmg q1 v q\r\n",
    ],
    "error replies": [
        b"mg\r\n",
        b"mg err1 !\r\n",
        b"mg err1 v v\r\n",
        b"mg err1 O" + b"o" * 33 + b"\r\n",
        b"mg " + b"k" * 251 + b" v\r\n",
        b"mg " + b"k" * 250 + b" v\r\n",
        b"mg !!!! b v\r\n",
        b"mg err1 N\r\n",
        b"mg err1 Nabc\r\n",
        b"mg err1 T-5 v\r\n",
        b"ms err1\r\n",
        b"ms err1 abc\r\n",
        b"ms err1 -1\r\n",
        b"ms err1 1 T\r\nx\r\n",
        b"ms err1 1 S100\r\nx\r\n",
        b"ms err1 1\r\nxyz\r\n",
        b"ms err1 2000000\r\n" + b"z" * 2000000 + b"\r\n",
        b"md\r\n",
        b"md err1 Cabc\r\n",
        b"ma\r\n",
        b"ma err1 Dabc\r\n",
        b"ma err1 N0 Jabc\r\n",
        b"mn extra\r\n",
        b"mx err1\r\n",
        b"mg err1 u h v\r\n",
        b"ms err1 2 T0\r\nok\r\n",
        b"mg err1 h v\r\n",
        b"mg err1 h u\r\n",
    ],
    "classic commands see meta-stored items": [
        b"ms cl1 5 F3 T0\r\nhello\r\n",
        b"gets cl1\r\n",
        b"cas cl1 0 0 1 {cas}\r\nx\r\n",
        b"mg cl1 v f c\r\n",
        b"set cl2 4 0 2\r\nab\r\n",
        b"mg cl2 v f s\r\n",
        b"incr cl3 1\r\n",
        b"ma cl3 N0 J41 v\r\n",
        b"incr cl3 1\r\n",
    ],
}


def substitute(request, cas):
    if b"{cas" in request and cas is None:
        raise AssertionError(f"{request!r} needs a CAS and none was seen yet")
    return request.replace(b"{cas-1}", b"%d" % (cas - 1 if cas else 0)).replace(
        b"{cas}", b"%d" % (cas or 0))


def parse(reply):
    """The reply as a list of lines and data blocks, each line a list of tokens."""
    items, pos = [], 0
    for _ in range(len(reply) + 1):
        if pos >= len(reply):
            break
        end = reply.find(b"\r\n", pos)
        if end < 0:
            raise AssertionError(f"reply does not end in CRLF: {reply[pos:pos + 200]!r}")
        tokens = reply[pos:end].split(b" ")
        items.append(tokens)
        pos = end + 2
        size = None
        if tokens[0] == b"VA" and len(tokens) > 1 and tokens[1].isdigit():
            size = int(tokens[1])
        elif tokens[0] == b"VALUE" and len(tokens) >= 4 and tokens[3].isdigit():
            size = int(tokens[3])
        if size is not None:
            items.append([reply[pos:pos + size + 2]])
            pos += size + 2
    return items


def last_cas(items, previous):
    cas = previous
    for tokens in items:
        if tokens[0] in META_CODES:
            cas = next((int(t[1:]) for t in tokens[1:] if CAS_TOKEN.fullmatch(t)), cas)
        elif tokens[0] == b"VALUE" and len(tokens) == 5:
            cas = int(tokens[4])
    return cas


def masked(items):
    out = []
    for tokens in items:
        if tokens[0] in META_CODES:
            tokens = [tokens[0]] + [b"c<CAS>" if CAS_TOKEN.fullmatch(t) else t for t in tokens[1:]]
        elif tokens[0] == b"VALUE" and len(tokens) == 5:
            tokens = tokens[:4] + [b"<CAS>"]
        out.append(tokens)
    return out


def same_but_clock_skew(ours, theirs):
    """Equal, except that TTL tokens (t<seconds>) may differ by one second."""
    if len(ours) != len(theirs):
        return False
    for a, b in zip(ours, theirs):
        if a == b:
            continue
        if len(a) != len(b) or a[0] not in META_CODES:
            return False
        for x, y in zip(a[1:], b[1:]):
            if x != y and not (TTL_TOKEN.fullmatch(x) and TTL_TOKEN.fullmatch(y) and
                               abs(int(x[1:]) - int(y[1:])) <= 1 and b"-1" not in (x[1:], y[1:])):
                return False
    return True


def request_then_version(conn, request):
    """The replies to `request`: everything before the VERSION line of a `version` sent after
    it."""
    conn.send(request + b"version\r\n")
    reply = conn.read_until(lambda b: VERSION_LINE.search(b) is not None, 2 * harness.IO_TIMEOUT)
    return reply[:VERSION_LINE.search(reply).start()]


def run_session(conn, requests):
    """[(request as sent, masked reply)] for one session on one connection."""
    results, cas = [], None
    for request in requests:
        request = substitute(request, cas)
        items = parse(request_then_version(conn, request))
        cas = last_cas(items, cas)
        results.append((request, masked(items)))
    return results


def test_meta_sessions_answer_as_memcached_does(fx):
    ours, reference = fx.default, fx.server(binary=harness.MEMCACHED)
    mismatches = []
    for name, requests in SESSIONS.items():
        got = run_session(fx.conn(ours), requests)
        want = run_session(fx.conn(reference), requests)
        for (request, reply), (_, expected) in zip(got, want):
            if not same_but_clock_skew(reply, expected):
                mismatches.append(f"{name}: {request!r}\n  got      {reply!r}\n"
                                  f"  memcached {expected!r}")
    if mismatches:
        raise AssertionError(f"{len(mismatches)} replies differ from memcached's:\n" +
                             "\n".join(mismatches[:10]))


def test_meta_sessions_are_not_trivial(fx):
    """Guards the side-by-side test against sessions that only ever produce errors."""
    c = fx.conn(fx.default)
    expect(c.request(b"ms pin 5 T0 F7\r\nhello\r\nmg pin v f s t k O99\r\n"),
           b"HD\r\nVA 5 f7 s5 t-1 kpin O99\r\nhello\r\n", "ms then mg")
    expect(c.request(b"mg pin2 v N30 s\r\nmg pin2 v N30 s\r\n"),
           b"VA 0 s0 W\r\n\r\nVA 0 s0 Z\r\n\r\n", "vivify")
    expect(c.request(b"ma pin3 N0 J41 v\r\nma pin3 v\r\n"), b"VA 2\r\n41\r\nVA 2\r\n42\r\n", "ma")
    expect(c.request(b"md pin q\r\nmg pin v\r\n"), b"EN\r\n", "md q then mg")


GET_COUNTERS = (b"cmd_get", b"get_hits", b"get_misses", b"cmd_touch", b"touch_hits", b"touch_misses")


def get_counters(conn):
    stats = dict(line.split()[1:3] for line in conn.request(b"stats\r\n").split(b"\r\n")
                 if line.startswith(b"STAT "))
    return {name: int(stats[name]) for name in GET_COUNTERS}


def test_mg_counts_as_memcached_does_a_miss_with_t_is_a_get_miss(fx):
    """mg with T counts a touch when it hits and a get miss when it misses, as memcached 1.6.18."""
    session = (b"mg mc-missing T30 v\r\n", b"mg mc-missing T30\r\n", b"ms mc-k 1\r\nv\r\n",
               b"mg mc-k T30 v\r\n", b"mg mc-k v\r\n", b"mg mc-missing v\r\n")
    counts = []
    for server in (fx.server(binary=harness.MEMCACHED), fx.default):
        conn = fx.conn(server)
        for request in session:
            conn.request(request)
        counts.append(get_counters(conn))
    expect(counts[1], counts[0], "get and touch counters after the same mg requests as memcached")
    expect(counts[0][b"get_misses"], 3, "memcached's own count of get misses (the session is not trivial)")


def test_me_dumps_the_items_metadata(fx):
    if harness.is_memcached(fx.binary):
        return  # memcached's format, with Magpie's own sizes and classes
    c = fx.conn(fx.default)
    expect(c.request(b"ms dbg 5 T100\r\nhello\r\n"), b"HD\r\n", "ms")
    line = c.request(b"me dbg\r\n")
    found = re.fullmatch(rb"ME dbg exp=(-?\d+) la=0 cas=(\d+) fetch=no cls=(\d+) size=(\d+)\r\n", line)
    if not found:
        raise AssertionError(f"me dbg: got {line!r}")
    exp, cas, cls, size = (int(g) for g in found.groups())
    # memcached 1.6.18 prints exp as now - exptime: minus the seconds left
    expect(exp in (-100, -99), True, f"exp={exp}")
    expect(cls >= 1 and size >= len(b"dbg") + len(b"hello"), True, f"cls={cls} size={size}")
    expect(c.request(b"mg dbg c\r\n"), b"HD c%d\r\n" % cas, "the CAS me reported")
    expect(c.request(b"mg dbg v\r\n"), b"VA 5\r\nhello\r\n", "a fetch")
    after = c.request(b"me dbg\r\n")
    expect(re.fullmatch(rb"ME dbg exp=-\d+ la=0 cas=%d fetch=yes cls=%d size=%d\r\n" % (cas, cls, size),
                        after) is not None, True, f"me after a fetch: {after!r}")
    expect(c.request(b"ms ZGJnLWJpbg== 1 b T0\r\nx\r\nme ZGJnLWJpbg== b\r\n").split(b" ")[:3],
           [b"HD\r\nME", b"ZGJnLWJpbg==", b"exp=-1"], "me of a base64 key")
    expect(c.request(b"me dbg-missing\r\n"), b"EN\r\n", "me of a missing key")
    expect(c.request(b"me\r\n"), b"CLIENT_ERROR bad command line format\r\n", "me without a key")


def test_mg_l_and_h_tell_last_access_and_whether_it_was_read(fx):
    # l is the seconds since the last access, h whether the item was read before, both as they
    # were before this request; a miss is EN (Dalli's get_with_metadata sends l on every get)
    c = fx.conn(fx.default)
    expect(c.request(b"mg lflag l h v\r\n"), b"EN\r\n", "mg l on a miss")
    expect(c.request(b"ms lflag 1\r\nx\r\nmg lflag l h\r\n"), b"HD\r\nHD l0 h0\r\n", "mg l h after a set")
    expect(c.request(b"mg lflag l h v\r\n"), b"VA 1 l0 h1\r\nx\r\n", "mg l h after a read")
    expect(c.request(b"md lflag l q\r\nmg lflag l\r\n"), b"EN\r\n", "l is accepted by md")


# ---- stampedes -------------------------------------------------------------------------------

CLIENTS = 50
ROUNDS = 5


def stampede(server, name, prepare, request, rounds=ROUNDS, clients=CLIENTS):
    """For each round: run prepare(conn, key) on a setup connection for a fresh key, then have
    `clients` connections send request(key) at the same moment. Returns, per round, the list of
    replies."""
    conns = [harness.Conn(server.port) for _ in range(clients)]
    setup = harness.Conn(server.port)
    try:
        all_replies = []
        for round_no in range(rounds):
            key = b"stampede:%s:%d" % (name, round_no)
            prepare(setup, key)
            barrier = threading.Barrier(clients, timeout=harness.IO_TIMEOUT)
            replies = [None] * clients

            def client(i):
                def work():
                    barrier.wait()
                    replies[i] = conns[i].request(request(key))
                return work
            harness.run_threads([client(i) for i in range(clients)], 2 * harness.IO_TIMEOUT)
            all_replies.append(replies)
        return all_replies
    finally:
        for c in conns + [setup]:
            c.close()


def flags_of(reply):
    """The flag tokens of a one-item reply (VA or HD line), without the data block."""
    return reply.split(b"\r\n", 1)[0].split(b" ")[1:]


def check_one_winner(replies, what, also=()):
    winners = [r for r in replies if b"W" in flags_of(r)]
    losers = [r for r in replies if b"Z" in flags_of(r) and b"W" not in flags_of(r)]
    expect((len(winners), len(losers)), (1, len(replies) - 1),
           f"{what}: (W, Z) replies among {len(replies)}; e.g. {sorted(set(replies))[:4]!r}")
    for flag in also:
        expect(all(flag in flags_of(r) for r in replies), True,
               f"{what}: every reply has {flag!r}")


def servers_for_stampede(fx):
    ours = fx.default
    if harness.is_memcached(fx.binary):
        return [("memcached", ours)]
    return [("magpie", ours), ("memcached", fx.server(binary=harness.MEMCACHED))]


def test_stampede_on_a_missing_key_has_exactly_one_winner(fx):
    for label, server in servers_for_stampede(fx):
        rounds = stampede(server, b"missing",
                          lambda c, key: expect(c.request(b"mg " + key + b"\r\n"), b"EN\r\n"),
                          lambda key: b"mg " + key + b" v c N30 t\r\n")
        for n, replies in enumerate(rounds):
            check_one_winner(replies, f"{label} round {n}: mg N30 on a missing key")
            expect({r.split(b"\r\n", 1)[0].split(b" ")[1] for r in replies}, {b"0"},
                   f"{label} round {n}: the placeholder is empty")


def test_stampede_on_an_expiring_key_gives_one_recache_win(fx):
    def prepare(c, key):
        expect(c.request(b"ms " + key + b" 5 T10\r\nstale\r\n"), b"HD\r\n", "ms T10")
    for label, server in servers_for_stampede(fx):
        rounds = stampede(server, b"expiring", prepare, lambda key: b"mg " + key + b" v R30 t\r\n")
        for n, replies in enumerate(rounds):
            check_one_winner(replies, f"{label} round {n}: mg R30 with 10 s left")
            expect({r.split(b"\r\n")[1] for r in replies}, {b"stale"},
                   f"{label} round {n}: everyone still gets the value")


def test_stampede_on_an_invalidated_key_gives_one_win_and_stale_data(fx):
    def prepare(c, key):
        expect(c.request(b"ms " + key + b" 3 T0\r\nold\r\nmd " + key + b" I T30\r\n"),
               b"HD\r\nHD\r\n", "ms then md I")
    for label, server in servers_for_stampede(fx):
        rounds = stampede(server, b"invalidated", prepare, lambda key: b"mg " + key + b" v c\r\n")
        for n, replies in enumerate(rounds):
            check_one_winner(replies, f"{label} round {n}: mg after md I", also=[b"X"])
            expect({r.split(b"\r\n")[1] for r in replies}, {b"old"},
                   f"{label} round {n}: everyone gets the stale value")
