#!/usr/bin/env python3
"""What idle connections cost an event loop: one active ping-pong client's round trip while
K idle connections are open, per stage. poll() hands the kernel the whole table on every call,
so its round trip grows with K; epoll keeps the interest list in the kernel and stays flat.

    bench/idle_cost.py run --stage 1 [--stage 2 ...] [--idle 0,1000,5000,10000] [--repeat 3]
                           [--data docs/data/NAME.json]
    bench/idle_cost.py plot [--data docs/data/NAME.json]

`run` starts each stage's server (descriptor limit raised, pinned to one core, echoload on the
other), runs tools/echoload once per idle count, repeat and stage, the stages taking turns,
prints a markdown table of medians and merges them into the data file (default
docs/data/idle-cost.json). `plot` draws docs/img/NAME.svg from it (needs python3-matplotlib).
"""

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

from common import (ROOT, STAGE_NAMES, machine, run_echoload, stage_binary, start_server,
                    stop)

DATA = ROOT / "docs" / "data" / "idle-cost.json"


def plot_path(data_path):
    """docs/data/NAME.json is drawn as docs/img/NAME.svg."""
    return ROOT / "docs" / "img" / (data_path.stem + ".svg")


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
                    result = run_echoload(servers[stage][1], seconds, idle=idle)
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
    idle_counts = [int(x) for x in args.idle.split(",")]
    path = args.data
    data = json.loads(path.read_text()) if path.exists() else {"stages": {}}
    data["machine"] = machine()
    data["command"] = "bench/idle_cost.py run " + " ".join(sys.argv[2:])
    for stage, rows in measure(args.stage, idle_counts, args.repeat, args.duration).items():
        data["stages"][str(stage)] = rows
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print_table(data)
    print(f"\n(medians of {args.repeat} runs of {args.duration} s each; {data['machine']['cpu']},"
          f" {data['machine']['cores']} cores, Linux {data['machine']['kernel']};"
          f" saved to {path})")


def command_plot(args):
    import matplotlib
    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    data = json.loads(args.data.read_text())
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
    plot = plot_path(args.data)
    plot.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(plot, metadata={"Date": None})
    print(f"wrote {plot.relative_to(ROOT)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="measure and save")
    run.add_argument("--stage", type=int, action="append", required=True)
    run.add_argument("--idle", default="0,1000,5000,10000")
    run.add_argument("--repeat", type=int, default=3)
    run.add_argument("--duration", type=float, default=3.0)
    plot = commands.add_parser("plot", help="draw the saved results")
    for command in (run, plot):
        command.add_argument("--data", type=Path, default=DATA,
                             help="the results file (default docs/data/idle-cost.json); its"
                                  " plot goes to docs/img/, named after it")
    args = parser.parse_args()
    {"run": command_run, "plot": command_plot}[args.command](args)


if __name__ == "__main__":
    main()
