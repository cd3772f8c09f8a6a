# Dalli (Debian's ruby-dalli, binary protocol only) against 127.0.0.1:PORT: one line per
# operation, its result; CAS values show only as being there, so two servers' runs compare equal.
require "dalli"

dc = Dalli::Client.new("127.0.0.1:#{ARGV[0]}", socket_timeout: 2, socket_max_failures: 1,
                       down_retry_delay: 0, compress: false)

def r(name)
  value = begin
    yield
  rescue StandardError => e
    e.class.name
  end
  puts "#{name} #{value.inspect}"
  $stdout.flush
end

r("set") { dc.set("a", "1", nil, raw: true).is_a?(Integer) }
r("get") { dc.get("a") }
r("get missing") { dc.get("nope") }
r("add existing") { dc.add("a", "2", nil, raw: true) }
r("add new") { dc.add("b", "2", nil, raw: true).is_a?(Integer) }
r("replace missing") { dc.replace("zz", "x") }
r("replace") { dc.replace("b", "3", nil, raw: true).is_a?(Integer) }
r("append") { dc.append("b", "4") }
r("prepend") { dc.prepend("b", "0") }
r("get b") { dc.get("b") }
r("incr missing") { dc.incr("counter", 1) }
r("incr with initial") { dc.incr("counter", 1, nil, 10) }
r("incr") { dc.incr("counter", 5) }
r("decr") { dc.decr("counter", 100) }
r("get counter") { dc.get("counter", raw: true) }
r("set_multi") { dc.multi { %w[m1 m2 m3].each_with_index { |k, i| dc.set(k, "v#{i}") } }; true }
r("get_multi") { dc.get_multi("m1", "m2", "m3", "nope").sort }
r("cas") { dc.cas("m1") { |v| v + "!" }.is_a?(Integer) }
r("cas missing") { dc.cas("nope") { |v| v } }
r("get m1") { dc.get("m1") }
r("fetch") { dc.fetch("fetched") { "computed" } }
r("fetch again") { dc.fetch("fetched") { "recomputed" } }
r("touch") { dc.touch("b", 100) }
r("touch missing") { dc.touch("nope", 100) }
r("gat") { dc.gat("m2", 100) }
r("delete") { dc.delete("a") }
r("delete missing") { dc.delete("a") }
r("object") { dc.set("obj", { "x" => [1, 2, 3] }).is_a?(Integer) }
r("get object") { dc.get("obj") }
r("big") { dc.set("big", "x" * 500_000).is_a?(Integer) }
r("get big") { dc.get("big").size }
r("flush") { dc.flush.map(&:class) }
r("get after flush") { dc.get("b") }
r("version") { dc.version.values.map { |v| v.split("-").first } }
r("stats") { dc.stats.values.map { |s| %w[pid cmd_get curr_items].all? { |k| s.key?(k) } } }
dc.close
