"""The plots of docs/benchmarks.md, drawn from the results bench/run.py saved
(`bench/run.py plot`; needs Debian's python3-matplotlib):

    docs/img/bench-idle.svg        round trip vs idle connections, per stage
    docs/img/bench-throughput.svg  small-message throughput, per stage and peer
    docs/img/bench-memory.svg      resident memory per idle connection, per stage and peer

The same results draw the same bytes: no date in the SVG's metadata, and fixed element ids.
"""

import matplotlib
import matplotlib.ticker

matplotlib.use("svg")
matplotlib.rcParams["svg.hashsalt"] = "bench"  # ids from this salt, not random ones

import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)

from common import ROOT  # noqa: E402

IMG = ROOT / "docs" / "img"
STAGE_COLOR, PEER_COLOR = "tab:blue", "tab:gray"


def footer(figure, data, scenario):
    m = data["machine"]
    run = data["scenarios"][scenario]
    text = (f"{m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; {run['date']};"
            f" medians of {run['settings']['repeat']} runs")
    if run["settings"].get("quick"):
        text += "; QUICK SMOKE RUN, NOT A MEASUREMENT"
    figure.text(0.01, 0.01, text, fontsize=7, color="gray")


def save(figure, name):
    figure.tight_layout(rect=(0, 0.03, 1, 1))  # room for the footer
    IMG.mkdir(parents=True, exist_ok=True)
    path = IMG / name
    figure.savefig(path, metadata={"Date": None})
    plt.close(figure)
    return path


def bars(data, scenario, title, xlabel, rows):
    """A horizontal bar per (label, value, is_stage) row, the value written at its end."""
    figure, axes = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.5))
    labels = [label for label, _, _ in rows]
    values = [value for _, value, _ in rows]
    colors = [STAGE_COLOR if is_stage else PEER_COLOR for _, _, is_stage in rows]
    axes.barh(labels, values, color=colors)
    axes.invert_yaxis()  # the first row on top
    for y, value in enumerate(values):
        axes.text(value, y, f" {value:,.0f}", va="center", fontsize=8)
    axes.set_xlim(right=max(values) * 1.2)
    axes.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    axes.set_xlabel(xlabel)
    axes.set_title(title)
    axes.grid(True, axis="x", alpha=0.3)
    footer(figure, data, scenario)
    return figure


def idle_plot(data):
    results = data["scenarios"]["idle"]["results"]
    figure, axes = plt.subplots(figsize=(7, 4))
    for server in dict.fromkeys(r["server"] for r in results):
        rows = sorted((r for r in results if r["server"] == server), key=lambda r: r["idle"])
        idle = [r["idle"] for r in rows]
        label = data["servers"][server]["label"]
        line, = axes.plot(idle, [r["median"]["p50_us"] for r in rows], marker="o",
                          label=f"{label}, median")
        axes.plot(idle, [r["median"]["p99_us"] for r in rows], linestyle="--",
                  color=line.get_color(), label=f"{label}, p99")
    axes.set_xlabel("idle connections open")
    axes.set_ylabel("round trip of the one active client (µs)")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title("One active client among idle ones")
    footer(figure, data, "idle")
    return save(figure, "bench-idle.svg")


def throughput_plot(data):
    """Scenario small with each server's default threads, then the 2-thread runs if any."""
    servers = data["servers"]
    rows = [(servers[r["server"]]["label"], r["median"]["messages_per_s"],
             servers[r["server"]]["stage"] > 0) for r in data["scenarios"]["small"]["results"]]
    threads = data["scenarios"].get("threads", {"results": []})["results"]
    rows += [(servers[r["server"]]["label"] + ", 2 threads", r["median"]["messages_per_s"],
              servers[r["server"]]["stage"] > 0) for r in threads if r["threads"] == 2]
    figure = bars(data, "small", "Small messages: 50 connections, 64 B, depth 16",
                  "echoed messages per second", rows)
    return save(figure, "bench-throughput.svg")


def memory_plot(data):
    servers = data["servers"]
    results = data["scenarios"]["memory"]["results"]
    rows = [(servers[r["server"]]["label"], r["median"]["bytes_per_connection"],
             servers[r["server"]]["stage"] > 0) for r in results]
    figure = bars(data, "memory", f"Resident memory per idle connection ({results[0]['idle']:,}"
                  " open)", "bytes of the server's VmRSS per idle connection", rows)
    return save(figure, "bench-memory.svg")


def draw(data):
    """Draws each plot whose scenario is in the results; returns the paths written."""
    scenarios = data["scenarios"]
    plots = [("idle", idle_plot), ("small", throughput_plot), ("memory", memory_plot)]
    return [plot(data) for name, plot in plots if scenarios.get(name, {}).get("results")]
