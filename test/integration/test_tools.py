"""Operators' tools and more real clients, side by side with memcached: memcached-tool (display,
stats, settings, dump, keys), memcdump and php-memcached's getAllKeys() (key listings), pylibmc
and Cache::Memcached::Fast over the text protocol. Each runs against memcached 1.6.18 and against
the server under test after the same stores; what it prints must agree (exactly, or where the
servers' own numbers differ, in the names and keys it lists)."""

import os
import re
import subprocess

import harness
from harness import MEMCACHED, expect
from test_clients import CLIENTS, run_client, side_by_side

TOOL = "/usr/share/memcached/scripts/memcached-tool"
KEYS = [b"alpha", b"user:1", b"user:2", b"page:/home?x=1", b"big"]


def load(fx):
    """memcached and the server under test with the same items."""
    servers = [fx.server(MEMCACHED, threads=2), fx.server(threads=2)]
    for srv in servers:
        c = fx.conn(srv)
        for i, key in enumerate(KEYS):
            value = b"v" * (5000 if key == b"big" else 10 + i)
            c.request(b"set %s %d 0 %d\r\n%s\r\n" % (key, i, len(value), value))
        c.request(b"get alpha user:1\r\n")
    return servers


def tool(srv, *args):
    done = subprocess.run(["perl", TOOL, f"127.0.0.1:{srv.port}", *args], capture_output=True, timeout=20,
                          stdin=subprocess.DEVNULL)
    expect(done.returncode, 0, f"memcached-tool {' '.join(args)}: {done.stderr[-300:]!r}")
    return done.stdout.decode(errors="replace")


def test_memcached_tool_dump_and_keys(fx):
    outs = [tool(srv, "dump") for srv in load(fx)]
    adds = [sorted(re.findall(r"add (\S+) (\d+) (\d+) (\d+)\r\n", out)) for out in outs]
    expect(adds[1], adds[0], "memcached-tool dump: the add lines (key, flags, exptime, length)")
    expect(len(adds[1]), len(KEYS), "keys dumped")
    keys = [sorted(re.findall(r"^key=(\S+) exp=-1 la=\d+ cas=\d+ fetch=(yes|no) cls=\d+ size=\d+$", tool(srv, "keys"),
                              re.M)) for srv in load(fx)]
    expect(keys[1], keys[0], "memcached-tool keys: keys and whether each was fetched")


def test_memcached_tool_display_stats_and_settings(fx):
    servers = load(fx)
    for mode, line in (("stats", r"^\s+(\S+)\s+.*$"), ("settings", r"^\s+(\S+)\s+.*$")):
        fields = [set(re.findall(line, tool(srv, mode), re.M)) for srv in servers]
        expect(sorted(fields[0] - fields[1]), [], f"memcached-tool {mode}: fields memcached has and the server not")
    rows = re.findall(r"^\s*(\d+)\s+(\S+)\s+(\d+)s\s+(\d+)\s+(\d+)\s+(yes| no)", tool(servers[1], "display"), re.M)
    expect(sum(int(r[4]) for r in rows), len(KEYS), f"items counted by memcached-tool display: {rows}")


def test_memcdump_lists_every_key(fx):
    outs = []
    for srv in load(fx):
        done = subprocess.run(["memcdump", f"--servers=127.0.0.1:{srv.port}"], capture_output=True, timeout=20,
                              stdin=subprocess.DEVNULL)
        expect(done.returncode, 0, f"memcdump: {done.stderr[-300:]!r}")
        outs.append(sorted(done.stdout.split()))
    # memcached's cachedump walks only its cold LRU, which an item reaches only once its LRU
    # maintainer has moved it there (seen: "big" not yet): what it lists, the server must list too
    expect(set(outs[0]) <= set(outs[1]), True, f"memcached's keys {outs[0]} among {outs[1]}")
    expect(outs[1], sorted(KEYS), "memcdump lists every key")


def test_php_memcached_get_all_keys(fx):
    # memcached's cachedump walks only its cold LRU, so it leaves out items stored lately;
    # the server under test must list them all, and at least what memcached lists
    script = ["php", os.path.join(CLIENTS, "php_keys.php")]
    outs = [run_client(script, fx.server(binary, threads=2).port).splitlines() for binary in (MEMCACHED, fx.binary)]
    if not harness.is_memcached(fx.binary):
        expect(outs[1], ["keys blob page:/x tiny user:42", "still alive '1'"], "php-memcached getAllKeys")
    expect(set(outs[0][0].split()) <= set(outs[1][0].split()), True, f"memcached's keys {outs[0]}")


def test_pylibmc_text(fx):
    side_by_side(fx, ["/usr/bin/python3", os.path.join(CLIENTS, "pylibmc_text.py")],
                 must_have=["get '1' b'\\x00\\xff' None", "big 500000"])


def test_cache_memcached_fast(fx):
    side_by_side(fx, ["perl", os.path.join(CLIENTS, "memcached_fast.pl")],
                 must_have=["get 1 undef", "version 1.6.18"])
