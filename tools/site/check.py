#!/usr/bin/env python3
"""Opens every page of the built site in a headless Chromium and checks what a reader would see.

    python3 tools/site/check.py [--site build/site] [--docs docs] [--shots build/site-shots]
                                [--search WORD=PAGE.md ...]

exit 0 when every check passes, or 1 with a line per problem: `PAGE: what is wrong`.

It serves the site from a local HTTP server of its own (127.0.0.1, a free port, stopped when it
is done), opens each page of --docs (README.md is the home page) and checks that

- the page loads without errors in the browser's console, and asks nothing of any host but
  127.0.0.1 (the requests of each page are counted);
- each ```mermaid block of the page's source became a drawing: an <svg> with nodes (boxes,
  states or actors), not Mermaid's error picture. The theme draws into closed shadow roots,
  which scripts cannot see into; the DevTools protocol's DOM.getDocument (pierce) can;
- every image loaded, and every link within the site leads to a page or file that exists, and
  to an element with that id when it has a #fragment;
- searching for each WORD of --search through the site's search box lists PAGE among the first
  three results.

A screenshot of the top of each page, and one of each diagram, goes to --shots.
Drives Debian's chromium through chromium-driver and python3-selenium (make site-deps).
"""

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import links  # noqa: E402  (tools/links.py, found through the path set just above)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 15  # seconds a page may take to draw its diagrams, or the search to answer
MERMAID_FENCE = re.compile(r"^\s*(```|~~~)\s*mermaid\s*$")
ERROR_PICTURE = "Syntax error in"  # the text of Mermaid's error picture


def mermaid_blocks(path):
    """How many ```mermaid blocks a markdown file holds."""
    return sum(1 for _, line, kind in links.classified_lines(path.read_text(encoding="utf-8"))
               if kind == "open" and MERMAID_FENCE.match(line))


def page_path(doc):
    """The site's path of a docs page, as MkDocs writes it (use_directory_urls)."""
    return "" if doc.stem in ("README", "index") else f"{doc.stem}/"


class Ids(HTMLParser):
    """The ids of an HTML file that no browser opened (a file a link leads to), or those of the
    elements named in `tags` alone."""

    def __init__(self, text, tags=None):
        super().__init__()
        self.tags = tags
        self.ids = set()
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if self.tags is None or tag in self.tags:
            self.ids.update(value for name, value in attrs if name == "id")


def walk(node):
    """Every node of a DOM.getDocument tree, shadow roots included."""
    yield node
    for child in node.get("children", []) + node.get("shadowRoots", []):
        yield from walk(child)


def attribute(node, name):
    values = node.get("attributes", [])
    return dict(zip(values[::2], values[1::2])).get(name, "")


def drawings(driver):
    """[(nodes, error picture?)] for each diagram the theme drew into a closed shadow root."""
    tree = driver.execute_cdp_cmd("DOM.getDocument", {"depth": -1, "pierce": True})
    found = []
    for host in walk(tree["root"]):
        if host.get("nodeName") != "DIV" or "mermaid" not in attribute(host, "class").split():
            continue
        nodes = 0
        error = False
        for root in host.get("shadowRoots", []):
            for node in walk(root):
                classes = attribute(node, "class").split()
                nodes += bool({"node", "actor"} & set(classes)) and node.get("nodeName") != "text"
                error |= "error-icon" in classes or ERROR_PICTURE in node.get("nodeValue", "")
        found.append((nodes, error))
    return found


class Server:
    """python3 -m http.server on 127.0.0.1 and a free port, serving `directory`."""

    def __init__(self, directory):
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "http.server", "-b", "127.0.0.1", "-d", str(directory),
             "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        match = re.search(r" port (\d+)", line)
        if not match:
            self.stop()
            raise RuntimeError(f"the HTTP server did not start: {line!r}")
        self.base = f"http://127.0.0.1:{match.group(1)}/"

    def stop(self):
        self.process.terminate()  # this server's own PID, nothing else
        self.process.wait(timeout=10)


def browser():
    # selenium is imported where it is used, so that the tests can import this file without it.
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--hide-scrollbars"):
        options.add_argument(argument)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium's sandbox refuses to run as root
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def requests(driver):
    """The URLs the page asked for since the last call."""
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            yield message["params"]["request"]["url"]


def wait_for(condition, seconds=WAIT):
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def check_page(driver, base, doc, shots, report):
    """Opens one page and reports its problems; returns how many requests it made, its ids and
    the links it holds."""
    name = doc.name
    expected = mermaid_blocks(doc)
    driver.get(base + page_path(doc))
    wait_for(lambda: driver.execute_script("return document.readyState") == "complete")
    wait_for(lambda: len(drawings(driver)) >= expected)  # the theme draws after the load
    drawn = drawings(driver)

    if len(drawn) != expected:
        report(name, f"{len(drawn)} Mermaid diagrams drawn, but the source has {expected}"
                     f" ```mermaid blocks")
    for number, (nodes, error) in enumerate(drawn, 1):
        if error:
            report(name, f"Mermaid diagram {number} is Mermaid's error picture (syntax error)")
        elif nodes == 0:
            report(name, f"Mermaid diagram {number} has no nodes")

    for src in driver.execute_script(
            "return Array.from(document.images).filter(i => !i.complete || !i.naturalWidth)"
            ".map(i => i.src)"):
        report(name, f"image did not load: {src}")

    stem = doc.stem
    driver.save_screenshot(str(shots / f"{stem}.png"))
    from selenium.webdriver.common.by import By
    driver.execute_script("document.querySelector('header').style.visibility = 'hidden'")
    for number, element in enumerate(driver.find_elements(By.CSS_SELECTOR, "div.mermaid"), 1):
        # The whole diagram, even where it is taller than the window.
        box = driver.execute_script(
            "const r = arguments[0].getBoundingClientRect();"
            "return {x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height,"
            " scale: 1}", element)
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "clip": box, "captureBeyondViewport": True})
        (shots / f"{stem}-mermaid-{number}.png").write_bytes(base64.b64decode(shot["data"]))

    # Last, so that what the screenshots made the page do counts too.
    for entry in driver.get_log("browser"):
        if entry["level"] == "SEVERE":
            report(name, f"console error: {' '.join(entry['message'].split())[:300]}")
    asked = list(requests(driver))
    outside = [url for url in asked if urlsplit(url).scheme in ("http", "https", "ws", "wss")
               and urlsplit(url).hostname != "127.0.0.1"]
    for url in outside:
        report(name, f"request to another host than 127.0.0.1: {url[:200]}")

    ids = set(driver.execute_script(
        "return Array.from(document.querySelectorAll('[id]')).map(e => e.id)"))
    hrefs = driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    return len(asked), ids, hrefs


def check_link(site, base, name, href, ids_of, report):
    """One link of page `name`: absolute, as the browser resolved it."""
    if not href.startswith(base):
        return  # another site (the repository's web view): not ours to check
    parts = urlsplit(href)
    path = unquote(parts.path).lstrip("/")
    target = site / path
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        report(name, f"link to {href[len(base) - 1:]}: no such page or file on the site")
        return
    if not parts.fragment:
        return
    if target not in ids_of:
        if target.suffix != ".html":
            report(name, f"link to {href[len(base) - 1:]}: a #fragment into a file that is no page")
            return
        ids_of[target] = Ids(target.read_text(encoding="utf-8")).ids
    if unquote(parts.fragment) not in ids_of[target]:
        report(name, f"link to {href[len(base) - 1:]}: {target.relative_to(site)} has no element"
                     f" with id {unquote(parts.fragment)!r}")


def check_search(driver, base, word, expected, report):
    from selenium.webdriver.common.by import By

    driver.get(base)
    box = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "input.md-search__input"))
    if not box:
        report(expected, f"search for {word!r}: the page has no search box")
        return
    box[0].click()
    box[0].send_keys(word)
    items = wait_for(lambda: driver.find_elements(
        By.CSS_SELECTOR, "li.md-search-result__item > a.md-search-result__link"))
    # Each result is a page, with links to its best sections after its own: pages count.
    found = list(dict.fromkeys(urlsplit(a.get_attribute("href")).path.strip("/")
                               for a in items))[:3]
    if page_path(Path(expected)).strip("/") not in found:
        report(expected, f"search for {word!r}: not among the first three results"
                         f" ({', '.join(found) or 'no results'})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=ROOT / "build" / "site")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    parser.add_argument("--shots", type=Path, default=ROOT / "build" / "site-shots")
    parser.add_argument("--search", action="append", default=[], metavar="WORD=PAGE.md")
    args = parser.parse_args()

    missing = [tool for tool in (CHROMIUM, CHROMEDRIVER) if not Path(tool).exists()]
    if missing:
        print(f"site-check: {' and '.join(missing)} missing: run make site-deps")
        return 1
    if not (args.site / "index.html").is_file():
        print(f"site-check: no site in {args.site}: run make site")
        return 1

    problems = []

    def report(page, what):
        problems.append(f"{page}: {what}")
        print(problems[-1], flush=True)

    site = args.site.resolve()
    docs = sorted(args.docs.glob("*.md"))
    shutil.rmtree(args.shots, ignore_errors=True)
    args.shots.mkdir(parents=True)
    server = Server(site)
    driver = None
    started = time.monotonic()
    try:
        driver = browser()
        ids_of = {}
        all_hrefs = []
        asked = 0
        diagrams = 0
        for doc in docs:
            page = site / page_path(doc) / "index.html"
            if not page.is_file():
                report(doc.name, f"the site has no page {page.relative_to(site)}")
                continue
            count, ids, hrefs = check_page(driver, server.base, doc, args.shots, report)
            asked += count
            diagrams += mermaid_blocks(doc)
            ids_of[page] = ids
            all_hrefs += [(doc.name, href) for href in hrefs]
        for name, href in all_hrefs:
            check_link(site, server.base, name, href, ids_of, report)
        for search in args.search:
            word, _, expected = search.partition("=")
            check_search(driver, server.base, word, expected, report)
    finally:
        if driver is not None:
            driver.quit()
        server.stop()

    if problems:
        plural = "s" if len(problems) != 1 else ""
        print(f"site-check: {len(problems)} problem{plural} in {len(docs)} pages")
        return 1
    print(f"site-check: {len(docs)} pages loaded without console errors, {asked} requests, all"
          f" to 127.0.0.1; {diagrams} Mermaid diagrams drawn; {len(all_hrefs)} links resolve;"
          f" {len(args.search)} searches find their chapter; screenshots in {args.shots}"
          f" ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
