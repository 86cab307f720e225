"""What the trial-matching app sends (tests/support/matching/app_request.json, recorded from its source)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

APP_REQUEST = Path(__file__).parent / "matching" / "app_request.json"


def app_request() -> dict[str, Any]:
    """The body the matching app sends (recorded from its source; see the fixture's _comment)."""
    data = json.loads(APP_REQUEST.read_text())
    data.pop("_comment")
    return data
