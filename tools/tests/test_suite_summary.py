"""Tests of the shared suite's closing summary (tests/conftest.py): run by make tools-test

The suite is only collected (--collect-only), so no server runs: /bin/true stands in for one.
What is checked is the explanation printed at the end: the stage gate lists only tests the
selection would have run, and every deselected test is accounted for.
"""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


def collect(*options):
    done = subprocess.run([sys.executable, "-m", "pytest", "tests", "--stage", "1",
                           "--server", "/bin/true", "--collect-only", "-q", *options],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def deselected(output):
    """pytest's own count, from '54/78 tests collected (24 deselected)'."""
    return int(re.search(r"\((\d+) deselected\)", output).group(1))


def test_quick_run_accounts_for_stage_gated_and_slow_tests():
    output = collect("-m", "not slow")
    closing = re.search(r"^(\d+) deselected: (\d+) left out for --stage 1"
                        r" \(since\(5\), since\(6\)\);"
                        r" (\d+) not selected by -m \"not slow\"$", output, re.MULTILINE)
    assert closing, output
    total, gated, slow = map(int, closing.groups())
    assert total == gated + slow == deselected(output)
    # The slow ones are named, with the marker's reason.
    assert re.search(r"^slow: .*QUICK=1", output, re.MULTILINE), output
    assert "test_soak.py::test_chaos_soak_every_normal_client_gets_its_bytes" in output


def test_k_lists_only_the_selected_tests_the_stage_leaves_out():
    output = collect("-k", "emfile")
    left_out = [line.strip() for line in output.splitlines() if line.startswith("    test_")]
    assert left_out == ["test_emfile.py::test_emfile_with_several_threads_does_not_spin"], output
    assert "test_stage5.py" not in output


def test_k_with_nothing_stage_gated_says_so_in_one_line():
    output = collect("-k", "half_close")
    assert "left out for --stage 1 (see SINCE" not in output
    line = next(line for line in output.splitlines() if line.endswith('by -k "half_close"'))
    assert line == (f"{deselected(output)} deselected: --stage 1 left out none of the selected"
                    f" tests; {deselected(output)} not selected by -k \"half_close\"")
