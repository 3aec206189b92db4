"""SPEC behaviour 5: clients that reset mid-stream or vanish while the server still owes them
data. The server must live on (a write to a dead peer must not raise SIGPIPE, which kills a
process by default) and keep serving the next client.
"""

import threading
import time

import pytest

from helpers import (SMALL_RCVBUF, KiB, MiB, close_with_reset, echo_concurrently, echo_roundtrip,
                     owed_payload_size, payload, pump_reading_slowly, scaled)

pytestmark = pytest.mark.since(1)

# Enough rounds that a server writing without MSG_NOSIGNAL (or SIG_IGN for SIGPIPE) dies.
ROUNDS = 8


def _owe_client(server, seed, half_close):
    """A client the server owes part of its echo to, in the server's own memory.

    With half_close the server has our FIN too: its socket is in CLOSE_WAIT, where a reset
    makes the next send fail with EPIPE, the error that raises SIGPIPE.
    """
    client = server.connect(rcvbuf=SMALL_RCVBUF)
    data = payload(owed_payload_size(2 * MiB), seed)
    _, why = pump_reading_slowly(client, data, half_close=half_close, until_eof=False)
    if why is not None:
        server.assert_alive("while making the server owe a client data")
        raise AssertionError(f"could not get the server to owe us data: {why}")
    return client


def _assert_serves_next_client(server, context):
    time.sleep(scaled(0.05))  # give the server a moment to reach the dead connection
    server.assert_alive(context)
    client = server.connect()
    echo_roundtrip(client, payload(64 * KiB, seed=59), f"{context}: a new client's echo")
    client.close()
    server.assert_alive(context)


def test_reset_mid_stream_does_not_kill_server(start_server):
    """Catches a reset taken as fatal (exit on ECONNRESET) or a crash when a client resets with
    echo owed. (A reset while the connection is open makes send() fail with ECONNRESET, not
    EPIPE: SIGPIPE deaths are the next test's.)"""
    server = start_server()
    for i in range(ROUNDS):
        close_with_reset(_owe_client(server, seed=50 + i, half_close=False))
        _assert_serves_next_client(server, f"after reset {i + 1} of {ROUNDS}")


def test_half_closed_client_vanishing_does_not_kill_server(start_server):
    """Catches SIGPIPE death when a half-closed client goes away while its echo is still owed."""
    server = start_server()
    for i in range(ROUNDS):
        client = _owe_client(server, seed=60 + i, half_close=True)
        client.close()  # unread echo in our receive buffer: the kernel sends RST, not FIN
        _assert_serves_next_client(server, f"after half-closed client {i + 1} of {ROUNDS} vanished")


def test_many_clients_vanishing_at_once_do_not_kill_server(start_server):
    """Catches SIGPIPE death or a crash when many connections owed data disappear in one batch."""
    server = start_server()
    for round_no in range(2):
        clients = [_owe_client(server, seed=70 + 10 * round_no + i, half_close=i % 2 == 1)
                   for i in range(8)]
        for client in clients:
            client.close()  # with unread data: RST, as when a client process dies
        _assert_serves_next_client(server, f"after 8 clients vanished at once ({round_no + 1}/2)")


def test_reset_does_not_disturb_other_clients(start_server):
    """Catches error handling that closes or corrupts the wrong connection (a shifted index)."""
    server = start_server()
    steady = server.connect()
    failures = []

    def steady_echo():
        try:
            echo_concurrently(steady, payload(8 * MiB, seed=80), "the steady client's 8 MiB echo"
                              " while other clients reset")
        except Exception as e:  # reported by the main thread below
            failures.append(f"{type(e).__name__}: {e}")

    thread = threading.Thread(target=steady_echo, daemon=True)
    thread.start()
    for i in range(6):
        client = _owe_client(server, seed=81 + i, half_close=i % 3 == 2)
        if i % 2:
            close_with_reset(client)
        else:
            client.close()
    thread.join(timeout=scaled(90))
    assert not thread.is_alive(), "the steady client's echo did not finish"
    assert not failures, failures[0]
    server.assert_alive("after 6 resets beside a steady client")
