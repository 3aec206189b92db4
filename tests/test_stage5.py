"""SPEC behaviour 13 (stage 5): work spread over the threads, the idle timeout, the connection
limit and graceful shutdown on SIGTERM and SIGINT, as the server contract describes them.
(EMFILE with several threads is in test_emfile.py, stage 5's flags in test_cli.py.)

Written against SPEC before stage 5 exists, so that stage 5 is built to them.
"""

import re
import selectors
import signal
import socket
import subprocess
import time

import pytest

from helpers import (MiB, deadline_after, describe_exit, echo_concurrently, echo_roundtrip,
                     is_io_uring_thread, payload, read_up_to, recv_until_eof, scaled, tail_text,
                     thread_names_and_cpu_seconds)

pytestmark = pytest.mark.since(5)


def _push_for(clients, seconds):
    """Writes to every client and discards every echo, from one thread, for `seconds`."""
    chunk = bytes(64 * 1024)
    buf = bytearray(1 * MiB)
    moved = 0
    with selectors.DefaultSelector() as selector:
        for sock in clients:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            for key, events in selector.select(timeout=0.1):
                try:
                    if events & selectors.EVENT_READ:
                        moved += key.fileobj.recv_into(buf, len(buf), socket.MSG_TRUNC)
                    if events & selectors.EVENT_WRITE:
                        key.fileobj.send(chunk)
                except (BlockingIOError, InterruptedError):
                    pass
    return moved


def _cpu_since(before, after):
    """(CPU seconds of each of the server's own threads, largest first; CPU seconds of
    io_uring's kernel threads together) between two thread_names_and_cpu_seconds readings.

    The server's own threads only. io_uring's kernel threads (iou-wrk-*, iou-sqp-*, stage 6)
    each work for one loop: counted as threads of their own, a worker burning CPU next to the
    one loop that does all the work would pass for a second loop at work. A server without
    io_uring has none, so for it nothing changes."""
    used, kernel = [], 0.0
    for tid, (name, seconds) in after.items():
        spent = seconds - before.get(tid, (name, 0.0))[1]
        if is_io_uring_thread(name):
            kernel += spent
        else:
            used.append(spent)
    return sorted(used, reverse=True), kernel


# Enough of the server's CPU time to judge how it is spread, and the least that will do: one
# Python client cannot load the server much, and less still on a machine that is busy.
ENOUGH_CPU_SECONDS, LEAST_CPU_SECONDS = 0.5, 0.2


def test_work_spreads_over_threads(start_server):
    """Catches one loop doing all the work (one listener, or SO_REUSEPORT not set on the rest)."""
    server = start_server("--threads", 2)
    clients = [server.connect() for _ in range(32)]
    before = thread_names_and_cpu_seconds(server.pid)
    moved = 0
    deadline = deadline_after(10)
    while True:  # 2 s of load, and more while the server has not worked enough to judge
        moved += _push_for(clients, scaled(2.0 if moved == 0 else 1.0))
        used, kernel = _cpu_since(before, thread_names_and_cpu_seconds(server.pid))
        if sum(used) >= ENOUGH_CPU_SECONDS or time.monotonic() >= deadline:
            break
    total = sum(used)
    assert moved > 0 and total > LEAST_CPU_SECONDS, (
        f"32 busy clients moved {moved / MiB:.0f} MiB and the server's own threads used"
        f" {total:.2f} s of CPU (io_uring's kernel threads {kernel:.2f} s more):"
        " too little load to judge how it is spread")
    shares = [u / total for u in used]
    assert len(shares) >= 2 and shares[1] >= 0.2, (
        f"with --threads 2 and 32 busy clients, the server's own threads used"
        f" {', '.join(f'{s:.0%}' for s in shares)} of their CPU: one loop does all the work"
        + (f" (io_uring's kernel threads, left out, used {kernel:.2f} s)" if kernel else ""))


def _assert_closed_by_server(sock, seconds, what):
    """The server closes this connection (EOF or reset) within `seconds`, sending nothing."""
    __tracebackhide__ = True
    data, why = read_up_to(sock, 1, deadline_after(seconds))
    assert not data and why is not None and why.startswith(("EOF", "recv failed")), (
        f"{what}: expected the server to close the connection within {scaled(seconds):.0f} s;"
        f" read {data!r} ({why or 'no close'})")


def test_idle_timeout_closes_idle_connection(start_server):
    """Catches an idle timeout that never fires, or fires at once."""
    server = start_server("--idle-timeout-ms", 300)
    client = server.connect()
    echo_roundtrip(client, b"then silence", "an echo before going idle")
    idle_since = time.monotonic()
    _assert_closed_by_server(client, 5, "an idle client with --idle-timeout-ms 300")
    waited = time.monotonic() - idle_since
    assert waited >= 0.25, f"closed after {waited * 1000:.0f} ms of idleness, before 300 ms"


def test_idle_timeout_spares_busy_connections(start_server):
    """Catches an idle timer counted from the connect, or one that ignores traffic."""
    server = start_server("--idle-timeout-ms", 1000)
    bulk = server.connect()
    echo_concurrently(bulk, payload(32 * MiB, seed=1300),
                      "a long echo with --idle-timeout-ms 1000")
    # Connected only now: during a long echo of the other client it would really be idle.
    chatty = server.connect()
    for i in range(25):  # 2.5 s in all, past the timeout, never idle for more than 100 ms
        echo_roundtrip(chatty, payload(8, seed=1301 + i), f"ping {i + 1}, 100 ms apart")
        time.sleep(0.1)


def _assert_turned_away(server, what):
    """A client over the limit: connected by the kernel, then closed without an echo."""
    __tracebackhide__ = True
    extra = server.connect()
    try:
        extra.sendall(b"over the limit")
    except OSError:
        return  # already reset
    _assert_closed_by_server(extra, 2, what)


def test_max_connections_excess_closed_at_once(start_server):
    """Catches a limit not enforced, enforced by leaving clients hanging, or never released."""
    server = start_server("--max-connections", 4, "--threads", 2)
    admitted = [server.connect() for _ in range(4)]
    for i, sock in enumerate(admitted):
        echo_roundtrip(sock, payload(16, seed=1400 + i), f"admitted client {i + 1} of 4")
    _assert_turned_away(server, "a 5th client with --max-connections 4")
    for i, sock in enumerate(admitted):
        echo_roundtrip(sock, payload(16, seed=1410 + i), f"admitted client {i + 1} after the 5th")
    admitted.pop().close()
    deadline = deadline_after(5)
    while True:  # the server notices the close asynchronously; then a new client fits again
        client = server.connect()
        client.sendall(b"room again?")
        data, why = read_up_to(client, 11, deadline_after(0.5))
        if data == b"room again?":
            break
        assert time.monotonic() < deadline, (
            "after one of 4 admitted clients left, new clients were still turned away")
        client.close()


def _wait_exit(server, seconds, what):
    __tracebackhide__ = True
    try:
        server.proc.wait(timeout=scaled(seconds))
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what}: the server still runs {scaled(seconds):.0f} s later")
    server.death_handled = True  # an exit is what we asked for, not a death
    assert server.proc.returncode == 0, (
        f"{what}: {describe_exit(server.proc.returncode)}, expected exit code 0\n"
        f"stderr:\n{tail_text(server.stderr_text())}")


def _assert_not_served(server, what):
    """After a shutdown signal: refused, or closed without an echo."""
    __tracebackhide__ = True
    try:
        late = socket.create_connection((server.host, server.port), timeout=scaled(2))
    except OSError:
        return  # refused: the listeners are closed
    with late:
        try:
            late.sendall(b"too late")
        except OSError:
            return
        data, _ = read_up_to(late, 8, deadline_after(0.5))
        assert data != b"too late", f"{what}: a client connecting after it was echoed"


def _signal_mid_transfer(server, signum, seed):
    """Starts a 4 MiB echo, sends signum halfway through it, and checks that the server still
    runs 0.2 s later. Returns what _finish_transfer needs: the client, its data, the echo so far."""
    __tracebackhide__ = True
    name = signal.Signals(signum).name
    client = server.connect()
    data = payload(4 * MiB, seed=seed)
    client.sendall(data[:len(data) // 2])
    first, why = read_up_to(client, 1 * MiB, deadline_after(10))
    assert why is None, f"before {name}: {why}"
    server.proc.send_signal(signum)
    time.sleep(scaled(0.2))
    server.assert_alive(f"0.2 s after {name}, with a client mid-transfer")
    return client, data, first


def _finish_transfer(server, signum, client, data, first):
    """The client sends the rest and half-closes: it must get every byte back, then EOF, and the
    server must exit 0 once it has."""
    __tracebackhide__ = True
    name = signal.Signals(signum).name
    client.sendall(data[len(data) // 2:])  # the client is not done: the server must keep echoing
    client.shutdown(socket.SHUT_WR)
    rest, why = recv_until_eof(client, deadline_after(30))
    got = first + rest
    assert why is None and got == data, (
        f"after {name}, a client mid-transfer got {len(got)} of {len(data)} bytes"
        f" ({'exact' if data.startswith(got) else 'corrupted'}), then: {why or 'EOF'}")
    _wait_exit(server, 10, f"after {name} and the last client's EOF")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_shutdown_finishes_open_connections(start_server, signum):
    """Catches an abrupt exit on a signal (owed bytes lost), accepting after it, or not exiting
    once the last client has finished."""
    server = start_server("--threads", 2, "--shutdown-timeout-ms", 20000)
    client, data, first = _signal_mid_transfer(server, signum, seed=1500)
    _assert_not_served(server, f"after {signal.Signals(signum).name}")
    _finish_transfer(server, signum, client, data, first)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_survives_log_pipe_whose_reader_is_gone(start_server, signum):
    """Catches a server killed by SIGPIPE when it logs its shutdown to a pipe nobody reads any
    more: `make run 2>&1 | tee log`, where Ctrl-C ends tee as well. The drain is cut short, and
    the open clients are reset."""
    server = start_server("--threads", 2, "--shutdown-timeout-ms", 20000, stderr_pipe=True)
    server.proc.stderr.close()  # the reader is gone: the next write to the pipe fails (EPIPE)
    client, data, first = _signal_mid_transfer(server, signum, seed=1550)
    _finish_transfer(server, signum, client, data, first)


def test_shutdown_timeout_force_closes_lingering_clients(start_server):
    """Catches a shutdown that waits forever for a client that never leaves, or that stops
    serving before the timeout."""
    server = start_server("--threads", 2, "--shutdown-timeout-ms", 1000)
    client = server.connect()
    echo_roundtrip(client, b"before", "an echo before SIGTERM")
    server.proc.send_signal(signal.SIGTERM)
    echo_roundtrip(client, b"still served", "an echo right after SIGTERM, within the timeout")
    _assert_closed_by_server(client, 10, "a client that never leaves, after the shutdown timeout")
    _wait_exit(server, 10, "after the shutdown timeout")


@pytest.mark.parametrize("first, second", [(signal.SIGTERM, signal.SIGTERM),
                                           (signal.SIGTERM, signal.SIGINT)],
                         ids=["SIGTERM-SIGTERM", "SIGTERM-SIGINT"])
def test_second_signal_closes_remaining_connections_at_once(start_server, first, second):
    """Catches a second signal that is ignored (the server waits out the shutdown timeout) or
    that kills the server instead of closing its connections and exiting 0."""
    timeout_s = scaled(60)  # the drain would last this long: far longer than the bound below
    server = start_server("--threads", 2, "--shutdown-timeout-ms", round(timeout_s * 1000))
    client = server.connect()
    echo_roundtrip(client, b"before", f"an echo before {first.name}")
    server.proc.send_signal(first)
    time.sleep(scaled(0.3))
    server.assert_alive(f"0.3 s after {first.name}, with a client connected and idle")
    echo_roundtrip(client, b"still draining",
                   f"an echo 0.3 s after {first.name}, within the {timeout_s:.0f} s timeout")
    server.proc.send_signal(second)
    sent = time.monotonic()
    # Exiting is now what we asked for, not a death; _wait_exit checks how. (A test that fails
    # below closes the client at teardown, and the draining server then exits on its own.)
    server.death_handled = True
    what = f"after a second signal ({second.name}) with {timeout_s:.0f} s of drain left"
    _assert_closed_by_server(client, 5, f"the idle client, {what}")
    _wait_exit(server, 5, what)
    took = time.monotonic() - sent
    assert took < scaled(5), (
        f"{what}: the server exited {took:.1f} s later; expected well under the timeout")


def test_shutdown_serves_connections_already_queued(start_server):
    """Catches closing the listeners with connections still in their accept queues (the kernel
    resets those) instead of accepting them first."""
    server = start_server("--threads", 2, "--shutdown-timeout-ms", 20000)
    # More per loop than one round accepts (stage 5 takes 64, then lets the loop's other
    # coroutines run): with only a few, a loop that wakes accepts them all before it even sees
    # the shutdown request, and dropping the queue would go unnoticed.
    count = 300
    server.proc.send_signal(signal.SIGSTOP)
    try:
        queued = [server.connect() for _ in range(count)]  # handshakes done by the kernel
        server.proc.send_signal(signal.SIGTERM)
    finally:
        server.proc.send_signal(signal.SIGCONT)
    for i, sock in enumerate(queued):
        data = payload(1000, seed=1600 + i)
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            pytest.fail(f"queued client {i + 1} of {count} could not send after SIGTERM: {e}")
        got, why = recv_until_eof(sock, deadline_after(10))
        assert why is None and got == data, (
            f"queued client {i + 1} of {count} (connected before SIGTERM, not yet accepted) got"
            f" {len(got)} of {len(data)} bytes back, then {why or 'EOF'}")
    _wait_exit(server, 10, "after SIGTERM and every queued client's EOF")


def test_every_loop_accepts_and_counters_are_logged_at_shutdown(start_server):
    """Catches every connection going to one loop (a single listener, or the others without
    SO_REUSEPORT), and a shutdown that does not log its counters per loop."""
    server = start_server("--threads", 2)
    clients = 32
    for i in range(clients):
        with server.connect() as client:
            echo_roundtrip(client, payload(100, seed=1700 + i), f"client {i + 1} of {clients}")
    server.proc.send_signal(signal.SIGTERM)
    _wait_exit(server, 10, "after SIGTERM with no client left")
    log = server.stderr_text()
    accepted = {int(loop): int(count) for loop, count in
                re.findall(r"^info: loop (\d+): (\d+) connections? accepted", log, re.MULTILINE)}
    assert sorted(accepted) == [0, 1] and sum(accepted.values()) == clients, (
        f"expected 'info: loop N: K connections accepted' for loops 0 and 1, adding up to"
        f" {clients}; found {accepted}\nstderr:\n{tail_text(log)}")
    # The kernel hashes each connection to a listener: all 32 on one loop has odds of 2 in 2**32.
    assert min(accepted.values()) > 0, (
        f"{clients} clients with --threads 2, accepted per loop: {accepted}: one loop took all")

