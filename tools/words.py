#!/usr/bin/env python3
"""Checks that no chapter of the course runs over its length cap in words of prose.

    python3 tools/words.py [--cap N] [--docs DIR] [FILES...]

FILES default to the chapters, DIR/0[0-9]-*.md (DIR defaults to docs/). Prints one line per
chapter with its count, and exits 1, naming each chapter over the cap and by how much, if any
is over N words (default 7,000); 0 otherwise.

A word is what `wc -w` counts: a run of characters between whitespace. Prose is every line
outside fenced code blocks (``` or ~~~, indented or not, closed by a fence of the same kind) and
outside HTML comments (`<!-- ... -->`, such as the snippet markers). So code, transcripts and
diagrams in fences cost nothing; tables, lists and headings count. This is the count of

    awk '/^ *```/{c=!c; next} !c' FILE | wc -w

less the words inside HTML comments.
Python 3 standard library only.
"""

import argparse
import re
import sys
from pathlib import Path

from links import prose_lines, shown  # one reading of fenced blocks, one way to name a file

ROOT = Path(__file__).resolve().parent.parent
CAP = 7000
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def prose(text):
    """The text outside fenced code blocks and HTML comments."""
    return COMMENT.sub(" ", "\n".join(line for _, line in prose_lines(text)))


def count_words(text):
    return len(prose(text).split())


def chapters(docs):
    return sorted(docs.glob("0[0-9]-*.md"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cap", type=int, default=CAP,
                        help=f"the most words of prose a chapter may have (default {CAP:,})")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs",
                        help="where the chapters 0[0-9]-*.md are (default docs/)")
    parser.add_argument("files", nargs="*", type=Path, help="check these instead")
    args = parser.parse_args(argv)
    files = args.files or chapters(args.docs)
    if not files:
        print(f"words: no chapters 0[0-9]-*.md in {args.docs}", file=sys.stderr)
        return 1
    over = []
    for path in files:
        words = count_words(path.read_text(encoding="utf-8"))
        print(f"{shown(path)}: {words:,} words of prose (cap {args.cap:,})")
        if words > args.cap:
            over.append((path, words))
    for path, words in over:
        print(f"words: {shown(path)} has {words:,} words of prose, {words - args.cap:,} over the"
              f" cap of {args.cap:,} (counted outside fenced code blocks and HTML comments):"
              f" cut repetition, or move reference material to a page of its own",
              file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
