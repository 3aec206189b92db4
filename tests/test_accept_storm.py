"""SPEC behaviour 9: a burst of hundreds of simultaneous connects. With a large listen backlog
the kernel completes every handshake and queues the connection even while the server is busy
elsewhere; with a tiny one (the classic `listen(fd, 3)`) it drops the SYNs and the clients
stall for a second or more before retrying. Then every queued client must be served.
"""

import errno
import select
import signal
import socket
import time

import pytest

from helpers import (assert_same_bytes, deadline_after, echo_roundtrip, payload,
                     raise_nofile_limit, read_up_to, scaled)

pytestmark = pytest.mark.since(1)

BURST = 500


def _somaxconn():
    with open("/proc/sys/net/core/somaxconn") as f:
        return int(f.read())


def _start_connect(address):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    err = sock.connect_ex(address)
    if err not in (0, errno.EINPROGRESS):
        sock.close()
        raise AssertionError(f"connect to {address} failed at once: {errno.errorcode[err]}")
    return sock


def _connected(sockets, seconds):
    """Waits up to `seconds` (scaled) for the handshakes; returns {index: error or None}."""
    index_of = {sock.fileno(): i for i, sock in enumerate(sockets)}
    poller = select.poll()
    for sock in sockets:
        poller.register(sock, select.POLLOUT)  # writable once the handshake is over
    result = {}
    deadline = deadline_after(seconds)
    while len(result) < len(sockets) and time.monotonic() < deadline:
        for fd, _ in poller.poll(50):
            poller.unregister(fd)
            i = index_of[fd]
            err = sockets[i].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            result[i] = errno.errorcode.get(err, str(err)) if err else None
    return result


def test_connect_burst_while_server_busy_all_queued_and_served(start_server):
    """Catches a tiny listen backlog (SYNs dropped, clients stall) and a blocking accept loop."""
    burst = min(BURST, _somaxconn())
    raise_nofile_limit(burst + 64)
    server = start_server(nofile=burst + 64)
    echo_roundtrip(server.connect(), b"warm-up", "an echo before the burst")
    clients = []
    # A stopped server stands for one busy with other work: only the kernel's accept queue,
    # sized by the listen backlog, can take the burst now.
    server.proc.send_signal(signal.SIGSTOP)
    try:
        clients = [_start_connect((server.host, server.port)) for _ in range(burst)]
        done = _connected(clients, seconds=2)
    finally:
        server.proc.send_signal(signal.SIGCONT)
    try:
        stalled = burst - len(done)
        failed = {i: e for i, e in done.items() if e is not None}
        assert not stalled and not failed, (
            f"{burst} clients connected at once while the server was busy: {stalled} handshakes"
            f" did not complete within {scaled(2):.0f} s and {len(failed)} failed"
            f" ({sorted(set(failed.values())) or 'none'}). The kernel queues a burst only up to"
            f" the listen backlog: listen(fd, SOMAXCONN), not a small number")
        for i, sock in enumerate(clients):
            sock.setblocking(True)
            sock.sendall(payload(32, seed=900 + i))
        deadline = deadline_after(10)
        for i, sock in enumerate(clients):
            data = payload(32, seed=900 + i)
            got, why = read_up_to(sock, len(data), deadline)
            assert_same_bytes(data, got, f"client {i} of the burst of {burst}", note=why or "")
        server.assert_alive(f"after a burst of {burst} connects")
    finally:
        for sock in clients:
            sock.close()
