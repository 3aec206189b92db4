"""SPEC behaviour 4: more than 1024 concurrent clients (beyond select's FD_SETSIZE), and
10,000 at once (C10K). Every client stays connected while all the others are, and each gets
exactly its own bytes back.
"""

import selectors
import socket
import time

import pytest

from helpers import deadline_after, payload, raise_nofile_limit, scaled

pytestmark = pytest.mark.since(1)

# Descriptors a server needs besides its clients: stdio, the listener, a spare, some slack.
SERVER_OVERHEAD_FDS = 64


def _message(client_no, round_no):
    """A short message that names its client and round, so a misdelivered echo shows whose it is."""
    return b"%d:%d:" % (client_no, round_no) + payload(24, seed=client_no * 7 + round_no)


def _send_round(clients, round_no):
    for i, sock in enumerate(clients):
        sock.sendall(_message(i, round_no))


def _collect_round(clients, round_no, seconds):
    """Reads every client's echo of this round; fails naming the first clients that fell short."""
    expected = {sock.fileno(): (i, _message(i, round_no)) for i, sock in enumerate(clients)}
    got = {fd: b"" for fd in expected}
    problems = {}
    with selectors.DefaultSelector() as selector:
        for sock in clients:
            selector.register(sock, selectors.EVENT_READ)
        deadline = deadline_after(seconds)
        pending = len(clients)
        while pending and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
                fd = key.fd
                i, want = expected[fd]
                try:
                    chunk = key.fileobj.recv(len(want) - len(got[fd]), socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                except OSError as e:
                    chunk, problems[i] = b"", f"recv failed: {e}"
                if not chunk:
                    problems.setdefault(i, "EOF: the server closed the connection")
                got[fd] += chunk
                if not chunk or len(got[fd]) == len(want):
                    selector.unregister(key.fileobj)
                    pending -= 1
    for fd, (i, want) in expected.items():
        if got[fd] != want and i not in problems:
            problems[i] = (f"after {scaled(seconds):.0f} s: {len(got[fd])} of {len(want)} bytes"
                           if want.startswith(got[fd]) else f"wrong bytes {got[fd][:40]!r}")
    if problems:
        first = sorted(problems)[:5]
        details = "\n".join(f"  client {i}: {problems[i]}" for i in first)
        raise AssertionError(
            f"round {round_no}: {len(problems)} of {len(clients)} concurrent clients did not get"
            f" their echo (each sent {len(_message(0, round_no))}-odd bytes); the first:\n"
            + details)


def _serve_all_at_once(start_server, count, seconds):
    raise_nofile_limit(count + SERVER_OVERHEAD_FDS)
    server = start_server(nofile=count + SERVER_OVERHEAD_FDS)
    clients = []
    try:
        for i in range(count):
            sock = socket.create_connection((server.host, server.port), timeout=scaled(10))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            clients.append(sock)
            sock.sendall(_message(i, 0))  # round 0: while the rest are still connecting
        _collect_round(clients, 0, seconds)
        server.assert_alive(f"with {count} clients connected")
        _send_round(clients, 1)  # round 1: all of them open at the same time
        _collect_round(clients, 1, seconds)
        server.assert_alive(f"with {count} clients connected")
    finally:
        for sock in clients:
            sock.close()


def test_more_than_1024_clients_all_served(start_server):
    """Catches select()/FD_SETSIZE limits and fixed-size connection tables of 1024."""
    _serve_all_at_once(start_server, 1500, seconds=30)


@pytest.mark.slow
def test_c10k_clients_all_served(start_server):
    """Catches anything that breaks with 10,000 connections open at once (C10K)."""
    _serve_all_at_once(start_server, 10_000, seconds=60)
