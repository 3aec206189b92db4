"""SPEC behaviour 12: the command line, as in the server contract.

`--help` prints usage and exits 0; bad arguments print `error: ...` and the usage to stderr and
exit 2; a failing bind prints `error: ...` and exits 1; when ready the server prints exactly one
flushed line `listening on HOST:PORT` (IPv6 as `[ADDR]:PORT`). Never a crash.
"""

import select
import socket
import subprocess
import time

import pytest

from helpers import (CRASH_SIGNS, child_limits, deadline_after, describe_exit, describe_run,
                     echo_roundtrip, ipv6_loopback_usable, listening_sockets,
                     parse_listening_line, run_cli, scaled, server_environment, stop_process,
                     tail_text)

pytestmark = pytest.mark.since(1)

def has_error_line(text):
    return any(line.startswith("error: ") for line in text.splitlines())


def test_help_prints_usage_and_exits_0(server_command, tmp_path):
    """Catches --help treated as an unknown flag, printed to stderr, or starting the server."""
    args = ["--help"]
    rc, out, err = run_cli(server_command, args, tmp_path)
    assert rc == 0, describe_run(args, rc, out, err)
    assert "usage" in out.lower(), "no usage on stdout\n" + describe_run(args, rc, out, err)
    assert not has_error_line(err), describe_run(args, rc, out, err)


# Where the mistake is not in --port, "--port 0" keeps a server that wrongly accepts the
# arguments off the default port 7000 (which something else may be using).
BAD_ARGUMENTS = {
    "port_not_a_number": ["--port", "abc"],
    "port_too_large": ["--port", "70000"],
    "port_negative": ["--port", "-1"],
    "port_with_trailing_junk": ["--port", "7000x"],  # atoi/stoi stop at the 'x'
    "port_overflowing_int": ["--port", "99999999999999999999"],  # stoi throws
    "port_missing_value": ["--port"],
    "host_missing_value": ["--port", "0", "--host"],
    "host_not_an_address": ["--host", "not-an-ip", "--port", "0"],
    "unknown_flag": ["--port", "0", "--bogus"],
    "stray_positional_argument": ["--port", "0", "stray"],
}


@pytest.mark.parametrize("args", list(BAD_ARGUMENTS.values()), ids=list(BAD_ARGUMENTS))
def test_bad_arguments_rejected_with_usage_and_exit_2(server_command, tmp_path, args):
    """Catches lax parsing (number prefixes, ignored flags), uncaught exceptions, wrong codes."""
    assert_rejected_with_usage(server_command, tmp_path, args)


def assert_rejected_with_usage(server_command, tmp_path, args):
    __tracebackhide__ = True
    rc, out, err = run_cli(server_command, args, tmp_path)
    report = describe_run(args, rc, out, err)
    assert rc is not None and rc >= 0, "the server crashed\n" + report
    assert not any(sign in err for sign in CRASH_SIGNS), "stderr looks like a crash\n" + report
    assert rc == 2, "expected exit code 2 for bad arguments\n" + report
    assert has_error_line(err), "no stderr line starting with 'error: '\n" + report
    assert "usage" in err.lower(), "no usage on stderr\n" + report
    assert "listening on" not in out, report


# Stage 5's flags (SPEC's contract); each value is wrong in a way a lax parser lets through.
BAD_STAGE5_ARGUMENTS = {
    "threads_zero": ["--port", "0", "--threads", "0"],
    "threads_not_a_number": ["--port", "0", "--threads", "two"],
    "threads_missing_value": ["--port", "0", "--threads"],
    "idle_timeout_negative": ["--port", "0", "--idle-timeout-ms", "-5"],
    "idle_timeout_trailing_junk": ["--port", "0", "--idle-timeout-ms", "100ms"],
    "max_connections_not_a_number": ["--port", "0", "--max-connections", "many"],
    "shutdown_timeout_negative": ["--port", "0", "--shutdown-timeout-ms", "-1"],
    "log_level_unknown": ["--port", "0", "--log-level", "verbose"],
}


@pytest.mark.since(5)
@pytest.mark.parametrize("args", list(BAD_STAGE5_ARGUMENTS.values()),
                         ids=list(BAD_STAGE5_ARGUMENTS))
def test_bad_stage5_arguments_rejected_with_exit_2(server_command, tmp_path, args):
    """Catches stage 5's new flags parsed laxly (a zero thread count, a negative timeout)."""
    assert_rejected_with_usage(server_command, tmp_path, args)


def test_address_in_use_exits_1(server_command, tmp_path):
    """Catches a failing bind that crashes, exits 0/2, or is hidden by SO_REUSEPORT."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))  # no SO_REUSEPORT: nobody else may bind this port
        holder.listen(8)
        port = holder.getsockname()[1]
        args = ["--host", "127.0.0.1", "--port", str(port)]
        rc, out, err = run_cli(server_command, args, tmp_path)
    report = describe_run(args, rc, out, err)
    assert rc == 1, "expected exit code 1 when the address is in use\n" + report
    assert has_error_line(err), "no stderr line starting with 'error: '\n" + report
    assert not any(sign in err for sign in CRASH_SIGNS), "stderr looks like a crash\n" + report
    assert "listening on" not in out, report


def test_unassigned_address_bind_failure_exits_1(server_command, tmp_path):
    """Catches bind errors other than EADDRINUSE (here EADDRNOTAVAIL) crashing or exiting 0."""
    address = "192.0.2.1"  # TEST-NET-1 (RFC 5737): a valid address no machine should own
    with socket.socket() as probe:
        try:
            probe.bind((address, 0))
            owned = True
        except OSError:
            owned = False
    if owned:
        pytest.skip(f"this machine owns {address}, so binding it cannot fail here")
    args = ["--host", address, "--port", "0"]
    rc, out, err = run_cli(server_command, args, tmp_path)
    report = describe_run(args, rc, out, err)
    assert rc == 1, "expected exit code 1 for a failing bind\n" + report
    assert has_error_line(err), "no stderr line starting with 'error: '\n" + report


def test_port_0_prints_the_real_port(start_server):
    """Catches printing the requested port (0) instead of the one the kernel chose."""
    server = start_server(port=0)
    assert 0 < server.port < 65536
    client = server.connect()
    echo_roundtrip(client, b"port 0 works", "echo on the port printed for --port 0")


def test_listening_line_is_one_flushed_line(server_command, tmp_path):
    """Catches unflushed stdout (a pipe is block-buffered) and extra or malformed stdout lines."""
    args = [*server_command, "--host", "127.0.0.1", "--port", "0"]
    with open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err, cwd=tmp_path, env=server_environment(),
                                preexec_fn=child_limits())
    try:
        out = bytearray()
        deadline = deadline_after(10)
        while b"\n" not in out and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 0.05)[0]:
                chunk = proc.stdout.raw.read(4096)
                if not chunk:
                    break
                out += chunk
        alive = proc.poll() is None
        stderr = (tmp_path / "stderr").read_text(errors="replace")
        assert alive, (f"the server exited ({describe_exit(proc.returncode)});"
                       f" stdout {bytes(out)!r}, stderr:\n{tail_text(stderr)}")
        assert b"\n" in out, (f"no complete line on stdout within {scaled(10):.1f} s while the"
                              f" server runs (not flushed?): got {bytes(out)!r}")
        line, rest = bytes(out).split(b"\n", 1)
        parsed = parse_listening_line(line.decode("utf-8", "replace"))
        assert parsed is not None and parsed[0] == "127.0.0.1", (
            f"first stdout line {line!r} is not 'listening on 127.0.0.1:PORT'")
        with socket.create_connection(parsed, timeout=scaled(5)) as client:
            echo_roundtrip(client, b"ready means ready", "echo right after the listening line")
        # Serving a client must not print anything more: stdout carries that one line only.
        time.sleep(scaled(0.2))
        if select.select([proc.stdout], [], [], 0)[0]:
            rest += proc.stdout.raw.read(4096) or b""
        assert rest == b"", f"stdout has more than the one line: {rest[:200]!r}"
    finally:
        stop_process(proc)
        proc.stdout.close()


def test_ipv6_host_printed_in_brackets(start_server):
    """Catches an IPv6 listener printed without brackets, or --host ::1 bound as IPv4."""
    if not ipv6_loopback_usable():
        pytest.skip("this machine cannot listen on ::1 (IPv6 disabled)")
    server = start_server(host="::1")
    line = server.stdout_path.read_text().splitlines()[0]
    assert line == f"listening on [::1]:{server.port}", f"got {line!r}"
    client = server.connect()
    assert client.family == socket.AF_INET6
    echo_roundtrip(client, b"over IPv6", "echo over [::1]")


def test_default_host_is_loopback_only(start_server):
    """Catches a server that listens on all interfaces (0.0.0.0 or ::) when --host is not given."""
    server = start_server(host=None, port=0)
    assert server.host == "127.0.0.1", f"without --host the server listens on {server.host}"
    addresses = [address for _, address in listening_sockets(server.pid)]
    # Stage 5 has one SO_REUSEPORT listener per loop, all on the same address.
    assert addresses and set(addresses) == {f"127.0.0.1:{server.port}"}, (
        f"without --host the server should listen on 127.0.0.1:{server.port} only;"
        f" its listening sockets are bound to {addresses}")


def test_default_port_is_7000(start_server):
    """Catches a wrong default port (the README's `nc 127.0.0.1 7000` would find nothing)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 7000))
        except OSError as e:
            pytest.skip(f"port 7000 is taken on this machine ({e.strerror}),"
                        " so the default cannot be tested")
    server = start_server(port=None)
    assert server.port == 7000, f"without --port the server listens on port {server.port}"


def test_restart_on_same_port_while_old_connections_linger(start_server):
    """Catches a missing SO_REUSEADDR: a restarted server could not bind its port while the old
    server's connections are still in TIME_WAIT (up to a minute)."""
    first = start_server(port=0)
    client = first.connect()
    echo_roundtrip(client, b"before the restart", "an echo from the first server")
    first.stop()  # the server's side closes first, so its side lingers
    client.close()
    second = start_server(port=first.port)
    client = second.connect()
    echo_roundtrip(client, b"after the restart", "an echo from the restarted server")
