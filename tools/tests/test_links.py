"""Tests of tools/links.py: /usr/bin/python3 -m pytest tools/tests

Each test writes a few markdown files into a temporary directory and checks them, except the
last one, which checks the repository's own README.md and docs/.
"""

import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent.parent
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))

import links  # noqa: E402  (found through the path set just above)


def broken(tmp_path, files):
    """Writes files ({name: text}) and returns the problems of the first, as (line, link)."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    first = tmp_path / next(iter(files))
    return [(line, target) for line, target, _ in links.problems(first, links.links_in(first))]


def test_slugs_follow_github():
    assert links.slug("Stage 3: edge-triggered `epoll`") == "stage-3-edge-triggered-epoll"
    assert links.slug("`EPOLLONESHOT` and `EPOLLEXCLUSIVE`: when threads share") == (
        "epolloneshot-and-epollexclusive-when-threads-share")
    assert links.slug("The awaiter, and why not symmetric transfer") == (
        "the-awaiter-and-why-not-symmetric-transfer")
    assert links.slug("1. Stop draining (10 min)") == "1-stop-draining-10-min"
    assert links.slug("Counting system calls, LT against ET") == (
        "counting-system-calls-lt-against-et")


def test_missing_file_and_missing_anchor_are_reported(tmp_path):
    found = broken(tmp_path, {
        "a.md": "# A\n\nSee [b](b.md), [gone](gone.md) and [no such part](b.md#nowhere).\n"
                "Also [here](#a) and [not here](#b).\n",
        "b.md": "# B\n\n## Some part\n",
    })
    assert found == [(3, "gone.md"), (3, "b.md#nowhere"), (4, "#b")]


def test_anchors_of_repeated_headings_are_numbered(tmp_path):
    found = broken(tmp_path, {
        "a.md": "[first](#answer) [second](#answer-1) [third](#answer-2)\n\n"
                "## Answer\n\n## Answer\n",
    })
    assert found == [(1, "#answer-2")]


def test_links_in_code_and_external_links_are_left_alone(tmp_path):
    found = broken(tmp_path, {
        "a.md": "```md\n[in a block](nowhere.md)\n```\n"
                "Inline `[in a span](nowhere.md)` and [the web](https://example.com/x.md).\n"
                "A directory: [dir](sub/) and a file in it: [file](sub/c.txt).\n",
        "sub/c.txt": "text\n",
    })
    assert found == []


def test_tests_named_in_the_docs_must_exist(tmp_path):
    suite = {"test_echo.py": {"test_binary", "test_nul"}, "test_large.py": {"test_partial"}}
    doc = tmp_path / "a.md"
    doc.write_text("`test_echo.py::test_binary` and `test_echo.py::test_renamed`,\n"
                   "```\ntests/test_large.py::test_partial[4k] PASSED\n"
                   "tests/test_gone.py::test_x FAILED\n```\n"
                   "`test_nul`, `test_large`, `test_missing`; plain test_words are prose.\n")
    found = [(line, name) for line, name, _ in links.test_problems(doc, suite)]
    assert found == [(1, "test_echo.py::test_renamed"), (4, "tests/test_gone.py::test_x"),
                     (6, "test_missing")]


def test_the_suite_is_read_from_its_files(tmp_path):
    (tmp_path / "test_a.py").write_text("def test_one():\n    pass\n\n\ndef helper():\n"
                                        "    pass\n\n\ndef test_two(server):\n    pass\n")
    (tmp_path / "helpers.py").write_text("def test_not_a_test_file():\n    pass\n")
    assert links.test_names(tmp_path) == {"test_a.py": {"test_one", "test_two"}}


def test_the_repository_docs_have_no_broken_links():
    result = subprocess.run([sys.executable, str(TOOLS / "links.py")], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
