"""Client-side helpers shared by every test file of the black-box suite.

Everything here talks to the server only through sockets and /proc, the way a user would.
Every wait is bounded: each takes a deadline (an absolute time.monotonic() value, see
`deadline_after`) and, where a transfer can stall half-way, a stall limit, so that a broken
server makes a test fail with a message instead of hanging it.
"""

import ctypes
import errno
import fcntl
import os
import random
import re
import resource
import select
import selectors
import signal
import socket
import struct
import subprocess
import termios
import threading
import time

import pytest

# --- time -------------------------------------------------------------------------------------


def _read_time_scale():
    """(scale, None), or (1.0, what is wrong) for conftest.py to report as a usage error."""
    text = os.environ.get("TEST_TIME_SCALE", "1")
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        return 1.0, f"TEST_TIME_SCALE must be a positive number, got {text!r}"
    return value, None


# Sanitizer builds run several times slower; the Makefile sets TEST_TIME_SCALE for them.
# Every timeout and deadline in the suite goes through scaled() so one knob covers them all.
TIME_SCALE, TIME_SCALE_ERROR = _read_time_scale()


def scaled(seconds):
    """`seconds` multiplied by TEST_TIME_SCALE."""
    return seconds * TIME_SCALE


def deadline_after(seconds):
    """An absolute monotonic deadline `seconds` (scaled) from now."""
    return time.monotonic() + scaled(seconds)


def wait_until(predicate, seconds, interval=0.02):
    """Polls `predicate` until it is true or `seconds` (scaled) pass; returns its last value."""
    deadline = deadline_after(seconds)
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# --- payloads and comparison ------------------------------------------------------------------

KiB = 1024
MiB = 1024 * KiB


def payload(size, seed):
    """`size` pseudo-random bytes, the same for the same seed (so a failure can be replayed)."""
    return random.Random(seed).randbytes(size)


def describe_size(n):
    if n >= MiB:
        return f"{n} bytes ({n / MiB:.2f} MiB)"
    return f"{n} bytes"


def _first_difference(a, b):
    """Offset of the first byte where a and b differ, or min(len) if one is a prefix."""
    limit = min(len(a), len(b))
    step = 64 * KiB
    va, vb = memoryview(a), memoryview(b)
    start = 0
    # Compare in blocks first so that a 32 MiB payload does not cost a Python-level byte loop.
    while start < limit and va[start : start + step] == vb[start : start + step]:
        start += step
    end = min(start + step, limit)
    for i in range(start, end):
        if a[i] != b[i]:
            return i
    return limit


def _hex_window(data, start, end):
    chunk = bytes(data[start:end])
    return chunk.hex(" ") if chunk else "(nothing)"


def assert_same_bytes(sent, got, what, note=""):
    """Fails unless `got` equals `sent`, saying where they first differ (never dumping them).

    `what` names the transfer ("echo of 32 MiB written while reading"); `note` says why the
    reading stopped, if it stopped early ("EOF", "no byte for 5.0 s").
    """
    __tracebackhide__ = True
    if len(sent) == len(got) and sent == got:
        return
    offset = _first_difference(sent, got)
    lo, hi = max(0, offset - 16), offset + 16
    lines = [
        f"{what}: the echo differs from what was sent",
        f"  sent:     {describe_size(len(sent))}",
        f"  expected: the same {describe_size(len(sent))} back, in order",
        f"  arrived:  {describe_size(len(got))}" + (f" (reading stopped: {note})" if note else ""),
    ]
    if offset == len(got) < len(sent):
        lines.append(f"  the echo is a correct prefix that stops at offset {offset}:"
                     f" {len(sent) - len(got)} bytes missing")
    elif offset == len(sent) < len(got):
        lines.append(f"  the echo is correct up to offset {offset}, then"
                     f" {len(got) - len(sent)} extra bytes arrived")
    else:
        lines.append(f"  first differing byte at offset {offset}")
    lines.append(f"  expected[{lo}:{hi}]: {_hex_window(sent, lo, hi)}")
    lines.append(f"  arrived [{lo}:{hi}]: {_hex_window(got, lo, hi)}")
    raise AssertionError("\n".join(lines))


# --- sockets ----------------------------------------------------------------------------------

# How long one read may wait for the next byte before we call the transfer stalled.
DEFAULT_STALL = 5.0


def connect(host, port, timeout=5.0, rcvbuf=None):
    """A connected, blocking client socket with TCP_NODELAY; fails after `timeout` (scaled).

    `rcvbuf` fixes SO_RCVBUF before connecting (which also stops the kernel from growing it).
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)[0]
    sock = socket.socket(family, kind, proto)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(scaled(timeout))
        sock.connect(address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Later sends must not hang forever on a server that stopped reading.
        sock.settimeout(scaled(DEFAULT_STALL) * 2)
    except BaseException:
        sock.close()
        raise
    return sock


def _wait_readable(sock, timeout):
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(max(0, timeout) * 1000))


def read_up_to(sock, size, deadline, stall=DEFAULT_STALL):
    """Reads until `size` bytes, EOF, an error, a stall or the deadline.

    Returns (data, why_stopped) with why_stopped None if all `size` bytes arrived. It never
    changes the socket's timeout, so another thread may be sending on the same socket.
    """
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    stall_s = scaled(stall)
    why = None
    while got < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            why = "deadline passed"
            break
        if not _wait_readable(sock, min(remaining, stall_s)):
            why = ("deadline passed" if remaining <= stall_s
                   else f"no byte arrived for {stall_s:.1f} s")
            break
        try:
            n = sock.recv_into(view[got:], min(size - got, 1 * MiB), socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError as e:
            why = f"recv failed: {e}"
            break
        if n == 0:
            why = "EOF (the server closed the connection)"
            break
        got += n
    return bytes(view[:got]), why


def recv_until_eof(sock, deadline, limit=64 * MiB, stall=DEFAULT_STALL):
    """Everything up to EOF. Returns (data, why) where why is None if EOF was seen."""
    chunks = []
    total = 0
    while True:
        data, why = read_up_to(sock, 256 * KiB, deadline, stall)
        chunks.append(data)
        total += len(data)
        if why is None:
            if total > limit:
                return b"".join(chunks), f"more than {describe_size(limit)} arrived"
            continue
        got = b"".join(chunks)
        if why.startswith("EOF"):
            return got, None
        return got, why


def expect_eof(sock, seconds, what):
    """Fails unless the next read is EOF within `seconds` (scaled) and no data comes first."""
    __tracebackhide__ = True
    data, why = recv_until_eof(sock, deadline_after(seconds), limit=1 * MiB, stall=seconds)
    if why is not None or data:
        extra = f" after {len(data)} unexpected bytes" if data else ""
        raise AssertionError(f"{what}: expected EOF within {scaled(seconds):.1f} s;"
                             f" got {why or 'EOF'}{extra}")


def echo_roundtrip(sock, data, what, seconds=5.0):
    """Sends `data` (small: it must fit in the socket buffers), then checks the exact echo."""
    __tracebackhide__ = True
    sock.sendall(data)
    got, why = read_up_to(sock, len(data), deadline_after(seconds))
    assert_same_bytes(data, got, what, note=why or "")


def echo_concurrently(sock, data, what, seconds=60.0, chunk=256 * KiB, reader_pauses=4):
    """Writes `data` from a second thread while this thread reads the echo; checks it exactly.

    The reader starts late and pauses a few times so that the server's writes to this client
    hit a full socket buffer (short writes, EAGAIN) while input keeps arriving.
    """
    __tracebackhide__ = True
    errors = []

    def writer():
        view = memoryview(data)
        try:
            for off in range(0, len(data), chunk):
                sock.sendall(view[off : off + chunk])
        except OSError as e:
            errors.append(e)

    thread = threading.Thread(target=writer, name=f"writer: {what}", daemon=True)
    deadline = deadline_after(seconds)
    thread.start()
    try:
        pause = scaled(0.15)
        parts = reader_pauses + 1
        part_size = -(-len(data) // parts)
        got = []
        why = None
        for i in range(parts):
            time.sleep(pause)
            want = min(part_size, len(data) - i * part_size)
            if want <= 0:
                break
            piece, why = read_up_to(sock, want, deadline)
            got.append(piece)
            if why is not None:
                break
        received = b"".join(got)
    finally:
        thread.join(timeout=scaled(DEFAULT_STALL) * 2 + 1)
    note = why or ""
    if errors:
        note = (note + "; " if note else "") + f"sending failed: {errors[0]}"
    assert_same_bytes(data, received, what, note=note)


def kernel_send_buffer_max():
    """The most a TCP send buffer may grow to on this machine (net.ipv4.tcp_wmem, third value)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 * MiB  # the Linux default


# A client receive buffer small enough that what the kernel holds between the server and the
# client is about the server's send buffer alone (setting it also stops the kernel growing it).
SMALL_RCVBUF = 256 * KiB


def owed_payload_size(extra):
    """A payload larger than the kernel can hold on its way back to a SMALL_RCVBUF client.

    The kernel's buffers swallow the first few MiB of any echo, so a server owes bytes in its
    own memory (where its half-close and dead-peer mistakes live) only beyond that.
    """
    return kernel_send_buffer_max() + 2 * SMALL_RCVBUF + extra


def pump_reading_slowly(sock, data, half_close, until_eof, seconds=30.0):
    """Sends `data` (then shutdown(SHUT_WR) if half_close) from a second thread while this
    thread reads the echo slowly, 64 KiB per 2 ms, far slower than any server echoes.

    Reading slowly keeps the server's send buffer full, so each byte it reads from us becomes
    an owed byte in its memory, up to its backpressure cap. With until_eof, reads until EOF and
    returns (echo, None), or (echo so far, why it stopped). Otherwise stops as soon as the
    server's kernel has acknowledged everything sent (the FIN too): the server then still owes
    us most of the echo; returns (echo so far, None) or (echo so far, why it gave up).
    """
    step, interval = 64 * KiB, 0.002
    errors = []
    writer_done = threading.Event()

    def writer():
        view = memoryview(data)
        try:
            for off in range(0, len(data), step):
                sock.sendall(view[off : off + step])
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            errors.append(e)
        writer_done.set()

    thread = threading.Thread(target=writer, name="slow pump writer", daemon=True)
    thread.start()
    received = bytearray()
    deadline = deadline_after(seconds)
    why = None
    try:
        while True:
            if time.monotonic() >= deadline:
                why = f"gave up after {scaled(seconds):.0f} s"
                break
            if not until_eof and writer_done.is_set() and unsent_bytes(sock) == 0:
                break
            time.sleep(interval)
            try:
                chunk = sock.recv(step, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                why = f"recv failed: {e}"
                break
            if not chunk:
                if not until_eof:
                    why = "EOF (the server closed the connection)"
                break
            received += chunk
    finally:
        thread.join(timeout=scaled(DEFAULT_STALL) * 2 + 1)
    if errors:
        why = (why + "; " if why else "") + f"sending failed: {errors[0]}"
    return bytes(received), why


def unsent_bytes(sock):
    """Bytes still in this socket's send queue, not yet acknowledged by the peer (SIOCOUTQ)."""
    raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return struct.unpack("i", raw)[0]


# ioctl(2) request for the bytes in a TCP socket's send queue that were never transmitted
# (linux/sockios.h; Python's socket module does not name it).
SIOCOUTQNSD = 0x894B


def untransmitted_bytes(sock):
    """Bytes still in this socket's send queue that TCP has not transmitted yet (SIOCOUTQNSD):
    unlike SIOCOUTQ, bytes that reached the peer but wait for its ACK are not counted."""
    raw = fcntl.ioctl(sock.fileno(), SIOCOUTQNSD, struct.pack("i", 0))
    return struct.unpack("i", raw)[0]


def close_with_reset(sock):
    """Closes so that the kernel sends RST instead of FIN (SO_LINGER on, timeout 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# --- processes and /proc ----------------------------------------------------------------------


def describe_exit(returncode):
    """'exit code 1' or 'killed by signal SIGPIPE (return code -13)'."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name} (return code {returncode})"
    return f"exit code {returncode}"


def tail_text(data, limit=4000):
    """The last `limit` characters of some output, marked when cut."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    if len(text) > limit:
        return f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]
    return text


def stop_process(proc, seconds=10.0):
    """SIGTERM, wait, then SIGKILL: the process (our own child, by PID) is gone afterwards."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=scaled(seconds))
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=scaled(seconds))


# Set to anything but the empty string, this variable makes stage 6 act as where io_uring is
# unavailable: one `error: io_uring unavailable: ...` line, exit 1. Only the test of that path
# sets it; the suite removes it from every other server's environment rather than refuse to
# run, since what it asks for (no io_uring) is never what a run of the suite is for.
NO_IO_URING = "NO_IO_URING"


def server_environment(**extra):
    """The environment for a server the suite starts: the suite's own, without NO_IO_URING
    (exported by a user who wanted `make run` to fall back to stage 5, it would turn every
    test of stage 6 into a failure that says nothing about the server), plus `extra`."""
    env = {name: value for name, value in os.environ.items() if name != NO_IO_URING}
    env.update(extra)
    return env


def child_limits(nofile=None):
    """A preexec_fn for the server: no core files; optionally a descriptor limit."""

    def setup():
        _, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
        if nofile is not None:
            # Both limits: a server that raises its soft limit to the hard one must still
            # hit EMFILE at `nofile`.
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    return setup


# What a crash or an uncaught exception leaves on stderr (libstdc++, glibc, sanitizers).
CRASH_SIGNS = ("terminate called", "what():", "Segmentation fault", "core dumped", "Aborted",
               "AddressSanitizer", "UndefinedBehaviorSanitizer", "runtime error:", "Traceback")


def run_cli(server_command, args, tmp_path, seconds=5.0, env=None):
    """Runs the server with `args`, expecting it to exit by itself; returns (rc, stdout, stderr).
    `env` is its environment (default: server_environment()).

    Fails the test if the server still runs after `seconds`, or as soon as it prints its
    'listening on' line: it has taken the arguments and serves, and would only run on."""
    proc = subprocess.Popen([*server_command, *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                            env=server_environment() if env is None else env,
                            preexec_fn=child_limits())
    output = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    deadline = deadline_after(seconds)
    with selectors.DefaultSelector() as selector:
        for stream in output:
            selector.register(stream, selectors.EVENT_READ)
        # Until both pipes end (the server has exited), it serves, or time is up.
        while selector.get_map() and b"listening on" not in output[proc.stdout]:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in selector.select(left):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    output[key.fileobj] += chunk
                else:
                    selector.unregister(key.fileobj)
        serving = b"listening on" in output[proc.stdout]
        try:
            proc.wait(timeout=0 if serving else max(0.0, deadline - time.monotonic()))
            running = False
        except subprocess.TimeoutExpired:
            running = True
    if running:
        stop_process(proc)
        rest_out, rest_err = proc.communicate()
        output[proc.stdout] += rest_out
        output[proc.stderr] += rest_err
    out, err = (bytes(output[stream]).decode("utf-8", "replace")
                for stream in (proc.stdout, proc.stderr))
    if running:
        why = ("took the arguments and started serving (it printed 'listening on')" if serving
               else f"still ran after {scaled(seconds):.1f} s (did it take the arguments and"
               f" start serving?)")
        pytest.fail(f"`server {' '.join(args)}` {why} instead of exiting\n"
                    f"stdout: {tail_text(out)}\nstderr: {tail_text(err)}")
    return proc.returncode, out, err


def describe_run(args, rc, out, err):
    return (f"`server {' '.join(args)}`: {describe_exit(rc)}\n"
            f"--- stdout ---\n{tail_text(out, 2000)}\n--- stderr ---\n{tail_text(err, 2000)}")


# Threads the kernel starts inside a process that uses io_uring: io-wq workers that run the
# requests which cannot complete without blocking ("iou-wrk-TID", named after the thread that
# submitted them) and, with IORING_SETUP_SQPOLL, a poller of the submission queue
# ("iou-sqp-TID"). /proc/PID/task lists them with the server's own threads, and SIGSTOP stops
# them too, but they run the kernel's code, not one of the server's loops.
IO_URING_THREAD_PREFIXES = ("iou-wrk-", "iou-sqp-")


def is_io_uring_thread(name):
    """True for a thread name (comm) that io_uring gave one of its kernel threads."""
    return name.startswith(IO_URING_THREAD_PREFIXES)


def thread_states(pid):
    """{thread id: the one-letter state from its /proc stat file} ('T' while stopped)."""
    states = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                states[int(tid)] = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            pass  # the thread ended between listdir and open
    return states


def open_fds(pid):
    """{fd number: what it points to} for a process, from /proc/PID/fd."""
    result = {}
    base = f"/proc/{pid}/fd"
    for name in os.listdir(base):
        try:
            result[int(name)] = os.readlink(f"{base}/{name}")
        except OSError:
            pass  # closed between listdir and readlink
    return result


def count_fds(pid):
    """How many descriptors the process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


TCP_LISTEN = "0A"  # the state column of /proc/net/tcp (include/net/tcp_states.h)


def listening_sockets(pid):
    """The process's listening TCP sockets, lowest descriptor first: (fd, "HOST:PORT") pairs,
    "[ADDR]:PORT" for IPv6. /proc/PID/fd names each socket by its inode; the kernel's TCP tables
    of the process's network namespace give each inode's state and local address."""
    by_inode = {}
    for fd, target in open_fds(pid).items():
        if target.startswith("socket:["):
            by_inode.setdefault(target[len("socket:[") : -1], []).append(fd)
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue  # no IPv6 on this machine
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != TCP_LISTEN or inode not in by_inode:
                continue
            hex_addr, hex_port = local.split(":")
            raw = bytes.fromhex(hex_addr)
            # /proc prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            host = socket.inet_ntop(family, raw)
            address = f"[{host}]" if family == socket.AF_INET6 else host
            found += [(fd, f"{address}:{int(hex_port, 16)}") for fd in by_inode[inode]]
    return sorted(found)


SYS_PIDFD_GETFD = 438  # the same number on every architecture Linux has added it to since 5.6
_LIBC = ctypes.CDLL(None, use_errno=True)  # os has pidfd_open(), not pidfd_getfd()


class BorrowedDescriptors:
    """Duplicates of another process's descriptors, through pidfd_getfd(2) (Linux 5.6).

    A duplicate shares the open file description with the original, so an option read through
    it is the one the process set, and a shutdown() through it acts on the process's socket.
    It takes ptrace permission over the process: ours, since we started it. Where the kernel is
    too old or a security policy refuses, the test is skipped and says why: that is this
    machine's limit, not the server's. Any other failure is raised.
    """

    # What a kernel without the calls (ENOSYS) or a policy against them (EPERM) answers.
    REFUSALS = (errno.EPERM, errno.ENOSYS)

    def __init__(self, pid):
        try:
            self.pidfd = os.pidfd_open(pid)
        except AttributeError:
            pytest.skip("this Python has no os.pidfd_open (3.9 added it):"
                        " cannot reach the server's descriptors")
        except OSError as e:
            if e.errno not in self.REFUSALS:
                raise
            pytest.skip(f"pidfd_open is not allowed here ({e.strerror}):"
                        " cannot reach the server's descriptors")

    def socket(self, fd):
        """A socket object on a duplicate of the process's descriptor `fd`; the caller closes it."""
        duplicate = _LIBC.syscall(SYS_PIDFD_GETFD, self.pidfd, fd, 0)
        if duplicate < 0:
            err = ctypes.get_errno()
            if err in self.REFUSALS:
                pytest.skip(f"pidfd_getfd is not allowed here ({os.strerror(err)})")
            raise OSError(err, f"pidfd_getfd of descriptor {fd}: {os.strerror(err)}")
        return socket.socket(fileno=duplicate)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.close(self.pidfd)


LISTENING_RE = re.compile(
    r"listening on (?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<v4>[0-9.]+)):(?P<port>[0-9]+)")


def parse_listening_line(line):
    """(host, port) from 'listening on HOST:PORT' / 'listening on [V6]:PORT', or None."""
    match = LISTENING_RE.fullmatch(line)
    if not match:
        return None
    return (match.group("v6") or match.group("v4")), int(match.group("port"))


def ipv6_loopback_usable():
    """True if this machine can listen and connect on [::1]."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
            s.listen(1)
            with socket.create_connection(s.getsockname()[:2], timeout=2):
                pass
        return True
    except OSError:
        return False


# --- CPU, memory and limits -------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_name_and_cpu_seconds(path):
    """(command name, utime + stime in seconds) from a /proc/.../stat file."""
    with open(path) as f:
        text = f.read()
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return name, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14, 15 of stat(5)


def cpu_seconds(pid):
    """CPU time (user + system) the process has used so far, all its threads together."""
    return _stat_name_and_cpu_seconds(f"/proc/{pid}/stat")[1]


def thread_names_and_cpu_seconds(pid):
    """{thread id: (its name, CPU seconds)} for every thread of the process; the name and the
    time come from one read, so a thread is never counted under another's name."""
    result = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            result[int(tid)] = _stat_name_and_cpu_seconds(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            pass  # the thread ended between listdir and open
    return result


def thread_cpu_seconds(pid):
    """{thread id: CPU seconds} for every thread of the process."""
    return {tid: seconds for tid, (_, seconds) in thread_names_and_cpu_seconds(pid).items()}


def cpu_use_over(pid, seconds):
    """(CPU seconds the process used, seconds that passed) over the next `seconds` (not scaled)."""
    before, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return cpu_seconds(pid) - before, time.monotonic() - start


def cpu_share_over(pid, seconds):
    """The fraction of one core the process used over the next `seconds` (not scaled)."""
    used, elapsed = cpu_use_over(pid, seconds)
    return used / elapsed


def describe_cpu_use(used, elapsed, limit_share):
    """What a CPU measurement saw, in the kernel's unit, with its bound: for failure messages."""
    return (f"its CPU time (utime + stime, /proc/PID/stat) grew by {round(used * CLOCK_TICKS)}"
            f" clock ticks ({used:.2f} s) in {elapsed:.2f} s, {used / elapsed:.0%} of a core;"
            f" the bound is {limit_share:.0%} ({limit_share * elapsed * CLOCK_TICKS:.0f} ticks)")


def rss_bytes(pid):
    """Resident memory of the process (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * KiB
    raise AssertionError(f"no VmRSS line in /proc/{pid}/status")


def raise_nofile_limit(needed):
    """Raises this process's soft descriptor limit to the hard one; fails if that is < needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise AssertionError(f"this test needs about {needed} descriptors but the hard limit is"
                             f" {hard}: raise it (ulimit -Hn, /etc/security/limits.conf)")
    return soft


# --- flooding ---------------------------------------------------------------------------------


class PatternStream:
    """An endless, checkable byte stream: a pseudo-random block repeated.

    The block's odd length keeps repeats out of step with any power-of-two buffer size, so a
    chunk that is dropped, repeated or reordered by the server shows as a mismatch.
    """

    def __init__(self, seed, block_size=4 * MiB + 13):
        self.block = payload(block_size, seed)
        self.doubled = memoryview(self.block + self.block)

    def at(self, offset, size):
        """`size` (at most the block size) bytes of the stream starting at `offset`."""
        start = offset % len(self.block)
        return self.doubled[start : start + size]

    def check(self, offset, data, what):
        """Fails unless `data` is what the stream holds at `offset`."""
        __tracebackhide__ = True
        for start in range(0, len(data), 1 * MiB):
            piece = bytes(data[start : start + 1 * MiB])
            expected = bytes(self.at(offset + start, len(piece)))
            if piece != expected:
                assert_same_bytes(expected, piece,
                                  f"{what} (bytes {offset + start}.. of the stream)")


def flood_until_stalled(sock, stream, limit, seconds=30.0, stall=1.0):
    """Sends `stream` on a non-blocking path, without reading, until `limit` bytes are sent or
    no byte could be sent for `stall` (scaled) seconds. Returns the number of bytes sent.

    Against a server with backpressure this stops at a few MiB (its cap plus what the kernel
    buffers); against one without, everything goes through, however large.
    """
    sent = 0
    deadline = deadline_after(seconds)
    last_progress = time.monotonic()
    stall_s = scaled(stall)
    timeout = sock.gettimeout()
    sock.settimeout(0.0)  # with a timeout, Python's send would wait instead of raising EAGAIN
    try:
        while sent < limit and time.monotonic() < deadline:
            try:
                n = sock.send(stream.at(sent, min(1 * MiB, limit - sent)))
            except (BlockingIOError, InterruptedError):
                if time.monotonic() - last_progress >= stall_s:
                    break
                select.select([], [sock], [], 0.05)
                continue
            sent += n
            last_progress = time.monotonic()
    finally:
        sock.settimeout(timeout)
    return sent


def drain_and_check(sock, stream, size, what, seconds=60.0):
    """Reads `size` bytes of echo and checks them against `stream` from offset 0."""
    __tracebackhide__ = True
    deadline = deadline_after(seconds)
    offset = 0
    while offset < size:
        data, why = read_up_to(sock, min(4 * MiB, size - offset), deadline)
        stream.check(offset, data, what)
        offset += len(data)
        if why is not None:
            raise AssertionError(f"{what}: {offset} of {size} echoed bytes arrived, then {why}")
