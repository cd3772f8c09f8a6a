"""Bounded concurrency: several threads, each with its own connection, on a few shared keys.
Every loop stops after a fixed number of iterations or SECONDS, whichever comes first."""

import zlib

import harness
from harness import expect

THREADS = 4
SECONDS = 15.0


def run_workers(work, count=THREADS):
    """work(i) in `count` threads; waits for all, re-raising the first error."""
    harness.run_threads([lambda i=i: work(i) for i in range(count)], SECONDS + 5)


def test_concurrent_gets_and_cas_increments_lose_no_update(fx):
    keys = [b"counter0", b"counter1"]
    clients = [fx.client() for _ in range(THREADS)]
    for key in keys:
        clients[0].set(key, b"0")
    stored = [[0] * len(keys) for _ in range(THREADS)]

    def work(i):
        c = clients[i]
        for n in harness.bounded(400, SECONDS):
            key = n % len(keys)
            value, token = c.gets(keys[key])
            result = c.cas(keys[key], b"%d" % (int(value) + 1), token)
            if result is None:
                raise AssertionError(f"cas of {keys[key]!r} answered NOT_FOUND")
            stored[i][key] += result
    run_workers(work)
    for k, key in enumerate(keys):
        successes = sum(per_thread[k] for per_thread in stored)
        if successes == 0:
            raise AssertionError(f"no cas on {key!r} succeeded")
        expect(int(clients[0].get(key)), successes, f"{key!r} after {successes} successful cas")


def test_concurrent_incr_hands_out_every_number_once(fx):
    keys = [b"hits0", b"hits1", b"hits2"]
    clients = [fx.client() for _ in range(THREADS)]
    for key in keys:
        clients[0].set(key, b"0")
    returned = [[[] for _ in keys] for _ in range(THREADS)]

    def work(i):
        for n in harness.bounded(600, SECONDS):
            key = (n + i) % len(keys)
            returned[i][key].append(clients[i].incr(keys[key], 1))
    run_workers(work)
    for k, key in enumerate(keys):
        values = sorted(v for per_thread in returned for v in per_thread[k])
        expect(values, list(range(1, len(values) + 1)), f"values incr returned for {key!r}")
        expect(int(clients[0].get(key)), len(values), f"{key!r} after {len(values)} incr")


def pattern(seed, size):
    """A self-checking value: `length:crc32:` and then `size` bytes derived from seed."""
    body = ((b"%d-" % seed) * (size // 2 + 1))[:size]
    return b"%08d:%08x:" % (size, zlib.crc32(body)) + body


def check_pattern(value, where):
    size, crc, body = value.split(b":", 2)
    if len(body) != int(size) or zlib.crc32(body) != int(crc, 16):
        raise AssertionError(f"torn value in {where}: header {size!r}:{crc!r}, "
                             f"{len(body)} bytes, starts {body[:40]!r}")


def test_values_read_during_overwrites_are_never_torn(fx):
    keys = [b"blob0", b"blob1"]
    sizes = [16, 5_000, 120_000, 600_000]
    clients = [fx.client() for _ in range(THREADS)]
    for key in keys:
        clients[0].set(key, pattern(0, 10))
    reads = [0] * THREADS

    def work(i):
        c = clients[i]
        for n in harness.bounded(150, SECONDS):
            if i < 2:  # writers
                expect(c.set(keys[n % 2], pattern(i * 1000 + n, sizes[(n + i) % 4])), True, "set")
                continue
            for key, value in c.get_many(keys).items():
                check_pattern(value, f"get of {key!r}")
                reads[i] += 1
            value, _ = c.gets(keys[n % 2])
            check_pattern(value, "gets")
    run_workers(work)
    if sum(reads) == 0:
        raise AssertionError("the readers read nothing")
