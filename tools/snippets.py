#!/usr/bin/env python3
"""Keeps the code blocks in the docs identical to the source they show.

A snippet is a fenced code block with an HTML comment on the line right before it that names
where the block comes from:

    <!-- snippet: 01-poll/loop.cpp Loop::accept_ready -->
    ```cpp
    (the definition, exactly as it stands in 01-poll/loop.cpp)
    ```

The comment starts in column 0 and reads `<!-- snippet: FILE [SELECTOR] -->`. FILE is relative
to the repository root. SELECTOR is one of:

  (nothing)           the whole file, e.g. a Makefile or a short header.
  NAME                a C++ definition, found by name: a function (`listen_on`, or `Loop::run` for
                      a member defined in or out of its class), a class, struct, union or enum
                      (`Connection`, `Command::Action`), a `constexpr` constant (`kMaxOwedBytes`)
                      or a `using` alias. NAME matches a definition whose qualified name is NAME or
                      ends in `::NAME`; a definition named exactly NAME wins over the others, so
                      `Loop` is the class and `Loop::Loop` its constructor. Two matches are an
                      error: qualify the name, or put the kind in front of it (`class Loop`,
                      `struct Accepted`, `enum Action`, `using Clock`, `constexpr kLimit`).
                      Declarations without a body (`void run();`) are not definitions.
  NAME nocomment      the same without the comment above it (see below).
  #REGION             the lines between `// snippet-begin: REGION` and `// snippet-end: REGION`
                      (or `# snippet-...` in Makefiles and scripts), markers excluded. A rare
                      fallback, for a part of a function or for overloads, which names cannot tell
                      apart.

A definition's snippet is whole source lines: from the comment block attached to it (the comment
lines directly above it, with no blank line between) to the line of its closing brace or
semicolon. Braces inside string and character literals and inside comments do not count. In every
snippet the common indentation is removed and region marker lines are left out. Line ranges are not
a selector (they drift as the source changes), and neither is `...` elision: a block shows the
whole of what it names.

    python3 tools/snippets.py check [FILES...]    every snippet matches its source (exit 0), or
                                                  each problem with file:line and a diff (exit 1)
    python3 tools/snippets.py update [FILES...]   rewrites the blocks that drifted, from the source

FILES default to README.md and docs/*.md. Python 3 standard library only.
"""

import argparse
import bisect
import difflib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CPP_SUFFIXES = {".cpp", ".hpp", ".h", ".cc", ".hh", ".cxx", ".hxx", ".ipp"}
KIND_WORDS = ("class", "struct", "union", "enum", "using", "constexpr")
DIFF_LINES_SHOWN = 24


class SnippetError(Exception):
    """A selector that cannot be resolved; the message says why."""


# --- C++ lexing -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Token:
    kind: str  # "ident", "number", "literal", "punct" or "pp" (a preprocessor directive)
    text: str
    start: int  # offsets into the source text
    end: int


IDENT_RE = re.compile(r"[A-Za-z_]\w*")
# A pp-number: also swallows digit separators (1'000) so that they are not taken for a quote.
NUMBER_RE = re.compile(r"\.?\d(?:'(?=\w)|[eEpP][+-]|[\w.])*")
LITERAL_PREFIXES = {"", "u8", "u", "U", "L"}


def _quoted_end(text, i):
    """End of the string or character literal whose opening quote is at i."""
    quote = text[i]
    k = i + 1
    while k < len(text):
        if text[k] == "\\":
            k += 2
        elif text[k] == quote:
            return k + 1
        elif text[k] == "\n":
            return k  # unterminated: stop at the line end
        else:
            k += 1
    return len(text)


def _raw_string_end(text, i):
    """End of the raw string literal R"delim( ... )delim" whose quote is at i."""
    paren = text.find("(", i)
    if paren < 0:
        return len(text)
    close = text.find(")" + text[i + 1 : paren] + '"', paren)
    return len(text) if close < 0 else close + paren - i + 1


def _directive_end(text, i):
    """End of the preprocessor directive starting at i, backslash continuations included."""
    k = i
    while True:
        newline = text.find("\n", k)
        if newline < 0:
            return len(text)
        if not text[k:newline].rstrip("\r").endswith("\\"):
            return newline
        k = newline + 1


def lex(text):
    """(tokens, comments): the C++ tokens of `text`, and (start, end) of every comment."""
    tokens, comments = [], []
    i, n = 0, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if c.isspace():
            at_line_start = at_line_start or c == "\n"
            i += 1
            continue
        if text.startswith("//", i) or text.startswith("/*", i):
            if text[i + 1] == "/":
                end = text.find("\n", i)
                end = n if end < 0 else end
            else:
                end = text.find("*/", i + 2)
                end = n if end < 0 else end + 2
            comments.append((i, end))
            i = end
            continue
        if c == "#" and at_line_start:
            kind, end = "pp", _directive_end(text, i)
        elif (word := IDENT_RE.match(text, i)) is not None:
            j = word.end()
            prefix = word.group()
            if j < n and text[j] == '"' and prefix.endswith("R") and prefix[:-1] in LITERAL_PREFIXES:
                kind, end = "literal", _raw_string_end(text, j)
            elif j < n and text[j] in "\"'" and prefix in LITERAL_PREFIXES:
                kind, end = "literal", _quoted_end(text, j)
            else:
                kind, end = "ident", j
        elif (number := NUMBER_RE.match(text, i)) is not None:
            kind, end = "number", number.end()
        elif c in "\"'":
            kind, end = "literal", _quoted_end(text, i)
        elif text.startswith("::", i) or text.startswith("->", i):
            kind, end = "punct", i + 2
        else:
            kind, end = "punct", i + 1  # `>>` stays two tokens: it may close two template lists
        tokens.append(Token(kind, text[i:end], i, end))
        at_line_start = False
        i = end
    return tokens, comments


# --- finding definitions --------------------------------------------------------------------

@dataclass(frozen=True)
class Definition:
    name: str  # qualified by its classes and namespaces: "Loop::run", "Command::Action"
    kind: str  # "function", "class", "struct", "union", "enum", "using" or "constexpr"
    start: int  # offset of its first token
    end: int  # offset just past its closing brace or semicolon


CLOSERS = {"(": ")", "[": "]", "{": "}"}
ACCESS_WORDS = {"public", "private", "protected"}
CLASS_KEYS = {"class", "struct", "union", "enum"}
# Words whose parenthesised operand comes before a function's own parameter list.
PAREN_WORDS = {"decltype", "alignas", "__attribute__", "__declspec", "noexcept", "requires"}


def normalize_name(name):
    """`operator ==`, `Loop :: run` -> `operator==`, `Loop::run`: spaces only between words."""
    name = re.sub(r"\s+", " ", name.strip())
    return re.sub(r" (?=\W)|(?<=\W) ", "", name)


class _Parser:
    """Walks the declarations of a C++ file, namespaces and class bodies included (function
    bodies are skipped whole), and records every definition it can name."""

    def __init__(self, tokens):
        self.toks = tokens
        self.found = []

    def text(self, k):
        return self.toks[k].text if 0 <= k < len(self.toks) else ""

    def is_ident(self, k):
        return 0 <= k < len(self.toks) and self.toks[k].kind == "ident"

    def close_of(self, k, limit):
        """Index of the bracket closing the one at k (or the last index before limit)."""
        opening, closing = self.text(k), CLOSERS[self.text(k)]
        depth = 0
        for j in range(k, limit):
            if self.toks[j].kind != "punct":
                continue
            if self.toks[j].text == opening:
                depth += 1
            elif self.toks[j].text == closing:
                depth -= 1
                if depth == 0:
                    return j
        return limit - 1

    def after_angles(self, k, limit):
        """Index after the template argument list opening at k (`<`), nested lists included."""
        depth = 0
        while k < limit:
            t = self.text(k)
            if t in CLOSERS:
                k = self.close_of(k, limit)
            elif t == "<":
                depth += 1
            elif t == ">":
                depth -= 1
                if depth == 0:
                    return k + 1
            elif t in (";", "{"):
                return k
            k += 1
        return limit

    def qualified_name(self, k):
        """`a::b::c` spelled by the tokens from k on, or "" if k holds no name."""
        name = ""
        while self.is_ident(k) and self.text(k) != "final":
            name += self.text(k)
            if self.text(k + 1) != "::" or not self.is_ident(k + 2):
                return name
            name += "::"
            k += 2
        return name

    def skip_attributes(self, k, limit):
        while self.text(k) == "[" and self.text(k + 1) == "[" or self.text(k) == "alignas":
            k = self.close_of(k + (self.text(k) == "alignas"), limit) + 1
        return k

    def skip_to_semicolon(self, k, limit):
        """Index of the `;` ending the statement at k, skipping bracketed groups."""
        while k < limit and self.text(k) != ";":
            k = self.close_of(k, limit) + 1 if self.text(k) in CLOSERS else k + 1
        return min(k, limit - 1)

    def add(self, name, kind, first, last):
        self.found.append(Definition(normalize_name(name), kind, self.toks[first].start,
                                     self.toks[last].end))

    def scope(self, k, limit, prefix):
        """Reads the declarations in toks[k:limit]."""
        while k < limit:
            t = self.toks[k]
            if t.kind == "pp" or t.text in (";", "}"):
                k += 1
            elif t.text in ACCESS_WORDS and self.text(k + 1) == ":":
                k += 2
            else:
                k = self.statement(k, limit, prefix) + 1

    def statement(self, start, limit, prefix):
        """Reads one declaration starting at `start`; returns the index of its last token."""
        k = start
        while self.text(k) == "template" and self.text(k + 1) == "<":
            k = self.after_angles(k + 1, limit)
        k = self.skip_attributes(k, limit)
        word = self.text(k)
        if word == "inline" and self.text(k + 1) == "namespace":
            k, word = k + 1, "namespace"
        if word == "namespace":
            return self.namespace(k, limit, prefix)
        if word == "extern" and self.text(k + 1).startswith('"') and self.text(k + 2) == "{":
            close = self.close_of(k + 2, limit)
            self.scope(k + 3, close, prefix)
            return close
        if word == "using":
            return self.using(start, k, limit, prefix)
        if word in CLASS_KEYS:
            last = self.type_definition(start, k, limit, prefix)
            if last is not None:
                return last
        return self.declaration(start, k, limit, prefix)

    def namespace(self, k, limit, prefix):
        name = self.qualified_name(k + 1)
        k += 2 * name.count("::") + 2 if name else 1
        if self.text(k) != "{":  # namespace alias
            return self.skip_to_semicolon(k, limit)
        close = self.close_of(k, limit)
        self.scope(k + 1, close, prefix + name + "::" if name else prefix)
        return close

    def using(self, start, k, limit, prefix):
        last = self.skip_to_semicolon(k, limit)
        if self.is_ident(k + 1) and self.text(k + 2) == "=":
            self.add(prefix + self.text(k + 1), "using", start, last)
        return last

    def type_definition(self, start, k, limit, prefix):
        """A class, struct, union or enum with a body; None for anything else (a forward
        declaration, or a variable of an elaborated type such as `struct stat st;`)."""
        kind = self.text(k)
        k += 1
        if kind == "enum" and self.text(k) in ("class", "struct"):
            k += 1
        k = self.skip_attributes(k, limit)
        name = self.qualified_name(k)
        k += 2 * name.count("::") + 1 if name else 0
        if self.text(k) == "<":  # a specialisation: template <> struct hash<Key>
            k = self.after_angles(k, limit)
        if self.text(k) == "final":
            k += 1
        if self.text(k) == ":" and name:  # base classes, or an enum's underlying type
            while k < limit and self.text(k) not in ("{", ";"):
                k = self.close_of(k, limit) + 1 if self.text(k) in ("(", "[") else k + 1
        if not name or self.text(k) != "{":
            return None
        close = self.close_of(k, limit)
        if kind != "enum":
            self.scope(k + 1, close, prefix + name + "::")
        last = self.skip_to_semicolon(close + 1, limit)
        self.add(prefix + name, kind, start, last)
        return last

    def parameter_list(self, k, limit):
        """(index of the `(` opening a function's parameter list, index where the scan stopped):
        the first top-level `(` that is not part of a type, an attribute or an operator's name,
        provided no top-level `=` comes before it (then it is a variable's initializer)."""
        angles = 0
        operator_name = False
        while k < limit:
            t = self.text(k)
            if t in (";", "{"):
                return None, k
            if t == "operator":
                operator_name = True
            elif t == "(":
                if self.text(k - 1) == "operator" or self.text(k - 1) in PAREN_WORDS:
                    k = self.close_of(k, limit)
                elif angles == 0:
                    return k, k
                else:
                    k = self.close_of(k, limit)
            elif t == "[":
                k = self.close_of(k, limit)
            elif operator_name:
                pass  # <, >, = and the like spell the operator's name here
            elif t == "=" and angles == 0:
                return None, k
            elif t == "<" and (self.is_ident(k - 1) or self.text(k - 1) == ">"):
                angles += 1
            elif t == ">" and angles > 0:
                angles -= 1
            k += 1
        return None, k

    def function_name(self, head, paren):
        """The qualified name just before a parameter list: `Loop::run`, `Fd::operator=`."""
        operators = [q for q in range(head, paren) if self.text(q) == "operator"]
        if operators:
            q = operators[-1]
            name = " ".join(self.text(j) for j in range(q, paren))  # normalized by add()
            q -= 1
        elif self.is_ident(paren - 1):
            q = paren - 1
            name = self.text(q)
            q -= 1
            if self.text(q) == "~":
                name, q = "~" + name, q - 1
        else:
            return None
        while q > head and self.text(q) == "::":
            q -= 1
            if self.text(q) == ">":  # Task<T>::get: the name leaves the template arguments out
                depth = 0
                while q >= head:
                    depth += {">": 1, "<": -1}.get(self.text(q), 0)
                    q -= 1
                    if depth == 0:
                        break
            if q < head or not self.is_ident(q):
                break
            name = self.text(q) + "::" + name
            q -= 1
        return name

    def body_after_parameters(self, k, limit):
        """Index of the `{` opening a function body after the parameter list's `)` at k-1, or
        of the `;` that makes it a declaration. Skips qualifiers, a trailing return type and
        a constructor's member initializers, whose braces are not the body."""
        while k < limit:
            t = self.text(k)
            if t in ("{", ";"):
                return k
            if t in ("(", "["):
                k = self.close_of(k, limit) + 1
            elif t == ":":
                k = self.member_initializers(k + 1, limit)
            elif t == "=":  # = default, = delete, = 0
                return self.skip_to_semicolon(k, limit)
            else:
                k += 1
        return limit - 1

    def member_initializers(self, k, limit):
        """Index just after `a_(x), b_{y}, Base<T>(z)`."""
        while k < limit:
            while k < limit and self.text(k) not in ("(", "{", ";"):
                k = self.after_angles(k, limit) if self.text(k) == "<" else k + 1
            if self.text(k) not in ("(", "{"):
                return k
            k = self.close_of(k, limit) + 1
            while self.text(k) == ".":  # a pack expansion: base(args)...
                k += 1
            if self.text(k) != ",":
                return k
            k += 1
        return k

    def declaration(self, start, k, limit, prefix):
        """A function (recorded if it has a body), a constexpr variable (recorded), or anything
        else (skipped whole)."""
        paren, stop = self.parameter_list(k, limit)
        if paren is not None:
            name = self.function_name(k, paren)
            body = self.body_after_parameters(self.close_of(paren, limit) + 1, limit)
            if self.text(body) != "{":
                return body
            close = self.close_of(body, limit)
            if name:
                self.add(prefix + name, "function", start, close)
            return close
        last = self.skip_to_semicolon(k, limit)
        if "constexpr" in (self.text(j) for j in range(k, stop)):
            # The variable's name is the last word before its initializer (=, {} or []).
            names = [j for j in range(k, stop) if self.is_ident(j)]
            if names:
                self.add(prefix + self.text(names[-1]), "constexpr", start, last)
        return last


def find_definitions(text):
    tokens, _ = lex(text)
    parser = _Parser(tokens)
    parser.scope(0, len(tokens), "")
    return parser.found


# --- source files and selectors -------------------------------------------------------------

MARKER_RE = re.compile(r"^\s*(?://|#)\s*snippet-(begin|end):\s*(\S+)\s*$")


def dedent(lines):
    """Removes the indentation all non-blank lines share; blank lines become empty."""
    widths = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(widths, default=0)
    return [line[cut:] if line.strip() else "" for line in lines]


def render(lines):
    """The snippet text of some source lines: no region markers, common indentation removed."""
    return "\n".join(dedent([line for line in lines if not MARKER_RE.match(line)]))


class SourceFile:
    """One file snippets are taken from, parsed on first use."""

    def __init__(self, relative, text):
        self.relative = relative
        self.text = text
        self.lines = text.split("\n")
        if self.lines and self.lines[-1] == "":
            self.lines.pop()
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self._definitions = None
        self._comment_lines = None

    def line_of(self, offset):
        return bisect.bisect_right(self.line_starts, offset) - 1

    def whole(self):
        return render(self.lines)

    def region(self, name):
        begins, ends = [], []
        for number, line in enumerate(self.lines):
            marker = MARKER_RE.match(line)
            if marker and marker.group(2) == name:
                (begins if marker.group(1) == "begin" else ends).append(number)
        if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
            raise SnippetError(
                f"region '{name}' in {self.relative} needs exactly one"
                f" 'snippet-begin: {name}' line and one 'snippet-end: {name}' line after it"
                f" (found {len(begins)} and {len(ends)})")
        return render(self.lines[begins[0] + 1 : ends[0]])

    def definitions(self):
        if self._definitions is None:
            if Path(self.relative).suffix not in CPP_SUFFIXES:
                raise SnippetError(f"{self.relative} is not a C++ source, so names cannot be"
                                   " looked up in it: use a #region or the whole file")
            self._definitions = find_definitions(self.text)
        return self._definitions

    def comment_lines(self):
        """Line numbers (0-based) that hold nothing but comment text."""
        if self._comment_lines is None:
            _, comments = lex(self.text)
            self._comment_lines = set()
            for start, end in comments:
                first, last = self.line_of(start), self.line_of(max(start, end - 1))
                before = self.text[self.line_starts[first] : start]
                after = self.lines[last][end - self.line_starts[last] :] if last < len(
                    self.lines) else ""
                if not before.strip() and not after.strip():
                    self._comment_lines.update(range(first, last + 1))
        return self._comment_lines

    def definition(self, name, kind=None, with_comment=True):
        wanted = normalize_name(name)
        everything = named(wanted, self.definitions())
        matches = named(wanted, [d for d in self.definitions() if kind in (None, d.kind)])
        what = f"{kind} {wanted}" if kind else wanted
        if not matches:
            message = f"no definition of '{what}' in {self.relative}"
            if everything:
                kinds = " and a ".join(sorted({d.kind for d in everything}))
                raise SnippetError(message + f" (there is a {kinds} of that name)")
            close = difflib.get_close_matches(wanted, sorted({d.name for d in self.definitions()}))
            raise SnippetError(message + (f"; did you mean {', '.join(close)}?" if close else ""))
        if len(matches) > 1:
            places = ", ".join(f"{d.kind} {d.name} (line {self.line_of(d.start) + 1})"
                               for d in matches)
            raise SnippetError(f"'{what}' is ambiguous in {self.relative}: {places}; name it more"
                               " specifically (Class::member, or class/struct/enum NAME),"
                               " or mark a #region")
        first, last = self.line_of(matches[0].start), self.line_of(matches[0].end - 1)
        if with_comment:
            comments = self.comment_lines()
            while first - 1 in comments:
                first -= 1
        return render(self.lines[first : last + 1])


def named(name, definitions):
    """The definitions called exactly `name` if any, else those whose name ends in ::name."""
    exact = [d for d in definitions if d.name == name]
    return exact or [d for d in definitions if d.name.endswith("::" + name)]


def parse_selector(selector):
    """`FILE [SELECTOR]` -> (file, how, argument): how is "file", "region" or "name", and for a
    name the argument is (name, kind or None, with_comment)."""
    words = selector.split()
    if not words:
        raise SnippetError("empty snippet comment: expected <!-- snippet: FILE [SELECTOR] -->")
    file, rest = words[0], words[1:]
    if rest and rest[0] in ("lines", "line") or re.fullmatch(r"(?:lines?\s+)?\d+(-\d+)?",
                                                             " ".join(rest)):
        raise SnippetError("line ranges are not allowed (they drift as the source changes):"
                           " name a definition, or mark a #region")
    if not rest:
        return file, "file", None
    if rest[0].startswith("#"):
        if len(rest) != 1 or len(rest[0]) == 1:
            raise SnippetError(f"a region selector is one word, '#NAME': got '{' '.join(rest)}'")
        return file, "region", rest[0][1:]
    with_comment = rest[-1] != "nocomment"
    if not with_comment:
        rest = rest[:-1]
    kind = None
    if rest and rest[0] in KIND_WORDS:
        kind, rest = rest[0], rest[1:]
    if not rest:
        raise SnippetError(f"'{selector}' names no definition")
    return file, "name", (" ".join(rest), kind, with_comment)


class Sources:
    """The files under the root that snippets come from, each read once."""

    def __init__(self, root):
        self.root = Path(root).resolve()
        self.files = {}

    def get(self, relative):
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise SnippetError(f"{relative} is outside the repository")
        if relative not in self.files:
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise SnippetError(f"no such file: {relative}") from None
            except OSError as e:
                raise SnippetError(f"cannot read {relative}: {e.strerror}") from None
            self.files[relative] = SourceFile(relative, text)
        return self.files[relative]

    def extract(self, selector):
        """The text a snippet comment names (without a trailing newline)."""
        file, how, argument = parse_selector(selector)
        source = self.get(file)
        if how == "file":
            return source.whole()
        if how == "region":
            return source.region(argument)
        name, kind, with_comment = argument
        return source.definition(name, kind, with_comment)


# --- markdown -------------------------------------------------------------------------------

SNIPPET_RE = re.compile(r"^<!--\s*snippet:(.*?)-->\s*$")
LOOKS_LIKE_SNIPPET_RE = re.compile(r"^<!--\s*snippet\b")
FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


@dataclass
class Snippet:
    line: int  # 1-based line of the snippet comment
    selector: str
    body_start: int  # 0-based index of the block's first line
    body_end: int  # 0-based index of its closing fence
    error: str = ""  # set when the comment or its block is malformed

    def body(self, lines):
        return "\n".join(lines[self.body_start : self.body_end])


def _closing_fence(lines, k, fence):
    """Index of the line closing a block opened with `fence` whose body starts at k."""
    closing = re.compile(r"^ {0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$")
    while k < len(lines) and not closing.match(lines[k]):
        k += 1
    return k


def find_snippets(lines):
    """The snippet comments of a markdown file and the code block below each. Comments inside
    a code block (an example of the syntax) are not snippets."""
    snippets = []
    k = 0
    while k < len(lines):
        fence = FENCE_RE.match(lines[k])
        if fence:
            k = _closing_fence(lines, k + 1, fence.group(1)) + 1
            continue
        if LOOKS_LIKE_SNIPPET_RE.match(lines[k]):
            comment = SNIPPET_RE.match(lines[k])
            snippet = Snippet(k + 1, comment.group(1).strip() if comment else lines[k], k + 2,
                              k + 2)
            below = FENCE_RE.match(lines[k + 1]) if k + 1 < len(lines) else None
            if not comment:
                snippet.error = "malformed snippet comment: expected <!-- snippet: FILE [SELECTOR] -->"
            elif not below:
                snippet.error = "the line after a snippet comment must open a fenced code block"
            else:
                snippet.body_end = _closing_fence(lines, k + 2, below.group(1))
                if snippet.body_end == len(lines):
                    snippet.error = "the code block under this snippet comment is never closed"
            snippets.append(snippet)
            k = snippet.body_end + 1 if below else k + 1
            continue
        k += 1
    return snippets


def short_diff(doc_text, source_text, doc_label, source_label):
    diff = list(difflib.unified_diff(doc_text.split("\n"), source_text.split("\n"),
                                     fromfile=doc_label, tofile=source_label, lineterm="", n=2))
    if len(diff) > DIFF_LINES_SHOWN:
        diff = diff[:DIFF_LINES_SHOWN] + [f"... ({len(diff) - DIFF_LINES_SHOWN} more diff lines)"]
    return "\n".join("    " + line for line in diff)


def elision_hint(body):
    if any(line.strip() in ("...", "// ...", "/* ... */", "# ...") for line in body.split("\n")):
        return "\n    (the block elides code with '...': a snippet shows the whole definition)"
    return ""


def process(markdown, sources, update, report):
    """Checks (and with update, repairs) the snippets of one markdown file.
    Returns (snippets seen, problems left, blocks rewritten)."""
    label = display_path(markdown, sources.root)
    lines = markdown.read_text(encoding="utf-8").split("\n")
    snippets = find_snippets(lines)
    problems = updated = 0
    # Bottom up, so that rewriting a block does not move the blocks still to be done.
    for snippet in reversed(snippets):
        where = f"{label}:{snippet.line}: snippet {snippet.selector}"
        if snippet.error:
            report.append(f"{where}: {snippet.error}")
            problems += 1
            continue
        try:
            expected = sources.extract(snippet.selector)
        except SnippetError as e:
            report.append(f"{where}: {e}")
            problems += 1
            continue
        body = snippet.body(lines)
        if body == expected:
            continue
        if update:
            lines[snippet.body_start : snippet.body_end] = expected.split("\n")
            report.append(f"{where}: updated from its source")
            updated += 1
            continue
        report.append(f"{where} no longer matches its source\n"
                      + short_diff(body, expected, f"{label} (the block)",
                                   f"{snippet.selector} (the source)")
                      + elision_hint(body))
        problems += 1
    if updated:
        markdown.write_text("\n".join(lines), encoding="utf-8")
    return len(snippets), problems, updated


def display_path(path, root):
    path = Path(path).resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def default_markdown(root):
    readme = root / "README.md"
    return ([readme] if readme.is_file() else []) + sorted((root / "docs").glob("*.md"))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="snippets.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("check", "update"))
    parser.add_argument("files", nargs="*", type=Path,
                        help="markdown files (default: README.md and docs/*.md)")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="where snippet paths start (default: the repository root)")
    args = parser.parse_args(argv)
    sources = Sources(args.root)
    files = args.files or default_markdown(sources.root)
    total = problems = updated = 0
    for markdown in files:
        if not markdown.is_file():
            print(f"{markdown}: no such markdown file")
            problems += 1
            continue
        report = []
        seen, bad, fixed = process(markdown, sources, args.command == "update", report)
        for message in reversed(report):  # back in the order of the file
            print(message)
        total, problems, updated = total + seen, problems + bad, updated + fixed
    where = f"{total} checked in {len(files)} file{'s' * (len(files) != 1)}"
    if problems:
        print(f"snippets: {problems} problem{'s' * (problems != 1)}, {where}")
        return 1
    if updated:
        print(f"snippets: {updated} updated, {where}")
    else:
        print(f"snippets: {where}, all match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
