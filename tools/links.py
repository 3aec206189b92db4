#!/usr/bin/env python3
"""Checks that every relative link in the docs leads somewhere, and every test they name exists.

    python3 tools/links.py [FILES...]     exit 0 when every link and test name resolves, or 1
                                          with a line per broken one: file:line: what, and why

FILES default to README.md and docs/*.md. A link is `[text](target)` outside code blocks and
code spans. Links with a scheme (https:, mailto:) are left alone: checking them needs a network.
The others must name an existing file or directory, relative to the file they are in; and a
`#fragment` must name a heading of the target markdown file (or of the same file, for a bare
`#fragment`), turned into an anchor the way GitHub does it: lower case, punctuation other than
`-` and `_` dropped, each space made a `-`, and `-1`, `-2`, ... added to repeated headings.

The docs also name the shared suite's tests, and those names must not go stale either: every
`test_FILE.py::test_NAME` (code blocks included, so transcripts count) must be a function of
tests/test_FILE.py, every `test_FILE.py` a file of tests/, and every code span that is a bare
`test_NAME` a test function or module of tests/.
Python 3 standard library only.
"""

import argparse
import functools
import re
import sys
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"`+[^`]*`+")
# [text](target) or [text](target "title"); the text may hold one level of brackets.
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
TESTS = ROOT / "tests"
# test_echo.py::test_name or tests/test_echo.py (a parametrization's [id] is not part of it).
TEST_REF = re.compile(r"\b(?:tests/)?(test_\w+\.py)(?:::(\w+))?")
BARE_TEST = re.compile(r"`(test_\w+)`")


def slug(heading):
    """The anchor GitHub gives a heading, before duplicates are numbered."""
    text = CODE_SPAN.sub(lambda m: m.group(0).strip("`"), heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading: its text
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def classified_lines(text):
    """(line number, line, kind) for every line: kind is "prose", "open" (the fence that opens a
    code block, its info string on it), "code", or "close"."""
    fenced = None
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if fence and fenced is None:
            fenced = fence.group(1)
            yield number, line, "open"
        elif fence and fence.group(1) == fenced:
            fenced = None
            yield number, line, "close"
        else:
            yield number, line, "prose" if fenced is None else "code"


def prose_lines(text):
    """(line number, line) for every line outside fenced code blocks."""
    return ((number, line) for number, line, kind in classified_lines(text) if kind == "prose")


@functools.cache  # many links point into the same few chapters
def anchors(path):
    """Every anchor the headings of a markdown file define."""
    seen = {}
    found = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links_in(path):
    """(line, target) for every link of a markdown file, outside code."""
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for match in LINK.finditer(CODE_SPAN.sub("", line)):
            yield number, match.group(1)


def problems(path, links):
    """(line, link, why) for each broken relative link among `links` of one markdown file."""
    for number, target in links:
        if SCHEME.match(target):
            continue
        file_part, _, fragment = target.partition("#")
        destination = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not destination.exists():
            yield number, target, f"{file_part} does not exist"
            continue
        if not fragment:
            continue
        if destination.is_dir() or destination.suffix != ".md":
            yield number, target, f"#{fragment} points into {file_part}, which is no markdown file"
        elif unquote(fragment) not in anchors(destination):
            yield number, target, f"no heading of {destination.name} has the anchor #{fragment}"


def test_names(tests_dir):
    """{file name: set of the test functions it defines} for the suite in tests_dir."""
    return {path.name: set(re.findall(r"^def (test_\w+)\(", path.read_text(encoding="utf-8"),
                                      re.MULTILINE))
            for path in tests_dir.glob("test_*.py")}


def test_problems(path, suite):
    """(line, name, why) for each test a markdown file names that the suite does not have."""
    functions = set().union(*suite.values())
    modules = {name.removesuffix(".py") for name in suite}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for match in TEST_REF.finditer(line):
            file_name, function = match.groups()
            if file_name not in suite:
                yield number, match.group(0), f"tests/{file_name} does not exist"
            elif function and function not in suite[file_name]:
                yield number, match.group(0), f"tests/{file_name} has no function {function}"
        for match in BARE_TEST.finditer(line):
            if match.group(1) not in functions and match.group(1) not in modules:
                yield number, match.group(1), "no test function or module of tests/ has this name"


def shown(path):
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args()
    files = args.files or [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = 0
    links = 0
    suite = test_names(TESTS)
    for path in files:
        path = path.resolve()
        found = list(links_in(path))
        links += len(found)
        for number, target, why in problems(path, found):
            broken += 1
            print(f"{shown(path)}:{number}: ({target}): {why}")
        for number, name, why in test_problems(path, suite):
            broken += 1
            print(f"{shown(path)}:{number}: {name}: {why}")
    if broken:
        print(f"links: {broken} broken links or test names, in {len(files)} files")
        return 1
    print(f"links: {links} checked in {len(files)} files, every relative one resolves;"
          f" every test named exists")
    return 0


if __name__ == "__main__":
    sys.exit(main())
