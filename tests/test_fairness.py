"""SPEC behaviour 7: fairness. One client sending and reading at full speed must not starve
another client's round trips: each wakeup serves every ready client a bounded amount (one read
in a level-triggered loop; a budget and a ready list with edge triggering), instead of serving
one client until it runs dry.
"""

import socket
import threading
import time

import pytest

from helpers import MiB, echo_roundtrip, payload, scaled

pytestmark = pytest.mark.since(1)

FLOOD_SECONDS = 3.0
# SPEC's coarse bound on one round trip; a fair loop answers in well under a millisecond.
ROUND_TRIP_LIMIT = 0.5


class Flood:
    """A client that writes as fast as it can and discards its echo as fast as it arrives.

    Discarding with MSG_TRUNC (TCP: the kernel drops the bytes without copying them out) keeps
    this client's reading cheaper than the server's echoing, so a server that serves one
    client until EAGAIN may never get back to anyone else.
    """

    def __init__(self, sock, seconds):
        self.sock = sock
        self.until = time.monotonic() + seconds
        self.sent = 0
        self.received = 0
        self.errors = []
        self.threads = [threading.Thread(target=self._write, daemon=True),
                        threading.Thread(target=self._read, daemon=True)]

    def start(self):
        for thread in self.threads:
            thread.start()

    def running(self):
        return time.monotonic() < self.until and not self.errors

    def _write(self):
        chunk = bytes(range(256)) * 4096  # 1 MiB
        try:
            while self.running():
                self.sent += self.sock.send(chunk)
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            self.errors.append(f"sending: {e}")

    def _read(self):
        buf = bytearray(4 * MiB)
        try:
            while True:
                n = self.sock.recv_into(buf, len(buf), socket.MSG_TRUNC)
                if n == 0:
                    return
                self.received += n
        except OSError as e:
            if self.running():
                self.errors.append(f"receiving: {e}")

    def join(self, seconds):
        for thread in self.threads:
            thread.join(timeout=scaled(seconds))


def test_flooding_client_does_not_starve_others(start_server):
    """Catches serving one ready client until EAGAIN (no per-wakeup budget): a flood starves."""
    server = start_server()
    victim = server.connect()
    echo_roundtrip(victim, b"before the flood", "the victim's first echo")
    flood = Flood(server.connect(), FLOOD_SECONDS)
    flood.start()
    time.sleep(scaled(0.2))  # let the flood build up
    round_trips = []
    i = 0
    while flood.running():
        data = payload(64, seed=800 + i)
        start = time.monotonic()
        echo_roundtrip(victim, data, f"the victim's round trip {i + 1} during a full-speed flood"
                       f" from another client ({flood.received / MiB:.0f} MiB echoed so far)",
                       seconds=ROUND_TRIP_LIMIT)
        round_trips.append(time.monotonic() - start)
        i += 1
    flood.join(10)
    server.assert_alive("after the flood")
    assert not flood.errors, f"the flooding client failed: {flood.errors[0]}"
    assert flood.received >= 16 * MiB, (
        f"the flood moved only {flood.received / MiB:.1f} MiB in {FLOOD_SECONDS} s: too little"
        " pressure for this test to mean anything")
    assert len(round_trips) >= 10, (
        f"the victim completed only {len(round_trips)} round trips in {FLOOD_SECONDS} s"
        " beside the flood")
    worst = max(round_trips)
    assert worst < scaled(ROUND_TRIP_LIMIT), f"worst round trip {worst * 1000:.0f} ms"
