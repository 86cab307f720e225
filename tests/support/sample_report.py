"""The committed sample population screened as of 2026-11-23: the report the report-format tests read."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from adapter.screening.run import screen_files
from mappings.criteria import load_criteria

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "adapter" / "samples" / "nct06849401-sample-bundle.json"
DEFINITION = load_criteria(ROOT / "mappings" / "studies" / "NCT06849401" / "criteria.yaml")
REPORT = screen_files(SAMPLE, DEFINITION, date(2026, 11, 23))
