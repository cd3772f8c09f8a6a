"""Real binary-protocol clients side by side with memcached: each client script runs the same
operations against memcached and against the server under test (both on their default -B auto),
and prints one line per operation; the two outputs must be identical. A client that hangs fails
the test at CLIENT_TIMEOUT seconds: the bug these tests pin down is a binary request left
unanswered.

The clients are Debian's python3-pylibmc (binary=True), ruby-dalli and php-memcached (its session
handler, binary by default), and memjs from npm, installed under build/npm by `make test-deps`.
"""

import os
import subprocess

from harness import MEMCACHED, expect

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENTS = os.path.join(HERE, "clients")
MEMJS = os.path.join(HERE, "..", "..", "build", "npm", "node_modules", "memjs")
CLIENT_TIMEOUT = 20


def run_client(argv, port, env=None):
    try:
        done = subprocess.run(argv + [str(port)], capture_output=True, timeout=CLIENT_TIMEOUT,
                              stdin=subprocess.DEVNULL, env=dict(os.environ, **(env or {})))
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{argv[0]} hung for {CLIENT_TIMEOUT}s against port {port}; it printed "
                             f"{exc.stdout!r}") from None
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-800:]!r}")
    return done.stdout.decode()


def side_by_side(fx, argv, env=None, must_have=()):
    """The client's output against memcached and against the server under test."""
    outputs = [run_client(argv, fx.server(binary, threads=2).port, env)
               for binary in (MEMCACHED, fx.binary)]
    if outputs[0] != outputs[1]:
        diff = [f"  memcached: {a}\n  server:    {b}" for a, b in
                zip(outputs[0].splitlines(), outputs[1].splitlines()) if a != b]
        raise AssertionError(f"{os.path.basename(argv[-1])} differs:\n" + "\n".join(diff[:10]) +
                             f"\n({len(outputs[0].splitlines())} and {len(outputs[1].splitlines())} "
                             "lines)")
    for line in must_have:  # the script did run its operations
        expect(line in outputs[1].splitlines(), True, f"output has {line!r}")
    return outputs[1]


def test_pylibmc_binary(fx):
    side_by_side(fx, ["/usr/bin/python3", os.path.join(CLIENTS, "pylibmc_binary.py")],
                 must_have=["get '1'", "get_multi [('a', '0'), ('m1', 1), ('m2', 'two'), "
                            "('m3', b'\\x00\\xff'), ('m4', 1099511627776)]", "get big 500000"])


def test_dalli_binary(fx):
    side_by_side(fx, ["ruby", os.path.join(CLIENTS, "dalli_binary.rb")],
                 must_have=['get "1"', "incr with initial 10", "get big 500000"])


def test_memjs_binary(fx):
    if not os.path.isdir(MEMJS):
        raise AssertionError(f"{MEMJS} is missing: `make test-deps` installs memjs from npm")
    side_by_side(fx, ["node", os.path.join(CLIENTS, "memjs_binary.js")], env={"MEMJS": MEMJS},
                 must_have=['get {"flags":"\\"\\\\u0000\\\\u0000\\\\u0000\\\\u0000\\"","value":"\\"1\\""}'])


def test_php_memcached_session_handler_with_defaults(fx):
    out = side_by_side(fx, ["php", os.path.join(CLIENTS, "php_session.php")],
                       must_have=['read {"count":1,"name":"magpie"}',
                                  'read again {"count":2,"name":"magpie"}'])
    expect("after destroy []" in out, True, "a destroyed session is empty")
