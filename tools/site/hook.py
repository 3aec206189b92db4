"""The MkDocs hook that builds the course's site from docs/ as GitHub shows it (mkdocs.yml).

GitHub and Python-Markdown read the same Markdown a little differently; this hook makes the
site agree with GitHub, so that docs/ needs nothing written for the site alone:

- Anchors: headings get GitHub's ids (tools/links.py's slug, with -1, -2, ... for repeated
  headings), so a link that works on GitHub works on the site.
- Links into the source tree (../01-poll/loop.cpp, ../README.md), and each page's link to its
  own source, lead to the repository's web view: repo_url and extra.repo_branch of mkdocs.yml.
- The exercises' answers, <details> blocks, have their Markdown rendered, as GitHub does.
- Titles in the nav show `code` as plain text rather than with its backticks.
- Every page of docs/ must be in mkdocs.yml's nav, or the build fails naming it.
- Mermaid 9 (tools/site/node_modules, installed by `make site-deps`) is copied into the site.
"""

import posixpath
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import markdown.extensions.toc
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import links  # noqa: E402  (tools/links.py, found through the path set just above)

NODE_MODULES = HERE / "node_modules"
MERMAID = "mermaid/dist/mermaid.min.js"
# <details> and the <summary> GitHub allows on the same line: md_in_html needs each on its own.
DETAILS = re.compile(r"^(\s*)<details>\s*(<summary>.*)?$")


def slugify(value, separator):
    """toc's slugify: GitHub's anchor for a heading's text (tools/links.py)."""
    return links.slug(value)


def unique(anchor, used):
    """toc's unique, as GitHub numbers repeated headings: x, x-1, x-2 (toc's own says x_1)."""
    candidate, count = anchor, 0
    while candidate in used:
        count += 1
        candidate = f"{anchor}-{count}"
    used.add(candidate)
    return candidate


class SourceLinks(Treeprocessor):
    """Turns each link that leaves docs_dir into a link to the repository's web view.

    Runs before MkDocs' own link processing (priority 0), which would warn about them.
    """

    def __init__(self, md, config, page):
        super().__init__(md)
        self.root = Path(config.config_file_path).resolve().parent
        self.docs = Path(config.docs_dir).resolve()
        self.web = f"{config.repo_url.rstrip('/')}/%s/{config.extra.get('repo_branch', 'main')}/"
        self.page = page

    def run(self, root):
        for element in root.iter("a"):
            href = element.get("href", "")
            scheme, netloc, path, _, fragment = urlsplit(href)
            if scheme or netloc or not path or path.startswith("/"):
                continue
            inside = posixpath.normpath(
                posixpath.join(posixpath.dirname(self.page.file.src_uri), unquote(path)))
            if inside != ".." and not inside.startswith("../"):
                continue  # a page or file of the site: MkDocs checks and rewrites it
            target = (self.docs / inside).resolve()
            if not target.exists() or not target.is_relative_to(self.root):
                raise PluginError(f"{self.page.file.src_uri}: the link {href} leads to no file"
                                  f" of the repository")
            kind = "tree" if target.is_dir() else "blob"
            url = self.web % kind + target.relative_to(self.root).as_posix()
            element.set("href", url + (f"#{fragment}" if fragment else ""))


class SourceLinksExtension(Extension):
    """MkDocs makes a Markdown instance per page, right after on_page_markdown set `page`."""

    def __init__(self, config):
        super().__init__()
        self.site_config = config
        self.page = None

    def extendMarkdown(self, md):
        md.treeprocessors.register(SourceLinks(md, self.site_config, self.page), "source-links", 1)


_extension = None


def on_config(config):
    global _extension
    if not config.repo_url:
        raise PluginError("mkdocs.yml: repo_url is not set; links into the source tree need it")
    # Each page's link to its source, on the same branch as the links into the source tree.
    root = Path(config.config_file_path).resolve().parent
    docs = Path(config.docs_dir).resolve().relative_to(root).as_posix()
    config.edit_uri = f"blob/{config.extra.get('repo_branch', 'main')}/{docs}/"
    toc = config.mdx_configs.setdefault("toc", {})
    toc["slugify"] = slugify
    markdown.extensions.toc.unique = unique  # toc calls the module's unique for each heading
    _extension = SourceLinksExtension(config)
    config.markdown_extensions.append(_extension)
    return config


def on_files(files, config):
    mermaid = NODE_MODULES / MERMAID
    if not mermaid.is_file():
        raise PluginError(f"{mermaid} is missing: run make site-deps (npm ci in tools/site)")
    files.append(File(MERMAID, str(NODE_MODULES), config.site_dir, config.use_directory_urls))
    return files


def on_nav(nav, config, files):
    listed = {page.file.src_uri for page in nav.pages}
    missing = sorted(f.src_uri for f in files.documentation_pages() if f.src_uri not in listed)
    if missing:
        raise PluginError(f"docs pages missing from mkdocs.yml's nav: {', '.join(missing)}:"
                          f" add each where it belongs in the reading order")
    return nav


def on_page_markdown(text, page, config, files):
    _extension.page = page
    # The title the nav and the browser show: MkDocs takes the first heading as written.
    page.title = links.CODE_SPAN.sub(lambda m: m.group(0).strip("`"), page.title)
    # GitHub renders the Markdown inside <details>; Python-Markdown does with markdown="1".
    lines = text.split("\n")
    for number, line in links.prose_lines(text):
        lines[number - 1] = DETAILS.sub(
            lambda m: f'{m[1]}<details markdown="1">' + (f"\n{m[1]}{m[2]}" if m[2] else ""),
            line)
    return "\n".join(lines)
