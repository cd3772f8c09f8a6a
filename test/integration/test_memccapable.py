"""libmemcached's protocol conformance tool, its ASCII tests and its binary tests, must pass in full.

memccapable prints one line per test ending in `[pass]`, `[skip]` or `[FAIL]` (`[ERROR ...]`
before it on a protocol error), then `All tests passed` or `N of M tests failed`.
"""

import subprocess

import harness

ASCII_TESTS = 27  # what the Debian memccapable runs with -a
BINARY_TESTS = 27  # and with -b


def run_suite(fx, flag, expected):
    result = subprocess.run(
        ["memccapable", flag, "-h", harness.HOST, "-p", str(fx.default.port), "-t", "5"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    out = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    lines = out.splitlines()
    passed = [line for line in lines if line.endswith("[pass]")]
    if result.returncode != 0 or "All tests passed" not in lines or len(passed) != expected:
        raise AssertionError(f"memccapable {flag} exited {result.returncode}, {len(passed)} of "
                             f"{expected} passed:\n{out}")


def test_memccapable_ascii_suite_passes(fx):
    run_suite(fx, "-a", ASCII_TESTS)


def test_memccapable_binary_suite_passes(fx):
    run_suite(fx, "-b", BINARY_TESTS)
