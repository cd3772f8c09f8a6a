"""The FROM scratch image: built with `make image`, run with podman as a sidecar would run it,
and restarted on a volume with -e.

Podman and runc are installed when missing (with sudo when not root); when that fails the test
fails and says why. test/container/containers.conf is what podman needs on these hosts (runc,
cgroupfs, file limits it can set). Everything started here is removed by name at the end.
Magpie only: against memcached there is no image to test.
"""

import os
import shutil
import subprocess
import tempfile
import time

from pymemcache.client.base import Client

import harness
from harness import expect

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONTAINERS_CONF = os.path.join(REPO, "test", "container", "containers.conf")
INSTALL_TIMEOUT = 900
BUILD_TIMEOUT = 900
PODMAN_TIMEOUT = 120
MAX_IMAGE_BYTES = 8 * 1000 * 1000  # with OpenSSL linked in for -Z


def run(argv, timeout=PODMAN_TIMEOUT, check=True):
    """Run a command with the project's podman configuration; CompletedProcess, text output."""
    env = dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF)
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{' '.join(argv)} did not finish within {timeout}s")
    if check and result.returncode != 0:
        # podman's "unable to get systemd connection" lines are noise here; show the rest
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n"
                             f"{result.stdout[-1500:]}{result.stderr[-1500:]}")
    return result


def ensure_podman():
    if shutil.which("podman") and shutil.which("runc"):
        return
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (sudo + ["apt-get", "update", "-qq"],
                 sudo + ["apt-get", "install", "-y", "-qq", "podman", "runc"]):
        try:
            result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                    env=env, timeout=INSTALL_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AssertionError(f"cannot install podman and runc: {' '.join(argv)}: {exc}")
        if result.returncode != 0:
            raise AssertionError(f"cannot install podman and runc: {' '.join(argv)} exited "
                                 f"{result.returncode}: {result.stderr[-1000:]}")
    if not (shutil.which("podman") and shutil.which("runc")):
        raise AssertionError("apt-get installed podman and runc, yet they are not on PATH")


def connectable(port):
    try:
        harness.Conn(port).close()
        return True
    except OSError:
        return False


def inspect(kind, name, template):
    return run(["podman", kind, "inspect", "--format", template, name]).stdout.strip()


def test_image_builds_small_runs_as_nobody_serves_probes_and_stops_cleanly(fx):
    if harness.is_memcached(fx.binary):
        return  # the image is Magpie's
    ensure_podman()
    image = f"magpie-test:{os.getpid()}"
    port = harness.free_port()
    name = f"magpie-test-{os.getpid()}-{port}"
    try:
        run(["make", "-C", REPO, "--no-print-directory", "image", f"IMAGE={image}"],
            timeout=BUILD_TIMEOUT)

        size = int(inspect("image", image, "{{.Size}}"))
        if size > MAX_IMAGE_BYTES:
            raise AssertionError(f"image is {size} bytes, over {MAX_IMAGE_BYTES}")
        expect(inspect("image", image, "{{.Config.User}}"), "65534:65534", "configured user")

        run(["podman", "run", "-d", "--name", name, "--network", "host", image,
             "-l", harness.HOST, "-p", str(port)])
        listening = harness.poll(lambda: connectable(port), harness.START_TIMEOUT)
        if not listening:
            logs = run(["podman", "logs", name], check=False)
            raise AssertionError(f"nothing listens on port {port}:\n{logs.stdout}{logs.stderr}")

        pid = int(inspect("container", name, "{{.State.Pid}}"))
        with open(f"/proc/{pid}/status") as status:
            ids = {line.split(":")[0]: line.split()[1:] for line in status
                   if line.startswith(("Uid:", "Gid:"))}
        expect((ids["Uid"][0], ids["Gid"][0]), ("65534", "65534"), "uid and gid of the server")

        client = Client((harness.HOST, port), connect_timeout=harness.IO_TIMEOUT,
                        timeout=harness.IO_TIMEOUT, default_noreply=False)
        try:
            expect(client.set("in:container", b"from the image"), True, "set")
            expect(client.get("in:container"), b"from the image", "get")
        finally:
            client.close()

        healthy = run(["podman", "exec", name, "/magpie", "--health", f"{harness.HOST}:{port}"],
                      check=False)
        expect(healthy.returncode, 0, f"--health on the server's port ({healthy.stderr[-300:]!r})")
        nobody = harness.free_port()
        unhealthy = run(["podman", "exec", name, "/magpie", "--health",
                         f"{harness.HOST}:{nobody}"], check=False)
        expect(unhealthy.returncode, 1, "--health on a port nothing listens on")

        started = time.monotonic()
        run(["podman", "stop", "-t", "3", name])
        elapsed = time.monotonic() - started
        if elapsed >= 3.0:
            raise AssertionError(f"podman stop -t 3 took {elapsed:.2f}s: SIGTERM was not obeyed")
        expect(inspect("container", name, "{{.State.ExitCode}}"), "0", "the container's exit code")
        serves_tls(image, f"{name}-tls")
    finally:
        run(["podman", "rm", "-f", "--ignore", name], check=False)
        run(["podman", "rm", "-f", "--ignore", f"{name}-tls"], check=False)
        run(["podman", "rmi", "-f", image], check=False)


def test_image_restarted_on_a_volume_comes_back_with_its_items(fx):
    """-e on a podman volume: the first container writes its snapshot when podman stops it, a
    second one on the same volume starts with the items (the image runs as uid 65534, and podman
    gives a new named volume to the container's user)."""
    if harness.is_memcached(fx.binary):
        return
    ensure_podman()
    image = f"magpie-test-volume:{os.getpid()}"
    port = harness.free_port()
    volume = f"magpie-test-{os.getpid()}-{port}"
    names = [f"{volume}-first", f"{volume}-second"]
    try:
        run(["make", "-C", REPO, "--no-print-directory", "image", f"IMAGE={image}"],
            timeout=BUILD_TIMEOUT)
        run(["podman", "volume", "create", volume])
        argv = ["--network", "host", "-v", f"{volume}:/data", image,
                "-l", harness.HOST, "-p", str(port), "-e", "/data/magpie.snap"]

        run(["podman", "run", "-d", "--name", names[0], *argv])
        if not harness.poll(lambda: connectable(port), harness.START_TIMEOUT):
            logs = run(["podman", "logs", names[0]], check=False)
            raise AssertionError(f"nothing listens on port {port}:\n{logs.stdout}{logs.stderr}")
        c = harness.Conn(port)
        sets = b"".join(b"set vol:%d %d 0 5\r\nv%04d\r\n" % (i, i, i) for i in range(1000))
        expect(c.request(sets), b"STORED\r\n" * 1000, "sets")
        c.close()
        run(["podman", "stop", "-t", "20", names[0]])
        expect(inspect("container", names[0], "{{.State.ExitCode}}"), "0", "the first container's exit code")
        logs = run(["podman", "logs", names[0]]).stderr
        if "wrote 1000 items" not in logs:
            raise AssertionError(f"the first container did not write its snapshot:\n{logs[-2000:]}")

        run(["podman", "run", "-d", "--name", names[1], *argv])
        if not harness.poll(lambda: connectable(port), harness.START_TIMEOUT):
            logs = run(["podman", "logs", names[1]], check=False)
            raise AssertionError(f"the second container does not listen:\n{logs.stdout}{logs.stderr}")
        c = harness.Conn(port)
        reply = c.request(b"get " + b" ".join(b"vol:%d" % i for i in range(0, 1000, 37)) + b"\r\n")
        c.close()
        expect(reply, b"".join(b"VALUE vol:%d %d 5\r\nv%04d\r\n" % (i, i, i) for i in range(0, 1000, 37))
               + b"END\r\n", "items in the second container")
        logs = run(["podman", "logs", names[1]]).stderr
        if "loaded 1000 items" not in logs:
            raise AssertionError(f"the second container's log:\n{logs[-2000:]}")
        run(["podman", "stop", "-t", "20", names[1]])
    finally:
        for name in names:
            run(["podman", "rm", "-f", "--ignore", name], check=False)
        run(["podman", "volume", "rm", "-f", volume], check=False)
        run(["podman", "rmi", "-f", image], check=False)


def serves_tls(image, name):
    """The image's static binary speaks TLS: -Z with certificates mounted read-only, a
    pymemcache client trusting the test CA, and --health -Z inside the container."""
    c = harness.certs()
    d = tempfile.mkdtemp(prefix="magpie-image-certs-")
    try:
        os.chmod(d, 0o755)  # the server runs as nobody
        for f in ("server.pem", "server.key"):
            shutil.copy(os.path.join(c.dir, f), d)
            os.chmod(os.path.join(d, f), 0o644)
        port = harness.free_port()
        run(["podman", "run", "-d", "--name", name, "--network", "host", "-v", f"{d}:/certs:ro", image,
             "-l", harness.HOST, "-p", str(port), "-Z",
             "-o", "ssl_chain_cert=/certs/server.pem,ssl_key=/certs/server.key"])
        ctx = harness.tls_context()
        if not harness.poll(lambda: tls_connectable(port, ctx), harness.START_TIMEOUT):
            logs = run(["podman", "logs", name], check=False)
            raise AssertionError(f"no TLS on port {port}:\n{logs.stdout}{logs.stderr}")
        client = Client((harness.HOST, port), connect_timeout=harness.IO_TIMEOUT,
                        timeout=harness.IO_TIMEOUT, default_noreply=False, tls_context=ctx)
        try:
            expect(client.set("tls:in:container", b"encrypted"), True, "set over TLS")
            expect(client.get("tls:in:container"), b"encrypted", "get over TLS")
        finally:
            client.close()
        healthy = run(["podman", "exec", name, "/magpie", "--health", f"{harness.HOST}:{port}", "-Z"],
                      check=False)
        expect(healthy.returncode, 0, f"--health -Z in the container ({healthy.stderr[-300:]!r})")
        run(["podman", "stop", "-t", "3", name])
    finally:
        shutil.rmtree(d, True)


def tls_connectable(port, ctx):
    try:
        harness.connect(port, ctx).close()
        return True
    except OSError:
        return False
