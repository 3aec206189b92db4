"""A signal that interrupts the server's wait must not end it.

On Linux, a process stopped (SIGSTOP, Ctrl-Z, a debugger) and then continued comes out of
epoll_wait() with EINTR even though it has no signal handler at all (signal(7), "Interruption
of system calls and library functions by stop signals"); so does io_uring_enter() waiting for
completions (liburing's io_uring_wait_cqe returns -EINTR). A server that takes any failure of
its wait for a fatal one exits the first time an operator pauses it. poll() is restarted by the
kernel in that case, so stage 1 passes either way; it would fail the same way the moment it
installed a handler for any signal.
"""

import time

import pytest

from helpers import echo_roundtrip, payload, scaled

pytestmark = pytest.mark.since(1)

ROUNDS = 5


def test_stop_and_continue_does_not_kill_server(start_server):
    """Catches EINTR from the wait treated as an error: after SIGSTOP and SIGCONT, the server
    must still be running and echoing, on the connection it had and on a new one."""
    server = start_server()
    client = server.connect()
    echo_roundtrip(client, b"before the first stop", "an echo before any stop")
    for n in range(1, ROUNDS + 1):
        # Let the server settle back into its wait, where the stop finds it.
        time.sleep(scaled(0.05))
        try:
            server.pause()
        finally:
            server.resume()
        time.sleep(scaled(0.05))  # a server that takes the EINTR for a failure exits in this time
        server.assert_alive(f"after stop and continue number {n}")
        echo_roundtrip(client, payload(1000, seed=n), f"an echo after stop and continue number {n}")
    fresh = server.connect()
    echo_roundtrip(fresh, b"a new client after the stops", "a new client's echo")
