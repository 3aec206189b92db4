"""SPEC behaviour 1: echo of 1 byte, of many small writes, of all 256 byte values, of NUL bytes.

Every byte a client sends comes back to that client, in order, binary safe.
"""

import random

import pytest

from helpers import KiB, assert_same_bytes, deadline_after, echo_roundtrip, payload, read_up_to

pytestmark = pytest.mark.since(1)


def test_single_byte_echoed_without_waiting_for_more(start_server):
    """Catches a server that holds input back until it has a line or a full buffer."""
    server = start_server()
    client = server.connect()
    echo_roundtrip(client, b"x", "echo of a single byte", seconds=5)


def test_ping_pong_small_messages_each_answered(start_server):
    """Catches a server that answers only the first message on a connection, or batches replies."""
    server = start_server()
    client = server.connect()
    rng = random.Random(11)
    for i in range(200):
        message = payload(rng.randint(1, 32), seed=1000 + i)
        echo_roundtrip(client, message, f"round trip {i + 1} of 200 ({len(message)} bytes)")


def test_many_small_writes_all_echoed_in_order(start_server):
    """Catches input lost or reordered when it arrives while earlier echo is still pending, and
    a client closed when recv says EAGAIN ("nothing more for now", not the end)."""
    server = start_server()
    client = server.connect()
    rng = random.Random(12)
    pieces = [payload(rng.randint(1, 64), seed=2000 + i) for i in range(500)]
    sent = b"".join(pieces)
    # In two halves, the first one's echo read in full before the second goes: by then the
    # server has read everything there was and met EAGAIN, however fast or loaded the machine
    # (sent in one go, a server scheduled late could read it all at once and close only after).
    got, why = b"", None
    for half in (pieces[:250], pieces[250:]):
        try:
            for piece in half:  # TCP_NODELAY on the client: each piece leaves as its own segment
                client.sendall(piece)
        except OSError as e:
            why = f"sending the second half failed ({e}): the server closed the connection"
            break
        more, why = read_up_to(client, sum(map(len, half)), deadline_after(10))
        got += more
        if why is not None:
            break
    assert_same_bytes(sent, got, f"echo of 500 small writes ({len(sent)} bytes in all)",
                      note=why or "")


def test_echo_all_byte_values_binary_safe(start_server):
    """Catches text handling: 0xFF taken as EOF (signed char), CR/LF rewriting, 7-bit masking."""
    server = start_server()
    client = server.connect()
    every_value = bytes(range(256)) + bytes(reversed(range(256)))
    echo_roundtrip(client, every_value * 4, "echo of all 256 byte values, 4 times over")


def test_nul_in_middle_not_treated_as_end_of_string(start_server):
    """Catches strlen()/C-string handling that truncates a message at an embedded NUL byte."""
    server = start_server()
    client = server.connect()
    message = b"before the NUL\x00after the NUL\x00\x00and after two more"
    echo_roundtrip(client, message, "echo of a message with NUL bytes in the middle")


def test_leading_nul_not_treated_as_empty_message(start_server):
    """Catches C-string handling that sees a message starting with NUL as empty and drops it."""
    server = start_server()
    client = server.connect()
    echo_roundtrip(client, b"\x00" + b"text behind a leading NUL", "echo of a NUL-led message")
    echo_roundtrip(client, bytes(1 * KiB), "echo of 1 KiB of NUL bytes")


def test_each_client_gets_only_its_own_bytes(start_server):
    """Catches a buffer shared between connections, or echo written to the wrong descriptor."""
    server = start_server()
    clients = [server.connect() for _ in range(8)]
    sent = [bytearray() for _ in clients]
    for round_no in range(40):  # interleave the clients' writes, reading nothing yet
        for i, client in enumerate(clients):
            message = payload(100, seed=3000 + 100 * i + round_no)
            client.sendall(message)
            sent[i] += message
    deadline = deadline_after(10)
    for i, client in enumerate(clients):
        got, why = read_up_to(client, len(sent[i]), deadline)
        assert_same_bytes(bytes(sent[i]), got, f"client {i + 1} of 8, interleaved with the others",
                          note=why or "")
