"""Expiry: relative, negative and absolute exptimes, touch/gat changing them, delayed flush_all.

memcached's clock ticks once a second, so an item set with exptime N disappears between N-1 and
N seconds later. Each test waits for the change by polling (bounded), never by a fixed sleep, and
keeps a control key to show the waiting was long enough.
"""

import time

import harness
from harness import expect

WAIT = 6.0  # longer than any exptime used here, plus clock ticks


def gone(client, key):
    return lambda: client.get(key) is None


def wait_gone(client, key):
    """Seconds until key disappeared; fails if it is still there after WAIT."""
    started = time.monotonic()
    if not harness.poll(gone(client, key), WAIT):
        raise AssertionError(f"{key!r} still present after {WAIT}s")
    return time.monotonic() - started


def test_item_expires_after_its_relative_exptime(fx):
    c = fx.client()
    c.set(b"k", b"v", expire=2)
    expect(c.get(b"k"), b"v", "right after set")
    elapsed = wait_gone(c, b"k")
    if elapsed < 0.9:
        raise AssertionError(f"an item with exptime 2 vanished after {elapsed:.2f}s")


def test_negative_exptime_means_already_expired(fx):
    c = fx.client()
    c.set(b"old", b"v")
    expect(c.set(b"old", b"v", expire=-1), True, "set with exptime -1")
    expect(c.get(b"old"), None, "get after set with exptime -1")
    expect(c.add(b"old", b"w"), True, "add over the expired item")


def test_absolute_exptime_in_the_past_expires_at_once_and_in_the_future_does_not(fx):
    c = fx.client()
    now = int(time.time())
    c.set(b"past", b"v", expire=now - 100)
    c.set(b"future", b"v", expire=now + 100)
    expect(c.get_many([b"past", b"future"]), {b"future": b"v"}, "visible keys")


def test_absolute_exptime_a_few_seconds_ahead_expires_then(fx):
    c = fx.client()
    c.set(b"k", b"v", expire=int(time.time()) + 3)
    expect(c.get(b"k"), b"v", "right after set")
    wait_gone(c, b"k")


def test_touch_and_gat_replace_the_exptime(fx):
    c, conn = fx.client(), fx.conn()
    for key in (b"touched", b"gat", b"gats"):
        c.set(key, b"v", expire=2)
    c.set(b"shortened", b"v")
    expect(c.touch(b"touched", 0), True, "touch to never expire")
    expect(conn.request(b"gat 100 gat\r\ngats 0 gats\r\n").count(b"VALUE "), 2, "gat and gats hits")
    expect(c.touch(b"shortened", 1), True, "touch to expire soon")
    c.set(b"control", b"v", expire=2)  # set last, so it expires no earlier than the others would
    wait_gone(c, b"control")
    expect(c.get_many([b"touched", b"gat", b"gats", b"shortened"]),
           {b"touched": b"v", b"gat": b"v", b"gats": b"v"}, "keys left once the control expired")


def test_gat_with_negative_exptime_returns_the_value_then_expires_it(fx):
    conn = fx.conn()
    conn.request(b"set k 0 0 1\r\nv\r\n")
    expect(conn.request(b"gat -1 k\r\nget k\r\n"), b"VALUE k 0 1\r\nv\r\nEND\r\nEND\r\n", "gat -1")


def test_flush_all_with_a_delay_removes_items_only_later(fx):
    c, conn = fx.client(), fx.conn()
    c.set(b"k", b"v")
    # one send, so that no clock tick falls between the two commands
    expect(conn.request(b"flush_all 2\r\nget k\r\n"), b"OK\r\nVALUE k 0 1\r\nv\r\nEND\r\n",
           "flush_all 2 and get at once")
    wait_gone(c, b"k")
