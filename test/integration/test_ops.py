"""Operations tooling, side by side with memcached: every stat name it prints, the version, the
operator commands' replies (slabs, cache_memlimit, lru_crawler, stats detail, stats cachedump,
watch, shutdown), key listings (metadump, cachedump) and last access times."""

import os
import re
import socket
import time
import urllib.parse

import harness
from harness import MEMCACHED, expect
from test_side_by_side import Pair, store


def stat_lines(conn, group=b""):
    """[(name, value)] of `stats <group>`, in order."""
    reply = conn.request(b"stats" + (b" " + group if group else b"") + b"\r\n")
    if not reply.endswith(b"END\r\n"):
        raise AssertionError(f"stats {group!r}: {reply[-200:]!r}")
    return [tuple(line.split(b" ", 2)[1:]) for line in reply.split(b"\r\n")[:-2]]


def names(conn, group=b"", generic=True):
    """The set of stat names; with `generic`, class and socket numbers read as N."""
    out = set()
    for name, _ in stat_lines(conn, group):
        out.add(re.sub(rb"^(items:)?\d+:", rb"\1N:", name) if generic else name)
    return out


def two(fx, **opts):
    """memcached and the server under test, each with one connection and one item of each of
    two sizes stored and read."""
    servers = [fx.server(MEMCACHED, threads=2, **opts), fx.server(threads=2, **opts)]
    conns = [fx.conn(s) for s in servers]
    for c in conns:
        c.request(store(b"small", b"v") + store(b"big", b"x" * 3000) + b"get small big\r\n")
    return servers, conns


def test_version_is_memcacheds_and_magpies_own_is_a_stat(fx):
    c = fx.conn()
    expect(c.request(b"version\r\n"), b"VERSION 1.6.18\r\n", "version")
    stats = dict(stat_lines(c))
    expect(stats[b"version"], b"1.6.18", "stats version")
    if not harness.is_memcached(fx.binary):
        expect(re.fullmatch(rb"\d+\.\d+\.\d+", stats[b"magpie_version"]) is not None, True,
               f"magpie_version {stats[b'magpie_version']!r}")


def test_every_stat_name_memcached_prints_is_printed(fx):
    _, conns = two(fx)
    for group in (b"", b"settings", b"items", b"slabs", b"conns"):
        missing = sorted(names(conns[0], group) - names(conns[1], group))
        expect(missing, [], f"names of `stats {group.decode()}` memcached prints and the server does not")


def test_stats_conns_lists_the_listener_and_each_connections_listen_address(fx):
    srv = fx.default
    c = fx.conn()
    lines = stat_lines(c, b"conns")
    listening = [n.split(b":")[0] for n, v in lines if n.endswith(b":state") and v == b"conn_listening"]
    expect(len(listening), 1, f"listeners in {lines}")
    fd = listening[0]
    addr = dict(lines)[fd + b":addr"]
    expect(addr, b"tcp:127.0.0.1:%d" % srv.port, "the listener's address")
    mine = [n for n, v in lines if n.endswith(b":listen_addr")]
    expect(len(mine) >= 1 and all(dict(lines)[n] == addr for n in mine), True, f"listen_addr lines in {lines}")
    fds = [int(n.split(b":")[0]) for n, _ in lines if n.endswith(b":addr")]
    expect(fds, sorted(fds), "connections in socket order")


def test_per_class_counters_add_up_to_the_totals(fx):
    c = fx.conn()
    c.request(store(b"a", b"1") + store(b"b", b"y" * 2000) + b"get a b nope\r\ntouch a 100\r\n"
              b"incr a 1\r\ndecr a 1\r\ndelete b\r\ngets a\r\n")
    token = int(c.request(b"gets a\r\n").split(b"\r\n")[0].split()[-1])
    c.request(b"cas a 0 0 1 %d\r\n2\r\ncas a 0 0 1 %d\r\n3\r\n" % (token, token))
    totals = dict(stat_lines(c))
    per_class = {}
    for name, value in stat_lines(c, b"slabs"):
        m = re.fullmatch(rb"\d+:(\w+)", name)
        if m:
            per_class[m.group(1)] = per_class.get(m.group(1), 0) + int(value)
    for name in (b"get_hits", b"cmd_set", b"delete_hits", b"incr_hits", b"decr_hits", b"cas_hits",
                 b"cas_badval", b"touch_hits"):
        expect(per_class.get(name, 0), int(totals[name]), f"{name.decode()} summed over classes")
    expect((int(totals[b"get_hits"]), int(totals[b"cas_hits"]), int(totals[b"cas_badval"])), (4, 1, 1),
           "get_hits, cas_hits, cas_badval")


def test_operator_command_replies_match_memcached(fx):
    p = Pair(fx)
    p.check(
        b"slabs automove 1\r\n", b"slabs automove 0\r\n", b"slabs automove 2\r\n", b"slabs automove 3\r\n",
        b"slabs automove x\r\n", b"slabs automove\r\n", b"slabs automove ratio 0.5\r\n",
        b"slabs automove ratio\r\n", b"slabs automove 1 noreply\r\n", b"slabs\r\n", b"slabs x\r\n",
        b"slabs reassign 1 1\r\n", b"slabs reassign x 2\r\n", b"slabs reassign 1\r\n",
        b"slabs reassign 5000 1\r\n", b"slabs reassign 1 -5\r\n",
        b"cache_memlimit\r\n", b"cache_memlimit x\r\n", b"cache_memlimit 4\r\n",
        b"cache_memlimit 2000000000\r\n", b"cache_memlimit 128\r\n", b"cache_memlimit 64 noreply\r\n",
        b"cache_memlimit 1 2 3\r\n",
        b"lru_crawler\r\n", b"lru_crawler x\r\n", b"lru_crawler tocrawl 10\r\n", b"lru_crawler tocrawl x\r\n",
        b"lru_crawler sleep 2000000\r\n", b"lru_crawler sleep 100\r\n", b"lru_crawler sleep x\r\n")
    # memcached answers any crawl BUSY while its crawler still runs, before it looks at the classes:
    # each crawl waits for both servers' crawlers to be idle.
    for crawl in (b"all", b"1,2", b"0", b"abc"):
        for conn in p.conns:
            if not harness.poll(lambda: b"STAT lru_crawler_running 0\r\n" in conn.request(b"stats\r\n"), 10):
                raise AssertionError("a crawler still running after 10 s")
        p.check(b"lru_crawler crawl %s\r\n" % crawl)
    p.check(
        b"lru_crawler metadump 0\r\n", b"lru_crawler metadump x\r\n",
        b"lru_crawler metadump all extra\r\n", b"lru_crawler enable\r\n",
        b"stats detail\r\n", b"stats detail x\r\n", b"stats detail on\r\n", b"stats detail off\r\n",
        b"stats cachedump\r\n", b"stats cachedump 1\r\n", b"stats cachedump x 1\r\n",
        b"stats cachedump 64 0\r\n", b"stats cachedump 0 0\r\n", b"stats cachedump 63 0\r\n",
        b"shutdown\r\n", b"watch nothing\r\n")


def test_lru_crawler_disable_and_enable(fx):
    p = Pair(fx)
    p.check(b"lru_crawler disable\r\n")
    # memcached's crawler thread notes that it is off only once it has ended: until then a
    # metadump answers "ERROR an unknown error happened" (seen under load). Wait for it.
    for i, conn in enumerate(p.conns):
        if not harness.poll(lambda: b"STAT lru_crawler no\r\n" in conn.request(b"stats settings\r\n"), 5):
            raise AssertionError(f"{p.servers[i].argv[0]}: stats settings never said lru_crawler no")
    p.check(b"lru_crawler metadump all\r\n", b"lru_crawler crawl all\r\n", b"lru_crawler enable\r\n")
    p.check_quiet(b"lru_crawler metadump 5\r\n")  # memcached reads nothing after a metadump


def test_stats_detail_counts_by_key_prefix(fx):
    requests = (b"stats detail on\r\n" + store(b"user:1", b"a") + store(b"user:2", b"b") + store(b"plain", b"c")
                + b"get user:1 user:9 session:1 plain\r\ndelete user:2\r\ndelete session:1\r\n"
                b"gat 10 user:1\r\n")
    dumps = []
    for binary in (MEMCACHED, fx.binary):
        c = fx.conn(fx.server(binary))
        c.request(requests)
        dumps.append(sorted(c.request(b"stats detail dump\r\n").split(b"\r\n")))
    expect(dumps[1], dumps[0], "stats detail dump (in any order)")
    expect(b"PREFIX user get 3 hit 2 set 2 del 1" in dumps[1], True, f"the user prefix in {dumps[1]}")


def metadump(conn, what=b"all"):
    """The lines of a metadump. memcached reads no more commands on a connection after a
    metadump (Magpie does), so this is the connection's last request to memcached."""
    busy = b"BUSY currently processing crawler request\r\n"
    for _ in harness.bounded(50, 10.0):  # memcached's own crawler may be running: it says so
        conn.send(b"lru_crawler metadump " + what + b"\r\n")
        reply = conn.read_until(lambda b: b.endswith(b"END\r\n") or b == busy, timeout=30)
        if reply != busy:
            return reply[:-5].decode().splitlines()
        time.sleep(0.2)
    raise AssertionError("the crawler stayed busy")


META_LINE = re.compile(r"key=(\S+) exp=(-?\d+) la=(\d+) cas=(\d+) fetch=(yes|no) cls=(\d+) size=(\d+)")


def test_metadump_lists_every_key_in_memcacheds_format(fx):
    keys = [b"plain", b"with space", b"utf8-\xc3\xa9", b"a%b:c/d", b"k" * 180]
    seen = []
    for binary in (MEMCACHED, fx.binary):
        c = fx.conn(fx.server(binary))
        for i, key in enumerate(keys):
            c.request(b"ms %s 1 b T%d\r\nx\r\n" % (__import__("base64").b64encode(key), 1000 * i))
        c.request(b"mg " + __import__("base64").b64encode(keys[0]) + b" b v\r\n")
        started = time.time()
        lines = metadump(c)
        rows = {}
        for line in lines:
            m = META_LINE.fullmatch(line)
            if not m:
                raise AssertionError(f"metadump line {line!r}")
            key, exp, la, cas, fetch, cls, size = m.groups()
            rows[urllib.parse.unquote_to_bytes(key)] = (key, int(exp), int(la), fetch)
            expect(abs(int(la) - started) <= 61, True, f"la {la} of {key}, now {started:.0f}")
        seen.append(rows)
        expect(sorted(rows), sorted(keys), "keys listed")
        for i, key in enumerate(keys):
            exp = rows[key][1]
            expect(exp == -1 if i == 0 else abs(exp - (started + 1000 * i)) <= 2, True, f"exp {exp} of {key}")
        expect(rows[keys[0]][3], "yes", "fetch of the key read")
    expect({k: v[0] for k, v in seen[1].items()}, {k: v[0] for k, v in seen[0].items()}, "URL-encoded keys")


def test_metadump_of_one_class_and_cachedump(fx):
    c = fx.conn()
    c.request(store(b"a", b"1", exptime=1000) + store(b"b", b"2") + store(b"big", b"z" * 5000))
    lines = [META_LINE.fullmatch(line).groups() for line in metadump(c)]
    cls = {l[0]: int(l[5]) for l in lines}
    expect(cls["a"] == cls["b"] != cls["big"], True, f"classes {cls}")
    expect(sorted(l.split(" ")[0] for l in metadump(c, b"%d" % cls["a"])), ["key=a", "key=b"], "one class")
    mc_id = (cls["a"] - 1) % 63 + 1
    dump = c.request(b"stats cachedump %d 0\r\n" % mc_id)
    items = re.findall(rb"ITEM (\S+) \[(\d+) b; (\d+) s\]\r\n", dump)
    expect(sorted(k for k, _, _ in items), [b"a", b"b"], f"cachedump {dump!r}")
    expect(dict((k, (int(n), int(t))) for k, n, t in items)[b"b"], (1, 0), "b's length and no expiry")
    expect(abs(dict((k, int(t)) for k, _, t in items)[b"a"] - time.time() - 1000) <= 2, True, "a's expiry")
    expect(c.request(b"stats cachedump %d 1\r\n" % mc_id).count(b"ITEM "), 1, "a limit of 1")


def test_metadump_streams_many_keys_in_bounded_memory_while_others_are_served(fx):
    n = 200_000
    srv = fx.server(memory_mb=256, threads=2)
    c = fx.conn(srv)
    for start in range(0, n, 5000):
        batch = b"".join(b"set key:%08d 0 0 8 noreply\r\nvalue-%02d\r\n" % (i, i % 100)
                         for i in range(start, start + 5000))
        c.request(batch, timeout=30)
    expect(int(dict(stat_lines(c))[b"curr_items"]), n, "items stored")
    rss_before = harness.rss(srv) // 1024
    dumper = socket.create_connection((harness.HOST, srv.port), timeout=harness.IO_TIMEOUT)
    dumper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    dumper.sendall(b"lru_crawler metadump all\r\n")
    other = fx.conn(srv)
    got, lines, slept = b"", 0, 0
    for i in harness.bounded(1 << 20, 120):
        chunk = dumper.recv(65536)
        if not chunk:
            break
        got += chunk
        lines += chunk.count(b"\n")
        if got.endswith(b"END\r\n"):
            break
        got = got[-16:]
        if i % 50 == 0 and slept < 40:  # a slow reader: the server must wait, not buffer
            time.sleep(0.05)
            slept += 1
            expect(other.request(b"get key:00000007\r\n"), b"VALUE key:00000007 0 8\r\nvalue-07\r\nEND\r\n",
                   "another client served during the dump")
    dumper.close()
    # memcached's crawler may pass over a few items it finds busy
    expect(lines == n + 1 or (harness.is_memcached(fx.binary) and lines > 0.99 * n), True,
           f"{lines} lines in the dump of {n} keys (and END)")
    grew = harness.rss(srv) // 1024 - rss_before
    if os.environ.get("MAGPIE_SANITIZER") is None and grew > 32 * 1024:
        raise AssertionError(f"RSS grew by {grew} KiB streaming a {n}-key dump")


def test_last_access_in_me_mg_and_items_age(fx):
    Pair(fx).check(store(b"k", b"v"), b"me k\r\n".replace(b"me k", b"mg k l h t"), b"mg k l h v\r\n",
                   b"mg missing l h\r\n")
    c = fx.conn()
    c.request(store(b"k", b"v"))
    expect(re.search(rb" la=0 ", c.request(b"me k\r\n")) is not None, True, "me la=0 right after a set")
    ages = [v for n, v in stat_lines(c, b"items") if n.endswith(b":age")]
    expect(len(ages) >= 1 and all(int(a) >= 0 for a in ages), True, f"items ages {ages}")


def test_cache_memlimit_grows_and_shrinks_the_memory_in_use(fx):
    if harness.is_memcached(fx.binary):
        return  # memcached lowers its limit but keeps the pages it has
    srv = fx.server(memory_mb=32, threads=2)
    c = fx.conn(srv)
    value = b"v" * 10000
    def fill(count):
        for start in range(0, count, 200):
            c.request(b"".join(b"set fill:%d 0 0 %d noreply\r\n%s\r\n" % (i, len(value), value)
                               for i in range(start, start + 200)), timeout=30)
    fill(6000)  # 60 MB into 32
    malloced = lambda: int(dict(stat_lines(c, b"slabs"))[b"total_malloced"])
    expect(malloced() <= 32 * 1024 * 1024, True, f"total_malloced {malloced()} under -m 32")
    expect(c.request(b"cache_memlimit 16\r\n"), b"OK\r\n", "shrink")
    expect(harness.poll(lambda: malloced() <= 16 * 1024 * 1024, 10.0), True,
           f"total_malloced {malloced()} after shrinking to 16 MB")
    expect(dict(stat_lines(c))[b"limit_maxbytes"], b"%d" % (16 * 1024 * 1024), "limit_maxbytes")
    expect(c.request(b"cache_memlimit 64\r\n"), b"OK\r\n", "grow")
    fill(6000)
    expect(malloced() > 32 * 1024 * 1024, True, f"total_malloced {malloced()} after growing to 64 MB")


def test_slabs_reassign_moves_a_page(fx):
    if harness.is_memcached(fx.binary):
        return  # memcached moves pages too, but in its own classes
    c = fx.conn()
    value = b"v" * 1000
    for start in range(0, 3000, 500):
        c.request(b"".join(b"set r:%d 0 0 %d noreply\r\n%s\r\n" % (i, len(value), value)
                           for i in range(start, start + 500)))
    pages = lambda: {int(n.split(b":")[0]): int(v) for n, v in stat_lines(c, b"slabs") if n.endswith(b":total_pages")}
    src = max(pages(), key=lambda k: pages()[k])
    before = pages()[src]
    expect(before >= 2, True, f"pages {pages()}")
    dst = 1 if src != 1 else 2
    expect(c.request(b"slabs reassign %d %d\r\n" % (src, dst)), b"OK\r\n", "reassign")
    expect(harness.poll(lambda: pages().get(src) == before - 1 and pages().get(dst) == 1, 5.0), True,
           f"pages after the move: {pages()}")


def test_watch_streams_fetches_mutations_and_evictions(fx):
    srv = fx.server(memory_mb=8, threads=2)
    watcher = fx.conn(srv)
    watcher.send(b"watch fetchers mutations evictions\r\n")
    expect(watcher.read_line(), b"OK\r\n", "watch")
    c = fx.conn(srv)
    c.request(store(b"w:1", b"abc") + b"get w:1 w:2\r\n")
    got = watcher.read_until(lambda b: b"key=w%3A2" in b and b.endswith(b"\n")).decode()
    # (memcached also logs the lookup a set makes, as a get that finds nothing)
    patterns = [r"type=item_store key=w%3A1 status=stored cmd=set ttl=0 clsid=\d+ cfd=\d+ size=3",
                r"type=item_get key=w%3A1 status=found clsid=\d+ cfd=\d+ size=3",
                r"type=item_get key=w%3A2 status=not_found clsid=0 cfd=\d+ size=0"]
    for pattern in patterns:
        expect(re.search(r"^ts=\d+\.\d+ gid=\d+ " + pattern + "$", got, re.M) is not None, True,
               f"a line {pattern!r} in {got!r}")
    value = b"e" * 10000
    for start in range(0, 2000, 200):  # 20 MB into 8: evictions
        c.request(b"".join(b"set ev:%d 0 0 %d noreply\r\n%s\r\n" % (i, len(value), value)
                           for i in range(start, start + 200)))
    got = watcher.read_until(lambda b: b"type=eviction" in b, timeout=10)
    line = next(l for l in got.decode().splitlines() if "type=eviction" in l)
    expect(re.search(r"type=eviction key=\S+ fetch=(yes|no) ttl=-?\d+ la=\d+ clsid=\d+ size=\d+", line) is not None,
           True, f"eviction line {line!r}")


def test_shutdown_when_enabled_stops_the_server(fx):
    srv = harness.Server(fx.binary, threads=2, extra=["-A"])
    try:
        c = harness.Conn(srv.port)
        expect(c.request(store(b"k", b"v")), b"STORED\r\n", "a set first")
        c.send(b"shutdown\r\n")
        data, closed = c.read_for(3.0)
        expect((data, closed), (b"", True), "shutdown closes the connection without a reply")
        expect(srv.proc.wait(harness.STOP_TIMEOUT), 0, "exit status")
        c.close()
    finally:
        srv.stop()
    s = dict(stat_lines(fx.conn(fx.server(extra=["-A"])), b"settings"))
    expect(s[b"shutdown_command"], b"yes", "stats settings shutdown_command with -A")
