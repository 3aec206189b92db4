"""SPEC behaviour 14: the seeded chaos soak. Hundreds of clients, a few dozen at a time, each
doing something different: random chunk sizes and pauses, slow readers, half-closes, resets,
clients that vanish while the server owes them data, clients that connect and leave. Every
client that finishes normally must get exactly its bytes back; the server must live on and end
with the descriptors it started with.

The run is seeded. A failure prints the seed; replay it with SOAK_SEED=<seed>. SOAK_CLIENTS
sets how many clients run (default 300).
"""

import asyncio
import collections
import os
import random
import socket
import struct
import time

import pytest

from helpers import KiB, MiB, scaled, unsent_bytes, wait_until

pytestmark = [pytest.mark.since(1), pytest.mark.slow]

CONCURRENT = 48
STALL = 10.0  # seconds without progress before a client calls the server stuck
SLOW_RCVBUF = 64 * KiB


def _settings():
    seed_text = os.environ.get("SOAK_SEED")
    seed = int(seed_text) if seed_text else random.SystemRandom().randrange(1, 2**31)
    return seed, int(os.environ.get("SOAK_CLIENTS", "300"))


def _size(rng, largest):
    """A size from 1 byte to `largest`, spread evenly over the orders of magnitude."""
    return max(1, int(2 ** rng.uniform(0, largest.bit_length() - 1)))


class Failure(Exception):
    pass


async def _with_stall(awaitable, what):
    try:
        return await asyncio.wait_for(awaitable, scaled(STALL))
    except asyncio.TimeoutError:
        raise Failure(f"{what}: no progress for {scaled(STALL):.0f} s") from None


async def _send(writer, rng, data, pauses, half_close):
    view = memoryview(data)
    offset = 0
    while offset < len(data):
        n = _size(rng, 64 * KiB)
        writer.write(view[offset : offset + n])
        offset += n
        await _with_stall(writer.drain(), f"sending byte {offset} of {len(data)}")
        if pauses and rng.random() < 0.05:
            await asyncio.sleep(rng.uniform(0, 0.02))
    if half_close:
        writer.write_eof()  # while the server may still owe most of the echo


async def _receive(reader, rng, size, slow):
    got = bytearray()
    while len(got) < size:
        chunk = await _with_stall(reader.read(_size(rng, 64 * KiB)),
                                  f"reading the echo at byte {len(got)} of {size}")
        if not chunk:
            raise Failure(f"EOF after {len(got)} of {size} echoed bytes")
        got += chunk
        if slow:
            await asyncio.sleep(0.005)
    return bytes(got)


async def _connect(host, port, rcvbuf=None):
    """(reader, writer); a small receive buffer makes the server hold the echo in its memory."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


async def _echo_client(host, port, rng, stats):
    """A normal client: sends, reads concurrently, maybe half-closes; checks every byte. A slow
    one reads a large echo through a small window, so the server writes it in pieces."""
    half_close, slow, pauses = rng.random() < 0.7, rng.random() < 0.2, rng.random() < 0.5
    roll = rng.random()
    size = (rng.randrange(4 * MiB, 8 * MiB) if slow else rng.randrange(0, 100) if roll < 0.2
            else _size(rng, 64 * KiB) if roll < 0.6 else rng.randrange(256 * KiB, 2 * MiB))
    data = rng.randbytes(size)
    reader, writer = await _connect(host, port, SLOW_RCVBUF if slow else None)
    sender = asyncio.ensure_future(
        _send(writer, random.Random(rng.random()), data, pauses, half_close))
    try:
        got = await _receive(reader, random.Random(rng.random()), size, slow)
        await sender
        if got != data:
            offset = next(i for i, (a, b) in enumerate(zip(got, data)) if a != b)
            raise Failure(f"echo of {size} bytes differs at offset {offset}")
        stats["echoed"] += size
        if half_close:
            rest = await _with_stall(reader.read(1), "waiting for EOF after the half-close")
            if rest:
                raise Failure(f"extra bytes after the whole echo: {rest!r}")
    finally:
        sender.cancel()
        writer.close()


def _reset(writer):
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _abrupt_client(host, port, rng, kind):
    """Sends some data, then resets or vanishes with unread echo (both end in an RST)."""
    _, writer = await _connect(host, port)
    data = rng.randbytes(_size(rng, 4 * MiB if kind == "vanish" else 256 * KiB))
    try:
        writer.write(data)
        await asyncio.wait_for(writer.drain(), scaled(0.5))
    except (asyncio.TimeoutError, OSError):
        pass  # the server stopped reading (backpressure): we leave anyway
    if kind == "reset":
        _reset(writer)
    else:
        writer.transport.abort()


async def _half_close_then_vanish(host, port, rng):
    """Sends, half-closes, reads slowly until the server has taken everything (the FIN too),
    then resets: the server, in CLOSE_WAIT and still owing, gets EPIPE on its next send."""
    reader, writer = await _connect(host, port, SLOW_RCVBUF)
    writer.write(rng.randbytes(rng.randrange(6 * MiB, 8 * MiB)))
    writer.write_eof()
    sock = writer.get_extra_info("socket")
    until = time.monotonic() + scaled(5)
    while time.monotonic() < until and not writer.transport.is_closing():
        if writer.transport.get_write_buffer_size() == 0 and unsent_bytes(sock) == 0:
            break
        try:
            await asyncio.wait_for(reader.read(64 * KiB), 0.01)
        except asyncio.TimeoutError:
            pass
        await asyncio.sleep(0.005)
    if not writer.transport.is_closing():
        _reset(writer)


async def _connect_and_leave(host, port, _rng):
    _, writer = await _connect(host, port)
    writer.close()


async def _one_client(host, port, seed, number, limit, stats):
    rng = random.Random(f"{seed}:{number}")
    roll = rng.random()
    kind = ("echo" if roll < 0.6 else "reset" if roll < 0.7 else "vanish" if roll < 0.8
            else "half_close_then_vanish" if roll < 0.9 else "connect_and_leave")
    async with limit:
        try:
            if kind == "echo":
                await _echo_client(host, port, rng, stats)
            elif kind == "connect_and_leave":
                await _connect_and_leave(host, port, rng)
            elif kind == "half_close_then_vanish":
                await _half_close_then_vanish(host, port, rng)
            else:
                await _abrupt_client(host, port, rng, kind)
        except Failure as e:
            return kind, f"client {number} ({kind}): {e}"
        except OSError as e:
            if kind == "echo":
                return kind, f"client {number} ({kind}): {type(e).__name__}: {e}"
    return kind, None


async def _soak(host, port, seed, clients):
    limit = asyncio.Semaphore(CONCURRENT)
    stats = {"echoed": 0}
    results = await asyncio.gather(*(_one_client(host, port, seed, i, limit, stats)
                                     for i in range(clients)))
    return results, stats


def test_chaos_soak_every_normal_client_gets_its_bytes(start_server):
    """Catches what only shows when everything happens at once: lost or crossed bytes, leaks,
    crashes on a reset in the middle of other work."""
    seed, clients = _settings()
    print(f"chaos soak: SOAK_SEED={seed} SOAK_CLIENTS={clients}")
    replay = f"(replay with SOAK_SEED={seed} SOAK_CLIENTS={clients})"
    server = start_server()
    baseline = server.fd_count()
    started = time.monotonic()
    results, stats = asyncio.run(_soak(server.host, server.port, seed, clients))
    elapsed = time.monotonic() - started
    print(f"chaos soak: {clients} clients in {elapsed:.1f} s,"
          f" {stats['echoed'] / MiB:.0f} MiB echoed and checked")
    server.assert_alive(f"during the chaos soak {replay}")
    failures = [message for _, message in results if message]
    kinds = dict(collections.Counter(kind for kind, _ in results))
    assert not failures, (f"{len(failures)} of {clients} clients failed in {elapsed:.1f} s"
                          f" {replay}; mix {kinds}; the first:\n  " + "\n  ".join(failures[:5]))
    settled = wait_until(lambda: server.fd_count() <= baseline, 5)
    assert settled, (f"after the soak the server has {server.fd_count()} descriptors open; it"
                     f" started with {baseline} {replay}")
