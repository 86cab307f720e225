"""``trial-adapter serve`` as a subprocess for integration tests: start, push, poll status, measure, stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """A running service. ``keys`` is SERVICE_API_KEYS ('key:role,...'; None: none set);
    ``default_key`` is the credential ``post`` sends unless told otherwise."""

    def __init__(
        self, hapi_url: str, inbox: Path, *extra: str, keys: str | None, default_key: str | None
    ) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.default_key = default_key
        env = {k: v for k, v in os.environ.items() if k != "SERVICE_API_KEYS"}
        if keys:
            env["SERVICE_API_KEYS"] = keys
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "adapter",
                "serve",
                "--fhir-url",
                hapi_url,
                "--listen",
                self.url.removeprefix("http://"),
                "--inbox",
                str(inbox),
                *extra,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, self.process.stderr.read() if self.process.stderr else ""
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "service did not start"
            time.sleep(0.1)

    def _auth(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def post(self, path: str, body: Any, key: str | None = "default", **headers: str) -> httpx.Response:
        credential = self.default_key if key == "default" else key
        all_headers = {"Content-Type": "application/fhir+json", **self._auth(credential), **headers}
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(f"{self.url}{path}", content=content, headers=all_headers, timeout=120)

    def status(self, location: str) -> dict:
        return httpx.get(f"{self.url}{location}", headers=self._auth(self.default_key), timeout=10).json()

    def wait_done(self, location: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while (found := self.status(location))["state"] not in ("done", "dead"):
            assert time.monotonic() < deadline, found
            time.sleep(0.1)
        return found

    def inbox(self) -> dict[str, int]:
        return httpx.get(f"{self.url}/healthz", timeout=10).json()["inbox"]

    def rss_mb(self) -> float:
        out = subprocess.run(
            ["ps", "-o", "rss=", "-p", str(self.process.pid)], capture_output=True, text=True
        )
        return int(out.stdout.strip()) / 1024

    def peak_mb(self) -> float:
        """The process's peak resident memory so far (VmHWM), which a request's burst shows in."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)


# --- the service as the integration tests run it ------------------------------------------------

PUSH_KEY = "push-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
MRN = "urn:oid:1.2.36.146.595.217.0.1"


def Service(hapi_url: str, inbox: Path, *extra: str) -> ServiceProcess:
    keys = f"{PUSH_KEY}:push,{ADMIN_KEY}:admin"
    return ServiceProcess(
        hapi_url, inbox, "--max-body-bytes", "2000000", *extra, keys=keys, default_key=PUSH_KEY
    )
