"""A listening socket that fails must end the server, not make it spin.

poll() and epoll report an error or a hang-up (POLLERR, POLLHUP) on any descriptor, whether
asked for or not, and the listener is no exception. shutdown(2) on a listener, through any
descriptor that shares it, takes it out of the listening state: from then on every accept()
fails with EINVAL, an error of the listener rather than of one client, and poll() reports
POLLHUP where it reported POLLIN. A loop that calls accept() on POLLIN only never hears of
the failure, and because the hang-up is reported again at every wait it never sleeps either:
a whole core spent, every connect refused. With io_uring (stage 6) the accept in flight
completes with that error instead, and a loop that submits it again at once spins the same
way. A server that has lost its listener cannot do its job, so it must say so and exit 1.

The test borrows the server's listener with pidfd_getfd(2) (Linux 5.6), the descriptor found
by matching /proc/PID/fd against the kernel's table of listening sockets, and shuts it down.
"""

import socket
import time

import pytest

from helpers import (BorrowedDescriptors, cpu_seconds, deadline_after, describe_exit,
                     echo_roundtrip, listening_sockets, scaled, tail_text)

pytestmark = pytest.mark.since(1)

# A server that sees the failure exits within milliseconds; one that misses it never does.
EXIT_SECONDS = 5.0
# The CPU it may use until then: a tenth of that wait, SPEC's bound for a loop that sleeps.
# A spinning loop uses a whole core, ten times as much.
CPU_SHARE_LIMIT = 0.10


def _listener_fds(server):
    """The server's descriptors that listen on its port, lowest first."""
    suffix = f":{server.port}"
    return [fd for fd, address in listening_sockets(server.pid) if address.endswith(suffix)]


def _fail_listener(server, fd):
    """Shuts the server's listening socket `fd` down, through a duplicate borrowed from it."""
    with BorrowedDescriptors(server.pid) as borrowed, borrowed.socket(fd) as listener:
        listener.shutdown(socket.SHUT_RDWR)


def _assert_exits_1_without_spinning(server, fd, situation):
    """Fails `fd` and checks the outcome: exit 1 with an `error:` line, soon, CPU spared."""
    __tracebackhide__ = True
    cpu_before, started = cpu_seconds(server.pid), time.monotonic()
    _fail_listener(server, fd)
    deadline = deadline_after(EXIT_SECONDS)
    used = 0.0
    while server.proc.poll() is None and time.monotonic() < deadline:
        # Read while it runs: once it exits, poll() reaps it and /proc forgets it.
        used = cpu_seconds(server.pid) - cpu_before
        time.sleep(0.02)
    waited = time.monotonic() - started
    cpu_limit = CPU_SHARE_LIMIT * scaled(EXIT_SECONDS)
    stderr = tail_text(server.stderr_text(), 2000) or "(empty)"
    what = f"{situation}, shut down (accept() now fails with EINVAL)"
    if server.proc.poll() is None:
        verdict = ("it spins: the listener's hang-up is reported at every wait, and the loop"
                   " never acts on it (accept() would say what happened)"
                   if used > cpu_limit else
                   "it does not spin, but it carries on without that listener instead of"
                   " exiting 1")
        pytest.fail(f"{what}, the server was still running {waited:.1f} s later, having used"
                    f" {used:.2f} s of CPU ({used / waited:.0%} of a core): {verdict}\n"
                    f"server stderr:\n{stderr}")
    server.death_handled = True  # the exit is what this test waits for, not a death to report
    assert server.proc.returncode == 1, (
        f"{what}, the server ended with {describe_exit(server.proc.returncode)} after"
        f" {waited:.2f} s, not exit code 1\nserver stderr:\n{stderr}")
    assert any(line.startswith("error:") for line in server.stderr_text().splitlines()), (
        f"{what}, the server exited 1 but printed no 'error: ...' line saying why\n"
        f"server stderr:\n{stderr}")
    assert used <= cpu_limit, (
        f"{what}, the server exited 1 after {waited:.2f} s but used {used:.2f} s of CPU first"
        f" (limit {cpu_limit:.2f} s): it spun before giving up\nserver stderr:\n{stderr}")


def test_listener_failure_exits_1_not_spins(start_server):
    """Catches a loop that acts on the listener's POLLIN only: once the listener fails, its
    POLLHUP or POLLERR comes back at every wait and is never handled, a busy loop serving
    nobody."""
    server = start_server()
    with server.connect() as client:
        echo_roundtrip(client, b"served before", "an echo before the listener fails")
    fds = _listener_fds(server)
    assert fds, (f"no descriptor in /proc/{server.pid}/fd is a socket listening on port"
                 f" {server.port}: {server.open_fds()}")
    # Stage 5 has one listener per loop; the last is not the first loop's.
    _assert_exits_1_without_spinning(server, fds[-1], f"with the server's listener (fd {fds[-1]})")


@pytest.mark.since(5)
@pytest.mark.parametrize("which", [0, -1], ids=["first", "last"])
def test_listener_failure_with_several_threads_exits_1(start_server, which):
    """Catches a loop that ends alone when its listener fails while the others serve on: the
    server would run short of a loop and accept on fewer listeners than it has threads."""
    threads = 2
    server = start_server("--threads", threads)
    fds = _listener_fds(server)
    assert len(fds) == threads, (
        f"with --threads {threads} the server should have {threads} SO_REUSEPORT listeners on"
        f" port {server.port}, one per loop; /proc/{server.pid}/fd has {fds}")
    _assert_exits_1_without_spinning(
        server, fds[which], f"with --threads {threads}, the listener at fd {fds[which]}")
