#!/usr/bin/env python3
"""The labs: a learner writes each stage in a workspace of their own, graded milestone by
milestone (tests/milestones.py, LABS) by the shared black-box suite.

    python3 tools/lab.py new N [--root DIR]
        Creates lab N's workspace, DIR/0N-<name>/ (DIR defaults to lab/), seeded, a git
        repository with one commit, and builds it. Refuses a workspace that exists.
    python3 tools/lab.py check N [--milestone K] [--server PATH | --lab DIR] [--quick] [--root DIR]
        Builds the workspace (or the directory DIR, e.g. 02-epoll-level), then grades it milestone
        by milestone, stopping at the first one not passed. Exit 0 when every graded one passed.
    python3 tools/lab.py status [--root DIR]
        Every lab: its workspace, its last grade, whether it changed since. Grades nothing.
    python3 tools/lab.py table N
        The markdown table of lab N's milestones that docs/labs.md shows.
    python3 tools/lab.py check-docs
        Every milestone's `read` is a heading of its chapter; docs/labs.md holds every table.
    python3 tools/lab.py selfcheck
        The seeds and the structural checks behave as the labs guide says (quick, for make test).
    python3 tools/lab.py grade-references
        Every reference stage passes every milestone of its lab, slow tests included (for CI).

A workspace builds into build/lab/0N-<name>/ (with --root DIR: DIR/build/0N-<name>/), never into
a stage's build/<stage-dir>/; its last grade is kept there, in grade.json. A lab that needs
io_uring (lab 6) is graded only where a process can set one up, and says so elsewhere. Standard library only;
grading runs pytest (the interpreter running this script must be able to import it) and g++.
"""

import argparse
import contextlib
import ctypes
import errno
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import examples  # noqa: E402  (tools/examples.py: the suite's JUnit report, read)
import links  # noqa: E402  (tools/links.py: GitHub's heading anchors)
import milestones  # noqa: E402  (tests/milestones.py, put on the path by examples)

LABS = milestones.LABS
STAGE_DIRS = {info["dir"] for info in LABS.values()}
LAB_ROOT = ROOT / "lab"
LAB_BUILD = ROOT / "build" / "lab"
GUIDE = ROOT / "docs" / "labs.md"
STRUCTURE = ROOT / "tests" / "lab" / "test_structure.py"
TASK_STUB = ROOT / "tools" / "lab" / "04-coroutines" / "task.hpp"
UNIT_MAIN = ROOT / "04-coroutines" / "test_main.cpp"
BLOCKING_SEED = ROOT / "examples" / "blocking_server.cpp"
LISTEN_HEADER = ROOT / "examples" / "listen.hpp"
# What a workspace holds besides the learner's own files (git's, the build's, the editor's:
# clangd keeps its index in .cache/): neither copied to the next lab's seed nor counted in its
# fingerprint.
NOT_SOURCES = (".git", "compile_commands.json", ".gitignore", ".cache", ".vscode", ".idea")
UNIT_FLAGS = ["-std=c++20", "-Wall", "-Wextra", "-Wpedantic", "-O1", "-g"]
# A TEST_CASE that runs longer than this has hung.
UNIT_TIMEOUT_SECONDS = 60
# The most a pytest run may take per test it names, and the whole suite counted as this many,
# beyond the suite's own per-test timeouts: a hung server stops the grading, not the grader.
SECONDS_PER_TEST = 150
SUITE_AS_TESTS = 80
# How much of a failing test's message the grade shows: the suite's first line says what went
# wrong, the next ones what was sent, what was expected and what arrived.
REASON_LINES = 5
JOBS = f"-j{os.cpu_count() or 1}"
# What lab 6's seed Makefile gains: stage 6 links liburing, plumbing and no part of the lesson.
LIBURING = "-luring"
LINK_RECIPE = re.compile(r"^\t\$\(CXX\) \$\(ALL_FLAGS\) \$\^ -o \$@$", re.M)
# io_uring_setup(2): the same number on every architecture since Linux 5.1 (but alpha's);
# struct io_uring_params is 120 bytes, its flags the third 32-bit field.
IO_URING_SETUP = 425
IO_URING_PARAMS_SIZE = 120
IORING_SETUP_SINGLE_ISSUER = 1 << 12
IORING_SETUP_DEFER_TASKRUN = 1 << 13


def begin_marker(number):
    return f"<!-- lab-{number}-milestones: begin (tools/lab.py table {number} writes it) -->"


def end_marker(number):
    return f"<!-- lab-{number}-milestones: end -->"


# --- where things are ------------------------------------------------------------------------

def workspace(root, number):
    return root / LABS[number]["dir"]


def build_dir(root, number):
    """Where lab `number`'s workspace under `root` builds, and its grade is kept."""
    parent = LAB_BUILD if root.resolve() == LAB_ROOT.resolve() else root / "build"
    return parent / LABS[number]["dir"]


def shown(path):
    """`path` as the reader would type it from the repository's root."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def source_files(directory):
    """Every file of a workspace, in its subdirectories too, but for its git repository and
    what the build writes there: a header in net/, a .cc or a .h counts as much as main.cpp."""
    return sorted(p for p in directory.rglob("*")
                  if p.is_file() and not any(part in NOT_SOURCES
                                             for part in p.relative_to(directory).parts))


def fingerprint(directory):
    """A digest of a workspace's files (source_files): changes when any of them does."""
    digest = hashlib.sha256()
    for path in source_files(directory):
        name = path.relative_to(directory).as_posix()
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def load_grade(root, number):
    path = build_dir(root, number) / "grade.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def fully_passed(grade):
    """Every milestone passed, and with the slow tests: a QUICK=1 pass does not finish a lab."""
    keys = [m["key"] for m in LABS[grade["lab"]]["milestones"]]
    return all(grade["milestones"].get(k, {}).get("status") == "passed"
               and not grade["milestones"][k].get("quick") for k in keys)


def quick_only(grade):
    """The milestones that passed only with the slow tests left out."""
    return [k for k, m in grade["milestones"].items()
            if m.get("status") == "passed" and m.get("quick")]


def passed_count(grade):
    return sum(1 for m in LABS[grade["lab"]]["milestones"]
               if grade["milestones"].get(m["key"], {}).get("status") == "passed")


def heading_text(read):
    """The heading a milestone's `read` ("docs/FILE.md#anchor") points to, or None."""
    path, anchor = read.split("#", 1)
    return examples.headings(ROOT / path).get(anchor)


def io_uring_unavailable():
    """None when this machine lets a process set up an io_uring as lab 6's stage does (one
    thread submitting, completions run when it waits: Linux 6.1), else why not, in one line."""
    disabled = Path("/proc/sys/kernel/io_uring_disabled")
    try:
        if disabled.read_text().strip() == "2":
            return ("io_uring is switched off on this machine"
                    " (/proc/sys/kernel/io_uring_disabled is 2)")
    except OSError:
        pass  # before Linux 6.6 there is no such switch
    libc = ctypes.CDLL(None, use_errno=True)
    one_thread = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN
    for flags, missing in ((0, None), (one_thread, "IORING_SETUP_SINGLE_ISSUER and"
                                                   " IORING_SETUP_DEFER_TASKRUN (Linux 6.1)")):
        params = (ctypes.c_uint32 * (IO_URING_PARAMS_SIZE // 4))()
        params[2] = flags
        fd = libc.syscall(ctypes.c_long(IO_URING_SETUP), ctypes.c_uint(4), params)
        if fd >= 0:
            os.close(fd)
            continue
        code = ctypes.get_errno()
        if missing is not None and code == errno.EINVAL:
            return (f"this kernel ({os.uname().release}) has io_uring, but not {missing}, which"
                    f" lab 6 builds on")
        why = {errno.ENOSYS: "this kernel has no io_uring, or a sandbox (a container's seccomp"
                             " profile) hides it",
               errno.EPERM: "io_uring is not allowed for this process (a container's seccomp"
                            " profile, or /proc/sys/kernel/io_uring_disabled set to 1 and this"
                            " user not in its group)"}.get(code, os.strerror(code))
        return f"io_uring_setup failed with {errno.errorcode.get(code, code)}: {why}"
    return None


def link_liburing(target, number):
    """Lab `number`'s seed is stage number-1's, whose Makefile does not link liburing: the
    course's own Makefile of that stage is replaced by stage `number`'s, which does, and a
    Makefile the learner changed gets -luring on its link lines. Returns what to tell them."""
    makefile = target / "Makefile"
    if not makefile.is_file():
        return f"There is no Makefile: yours must link the server with {LIBURING}."
    previous = ROOT / LABS[number - 1]["dir"] / "Makefile"
    text = makefile.read_text(encoding="utf-8")
    # A workspace's Makefile differs from its stage's by the line point_build_root rewrites.
    if previous.is_file() and (without_build_root(text)
                               == without_build_root(previous.read_text(encoding="utf-8"))):
        shutil.copy2(ROOT / LABS[number]["dir"] / "Makefile", makefile)
        text = makefile.read_text(encoding="utf-8")
    if LIBURING in text:
        return "The Makefile links liburing already: #include <liburing.h> where you need it."
    linked, count = LINK_RECIPE.subn(lambda m: f"{m.group(0)} {LIBURING}", text)
    if count == 0:
        return (f"Your Makefile has no link line as stage {number - 1}'s is written: add"
                f" {LIBURING} to the command that links the server (and the unit tests), after"
                f" the objects.")
    makefile.write_text(linked, encoding="utf-8")
    return (f"Your Makefile now links liburing ({LIBURING} on its link lines): #include"
            f" <liburing.h> where you need it.")


# --- new -------------------------------------------------------------------------------------

def seed_source(root, number):
    """(directory to copy, one line saying which and why) for lab `number` >= 2."""
    previous = number - 1
    reference = ROOT / LABS[previous]["dir"]
    mine = workspace(root, previous)
    grade = load_grade(root, previous)
    if not mine.is_dir():
        why = f"you have no lab {previous} ({shown(mine)})"
    elif grade is None:
        why = f"your lab {previous} has no grade yet (make check-lab-{previous})"
    elif not fully_passed(grade) and passed_count(grade) == len(LABS[previous]["milestones"]):
        why = (f"your lab {previous} passed {', '.join(quick_only(grade))} only with QUICK=1"
               f" (make check-lab-{previous} runs the slow tests too)")
    elif not fully_passed(grade):
        why = (f"your lab {previous}'s last grade passed {passed_count(grade)} of"
               f" {len(LABS[previous]['milestones'])} milestones")
    elif grade["fingerprint"] != fingerprint(mine):
        why = f"your lab {previous} changed since its last grade (make check-lab-{previous})"
    else:
        return mine, (f"Seeded from your lab {previous} ({shown(mine)}): its last grade passed"
                      f" every milestone, and it has not changed since.")
    return reference, f"Seeded from the reference stage {reference.name}, because {why}."


def copy_files(source, target):
    """Copies a stage or a workspace, subdirectories included, into the new `target`."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*NOT_SOURCES))


def point_build_root(target, build_parent):
    """The stage Makefile builds into ../build/<dir>; a workspace's own `make` builds where
    make check-lab-N does."""
    makefile = target / "Makefile"
    if not makefile.is_file():
        return
    text = makefile.read_text(encoding="utf-8")
    relative = os.path.relpath(build_parent, target)
    makefile.write_text(re.sub(r"^BUILD_ROOT \?= \S*?(\$\(TREE_SUFFIX\))",
                               lambda m: f"BUILD_ROOT ?= {relative}{m.group(1)}", text,
                               count=1, flags=re.M), encoding="utf-8")


def without_build_root(makefile_text):
    """A Makefile's text but for its BUILD_ROOT line, the one point_build_root rewrites."""
    return re.sub(r"^BUILD_ROOT \?= .*$", "", makefile_text, count=1, flags=re.M)


def git(target, *arguments, identity=()):
    return subprocess.run(["git", *identity, *arguments], cwd=target, capture_output=True,
                          text=True)


def make_repository(target, number):
    """git init and a first commit: True, or says why not and goes on."""
    if shutil.which("git") is None:
        print("git is not installed: the workspace is not a git repository (install git and run"
              " `git init` there to keep your history).")
        return False
    git(target, "init", "-q")
    identity = ()
    if not (git(target, "config", "user.name").stdout.strip()
            and git(target, "config", "user.email").stdout.strip()):
        identity = ("-c", "user.name=lab", "-c", "user.email=lab@localhost")
    git(target, "add", "-A")
    commit = git(target, "commit", "-q", "-m", f"Lab {number}: the seed", identity=identity)
    if commit.returncode != 0:
        print(f"git commit failed ({commit.stderr.strip()}): commit the seed yourself.")
    return commit.returncode == 0


def build(directory, build_parent, *targets):
    """Builds `targets` of `directory`'s Makefile into build_parent/<directory name>/: None, or
    the compiler's output when it fails."""
    try:
        run = subprocess.run(["make", "--no-print-directory", JOBS, "-C", str(directory),
                              f"BUILD_ROOT={build_parent}", *targets],
                             capture_output=True, text=True)
    except FileNotFoundError:
        return "make is not installed (on Debian: apt-get install make g++)"
    return None if run.returncode == 0 else run.stdout + run.stderr


def new(number, root):
    info = LABS[number]
    target = workspace(root, number)
    if target.exists():
        print(f"error: {shown(target)} exists already. To start lab {number} over, move it away"
              f" or delete it yourself (no make target removes or overwrites it), then run"
              f" make lab-{number} again.", file=sys.stderr)
        return 1
    build_parent = build_dir(root, number).parent
    if number == 1:
        stage = ROOT / info["dir"]
        target.mkdir(parents=True)
        shutil.copy2(BLOCKING_SEED, target / "main.cpp")
        shutil.copy2(LISTEN_HEADER, target / "listen.hpp")
        shutil.copy2(stage / "Makefile", target / "Makefile")
        shutil.copy2(stage / "test_main.cpp", target / "test_main.cpp")
        why = ("Seeded with the introduction's blocking server (main.cpp, from"
               " examples/blocking_server.cpp), the command line and the listening socket ready"
               " in listen.hpp.")
    else:
        source, why = seed_source(root, number)
        target.parent.mkdir(parents=True, exist_ok=True)
        copy_files(source, target)
        if number == 4:
            shutil.copy2(TASK_STUB, target / "task.hpp")
            shutil.copy2(ROOT / milestones.TASK_TESTS, target / Path(milestones.TASK_TESTS).name)
            why += (" task.hpp declares Task<T> for you to finish; task_test.cpp is the reference"
                    " stage's test of it, which your `make test` runs.")
        if info.get("needs") == "io_uring":
            why += " " + link_liburing(target, number)
    point_build_root(target, build_parent)
    (target / ".gitignore").write_text("compile_commands.json\n", encoding="utf-8")
    committed = make_repository(target, number)
    print(f"Lab {number}: {shown(target)}/ is ready"
          + (": a git repository of its own, the seed its first commit." if committed else "."))
    print(why)
    failure = build(target, build_parent, "server", "compile_commands.json")
    if failure:
        print(f"It does not build yet:\n{failure}")
        return 1
    print(f"Built: {shown(build_dir(root, number) / 'server')} (and compile_commands.json"
          f" for your editor).")
    first = info["milestones"][0]
    print("\nWhat to do first:")
    print(f"  read docs/{info['dir']}.md, and the labs guide: docs/labs.md#lab-{number}")
    print(f"  make check-lab-{number}     grades your server, milestone by milestone")
    if number == 1:
        second = info["milestones"][1]
        print(f"The seed passes milestone 1 ({first['key']}) already; milestone 2"
              f" ({second['key']}) is yours: {second['asks']}.")
    else:
        print(f"The seed does not pass milestone 1 ({first['key']}) yet: {first['asks']}."
              f" That is where your work starts.")
    unavailable = info.get("needs") == "io_uring" and io_uring_unavailable()
    if unavailable:
        print(f"\nWarning: {unavailable}. Your server will build, but it cannot run here, and"
              f" make check-lab-{number} cannot grade it: docs/{info['dir']}.md, section"
              f" \"When io_uring is unavailable\", says where it can.")
    return 0


# --- grading ---------------------------------------------------------------------------------

class Result:
    """One milestone's grade: status is passed, failed, n/a or not graded yet."""

    def __init__(self, status, passed=0, total=0, failing=None, reason="", ran=None):
        self.status, self.passed, self.total = status, passed, total
        self.failing, self.reason = failing, reason
        self.ran = total if ran is None else ran  # fewer than total: stopped at a failure


def pytest_targets(entries):
    """pytest's arguments for a milestone's test entries: node ids relative to tests/, the
    structural checks of tests/lab/ among them, and SUITE for the whole of tests/."""
    return ["tests" if entry == milestones.SUITE else f"tests/{entry}" for entry in entries]


def grade_suite(entries, stage, binary, quick, python):
    targets = pytest_targets(entries)
    selection = ["--stage", str(stage), "--server", str(binary),
                 *(["-m", "not slow"] if quick else [])]
    count = SUITE_AS_TESTS if "tests" in targets else len(targets)
    cases, output = examples.run_pytest([*selection, "-x", *targets], python,
                                        deadline=SECONDS_PER_TEST * count + 60)
    if not cases and "(stopped after" in output:
        return Result("failed", 0, len(entries), "(the pytest run)",
                      f"{output.splitlines()[-1].strip('()')}: a test hung, and the grader"
                      f" stopped it with its servers; run the milestone's tests yourself"
                      f" (docs/labs.md, Troubleshooting) to see which")
    if not cases:
        lines = [line for line in output.splitlines() if line.strip()]
        errors = [line for line in lines if "ERROR" in line or "error" in line]
        return Result("failed", 0, len(entries), entries[0],
                      (errors or lines or ["pytest ran no test"])[0].strip())
    outcomes = [(examples.node_id(c), examples.outcome(c), examples.message(c, REASON_LINES))
                for c in cases]
    passed = sum(1 for _, o, _ in outcomes if o == "passed")
    failing = next(((n, m) for n, o, m in outcomes if o in ("failed", "error")), None)
    if failing is None and "(stopped after" not in output:
        return Result("passed", passed, len(outcomes))
    # -x stopped at the first failure: ask pytest how many tests the milestone has.
    _, listing = examples.run_pytest([*selection, "--collect-only", *targets], python,
                                     deadline=120)
    total = sum(1 for line in listing.splitlines() if "::" in line and " " not in line)
    if failing is None:
        return Result("failed", passed, total, "(the pytest run)", output.splitlines()[-1],
                      ran=len(outcomes))
    return Result("failed", passed, max(total, len(outcomes)), *failing, ran=len(outcomes))


def unit_binary(directory, scratch, cache):
    """Compiles the reference task tests against `directory`'s headers, once per run:
    (binary, None) or (None, the compiler's first error line)."""
    if "binary" not in cache:
        scratch.mkdir(parents=True, exist_ok=True)
        tests = scratch / Path(milestones.TASK_TESTS).name
        shutil.copy2(ROOT / milestones.TASK_TESTS, tests)
        shutil.copy2(UNIT_MAIN, scratch / UNIT_MAIN.name)
        binary = scratch / "task_tests"
        run = subprocess.run([os.environ.get("CXX", "g++"), *UNIT_FLAGS, "-I", str(directory),
                              str(tests), str(scratch / UNIT_MAIN.name), "-o", str(binary)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            lines = run.stderr.splitlines()
            first = next((line for line in lines if "error" in line), lines[0] if lines else "")
            cache["binary"] = (None, f"does not compile: {first.strip()}")
        else:
            cache["binary"] = (binary, None)
    return cache["binary"]


def run_test_case(binary, name):
    """None when the TEST_CASE `name` passes run alone, else why not, in one line."""
    # doctest splits a filter at commas; `?` matches any one character, the comma too.
    pattern = name.replace(",", "?")
    try:
        run = subprocess.run([str(binary), f"--test-case={pattern}", "--no-colors"],
                             capture_output=True, text=True, timeout=UNIT_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return f"still running after {UNIT_TIMEOUT_SECONDS} s"
    output = run.stdout + run.stderr
    if run.returncode == 0:
        if re.search(r"test cases:\s*1 \|\s*1 passed", output):
            return None
        return f"no TEST_CASE named {name!r} ran"
    # The program's own words (an abort's message) first, then doctest's report of the failure.
    said = [line.strip() for line in run.stderr.splitlines() if line.strip()]
    said += [line.strip().replace(f"{binary.parent}/", "") for line in run.stdout.splitlines()
             if "ERROR" in line]
    how = (f"killed by {signal.Signals(-run.returncode).name}" if run.returncode < 0
           else f"exit {run.returncode}")
    return f"{how}: {said[0]}" if said else how


def grade_unit(entries, directory, scratch, cache):
    if directory is None:
        return Result("n/a")
    binary, problem = unit_binary(directory, scratch, cache)
    if binary is None:
        return Result("failed", 0, len(entries), milestones.TASK_TESTS, problem)
    passed, failing = 0, None
    for entry in entries:
        name = entry.split("::", 2)[2]
        reason = run_test_case(binary, name)
        if reason is None:
            passed += 1
        elif failing is None:
            failing = (f"{milestones.TASK_TESTS}: TEST_CASE(\"{name}\")", reason)
    if failing is None:
        return Result("passed", passed, len(entries))
    return Result("failed", passed, len(entries), *failing)


# The functions a compiler makes of a coroutine's body, by their symbols' suffixes: g++ names
# them NAME.actor (and .destroy), clang NAME.resume (and .destroy, .cleanup).
COROUTINE_SYMBOL = re.compile(r"^(\S+?)\.(?:actor|resume)(?:\.cold)?$")
MIN_COROUTINES = 2  # an echo on a reactor has at least its accept loop and its connection


def coroutine_bodies(binary):
    """The coroutines compiled into `binary` (their symbols' names), or an error line."""
    try:
        run = subprocess.run(["nm", "--defined-only", str(binary)], capture_output=True,
                             text=True)
    except FileNotFoundError:
        return None, "nm is not installed (Debian: binutils), so the binary cannot be read"
    if run.returncode != 0:
        return None, f"nm cannot read {shown(binary)}: {run.stderr.strip()}"
    names = {m.group(1) for line in run.stdout.splitlines()
             if (m := COROUTINE_SYMBOL.match(line.split()[-1]))}
    return names, None


def grade_binary(entries, binary):
    """binary::coroutines: the server runs coroutines, not the callbacks of the seed."""
    names, problem = coroutine_bodies(binary)
    if names is None:
        return Result("failed", 0, len(entries), entries[0], problem)
    if len(names) < MIN_COROUTINES:
        return Result("failed", 0, len(entries), entries[0],
                      f"{shown(binary)} holds {len(names)} coroutine bodies (the functions g++"
                      f" names NAME.actor and clang NAME.resume, as nm lists them); expected at"
                      f" least {MIN_COROUTINES}: the accept loop and each connection's echo, as"
                      f" coroutines on your Task")
    return Result("passed", len(entries), len(entries))


def grade_milestone(milestone, number, binary, directory, scratch, quick, python, cache):
    entries = milestone["tests"]
    if all(entry.startswith("unit::") for entry in entries):
        return grade_unit(entries, directory, scratch, cache)
    # A C++ reading of the binary first (not for SERVER=: it need not be C++), then the suite.
    inspected = [entry for entry in entries if entry.startswith("binary::")]
    entries = [entry for entry in entries if entry not in inspected]
    first = None
    if inspected and directory is not None:
        first = grade_binary(inspected, binary)
        if first.status == "failed":
            return Result("failed", 0, len(inspected) + len(entries), first.failing,
                          first.reason, ran=len(inspected))
    result = grade_suite(entries, number, binary, quick, python)
    if first is not None:
        result.passed += first.passed
        result.total += first.total
        result.ran += first.ran
    return result


def store_grade(root, number, results, selected, graded_fingerprint, quick):
    """Keeps the grade in grade.json, merged with the last one if the sources are the same.
    `graded_fingerprint` is the workspace's as it was built: if it changed while the tests ran,
    the grade belongs to neither version, and is not kept."""
    path = build_dir(root, number) / "grade.json"
    current = fingerprint(workspace(root, number))
    if current != graded_fingerprint:
        print(f"\n(Not recorded: {shown(workspace(root, number))} changed while it was graded.)")
        return
    grade = load_grade(root, number)
    if grade is None or grade.get("fingerprint") != current or len(selected) > 1:
        grade = {"lab": number, "milestones": {}}
    grade["fingerprint"] = current
    grade["time"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    for milestone, result in zip(selected, results):
        if result is not None and result.status in ("passed", "failed"):
            grade["milestones"][milestone["key"]] = {
                "status": result.status, "passed": result.passed, "total": result.total,
                "quick": quick}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(grade, indent=2) + "\n", encoding="utf-8")


def print_table(number, rows):
    print(f"{'#':>2}  {'milestone':<18} {'tests':<18} what it asks")
    for index, (milestone, result) in enumerate(rows, 1):
        if result is None:
            count = "not graded yet"
        elif result.status == "n/a":
            count = "n/a (not C++)"
        elif result.status == "passed":
            count = f"{result.passed}/{result.total} ok"
        elif result.ran < result.total:  # stopped at its first failure: say how many ran
            count = f"FAIL, {result.ran} of {result.total} run"
        else:
            count = f"{result.passed}/{result.total} FAIL"
        print(f"{index:>2}  {milestone['key']:<18} {count:<18} {milestone['asks']}")


def guide_section(failing):
    """The heading of docs/labs.md under which the failing test's name first appears in prose
    (the server contract names the tests that check each rule), or None."""
    name = failing.split("::")[-1].split("[")[0]
    if not name.startswith("test_"):
        return None
    heading = None
    for _, line in links.prose_lines(GUIDE.read_text(encoding="utf-8")):
        match = links.HEADING.match(line)
        if match:
            heading = match.group(2).replace("`", "")
        elif name in line and heading is not None:
            return heading
    return None


def print_failure(number, milestone, result, reference_dir, graded):
    print(f"\nMilestone {milestone['key']!r} is not passed yet.")
    print(f"First failing test: {result.failing}")
    for line in result.reason.splitlines():
        print(f"  {line}")
    if result.ran < result.total:
        print(f"  ({result.ran} of its {result.total} tests ran, {result.passed} of them passed:"
              f" grading stops at the first failure)")
    print(f"Hint: {milestone['hint']}")
    path = milestone["read"].split("#", 1)[0]
    section = (heading_text(milestone["read"]) or milestone["read"]).replace("`", "")
    print(f"Read: {path}, section \"{section}\"")
    contract = guide_section(result.failing or "")
    if contract:
        print(f"The rule it checks, in any language: docs/labs.md, section \"{contract}\"")
    if graded != reference_dir:
        print(f"Still stuck after the hint and the section? The reference's answer:"
              f" diff -ru {reference_dir} {graded}")


class Refused(Exception):
    """Nothing can be graded: the message says why, `code` is the exit code."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def graded_binary(number, server, lab_dir, root):
    """(the binary to grade, the directory it was built from or None for --server, where the
    build went), building it first; Refused when there is nothing to grade."""
    if server is not None:
        binary = Path(server).resolve()
        if not binary.is_file():
            raise Refused(f"error: --server {server}: no such file", 2)
        return binary, None, None
    if lab_dir is None:
        directory, out = workspace(root, number), build_dir(root, number)
        if not directory.is_dir():
            raise Refused(f"error: {shown(directory)} does not exist: make lab-{number} creates"
                          f" it", 2)
    else:
        directory = ((ROOT / lab_dir) if (ROOT / lab_dir).is_dir() else Path(lab_dir)).resolve()
        if not directory.is_dir():
            raise Refused(f"error: --lab {lab_dir}: no such directory", 2)
        if directory.parent == ROOT and directory.name in STAGE_DIRS:
            out = ROOT / "build" / directory.name
        else:
            # Any other directory gets a build tree of its own, never a workspace's: make
            # would take the workspace's newer objects for its own.
            tag = hashlib.sha256(str(directory).encode()).hexdigest()[:8]
            out = LAB_BUILD / f"other-{tag}" / directory.name
    # A workspace's compile_commands.json too, in case a source was added since.
    failure = build(directory, out.parent, "server",
                    *(["compile_commands.json"] if lab_dir is None else []))
    if failure:
        raise Refused(f"{shown(directory)} does not build:\n{failure}", 1)
    binary = out / "server"
    if not binary.is_file():
        raise Refused(f"{shown(directory)}'s Makefile did not build {shown(binary)}: its"
                      f" `server` target must write the server there"
                      f" (BUILD_ROOT/<directory name>/server)", 1)
    return binary, directory, out


def check(number, milestone_number, server, lab_dir, quick, root, python=sys.executable):
    info = LABS[number]
    all_milestones = info["milestones"]
    if milestone_number is not None and not 1 <= milestone_number <= len(all_milestones):
        print(f"error: lab {number} has milestones 1..{len(all_milestones)}", file=sys.stderr)
        return 2
    unavailable = info.get("needs") == "io_uring" and io_uring_unavailable()
    if unavailable:
        print(f"Lab {number} cannot be graded on this machine: {unavailable}. Every check of it"
              f" runs a server on io_uring, so each would fail for that reason alone; nothing was"
              f" graded or recorded. Grade it where io_uring works: docs/{info['dir']}.md,"
              f" section \"When io_uring is unavailable\".")
        return 1
    own = server is None and lab_dir is None
    # Taken before the build: what is graded is the workspace as it was built.
    graded_fingerprint = fingerprint(workspace(root, number)) if own else None
    try:
        binary, directory, out = graded_binary(number, server, lab_dir, root)
    except Refused as refusal:
        print(refusal, file=sys.stderr if refusal.code == 2 else sys.stdout)
        return refusal.code
    scratch = out / "unit" if out else None
    print(f"Lab {number} ({info['dir']}): grading {shown(binary)}"
          + (" (slow tests left out)" if quick else ""))
    selected = (all_milestones if milestone_number is None
                else [all_milestones[milestone_number - 1]])
    results, cache, stopped = [], {}, False
    for milestone in selected:
        if stopped:
            results.append(None)
            continue
        result = grade_milestone(milestone, number, binary, directory, scratch, quick, python,
                                 cache)
        results.append(result)
        stopped = result.status == "failed"
    graded = {m["key"]: r for m, r in zip(selected, results)}
    print_table(number, [(m, graded.get(m["key"])) for m in all_milestones])
    if own:
        store_grade(root, number, results, selected, graded_fingerprint, quick)
    failed = next(((m, r) for m, r in zip(selected, results) if r and r.status == "failed"),
                  None)
    if failed:
        print_failure(number, *failed, info["dir"],
                      shown(directory) if directory else "YOUR-SOURCE-DIRECTORY")
        return 1
    graded_count = sum(1 for r in results if r and r.status == "passed")
    print(f"\nEvery graded milestone passed ({graded_count} of {len(all_milestones)}).")
    return 0


# --- status, the guide's tables --------------------------------------------------------------

def status(root):
    for number, info in LABS.items():
        target = workspace(root, number)
        count = len(info["milestones"])
        if not target.is_dir():
            print(f"lab {number} ({info['dir']}): not started (make lab-{number})")
            continue
        grade = load_grade(root, number)
        if grade is None:
            print(f"lab {number} ({info['dir']}): {shown(target)}, not graded yet"
                  f" (make check-lab-{number})")
            continue
        done = passed_count(grade)
        nxt = next((i for i, m in enumerate(info["milestones"], 1)
                    if grade["milestones"].get(m["key"], {}).get("status") != "passed"), None)
        line = f"lab {number} ({info['dir']}): {shown(target)}, {done} of {count} milestones"
        line += (f", next: {nxt} ({info['milestones'][nxt - 1]['key']})" if nxt
                 else ", every one passed")
        if quick_only(grade):
            line += f"; with QUICK=1 only: {', '.join(quick_only(grade))}"
        if grade.get("fingerprint") != fingerprint(target):
            line += "; changed since graded"
        print(line + f" (graded {grade.get('time', '?')})")
    return 0


def about(minutes):
    """90 -> "1 h 30 min", as the guide says it."""
    hours, rest = divmod(minutes, 60)
    return " ".join(part for part in (f"{hours} h" if hours else "", f"{rest} min" if rest else "")
                    if part)


def table(number):
    """The markdown table of lab `number`'s milestones, as docs/labs.md shows it."""
    rows = ["| # | milestone | what it asks | taught in | about |",
            "| --- | --- | --- | --- | --- |"]
    for index, milestone in enumerate(LABS[number]["milestones"], 1):
        path, anchor = milestone["read"].split("#", 1)
        title = (heading_text(milestone["read"]) or anchor).replace("`", "")
        link = f"[{title}]({Path(path).relative_to('docs')}#{anchor})"
        # A pipe would end the cell, and <T> would be read as an HTML tag.
        asks = (milestone["asks"].replace("&", "&amp;").replace("<", "&lt;")
                .replace(">", "&gt;").replace("|", "\\|"))
        rows.append(f"| {index} | `{milestone['key']}` | {asks} | {link} |"
                    f" {about(milestone['minutes'])} |")
    return "\n".join(rows) + "\n"


def check_docs(guide=GUIDE):
    """Problems with the milestones' sections and the guide's tables, as lines."""
    problems = []
    for number, info in LABS.items():
        for milestone in info["milestones"]:
            path, _, anchor = milestone["read"].partition("#")
            if not (ROOT / path).is_file():
                problems.append(f"lab {number} {milestone['key']!r}: {path} does not exist")
            elif anchor not in links.anchors(ROOT / path):
                problems.append(f"lab {number} {milestone['key']!r}: no heading of {path} has"
                                f" the anchor #{anchor}")
    if not guide.is_file():
        return problems + [f"{shown(guide)} does not exist: it must hold every lab's milestone"
                           f" table (tools/lab.py table N)"]
    text = guide.read_text(encoding="utf-8")
    for number in LABS:
        # make lab-N sends the learner to docs/labs.md#lab-N.
        if f"lab-{number}" not in links.anchors(guide):
            problems.append(f"{shown(guide)}: no heading `## Lab {number}` (anchor #lab-{number},"
                            f" which make lab-{number} points to)")
        begin, end = begin_marker(number), end_marker(number)
        if text.count(begin) != 1 or text.count(end) != 1:
            problems.append(f"{shown(guide)}: needs exactly one {begin!r} and one {end!r}")
            continue
        inside = text.split(begin, 1)[1].split(end, 1)[0].strip("\n") + "\n"
        if inside != table(number):
            problems.append(f"{shown(guide)}: lab {number}'s table differs from"
                            f" tests/milestones.py; replace it with the output of"
                            f" `python3 tools/lab.py table {number}`")
    return problems


# --- self-checks -----------------------------------------------------------------------------

def quietly(function, *arguments, **options):
    """Runs `function`, its printing kept: (return value, what it printed)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        value = function(*arguments, **options)
    return value, buffer.getvalue()


def selfcheck():
    started = time.monotonic()
    root = ROOT / "build" / "lab-selfcheck"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    mismatches = []

    def expect(what, ok, output):
        print(f"labs-check: {'ok ' if ok else 'MISMATCH'} {what}"
              f" ({time.monotonic() - started:.0f} s)", flush=True)
        if not ok:
            mismatches.append(f"{what}:\n{output}")

    def grade(number, milestone, **options):
        code, output = quietly(check, number, milestone, options.get("server"), None, True, root)
        table_lines = [line for line in output.splitlines() if line[:2].strip().isdigit()]
        marks = {int(line.split()[0]): line for line in table_lines}
        return code, marks, output

    # A lab whose grading the machine cannot offer is left out, and said so, not passed.
    unavailable = {number: io_uring_unavailable() for number, info in LABS.items()
                   if info.get("needs") == "io_uring"}
    labs = [number for number in LABS if not unavailable.get(number)]
    for number, why in unavailable.items():
        if why:
            print(f"labs-check: lab {number} left out, as make check-lab-{number} would be: {why}")
    for number in labs:
        code, output = quietly(new, number, root)
        expect(f"make lab-{number} creates and builds its workspace",
               code == 0 and "does not build" not in output, output)
    code, marks, output = grade(1, None)
    expect("lab 1's seed passes milestone 1 and fails milestone 2",
           " ok " in marks.get(1, "") and "FAIL" in marks.get(2, ""), output)
    for number in labs[1:]:
        code, marks, output = grade(number, 1)
        expect(f"lab {number}'s seed fails milestone 1 ({LABS[number]['milestones'][0]['key']})",
               code == 1 and "FAIL" in marks.get(1, "") and "does not compile" not in output,
               output)
    # Lab 3's callbacks pass lab 4's echo tests: the seed must fail its reading for coroutines.
    code, marks, output = grade(4, 3)
    expect("lab 4's seed fails echo (no coroutine in its binary)",
           code == 1 and "FAIL" in marks.get(3, "") and "binary::coroutines" in output, output)
    # (stage, lab, milestone, passes): each structural check both ways.
    # Stage 5 has epoll and no ring; stage 6 the other way round.
    cases = [(1, 2, 1, False), (1, 2, 2, False), (2, 2, 1, True), (2, 2, 2, True),
             (2, 3, 1, False), (3, 3, 1, True), (5, 6, 1, False), (6, 6, 1, True)]
    for stage, number, milestone, passes in (c for c in cases if c[1] in labs):
        server = ROOT / "build" / LABS[stage]["dir"] / "server"
        # Up to date already after `make all`; built here for a stage it does not list yet.
        failure = build(ROOT / LABS[stage]["dir"], ROOT / "build", "server")
        if failure:
            expect(f"{LABS[stage]['dir']} builds", False, failure)
            continue
        code, marks, output = grade(number, milestone, server=server)
        key = LABS[number]["milestones"][milestone - 1]["key"]
        expect(f"{shown(server)} {'passes' if passes else 'fails'} lab {number}'s {key}",
               (code == 0) == passes and ("FAIL" in marks.get(milestone, "")) != passes, output)
    for mismatch in mismatches:
        print(f"error: {mismatch}", file=sys.stderr)
    print(f"labs-check: {len(mismatches)} mismatches, {time.monotonic() - started:.0f} s")
    return 1 if mismatches else 0


def grade_references():
    started = time.monotonic()
    failed = []
    for number, info in LABS.items():
        if check(number, None, None, info["dir"], False, LAB_ROOT) != 0:
            failed.append(info["dir"])
        print(f"(lab {number}: {time.monotonic() - started:.0f} s so far)\n", flush=True)
    print(f"grade-references: {len(LABS) - len(failed)} of {len(LABS)} reference stages pass"
          f" every milestone of their lab, in {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    root = argparse.ArgumentParser(add_help=False)
    root.add_argument("--root", type=Path, default=LAB_ROOT,
                      help="where the workspaces are (default: lab/)")
    creating = commands.add_parser("new", parents=[root], help="create lab N's workspace")
    creating.add_argument("number", type=int, choices=sorted(LABS))
    checking = commands.add_parser("check", parents=[root], help="grade lab N")
    checking.add_argument("number", type=int, choices=sorted(LABS))
    checking.add_argument("--milestone", type=int, help="grade milestone K only")
    graded = checking.add_mutually_exclusive_group()
    graded.add_argument("--server", help="grade this binary (C++ milestones: n/a)")
    graded.add_argument("--lab", help="grade this directory, e.g. 02-epoll-level")
    checking.add_argument("--quick", action="store_true", help="leave the slow tests out")
    commands.add_parser("status", parents=[root], help="every lab's last grade")
    tabling = commands.add_parser("table", help="lab N's milestones, for docs/labs.md")
    tabling.add_argument("number", type=int, choices=sorted(LABS))
    commands.add_parser("check-docs", help="the milestones' sections and docs/labs.md's tables")
    commands.add_parser("selfcheck", help="the seeds and structural checks, quickly")
    commands.add_parser("grade-references", help="every reference stage passes its lab")
    args = parser.parse_args()
    if args.command == "new":
        return new(args.number, args.root.resolve())
    if args.command == "check":
        return check(args.number, args.milestone, args.server, args.lab, args.quick,
                     args.root.resolve())
    if args.command == "status":
        return status(args.root.resolve())
    if args.command == "table":
        sys.stdout.write(table(args.number))
        return 0
    if args.command == "check-docs":
        problems = check_docs()
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if not problems:
            print("check-docs: every milestone's section exists, and docs/labs.md's tables match"
                  " tests/milestones.py")
        return 1 if problems else 0
    if args.command == "selfcheck":
        return selfcheck()
    return grade_references()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C: run_pytest has stopped pytest and its servers
        print("\ninterrupted: nothing graded, nothing recorded", file=sys.stderr)
        sys.exit(130)
