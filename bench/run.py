#!/usr/bin/env python3
"""The benchmark behind `make bench`: every built stage and peer server on fixed scenarios,
side by side, with tools/echoload as the client.

    bench/run.py [--quick] [--repeat N] [--duration S] [--only SCENARIO ...] [--output PATH]
    bench/run.py table [--output PATH]     print the tables of the saved results again
    bench/run.py plot [--output PATH]      draw docs/img/bench-*.svg from them (python3-matplotlib)

The scenarios (the stages run them all; the peers of bench/peers/ run small, bulk, memory and
threads, the ones that compare them with the stages):

    pingpong  1 connection, 64 B, depth 1: echoload on the other core, then on the server's
    small     50 connections, 64 B, depth 16
    bulk      50 connections, 16 KiB, depth 4
    idle      one ping-pong client among 0, 1000, 5000 and 10000 idle connections
    memory    the server's VmRSS growth over 5000 idle connections, per connection
    threads   small messages again, with --threads 1 and 2 (stages 5 and 6, and peers that take it)

Each run starts the server afresh on a free port, pinned to core 0 (to both cores with 2
threads), and echoload on core 1. Within a scenario the servers take turns, repeat after
repeat, so a noisy moment on a shared machine hits them alike, and the tables quote medians.
The server's CPU time is read from /proc at the start and the end of echoload's measured
window. Progress goes to stderr, one markdown table per scenario to stdout, every run and
median to docs/data/bench.json.
"""

import argparse
import datetime
import json
import os
import resource
import socket
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import (ROOT, STAGE_NAMES, built_stages, cpu_seconds, fail, machine, rss_kib,
                    run_echoload, start_server, stop)

DATA = ROOT / "docs" / "data" / "bench.json"
PEER_DIR = ROOT / "build" / "bench" / "peers"
# key -> (label in the tables, binary in build/bench/peers/, takes --threads N)
PEERS = {
    "asio": ("Boost.Asio", "asio_server", True),
    "uv": ("libuv", "uv_server", True),
    "node": ("Node.js", "node_server", False),
}
THREADED_STAGES = {5, 6}  # the stages that take --threads N

SCENARIOS = ["pingpong", "small", "bulk", "idle", "memory", "threads"]
PINGPONG = (1, 1, 64)  # echoload's --connections, --depth and --size
SMALL = (50, 16, 64)
BULK = (50, 4, 16384)

# echoload busy for at least this share of the window means the client, not the server, may
# be what limits the figure: on 2 cores it has one of them to itself, and no more.
CLIENT_BOUND = 0.9

# For the estimate printed at the start: what a run takes beyond echoload's warm-up and
# window (starting and stopping both processes), and what opening one idle connection takes.
# Measured on the 2-core machine of docs/benchmarks.md.
RUN_OVERHEAD_S = 0.15
CONNECT_S = 0.00005


@dataclass
class Settings:
    duration: float  # echoload's measured window, seconds
    warmup: float
    repeat: int
    idle_counts: list
    memory_idle: int
    quick: bool


@dataclass
class Server:
    key: str  # "stage-3", "asio": names it in the saved results
    label: str  # "stage 3 (epoll ET)", "Boost.Asio": names it in the tables
    binary: Path
    stage: int  # 0 for a peer
    threaded: bool  # takes --threads N


@dataclass
class Case:
    """One server on one load of a scenario: what a single run measures."""
    scenario: str
    server: Server
    connections: int = 1
    depth: int = 1
    size: int = 64
    idle: int = 0
    threads: int = 1
    client_core: int = 1


def find_servers():
    servers = [Server(f"stage-{n}", f"stage {n} ({STAGE_NAMES[n]})", binary, n,
                      n in THREADED_STAGES) for n, binary in built_stages().items()]
    for key, (label, name, threaded) in PEERS.items():
        if (PEER_DIR / name).exists():
            servers.append(Server(key, label, PEER_DIR / name, 0, threaded))
    return servers


def plan(scenario, servers, settings):
    """The cases of one scenario, in the order each repeat runs them."""
    stages = [s for s in servers if s.stage]
    if scenario == "pingpong":
        return [Case(scenario, s, *PINGPONG, client_core=core) for core in (1, 0) for s in stages]
    if scenario == "small":
        return [Case(scenario, s, *SMALL) for s in servers]
    if scenario == "bulk":
        return [Case(scenario, s, *BULK) for s in servers]
    if scenario == "idle":
        return [Case(scenario, s, *PINGPONG, idle=k) for k in settings.idle_counts for s in stages]
    if scenario == "memory":
        return [Case(scenario, s, idle=settings.memory_idle) for s in servers]
    if scenario == "threads":
        return [Case(scenario, s, *SMALL, threads=t) for t in (1, 2) for s in servers if s.threaded]
    raise ValueError(scenario)


def estimate_seconds(plans, settings):
    seconds = 0.0
    for cases in plans.values():
        for case in cases:
            seconds += RUN_OVERHEAD_S + case.idle * CONNECT_S
            if case.scenario != "memory":
                seconds += settings.warmup + settings.duration
    return seconds * settings.repeat


class CpuWindow:
    """The server's and echoload's CPU time over echoload's measured window. run_echoload calls
    it in a thread as the warm-up starts: it sleeps through the warm-up, reads both, sleeps
    through the window and reads both again. The kernel counts CPU time in clock ticks (10 ms
    here), so a window of a few seconds reads it to within a percent or so."""

    def __init__(self, server_pid, warmup, seconds):
        self.server_pid, self.warmup, self.seconds = server_pid, warmup, seconds
        self.elapsed = self.server = self.client = None

    def __call__(self, client_pid):
        time.sleep(self.warmup)
        start = self.sample(client_pid)
        time.sleep(self.seconds)
        end = self.sample(client_pid)
        self.elapsed, self.server, self.client = (b - a for a, b in zip(start, end))

    def sample(self, client_pid):
        return time.monotonic(), cpu_seconds(self.server_pid), cpu_seconds(client_pid)


def start(case, nofile):
    """Starts the case's server: on core 0, or on cores 0 and 1 with 2 threads. A server that
    takes --threads is always given it, whatever its default."""
    args = ("--threads", str(case.threads)) if case.server.threaded else ()
    return start_server(case.server.binary, nofile, args, cores=range(case.threads))


def measure_load(case, settings, nofile):
    proc, port = start(case, nofile)
    window = CpuWindow(proc.pid, settings.warmup, settings.duration)
    try:
        report = run_echoload(port, settings.duration, idle=case.idle,
                              connections=case.connections, depth=case.depth, size=case.size,
                              warmup=settings.warmup, core=case.client_core, during=window)
    finally:
        stop(proc)
    if window.elapsed is None:
        fail("echoload printed no 'warming up' line, so the CPU time was not read")
    server_busy = window.server / window.elapsed  # CPU seconds per second: 1.0 is one core
    return {
        "messages_per_s": report["messages_per_s"],
        "mib_per_s": report["mib_per_s"],
        "p50_us": report["rtt_us"]["p50"],
        "p99_us": report["rtt_us"]["p99"],
        "cpu_us_per_message": 1e6 * server_busy / report["messages_per_s"],
        "server_busy": server_busy,
        "client_busy": window.client / window.elapsed,
        "echoload": report,
    }


def open_descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def measure_memory(case, nofile):
    """VmRSS of a fresh server holding one connection that has echoed a byte, then with
    case.idle more connections that never send; returns the growth per idle connection."""
    proc, port = start(case, nofile)
    connections = []
    try:
        first = socket.create_connection(("127.0.0.1", port))
        connections.append(first)
        first.sendall(b"x")  # so that what the first echo allocates is not counted
        if first.recv(1) != b"x":
            fail(f"{case.server.label} did not echo a byte")
        before, descriptors = rss_kib(proc.pid), open_descriptors(proc.pid)
        for _ in range(case.idle):
            connections.append(socket.create_connection(("127.0.0.1", port)))
        deadline = time.monotonic() + 30
        while open_descriptors(proc.pid) < descriptors + case.idle:  # until all are accepted
            if time.monotonic() > deadline:
                fail(f"{case.server.label} did not accept {case.idle} connections in 30 s")
            time.sleep(0.01)
        time.sleep(0.1)  # for the last ones accepted to be set up
        after = rss_kib(proc.pid)
    finally:
        for connection in connections:
            connection.close()
        stop(proc)
    return {"rss_before_kib": before, "rss_after_kib": after,
            "bytes_per_connection": (after - before) * 1024 / case.idle}


def describe(case):
    if case.scenario == "pingpong":
        return f"{case.server.label}, echoload on core {case.client_core}"
    if case.scenario in ("idle", "memory"):
        return f"{case.server.label}, {case.idle} idle"
    if case.scenario == "threads":
        return f"{case.server.label}, {case.threads} thread{'s' * (case.threads > 1)}"
    return case.server.label


def summary(result):
    if "bytes_per_connection" in result:
        return f"{result['bytes_per_connection']:,.0f} B per idle connection"
    return (f"{result['messages_per_s']:,.0f} msg/s, p50 {result['p50_us']:.1f} us,"
            f" server CPU {result['cpu_us_per_message']:.2f} us/msg")


def medians(runs):
    """The median of each figure over the runs, each figure on its own."""
    return {key: statistics.median(run[key] for run in runs)
            for key, value in runs[0].items() if isinstance(value, (int, float))}


def record(case, runs):
    entry = {"server": case.server.key, "idle": case.idle}
    if case.scenario != "memory":
        entry.update(connections=case.connections, depth=case.depth, size=case.size,
                     threads=case.threads, client_core=case.client_core)
    entry.update(median=medians(runs), runs=runs)
    return entry


def clock(seconds):
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def measure(scenarios, servers, settings, command):
    """Runs the scenarios; returns {scenario: {"date", "command", "settings", "results"}}."""
    _, nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))  # echoload inherits it
    fits = [k for k in settings.idle_counts if k + 100 <= nofile]  # echoload needs a few more
    if fits != settings.idle_counts:
        print(f"bench: the descriptor limit ({nofile}, ulimit -Hn) leaves out"
              f" {sorted(set(settings.idle_counts) - set(fits))} idle", file=sys.stderr)
        settings.idle_counts = fits
    plans = {name: plan(name, servers, settings) for name in scenarios}
    total = settings.repeat * sum(len(cases) for cases in plans.values())
    print(f"bench: {len(servers)} servers ({', '.join(s.label for s in servers)}),"
          f" {total} runs, about {clock(estimate_seconds(plans, settings))} min:s",
          file=sys.stderr)
    started = time.monotonic()
    done = 0
    measured = {}
    for name, cases in plans.items():
        runs = [[] for _ in cases]
        for i in range(settings.repeat):
            for case, case_runs in zip(cases, runs):
                done += 1
                print(f"[{done}/{total} {clock(time.monotonic() - started)}] {name},"
                      f" {describe(case)}, run {i + 1}/{settings.repeat} ...", end="",
                      flush=True, file=sys.stderr)
                if name == "memory":
                    case_runs.append(measure_memory(case, nofile))
                else:
                    case_runs.append(measure_load(case, settings, nofile))
                print(" " + summary(case_runs[-1]), file=sys.stderr)
        measured[name] = {"date": datetime.date.today().isoformat(), "command": command,
                          "settings": vars(settings),
                          "results": [record(c, r) for c, r in zip(cases, runs)]}
    print(f"bench: {total} runs took {clock(time.monotonic() - started)} min:s", file=sys.stderr)
    return measured


# The tables, from the saved results: `bench/run.py table` prints them again.

def ratio(value, reference):
    return f"{value / reference:.2f}x" if reference else "–"


def latency(median):
    return f"{median['p50_us']:.1f} / {median['p99_us']:.1f}"


def busy(median):
    return f"{median['server_busy']:.0%} / {median['client_busy']:.0%}"


def client_mark(median):
    return " ‡" if median["client_busy"] >= CLIENT_BOUND else ""


class Tables:
    """Prints one markdown table per scenario. Each ratio divides a server's median by the
    median of the highest stage present in the same scenario (on the same load)."""

    def __init__(self, data):
        self.data = data
        self.marked = False  # whether some figure got the client-bound mark

    def label(self, key):
        return self.data["servers"][key]["label"]

    def reference(self, results):
        """The key of the highest stage among these results' servers, or None."""
        stages = [self.data["servers"][r["server"]]["stage"] for r in results]
        return f"stage-{max(stages)}" if max(stages, default=0) else None

    def median_of(self, results, server, **match):
        """The median figures of server's result that matches (e.g. idle=1000), or None."""
        for r in results:
            if r["server"] == server and all(r[k] == v for k, v in match.items()):
                return r["median"]
        return None

    def servers(self, results):
        return list(dict.fromkeys(r["server"] for r in results))  # in the order they ran

    def heading(self, title, columns):
        print(f"\n**{title}**\n")
        print("| " + " | ".join(columns) + " |")
        print("| --- | " + " | ".join("---:" for _ in columns[1:]) + " |")

    def row(self, cells):
        print("| " + " | ".join(cells) + " |")

    def pingpong(self, results):
        ref = self.reference(results)
        vs = f"p50 vs {self.label(ref)}" if ref else "p50 ratio"
        self.heading("Ping-pong: 1 connection, 64 B, depth 1", [
            "server", "echoload on the other core: p50 / p99 µs", vs, "CPU µs/msg",
            "on the same core: p50 / p99 µs", vs, "CPU µs/msg"])
        for server in self.servers(results):
            cells = [self.label(server)]
            for core in (1, 0):
                m = self.median_of(results, server, client_core=core)
                r = self.median_of(results, ref, client_core=core) if ref else None
                cells += [latency(m), ratio(m["p50_us"], r and r["p50_us"]),
                          f"{m['cpu_us_per_message']:.2f}"]
            self.row(cells)

    def throughput(self, results, title, figure, unit, places, match):
        ref = self.reference(results)
        vs = f"vs {self.label(ref)}" if ref else "ratio"
        columns = ["server", unit, vs, "p50 / p99 µs", "CPU µs/msg", f"CPU {vs}",
                   "CPU busy: server / echoload"]
        if "threads" in match:
            columns.insert(1, "threads")
        self.heading(title, columns)
        for server in self.servers(results):
            m = self.median_of(results, server, **match)
            if m is None:
                continue
            r = self.median_of(results, ref, **match) if ref else None
            self.marked |= bool(client_mark(m))
            cells = [self.label(server), f"{m[figure]:,.{places}f}{client_mark(m)}",
                     ratio(m[figure], r and r[figure]), latency(m),
                     f"{m['cpu_us_per_message']:.2f}",
                     ratio(m["cpu_us_per_message"], r and r["cpu_us_per_message"]), busy(m)]
            if "threads" in match:
                cells.insert(1, str(match["threads"]))
            self.row(cells)

    def idle(self, results):
        ref = self.reference(results)
        servers = self.servers(results)
        counts = sorted({r["idle"] for r in results})
        self.heading("One ping-pong client among idle connections: p50 / p99 µs"
                     + (f" (p50 vs {self.label(ref)})" if ref else ""),
                     ["idle connections"] + [self.label(s) for s in servers])
        for count in counts:
            r = self.median_of(results, ref, idle=count) if ref else None
            cells = [f"{count:,}"]
            for server in servers:
                m = self.median_of(results, server, idle=count)
                cells.append(f"{latency(m)} ({ratio(m['p50_us'], r and r['p50_us'])})")
            self.row(cells)
        if len(counts) > 1:
            low, high = counts[0], counts[-1]
            self.row([f"p50 at {high:,} vs at {low:,}"] + [
                ratio(self.median_of(results, s, idle=high)["p50_us"],
                      self.median_of(results, s, idle=low)["p50_us"]) for s in servers])

    def memory(self, results):
        ref = self.reference(results)
        idle = results[0]["idle"]
        self.heading(f"Memory: the server's VmRSS before and with {idle:,} idle connections", [
            "server", "VmRSS before, KiB", f"with {idle:,} idle, KiB",
            "bytes per idle connection", f"vs {self.label(ref)}" if ref else "ratio"])
        r = self.median_of(results, ref) if ref else None
        for server in self.servers(results):
            m = self.median_of(results, server)
            self.row([self.label(server), f"{m['rss_before_kib']:,.0f}",
                      f"{m['rss_after_kib']:,.0f}", f"{m['bytes_per_connection']:,.0f}",
                      ratio(m["bytes_per_connection"], r and r["bytes_per_connection"])])

    def print_all(self, scenarios):
        for name in scenarios:
            results = self.data["scenarios"][name]["results"]
            if not results:
                print(f"\n**{name}**: no server here runs this scenario")
            elif name == "pingpong":
                self.pingpong(results)
            elif name == "small":
                self.throughput(results, "Small messages: 50 connections, 64 B, depth 16",
                                "messages_per_s", "msg/s", 0, {})
            elif name == "bulk":
                self.throughput(results, "Bulk: 50 connections, 16 KiB, depth 4",
                                "mib_per_s", "MiB/s", 0, {})
            elif name == "idle":
                self.idle(results)
            elif name == "memory":
                self.memory(results)
            elif name == "threads":
                for threads in (1, 2):
                    self.throughput(results, f"Small messages with {threads} thread"
                                    f"{'s' * (threads > 1)} (server on {threads} core"
                                    f"{'s' * (threads > 1)}, echoload on core 1)",
                                    "messages_per_s", "msg/s", 0, {"threads": threads})
        self.notes(scenarios)

    def notes(self, scenarios):
        # The settings most scenarios share come first; any others are named after them.
        repeats = [self.data["scenarios"][name]["settings"]["repeat"] for name in scenarios]
        common = max(repeats, key=repeats.count)
        first = self.data["scenarios"][scenarios[repeats.index(common)]]["settings"]
        m = self.data["machine"]
        runs = f"{first['repeat']} run{'s' * (first['repeat'] > 1)}"
        # Scenarios run again on their own (--only) may differ: say which, and how.
        apart = {}
        for name in scenarios:
            again = self.data["scenarios"][name]
            if again["settings"]["repeat"] != first["repeat"]:
                key = (again["settings"]["repeat"], again["command"], again["date"])
                apart.setdefault(key, []).append(name)
        others = "".join(f"; {join_words(names)}: {repeat} runs, from `{command}` on {date}"
                         for (repeat, command, date), names in apart.items())
        print(f"\nMedians of {runs} of {first['duration']} s each after a"
              f" {first['warmup']} s warm-up{f' ({others[2:]})' if others else ''};"
              f" {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}."
              " Each ratio divides a server's median by the highest stage's, measured in the"
              " same run: above 1 is better for msg/s and MiB/s, below 1 for latency, CPU and"
              " memory. CPU µs/msg is the server's CPU time (user + system, from /proc) over"
              " echoload's measured window divided by the messages echoed in it; CPU busy is"
              " CPU seconds per second of that window (100% = one core).")
        if self.marked:
            print(f"\n‡ echoload was busy at least {CLIENT_BOUND:.0%} of the window: with 2"
                  " cores, the load generator shares the machine with the server, so this"
                  " figure is limited by the client as much as by the server.")
        if "threads" in scenarios:
            print("\nWith 2 threads the server and echoload share the 2 cores: the server can"
                  " only use what echoload leaves, so the 2-thread figures show how a server"
                  " behaves with a second core it must share, not how it scales.")
        if first.get("quick"):
            print("\n**Quick smoke run (--quick): runs too short to quote.**")


def join_words(words):
    """['a', 'b', 'c'] -> 'a, b and c'."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def save(measured, servers, output, only):
    data = json.loads(output.read_text()) if output.exists() else {}
    # Scenarios run with --only join the saved ones measured on this machine; a full run, or
    # one on another machine, replaces them.
    if not only or data.get("machine") != machine():
        data = {"scenarios": {}, "servers": {}}
    data["date"] = datetime.date.today().isoformat()
    data["machine"] = machine()
    for server in servers:
        data["servers"][server.key] = {"label": server.label, "stage": server.stage,
                                       "binary": str(server.binary.relative_to(ROOT))}
    data["scenarios"].update(measured)
    data["scenarios"] = {name: data["scenarios"][name] for name in SCENARIOS
                         if name in data["scenarios"]}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(data, indent=1) + "\n")
    return data


def command_run(args):
    settings = Settings(duration=2.0, warmup=0.5, repeat=3, idle_counts=[0, 1000, 5000, 10000],
                        memory_idle=5000, quick=args.quick)
    if args.quick:  # a smoke test of the whole path: each run takes about half a second
        settings.duration, settings.warmup, settings.repeat = 0.3, 0.1, 1
        settings.idle_counts, settings.memory_idle = [0, 1000], 1000
    settings.duration = args.duration or settings.duration
    settings.repeat = args.repeat or settings.repeat
    scenarios = [name for name in SCENARIOS if name in (args.only or SCENARIOS)]
    servers = find_servers()
    if not servers:
        fail("no server is built: make all peers (or make bench)")
    command = "bench/run.py " + " ".join(sys.argv[1:])
    measured = measure(scenarios, servers, settings, command.strip())
    data = save(measured, servers, args.output, args.only)
    Tables(data).print_all(scenarios)
    print(f"\n(saved to {args.output}; `bench/run.py plot` draws the plots)", file=sys.stderr)


def command_table(args):
    data = json.loads(args.output.read_text())
    Tables(data).print_all(list(data["scenarios"]))


def command_plot(args):
    try:
        import plots
    except ImportError as e:
        fail(f"the plots need python3-matplotlib ({e}): make bench-deps, and run"
             " /usr/bin/python3 bench/run.py plot")
    for path in plots.draw(json.loads(args.output.read_text())):
        print(f"wrote {path.relative_to(ROOT)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=["run", "table", "plot"], default="run")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 0.3 s runs, 1 repeat, fewer idle connections")
    parser.add_argument("--repeat", type=int, help="runs per case, the median quoted (3)")
    parser.add_argument("--duration", type=float, help="echoload's measured window (2 s)")
    parser.add_argument("--only", action="append", choices=SCENARIOS,
                        help="run this scenario only (repeatable); the others saved stay")
    parser.add_argument("--output", type=Path, default=DATA,
                        help="the results file that a run writes and table and plot read"
                        f" ({DATA.relative_to(ROOT)})")
    args = parser.parse_args()
    args.output = args.output.resolve()
    {"run": command_run, "table": command_table, "plot": command_plot}[args.command](args)


if __name__ == "__main__":
    main()
