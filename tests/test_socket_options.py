"""Socket options the server must set on what it accepts, read from the server's own socket.

pidfd_getfd(2) (Linux 5.6) gives this process a duplicate of one of the server's descriptors,
so the test reads the option the server set, not a guess from timing.
"""

import os
import socket

import pytest

from helpers import BorrowedDescriptors, echo_roundtrip

pytestmark = pytest.mark.since(1)


def _server_side_of(pid, client):
    """A duplicate of the server's socket whose peer is `client`, or None."""
    wanted = client.getsockname()
    with BorrowedDescriptors(pid) as borrowed:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except FileNotFoundError:
                continue  # closed since listdir
            sock = borrowed.socket(int(name))
            try:
                if sock.type == socket.SOCK_STREAM and sock.getpeername() == wanted:
                    return sock
            except OSError:
                pass  # the listener, or not connected
            sock.close()
    return None


def test_accepted_sockets_set_tcp_nodelay(start_server):
    """Catches Nagle's algorithm left on: a small echo would wait for the ACK of the previous one,
    up to a delayed ACK (40 ms or more on a real network; loopback hides it)."""
    server = start_server()
    client = server.connect()
    echo_roundtrip(client, b"accepted by now", "an echo, so that the server holds the socket")
    accepted = _server_side_of(server.pid, client)
    assert accepted is not None, (
        f"no socket among the server's descriptors is connected to {client.getsockname()}")
    with accepted:
        nodelay = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert nodelay != 0, "the server's accepted socket has TCP_NODELAY off: Nagle is on"
