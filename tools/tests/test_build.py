"""Tests of what the Makefiles build without doctest: /usr/bin/python3 -m pytest tools/tests

A machine with only g++ and make must be able to build a stage and `make run` it; only the unit
tests need doctest's header. DOCTEST_HEADER names the header the Makefiles probe for, so naming
one that does not exist plays that machine without uninstalling anything. Stage 1 is the
smallest stage, so it is the one built; every build goes into a temporary BUILD_ROOT.
"""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
MISSING_HEADER = "doctest/nope.h"
HINT = (f"unit tests not built: {MISSING_HEADER} not found; "
        "`make deps` (repository root) installs doctest-dev")


def make(*args, env=None):
    # MAKEFLAGS from a `make tools-test` around us would hand this make a jobserver whose
    # descriptors it does not have, and the caller's variables.
    env = {k: v for k, v in (env or os.environ).items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def python_trap(directory):
    """An environment whose first python3 on PATH leaves a mark: the Makefile's search for an
    interpreter starts there. Returns the environment and the mark's path."""
    trap = directory / "python-trap"
    trap.mkdir()
    mark = directory / "python-was-asked"
    (trap / "python3").write_text(f"#!/bin/sh\ntouch {mark}\nexit 1\n")
    (trap / "python3").chmod(0o755)
    return dict(os.environ, PATH=f"{trap}:{os.environ['PATH']}"), mark


@pytest.fixture(scope="module")
def without_doctest(tmp_path_factory):
    """Stage 1 built as on a machine without doctest: the make run, the files it left, and
    whether it asked python."""
    root = tmp_path_factory.mktemp("build")
    env, mark = python_trap(tmp_path_factory.mktemp("python"))
    built = make("-j2", "stage-1", f"BUILD_ROOT={root}", f"DOCTEST_HEADER={MISSING_HEADER}",
                 env=env)
    stage = root / "01-poll"
    files = sorted(p.name for p in stage.iterdir()) if stage.is_dir() else []
    return root, built, files, mark.exists()


def test_stage_builds_its_server_without_doctest_or_python(without_doctest):
    root, built, files, asked_python = without_doctest
    assert built.returncode == 0, f"make stage-1 failed:\n{built.stdout}\n{built.stderr}"
    assert "server" in files, f"no server in {root}/01-poll: {files}"
    assert "unit_tests" not in files, "unit_tests built although doctest's header is missing"
    hints = [line for line in built.stdout.splitlines() if line.startswith("unit tests not")]
    assert hints == [HINT], f"expected the one line {HINT!r}, make printed:\n{built.stdout}"
    assert not asked_python, "make stage-1 ran python3 (only g++ and make may be needed)"


def test_unit_tests_without_doctest_fail_with_the_hint(without_doctest):
    root = without_doctest[0]
    ran = make("--no-print-directory", "-C", "01-poll", f"BUILD_ROOT={root}",
               f"DOCTEST_HEADER={MISSING_HEADER}", "test")
    assert ran.returncode != 0, f"make test passed without doctest:\n{ran.stdout}"
    # Our message, before the compiler is asked to include a header that is not there.
    assert f"error: cannot build the unit tests: {MISSING_HEADER} not found" in ran.stderr, (
        ran.stderr)
    assert "fatal error" not in ran.stderr, ran.stderr


def test_stage_builds_unit_tests_where_doctest_is(without_doctest):
    root = without_doctest[0]
    built = make("-j2", "stage-1", f"BUILD_ROOT={root}")
    assert built.returncode == 0, f"make stage-1 failed:\n{built.stdout}\n{built.stderr}"
    assert (root / "01-poll" / "unit_tests").is_file(), (
        f"no unit_tests in {root}/01-poll although doctest is installed:\n{built.stdout}")
    assert "unit tests not built" not in built.stdout


def test_make_run_builds_no_unit_tests_and_asks_no_python(tmp_path):
    env, mark = python_trap(tmp_path)
    root = tmp_path / "build"
    # -n prints what `make run` would build into an empty tree (the stage's own make runs too,
    # under -n as well), and the exec line, without compiling or starting anything. Where the
    # highest stage is 6, make run's choice between stages 6 and 5 runs under -n too (its line
    # starts makes): it plans stage 6's build, finds no stage 6 server, and plans stage 5's.
    planned = make("-n", "run", f"BUILD_ROOT={root}", env=env)
    assert planned.returncode == 0, f"make -n run failed:\n{planned.stdout}\n{planned.stderr}"
    lines = planned.stdout.splitlines()
    server = [line for line in lines if line.startswith("exec ") and "/server " in line]
    assert len(server) == 1 and server[0].endswith("/server --host 127.0.0.1 --port 7000"), (
        planned.stdout)
    stage_dir = Path(server[0].split()[1]).parent
    assert any(line.endswith(f"-o {stage_dir}/server") for line in lines), (
        f"make run would not link {stage_dir}/server:\n{planned.stdout}")
    unit_tests = [line for line in lines if "unit_tests" in line or "_test." in line
                  or "test_main" in line]
    assert unit_tests == [], "make run would build unit tests:\n" + "\n".join(unit_tests)
    assert not mark.exists(), "make run ran python3 (only g++ and make may be needed)"
