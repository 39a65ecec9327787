"""The built book in a real browser, offline: every page loads every image, MathJax (served
from the site itself) typesets every formula without an error, and the console stays clean.

It drives Debian's Chromium (``apt-get install chromium chromium-driver``; no browser is
downloaded) headless through Selenium, with its background networking off and a fresh
profile, and serves the site from a local HTTP server on 127.0.0.1, as a classroom server or
``python -m http.server`` in an unzipped copy would. Nothing else is reachable from the page:
a formula left as raw LaTeX, a missing image or a request that fails shows up here.
"""
from __future__ import annotations

import functools
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage")
PAGE_SECONDS = 60

# Runs in the page: make lazy images load now, wait for them and for MathJax, then report.
CHECK_PAGE = """
const done = arguments[arguments.length - 1];
(async () => {
  const images = [...document.images];
  images.forEach(img => { img.loading = "eager"; });
  await Promise.all(images.map(img => img.complete ? null : new Promise(r => { img.onload = img.onerror = r; })));
  const formulas = [...document.querySelectorAll(".math")];
  let mathjax = null;
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
    mathjax = MathJax.version;
  }
  done({
    mathjax: mathjax,
    images: images.length,
    broken: images.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src.slice(0, 120)),
    formulas: formulas.length,
    untypeset: formulas.filter(f => !f.querySelector("mjx-container")).map(f => f.textContent.slice(0, 80)),
    errors: formulas.filter(f => f.querySelector("mjx-merror, [data-mjx-error]")).map(f => f.textContent.slice(0, 80)),
  });
})().catch(err => done({failure: String(err)}));
"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site(built_book):
    """The built book, served on 127.0.0.1 for the duration of the module."""
    assert built_book.returncode == 0, built_book.log[-3000:]
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(built_book.html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield built_book.html, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium and chromium-driver (.ci/run does)")
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tmp_path_factory.mktemp("chromium-profile")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(PAGE_SECONDS)
    driver.set_script_timeout(PAGE_SECONDS)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def test_every_page_loads_its_images_and_typesets_its_formulas_offline(site, browser, capsys):
    html, url = site
    pages = sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                   if not p.relative_to(html).as_posix().startswith(("_static/", "_sources/")))
    assert "index.html" in pages and any(p.startswith("book/07_") for p in pages), pages
    assert (html / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()
    problems, totals = [], {"pages": 0, "images": 0, "formulas": 0}
    for page in pages:
        browser.get(f"{url}/{page}")
        report = browser.execute_async_script(CHECK_PAGE)
        console = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        if "failure" in report:
            problems.append(f"{page}: the check failed in the page: {report['failure']}")
            continue
        totals["pages"] += 1
        totals["images"] += report["images"]
        totals["formulas"] += report["formulas"]
        if report["formulas"] and not report["mathjax"]:
            problems.append(f"{page}: {report['formulas']} formulas but MathJax did not load")
        for kind in ("broken", "untypeset", "errors"):
            problems += [f"{page}: {kind}: {item}" for item in report[kind]]
        problems += [f"{page}: console: {message}" for message in console]
    with capsys.disabled():
        print(f"\nbrowser check (Chromium, offline, MathJax from the site): {totals['pages']} pages, "
              f"{totals['images']} images, {totals['formulas']} formulas")
    assert not problems, "\n".join(problems[:40])
    assert totals["formulas"] > 50 and totals["images"] > 20  # the book has both; a page that lost them fails here
