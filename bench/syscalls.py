#!/usr/bin/env python3
"""System calls per echoed message, counted by strace, for each stage on the same loads.

    bench/syscalls.py [--stage 2 --stage 3] [--server PATH] [--load small] [--duration 2]

For each load and stage: starts the server pinned to core 0, attaches `strace -c -f` to it,
runs tools/echoload (pinned to core 1, no warm-up) for the duration, then stops strace and
prints one markdown table of calls per 1,000 echoed messages. strace slows every call down
several times, so the messages per second here mean nothing; the calls per message do.
"""

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import STAGE_NAMES, fail, run_echoload, stage_binary, start_server, stop

# name -> echoload's --connections, --depth, --size and --rcvbuf (0: the kernel's default)
LOADS = {
    "pingpong": (1, 1, 64, 0),
    "small": (50, 16, 64, 0),
    "bulk": (50, 4, 16384, 0),
    # Slow readers: a 16 KiB receive buffer each and 4 MiB in flight, so the server's sends
    # fall short and its backpressure cap is reached.
    "slow-readers": (10, 64, 65536, 16384),
}
# The calls with a column of their own, where some server in the table makes them: stage 6
# moves its receives and sends into io_uring_enter.
COLUMNS = ["epoll_wait", "epoll_ctl", "recvfrom", "sendto", "io_uring_enter"]


def parse_summary(text):
    """strace -c's table -> {syscall: (calls, errors)}."""
    counts = {}
    for line in text.splitlines():
        fields = line.split()
        # "% time  seconds  usecs/call  calls  errors  syscall"; errors may be blank.
        if len(fields) < 5 or not fields[0][0].isdigit() or fields[-1] == "total":
            continue
        calls = int(fields[3])
        errors = int(fields[4]) if len(fields) == 6 else 0
        counts[fields[-1]] = (calls, errors)
    return counts


def count(binary, load, seconds):
    connections, depth, size, rcvbuf = LOADS[load]
    proc, port = start_server(binary)
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as summary:
        tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(proc.pid), "-o", summary.name],
                                  stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)  # let strace attach
            report = run_echoload(port, seconds, connections=connections, depth=depth,
                                  size=size, rcvbuf=rcvbuf, warmup=0)
        finally:
            tracer.send_signal(signal.SIGINT)  # detach and write the table
            tracer.wait(timeout=30)
            stop(proc)
        counts = parse_summary(summary.read())
    if not counts:
        fail(f"strace counted nothing for {binary}: is ptrace allowed here?")
    return report["messages"], counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", type=int, action="append")
    parser.add_argument("--server", action="append", default=[],
                        help="another server binary, e.g. an exercise's copy")
    parser.add_argument("--load", action="append", choices=sorted(LOADS))
    parser.add_argument("--duration", type=float, default=2.0)
    args = parser.parse_args()
    servers = [(f"{stage} ({STAGE_NAMES[stage]})", stage_binary(stage))
               for stage in args.stage or ([] if args.server else [2, 3])]
    servers += [(path, Path(path)) for path in args.server]
    loads = args.load or ["pingpong", "small", "bulk", "slow-readers"]
    if subprocess.run(["sh", "-c", "command -v strace"], capture_output=True).returncode != 0:
        fail("strace is not installed (apt-get install strace)")

    rows = []  # (load, label, messages, counts), printed once all are counted
    for load in loads:
        for label, binary in servers:
            print(f"  {load}, {label} ...", file=sys.stderr, flush=True)
            rows.append((load, label, *count(binary, load, args.duration)))
    columns = [c for c in COLUMNS if any(c in counts for *_, counts in rows)]
    print("| load | server | messages | " + " | ".join(f"`{c}`" for c in columns)
          + " | of which `recvfrom` EAGAIN | all calls |")
    print("| --- | --- | ---: | " + " | ".join("---:" for _ in columns) + " | ---: | ---: |")
    for load, label, messages, counts in rows:
        connections, depth, size, rcvbuf = LOADS[load]
        shape = f"{connections} x {depth} x {size} B" + (f", rcvbuf {rcvbuf}" if rcvbuf else "")
        per_k = lambda calls: f"{1000 * calls / messages:,.0f}"  # noqa: E731
        cells = [per_k(counts.get(c, (0, 0))[0]) for c in columns]
        cells.append(per_k(counts.get("recvfrom", (0, 0))[1]))
        cells.append(per_k(sum(calls for calls, _ in counts.values())))
        print(f"| {load} ({shape}) | {label} | {messages:,} | " + " | ".join(cells) + " |")
    print(f"(system calls per 1,000 echoed messages; strace -c -f for {args.duration} s per"
          " row, server on core 0, echoload on core 1)")


if __name__ == "__main__":
    main()
