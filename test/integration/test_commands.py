"""Every classic command through pymemcache, a real client, asserting the values it returns.

pymemcache 3.5 has no gat/gats and drops flags, so those few go through a raw connection.
"""

from harness import expect

MIB = 1024 * 1024


def test_set_then_get_returns_the_value(fx):
    c = fx.client()
    expect(c.set(b"k", b"hello"), True, "set")
    expect(c.get(b"k"), b"hello", "get")
    expect(c.set(b"k", b"again"), True, "overwrite")
    expect(c.get(b"k"), b"again", "get after overwrite")


def test_get_of_a_missing_key_returns_nothing(fx):
    expect(fx.client().get(b"missing"), None, "get")


def test_flags_are_stored_and_returned(fx):
    conn = fx.conn()
    expect(conn.request(b"set f 4294967295 0 1\r\nx\r\nget f\r\n"),
           b"STORED\r\nVALUE f 4294967295 1\r\nx\r\nEND\r\n", "flags 2^32-1")
    expect(conn.request(b"set f 7 0 0\r\n\r\nget f\r\n"),
           b"STORED\r\nVALUE f 7 0\r\n\r\nEND\r\n", "empty value with flags")


def test_gets_returns_a_cas_that_changes_on_every_write(fx):
    c = fx.client()
    c.set(b"k", b"v1")
    value, cas1 = c.gets(b"k")
    expect(value, b"v1", "gets value")
    expect(c.gets(b"k"), (b"v1", cas1), "gets again without a write")
    c.set(b"k", b"v2")
    value, cas2 = c.gets(b"k")
    if cas2 == cas1:
        raise AssertionError(f"cas unchanged by a set: {cas1}")
    expect(c.gets(b"missing"), (None, None), "gets of a missing key")


def test_cas_stores_with_the_current_token_only(fx):
    c = fx.client()
    c.set(b"k", b"v1")
    _, token = c.gets(b"k")
    expect(c.cas(b"k", b"v2", token), True, "cas with the current token")
    expect(c.get(b"k"), b"v2", "value after cas")
    expect(c.cas(b"k", b"v3", token), False, "cas with a stale token")
    expect(c.get(b"k"), b"v2", "value after the failed cas")
    expect(c.cas(b"missing", b"v", token), None, "cas of a missing key")


def test_add_stores_only_when_the_key_is_absent(fx):
    c = fx.client()
    expect(c.add(b"k", b"first"), True, "add of a new key")
    expect(c.add(b"k", b"second"), False, "add of an existing key")
    expect(c.get(b"k"), b"first", "value")


def test_replace_stores_only_when_the_key_is_present(fx):
    c = fx.client()
    expect(c.replace(b"k", b"v"), False, "replace of a missing key")
    expect(c.get(b"k"), None, "missing key after replace")
    c.set(b"k", b"old")
    expect(c.replace(b"k", b"new"), True, "replace of an existing key")
    expect(c.get(b"k"), b"new", "value")


def test_append_and_prepend_extend_an_existing_value_only(fx):
    c = fx.client()
    expect(c.append(b"k", b"x"), False, "append to a missing key")
    expect(c.prepend(b"k", b"x"), False, "prepend to a missing key")
    c.set(b"k", b"middle")
    expect(c.append(b"k", b">>"), True, "append")
    expect(c.prepend(b"k", b"<<"), True, "prepend")
    expect(c.get(b"k"), b"<<middle>>", "value")


def test_append_keeps_the_original_flags(fx):
    conn = fx.conn()
    expect(conn.request(b"set k 5 0 1\r\na\r\nappend k 9 0 1\r\nb\r\nprepend k 9 0 1\r\nc\r\n"
                        b"get k\r\n"),
           b"STORED\r\nSTORED\r\nSTORED\r\nVALUE k 5 3\r\ncab\r\nEND\r\n", "append/prepend")


def test_delete_reports_whether_the_key_existed(fx):
    c = fx.client()
    c.set(b"k", b"v")
    expect(c.delete(b"k"), True, "delete of an existing key")
    expect(c.get(b"k"), None, "get after delete")
    expect(c.delete(b"k"), False, "delete of a missing key")


def test_incr_and_decr_return_the_new_value(fx):
    c = fx.client()
    c.set(b"n", b"10")
    expect(c.incr(b"n", 5), 15, "incr")
    expect(c.decr(b"n", 3), 12, "decr")
    expect(c.get(b"n"), b"12", "value after incr/decr")
    expect(c.incr(b"missing", 1), None, "incr of a missing key")
    expect(c.decr(b"missing", 1), None, "decr of a missing key")


def test_incr_wraps_at_2_to_the_64_and_decr_stops_at_zero(fx):
    c = fx.client()
    c.set(b"n", b"18446744073709551615")
    expect(c.incr(b"n", 2), 1, "incr past 2^64-1")
    expect(c.decr(b"n", 5), 0, "decr below zero")


def test_touch_reports_whether_the_key_exists(fx):
    c = fx.client()
    c.set(b"k", b"v")
    expect(c.touch(b"k", 100), True, "touch of an existing key")
    expect(c.touch(b"missing", 100), False, "touch of a missing key")
    expect(c.get(b"k"), b"v", "value after touch")


def test_gat_and_gats_return_the_value_like_get_and_gets(fx):
    conn = fx.conn()
    conn.request(b"set k 3 0 2\r\nhi\r\n")
    expect(conn.request(b"gat 100 k missing\r\n"), b"VALUE k 3 2\r\nhi\r\nEND\r\n", "gat")
    gets = conn.request(b"gets k\r\n")
    gats = conn.request(b"gats 100 k\r\n")
    expect(gats, gets, "gats reply equals the gets reply")
    expect(conn.request(b"gat 100 missing\r\n"), b"END\r\n", "gat of a missing key")


def test_get_many_returns_the_hits_among_many_keys(fx):
    c = fx.client()
    keys = [b"key:%04d" % i for i in range(600)]
    stored = {k: b"value-of-" + k for k in keys[::2]}
    expect(c.set_many(stored), [], "set_many failures")
    expect(c.get_many(keys), stored, "get_many")


def test_values_with_every_byte_value_round_trip(fx):
    c = fx.client()
    values = {
        b"all": bytes(range(256)) * 4,
        b"crlf": b"\r\n" * 50,
        b"protocol": b"END\r\nVALUE k 0 1\r\nx\r\nSTORED\r\n",
        b"nul": b"\x00" * 100,
    }
    for key, value in values.items():
        c.set(key, value)
    for key, value in values.items():
        expect(c.get(key), value, f"value of {key!r}")


def test_large_values_up_to_just_under_one_mib_round_trip(fx):
    c = fx.client()
    for size in (0, 1, 1000, 100_000, 512 * 1024, MIB - 512):
        value = bytes(i % 251 for i in range(size))
        expect(c.set(b"big", value), True, f"set of {size} bytes")
        expect(c.get(b"big"), value, f"get of {size} bytes")


def test_noreply_commands_take_effect(fx):
    c = fx.client()
    c.set(b"k", b"v", noreply=True)
    c.add(b"a", b"1", noreply=True)
    c.replace(b"k", b"w", noreply=True)
    c.append(b"k", b">", noreply=True)
    c.prepend(b"k", b"<", noreply=True)
    c.incr(b"a", 9, noreply=True)
    c.decr(b"a", 3, noreply=True)
    c.set(b"gone", b"x", noreply=True)
    c.delete(b"gone", noreply=True)
    c.touch(b"k", 100, noreply=True)
    # "1" + 9 makes "10"; decr writes "7" in place, padded with a space to the old length.
    expect(c.get_many([b"k", b"a", b"gone"]), {b"k": b"<w>", b"a": b"7 "}, "state")
    c.flush_all(noreply=True)
    expect(c.get_many([b"k", b"a"]), {}, "state after flush_all noreply")


def test_flush_all_empties_the_cache(fx):
    c = fx.client()
    c.set_many({b"a": b"1", b"b": b"2"})
    expect(c.flush_all(), True, "flush_all")
    expect(c.get_many([b"a", b"b"]), {}, "after flush_all")
    c.set(b"a", b"3")
    expect(c.get(b"a"), b"3", "a set after flush_all")


def test_version_names_a_version(fx):
    version = fx.client().version()
    if not version or b" " in version:
        raise AssertionError(f"bad version string {version!r}")
