"""SPEC behaviour 11: no busy loops. Idle connections, and a connection whose echo is pending
but cannot be written (its client does not read), must cost the server (almost) no CPU: the
loop sleeps in poll/epoll_wait until something can actually be done.
"""

import pytest

from helpers import (SMALL_RCVBUF, MiB, PatternStream, cpu_share_over, drain_and_check,
                     echo_roundtrip, flood_until_stalled, payload)

pytestmark = pytest.mark.since(1)

# SPEC's coarse bound: a sleeping loop uses ~0%; a spinning one ~100% of a core.
CPU_SHARE_LIMIT = 0.10
WINDOW_SECONDS = 1.5


def _assert_sleeps(server, situation):
    __tracebackhide__ = True
    share = cpu_share_over(server.pid, WINDOW_SECONDS)
    server.assert_alive(situation)
    assert share < CPU_SHARE_LIMIT, (
        f"{situation}, the server used {share:.0%} of a core for {WINDOW_SECONDS} s"
        f" (limit {CPU_SHARE_LIMIT:.0%}): it is spinning instead of waiting for readiness")


def test_idle_connections_do_not_spin(start_server):
    """Catches POLLOUT/EPOLLOUT left armed on idle sockets, zero timeouts, busy polling."""
    server = start_server()
    clients = [server.connect() for _ in range(100)]
    for i, client in enumerate(clients):
        echo_roundtrip(client, payload(10, seed=700 + i), f"client {i}'s first echo")
    _assert_sleeps(server, "with 100 connected clients all idle")
    echo_roundtrip(clients[0], b"still here", "an echo after the idle period")


def test_unwritable_pending_output_does_not_spin(start_server):
    """Catches retrying send() on EAGAIN in a loop, or waking for a socket that is not writable."""
    server = start_server()
    flooder = server.connect(rcvbuf=SMALL_RCVBUF)
    stream = PatternStream(seed=701)
    sent = flood_until_stalled(flooder, stream, 64 * MiB)
    _assert_sleeps(server, f"with {sent / MiB:.1f} MiB of echo owed to a client that does not read")
    drain_and_check(flooder, stream, sent, "the echo, read at last")
