"""Crash points for the crash tests.

``TRIAL_ADAPTER_CRASH_AT=<point>`` makes the process die at that point with ``os._exit`` (no cleanup,
no flushing: what a kill -9 or a power cut does), so the tests can prove that a crash exactly there
loses nothing and duplicates nothing. Unset, a crash point is one dictionary lookup.

Points: worker-before-flag, worker-after-flag-write, service-after-accept, service-after-forward,
service-after-batch (a batched transaction of several payloads committed, nothing recorded yet),
service-after-flag, mllp-after-accept (an HL7 v2 message committed, its ACK not yet sent).
"""

from __future__ import annotations

import os

from adapter.settings import current as environment

CRASH_EXIT_CODE = 137  # what a shell reports for SIGKILL


def crash_point(name: str) -> None:
    if environment().crash_at == name:
        os._exit(CRASH_EXIT_CODE)
