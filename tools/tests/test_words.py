"""Tests of tools/words.py: /usr/bin/python3 -m pytest tools/tests

Each test writes chapters into a temporary docs directory and runs the check on it, as
`make docs-check` runs it on docs/.
"""

import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOOLS))

import words  # noqa: E402  (found through the path set just above)


def check(docs, *options):
    return subprocess.run([sys.executable, str(TOOLS / "words.py"), "--docs", str(docs),
                           *options], capture_output=True, text=True, timeout=60)


def prose_of(count):
    return " ".join(f"word{i}" for i in range(count)) + "\n"


def test_a_chapter_over_the_cap_fails_naming_file_and_excess(tmp_path):
    (tmp_path / "00-intro.md").write_text("# Intro\n\n" + prose_of(100))
    (tmp_path / "01-long.md").write_text("# Long\n\n" + prose_of(7010))
    done = check(tmp_path)
    assert done.returncode == 1, done
    # One line per chapter with its count; the heading's "# Long" is 2 more words.
    assert "00-intro.md: 102 words of prose (cap 7,000)" in done.stdout, done.stdout
    assert "01-long.md: 7,012 words of prose (cap 7,000)" in done.stdout, done.stdout
    assert "01-long.md has 7,012 words of prose, 12 over the cap of 7,000" in done.stderr
    assert "00-intro.md has" not in done.stderr


def test_code_in_fences_and_html_comments_does_not_count(tmp_path):
    code = "\n".join(prose_of(20) for _ in range(500))  # 10,000 words of code
    (tmp_path / "01-code.md").write_text(
        "Some prose here.\n\n```cpp\n" + code + "```\n\n"
        "  ~~~text\n  ``` not a closing fence: a tilde fence ends with tildes\n" + code
        + "  ~~~\n\n<!-- snippet: 01-poll/loop.cpp function:Loop::run\n  and more -->\nEnd.\n")
    assert words.count_words((tmp_path / "01-code.md").read_text()) == 4
    done = check(tmp_path)
    assert done.returncode == 0, done
    assert "01-code.md: 4 words of prose" in done.stdout


def test_only_chapters_are_checked_and_the_cap_can_be_set(tmp_path):
    (tmp_path / "pitfalls.md").write_text(prose_of(8000))  # a reference page, not a chapter
    (tmp_path / "02-short.md").write_text(prose_of(50))
    done = check(tmp_path)
    assert done.returncode == 0, done
    assert "pitfalls" not in done.stdout
    assert check(tmp_path, "--cap", "49").returncode == 1


def test_no_chapters_is_an_error_not_a_pass(tmp_path):
    done = check(tmp_path)
    assert done.returncode == 1 and "no chapters" in done.stderr
