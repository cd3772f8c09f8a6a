<?php
// php-memcached getAllKeys (libmemcached's memcached_dump over `stats cachedump`), for test_tools.py.
$m = new Memcached();
$m->addServer("127.0.0.1", (int)$argv[1]);
$m->flush();
$m->setMulti(["tiny" => "1", "user:42" => str_repeat("u", 100), "page:/x" => str_repeat("p", 3000),
              "blob" => str_repeat("b", 200000)]);
$keys = $m->getAllKeys();
if ($keys === false) {
    echo "getAllKeys failed: ", $m->getResultMessage(), "\n";
    exit(0);
}
sort($keys);
echo "keys ", implode(" ", $keys), "\n";
echo "still alive ", var_export($m->get("tiny"), true), "\n";
