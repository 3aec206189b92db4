"""SPEC behaviour 2: payloads far larger than the socket buffers, written while reading.

The server's reads and writes come back short and its writes hit EAGAIN; every byte must still
come back, in order, without the tail of a short write being dropped.
"""

import threading

import pytest

from helpers import DEFAULT_STALL, MiB, echo_concurrently, payload, scaled

pytestmark = pytest.mark.since(1)


def test_partial_write_not_dropped(start_server):
    """Catches a server that ignores short writes/EAGAIN and drops the unsent tail of its echo."""
    server = start_server()
    client = server.connect()
    data = payload(32 * MiB, seed=21)
    echo_concurrently(client, data, "echo of 32 MiB written while reading")
    server.assert_alive("after the 32 MiB echo")


def test_several_large_echoes_at_once_kept_apart(start_server):
    """Catches per-connection output mixed up or lost when several clients are mid-write at once."""
    server = start_server()
    clients = [server.connect() for _ in range(4)]
    failures = []

    def run(i, client):
        try:
            data = payload(8 * MiB, seed=22 + i)
            echo_concurrently(client, data, f"client {i + 1} of 4: echo of 8 MiB")
        except Exception as e:  # reported by the main thread below
            failures.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=run, args=(i, client), daemon=True)
               for i, client in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=scaled(90))
    assert not any(t.is_alive() for t in threads), (
        f"a client thread still runs after {scaled(90):.0f} s"
        f" (each read gives up after {scaled(DEFAULT_STALL):.0f} s without progress)")
    assert not failures, "\n\n".join(failures)
