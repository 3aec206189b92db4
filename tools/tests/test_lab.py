"""Tests of tools/lab.py, the labs' workspaces and grader: /usr/bin/python3 -m pytest tools/tests

Fast: no server runs. Workspaces are made under tmp_path, never in lab/.
"""

import json
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "tools"))
import examples  # noqa: E402
import lab  # noqa: E402
import milestones  # noqa: E402  (tools/examples.py put tests/ on the path)


@pytest.fixture
def no_build(monkeypatch):
    """`new` without compiling: the seeding is under test here, not the compiler."""
    monkeypatch.setattr(lab, "build", lambda *arguments: None)


def write_grade(root, number, passed_keys, quick=False):
    """A grade.json for lab `number` under `root`, with `passed_keys` passed and the rest failed,
    of the workspace as it is now."""
    grade = {"lab": number, "fingerprint": lab.fingerprint(lab.workspace(root, number)),
             "milestones": {m["key"]: {"status": "passed" if m["key"] in passed_keys else "failed",
                                       "passed": 1, "total": 1, "quick": quick}
                            for m in lab.LABS[number]["milestones"]}}
    path = lab.build_dir(root, number) / "grade.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(grade), encoding="utf-8")


def test_new_refuses_an_existing_workspace_and_leaves_it_alone(tmp_path, capsys):
    target = lab.workspace(tmp_path, 1)
    target.mkdir()
    (target / "main.cpp").write_text("// mine\n", encoding="utf-8")
    assert lab.new(1, tmp_path) == 1
    assert "exists already" in capsys.readouterr().err
    assert [p.name for p in target.iterdir()] == ["main.cpp"]
    assert (target / "main.cpp").read_text(encoding="utf-8") == "// mine\n"


def test_new_1_is_a_git_repository_with_the_seed_and_builds(tmp_path, capsys):
    assert lab.new(1, tmp_path) == 0
    out = capsys.readouterr().out
    target = lab.workspace(tmp_path, 1)
    assert {p.name for p in target.iterdir()} >= {
        "main.cpp", "listen.hpp", "Makefile", "test_main.cpp", ".gitignore"}
    assert (target / "main.cpp").read_bytes() == lab.BLOCKING_SEED.read_bytes()
    assert "compile_commands.json" in (target / ".gitignore").read_text(encoding="utf-8")
    assert (lab.build_dir(tmp_path, 1) / "server").is_file(), out
    assert "make check-lab-1" in out and "docs/labs.md#lab-1" in out
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the repository part is not checked")
    log = subprocess.run(["git", "log", "--oneline"], cwd=target, capture_output=True, text=True)
    assert len(log.stdout.splitlines()) == 1, log.stdout + log.stderr
    tracked = subprocess.run(["git", "ls-files"], cwd=target, capture_output=True, text=True)
    assert "main.cpp" in tracked.stdout.split()
    assert "compile_commands.json" not in tracked.stdout.split()


def test_new_2_seeds_from_a_fully_passed_unchanged_lab_1(tmp_path, no_build, capsys):
    lab.new(1, tmp_path)
    write_grade(tmp_path, 1, {m["key"] for m in lab.LABS[1]["milestones"]})
    capsys.readouterr()
    assert lab.new(2, tmp_path) == 0
    assert "Seeded from your lab 1" in capsys.readouterr().out
    assert (lab.workspace(tmp_path, 2) / "listen.hpp").is_file()  # the learner's, not 01-poll


@pytest.mark.parametrize("spoil", ["partial", "changed", "ungraded"])
def test_new_2_seeds_from_the_reference_otherwise(tmp_path, no_build, capsys, spoil):
    lab.new(1, tmp_path)
    keys = [m["key"] for m in lab.LABS[1]["milestones"]]
    if spoil != "ungraded":
        write_grade(tmp_path, 1, set(keys[:-1]) if spoil == "partial" else set(keys))
    if spoil == "changed":
        with open(lab.workspace(tmp_path, 1) / "main.cpp", "a", encoding="utf-8") as source:
            source.write("// changed\n")
    capsys.readouterr()
    assert lab.new(2, tmp_path) == 0
    said = capsys.readouterr().out
    assert "Seeded from the reference stage 01-poll" in said
    assert {"partial": "passed 7 of 8", "changed": "changed since",
            "ungraded": "no grade yet"}[spoil] in said
    seeded = lab.workspace(tmp_path, 2)
    assert (seeded / "loop.cpp").read_bytes() == (REPO / "01-poll" / "loop.cpp").read_bytes()
    assert not (seeded / "listen.hpp").exists()


def test_seeded_makefile_builds_where_the_grader_looks(tmp_path, no_build):
    lab.new(1, tmp_path)
    text = (lab.workspace(tmp_path, 1) / "Makefile").read_text(encoding="utf-8")
    assert "BUILD_ROOT ?= ../build$(TREE_SUFFIX)" in text  # tmp_path/build, relative


def test_new_6_links_liburing_in_the_seed_of_stage_5(tmp_path, no_build, capsys):
    # From the reference stage 5: its Makefile becomes the reference stage 6's.
    assert lab.new(6, tmp_path) == 0
    assert "links liburing" in capsys.readouterr().out
    seeded = lab.workspace(tmp_path, 6)
    assert (seeded / "reactor.cpp").read_bytes() == (REPO / "05-full-server" / "reactor.cpp"
                                                     ).read_bytes()
    assert lab.LIBURING in (seeded / "Makefile").read_text(encoding="utf-8")


def test_new_6_adds_liburing_to_a_makefile_of_the_learners_own(tmp_path, no_build, capsys):
    # A lab 5 whose Makefile the learner changed keeps it, with -luring on its link lines.
    lab.new(5, tmp_path)
    makefile = lab.workspace(tmp_path, 5) / "Makefile"
    makefile.write_text(makefile.read_text(encoding="utf-8").replace("-O2 -g", "-O1 -g"),
                        encoding="utf-8")
    write_grade(tmp_path, 5, {m["key"] for m in lab.LABS[5]["milestones"]})
    capsys.readouterr()
    assert lab.new(6, tmp_path) == 0
    assert "Seeded from your lab 5" in capsys.readouterr().out
    text = (lab.workspace(tmp_path, 6) / "Makefile").read_text(encoding="utf-8")
    assert "-O1 -g" in text
    assert text.count(f"$^ -o $@ {lab.LIBURING}") == 2  # the server and the unit tests


def test_new_6_says_to_link_liburing_where_it_cannot(tmp_path, no_build, capsys):
    lab.new(5, tmp_path)
    (lab.workspace(tmp_path, 5) / "Makefile").write_text("server:\n\tcc -o server *.c\n",
                                                         encoding="utf-8")
    write_grade(tmp_path, 5, {m["key"] for m in lab.LABS[5]["milestones"]})
    capsys.readouterr()
    assert lab.new(6, tmp_path) == 0
    assert f"add {lab.LIBURING} to the command that links" in capsys.readouterr().out


def test_io_uring_probe_says_why_not(monkeypatch):
    assert lab.io_uring_unavailable() is None  # this machine runs stage 6
    monkeypatch.setattr(lab, "IORING_SETUP_DEFER_TASKRUN", 1 << 30)  # a flag no kernel knows
    assert "has io_uring, but not" in lab.io_uring_unavailable()
    monkeypatch.setattr(lab, "IO_URING_SETUP", 100000)  # no such system call: ENOSYS
    assert "failed with ENOSYS" in lab.io_uring_unavailable()


def test_lab_6_is_not_graded_without_io_uring(monkeypatch, capsys):
    monkeypatch.setattr(lab, "io_uring_unavailable", lambda: "io_uring_setup failed with EPERM")
    assert lab.check(6, None, "/bin/true", None, True, lab.LAB_ROOT) == 1
    out = capsys.readouterr().out
    assert "cannot be graded on this machine: io_uring_setup failed with EPERM" in out
    assert "FAIL" not in out


def test_check_docs_catches_a_missing_anchor(tmp_path, monkeypatch):
    guide = tmp_path / "labs.md"
    guide.write_text(lab.GUIDE.read_text(encoding="utf-8"), encoding="utf-8")
    assert lab.check_docs(guide) == []
    broken = dict(lab.LABS[2]["milestones"][0], read="docs/02-epoll-level.md#no-such-section")
    labs = dict(lab.LABS)
    labs[2] = dict(labs[2], milestones=[broken, *labs[2]["milestones"][1:]])
    monkeypatch.setattr(lab, "LABS", labs)
    problems = lab.check_docs(guide)
    assert any("#no-such-section" in p for p in problems), problems


def test_check_docs_catches_a_drifted_table(tmp_path):
    text = lab.GUIDE.read_text(encoding="utf-8")
    first = lab.LABS[3]["milestones"][0]["asks"]
    drifted = text.replace(first, first + " and more", 1)
    assert drifted != text
    guide = tmp_path / "labs.md"
    guide.write_text(drifted, encoding="utf-8")
    problems = lab.check_docs(guide)
    assert len(problems) == 1 and "lab 3's table differs" in problems[0], problems
    guide.write_text(text.replace(lab.end_marker(5), ""), encoding="utf-8")
    assert any("needs exactly one" in p for p in lab.check_docs(guide))
    assert any("does not exist" in p for p in lab.check_docs(tmp_path / "missing.md"))
    unheaded = tmp_path / "unheaded.md"
    unheaded.write_text(text.replace("## Lab 3\n", "## The third lab\n"), encoding="utf-8")
    assert any("#lab-3" in p for p in lab.check_docs(unheaded)), lab.check_docs(unheaded)


def collected(stage, *targets):
    run = subprocess.run([sys.executable, "-m", "pytest", *targets, "--stage", str(stage),
                          "--server", "/bin/true", "--collect-only", "-q",
                          "-p", "no:cacheprovider"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return [line for line in run.stdout.splitlines() if "::" in line and " " not in line]


@pytest.mark.parametrize("number", sorted(milestones.LABS))
def test_every_milestone_test_exists(number):
    entries = [e for m in milestones.LABS[number]["milestones"] for e in m["tests"]]
    suite = collected(number, "tests")
    for entry in entries:
        if entry == milestones.SUITE or entry.startswith(("lab/", "unit::")):
            continue
        if entry.startswith("binary::"):
            assert entry == "binary::coroutines", f"lab {number}: no grader reads {entry}"
            continue
        assert any(examples.belongs(n, entry) for n in suite), (
            f"lab {number} names {entry}, which `pytest tests --stage {number}` does not run")
    source = (REPO / milestones.TASK_TESTS).read_text(encoding="utf-8")
    for entry in entries:
        if entry.startswith("unit::"):
            _, path, name = entry.split("::", 2)
            assert path == milestones.TASK_TESTS
            assert f'TEST_CASE("{name}")' in source, f"no TEST_CASE({name!r}) in {path}"
    structural = [e for e in entries if e.startswith("lab/")]
    if not structural:
        return
    assert lab.STRUCTURE.is_file(), (
        f"lab {number} names structural checks, and there is no {lab.STRUCTURE}")
    found = collected(number, str(lab.STRUCTURE.relative_to(REPO)))
    for entry in structural:
        assert any(examples.belongs(n, entry.split("/", 1)[1]) or examples.belongs(n, entry)
                   for n in found), f"lab {number} names {entry}, which does not exist"


def test_milestone_keys_unique_and_reads_in_their_chapter():
    for number, info in milestones.LABS.items():
        keys = [m["key"] for m in info["milestones"]]
        assert len(keys) == len(set(keys)), number
        for milestone in info["milestones"]:
            assert milestone["read"].startswith(f"docs/{info['dir']}.md#"), milestone["key"]
            assert milestone["minutes"] > 0 and milestone["hint"], milestone["key"]


def test_a_test_of_tests_lab_has_its_path_as_node_id():
    case = ElementTree.fromstring('<testcase classname="lab.test_structure" name="test_x"/>')
    assert examples.node_id(case) == "lab/test_structure.py::test_x"
    case = ElementTree.fromstring('<testcase classname="test_echo" name="test_y[a]"/>')
    assert examples.node_id(case) == "test_echo.py::test_y[a]"


def test_a_test_case_name_with_a_comma_is_run_alone(tmp_path):
    # A stand-in for the doctest binary: passes only when the filter has no comma left in it.
    fake = tmp_path / "task_tests"
    fake.write_text('#!/bin/sh\ncase "$1" in\n  *,*) echo "[doctest] test cases: 0 | 0 passed";;'
                    '\n  *) echo "[doctest] test cases: 1 | 1 passed | 0 failed";;\nesac\n',
                    encoding="utf-8")
    fake.chmod(0o755)
    assert lab.run_test_case(fake, "up a chain, of two") is None
    missing = tmp_path / "none"
    missing.write_text('#!/bin/sh\necho "[doctest] test cases: 0 | 0 passed"\n', encoding="utf-8")
    missing.chmod(0o755)
    assert "no TEST_CASE" in lab.run_test_case(missing, "anything")
    aborting = tmp_path / "aborts"
    aborting.write_text('#!/bin/sh\necho "Task: not written yet" >&2\nkill -ABRT $$\n',
                        encoding="utf-8")
    aborting.chmod(0o755)
    assert lab.run_test_case(aborting, "x") == "killed by SIGABRT: Task: not written yet"


def test_stage_makefiles_write_the_same_compile_commands(tmp_path):
    hunks = set()
    for stage in sorted(REPO.glob("0[1-6]-*")):
        text = (stage / "Makefile").read_text(encoding="utf-8")
        start = text.index("# compile_commands.json")
        hunks.add(text[start:text.index("\n\n", start)])
    assert len(hunks) == 1, "each stage's compile_commands.json target must be the same"
    copy = tmp_path / "01-poll"
    shutil.copytree(REPO / "01-poll", copy)
    run = subprocess.run(["make", "-s", "-C", str(copy), f"BUILD_ROOT={tmp_path / 'build'}",
                          "compile_commands.json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    commands = json.loads((copy / "compile_commands.json").read_text(encoding="utf-8"))
    assert {c["file"] for c in commands} == {p.name for p in copy.glob("*.cpp")}
    for command in commands:
        assert command["directory"] == str(copy)
        assert "-std=c++20" in command["arguments"] and "-Werror" in command["arguments"]


def test_a_server_binary_leaves_the_cpp_milestones_out(capsys):
    # Lab 4's first milestone is the task tests, C++: nothing runs, nothing fails.
    assert lab.check(4, 1, "/bin/true", None, True, lab.LAB_ROOT) == 0
    row = next(line for line in capsys.readouterr().out.splitlines()
               if line.split()[:2] == ["1", "task"])
    assert "n/a" in row


def test_a_pytest_run_past_its_deadline_is_stopped(tmp_path):
    # A server that never says it is listening: the suite would wait for it.
    silent = tmp_path / "silent_server"
    silent.write_text("#!/bin/sh\nexec sleep 600\n", encoding="utf-8")
    silent.chmod(0o755)
    started = time.monotonic()
    cases, output = examples.run_pytest(
        ["--stage", "1", "--server", str(silent),
         "tests/test_echo.py::test_single_byte_echoed_without_waiting_for_more"], sys.executable,
        deadline=3)
    assert time.monotonic() - started < 30
    assert cases is None and "(stopped after 3 s)" in output, output


def test_a_quick_grade_does_not_finish_a_lab(tmp_path, no_build, capsys):
    assert lab.new(1, tmp_path) == 0
    write_grade(tmp_path, 1, {m["key"] for m in lab.LABS[1]["milestones"]}, quick=True)
    assert lab.new(2, tmp_path) == 0
    said = capsys.readouterr().out
    assert "Seeded from the reference stage 01-poll" in said and "QUICK=1" in said, said


def test_the_fingerprint_sees_subdirectories_and_not_the_editors_index(tmp_path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "x.hpp").write_text("int x;\n", encoding="utf-8")
    (tmp_path / ".cache" / "clangd").mkdir(parents=True)
    before = lab.fingerprint(tmp_path)
    (tmp_path / ".cache" / "clangd" / "index").write_text("anything", encoding="utf-8")
    assert lab.fingerprint(tmp_path) == before
    (tmp_path / "net" / "x.hpp").write_text("int y;\n", encoding="utf-8")
    assert lab.fingerprint(tmp_path) != before


COROUTINES = """
#include <coroutine>
struct Job {
  struct promise_type {
    Job get_return_object() { return {std::coroutine_handle<promise_type>::from_promise(*this)}; }
    std::suspend_always initial_suspend() { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() {}
    void unhandled_exception() {}
  };
  std::coroutine_handle<promise_type> handle;
};
Job one(int* n) { ++*n; co_await std::suspend_always{}; ++*n; }
Job two(int* n) { co_await std::suspend_always{}; *n *= 2; }
int main(int argc, char**) {
  int n = argc;
  Job a = one(&n), b = two(&n);
  while (!a.handle.done()) a.handle.resume();
  while (!b.handle.done()) b.handle.resume();
  a.handle.destroy();
  b.handle.destroy();
  return n == 6 ? 0 : 1;
}
"""


@pytest.mark.parametrize("compiler", ["g++", "clang++"])
def test_coroutines_are_found_in_a_binary_and_not_in_a_plain_one(tmp_path, compiler):
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    source = tmp_path / "co.cpp"
    source.write_text(COROUTINES, encoding="utf-8")
    binary = tmp_path / "co"
    subprocess.run([compiler, "-std=c++20", "-O2", str(source), "-o", str(binary)], check=True)
    names, problem = lab.coroutine_bodies(binary)
    assert problem is None and len(names) == 2, (names, problem)
    assert lab.grade_binary(["binary::coroutines"], binary).status == "passed"
    plain = tmp_path / "plain.cpp"
    plain.write_text("int main() { return 0; }\n", encoding="utf-8")
    subprocess.run([compiler, str(plain), "-o", str(binary)], check=True)
    assert lab.grade_binary(["binary::coroutines"], binary).status == "failed"
