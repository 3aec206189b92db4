"""SPEC behaviour 7: fairness. Clients sending and reading at full speed must not starve
another client's round trips: each wakeup serves every ready client a bounded amount (one read
in a level-triggered loop; a budget and a ready list with edge triggering), instead of serving
one client until it runs dry.
"""

import os
import select
import socket
import threading
import time

import pytest

from helpers import MiB, echo_roundtrip, payload, scaled

pytestmark = pytest.mark.since(1)

FLOOD_SECONDS = 3.0
FLOOD_FILE_BYTES = 16 * MiB
FLOODERS = 4
# SPEC's coarse bound on one round trip; beside this flood a fair loop answers within about
# 10 ms here, one that serves until EAGAIN starves the victim for longer than this.
ROUND_TRIP_LIMIT = 0.5


class Flood:
    """A client that writes as fast as the kernel can take it and discards its echo.

    It sends with sendfile() from a file in the page cache and reads with MSG_TRUNC (for TCP,
    the kernel drops the bytes without copying them out): neither side copies through user
    space, while the server copies every byte in and out. Sharing a core with the server, the
    flood refills a socket faster than the server can empty it, so a server that serves one
    client until EAGAIN may not get back to anyone else for seconds.
    """

    def __init__(self, sock, source, seconds):
        self.sock = sock
        self.source = source  # an open file of FLOOD_FILE_BYTES
        self.until = time.monotonic() + seconds
        self.received = 0
        self.errors = []
        self.threads = [threading.Thread(target=self._write, daemon=True),
                        threading.Thread(target=self._read, daemon=True)]

    def start(self):
        self.sock.setblocking(False)  # every wait below is bounded by select()
        for thread in self.threads:
            thread.start()

    def running(self):
        return time.monotonic() < self.until and not self.errors

    def _write(self):
        offset = 0
        try:
            while self.running():
                try:
                    offset += os.sendfile(self.sock.fileno(), self.source.fileno(), offset,
                                          FLOOD_FILE_BYTES - offset)
                except BlockingIOError:
                    select.select([], [self.sock], [], 0.1)
                offset %= FLOOD_FILE_BYTES
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            self.errors.append(f"sending: {e}")

    def _read(self):
        buf = bytearray(4 * MiB)
        try:
            while True:
                try:
                    n = self.sock.recv_into(buf, len(buf), socket.MSG_TRUNC)
                except BlockingIOError:
                    if time.monotonic() > self.until + scaled(5):
                        return  # the server stopped echoing after the flood: enough
                    select.select([self.sock], [], [], 0.1)
                    continue
                if n == 0:
                    return
                self.received += n
        except OSError as e:
            if self.running():
                self.errors.append(f"receiving: {e}")

    def stop(self):
        """Ends the flood early (a failed test must not leave threads writing from a closed file)."""
        self.until = 0

    def join(self, seconds):
        for thread in self.threads:
            thread.join(timeout=scaled(seconds))


def _victim_round_trips(victim, floods):
    """Ping-pongs 64 bytes on `victim` while the flood lasts; returns each round trip's time."""
    round_trips = []
    while floods[0].running():
        i = len(round_trips)
        flooded = sum(f.received for f in floods) / MiB
        start = time.monotonic()
        echo_roundtrip(victim, payload(64, seed=800 + i),
                       f"the victim's round trip {i + 1} while {len(floods)} clients flood the"
                       f" server ({flooded:.0f} MiB of their echo so far): starved",
                       seconds=ROUND_TRIP_LIMIT)
        round_trips.append(time.monotonic() - start)
    return round_trips


def test_flooding_client_does_not_starve_others(start_server, tmp_path):
    """Catches serving one ready client until EAGAIN (no per-wakeup budget): a flood starves."""
    server = start_server()
    victim = server.connect()
    echo_roundtrip(victim, b"before the flood", "the victim's first echo")
    source_path = tmp_path / "flood.bin"
    source_path.write_bytes(bytes(range(256)) * (FLOOD_FILE_BYTES // 256))
    # The server, the flood and the victim share one core: whenever the server runs, the
    # flood has just refilled its socket, so a loop that reads until EAGAIN may never end.
    # (With a core of its own the server drains the flood's buffers in milliseconds and
    # the mistake hides on a 2-core machine.)
    everything = os.sched_getaffinity(0)
    one_core = {min(everything)}
    floods = []
    with open(source_path, "rb") as source:
        try:
            os.sched_setaffinity(server.pid, one_core)
            os.sched_setaffinity(0, one_core)
            floods = [Flood(server.connect(), source, FLOOD_SECONDS) for _ in range(FLOODERS)]
            for flood in floods:
                flood.start()
            time.sleep(0.2)  # let the flood build up
            round_trips = _victim_round_trips(victim, floods)
        finally:
            os.sched_setaffinity(0, everything)
            for flood in floods:
                flood.stop()  # already over unless the victim failed
                flood.join(10)
    server.assert_alive("after the flood")
    errors = [e for flood in floods for e in flood.errors]
    assert not errors, f"a flooding client failed: {errors[0]}"
    flooded = sum(flood.received for flood in floods)
    assert flooded >= 16 * MiB, (
        f"the flood moved only {flooded / MiB:.1f} MiB in {FLOOD_SECONDS} s: too little"
        " pressure for this test to mean anything")
    assert len(round_trips) >= 10, (
        f"the victim completed only {len(round_trips)} round trips in {FLOOD_SECONDS} s"
        " beside the flood")
