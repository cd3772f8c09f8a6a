"""Observability: the --metrics endpoint (Prometheus text format, memcached_exporter's names),
the latency histograms, and `stats hotkeys`.

The page is checked by Prometheus's own tools: `promtool check metrics` on a live scrape, and a
real Prometheus server that scrapes Magpie every second and is asked, through its HTTP API, for
a counter the test moved. HTTP clients that misbehave (other paths and methods, huge heads,
slowloris, many idle connections) must not get in the way of scrapes or of the cache.

memcached has no metrics endpoint and no hot keys: these tests are Magpie's alone.
"""

import json
import os
import random
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import harness
from harness import expect

PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
HEAD_MAX = 8192


def magpie_only(fx):
    return not harness.is_memcached(fx.binary)


def metrics_port(srv):
    """The port --metrics 127.0.0.1:0 was given, from the start-up line."""
    def found():
        srv.output.seek(0)
        return re.search(rb"metrics on http://127\.0\.0\.1:(\d+)/metrics", srv.output.read())
    match = harness.poll(found, 5.0)
    if not match:
        raise AssertionError(f"no metrics address in the start-up line:\n{srv.tail()}")
    return int(match.group(1))


def metrics_server(fx, extra=(), **opts):
    """A server with --metrics on a port the kernel picks; returns (server, metrics port)."""
    srv = fx.server(extra=["--metrics", f"{harness.HOST}:0", *extra], **opts)
    return srv, metrics_port(srv)


def http(port, request, timeout=harness.IO_TIMEOUT):
    """Send raw request bytes; return (status, headers, body, closed) of the answer, read until
    the server closes the connection."""
    with socket.create_connection((harness.HOST, port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        deadline = time.monotonic() + timeout
        for _ in harness.bounded(1 << 16, timeout):
            s.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                chunk = s.recv(1 << 16)
            except ConnectionResetError:
                raise AssertionError(f"connection reset after {data[:200]!r}")
            if not chunk:
                break
            data += chunk
        else:
            raise AssertionError(f"no close within {timeout}s; got {data[:200]!r}")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, headers, body, lines[0]


def scrape(port):
    status, headers, body, _ = http(port, b"GET /metrics HTTP/1.1\r\nHost: magpie\r\n\r\n")
    expect(status, 200, "status of GET /metrics")
    expect(int(headers["content-length"]), len(body), "Content-Length")
    return body.decode()


def samples(page):
    """{'name{labels}': value} of every sample on a page."""
    out = {}
    for line in page.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def stats_hotkeys(conn, k=b""):
    reply = conn.request(b"stats hotkeys " + k + b"\r\n")
    lines = reply.split(b"\r\n")
    expect(lines[-2:], [b"END", b""], "end of stats hotkeys")
    return [line.decode().split(" ")[1:] for line in lines[:-2]]


# ---- the page --------------------------------------------------------------------------------


def test_metrics_page_passes_promtool(fx):
    if not magpie_only(fx):
        return
    srv, port = metrics_server(fx, extra=["-o", "hotkeys_metrics"])
    c = fx.client(srv)
    c.set(b"k", b"v")
    c.get(b"k")
    c.get(b"missing")
    c.incr(b"k2", 1)
    conn = fx.conn(srv)
    conn.request(b"mg k v\r\nmg a2V5 b v\r\nms x 1\r\ny\r\ntouch k 10\r\nbogus\r\n")
    status, headers, body, _ = http(port, b"GET /metrics HTTP/1.0\r\n\r\n")
    expect(status, 200, "status")
    expect(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8", "Content-Type")
    expect(headers["connection"], "close", "Connection")
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                            timeout=30)
    expect((result.returncode, result.stdout + result.stderr), (0, b""), "promtool check metrics")
    page = body.decode()
    for family in ("memcached_commands_total", "memcached_current_items", "memcached_limit_bytes",
                   "memcached_items_evicted_total", "memcached_current_connections",
                   "memcached_slab_current_items", "magpie_request_duration_seconds",
                   "magpie_hotkey_requests"):
        if f"\n# TYPE {family} " not in page:
            raise AssertionError(f"no family {family} on the page")


def test_metrics_count_what_the_clients_did(fx):
    if not magpie_only(fx):
        return
    srv, port = metrics_server(fx, memory_mb=48)
    c = fx.client(srv)
    for i in range(7):
        c.set(b"key:%d" % i, b"x" * 10)
    for i in range(5):
        c.get(b"key:%d" % i)
    for i in range(3):
        c.get(b"absent:%d" % i)
    c.delete(b"key:0")
    c.delete(b"absent")
    # A round's latency is noted once its replies are with the kernel, so the client can read the
    # last reply before the worker has noted it (seen under ThreadSanitizer): wait for that one.
    # The page is rendered again only after 100 ms.
    last = 'magpie_request_duration_seconds_count{command="delete"}'
    for _ in harness.bounded(40, 5.0):
        s = samples(scrape(port))
        if s.get(last) == 2:
            break
        time.sleep(0.15)
    want = {
        'memcached_up': 1,
        'memcached_commands_total{command="get",status="hit"}': 5,
        'memcached_commands_total{command="get",status="miss"}': 3,
        'memcached_commands_total{command="set",status="hit"}': 7,
        'memcached_commands_total{command="delete",status="hit"}': 1,
        'memcached_commands_total{command="delete",status="miss"}': 1,
        'memcached_current_items': 6,
        'memcached_items_total': 7,
        'memcached_limit_bytes': 48 * 2**20,
        'memcached_max_connections': 1024,
        'magpie_threads': 4,
        'magpie_request_duration_seconds_count{command="get"}': 8,
        'magpie_request_duration_seconds_bucket{command="get",le="+Inf"}': 8,
        'magpie_request_duration_seconds_count{command="set"}': 7,
        'magpie_request_duration_seconds_count{command="delete"}': 2,
    }
    expect({k: s.get(k) for k in want}, want, "samples")
    # every get took between 1 us and 1 s on the server: the buckets hold them all
    expect(s['magpie_request_duration_seconds_bucket{command="get",le="1"}'], 8, "gets under 1 s")
    if not 0 < s['magpie_request_duration_seconds_sum{command="get"}'] < 8:
        raise AssertionError("sum of get latencies out of range")


def test_metrics_head_and_query_string(fx):
    if not magpie_only(fx):
        return
    _, port = metrics_server(fx)
    status, headers, body, _ = http(port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    expect((status, body), (200, b""), "HEAD: status and no body")
    if int(headers["content-length"]) < 1000:
        raise AssertionError(f"HEAD's Content-Length {headers['content-length']}")
    expect(http(port, b"GET /metrics?x=1 HTTP/1.1\r\n\r\n")[0], 200, "a query string")


def test_other_paths_methods_and_bad_requests_are_refused(fx):
    if not magpie_only(fx):
        return
    srv, port = metrics_server(fx)
    cases = [
        (b"GET / HTTP/1.1\r\n\r\n", 404),
        (b"GET /metrics/x HTTP/1.1\r\n\r\n", 404),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 405),
        (b"GET /metrics HTTP/2.0\r\n\r\n", 505),
        (b"hello there\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * HEAD_MAX + b"\r\n\r\n", 431),
    ]
    for request, want in cases:
        status, headers, _, _ = http(port, request)
        expect((status, headers.get("connection")), (want, "close"), f"answer to {request[:30]!r}")
        if want == 405:
            expect(headers.get("allow"), "GET, HEAD", "Allow of a 405")
    expect(scrape(port).startswith("# HELP memcached_up"), True, "a scrape after them")
    expect(fx.client(srv).version().startswith(b"1.6.18"), True, "the cache after them")


def test_memcached_port_still_hangs_up_on_http(fx):
    """The metrics page is only on --metrics: the cache's port answers HTTP as memcached does."""
    if not magpie_only(fx):
        return
    srv, _ = metrics_server(fx)
    conn = fx.conn(srv)
    conn.send(b"GET /metrics HTTP/1.1\r\n\r\n")
    data, closed = conn.read_for(2.0)
    expect((data, closed), (b"", True), "the cache port closes without a reply")


# ---- clients that misbehave ----------------------------------------------------------------


def test_a_slowloris_client_is_cut_off_and_scrapes_go_on(fx):
    if not magpie_only(fx):
        return
    srv, port = metrics_server(fx)
    slow = socket.create_connection((harness.HOST, port), timeout=harness.IO_TIMEOUT)
    fx.defer(slow.close)
    slow.sendall(b"GET /metrics HTTP/1.1\r\n")
    closed = False
    for i in harness.bounded(60, 15.0):  # a header byte every 0.25 s, never the blank line
        try:
            slow.sendall(b"X-a: b\r\n" if i % 4 == 0 else b"")
            slow.settimeout(0.25)
            if slow.recv(1024) == b"":
                closed = True
                break
        except socket.timeout:
            pass
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            break
        if i == 2:  # while it dribbles, the others are served
            expect("memcached_up 1" in scrape(port), True, "a scrape meanwhile")
            c = fx.client(srv)
            expect(c.set(b"during", b"slowloris"), True, "a set meanwhile")
    expect(closed, True, "the slow client was disconnected")


def test_idle_connections_over_the_limit_make_way_for_a_scrape(fx):
    if not magpie_only(fx):
        return
    srv, port = metrics_server(fx)
    idle = []
    for _ in range(24):
        s = socket.create_connection((harness.HOST, port), timeout=harness.IO_TIMEOUT)
        fx.defer(s.close)
        idle.append(s)
    expect("memcached_up 1" in scrape(port), True, "a scrape past 24 idle connections")
    # the oldest were closed to make room
    oldest = idle[0]
    oldest.settimeout(harness.IO_TIMEOUT)
    try:
        expect(oldest.recv(16), b"", "the oldest idle connection")
    except ConnectionResetError:
        pass
    expect(fx.client(srv).set(b"k", b"v"), True, "the cache")


def test_sigterm_with_scrape_connections_open_exits_0_within_a_second(fx):
    if not magpie_only(fx):
        return
    # Not fx.server(): the fixture fails a test whose server exited during it.
    srv = harness.Server(fx.binary, extra=["--metrics", f"{harness.HOST}:0"])
    fx.defer(srv.stop)
    port = metrics_port(srv)
    half = socket.create_connection((harness.HOST, port), timeout=harness.IO_TIMEOUT)
    fx.defer(half.close)
    half.sendall(b"GET /metrics HTTP/1.1\r\n")
    unread = socket.create_connection((harness.HOST, port), timeout=harness.IO_TIMEOUT)
    fx.defer(unread.close)
    unread.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
    scrape(port)
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    try:
        code = srv.proc.wait(timeout=harness.STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {harness.STOP_TIMEOUT}s after SIGTERM")
    expect(code, 0, "exit status")
    if time.monotonic() - started >= 1.0:
        raise AssertionError(f"exit took {time.monotonic() - started:.2f}s after SIGTERM")


# ---- a real Prometheus -----------------------------------------------------------------------


def prometheus_query(web_port, query):
    url = f"http://{harness.HOST}:{web_port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=harness.IO_TIMEOUT) as r:
        reply = json.load(r)
    expect(reply["status"], "success", f"query {query}")
    return reply["data"]["result"]


def test_a_real_prometheus_scrapes_the_counters(fx):
    if not magpie_only(fx):
        return
    srv, port = metrics_server(fx)
    c = fx.client(srv)
    c.set(b"p", b"1")
    for _ in range(17):
        c.get(b"p")
    tmp = tempfile.TemporaryDirectory(prefix="magpie-prom-")
    config = os.path.join(tmp.name, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: magpie\n"
                f"    static_configs:\n      - targets: ['{harness.HOST}:{port}']\n")
    web = harness.free_port()
    log = open(os.path.join(tmp.name, "log"), "w+b")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}",
                             f"--storage.tsdb.path={tmp.name}/data",
                             f"--web.listen-address={harness.HOST}:{web}"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def stop():
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        tmp.cleanup()
    fx.defer(stop)

    query = 'memcached_commands_total{command="get",status="hit",job="magpie"}'

    def scraped():
        if proc.poll() is not None:
            return "exited"
        try:
            result = prometheus_query(web, query)
        except OSError:
            return None
        return result[0]["value"][1] if result else None
    value = harness.poll(scraped, 60.0, 0.25)
    if value != "17":
        log.seek(0)
        raise AssertionError(f"Prometheus read {value!r} for {query}, not '17'; its log:\n"
                             f"{log.read()[-2000:].decode(errors='replace')}")
    up = prometheus_query(web, 'up{job="magpie"}')
    expect(up[0]["value"][1], "1", "Prometheus's up for the target")
    expect(prometheus_query(web, 'memcached_up{job="magpie"}')[0]["value"][1], "1", "memcached_up")


# ---- hot keys --------------------------------------------------------------------------------

ZIPF_KEYS = 5000
ZIPF_TOP = 5000  # key i (from 1) is requested ZIPF_TOP // i times


def zipf_batches(seed=18):
    """The Zipf workload's requests, shuffled with a fixed seed, as multi-gets of distinct keys."""
    stream = [i for i in range(1, ZIPF_KEYS + 1) for _ in range(ZIPF_TOP // i)]
    random.Random(seed).shuffle(stream)
    batches, batch = [], []
    for i in stream:
        key = b"user:%d" % i
        if key in batch or len(batch) == 100:
            batches.append(batch)
            batch = []
        batch.append(key)
    batches.append(batch)
    return batches


def test_stats_hotkeys_finds_the_zipf_top_10_in_order(fx):
    if not magpie_only(fx):
        return
    srv = fx.server(threads=4)
    clients = [fx.client(srv) for _ in range(4)]  # over the workers: their counts are merged
    clients[0].set(b"user:1", b"one")
    for n, batch in enumerate(zipf_batches()):
        clients[n % 4].get_many(batch)
    top = stats_hotkeys(fx.conn(srv))
    expect([k for k, _ in top], [f"user:{i}" for i in range(1, 11)], "the top 10, in order")
    for rank, (key, count) in enumerate(top, 1):
        truth = ZIPF_TOP // rank
        if abs(int(count) - truth) > 0.05 * truth:
            raise AssertionError(f"{key}: {count} requests counted, {truth} made")
    expect(len(stats_hotkeys(fx.conn(srv), b"100")), 100, "stats hotkeys 100")
    expect(stats_hotkeys(fx.conn(srv), b"3"), top[:3], "stats hotkeys 3")


def test_stats_hotkeys_counts_gets_gats_and_meta_gets(fx):
    if not magpie_only(fx):
        return
    conn = fx.conn()
    conn.request(b"get a b a\r\ngets a\r\ngat 10 a b\r\nmg b v\r\nmg YQ== b v\r\nset a 0 0 1\r\nx\r\n"
                 b"delete b\r\n")
    expect(stats_hotkeys(conn), [["a", "4"], ["b", "3"], ["YQ==", "1", "b"]], "hot keys")
    expect(conn.request(b"stats hotkeys 0\r\nstats hotkeys 101\r\nstats hotkeys x\r\n"),
           b"ERROR\r\n" * 3, "bad counts")


def test_hot_keys_and_scrapes_while_clients_read(fx):
    """Reports and scrapes read the workers' sketches while the workers count: every report is
    whole, and the hottest key's count never goes back (the window does not turn in this time)."""
    if not magpie_only(fx):
        return
    srv, port = metrics_server(fx, extra=["-o", "hotkeys_metrics=5"])
    stop = time.monotonic() + 2.0

    def reader(n):
        c = fx.client(srv)
        rng = random.Random(n)
        for _ in harness.bounded(1 << 20, 10.0):
            if time.monotonic() > stop:
                return
            c.get_many([b"hot"] + [b"k:%d" % rng.randrange(3000) for _ in range(20)])

    seen = []

    def reporter():
        conn = fx.conn(srv)
        for _ in harness.bounded(1 << 20, 10.0):
            if time.monotonic() > stop:
                return
            top = stats_hotkeys(conn, b"20")
            if top:  # empty only before the first get
                expect(top[0][0], "hot", "the hottest key")
                seen.append(int(top[0][1]))
            expect("memcached_up 1" in scrape(port), True, "scrape")
    harness.run_threads([lambda n=n: reader(n) for n in range(4)] + [reporter], 20.0)
    if len(seen) < 2 or seen != sorted(seen):
        raise AssertionError(f"counts of the hot key over the reports: {seen[:50]}")


def test_no_hotkeys_turns_them_off(fx):
    if not magpie_only(fx):
        return
    srv = fx.server(extra=["-o", "no_hotkeys"])
    conn = fx.conn(srv)
    conn.request(b"get a\r\n")
    expect(conn.request(b"stats hotkeys\r\n"), b"STAT hotkeys_status disabled\r\nEND\r\n", "reply")


def test_hot_keys_reach_the_page_only_when_asked(fx):
    if not magpie_only(fx):
        return
    srv, port = metrics_server(fx)
    c = fx.client(srv)
    for key, times in ((b"secret:1", 5), (b"secret:2", 3), (b"secret:3", 2), (b"secret:4", 1)):
        for _ in range(times):
            c.get(key)
    expect("secret" in scrape(port), False, "keys on the default page")
    srv, port = metrics_server(fx, extra=["-o", "hotkeys_metrics=3"])
    c = fx.client(srv)
    for key, times in ((b"secret:1", 5), (b"secret:2", 3), (b"secret:3", 2), (b"secret:4", 1)):
        for _ in range(times):
            c.get(key)
    s = samples(scrape(port))
    hot = {k: v for k, v in s.items() if k.startswith("magpie_hotkey_requests")}
    expect(hot, {'magpie_hotkey_requests{key="secret:1"}': 5,
                 'magpie_hotkey_requests{key="secret:2"}': 3,
                 'magpie_hotkey_requests{key="secret:3"}': 2}, "hot keys on the page")


# ---- flags -----------------------------------------------------------------------------------


def run_binary(binary, *args):
    return subprocess.run([binary, *args], stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=10)


def test_metrics_flag_errors(fx):
    if not magpie_only(fx):
        return
    for args, message in [
            (["--metrics", "9150"], b"magpie: --metrics: not HOST:PORT: 9150\n"),
            (["-o", "hotkeys_metrics"], b"magpie: -o hotkeys_metrics needs --metrics\n"),
            (["--metrics", ":0", "-o", "hotkeys_metrics=101"],
             b"magpie: -o hotkeys_metrics takes a number of keys from 1 to 100: hotkeys_metrics=101\n"),
            (["--metrics", ":0", "-o", "no_hotkeys,hotkeys_metrics"],
             b"magpie: -o hotkeys_metrics needs hot keys: drop -o no_hotkeys\n")]:
        result = run_binary(fx.binary, *args)
        expect((result.returncode, result.stderr), (64, message), f"{args}")
    with socket.socket() as taken:
        taken.bind((harness.HOST, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_binary(fx.binary, "-p", str(harness.free_port()), "--metrics",
                            f"{harness.HOST}:{port}")
    expect(result.returncode, 1, "exit status when the metrics port is taken")
    expect(b"--metrics: cannot listen on" in result.stderr, True, f"stderr {result.stderr!r}")
