"""Tests of tools/snippets.py: /usr/bin/python3 -m pytest tools/tests

Each test writes a small source tree and markdown file into a temporary directory and runs the
checker on it, except the last one, which checks the repository's own README.md and docs/.
"""

import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))

import snippets  # noqa: E402  (found through the path set just above)

LOOP_CPP = """\
#include "loop.hpp"

namespace {

// Bytes asked for per read.
constexpr int kChunk = 4096;

}  // namespace

// Serves clients until stopped.
// A second comment line.
void Loop::run() {
  for (;;) step();
}

int Loop::count() const { return n_; }
"""

RUN_SNIPPET = """\
// Serves clients until stopped.
// A second comment line.
void Loop::run() {
  for (;;) step();
}"""


def write(root, files):
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def block(selector, body, language="cpp"):
    """A markdown snippet: the comment, then the fenced block."""
    return f"<!-- snippet: {selector} -->\n```{language}\n{body}\n```\n"


def run(root, *args):
    """Runs the script as a user would; returns (exit code, everything it printed)."""
    result = subprocess.run([sys.executable, str(TOOLS / "snippets.py"), *args, "--root", str(root)],
                            cwd=root, capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout + result.stderr


def extract(root, source, selector, name="src/a.cpp"):
    """The text `<!-- snippet: NAME SELECTOR -->` names in `source`."""
    write(root, {name: source})
    return snippets.Sources(root).extract(f"{name} {selector}".strip())


def extraction_error(root, source, selector, name="src/a.cpp"):
    with pytest.raises(snippets.SnippetError) as caught:
        extract(root, source, selector, name)
    return str(caught.value)


@pytest.fixture
def loop_doc(tmp_path):
    """src/loop.cpp and docs/a.md, whose block (at line 3) shows Loop::run as it is."""
    write(tmp_path, {"src/loop.cpp": LOOP_CPP,
                     "docs/a.md": "# Title\n\n" + block("src/loop.cpp Loop::run", RUN_SNIPPET)})
    return tmp_path


def test_matching_snippet_passes(loop_doc):
    code, out = run(loop_doc, "check", "docs/a.md")
    assert (code, out) == (0, "snippets: 1 checked in 1 file, all match\n")


def test_edited_source_line_fails_and_names_file_and_line(loop_doc):
    source = loop_doc / "src/loop.cpp"
    source.write_text(source.read_text().replace("step();", "step(2);"))
    code, out = run(loop_doc, "check", "docs/a.md")
    assert code == 1
    assert "docs/a.md:3: snippet src/loop.cpp Loop::run no longer matches its source" in out
    assert "-  for (;;) step();" in out and "+  for (;;) step(2);" in out
    assert out.endswith("snippets: 1 problem, 1 checked in 1 file\n")


def test_update_repairs_a_drifted_block_and_nothing_else(loop_doc):
    source = loop_doc / "src/loop.cpp"
    source.write_text(source.read_text().replace("step();", "step(2);"))
    doc = loop_doc / "docs/a.md"
    doc.write_text(doc.read_text() + "\nSome prose.\n\n" + block("src/loop.cpp kChunk", "stale"))
    code, out = run(loop_doc, "update", "docs/a.md")
    assert code == 0, out
    assert "snippets: 2 updated" in out
    expected = ("# Title\n\n" + block("src/loop.cpp Loop::run", RUN_SNIPPET.replace("step()", "step(2)"))
                + "\nSome prose.\n\n"
                + block("src/loop.cpp kChunk", "// Bytes asked for per read.\nconstexpr int kChunk = 4096;"))
    assert doc.read_text() == expected
    assert run(loop_doc, "check", "docs/a.md")[0] == 0


@pytest.mark.parametrize("selector, message", [
    ("src/loop.cpp Loop::walk", "no definition of 'Loop::walk' in src/loop.cpp; did you mean"),
    ("src/nowhere.cpp Loop::run", "no such file: src/nowhere.cpp"),
    ("src/loop.cpp lines 10-14", "line ranges are not allowed"),
    ("src/loop.cpp #missing", "region 'missing' in src/loop.cpp needs exactly one"),
])
def test_unresolvable_selector_fails_with_its_reason(tmp_path, selector, message):
    write(tmp_path, {"src/loop.cpp": LOOP_CPP, "docs/a.md": "Intro.\n" + block(selector, "x")})
    code, out = run(tmp_path, "check")
    assert code == 1
    assert f"docs/a.md:2: snippet {selector}: {message}" in out


def test_update_leaves_an_unresolvable_block_alone_and_fails(loop_doc):
    doc = loop_doc / "docs/a.md"
    text = doc.read_text() + block("src/loop.cpp Loop::walk", "stale")
    doc.write_text(text)
    code, out = run(loop_doc, "update")
    assert code == 1 and "no definition of 'Loop::walk'" in out
    assert doc.read_text() == text


def test_missing_markdown_file_is_a_problem(loop_doc):
    code, out = run(loop_doc, "check", "docs/nowhere.md")
    assert code == 1 and "docs/nowhere.md: no such markdown file" in out


def test_elided_block_is_rejected_with_a_hint(loop_doc):
    (loop_doc / "docs/a.md").write_text(
        block("src/loop.cpp Loop::run", "void Loop::run() {\n  ...\n}"))
    code, out = run(loop_doc, "check")
    assert code == 1 and "elides code with '...'" in out


def test_comment_without_a_code_block_below_is_an_error(loop_doc):
    (loop_doc / "docs/a.md").write_text("<!-- snippet: src/loop.cpp Loop::run -->\n\nProse.\n")
    code, out = run(loop_doc, "check")
    assert code == 1 and "docs/a.md:1: snippet src/loop.cpp Loop::run: the line after" in out


def test_snippet_syntax_shown_inside_a_code_block_is_not_a_snippet(loop_doc):
    (loop_doc / "docs/a.md").write_text("````md\n" + block("src/loop.cpp Nothing::here", "x")
                                        + "````\n")
    assert run(loop_doc, "check") == (0, "snippets: 0 checked in 1 file, all match\n")


def test_braces_in_strings_chars_and_comments_do_not_end_a_definition(tmp_path):
    source = """\
std::string tricky() {
  // a } in a comment
  /* and { one here */
  const char* s = "}\\"{";
  char c = '}';
  auto raw = R"x(} ")" })x";
  int n = 1'000'000 + '{';
  return s;
}

int after() { return 1; }
"""
    assert extract(tmp_path, source, "tricky") == source.split("\n\n")[0]
    assert extract(tmp_path, source, "after") == "int after() { return 1; }"


def test_member_functions_in_and_out_of_their_class(tmp_path):
    source = """\
class Conn {
 public:
  explicit Conn(int fd) : fd_{fd}, name_("c{") {}
  // Reads when nothing is owed.
  bool wants_read() const { return owed_ == 0; }
  Conn& operator=(const Conn&) = default;
  explicit operator bool() const { return fd_ >= 0; }
  void close();

 private:
  int fd_;
};

void Conn::close() {
  fd_ = -1;
}
"""
    assert extract(tmp_path, source, "Conn::wants_read") == (
        "// Reads when nothing is owed.\nbool wants_read() const { return owed_ == 0; }")
    assert extract(tmp_path, source, "Conn::Conn") == (
        'explicit Conn(int fd) : fd_{fd}, name_("c{") {}')
    assert extract(tmp_path, source, "Conn::operator bool").startswith("explicit operator bool")
    assert extract(tmp_path, source, "close") == "void Conn::close() {\n  fd_ = -1;\n}"
    # The exact name wins over a suffix match: "Conn" is the class, not its constructor.
    assert extract(tmp_path, source, "Conn").startswith("class Conn {")
    assert "no definition of 'Conn::operator='" in extraction_error(tmp_path, source,
                                                                    "Conn::operator=")


def test_structs_enums_constants_and_aliases(tmp_path):
    source = """\
namespace net {

// What to do.
struct Command {
  enum class Action { kRun, kHelp };
  Action action = Action::kRun;
  static constexpr int kLimit = 3;
};

constexpr std::chrono::milliseconds kPause{100};
using Clock = std::chrono::steady_clock;
struct stat info;

}  // namespace net
"""
    assert extract(tmp_path, source, "struct Command") == "\n".join(source.split("\n")[2:8])
    assert extract(tmp_path, source, "Command::Action") == "enum class Action { kRun, kHelp };"
    assert extract(tmp_path, source, "enum Action") == "enum class Action { kRun, kHelp };"
    assert extract(tmp_path, source, "kLimit") == "static constexpr int kLimit = 3;"
    assert extract(tmp_path, source, "net::kPause") == (
        "constexpr std::chrono::milliseconds kPause{100};")
    assert extract(tmp_path, source, "using Clock") == "using Clock = std::chrono::steady_clock;"
    assert "there is a struct of that name" in extraction_error(tmp_path, source, "class Command")
    assert "no definition of 'stat'" in extraction_error(tmp_path, source, "stat")


def test_templates(tmp_path):
    source = """\
template <typename T>
class [[nodiscard]] Task {
  T get();
};

template <typename T>
T Task<T>::get() {
  return value_;
}

std::function<void(int)> make_handler() { return {}; }
"""
    assert extract(tmp_path, source, "class Task").startswith("template <typename T>\nclass")
    assert extract(tmp_path, source, "Task::get").endswith("return value_;\n}")
    assert extract(tmp_path, source, "make_handler").startswith("std::function<void(int)>")


def test_attached_comment_rule_and_nocomment(tmp_path):
    source = """\
// Detached: a blank line follows.

/* A block comment
   over two lines. */
// And a line comment.
int f() { return 1; }  // trailing
"""
    body = "int f() { return 1; }  // trailing"
    assert extract(tmp_path, source, "f") == "\n".join(source.split("\n")[2:6])
    assert extract(tmp_path, source, "f nocomment") == body


def test_indented_definition_is_dedented(tmp_path):
    source = "struct A {\n  // Two.\n  int two() const {\n    return 2;\n  }\n};\n"
    assert extract(tmp_path, source, "A::two") == "// Two.\nint two() const {\n  return 2;\n}"


def test_regions_and_whole_files(tmp_path):
    source = """\
int main() {
  setup();
  // snippet-begin: serve
  for (;;) {
    serve();
  }
  // snippet-end: serve
}
"""
    assert extract(tmp_path, source, "#serve") == "for (;;) {\n  serve();\n}"
    # Marker lines never show up, not even in a snippet of the enclosing function.
    assert "snippet-" not in extract(tmp_path, source, "main")
    makefile = "all: server\n# snippet-begin: flags\nCXXFLAGS := -O2\n# snippet-end: flags\n"
    assert extract(tmp_path, makefile, "#flags", name="Makefile") == "CXXFLAGS := -O2"
    assert extract(tmp_path, makefile, "", name="Makefile") == "all: server\nCXXFLAGS := -O2"
    assert "not a C++ source" in extraction_error(tmp_path, makefile, "all", name="Makefile")


def test_ambiguous_names_are_rejected(tmp_path):
    source = """\
void A::reset() {}
void B::reset() {}
int twice(int x) { return 2 * x; }
double twice(double x) { return 2 * x; }
"""
    message = extraction_error(tmp_path, source, "reset")
    assert "'reset' is ambiguous in src/a.cpp: function A::reset (line 1)," in message
    assert "function B::reset (line 2)" in message
    assert extract(tmp_path, source, "B::reset") == "void B::reset() {}"
    assert "ambiguous" in extraction_error(tmp_path, source, "twice")


def test_the_repository_docs_match_their_source():
    code, out = run(REPO, "check")
    assert code == 0, out
