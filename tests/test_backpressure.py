"""SPEC behaviour 6: a client that sends without reading. The server must stop reading from a
client whose unsent echo passes a cap (backpressure), so its memory stays bounded, and it must
keep serving everyone else promptly meanwhile. Once the client reads, nothing is lost.
"""

import pytest

from helpers import (SMALL_RCVBUF, MiB, PatternStream, drain_and_check, echo_roundtrip,
                     flood_until_stalled, payload, rss_bytes)

pytestmark = pytest.mark.since(1)

# More than any server should hold for one client: without backpressure it all ends up in the
# server's memory (the kernel buffers only a few MiB of it).
FLOOD_BYTES = 192 * MiB
# SPEC's coarse bound on memory growth.
RSS_GROWTH_LIMIT = 64 * MiB


def test_non_reading_client_memory_stays_bounded(start_server):
    """Catches reading without limit from a client that never reads its echo (no backpressure)."""
    server = start_server()
    other = server.connect()
    echo_roundtrip(other, b"warm-up", "the other client's first echo")
    before = rss_bytes(server.pid)
    flooder = server.connect(rcvbuf=SMALL_RCVBUF)
    stream = PatternStream(seed=601)
    sent = flood_until_stalled(flooder, stream, FLOOD_BYTES)
    server.assert_alive(f"after a client sent {sent} bytes without reading")
    growth = rss_bytes(server.pid) - before
    assert growth < RSS_GROWTH_LIMIT, (
        f"a client sent {sent / MiB:.1f} MiB without reading its echo and the server's resident"
        f" memory grew by {growth / MiB:.1f} MiB (limit {RSS_GROWTH_LIMIT // MiB} MiB): it keeps"
        f" reading from a client it cannot write to; stop reading once a cap of bytes is owed")
    assert sent < FLOOD_BYTES, (
        f"the server took all {FLOOD_BYTES // MiB} MiB from a client that read nothing, so it"
        " holds them somewhere: it never stopped reading from that client")
    drain_and_check(flooder, stream, sent, "the flooding client's echo, read at last")


def test_other_clients_served_while_one_does_not_read(start_server):
    """Catches a server stuck on a client it cannot write to (retrying send in a loop, blocking)."""
    server = start_server()
    other = server.connect()
    flooder = server.connect(rcvbuf=SMALL_RCVBUF)
    stream = PatternStream(seed=602)
    sent = flood_until_stalled(flooder, stream, FLOOD_BYTES)
    for i in range(20):
        echo_roundtrip(other, payload(100, seed=610 + i),
                       f"round trip {i + 1} of another client while a client that does not read"
                       f" has sent {sent / MiB:.1f} MiB", seconds=0.5)
    drain_and_check(flooder, stream, sent, "the flooding client's echo, read at last")
