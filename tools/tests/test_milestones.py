"""Tests of tests/milestones.py and of chapter 01's copy of it: /usr/bin/python3 -m pytest tools/tests

The steps must cover the suite exactly (each test stage 1 runs in one step, no step naming a test
that does not exist), and tools/examples.py must notice a chapter table that has drifted.
"""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "tools"))
import examples  # noqa: E402
import milestones  # noqa: E402  (tools/examples.py put tests/ on the path)


@pytest.fixture(scope="module")
def stage1_tests():
    """The node ids `pytest tests --stage 1` runs, slow tests included, without running them."""
    run = subprocess.run([sys.executable, "-m", "pytest", "tests", "--stage", "1", "--server",
                          "/bin/true", "--collect-only", "-q", "-p", "no:cacheprovider"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    ids = [line.split("tests/", 1)[-1] for line in run.stdout.splitlines()
           if line.startswith("tests/test_") or line.startswith("test_")]
    assert len(ids) > 40, run.stdout
    return ids


def test_every_stage1_test_is_in_exactly_one_step(stage1_tests):
    for nodeid in stage1_tests:
        steps = [s["key"] for s in milestones.STEPS
                 if any(examples.belongs(nodeid, t) for t in s["tests"])]
        assert len(steps) == 1, f"{nodeid} is in steps {steps}, expected exactly one"


def test_every_listed_test_exists(stage1_tests):
    for s in milestones.STEPS:
        for listed in s["tests"]:
            assert any(examples.belongs(n, listed) for n in stage1_tests), (
                f"step {s['key']!r} names {listed}, which stage 1 does not run")


def test_keys_are_unique_and_server_examples_name_steps():
    keys = [s["key"] for s in milestones.STEPS]
    assert len(keys) == len(set(keys))
    for name, expectation in milestones.SERVER_EXAMPLES.items():
        step = milestones.step(expectation["fails_step"])
        assert any(examples.belongs(expectation["fails_test"], t) for t in step["tests"]), name
        later = [t for s in milestones.STEPS[milestones.STEPS.index(step) + 1:]
                 for t in s["tests"]]
        for test in expectation["also_fails"]:
            assert test in later, f"{name}: {test} is not a test of a step after {step['key']}"
        assert (REPO / "examples" / f"{name}.cpp").is_file(), name


def test_chapter_table_matches():
    assert examples.check_chapter() == []


def test_drifted_chapter_table_is_caught(tmp_path):
    text = examples.CHAPTER.read_text(encoding="utf-8")
    dropped = milestones.STEPS[2]["tests"][0]
    drifted = text.replace(f"`{dropped}`, ", "", 1)
    assert drifted != text
    chapter = tmp_path / "01-poll.md"
    chapter.write_text(drifted, encoding="utf-8")
    problems = examples.check_chapter(chapter)
    assert len(problems) == 1 and "differs from tests/milestones.py" in problems[0], problems
