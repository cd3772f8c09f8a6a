#!/usr/bin/python3
"""Run the integration suite against a server binary.

    /usr/bin/python3 test/integration/run.py --bin build/magpie [-k PATTERN] [-j JOBS]
    /usr/bin/python3 test/integration/run.py --bin /usr/bin/memcached   # validates the suite

Runs every function `test_*` of every module `test_*.py` beside this file, each with a fresh
harness.Fixture; prints `PASS name (seconds)` or `FAIL name (seconds): reason` per test and ends
with the line `N passed, N failed`. Exits 0 only when nothing failed.

With -j JOBS the modules are shared out among that many worker processes (this script with
--worker), one module at a time, so a module's tests still run one after another in file order
and never beside each other; results are printed as they come. Tests marked @harness.alone run
after all the others, one at a time, with nothing beside them. Most tests spend their time
waiting (for expiry, timeouts, servers starting), which is why two jobs on two CPUs pay.
"""

import argparse
import importlib
import inspect
import json
import os
import selectors
import subprocess
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


def run_here(binary, tests, report):
    """Run `tests` ((name, function) pairs) in this process; report(name, failure, seconds)."""
    for name, fn in tests:
        t0 = time.monotonic()
        failure = run_test(binary, fn)
        report(name, failure, time.monotonic() - t0)


def worker(binary):
    """--worker: run the tests named on stdin, one per line, and write one JSON line per result to
    stdout. Anything else written to stdout (by a test or a process it starts) goes to stderr, so
    it cannot be taken for a result."""
    results = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    tests = dict(discover(None))

    def report(name, failure, took):
        results.write(json.dumps({"name": name, "failure": failure, "took": took}) + "\n")
        results.flush()
    try:
        for line in sys.stdin:
            name = line.strip()
            if name in tests:
                run_here(binary, [(name, tests[name])], report)
            else:
                report(name, f"no such test in the worker: {name}", 0.0)
    finally:
        harness.wait_for_stopped_servers()


def run_jobs(binary, tests, jobs, report):
    """Share the modules of `tests` among `jobs` workers, a whole module at a time; then run the
    tests marked alone here, one after another."""
    modules = {}
    for name, fn in tests:
        if getattr(fn, "alone", False):
            continue
        modules.setdefault(name.split(".")[0], []).append(name)
    queue = list(modules.values())
    sel = selectors.DefaultSelector()
    procs = []
    pending = {}  # worker -> names sent and not yet answered
    for _ in range(min(jobs, len(queue))):
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--bin", binary, "--worker"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        procs.append(p)
        pending[p] = []
        sel.register(p.stdout, selectors.EVENT_READ, p)

    def feed(p):
        if queue:
            names = queue.pop(0)
            pending[p] = list(names)
            p.stdin.write("".join(n + "\n" for n in names))
            p.stdin.flush()
        else:
            p.stdin.close()

    for p in procs:
        feed(p)
    while sel.get_map():
        for key, _ in sel.select():
            p = key.data
            line = p.stdout.readline()
            if not line:  # the worker ended: whatever it had not answered failed with it
                sel.unregister(p.stdout)
                status = p.wait()
                for name in pending[p]:
                    report(name, f"the worker running it exited with status {status}", 0.0)
                pending[p] = []
                continue
            r = json.loads(line)
            if r["name"] in pending[p]:
                pending[p].remove(r["name"])
            report(r["name"], r["failure"], r["took"])
            if not pending[p]:
                feed(p)
    run_here(binary, [(name, fn) for name, fn in tests if getattr(fn, "alone", False)], report)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, help="server binary (build/magpie or memcached)")
    parser.add_argument("-k", dest="pattern", help="run only tests whose name contains this")
    parser.add_argument("-j", dest="jobs", type=int, default=1, help="worker processes (modules in parallel)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"run.py: {args.bin} is not an executable file")
    if args.worker:
        worker(args.bin)
        return

    counts = {"passed": 0, "failed": 0}

    def report(name, failure, took):
        if failure is None:
            counts["passed"] += 1
            print(f"PASS {name} ({took:.1f}s)", flush=True)
        else:
            counts["failed"] += 1
            print(f"FAIL {name} ({took:.1f}s): {failure}", flush=True)

    started = time.monotonic()
    tests = list(discover(args.pattern))
    try:
        if args.jobs > 1:
            run_jobs(args.bin, tests, args.jobs, report)
        else:
            run_here(args.bin, tests, report)
    finally:
        harness.wait_for_stopped_servers()
    jobs = f", {args.jobs} jobs" if args.jobs > 1 else ""
    print(f"ran against {args.bin} in {time.monotonic() - started:.1f}s{jobs}")
    print(f"{counts['passed']} passed, {counts['failed']} failed")
    sys.exit(1 if counts["failed"] else 0)


if __name__ == "__main__":
    main()
