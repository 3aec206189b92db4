"""SPEC behaviour 10: descriptor exhaustion. When accept fails with EMFILE the pending
connection stays in the queue and the listener stays readable, so a loop that just retries
spins at 100% CPU. The server must not crash, must not spin, and must serve again as soon as
descriptors free up.
"""


import pytest

from helpers import (cpu_use_over, deadline_after, describe_cpu_use, echo_roundtrip, payload,
                     read_up_to, scaled, wait_until)

pytestmark = pytest.mark.since(1)

# Room for stdio, the listener, a spare descriptor and a couple of dozen clients.
NOFILE = 32
CLIENTS = 3 * NOFILE
CPU_SHARE_LIMIT = 0.10


def _outcome(sock, data, deadline):
    """'echoed', 'closed' (shed by the server), or 'waiting' (still queued)."""
    got, why = read_up_to(sock, len(data), deadline, stall=0.3)
    if why is None:
        return "echoed" if got == data else f"wrong bytes {got[:20]!r}"
    return "closed" if why.startswith(("EOF", "recv failed")) else "waiting"


def _exhaust_and_recover(server, situation):
    baseline = server.fd_count()
    clients = [server.connect() for _ in range(CLIENTS)]  # the kernel queues what is not accepted
    for i, sock in enumerate(clients):
        sock.sendall(payload(16, seed=1000 + i))
    used, elapsed = cpu_use_over(server.pid, 1.5)
    server.assert_alive(f"{situation}, with {CLIENTS} clients")
    assert used / elapsed < CPU_SHARE_LIMIT, (
        f"{situation}, out of descriptors with {CLIENTS} clients connected, the server does not"
        f" sleep: {describe_cpu_use(used, elapsed, CPU_SHARE_LIMIT)}. Likely causes: accept()"
        f" fails with EMFILE and is retried at once, with no spare descriptor to shed the"
        f" connection and no pause; POLLOUT/EPOLLOUT left armed on clients owed nothing; an"
        f" event bit on the listener or a client (POLLHUP, POLLERR, EOF) never handled, so every"
        f" wait returns at once; with io_uring, an accept re-submitted at once each time it"
        f" completes with EMFILE. See docs/pitfalls.md")
    deadline = deadline_after(5)
    outcomes = [_outcome(sock, payload(16, seed=1000 + i), deadline)
                for i, sock in enumerate(clients)]
    counts = {kind: outcomes.count(kind) for kind in sorted(set(outcomes))}
    assert all(kind in ("echoed", "closed", "waiting") for kind in counts), counts
    assert counts.get("echoed", 0) > 0, f"{situation}: no client was served at all: {counts}"
    for sock in clients:
        sock.close()
    # Until the server has seen those clients leave it is still at its limit, and may shed a
    # new client, rightly. Once it has closed them, every new client must be served.
    freed = wait_until(lambda: server.fd_count() <= baseline, 5)
    assert freed, (f"{situation}: {scaled(5):.0f} s after all {CLIENTS} clients left, the server"
                   f" still has {server.fd_count()} descriptors open (it started with {baseline})")
    for i in range(2 * NOFILE):
        client = server.connect()
        echo_roundtrip(client, payload(16, seed=1200 + i),
                       f"new client {i + 1} after the {CLIENTS} clients left ({counts})")
        client.close()
    server.assert_alive(f"{situation}, after recovering from descriptor exhaustion")


def test_emfile_does_not_spin_and_service_resumes(start_server):
    """Catches a busy loop on EMFILE (no spare descriptor, no pause), a crash, or no recovery."""
    server = start_server(nofile=NOFILE)
    _exhaust_and_recover(server, f"with RLIMIT_NOFILE {NOFILE}")


@pytest.mark.since(5)
def test_emfile_with_several_threads_does_not_spin(start_server):
    """Catches loops racing for the process-wide limit: one that cannot get its spare back
    must back off, not spin."""
    server = start_server("--threads", 2, nofile=NOFILE + 16)
    _exhaust_and_recover(server, f"with --threads 2 and RLIMIT_NOFILE {NOFILE + 16}")
