#!/usr/bin/python3
"""Run the integration suite against a server binary.

    /usr/bin/python3 test/integration/run.py --bin build/magpie [-k PATTERN]
    /usr/bin/python3 test/integration/run.py --bin /usr/bin/memcached   # validates the suite

Runs every function `test_*` of every module `test_*.py` beside this file, in file order, each
with a fresh harness.Fixture; prints `PASS name` or `FAIL name: reason` per test and ends with
the line `N passed, N failed`. Exits 0 only when nothing failed.
"""

import argparse
import importlib
import inspect
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402


def discover(pattern):
    """(name, function) for each selected test, modules sorted, tests in source order. A module
    that fails to import becomes one failing test."""
    for filename in sorted(os.listdir(HERE)):
        if not (filename.startswith("test_") and filename.endswith(".py")):
            continue
        try:
            module = importlib.import_module(filename[:-3])
        except Exception as exc:  # reported as a failure of this module, not of the run
            def broken(fx, exc=exc):
                raise exc
            yield f"{filename[:-3]}.<import>", broken
            continue
        tests = [fn for name, fn in vars(module).items()
                 if name.startswith("test_") and inspect.isfunction(fn)
                 and fn.__module__ == module.__name__]
        for fn in sorted(tests, key=lambda f: f.__code__.co_firstlineno):
            name = f"{module.__name__}.{fn.__name__}"
            if pattern is None or pattern in name:
                yield name, fn


def where(exc):
    """file:line of the innermost frame in a test module, to say where a test failed."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.basename(f.filename).startswith("test_")]
    return f" [{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}]" if frames else ""


def run_test(binary, fn):
    """None when the test passed, else the reason it failed."""
    fx = harness.Fixture(binary)
    failure = None
    try:
        fn(fx)
    except AssertionError as exc:
        failure = (str(exc) or "assertion failed") + where(exc)
    except Exception as exc:  # an unexpected error fails this test, not the run
        failure = f"{type(exc).__name__}: {exc}{where(exc)}"
    finally:
        problems = fx.teardown()
    return "\n".join(filter(None, [failure] + problems)) or None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, help="server binary (build/magpie or memcached)")
    parser.add_argument("-k", dest="pattern", help="run only tests whose name contains this")
    args = parser.parse_args()
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"run.py: {args.bin} is not an executable file")

    passed = failed = 0
    started = time.monotonic()
    try:
        for name, fn in discover(args.pattern):
            failure = run_test(args.bin, fn)
            if failure is None:
                passed += 1
                print(f"PASS {name}", flush=True)
            else:
                failed += 1
                print(f"FAIL {name}: {failure}", flush=True)
    finally:
        harness.wait_for_stopped_servers()
    print(f"ran against {args.bin} in {time.monotonic() - started:.1f}s")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
