"""Tests of the bench scripts: /usr/bin/python3 -m pytest tools/tests

The benchmarks themselves are figures, not tests; what can be tested without a run is that
strace's table is read right, that the tables divide by the right reference, and that
bench/idle_cost.py writes where it should and prints only what it measured.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "bench"))

import idle_cost  # noqa: E402  (found through the path set just above)
import run  # noqa: E402
import syscalls  # noqa: E402

# strace -c's table as strace 6.1 prints it: the errors column is blank when there were none.
STRACE_SUMMARY = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 48.33    0.120833           5     22406       246 recvfrom
 40.10    0.100251           4     22331           sendto
  9.01    0.022531          50       450           epoll_wait
  0.02    0.000050           0       102           epoll_ctl
------ ----------- ----------- --------- --------- ----------------
100.00    0.250000           5     45289       246 total
"""


def test_strace_summary_read_with_and_without_errors():
    counts = syscalls.parse_summary(STRACE_SUMMARY)
    assert counts == {"recvfrom": (22406, 246), "sendto": (22331, 0),
                      "epoll_wait": (450, 0), "epoll_ctl": (102, 0)}


def small_result(server, messages_per_s, cpu_us):
    median = {"messages_per_s": messages_per_s, "mib_per_s": 1.0, "p50_us": 100.0,
              "p99_us": 200.0, "cpu_us_per_message": cpu_us, "server_busy": 0.5,
              "client_busy": 0.95}
    return {"server": server, "idle": 0, "median": median}


def test_ratios_divide_by_the_highest_stage_in_the_same_run(capsys):
    data = {
        "machine": {"cpu": "test CPU", "cores": 2, "kernel": "6.1"},
        "servers": {"stage-1": {"label": "stage 1", "stage": 1},
                    "stage-3": {"label": "stage 3", "stage": 3},
                    "asio": {"label": "Boost.Asio", "stage": 0}},
        "scenarios": {"small": {"settings": {"repeat": 3, "duration": 2.0, "warmup": 0.5},
                                "results": [small_result("stage-1", 50000, 4.0),
                                            small_result("stage-3", 100000, 2.0),
                                            small_result("asio", 80000, 3.0)]}},
    }
    run.Tables(data).print_all(["small"])
    rows = {line.split(" | ")[0].strip("| "): line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and "---" not in line}
    # msg/s against stage 3's 100,000, and CPU per message against its 2.0 µs; ‡ marks the
    # figures for which echoload was busy at least 90% of the window.
    assert "| 50,000 ‡ | 0.50x |" in rows["stage 1"] and "| 2.00x |" in rows["stage 1"]
    assert "| 100,000 ‡ | 1.00x |" in rows["stage 3"]
    assert "| 80,000 ‡ | 0.80x |" in rows["Boost.Asio"] and "| 1.50x |" in rows["Boost.Asio"]


# bench/idle_cost.py: a reader's run and plot leave the repository's files alone, and print
# only what they measured. The measurement itself is replaced by canned rows: the tests check
# where results go and what is printed, not the figures.

DOCS = REPO / "docs"


def docs_fingerprint():
    """Every file under docs/data and docs/img with a hash of its bytes and its mtime."""
    return {path: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
            for folder in (DOCS / "data", DOCS / "img") for path in sorted(folder.rglob("*"))
            if path.is_file()}


def canned_measure(stages, idle_counts, repeat, seconds):
    return {stage: [{"idle": idle, "p50_us": 100.0 * stage + idle, "p99_us": 300.0 * stage,
                     "messages_per_s": 1000.0, "runs": repeat} for idle in idle_counts]
            for stage in stages}


@pytest.fixture
def no_measurement(monkeypatch):
    monkeypatch.setattr(idle_cost, "measure", canned_measure)
    monkeypatch.setattr(idle_cost, "machine",
                        lambda: {"cpu": "test CPU", "cores": 2, "kernel": "6.1"})


def test_idle_cost_run_writes_out_and_leaves_docs_alone(no_measurement, tmp_path, capsys):
    before = docs_fingerprint()
    out = tmp_path / "idle.json"
    idle_cost.main(["run", "--stage", "1", "--idle", "0,1000", "--out", str(out)])
    assert docs_fingerprint() == before, "a run with --out changed docs/data or docs/img"
    saved = json.loads(out.read_text())
    assert list(saved["stages"]) == ["1"]
    assert [row["idle"] for row in saved["stages"]["1"]] == [0, 1000]


def test_idle_cost_run_prints_and_saves_only_the_stages_it_measured(no_measurement, tmp_path,
                                                                  capsys):
    out = tmp_path / "idle.json"
    # An earlier run's stage 2 in the same file must not reappear beside this run's stage 1.
    out.write_text(json.dumps({"machine": {}, "stages": {"2": canned_measure([2], [0], 3, 1)[2]}}))
    idle_cost.main(["run", "--stage", "1", "--idle", "0", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "stage 1 (poll)" in printed and "stage 2" not in printed, printed
    assert "| 0 | 100 / 300 |" in printed, printed
    assert list(json.loads(out.read_text())["stages"]) == ["1"]


def test_idle_cost_default_destinations_are_in_build_not_docs():
    reader = argparse.Namespace(out=None, save=False)
    assert idle_cost.results_path(reader) == REPO / "build" / "bench" / "idle-cost.json"
    data, svg = idle_cost.plot_paths(argparse.Namespace(data=None, out=None, save=False))
    assert data == REPO / "build" / "bench" / "idle-cost.json"
    assert svg == REPO / "build" / "bench" / "idle-cost.svg"
    # --save is the one way to the course's own files.
    assert idle_cost.results_path(argparse.Namespace(out=None, save=True)) == \
        DOCS / "data" / "idle-cost.json"
    data, svg = idle_cost.plot_paths(argparse.Namespace(
        data=DOCS / "data" / "idle-cost-03.json", out=None, save=True))
    assert svg == DOCS / "img" / "idle-cost-03.svg"
    # Drawing the course's figures without --save draws them into build/, not over docs/img.
    data, svg = idle_cost.plot_paths(argparse.Namespace(
        data=DOCS / "data" / "idle-cost.json", out=None, save=False))
    assert svg == REPO / "build" / "bench" / "idle-cost.svg"


def test_idle_cost_run_into_docs_needs_save(no_measurement, capsys):
    before = docs_fingerprint()
    with pytest.raises(SystemExit) as exit_info:
        idle_cost.main(["run", "--stage", "1", "--idle", "0",
                        "--out", str(DOCS / "data" / "idle-cost.json")])
    assert "--save" in str(exit_info.value.code)
    assert docs_fingerprint() == before


def test_idle_cost_plot_without_matplotlib_says_how_to_get_it(tmp_path):
    # A matplotlib package that fails to import stands for one that is not installed, on a
    # machine that has the real one too.
    hidden = tmp_path / "hide"
    (hidden / "matplotlib").mkdir(parents=True)
    (hidden / "matplotlib" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'matplotlib'\", name='matplotlib')\n")
    data = tmp_path / "idle.json"
    data.write_text(json.dumps({"machine": {"cpu": "x", "cores": 2, "kernel": "6.1"},
                                "stages": {"1": canned_measure([1], [0], 1, 1)[1]}}))
    env = dict(os.environ, PYTHONPATH=str(hidden))
    done = subprocess.run([sys.executable, str(REPO / "bench" / "idle_cost.py"), "plot",
                           "--data", str(data), "--out", str(tmp_path / "idle.svg")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert "python3-matplotlib" in done.stderr and "make bench-deps" in done.stderr, done.stderr
    assert not (tmp_path / "idle.svg").exists()
