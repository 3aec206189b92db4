#!/usr/bin/env python3
"""What idle connections cost an event loop: one active ping-pong client's round trip while
K idle connections are open, per stage. poll() hands the kernel the whole table on every call,
so its round trip grows with K; epoll keeps the interest list in the kernel and stays flat.

    bench/idle_cost.py run --stage 1 [--stage 2 ...] [--idle 0,1000,5000,10000] [--repeat 3]
                           [--duration 3] [--out PATH] [--save]
    bench/idle_cost.py plot [--data PATH] [--out SVG] [--save]

`run` starts each stage's server (descriptor limit raised, pinned to one core, echoload on the
other), runs tools/echoload once per idle count, repeat and stage, the stages taking turns,
prints a markdown table of the medians of this run's stages, and no others, and writes them to
build/bench/idle-cost.json (or --out PATH), replacing what was there. `plot` draws a results
file (default build/bench/idle-cost.json) as an SVG of the same name in build/bench/ (or --out
SVG); it needs matplotlib (Debian's python3-matplotlib, for /usr/bin/python3: make bench-deps).

A reader's run changes no file of the repository. The course's own figures live in
docs/data/NAME.json and docs/img/NAME.svg, and only --save writes there: it makes
docs/data/idle-cost.json the default of `run --out` and of `plot --data`, and draws to
docs/img/NAME.svg. Chapters 01 and 02's figures are refreshed with

    bench/idle_cost.py run --stage 1 --stage 2 --save
    bench/idle_cost.py plot --save
"""

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

from common import (ROOT, STAGE_NAMES, fail, machine, run_echoload, stage_binary, start_server,
                    stop)

# Where a reader's runs and plots go (build/ is not tracked), and the course's own figures.
RESULTS = ROOT / "build" / "bench" / "idle-cost.json"
DOCS = ROOT / "docs"
DOCS_DATA = DOCS / "data" / "idle-cost.json"
DOCS_IMG = DOCS / "img"

MATPLOTLIB_HINT = (
    "the plot needs matplotlib, which {python} cannot import. On Debian it is python3-matplotlib,"
    " installed for /usr/bin/python3: `make bench-deps` (or `sudo apt-get install"
    " python3-matplotlib`), then `/usr/bin/python3 bench/idle_cost.py plot`")


def in_docs(path):
    return path.resolve().is_relative_to(DOCS.resolve())


def results_path(args):
    """The file `run` writes: --out, else build/bench/ (docs/data/ with --save). Refuses to
    write into docs/ without --save, so that a reader's run leaves the course's figures alone."""
    path = args.out or (DOCS_DATA if args.save else RESULTS)
    if in_docs(path) and not args.save:
        fail(f"{path} is in docs/, where the course's own figures live; a run writes there only"
             f" with --save (leave out --out to write {RESULTS.relative_to(ROOT)})")
    return path


def plot_paths(args):
    """(results file to draw, SVG to write) for `plot`: build/bench/ by default; with --save,
    docs/data/ and docs/img/."""
    data = args.data or (DOCS_DATA if args.save else RESULTS)
    svg = args.out or ((DOCS_IMG if args.save else RESULTS.parent) / (data.stem + ".svg"))
    if in_docs(svg) and not args.save:
        fail(f"{svg} is in docs/, where the course's own plots live; plot writes there only"
             f" with --save (leave out --out to write {shown(RESULTS.parent)}/)")
    return data, svg


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
    path = results_path(args)
    # Only this run's stages: a table or a plot never puts figures of different runs side by side.
    data = {"machine": machine(),
            "command": "bench/idle_cost.py " + " ".join(args.argv),
            "stages": {str(stage): rows for stage, rows in
                       measure(args.stage, idle_counts, args.repeat, args.duration).items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print_table(data)
    runs = "1 run" if args.repeat == 1 else f"{args.repeat} runs"
    print(f"\n(medians of {runs} of {args.duration:g} s each, all measured in this run;"
          f" {data['machine']['cpu']}, {data['machine']['cores']} cores,"
          f" Linux {data['machine']['kernel']}; saved to {shown(path)})")


def shown(path):
    """A path as the reader would type it: relative to the repository where it is inside it."""
    path = path.resolve()
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def command_plot(args):
    data_path, svg = plot_paths(args)
    try:
        import matplotlib
    except ImportError:
        fail(MATPLOTLIB_HINT.format(python=sys.executable))
    matplotlib.use("svg")
    matplotlib.rcParams["svg.hashsalt"] = "idle-cost"  # the same results draw the same bytes
    import matplotlib.pyplot as plt

    if not data_path.exists():
        fail(f"no results in {shown(data_path)}: run `bench/idle_cost.py run --stage 1` first,"
             f" or draw the course's with --data {DOCS_DATA.relative_to(ROOT)}")
    data = json.loads(data_path.read_text())
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
    svg.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(svg, metadata={"Date": None})
    print(f"wrote {shown(svg)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="measure, print the table, save the results")
    run.add_argument("--stage", type=int, action="append", required=True)
    run.add_argument("--idle", default="0,1000,5000,10000")
    run.add_argument("--repeat", type=int, default=3)
    run.add_argument("--duration", type=float, default=3.0)
    run.add_argument("--out", type=Path, default=None,
                     help=f"the results file to write (default {RESULTS.relative_to(ROOT)};"
                          f" with --save, {DOCS_DATA.relative_to(ROOT)})")
    plot = commands.add_parser("plot", help="draw saved results as an SVG")
    plot.add_argument("--data", type=Path, default=None,
                      help=f"the results file to draw (default {RESULTS.relative_to(ROOT)};"
                           f" with --save, {DOCS_DATA.relative_to(ROOT)})")
    plot.add_argument("--out", type=Path, default=None,
                      help=f"the SVG to write (default {RESULTS.parent.relative_to(ROOT)}/NAME.svg,"
                           f" NAME from the results file; with --save, docs/img/NAME.svg)")
    for command in (run, plot):
        command.add_argument("--save", action="store_true",
                             help="refresh the course's own figures in docs/ (for whoever"
                                  " maintains them; a reader's run leaves docs/ alone)")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv  # recorded with the results
    {"run": command_run, "plot": command_plot}[args.command](args)


if __name__ == "__main__":
    main()
