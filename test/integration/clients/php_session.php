<?php
// php-memcached's session handler, with its defaults (binary protocol, locking) against
// 127.0.0.1:PORT: a session started, written and read back, then the Memcached class in binary
// mode. One line per step; the lock keys and CAS values never show, so two servers' runs compare.
ini_set('session.save_handler', 'memcached');
ini_set('session.save_path', '127.0.0.1:' . $argv[1]);
ini_set('session.use_cookies', '0');
ini_set('session.use_only_cookies', '0');
ini_set('session.cache_limiter', '');
ini_set('memcached.sess_lock_wait_max', '2000');
ini_set('memcached.sess_lock_retries', '2');

session_id('magpietest');
echo 'start ', var_export(session_start(), true), "\n";
$_SESSION['count'] = ($_SESSION['count'] ?? 0) + 1;
$_SESSION['name'] = 'magpie';
echo 'write ', var_export(session_write_close(), true), "\n";
echo 'start again ', var_export(session_start(), true), "\n";
echo 'read ', json_encode($_SESSION), "\n";
$_SESSION['count']++;
session_write_close();
session_start();
echo 'read again ', json_encode($_SESSION), "\n";
echo 'destroy ', var_export(session_destroy(), true), "\n";
session_start();
echo 'after destroy ', json_encode($_SESSION), "\n";
session_write_close();

$m = new Memcached();
$m->setOption(Memcached::OPT_BINARY_PROTOCOL, true);
$m->setOption(Memcached::OPT_COMPRESSION, false);
$m->setOption(Memcached::OPT_CONNECT_TIMEOUT, 2000);
$m->setOption(Memcached::OPT_RECV_TIMEOUT, 2000000);
$m->setOption(Memcached::OPT_SEND_TIMEOUT, 2000000);
$m->addServer('127.0.0.1', (int)$argv[1]);
function r($name, $v, $m) { echo $name, ' ', json_encode($v), ' ', $m->getResultCode(), "\n"; }
r('set', $m->set('a', 'b'), $m);
r('get', $m->get('a'), $m);
r('get missing', $m->get('nope'), $m);
r('add existing', $m->add('a', 'c'), $m);
r('increment with initial', $m->increment('n', 1, 5), $m);
r('increment', $m->increment('n', 2), $m);
r('decrement', $m->decrement('n', 100), $m);
r('getMulti', $m->getMulti(['a', 'n', 'nope']), $m);
r('append', $m->append('a', '+'), $m);
r('touch', $m->touch('a', 100), $m);
r('delete', $m->delete('a'), $m);
r('delete missing', $m->delete('a'), $m);
r('flush', $m->flush(), $m);
