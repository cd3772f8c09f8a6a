// memjs (npm; binary protocol only) against 127.0.0.1:PORT: one line per operation, its result.
// CAS values are left out so that two servers' runs compare equal.
const memjs = require(process.env.MEMJS);

const client = memjs.Client.create(`127.0.0.1:${process.argv[2]}`, { timeout: 2, retries: 0 });

function show(v) {
  if (Buffer.isBuffer(v)) return JSON.stringify(v.toString("latin1"));
  if (v && typeof v === "object") {
    const o = {};
    for (const k of Object.keys(v).sort()) if (k !== "cas") o[k] = show(v[k]);
    return JSON.stringify(o);
  }
  return JSON.stringify(v);
}

async function r(name, op) {
  let v;
  try {
    v = await op();
  } catch (e) {
    v = "error: " + e.message.split(":")[0];
  }
  console.log(name, show(v));
}

(async () => {
  await r("set", () => client.set("a", "1", { expires: 0 }));
  await r("get", () => client.get("a"));
  await r("get missing", () => client.get("nope"));
  await r("add existing", () => client.add("a", "2"));
  await r("add new", () => client.add("b", "2"));
  await r("replace missing", () => client.replace("zz", "x"));
  await r("replace", () => client.replace("b", "3"));
  await r("append", () => client.append("b", "4"));
  await r("prepend", () => client.prepend("b", "0"));
  await r("get b", () => client.get("b"));
  await r("incr missing", () => client.increment("n", 1));
  await r("incr with initial", () => client.increment("n", 1, { initial: 10 }));
  await r("incr", () => client.increment("n", 5));
  await r("decr", () => client.decrement("n", 100, {}));
  await r("get n", () => client.get("n"));
  await r("touch", () => client.touch("b", 100));
  await r("touch missing", () => client.touch("nope", 100));
  await r("delete", () => client.delete("a"));
  await r("delete missing", () => client.delete("a"));
  await r("big", () => client.set("big", "x".repeat(500000)));
  await r("get big", async () => (await client.get("big")).value.length);
  await r("binary value", () => client.set("bin", Buffer.from([0, 1, 255, 13, 10])));
  await r("get binary value", () => client.get("bin"));
  await r("flush", async () => Object.values(await client.flush()));
  await r("get after flush", () => client.get("b"));
  client.close();
})();
