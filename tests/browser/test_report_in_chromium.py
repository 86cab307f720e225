"""The HTML report in a real browser (Debian's chromium, headless): what a person sees, a screenshot
and a printout. Skipped, with the reason, where chromium is not installed (``make test`` installs it)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from adapter.screening.report import render
from adapter.screening.run import screen_files
from tests.support.browser import find_chromium, print_pdf, screenshot, visible_text
from tests.support.sample_report import DEFINITION, SAMPLE

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="chromium not installed: `apt-get install chromium` (make test installs it when run as root)",
)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    report = screen_files(SAMPLE, DEFINITION, date(2026, 11, 23))
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(render(report, "html"), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def seen(page: Path) -> str:
    return visible_text(page)


def test_a_person_sees_the_funnel(seen: str):
    assert "How the population narrows" in seen
    assert "26 screened → 11 candidates: 5 ready for review" in seen
    assert "2 more candidates if inclusion-1 Age 2 to 18 years were dropped" in seen
    # A funnel row as laid out: criterion, title, then the counts.
    assert re.search(
        r"exclusion-13 Platelets too low \(transfusion threshold\)\s+1\s+1\s+13\s+4\s+2\s+0", seen
    )


def test_a_person_sees_a_candidates_next_steps(seen: str):
    row = seen[seen.index("Patient/unknown-stale-labs") :]
    row = row[: row.index("Patient/unknown-diagnosis-only")]
    assert "platelets dated 2026-11-16 or later (latest 2026-11-13)" in row
    assert "creatinine dated 2026-11-16 or later" in row
    ready = seen[seen.index("Patient/candidate-refractory-boy") :]
    assert "nothing: ready for review" in ready[:200]


def test_words_and_numbers_for_people_as_rendered(seen: str):
    assert "{score}" not in seen and "{grade}" not in seen
    assert not re.search(r"\d\.\d{4,}", seen)
    assert "Heart function (LVEF >= 50%)" in seen
    assert "Skip to the candidates" not in seen  # off-screen until focused


def test_screenshot_and_printout(page: Path, tmp_path: Path):
    png = screenshot(page, tmp_path / "report.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000  # not a blank page
    pdf = print_pdf(page, tmp_path / "report.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 20_000
