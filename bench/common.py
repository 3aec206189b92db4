"""What the bench scripts share: finding a stage's server, starting it pinned to a core,
running tools/echoload against it, and reading a process's CPU time and memory from /proc."""

import json
import os
import platform
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ECHOLOAD = ROOT / "build" / "tools" / "echoload" / "echoload"
STAGE_NAMES = {1: "poll", 2: "epoll LT", 3: "epoll ET", 4: "coroutines", 5: "full server",
               6: "io_uring"}
TOOL = Path(sys.argv[0]).stem  # names the script in its error messages


def fail(message):
    sys.exit(f"{TOOL}: {message}")


def server_of(stage_dir):
    """Where `make stage-N` puts the server of a stage directory such as 03-epoll-edge."""
    return ROOT / "build" / stage_dir.name / "server"


def stage_binary(stage):
    matches = sorted(ROOT.glob(f"0{stage}-*"))
    if not matches:
        fail(f"there is no stage {stage}")
    binary = server_of(matches[0])
    if not binary.exists():
        fail(f"{binary.relative_to(ROOT)} is not built: make stage-{stage}")
    return binary


def built_stages():
    """{stage number: server binary} for every stage directory whose server is built."""
    return {int(d.name[1]): server_of(d) for d in sorted(ROOT.glob("0[1-6]-*"))
            if server_of(d).exists()}


def machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release()}


def pinned(cores, nofile=None):
    """A preexec_fn: run the child on one core (or a set of cores), with its descriptor limit
    at nofile."""
    cores = {cores} if isinstance(cores, int) else set(cores)

    def setup():
        os.sched_setaffinity(0, {core % os.cpu_count() for core in cores})
        if nofile is not None:
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    return setup


def start_server(binary, nofile=None, args=(), cores=0):
    """Starts a server on a free port, pinned to core 0 (or to `cores`), with any extra
    arguments such as ("--threads", "2"); returns (process, port)."""
    proc = subprocess.Popen([str(binary), "--port", "0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, preexec_fn=pinned(cores, nofile))
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("listening on "):
        proc.kill()
        fail(f"{binary} did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_echoload(port, seconds, idle=0, connections=1, depth=1, size=64, rcvbuf=0, warmup=1.0,
                 core=1, during=None):
    """One echoload run, pinned to core 1 (or `core`); returns its JSON report.

    during(pid), if given, runs in a thread from the moment echoload has opened its connections
    and starts sending (its warm-up begins), with echoload's PID. The run waits for it before
    reaping echoload, so /proc/PID stays readable in it until it returns."""
    if not ECHOLOAD.exists():
        fail("build the load generator first: make echoload")
    command = [str(ECHOLOAD), "--port", str(port), "--idle", str(idle),
               "--connections", str(connections), "--depth", str(depth), "--size", str(size),
               "--rcvbuf", str(rcvbuf), "--warmup", str(warmup), "--duration", str(seconds), "--json"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=pinned(core))
    watchdog = threading.Timer(120 + seconds, proc.kill)  # a hung run fails instead of hanging
    watchdog.start()
    helper = None
    progress = []
    # echoload writes progress lines on stderr as it goes and its report on stdout at the end;
    # the report is small, so reading stderr to its end first cannot fill the stdout pipe.
    for line in proc.stderr:
        progress.append(line)
        if during is not None and helper is None and line.startswith("echoload: warming up"):
            helper = threading.Thread(target=during, args=(proc.pid,))
            helper.start()
    report = proc.stdout.read()
    if helper is not None:
        helper.join()
    proc.wait()
    watchdog.cancel()
    if proc.returncode != 0:
        fail(f"{' '.join(command)} failed:\n{report}{''.join(progress)}")
    return json.loads(report)


def cpu_seconds(pid):
    """The CPU time (user + system, all threads) process pid has used, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name in field 2 may hold spaces, so split after its closing parenthesis:
        # fields[0] is then field 3 (state), and utime and stime, fields 14 and 15, are 11 and 12.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    """The resident memory (VmRSS) of process pid in KiB, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    fail(f"/proc/{pid}/status has no VmRSS line")
