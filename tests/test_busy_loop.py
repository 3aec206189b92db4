"""SPEC behaviour 11: no busy loops. Idle connections, and a connection whose echo is pending
but cannot be written (its client does not read), must cost the server (almost) no CPU: the
loop sleeps in poll/epoll_wait (io_uring_enter in stage 6) until something can actually be
done.
"""

import pytest

from helpers import (SMALL_RCVBUF, MiB, PatternStream, cpu_use_over, describe_cpu_use,
                     drain_and_check, echo_roundtrip, flood_until_stalled, payload)

pytestmark = pytest.mark.since(1)

# SPEC's coarse bound: a sleeping loop uses ~0%; a spinning one ~100% of a core.
CPU_SHARE_LIMIT = 0.10
WINDOW_SECONDS = 1.5


def _assert_sleeps(server, situation, causes):
    __tracebackhide__ = True
    used, elapsed = cpu_use_over(server.pid, WINDOW_SECONDS)
    server.assert_alive(situation)
    assert used / elapsed < CPU_SHARE_LIMIT, (
        f"{situation}, the server does not sleep:"
        f" {describe_cpu_use(used, elapsed, CPU_SHARE_LIMIT)}. Likely causes: {causes}."
        f" See docs/pitfalls.md")


def test_idle_connections_do_not_spin(start_server):
    """Catches POLLOUT/EPOLLOUT left armed on idle sockets, zero timeouts, busy polling."""
    server = start_server()
    clients = [server.connect() for _ in range(100)]
    for i, client in enumerate(clients):
        echo_roundtrip(client, payload(10, seed=700 + i), f"client {i}'s first echo")
    _assert_sleeps(server, "with 100 connected clients all idle",
                   "POLLOUT/EPOLLOUT left armed on clients owed nothing; a zero timeout on the"
                   " wait; an event bit (POLLHUP, POLLERR, or EOF taken for 'no data yet') never"
                   " handled, so every wait returns at once; with io_uring, a request that"
                   " completes at once (an error, a zero timeout) re-submitted in a loop, or an"
                   " SQPOLL thread polling the rings")
    echo_roundtrip(clients[0], b"still here", "an echo after the idle period")


def test_unwritable_pending_output_does_not_spin(start_server):
    """Catches retrying send() on EAGAIN in a loop, or waking for a socket that is not writable."""
    server = start_server()
    flooder = server.connect(rcvbuf=SMALL_RCVBUF)
    stream = PatternStream(seed=701)
    sent = flood_until_stalled(flooder, stream, 64 * MiB)
    _assert_sleeps(server,
                   f"with {sent / MiB:.1f} MiB of echo owed to a client that does not read",
                   "send() retried on EAGAIN in a loop instead of waiting for POLLOUT/EPOLLOUT;"
                   " POLLIN/EPOLLIN left armed (level-triggered) while reading is paused for"
                   " backpressure, so the unread bytes are reported at every wait; a zero"
                   " timeout on the wait; with io_uring, a send flagged MSG_DONTWAIT re-submitted"
                   " each time it completes with EAGAIN (without the flag the ring waits for"
                   " room itself)")
    drain_and_check(flooder, stream, sent, "the echo, read at last")
