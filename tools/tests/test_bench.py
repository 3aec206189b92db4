"""Tests of the bench scripts' arithmetic: /usr/bin/python3 -m pytest tools/tests

The benchmarks themselves are figures, not tests; what can be tested without a run is that
strace's table is read right and that the tables divide by the right reference.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "bench"))

import run  # noqa: E402  (found through the path set just above)
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
