"""The black-box suite's options, stage gate and server fixture.

    pytest tests --stage N [--server PATH] [--server-args "ARGS"]

--stage decides which tests apply: a test marked @pytest.mark.since(K) runs only when N >= K.
That marker is the only gate; the tests it leaves out are listed at the end of the run with the
reason from the SINCE table below. The gate applies after -k, -m and --deselect, so the list
holds only tests the selection would otherwise have run, and a closing line accounts for every
deselected test: so many left out by the stage, so many not selected by -k/-m (QUICK=1's
-m "not slow"). --server overrides the binary (default
build/<stage-dir>/server), e.g. for a sanitizer build. --server-args adds arguments to every
server the suite starts; the self-test uses it to pick a bug mode of tests/broken_server.
The labs' structural checks in tests/lab/ are collected only when a command-line path names
them (`pytest tests/lab/test_structure.py::test_x --stage 2`), never by `pytest tests`.
"""

import ipaddress
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

import helpers

REPO_ROOT = Path(__file__).resolve().parent.parent
# The labs' checks: how a stage is built (epoll, edge-triggered), not what a client sees, so
# they are no part of the suite; lab grading names them on the command line.
LAB_DIR = Path(__file__).resolve().parent / "lab"
STAGES = range(1, 7)

# The one table of stage gates. A test marked since(N) is left out for stages before N,
# and this is the reason the run prints for it: what stage N adds.
SINCE = {
    1: "stage 1 (poll) already meets the whole echo contract",
    5: "stage 5 adds --threads, idle timeouts, connection limits, logging and graceful shutdown",
}

STAGE_KEY = pytest.StashKey[int]()
SERVER_PATH_KEY = pytest.StashKey[Path]()
SERVER_ARGS_KEY = pytest.StashKey[list]()
LEFT_OUT_KEY = pytest.StashKey[dict]()
# Every test deselected by anything (-k, -m, --deselect, the stage gate), in order; and those
# of them deselected before the stage gate ran, that is by the selection options.
DESELECTED_KEY = pytest.StashKey[list]()
NOT_SELECTED_KEY = pytest.StashKey[list]()
SERVERS_KEY = pytest.StashKey[list]()


def pytest_addoption(parser):
    group = parser.getgroup("echo server suite")
    group.addoption("--stage", metavar="N", default=None,
                    help="stage under test, 1..6 (required): decides which tests apply")
    group.addoption("--server", metavar="PATH", default=None,
                    help="server binary (default: build/<stage-dir>/server)")
    group.addoption("--server-args", metavar="ARGS", default="",
                    help="extra arguments for every server started (shell words), e.g."
                         " --server-args='--bug cstring' for the self-test's broken server")


def _inside(path, directory):
    return path == directory or directory in path.parents


def pytest_ignore_collect(collection_path, config):
    """Leaves out tests/lab/ unless a command-line argument names it or a path inside it, and
    then collects there only what that argument names: `pytest tests tests/lab/x.py::test_y`
    adds test_y to the suite, not the rest of x.py."""
    if not _inside(collection_path, LAB_DIR):
        return None
    for arg in config.args:
        named = (config.invocation_params.dir / arg.split("::", 1)[0]).resolve()
        if _inside(named, LAB_DIR) and _inside(collection_path, named):
            return None
    return True


def _stage_dir(stage):
    matches = sorted(p for p in REPO_ROOT.glob(f"0{stage}-*") if p.is_dir())
    if len(matches) != 1:
        found = ", ".join(p.name for p in matches) or "none"
        raise pytest.UsageError(
            f"expected exactly one directory 0{stage}-* in {REPO_ROOT} for stage {stage},"
            f" found {found}; pass --server PATH to name the binary directly")
    return matches[0]


def pytest_configure(config):
    if config.option.help:
        return  # `pytest --help` must work without --stage
    if helpers.TIME_SCALE_ERROR:
        raise pytest.UsageError(helpers.TIME_SCALE_ERROR)
    text = config.getoption("stage")
    if text is None:
        raise pytest.UsageError(
            "--stage N is required (N = 1..6): it decides which tests apply,"
            " e.g. `pytest tests --stage 1`")
    if not text.isdigit() or int(text) not in STAGES:
        raise pytest.UsageError(f"--stage must be one of 1..6, got {text!r}")
    stage = int(text)
    server = config.getoption("server")
    if server is None:
        path = REPO_ROOT / "build" / _stage_dir(stage).name / "server"
        if not path.is_file():
            raise pytest.UsageError(
                f"server binary {path} does not exist: build it with `make stage-{stage}`"
                f" (or pass --server PATH)")
    else:
        path = Path(server).resolve()
        if not path.is_file():
            raise pytest.UsageError(f"--server {server}: no such file")
    if not os.access(path, os.X_OK):
        raise pytest.UsageError(f"server binary {path} is not executable")
    config.stash[STAGE_KEY] = stage
    config.stash[SERVER_PATH_KEY] = path
    config.stash[SERVER_ARGS_KEY] = shlex.split(config.getoption("server_args"))
    config.stash[LEFT_OUT_KEY] = {}
    config.stash[DESELECTED_KEY] = []
    config.stash[NOT_SELECTED_KEY] = []


def pytest_report_header(config):
    if STAGE_KEY not in config.stash:
        return None
    command = shlex.join([str(config.stash[SERVER_PATH_KEY]), *config.stash[SERVER_ARGS_KEY]])
    return (f"echo server suite: stage {config.stash[STAGE_KEY]},"
            f" server {command}, TEST_TIME_SCALE={helpers.TIME_SCALE:g}"
            f" (per-test timeout {helpers.scaled(_default_timeout(config)):g} s)")


def _since(item):
    marker = item.get_closest_marker("since")
    if marker is None:
        return 1  # no marker: part of the contract every stage meets
    if len(marker.args) != 1 or marker.kwargs or not isinstance(marker.args[0], int):
        raise pytest.UsageError(f"{item.nodeid}: use @pytest.mark.since(N) with one integer N")
    since = marker.args[0]
    if since not in SINCE:
        raise pytest.UsageError(
            f"{item.nodeid}: since({since}) has no entry in the SINCE table of"
            f" {Path(__file__).name}; add the stage and its reason there")
    return since


def _default_timeout(config):
    """pytest-timeout's limit for tests without their own: --timeout, else the ini value."""
    base = config.getoption("timeout", None)
    if base is None:
        base = config.getini("timeout") or 0
    return float(base)


def _scale_timeout(config, item):
    """Multiplies the test's pytest-timeout limit (marker, --timeout or ini) by the scale."""
    marker = item.get_closest_marker("timeout")
    kwargs = dict(marker.kwargs) if marker else {}
    if marker and marker.args:
        base = marker.args[0]
    elif "timeout" in kwargs:
        base = kwargs.pop("timeout")
    else:
        base = _default_timeout(config)
    base = float(base)
    if base > 0:
        # Prepended, so it is the closest timeout marker, the one pytest-timeout reads.
        item.add_marker(pytest.mark.timeout(helpers.scaled(base), **kwargs), append=False)


def pytest_deselected(items):
    """Records what -k, -m and --deselect leave out, to account for it at the end of the run."""
    config = items[0].config if items else None
    if config is not None and DESELECTED_KEY in config.stash:
        config.stash[DESELECTED_KEY].extend(items)


# trylast: after -k, -m and --deselect have chosen, so that the stage gate (and the list it
# prints) sees only the tests the selection would run.
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    stage = config.stash[STAGE_KEY]
    config.stash[NOT_SELECTED_KEY] = list(config.stash[DESELECTED_KEY])
    kept, left_out = [], []
    by_stage = config.stash[LEFT_OUT_KEY]
    for item in items:
        since = _since(item)
        if since > stage:
            left_out.append(item)
            by_stage.setdefault(since, []).append(item.nodeid)
        else:
            _scale_timeout(config, item)
            kept.append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


def _selection_options(config):
    """The options that chose tests, as typed: '-k "emfile" -m "not slow"'."""
    words = []
    if config.option.keyword.strip():
        words.append(f'-k "{config.option.keyword.strip()}"')
    if config.option.markexpr.strip():
        words.append(f'-m "{config.option.markexpr.strip()}"')
    for prefix in config.getoption("deselect") or []:
        words.append(f"--deselect {prefix}")
    return " ".join(words) or "another plugin"


def _marker_reasons(config, items):
    """pytest.ini's description of the markers these tests carry, e.g. slow's."""
    described = dict(line.split(":", 1) for line in config.getini("markers") if ":" in line)
    names = {m.name for item in items for m in item.iter_markers()}
    return [f"{name}: {described[name].strip()}" for name in sorted(names & described.keys())
            if name != "since"]


# Lists up to this many tests by name; a longer list (most of the suite, for -k) is counted.
LIST_AT_MOST = 10


def pytest_terminal_summary(terminalreporter, config):
    if STAGE_KEY not in config.stash:
        return
    stage = config.stash[STAGE_KEY]
    by_stage = config.stash[LEFT_OUT_KEY]
    not_selected = config.stash[NOT_SELECTED_KEY]
    gated = sum(len(nodeids) for nodeids in by_stage.values())
    write = terminalreporter.write_line
    if by_stage:
        terminalreporter.write_sep("-", f"left out for --stage {stage} (see SINCE in conftest.py)")
        for since in sorted(by_stage):
            nodeids = by_stage[since]
            noun = "test" if len(nodeids) == 1 else "tests"
            write(f"since stage {since}, {len(nodeids)} {noun}: {SINCE[since]}")
            for nodeid in nodeids:
                write(f"    {nodeid}")
    if not not_selected:
        return
    options = _selection_options(config)
    if len(not_selected) <= LIST_AT_MOST:
        terminalreporter.write_sep("-", f"not selected by {options}")
        for reason in _marker_reasons(config, not_selected):
            write(reason)
        for item in not_selected:
            write(f"    {item.nodeid}")
    parts = []
    if gated:
        stages = ", ".join(f"since({since})" for since in sorted(by_stage))
        parts.append(f"{gated} left out for --stage {stage} ({stages})")
    else:
        parts.append(f"--stage {stage} left out none of the selected tests")
    parts.append(f"{len(not_selected)} not selected by {options}")
    write(f"{gated + len(not_selected)} deselected: " + "; ".join(parts))


@pytest.fixture(scope="session")
def stage(pytestconfig):
    """The stage under test (--stage), for the few tests whose command line depends on it."""
    return pytestconfig.stash[STAGE_KEY]


@pytest.fixture(scope="session")
def server_command(pytestconfig):
    """The server binary under test and the --server-args for it, as an argv list."""
    return [str(pytestconfig.stash[SERVER_PATH_KEY]), *pytestconfig.stash[SERVER_ARGS_KEY]]


class Server:
    """One server process started by the start_server fixture; the fixture owns and stops it."""

    def __init__(self, argv, proc, stdout_path, stderr_path):
        self.argv = argv
        self.proc = proc
        self.pid = proc.pid
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        self.host = None
        self.port = None
        self.clients = []
        # Set once a death has been reported, so that it is reported once.
        self.death_handled = False

    def stderr_text(self):
        if self.proc.stderr is not None:  # start_server(stderr_pipe=True)
            return "(not kept: stderr was a pipe that the test held)"
        return self.stderr_path.read_bytes().decode("utf-8", "replace")

    def death_message(self):
        """None while the server runs; otherwise how it ended, with the tail of its stderr."""
        if self.proc.poll() is None:
            return None
        return (f"the server died during the test: {helpers.describe_exit(self.proc.returncode)}\n"
                f"command: {' '.join(self.argv)}\n"
                f"server stderr ({self.stderr_path}):\n"
                f"{helpers.tail_text(self.stderr_text()) or '(empty)'}")

    def assert_alive(self, context=""):
        """Fails the test, saying how the server ended, if it is no longer running."""
        __tracebackhide__ = True
        message = self.death_message()
        if message is not None:
            self.death_handled = True
            raise AssertionError((f"{context}: " if context else "") + message)

    def connect(self, timeout=5.0, rcvbuf=None):
        """A client socket to this server (TCP_NODELAY, closed at teardown if still open)."""
        __tracebackhide__ = True
        try:
            sock = helpers.connect(self.host, self.port, timeout, rcvbuf)
        except OSError as e:
            message = self.death_message()
            if message is None:
                raise
            self.death_handled = True
            raise AssertionError(
                f"connect to {self.host}:{self.port} failed ({e}): {message}") from None
        self.clients.append(sock)
        return sock

    def stop(self):
        """Stops the server now (SIGTERM, then SIGKILL); an exit the test asked for, not a death."""
        self.death_handled = True
        return helpers.stop_process(self.proc)

    def idle(self):
        """True if every thread of the server is asleep, waiting: none is running or runnable."""
        return all(s == "S" for s in helpers.thread_states(self.pid).values())

    def stopped(self):
        """True if every thread of the server is stopped (by SIGSTOP, or a debugger)."""
        return all(s in ("T", "t") for s in helpers.thread_states(self.pid).values())

    def pause(self):
        """SIGSTOP, then waits until every thread of the server has stopped."""
        __tracebackhide__ = True
        os.kill(self.pid, signal.SIGSTOP)
        assert helpers.wait_until(self.stopped, 5.0, interval=0.005), (
            f"the server did not stop on SIGSTOP (thread states"
            f" {helpers.thread_states(self.pid)})")

    def resume(self):
        os.kill(self.pid, signal.SIGCONT)

    def fd_count(self):
        return helpers.count_fds(self.pid)

    def open_fds(self):
        return helpers.open_fds(self.pid)


def _wait_for_listening_line(server, seconds):
    """Reads the first stdout line; fails the test if the server exits or stays silent."""
    deadline = helpers.deadline_after(seconds)
    while True:
        text = server.stdout_path.read_bytes()
        if b"\n" in text:
            return text.split(b"\n", 1)[0].decode("utf-8", "replace")
        if server.proc.poll() is not None:
            server.death_handled = True
            pytest.fail(f"the server exited before printing 'listening on HOST:PORT':"
                        f" {helpers.describe_exit(server.proc.returncode)}\n"
                        f"command: {' '.join(server.argv)}\nstdout: {text!r}\n"
                        f"stderr:\n{helpers.tail_text(server.stderr_text())}")
        if time.monotonic() >= deadline:
            pytest.fail(f"the server printed no 'listening on HOST:PORT' line within"
                        f" {helpers.scaled(seconds):.1f} s (is stdout flushed?)\n"
                        f"command: {' '.join(server.argv)}\nstdout so far: {text!r}\n"
                        f"stderr:\n{helpers.tail_text(server.stderr_text())}")
        time.sleep(0.01)


@pytest.fixture
def start_server(server_command, tmp_path, request):
    """Factory: start_server(*extra_args, host="127.0.0.1", port=0, nofile=None,
    stderr_pipe=False) -> Server.

    Starts the binary with --host/--port (None leaves a flag out, to test its default), sends
    stdout and stderr to files in tmp_path (a full pipe would block a chatty server), waits for
    the `listening on` line and checks it. With stderr_pipe=True, stderr is a pipe instead, whose
    read end the test holds as server.proc.stderr (to close it, as `| tee` does when it exits).
    At teardown, closes the clients, fails the test if a server died during it, and stops every
    server by PID.
    """
    servers = []
    request.node.stash[SERVERS_KEY] = servers

    def start(*extra_args, host="127.0.0.1", port=0, nofile=None, ready_seconds=10.0,
              stderr_pipe=False):
        argv = list(server_command)
        if host is not None:
            argv += ["--host", host]
        if port is not None:
            argv += ["--port", str(port)]
        argv += [str(a) for a in extra_args]
        n = len(servers) + 1
        stdout_path = tmp_path / f"server-{n}.stdout"
        stderr_path = tmp_path / f"server-{n}.stderr"
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.PIPE if stderr_pipe else err,
                                    cwd=tmp_path, preexec_fn=helpers.child_limits(nofile))
        server = Server(argv, proc, stdout_path, stderr_path)
        servers.append(server)
        line = _wait_for_listening_line(server, ready_seconds)
        parsed = helpers.parse_listening_line(line)
        if parsed is None:
            pytest.fail(f"the first stdout line is {line!r}, not 'listening on HOST:PORT'"
                        f" (IPv6 as [ADDR]:PORT)\ncommand: {' '.join(argv)}")
        server.host, server.port = parsed
        if host is not None and ipaddress.ip_address(server.host) != ipaddress.ip_address(host):
            pytest.fail(f"asked for --host {host}, the server says {line!r}")
        if port not in (None, 0) and server.port != port:
            pytest.fail(f"asked for --port {port}, the server says {line!r}")
        if server.port == 0:
            pytest.fail(f"the server printed port 0 ({line!r}): it must print the port it got")
        return server

    yield start

    for server in servers:
        for sock in server.clients:
            sock.close()
        if server.proc.stderr is not None:
            server.proc.stderr.close()
    deaths = []
    for server in servers:
        message = None if server.death_handled else server.death_message()
        if message is not None:
            server.death_handled = True
            deaths.append(message)
        helpers.stop_process(server.proc)
    if deaths:
        pytest.fail("\n\n".join(deaths), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Reports a server's death as part of the test that caused it, not only at teardown."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call":
        return
    for server in item.stash.get(SERVERS_KEY, []):
        if server.death_handled:
            continue
        message = server.death_message()
        if message is None:
            continue
        server.death_handled = True
        if report.passed:
            report.outcome = "failed"
            report.longrepr = message
        else:
            report.sections.append(("the server died", message))
