#!/usr/bin/env python3
"""Grades the example programs of examples/ and keeps chapter 01's table of steps honest.

    python3 tools/examples.py grade [--build-root DIR]
        Every examples/NAME.cpp, built into DIR/examples/NAME (DIR defaults to build): a server
        named in SERVER_EXAMPLES of tests/milestones.py must pass every test of the steps before
        its `fails_step` and fail its `fails_test`; any other example must exit 0 on its own.
        Slow tests are left out. Exit 0 when every example behaves as the chapters say.
    python3 tools/examples.py table
        Prints the table of steps that docs/01-poll.md shows, made from tests/milestones.py.
    python3 tools/examples.py check-chapter [FILE]
        The table between the `milestones-table` markers of FILE (default docs/01-poll.md) is
        exactly what `table` prints, and every step's anchor is a heading of FILE.

`grade` needs pytest and pytest-timeout (it runs the shared suite); the rest needs only the
standard library.
"""

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))
import links  # noqa: E402  (tools/links.py: GitHub's heading anchors)
import milestones  # noqa: E402  (tests/milestones.py: the steps)

CHAPTER = ROOT / "docs" / "01-poll.md"
BEGIN = "<!-- milestones-table: begin (tools/examples.py table writes it) -->"
END = "<!-- milestones-table: end -->"
# Long enough for a test that waits out a silent server, short enough to stop a hung one.
TEST_TIMEOUT_SECONDS = 60
# A self-checking example that runs longer than this has hung.
RUN_TIMEOUT_SECONDS = 60


# --- the chapter's table --------------------------------------------------------------------

def headings(path):
    """{anchor: heading text} for the headings of a markdown file (first of each anchor)."""
    found = {}
    for _, line in links.prose_lines(path.read_text(encoding="utf-8")):
        match = links.HEADING.match(line)
        if match:
            found.setdefault(links.slug(match.group(2)), match.group(2))
    return found


def table(chapter=CHAPTER):
    """The markdown table of steps, one row per step, as the chapter shows it."""
    titles = headings(chapter)
    rows = ["| step | what it asks | the tests it makes pass | taught in |",
            "| --- | --- | --- | --- |"]
    for number, step in enumerate(milestones.STEPS, 1):
        title = titles.get(step["anchor"], step["anchor"]).replace("`", "")
        tests = ", ".join(f"`{t}`" for t in step["tests"])
        rows.append(f"| {number}. `{step['key']}` | {step['asks']} | {tests} |"
                    f" [{title}](#{step['anchor']}) |")
    return "\n".join(rows) + "\n"


def check_chapter(chapter=CHAPTER):
    """Problems with the chapter's copy of the table, as lines; empty when it is right."""
    text = chapter.read_text(encoding="utf-8")
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        return [f"{chapter}: needs exactly one {BEGIN!r} and one {END!r} around the steps table"]
    shown = text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"
    problems = []
    titles = headings(chapter)
    for step in milestones.STEPS:
        if step["anchor"] not in titles:
            problems.append(f"{chapter}: step {step['key']!r} is taught in #{step['anchor']},"
                            f" which no heading of the chapter defines")
    expected = table(chapter)
    if shown != expected:
        problems.append(f"{chapter}: the steps table differs from tests/milestones.py;"
                        f" replace it with the output of `python3 tools/examples.py table`:\n"
                        f"{expected}")
    return problems


# --- grading ---------------------------------------------------------------------------------

def node_id(testcase):
    """`test_FILE.py::test_NAME[ID]` of a JUnit <testcase> that pytest wrote, relative to tests/
    (its rootdir, where pytest.ini is): `lab/test_FILE.py::...` for a test of tests/lab/."""
    parts = testcase.get("classname", "").split(".")
    module = next((i for i, part in enumerate(parts) if part.startswith("test_")), len(parts) - 1)
    return f"{'/'.join(parts[:module + 1])}.py::{testcase.get('name')}"


def message(testcase, lines=1):
    """Why a JUnit <testcase> failed, in at most `lines` lines: the suite's messages say what
    went wrong on the first, then what was sent, expected and got, one per line, up to a blank
    line or pytest's own `assert ...` line. '' when it passed."""
    for element in ("failure", "error", "skipped"):
        found = testcase.find(element)
        if found is not None:
            text = (found.get("message") or found.text or "").strip()
            kept = []
            for line in text.splitlines()[:lines]:
                if kept and (not line.strip() or line.lstrip().startswith("assert ")):
                    break
                kept.append(line.rstrip())
            return "\n".join(kept) if kept else element
    return ""


def outcome(testcase):
    for element, result in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
        if testcase.find(element) is not None:
            return result
    return "passed"


def belongs(nodeid, listed):
    """True if `nodeid` is the listed test, or one parametrization of it."""
    return nodeid == listed or nodeid.startswith(listed + "[")


def run_pytest(arguments, python, deadline=None):
    """Runs pytest from the repository's root with `arguments`: the JUnit <testcase> elements
    of its report, in the order run (None when it wrote no report), and its output. A run
    longer than `deadline` seconds is stopped, with every server it started."""
    with tempfile.TemporaryDirectory(prefix="suite-run-") as scratch:
        report = Path(scratch) / "report.xml"
        argv = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                *arguments]
        # A session of its own, so that a stop reaches the servers pytest started as well.
        run = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
        try:
            output, _ = run.communicate(timeout=deadline)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            output, _ = run.communicate()
            output += f"\n(stopped after {deadline} s)"
        except BaseException:  # Ctrl-C: the session does not get the terminal's SIGINT
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
            raise
        finally:
            # Whatever outlived pytest: a server's own children, say.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
        if not report.is_file():
            return None, output
        return list(ElementTree.parse(report).getroot().iter("testcase")), output


def run_suite(server, test_ids, python):
    """Runs the shared suite's `test_ids` (slow ones left out) against `server`:
    {node id: outcome}, and pytest's output for the report."""
    cases, output = run_pytest(["--stage", "1", "--server", str(server), "-m", "not slow",
                                f"--timeout={TEST_TIMEOUT_SECONDS}",
                                *(f"tests/{t}" for t in test_ids)], python)
    if cases is None:
        return None, output
    return {node_id(c): outcome(c) for c in cases}, output


def grade_server(name, binary, expectation, python):
    """Problems with one server example, as lines; empty when it stops where the chapter says."""
    fails_step = milestones.step(expectation["fails_step"])
    fails_test = expectation["fails_test"]
    if not any(belongs(fails_test, t) for t in fails_step["tests"]):
        return [f"{name}: {fails_test} is not a test of step {fails_step['key']!r}"]
    must_pass = [t for s in milestones.steps_before(fails_step["key"]) for t in s["tests"]]
    must_fail = [fails_test, *expectation.get("also_fails", [])]
    results, output = run_suite(binary, [*must_pass, *must_fail], python)
    if results is None:
        return [f"{name}: pytest wrote no report:\n{output}"]
    problems = []
    # A listed test that did not run is a slow one, left out here; that every listed test
    # exists is tools/tests/test_milestones.py's check.
    for listed in must_pass:
        matches = {n: o for n, o in results.items() if belongs(n, listed)}
        for nodeid, result in matches.items():
            if result != "passed":
                problems.append(f"{name}: {nodeid} {result}; the chapter says {name} passes it")
    for listed in must_fail:
        failing = {n: o for n, o in results.items() if belongs(n, listed)}
        if not failing:
            problems.append(f"{name}: {listed} did not run")
        elif "failed" not in failing.values():
            problems.append(f"{name}: {listed} {', '.join(sorted(set(failing.values())))};"
                            f" the chapter says {name} fails it")
    if problems:
        problems.append(f"pytest's output for {name}:\n{output}")
    passed = sum(1 for n, o in results.items() if o == "passed")
    before = ", ".join(s["key"] for s in milestones.steps_before(fails_step["key"]))
    print(f"examples-check: {name}: {passed} of {len(results)} tests passed,"
          f" {'as' if not problems else 'NOT as'} the chapters say (passes steps {before};"
          f" fails step {fails_step['key']}: {fails_test}, and {len(must_fail) - 1} more)")
    return problems


def grade_program(name, binary):
    """Problems with a self-checking example: it must exit 0."""
    try:
        run = subprocess.run([str(binary)], cwd=ROOT, capture_output=True, text=True,
                             timeout=RUN_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return [f"{name}: still running after {RUN_TIMEOUT_SECONDS} s"]
    print(f"examples-check: {name}: exit {run.returncode}")
    if run.returncode != 0:
        return [f"{name}: exit {run.returncode}, expected 0\n{run.stdout}{run.stderr}"]
    return []


def grade(build_root, python):
    problems = []
    sources = sorted((ROOT / "examples").glob("*.cpp"))
    unknown = set(milestones.SERVER_EXAMPLES) - {p.stem for p in sources}
    problems += [f"SERVER_EXAMPLES names {n}, but there is no examples/{n}.cpp" for n in unknown]
    for source in sources:
        name = source.stem
        binary = build_root / "examples" / name
        if not binary.is_file():
            problems.append(f"{name}: {binary} is not built (make examples)")
        elif name in milestones.SERVER_EXAMPLES:
            problems += grade_server(name, binary, milestones.SERVER_EXAMPLES[name], python)
        else:
            problems += grade_program(name, binary)
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    grading = commands.add_parser("grade", help="run every example as the chapters say")
    grading.add_argument("--build-root", type=Path, default=ROOT / "build")
    grading.add_argument("--python", default=sys.executable,
                         help="the interpreter that runs pytest (default: this one)")
    commands.add_parser("table", help="print the chapter's table of steps")
    checking = commands.add_parser("check-chapter", help="the chapter's table is up to date")
    checking.add_argument("chapter", nargs="?", type=Path, default=CHAPTER)
    args = parser.parse_args()
    if args.command == "table":
        sys.stdout.write(table())
        return 0
    if args.command == "check-chapter":
        problems = check_chapter(args.chapter.resolve())
    else:
        problems = grade(args.build_root.resolve(), args.python)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems and args.command == "check-chapter":
        print(f"check-chapter: the steps table of {args.chapter} matches tests/milestones.py")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
