"""Running an ASGI app inside our own event loop (the worker's status/notification endpoint)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator

import uvicorn


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handling: the host process owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def start_in_background(self) -> asyncio.Task[None]:
        task = asyncio.create_task(self.serve())
        while not self.started:
            if task.done():
                task.result()  # raises the start-up error (e.g. the port is taken)
                raise RuntimeError("the HTTP server stopped during start-up")
            await asyncio.sleep(0.05)
        return task


def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)
