"""pylibmc (libmemcached) with binary=True against 127.0.0.1:PORT: one line per operation, its
result; CAS values are printed as "<cas>" so that two servers' runs compare equal."""

import sys

import pylibmc

mc = pylibmc.Client([f"127.0.0.1:{sys.argv[1]}"], binary=True,
                    behaviors={"cas": True, "connect_timeout": 2000, "send_timeout": 2_000_000,
                               "receive_timeout": 2_000_000, "retry_timeout": 0})


def r(name, op):
    try:
        value = op()
    except Exception as exc:  # the client's error is the result
        value = type(exc).__name__
    print(name, repr(value), flush=True)


state = {}


def gets(key):
    value, cas = mc.gets(key)
    state["cas"] = cas
    return value, isinstance(cas, int) and cas > 0


r("set", lambda: mc.set("a", "1"))
r("get", lambda: mc.get("a"))
r("get missing", lambda: mc.get("nope"))
r("add existing", lambda: mc.add("a", "2"))
r("add new", lambda: mc.add("b", "2"))
r("replace missing", lambda: mc.replace("zz", "x"))
r("replace", lambda: mc.replace("b", "3"))
r("append", lambda: mc.append("b", "4"))
r("prepend", lambda: mc.prepend("b", "0"))
r("get b", lambda: mc.get("b"))
r("append missing", lambda: mc.append("zz", "4"))
r("incr", lambda: mc.incr("a", 5))
r("decr", lambda: mc.decr("a", 10))
r("incr missing", lambda: mc.incr("zz", 1))
r("incr text", lambda: mc.incr("b", 1))
r("set_multi", lambda: mc.set_multi({"m1": 1, "m2": "two", "m3": b"\x00\xff", "m4": 2**40}))
r("get_multi", lambda: sorted(mc.get_multi(["m1", "m2", "m3", "m4", "nope", "a"]).items()))
r("gets", lambda: gets("a"))
r("cas", lambda: mc.cas("a", "swapped", state["cas"]))
r("cas stale", lambda: mc.cas("a", "again", state["cas"]))
r("get a", lambda: mc.get("a"))
r("delete", lambda: mc.delete("a"))
r("delete missing", lambda: mc.delete("a"))
r("delete_multi", lambda: mc.delete_multi(["m1", "m2", "nope"]))
r("touch", lambda: mc.touch("b", 100))
r("touch missing", lambda: mc.touch("nope", 100))
r("object", lambda: mc.set("obj", {"x": [1, 2, 3]}))
r("get object", lambda: mc.get("obj"))
r("big", lambda: mc.set("big", "x" * 500_000))
r("get big", lambda: len(mc.get("big")))
r("expired", lambda: (mc.set("gone", "v", time=-1), mc.get("gone")))
r("flush", lambda: mc.flush_all())
r("get after flush", lambda: mc.get("b"))
