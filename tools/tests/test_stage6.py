"""Tests of a machine where stage 6 cannot run: /usr/bin/python3 -m pytest tools/tests

Stage 6 needs liburing to build and io_uring to run. Where either is missing, `make run` starts
stage 5 and says why, and `make test-6` says "stage 6 not run: <why>" and passes, except with
CI=true. This machine has both, so the tests play one without: NO_IO_URING=1 makes stage 6's
server refuse io_uring, and LIBURING_HEADER=liburing/nope.h makes the Makefile's compiler probe
fail. tools/stage6-probe.sh, which tells the cases apart, is tested on stand-in servers.

The servers are built once, in the default tree (make test has built them already); each run
then takes well under a second.
"""

import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
PROBE = REPO / "tools" / "stage6-probe.sh"
STAGE5 = REPO / "build" / "05-full-server" / "server"
STAGE6 = REPO / "build" / "06-io-uring" / "server"
NO_IO_URING = "io_uring unavailable: NO_IO_URING is set"
NO_LIBURING = ("liburing is not installed (liburing/nope.h not found): "
               "make deps installs liburing-dev")
pytestmark = pytest.mark.skipif(not (REPO / "06-io-uring").is_dir(), reason="no stage 6 here")


def environment(**changes):
    """This process's environment for a make of our own: without the MAKEFLAGS of a `make
    tools-test` around us (its jobserver descriptors are not ours), without the build choices
    it was given (`make test SANITIZE=...` exports SANITIZE, and the servers checked here are
    the plain build's), and without the variables under test, unless given."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "SANITIZE", "CXX", "CI",
                        "NO_IO_URING", "STAGE")}
    env.update(changes)
    return env


@pytest.fixture(scope="module")
def servers():
    """Stages 5 and 6 built; the tests that use them play a machine without io_uring on one
    that has it, so elsewhere they are skipped (make test-6 says there why stage 6 cannot run)."""
    built = subprocess.run(["make", "-j2", "server-5", "server-6-if-possible"], cwd=REPO,
                           env=environment(), capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, f"make server-5 server-6 failed:\n{built.stdout}\n{built.stderr}"
    if "stage 6 not built" in built.stdout:
        pytest.skip(built.stdout.strip())
    probe = subprocess.run([str(PROBE), str(STAGE6)], env=environment(), capture_output=True,
                           text=True, timeout=60)
    if probe.returncode == 3:
        pytest.skip(f"stage 6 cannot run here: {probe.stdout.strip()}")
    assert probe.returncode == 0, probe.stderr


def descendants(pid):
    """The processes under pid, read from /proc."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone since the listing
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


class MakeRun:
    """`make run PORT=0 ...`, its stdout read until the server's `listening on` line or the end;
    whatever it started is killed by PID on leaving the `with`."""

    def __init__(self, env, *args, timeout=30):
        self.stderr = tempfile.TemporaryFile()
        self.make = subprocess.Popen(["make", "--no-print-directory", "run", "PORT=0", *args],
                                     cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=self.stderr)
        self.timeout = timeout

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.make.poll() is None:
            for pid in descendants(self.make.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.make.kill()
            self.make.wait()
        self.make.stdout.close()
        self.stderr.close()

    def lines(self):
        """What make printed until the server listened or make ended (stdout, as lines)."""
        output = b""
        # Raw reads: a buffered readline could hold the line we wait for while select waits.
        with selectors.DefaultSelector() as selector:
            selector.register(self.make.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + self.timeout
            while b"\nlistening on " not in b"\n" + output:
                left = deadline - time.monotonic()
                assert left > 0, (
                    f"make run: no 'listening on' nor an end in {self.timeout} s: {output}")
                if selector.select(left):
                    chunk = os.read(self.make.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    output += chunk
        return output.decode(errors="replace").splitlines()

    def server(self):
        """(pid, executable) of the server under make: make, then the make run STAGE=N it
        started, then the server that one exec'd."""
        for pid in descendants(self.make.pid):
            try:
                exe = Path(os.readlink(f"/proc/{pid}/exe"))
            except OSError:
                continue
            if exe.name == "server":
                return pid, exe
        return None, None

    def stop(self):
        """SIGTERM to the server, then make's exit status."""
        pid, _ = self.server()
        assert pid, "make run printed 'listening on', but no server is running under it"
        os.kill(pid, signal.SIGTERM)
        return self.make.wait(timeout=20)

    def errors(self):
        self.make.wait(timeout=20)
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")


@pytest.mark.parametrize("variable, why", [("NO_IO_URING=1", NO_IO_URING),
                                           ("LIBURING_HEADER=liburing/nope.h", NO_LIBURING)],
                         ids=["without io_uring", "without liburing"])
def test_make_run_falls_back_to_stage_5_saying_why(servers, variable, why):
    name, value = variable.split("=")
    with MakeRun(environment(**{name: value})) as run:
        lines = run.lines()
        assert lines and lines[-1].startswith("listening on "), f"make run ended: {lines}"
        said = [line for line in lines if line.startswith("make run: ")]
        assert len(said) == 1, lines
        assert said[0].startswith(f"make run: stage 6 cannot run here: {why}"), said
        assert said[0].endswith("; starting stage 5"), said
        exe = run.server()[1]
        assert exe == STAGE5.resolve(), f"make run started {exe}, not stage 5: {lines}"
        status = run.stop()
        assert status == 0, f"make run exited {status} after SIGTERM to its server: {lines}"


def test_make_run_starts_stage_6_where_io_uring_runs(servers):
    with MakeRun(environment()) as run:
        lines = run.lines()
        assert lines and lines[-1].startswith("listening on "), f"make run ended: {lines}"
        assert [line for line in lines if line.startswith("make run: ")] == [
            "make run: stage 6 (io_uring)"], lines
        exe = run.server()[1]
        assert exe == STAGE6.resolve(), f"make run started {exe}, not stage 6: {lines}"
        status = run.stop()
        assert status == 0, f"make run exited {status} after SIGTERM to its server: {lines}"


def test_make_run_with_stage_given_never_falls_back(servers):
    # STAGE=6 asks for stage 6 itself: it fails as stage 6 does, with nothing else started.
    with MakeRun(environment(NO_IO_URING="1"), "STAGE=6") as run:
        lines = run.lines()
        assert not any(line.startswith("listening on") for line in lines), (
            f"make run STAGE=6 without io_uring started a server: {lines}")
        assert f"error: {NO_IO_URING}" in run.errors(), lines
        assert run.make.returncode != 0, lines
        assert not any(line.startswith("make run: ") for line in lines), lines


# CI as the suite reads it (tests/conftest.py): set to anything but empty, 0, false or no.
@pytest.mark.parametrize("ci_value, ci", [(None, False), ("false", False), ("true", True),
                                          ("1", True)],
                         ids=["outside CI", "CI=false", "CI=true", "CI=1"])
def test_make_test_6_without_io_uring_says_why(servers, ci_value, ci):
    env = environment(NO_IO_URING="1", **({} if ci_value is None else {"CI": ci_value}))
    ran = subprocess.run(["make", "--no-print-directory", "test-6", "QUICK=1"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert "=== stage 6:" not in ran.stdout, f"stage 6's tests ran without io_uring:\n{ran.stdout}"
    if ci:
        assert ran.returncode != 0, (
            f"CI={ci_value} make test-6 passed without io_uring:\n{ran.stdout}")
        assert f"error: stage 6 not run: {NO_IO_URING}" in ran.stderr, ran.stderr
    else:
        assert ran.returncode == 0, f"make test-6 failed:\n{ran.stdout}\n{ran.stderr}"
        assert ran.stdout.splitlines()[-1].startswith(f"stage 6 not run: {NO_IO_URING}"), (
            ran.stdout)


# tools/stage6-probe.sh on stand-ins for stage 6's server: shell scripts that answer as it can.
STAND_INS = {
    "listens": 'trap "exit 0" TERM; echo "listening on 127.0.0.1:1"; while :; do sleep 0.05; done',
    "refuses": 'echo "error: io_uring unavailable: not in this container" >&2; exit 1',
    "crashes": 'echo "something else went wrong" >&2; kill -ABRT $$',
    "hangs": 'trap "exit 0" TERM; while :; do sleep 0.05; done',
}


@pytest.mark.parametrize("stand_in, status, stdout, stderr", [
    ("listens", 0, "", ""),
    ("refuses", 3, "io_uring unavailable: not in this container\n", ""),
    ("crashes", 1, "", "something else went wrong"),
    ("hangs", 1, "", "printed no 'listening on' within 1 s"),
    ("missing", 3, "is not built\n", ""),
])
def test_probe_tells_unavailable_from_broken(tmp_path, stand_in, status, stdout, stderr):
    server = tmp_path / stand_in
    if stand_in in STAND_INS:
        server.write_text(f"#!/bin/sh\n{STAND_INS[stand_in]}\n")
        server.chmod(0o755)
    started = time.monotonic()
    ran = subprocess.run([str(PROBE), str(server), "1"], capture_output=True, text=True,
                         timeout=30)
    assert ran.returncode == status, f"{stand_in}: {ran.stdout}{ran.stderr}"
    assert ran.stdout.endswith(stdout) and (ran.stdout == "") == (stdout == ""), ran.stdout
    assert stderr in ran.stderr, ran.stderr
    assert time.monotonic() - started < 5, f"{stand_in}: the probe took too long"


def test_bench_leaves_out_a_stage_6_that_cannot_run(servers, monkeypatch, capsys):
    sys.path.insert(0, str(REPO / "bench"))
    import common
    monkeypatch.delenv("NO_IO_URING", raising=False)
    assert 6 in common.built_stages()
    monkeypatch.setenv("NO_IO_URING", "1")
    assert 6 not in common.built_stages() and 5 in common.built_stages()
    assert f"stage 6 left out: {NO_IO_URING}" in capsys.readouterr().err
