# Cache::Memcached::Fast (text protocol): one line per operation, for test_tools.py.
use strict;
use warnings;
use Cache::Memcached::Fast;

my $mc = Cache::Memcached::Fast->new({servers => ["127.0.0.1:$ARGV[0]"], utf8 => 0});
$mc->flush_all;
print "set ", join(" ", $mc->set("a", "1"), $mc->set("n", 10)), "\n";
print "get ", $mc->get("a"), " ", defined($mc->get("missing")) ? "found" : "undef", "\n";
my $multi = $mc->get_multi("a", "n", "missing");
print "get_multi ", join(",", map {"$_=$multi->{$_}"} sort keys %$multi), "\n";
print "add ", join(" ", map { $_ ? 1 : 0 } $mc->add("a", "x"), $mc->add("c", "3")), "\n";
print "append ", join(" ", map { $_ ? 1 : 0 } $mc->append("c", "4"), $mc->prepend("c", "2")), " ", $mc->get("c"), "\n";
print "incr ", $mc->incr("n", 5), " ", $mc->decr("n", 20), "\n";
my $g = $mc->gets("a");
print "cas ", ($mc->cas("a", $g->[0], "2") ? 1 : 0), ($mc->cas("a", $g->[0], "3") ? 1 : 0), " ", $mc->get("a"), "\n";
print "delete ", ($mc->delete("a") ? 1 : 0), ($mc->delete("a") ? 1 : 0), "\n";
print "touch ", ($mc->touch("c", 100) ? 1 : 0), ($mc->touch("missing", 100) ? 1 : 0), "\n";
my $versions = $mc->server_versions;
print "version ", join(" ", values %$versions), "\n";
