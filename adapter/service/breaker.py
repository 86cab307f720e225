"""A circuit breaker on the FHIR server: while it is down, processing pauses instead of burning retries.

After a transient failure the processor asks ``probe()`` whether the server answers at all (its
CapabilityStatement, a short timeout). If it does not, the breaker opens: the payload goes back to the
queue without its attempt counting, and processing waits, probing with a capped backoff, until the
server answers again. So a restart of minutes creates no dead letters; only a payload that keeps failing
while the server is up uses up its attempts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class CircuitBreaker:
    def __init__(
        self,
        check: Callable[[], Awaitable[bool]],
        *,
        first_wait: float = 1.0,
        max_wait: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._check = check
        self.first_wait = first_wait
        self.max_wait = max_wait
        self.clock = clock
        self.sleep = sleep
        self.open_since: float | None = None
        self.opened = 0  # how many times it opened (for /healthz and tests)

    @property
    def is_open(self) -> bool:
        return self.open_since is not None

    async def probe(self) -> bool:
        """True if the server answers; opens the breaker if it does not."""
        try:
            up = await self._check()
        except Exception:  # any failure to get an answer means: not up
            up = False
        if not up and self.open_since is None:
            self.open_since = self.clock()
            self.opened += 1
            log.warning("FHIR server unavailable: processing paused")
        return up

    async def wait_closed(self, stopping: Callable[[], bool]) -> None:
        """Probe with a capped backoff until the server answers (or the service stops)."""
        wait = self.first_wait
        while self.open_since is not None and not stopping():
            await self.sleep(wait)
            if await self.probe():
                log.info(
                    "FHIR server available again: processing resumed",
                    extra={"paused_seconds": round(self.clock() - self.open_since, 1)},
                )
                self.open_since = None
            wait = min(self.max_wait, wait * 2)
