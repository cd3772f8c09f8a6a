"""A real proxy in front of a pool: twemproxy (Debian's nutcracker) hashing keys over three nodes
with ketama, a client running sets, multi-gets, deletes and incr through it; then one node is
killed, the proxy ejects it and the pool keeps serving."""

import os
import signal
import subprocess
import tempfile

from pymemcache.client.base import Client

import harness
from harness import expect

NUTCRACKER = "/usr/sbin/nutcracker"
KEYS = [f"proxy:{i:04d}" for i in range(600)]


def start_proxy(nodes, tmp):
    port, stats_port = harness.free_port(), harness.free_port()
    conf = os.path.join(tmp, "nutcracker.yml")
    with open(conf, "w") as f:
        f.write(f"""pool:
  listen: 127.0.0.1:{port}
  hash: fnv1a_64
  distribution: ketama
  timeout: 2000
  auto_eject_hosts: true
  server_retry_timeout: 60000
  server_failure_limit: 1
  servers:
""" + "".join(f"    - 127.0.0.1:{n.port}:1 node{i}\n" for i, n in enumerate(nodes)))
    proc = subprocess.Popen([NUTCRACKER, "-c", conf, "-s", str(stats_port), "-a", "127.0.0.1",
                             "-o", os.path.join(tmp, "nutcracker.log"), "-p", os.path.join(tmp, "pid")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not harness.poll(lambda: probe(port), harness.START_TIMEOUT):
        proc.kill()
        proc.wait(harness.STOP_TIMEOUT)
        raise AssertionError(f"nutcracker did not start on {port}")
    return proc, port


def probe(port):
    try:
        c = Client((harness.HOST, port), connect_timeout=1, timeout=1)
        c.get("probe")
        c.close()
        return True
    except Exception:
        return False


def client(port):
    return Client((harness.HOST, port), connect_timeout=harness.IO_TIMEOUT, timeout=harness.IO_TIMEOUT,
                  default_noreply=False)


def test_twemproxy_pools_three_nodes_and_ejects_a_dead_one(fx):
    if not os.access(NUTCRACKER, os.X_OK):
        raise AssertionError(f"{NUTCRACKER} is missing: `make test-deps` installs Debian's nutcracker")
    survivors = [fx.server(threads=2) for _ in range(2)]
    doomed = harness.Server(fx.binary, threads=2)  # not fx.server(): it is meant to die
    with tempfile.TemporaryDirectory() as tmp:
        proxy, port = start_proxy(survivors + [doomed], tmp)
        try:
            c = client(port)
            for key in KEYS:
                expect(c.set(key, key.encode()), True, f"set {key}")
            got = {}
            for start in range(0, len(KEYS), 100):
                got.update(c.get_many(KEYS[start:start + 100]))
            expect(len(got), len(KEYS), "keys read back through the proxy with multi-gets")
            expect(c.set("counter", b"10"), True, "set counter")
            expect(c.incr("counter", 5), 15, "incr through the proxy")
            expect(c.delete(KEYS[0]), True, "delete through the proxy")
            expect(c.get(KEYS[0]), None, "the deleted key")
            spread = [int(fx.conn(n).request(b"stats\r\n").split(b"STAT curr_items ")[1].split(b"\r")[0])
                      for n in survivors + [doomed]]
            expect(all(s > 50 for s in spread), True, f"items on each node {spread}")

            doomed.proc.send_signal(signal.SIGKILL)
            doomed.proc.wait(harness.STOP_TIMEOUT)
            # the first requests that hash to the dead node fail; then it is ejected
            failures = 0
            for key in KEYS:
                try:
                    c.set(key, b"again")
                except Exception:
                    failures += 1
                    c.close()
                    c = client(port)
            expect(failures <= 5, True, f"{failures} failed sets while the proxy ejected the node")
            for key in KEYS[:200]:
                expect(c.set(key, b"after"), True, f"set {key} with a node ejected")
            got = c.get_many(KEYS[:200])
            expect(sorted(got), sorted(KEYS[:200]), "multi-get with a node ejected")
            expect(set(got.values()), {b"after"}, "values with a node ejected")
            c.close()
        finally:
            proxy.terminate()
            try:
                proxy.wait(harness.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait(harness.STOP_TIMEOUT)
            doomed.stop()
