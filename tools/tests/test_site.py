"""Tests of the course's website (mkdocs.yml, tools/site/): /usr/bin/python3 -m pytest tools/tests

They build sites with MkDocs: the course's own, whose headings must carry the anchors GitHub
gives them, and tiny fixture sites, one with a broken link, a broken anchor and a broken
Mermaid block that tools/site/check.py must each report. Skipped, saying so, where the site's
tools are not installed (make site-deps).
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))
sys.path.insert(0, str(TOOLS / "site"))

import links  # noqa: E402  (found through the paths set just above)
import check  # noqa: E402  (tools/site/check.py)

MERMAID = TOOLS / "site" / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"


def missing_for_build():
    if importlib.util.find_spec("mkdocs") is None:
        return "mkdocs"
    from mkdocs.utils import get_theme_names
    if "material" not in get_theme_names():
        return "the Material theme (mkdocs-material)"
    if not MERMAID.is_file():
        return "Mermaid (npm ci in tools/site)"
    return None


def missing_for_check():
    if importlib.util.find_spec("selenium") is None:
        return "python3-selenium"
    return next((tool for tool in ("/usr/bin/chromium", "/usr/bin/chromedriver")
                 if not Path(tool).exists()), None)


@pytest.fixture
def can_build():
    missing = missing_for_build()
    if missing:
        pytest.skip(f"{missing} is not installed: make site-deps installs the site's tools")


@pytest.fixture
def can_check(can_build):
    missing = missing_for_check()
    if missing:
        pytest.skip(f"{missing} is not installed: make site-deps installs the site's tools")


def build(config, site):
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config),
                           "-d", str(site)], capture_output=True, text=True, timeout=120)


def fixture_site(tmp_path, pages, nav):
    """A site of `pages` ({name: text}), configured as the course's but for docs and nav."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in pages.items():
        (docs / name).write_text(text)
    (tmp_path / "README.md").write_text("# The fixture's repository\n")
    config = tmp_path / "mkdocs.yml"
    # Paths in the course's mkdocs.yml are relative to it: here they are given again, absolute.
    config.write_text(
        f"INHERIT: {REPO / 'mkdocs.yml'}\n"
        f"site_name: fixture\n"
        f"nav: [{', '.join(nav)}]\n"
        f"hooks: [{TOOLS / 'site' / 'hook.py'}]\n"
        f"theme: {{name: material, custom_dir: {TOOLS / 'site' / 'overrides'}, font: false}}\n")
    return config, docs


def heading_ids(page):
    return check.Ids(page.read_text(encoding="utf-8"), {f"h{level}" for level in range(1, 7)}).ids


def test_every_heading_of_the_course_has_the_anchor_github_gives_it(can_build, tmp_path):
    done = build(REPO / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr
    for doc in sorted((REPO / "docs").glob("*.md")):
        page = tmp_path / "site" / ("" if doc.stem == "README" else doc.stem) / "index.html"
        on_site = heading_ids(page)
        on_github = links.anchors(doc)
        assert on_site == on_github, (
            f"{doc.name}: only on the site {sorted(on_site - on_github)},"
            f" only on GitHub {sorted(on_github - on_site)}")


def test_anchors_and_source_links_follow_github(can_build, tmp_path):
    config, _ = fixture_site(tmp_path, {
        "README.md": "# Home\n\nSee [the README](../README.md) and [docs](../docs/).\n\n"
                     "## `/proc/PID/fd`: every descriptor\n\n## Answer\n\n## Answer\n\n"
                     "<details><summary>Answer</summary>\n\nSome *emphasis*.\n\n</details>\n",
    }, ["README.md"])
    done = build(config, tmp_path / "site")
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "site" / "index.html").read_text()
    assert heading_ids(tmp_path / "site" / "index.html") == {
        "home", "procpidfd-every-descriptor", "answer", "answer-1"}
    assert 'href="https://github.com/example/tcp-servers-course/blob/main/README.md"' in html
    assert 'href="https://github.com/example/tcp-servers-course/tree/main/docs"' in html
    assert "<summary>Answer</summary>\n<p>Some <em>emphasis</em>.</p>" in html


def test_a_page_left_out_of_the_nav_fails_the_build(can_build, tmp_path):
    config, _ = fixture_site(tmp_path, {"README.md": "# Home\n", "labs.md": "# Labs\n"},
                             ["README.md"])
    done = build(config, tmp_path / "site")
    assert done.returncode != 0
    assert "docs pages missing from mkdocs.yml's nav: labs.md" in done.stderr


def test_the_checker_reports_a_broken_link_anchor_and_diagram(can_check, tmp_path):
    config, docs = fixture_site(tmp_path, {
        "README.md": "# Home\n\n[Fine](other.md#a-part), [gone](gone/),"
                     " [no anchor](other.md#nowhere).\n\n```mermaid\ngraph LR\n  A --> B\n```\n\n"
                     "```mermaid\ngraph TD\n  A -->> B ((( C\n```\n",
        "other.md": "# Other\n\n## A part\n\n```mermaid\nsequenceDiagram\n  A->>B: hello\n```\n",
    }, ["README.md", "other.md"])
    done = build(config, tmp_path / "site")
    assert done.returncode == 0, done.stderr
    checked = subprocess.run(
        [sys.executable, str(TOOLS / "site" / "check.py"), "--site", str(tmp_path / "site"),
         "--docs", str(docs), "--shots", str(tmp_path / "shots"), "--search", "hello=other.md"],
        capture_output=True, text=True, timeout=300)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    problems = [line for line in checked.stdout.splitlines() if not line.startswith("site-check:")]
    assert "README.md: link to /gone/: no such page or file on the site" in problems
    assert ("README.md: link to /other/#nowhere: other/index.html has no element with id"
            " 'nowhere'") in problems
    assert "README.md: Mermaid diagram 2 is Mermaid's error picture (syntax error)" in problems
    # The broken diagram's parse error is the only other problem: nothing on other.md, which
    # has a good diagram, and the search found it.
    rest = [line for line in problems if "link to" not in line and "Mermaid diagram" not in line]
    assert [line.split(":")[:2] for line in rest] == [["README.md", " console error"]], problems
    assert sorted(path.name for path in (tmp_path / "shots").iterdir()) == [
        "README-mermaid-1.png", "README-mermaid-2.png", "README.png", "other-mermaid-1.png",
        "other.png"]
