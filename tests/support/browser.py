"""Debian's chromium, headless: what a person sees of a report (its rendered text) and a screenshot.

The report has no scripts; to read what is rendered, a copy gets one line that writes
``document.body.innerText`` (text as laid out: hidden elements left out) into the DOM, and chromium's
``--dump-dom`` prints the DOM after rendering. Network access is refused (``--host-resolver-rules``), so
a page that needed the network would show it.

    python -m tests.support.browser REPORT.html OUT.png   # the README's screenshot (make screenshot)
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome")
_FLAGS = [
    "--headless",
    "--no-sandbox",  # tests may run as root in a container
    "--disable-gpu",
    "--hide-scrollbars",
    "--no-first-run",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: the report must be self-contained
    "--force-device-scale-factor=1",
]
_READER = (
    "<script>document.body.insertAdjacentHTML('beforeend',"
    "'<pre id=\"__visible\"></pre>');"
    "document.getElementById('__visible').textContent=document.querySelector('main').innerText;</script>"
)


def find_chromium() -> str | None:
    return next((found for name in NAMES if (found := shutil.which(name))), None)


def _run(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run(
            [*args[:1], *_FLAGS, f"--user-data-dir={profile}", *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def visible_text(page: Path, width: int = 1280, height: int = 900) -> str:
    """The report's text as chromium lays it out."""
    chromium = find_chromium()
    assert chromium, "chromium not installed"
    with tempfile.TemporaryDirectory(prefix="report-view-") as folder:
        copy = Path(folder) / "view.html"
        copy.write_text(page.read_text(encoding="utf-8").replace("</body>", _READER + "</body>"), "utf-8")
        done = _run([chromium, f"--window-size={width},{height}", "--dump-dom", copy.as_uri()])
    found = re.findall(r'<pre id="__visible">(.*?)</pre>', done.stdout, re.S)  # the last: not the script's
    assert found, f"chromium rendered nothing (exit {done.returncode}): {done.stderr[-500:]}"
    return html.unescape(found[-1])


def screenshot(page: Path, png: Path, width: int = 1100, height: int = 1000) -> Path:
    chromium = find_chromium()
    assert chromium, "chromium not installed"
    png.parent.mkdir(parents=True, exist_ok=True)
    done = _run(
        [
            chromium,
            f"--window-size={width},{height}",
            f"--screenshot={png.resolve()}",
            page.resolve().as_uri(),
        ]
    )
    assert png.is_file() and png.stat().st_size > 0, (
        f"no screenshot (exit {done.returncode}): {done.stderr[-500:]}"
    )
    return png


def print_pdf(page: Path, pdf: Path) -> Path:
    chromium = find_chromium()
    assert chromium, "chromium not installed"
    done = _run(
        [chromium, "--no-pdf-header-footer", f"--print-to-pdf={pdf.resolve()}", page.resolve().as_uri()]
    )
    assert pdf.is_file() and pdf.stat().st_size > 0, f"no PDF (exit {done.returncode}): {done.stderr[-500:]}"
    return pdf


if __name__ == "__main__":  # pragma: no cover - the make screenshot target
    if len(sys.argv) != 3:
        sys.exit("usage: python -m tests.support.browser REPORT.html OUT.png")
    if not find_chromium():
        sys.exit("chromium is not installed (apt-get install chromium)")
    print(screenshot(Path(sys.argv[1]), Path(sys.argv[2])))
