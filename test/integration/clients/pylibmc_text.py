"""pylibmc (libmemcached) over the text protocol: one line per operation, for test_tools.py."""
import sys

import pylibmc

mc = pylibmc.Client([f"127.0.0.1:{sys.argv[1]}"], binary=False, behaviors={"cas": True})
mc.flush_all()
print("set", mc.set("a", "1"), mc.set("n", 10), mc.set("b", b"\x00\xff"))
print("get", repr(mc.get("a")), repr(mc.get("b")), repr(mc.get("missing")))
print("get_multi", sorted(mc.get_multi(["a", "n", "missing"]).items()))
print("add", mc.add("a", "x"), mc.add("c", "3"))
print("replace", mc.replace("zz", "x"), mc.replace("c", "33"))
print("append", mc.append("c", "4"), mc.prepend("c", "2"), repr(mc.get("c")))
print("incr", mc.incr("n", 5), mc.decr("n", 20))
value, token = mc.gets("a")
print("cas", repr(value), mc.cas("a", "2", token), mc.cas("a", "3", token), repr(mc.get("a")))
print("delete", mc.delete("a"), mc.delete("a"))
print("touch", mc.touch("c", 100), mc.touch("missing", 100))
print("big", len(mc.get("big") or "") if mc.set("big", "x" * 500000) else "not stored")
