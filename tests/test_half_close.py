"""SPEC behaviour 3: half-close. After the client's shutdown(SHUT_WR) the server sends
everything it still owes, then closes, and the client reads EOF.
"""

import socket

import pytest

from helpers import (SMALL_RCVBUF, MiB, assert_same_bytes, deadline_after, describe_size,
                     echo_roundtrip, expect_eof, owed_payload_size, payload, pump_reading_slowly,
                     recv_until_eof)

pytestmark = pytest.mark.since(1)


def _assert_still_serving(server, what):
    client = server.connect()
    echo_roundtrip(client, payload(4096, seed=39), f"a new client's echo {what}")
    client.close()


def test_half_close_tail_not_dropped(start_server):
    """Catches a server that closes at the client's EOF and drops the echo it still owes."""
    server = start_server()
    client = server.connect(rcvbuf=SMALL_RCVBUF)
    data = payload(owed_payload_size(8 * MiB), seed=31)
    # We read slowly, so when the server reads our FIN it still owes us megabytes.
    got, why = pump_reading_slowly(client, data, half_close=True, until_eof=True, seconds=60)
    assert_same_bytes(data, got, f"echo of {describe_size(len(data))} then shutdown(SHUT_WR),"
                      " read slowly", note=why or "EOF")
    assert why is None, f"all {len(got)} bytes arrived, but then no EOF: {why}"
    _assert_still_serving(server, "after a half-closed client")


def test_eof_after_half_close_with_nothing_owed(start_server):
    """Catches a server that never closes a half-closed connection (the client waits forever)."""
    server = start_server()
    client = server.connect()
    echo_roundtrip(client, b"all of this comes back first", "echo before the half-close")
    client.shutdown(socket.SHUT_WR)
    expect_eof(client, 5, "after shutdown(SHUT_WR) with nothing owed")
    _assert_still_serving(server, "after a half-close with nothing owed")


def test_half_close_right_after_connect_gives_eof(start_server):
    """Catches a server that mishandles EOF as the very first event on a connection."""
    server = start_server()
    client = server.connect()
    client.shutdown(socket.SHUT_WR)
    expect_eof(client, 5, "after connect then shutdown(SHUT_WR) at once")
    _assert_still_serving(server, "after an immediate half-close")


def test_data_arriving_with_fin_is_echoed(start_server):
    """Catches a server that closes on POLLHUP/EPOLLRDHUP before reading what came with the FIN."""
    server = start_server()
    for i in range(10):
        client = server.connect()
        message = payload(100 + i, seed=3300 + i)
        # Corked, the message waits in our kernel and shutdown() sends it with the FIN in one
        # segment: the server's first wakeup shows data and end-of-stream together.
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        client.sendall(message)
        client.shutdown(socket.SHUT_WR)
        got, why = recv_until_eof(client, deadline_after(5))
        assert_same_bytes(message, got, f"try {i + 1} of 10: message sent in one segment with"
                          f" the FIN", note=why or "EOF")
        assert why is None, f"try {i + 1} of 10: the echo arrived but then no EOF: {why}"
        client.close()
    _assert_still_serving(server, "after 10 half-closed clients")
