#!/usr/bin/env python3
"""What idle connections cost an event loop: one active ping-pong client's round trip while
K idle connections are open, per stage. poll() hands the kernel the whole table on every call,
so its round trip grows with K; epoll keeps the interest list in the kernel and stays flat.

    bench/idle_cost.py run --stage 1 [--stage 2 ...] [--idle 0,1000,5000,10000] [--repeat 3]
    bench/idle_cost.py plot

`run` starts each stage's server (descriptor limit raised, pinned to one core, echoload on the
other), runs tools/echoload once per idle count, repeat and stage, the stages taking turns,
prints a markdown table of medians and merges them into docs/data/idle-cost.json. `plot` draws docs/img/idle-cost.svg
from that file (needs python3-matplotlib).
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "data" / "idle-cost.json"
PLOT = ROOT / "docs" / "img" / "idle-cost.svg"
ECHOLOAD = ROOT / "build" / "tools" / "echoload" / "echoload"
STAGE_NAMES = {1: "poll", 2: "epoll LT", 3: "epoll ET", 4: "coroutines", 5: "full server"}


def stage_binary(stage):
    matches = sorted(ROOT.glob(f"0{stage}-*"))
    if not matches:
        sys.exit(f"idle_cost: there is no stage {stage}")
    return ROOT / "build" / matches[0].name / "server"


def machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release()}


def pinned(core, nofile=None):
    def setup():
        os.sched_setaffinity(0, {core})
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    return setup


def start_server(binary, nofile):
    proc = subprocess.Popen([str(binary), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, preexec_fn=pinned(0, nofile))
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("listening on "):
        proc.kill()
        sys.exit(f"idle_cost: {binary} did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_echoload(port, idle, seconds):
    command = [str(ECHOLOAD), "--port", str(port), "--idle", str(idle), "--connections", "1",
               "--depth", "1", "--size", "64", "--warmup", "1", "--duration", str(seconds),
               "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120 + seconds,
                          preexec_fn=pinned(1 % os.cpu_count()))
    if done.returncode != 0:
        sys.exit(f"idle_cost: {' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout)


def measure(stages, idle_counts, repeat, seconds):
    """Runs every stage side by side: all servers stay up, and each idle count's repeats take
    turns between the stages, so a noisy minute on a shared machine hits them alike."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # echoload inherits it
    servers = {}
    runs = {stage: {idle: [] for idle in idle_counts} for stage in stages}
    try:
        for stage in stages:
            servers[stage] = start_server(stage_binary(stage), hard)
        for idle in idle_counts:
            for i in range(repeat):
                for stage in stages:
                    print(f"  {idle} idle, run {i + 1}/{repeat}, stage {stage} ...", end="",
                          flush=True, file=sys.stderr)
                    result = run_echoload(servers[stage][1], idle, seconds)
                    print(f" p50 {result['rtt_us']['p50']:.1f} us", file=sys.stderr)
                    runs[stage][idle].append(result)
                    # Let the server close this run's idle connections before the next run.
                    time.sleep(0.5 + idle / 10000)
    finally:
        for proc, _ in servers.values():
            stop(proc)
    return {stage: [{
        "idle": idle,
        "p50_us": statistics.median(r["rtt_us"]["p50"] for r in runs[stage][idle]),
        "p99_us": statistics.median(r["rtt_us"]["p99"] for r in runs[stage][idle]),
        "messages_per_s": statistics.median(r["messages_per_s"] for r in runs[stage][idle]),
        "runs": repeat,
    } for idle in idle_counts] for stage in stages}


def print_table(data):
    stages = sorted(data["stages"], key=int)
    print("| idle connections | " + " | ".join(
        f"stage {s} ({STAGE_NAMES[int(s)]}) p50 / p99 µs" for s in stages) + " |")
    print("| ---: | " + " | ".join("---:" for _ in stages) + " |")
    idle_counts = sorted({row["idle"] for s in stages for row in data["stages"][s]})
    for idle in idle_counts:
        cells = []
        for s in stages:
            row = next((r for r in data["stages"][s] if r["idle"] == idle), None)
            cells.append(f"{row['p50_us']:.0f} / {row['p99_us']:.0f}" if row else "")
        print(f"| {idle} | " + " | ".join(cells) + " |")


def command_run(args):
    if not ECHOLOAD.exists():
        sys.exit("idle_cost: build the load generator first: make echoload")
    idle_counts = [int(x) for x in args.idle.split(",")]
    data = json.loads(DATA.read_text()) if DATA.exists() else {"stages": {}}
    data["machine"] = machine()
    data["command"] = "bench/idle_cost.py run " + " ".join(sys.argv[2:])
    for stage, rows in measure(args.stage, idle_counts, args.repeat, args.duration).items():
        data["stages"][str(stage)] = rows
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(data, indent=2) + "\n")
    print_table(data)
    print(f"\n(medians of {args.repeat} runs of {args.duration} s each; {data['machine']['cpu']},"
          f" {data['machine']['cores']} cores, Linux {data['machine']['kernel']};"
          f" saved to {DATA.relative_to(ROOT)})")


def command_plot(_args):
    import matplotlib
    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    data = json.loads(DATA.read_text())
    figure, axes = plt.subplots(figsize=(7, 4))
    for stage in sorted(data["stages"], key=int):
        rows = data["stages"][stage]
        idle = [r["idle"] for r in rows]
        line, = axes.plot(idle, [r["p50_us"] for r in rows], marker="o",
                          label=f"stage {stage} ({STAGE_NAMES[int(stage)]}), median")
        axes.plot(idle, [r["p99_us"] for r in rows], linestyle="--", color=line.get_color(),
                  label=f"stage {stage}, p99")
    axes.set_xlabel("idle connections open")
    axes.set_ylabel("round trip of the one active client (µs)")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend()
    axes.set_title("One active client among idle ones")
    figure.text(0.01, 0.01, f"{data['machine']['cpu']}, {data['machine']['cores']} cores",
                fontsize=7, color="gray")
    figure.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(PLOT, metadata={"Date": None})
    print(f"wrote {PLOT.relative_to(ROOT)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="measure and save")
    run.add_argument("--stage", type=int, action="append", required=True)
    run.add_argument("--idle", default="0,1000,5000,10000")
    run.add_argument("--repeat", type=int, default=3)
    run.add_argument("--duration", type=float, default=3.0)
    commands.add_parser("plot", help="draw the saved results")
    args = parser.parse_args()
    {"run": command_run, "plot": command_plot}[args.command](args)


if __name__ == "__main__":
    main()
