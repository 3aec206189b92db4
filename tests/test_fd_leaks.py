"""SPEC behaviour 8: no descriptor leaks. After many connections come and go, in every way a
connection can end, the server's /proc/PID/fd is back to its baseline.
"""

import socket

import pytest

from helpers import (SMALL_RCVBUF, MiB, close_with_reset, deadline_after, echo_roundtrip,
                     owed_payload_size, payload, pump_reading_slowly, recv_until_eof, scaled,
                     wait_until)

pytestmark = pytest.mark.since(1)


# Each way a client can end a connection; each takes a connected socket and closes it.

def _echo_then_close(sock, i):
    echo_roundtrip(sock, payload(1000, seed=i), f"connection {i}: echo before close")
    sock.close()


def _half_close(sock, i):
    sock.sendall(payload(1000, seed=i))
    sock.shutdown(socket.SHUT_WR)
    _, why = recv_until_eof(sock, deadline_after(5))
    assert why is None, f"connection {i}: no EOF after shutdown(SHUT_WR): {why}"
    sock.close()


def _reset(sock, i):
    sock.sendall(payload(1000, seed=i))
    close_with_reset(sock)


def _owe(sock, i, half_close):
    data = payload(owed_payload_size(1 * MiB), seed=i)
    _, why = pump_reading_slowly(sock, data, half_close=half_close, until_eof=False)
    assert why is None, f"connection {i}: could not get the server to owe us data: {why}"


def _close_while_owed(sock, i):
    _owe(sock, i, half_close=False)
    sock.close()  # unread echo: RST while the server holds owed bytes


def _half_close_then_vanish(sock, i):
    _owe(sock, i, half_close=True)
    sock.close()  # RST in CLOSE_WAIT: the server's next send fails with EPIPE


def _close_at_once(sock, i):
    sock.close()


# name: (how the connection ends, how many connections the per-kind test makes). The kinds
# that leave the server owing megabytes cost more time each, so fewer of them.
KINDS = {
    "echo_then_close": (_echo_then_close, 100),
    "half_close": (_half_close, 100),
    "reset": (_reset, 100),
    "close_while_owed": (_close_while_owed, 15),
    "half_close_then_vanish": (_half_close_then_vanish, 15),
    "connect_and_close_at_once": (_close_at_once, 100),
}


def _baseline(server):
    """The server's descriptors once one connection has come and gone and the count settled."""
    sock = server.connect()
    _echo_then_close(sock, 0)
    samples = []

    def settled():
        samples.append(server.open_fds())
        return len(samples) >= 10 and all(s.keys() == samples[-1].keys() for s in samples[-10:])

    wait_until(settled, 3)  # ten equal samples in a row (about 0.2 s), at most 3 s
    return samples[-1]


def _assert_back_to_baseline(server, baseline, what):
    server.assert_alive(what)
    if wait_until(lambda: server.fd_count() <= len(baseline), 5):
        return
    server.assert_alive(what)
    now = server.open_fds()
    extra = sorted(set(now) - set(baseline))
    shown = ", ".join(f"{fd} -> {now[fd]}" for fd in extra[:10])
    more = f" (and {len(extra) - 10} more)" if len(extra) > 10 else ""
    raise AssertionError(
        f"{what}: the server still has {len(now)} descriptors open {scaled(5):.1f} s later;"
        f" its baseline was {len(baseline)}.\n  descriptors beyond the baseline: {shown}{more}")


@pytest.mark.parametrize("kind", list(KINDS))
def test_closed_connections_do_not_leak_fds(start_server, kind):
    """Catches a descriptor not closed on one way a connection can end (EOF, RST, EPIPE, ...)."""
    server = start_server()
    baseline = _baseline(server)
    end, count = KINDS[kind]
    for i in range(count):
        end(server.connect(rcvbuf=SMALL_RCVBUF), 1 + i)
    _assert_back_to_baseline(server, baseline, f"after {count} connections ended by {kind}")


def test_mixed_concurrent_connections_do_not_leak_fds(start_server):
    """Catches leaks that show only when connections of every kind overlap in the same loop pass."""
    server = start_server()
    baseline = _baseline(server)
    ends = [end for end, _ in KINDS.values()]
    total = 0
    for batch in range(4):
        socks = [server.connect(rcvbuf=SMALL_RCVBUF) for _ in range(30)]  # all open before any ends
        for i, sock in enumerate(socks):
            ends[(i + batch) % len(ends)](sock, 1000 + total)
            total += 1
    _assert_back_to_baseline(server, baseline, f"after {total} overlapping connections of"
                             f" {len(ends)} kinds")
