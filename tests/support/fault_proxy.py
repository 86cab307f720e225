"""A fault-injecting HTTP/1.1 proxy between the adapter and a FHIR server, for fault tests.

Typical use::

    with FaultProxy(hapi_url) as proxy:            # proxy.url == "http://127.0.0.1:PORT/fhir"
        proxy.add(Respond(429, retry_after=1), method="POST", path="", body='"transaction"', times=1)
        proxy.cut_paging()                          # every _getpages request answers 500
        run_the_adapter(fhir_url=proxy.url)
        assert proxy.count(method="POST", path="", forwarded=True) == 1

It listens on 127.0.0.1 only, in a background thread with its own event loop, so synchronous tests,
in-process CLI runs (which own their own loops) and subprocesses can all use it. Requests are
forwarded to the upstream server with httpx; absolute URLs of the upstream in responses (HAPI's next
links, Location headers) are rewritten to the proxy's, so paging goes through the proxy too.

The fault plan is an ordered list of rules. A rule matches on method, path (relative to the base:
``""`` is the base itself, ``"Patient/1"``), a substring of the query string and a substring of the
body, and applies to the next ``times`` matching requests (``None``: all of them). The first rule
with matches left decides; a request no rule matches is forwarded untouched. Faults:

- ``Respond(status, retry_after=None)``: the proxy answers (429, 500, 502, 503, 4xx...) and nothing
  reaches the server;
- ``Hang(forward=False)``: the request is accepted and never answered (until the client gives up or
  the proxy stops); with ``forward=True`` the server processes it first and the answer is withheld;
- ``Delay(seconds)``: the request reaches the server only after ``seconds`` (a slow server), even if
  the client gave up meanwhile;
- ``Truncate()``: the server processes the request; the answer is close-delimited and cut in half,
  so HTTP sees a complete response whose JSON is broken;
- ``Rewrite(edit)``: the server answers and the proxy hands the client ``edit(body)`` instead (data a
  real server would refuse to store, e.g. a malformed resource from a less strict server);
- ``Reset(forward=True, partial=True)``: the server processes the request, the client gets the status
  line, headers and half of the body, then the connection is aborted with a TCP RST (an answer lost
  after the write happened); ``forward=False`` resets before anything reached the server.

Every request is recorded (method, path, query, body, the fault applied, whether it reached the
server and the status the client was sent) so tests can count, e.g., transactions that reached HAPI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import urlsplit

import httpx

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
        "content-encoding",
    }
)
MAX_HEADER_LINES = 200


# --- faults ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    def name(self) -> str:
        return type(self).__name__.lower()


@dataclass(frozen=True)
class Respond(Fault):
    """Answer with this status (and an OperationOutcome) instead of forwarding."""

    status: int
    retry_after: str | int | None = None
    diagnostics: str = "injected by the fault proxy"

    def name(self) -> str:
        return f"respond-{self.status}"


@dataclass(frozen=True)
class Hang(Fault):
    """Never answer. ``forward=True``: the server gets (and processes) the request first."""

    forward: bool = False


@dataclass(frozen=True)
class Reset(Fault):
    """Abort the connection with an RST. By default after the server processed the request and the
    client received the status line, the headers and half of the body."""

    forward: bool = True
    partial: bool = True


@dataclass(frozen=True)
class Delay(Fault):
    """Hold the request ``seconds``, then forward it and answer: to the client, a server still working
    on it. It reaches the server even when the client has given up meanwhile."""

    seconds: float = 1.0


@dataclass(frozen=True)
class Truncate(Fault):
    """Forward, then answer with a close-delimited body (no Content-Length) cut in half and an
    orderly close: to HTTP the answer looks complete, but the JSON in it is not."""


@dataclass(frozen=True)
class Rewrite(Fault):
    """Forward, then answer with ``edit(body)``: the answer of a server less strict than HAPI."""

    edit: Callable[[bytes], bytes]


@dataclass
class Rule:
    fault: Fault
    method: str | None = None
    path: str | None = None  # relative to the base, exact ("" is the base: transactions, batches)
    query: str | None = None  # substring of the raw query string
    body: str | None = None  # substring of the request body
    times: int | None = 1  # None: every matching request
    where: Callable[[RecordedRequest], bool] | None = None
    applied: int = 0

    def matches(self, request: RecordedRequest) -> bool:
        if self.times is not None and self.applied >= self.times:
            return False
        if self.method is not None and request.method != self.method.upper():
            return False
        if self.path is not None and request.path != self.path.strip("/"):
            return False
        if self.query is not None and self.query not in request.query:
            return False
        if self.body is not None and self.body not in request.text:
            return False
        return self.where is None or self.where(request)


@dataclass
class RecordedRequest:
    method: str
    path: str  # relative to the base, no leading or trailing slash
    query: str
    body: bytes = field(repr=False)
    fault: str | None = None
    forwarded: bool = False  # the upstream server received it
    status: int | None = None  # the status line the client was sent (None: none was)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class _Closed(Exception):
    """The client closed the connection (or sent something we cannot parse)."""


# --- the proxy ------------------------------------------------------------------------------------


class FaultProxy:
    """Use as a context manager; ``url`` is the proxied FHIR base URL (same path as the upstream)."""

    def __init__(self, upstream: str, *, upstream_timeout: float = 120.0) -> None:
        parts = urlsplit(upstream.rstrip("/"))
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError("the fault proxy forwards to a plain http server on this machine only")
        self.upstream = upstream.rstrip("/")
        self._upstream_origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path.rstrip("/")
        self._upstream_timeout = upstream_timeout
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._requests: list[RecordedRequest] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._http: httpx.AsyncClient | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.port: int | None = None

    # --- lifecycle ----------------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        if self.port is None:
            raise RuntimeError("the proxy is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.origin + self._base_path

    def start(self) -> FaultProxy:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fault-proxy", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self._start(), loop).result(timeout=10)
        except BaseException:
            self.stop()
            raise
        return self

    async def _start(self) -> None:
        self._http = httpx.AsyncClient(timeout=self._upstream_timeout, trust_env=False)
        self._server = await asyncio.start_server(self._serve, host="127.0.0.1", port=0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        if loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self.port = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self._http is not None:
            await self._http.aclose()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the fault plan and the record ---------------------------------------------------------------

    def add(
        self,
        fault: Fault,
        *,
        method: str | None = None,
        path: str | None = None,
        query: str | None = None,
        body: str | None = None,
        times: int | None = 1,
        where: Callable[[RecordedRequest], bool] | None = None,
    ) -> Rule:
        """Apply ``fault`` to the next ``times`` matching requests (``None``: all). Returns the rule."""
        rule = Rule(fault, method, None if path is None else path.strip("/"), query, body, times, where)
        with self._lock:
            self._rules.append(rule)
        return rule

    def cut_paging(self, fault: Fault | None = None) -> Rule:
        """Every request for a further page of a search (HAPI's ``_getpages``) fails, for good."""
        return self.add(fault or Respond(500), method="GET", query="_getpages", times=None)

    def clear(self) -> None:
        """Remove every rule and forget every recorded request."""
        with self._lock:
            self._rules.clear()
            self._requests.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def count(
        self,
        *,
        method: str | None = None,
        path: str | None = None,
        query: str | None = None,
        body: str | None = None,
        forwarded: bool | None = None,
        fault: str | None = None,
    ) -> int:
        """How many recorded requests match (the same matching as rules)."""
        probe = Rule(Fault(), method, None if path is None else path.strip("/"), query, body, None)
        return sum(
            1
            for r in self.requests
            if probe.matches(r)
            and (forwarded is None or r.forwarded == forwarded)
            and (fault is None or r.fault == fault)
        )

    def summary(self) -> list[str]:
        """One line per recorded request, for assertion messages."""
        return [
            f"{r.method} /{r.path}{'?' + r.query[:60] if r.query else ''} fault={r.fault} "
            f"forwarded={r.forwarded} status={r.status}"
            for r in self.requests
        ]

    def _decide(self, request: RecordedRequest) -> Fault | None:
        with self._lock:
            self._requests.append(request)
            for rule in self._rules:
                if rule.matches(request):
                    rule.applied += 1
                    request.fault = rule.fault.name()
                    return rule.fault
        return None

    # --- HTTP -------------------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The connection runs in a task of our own, so stopping the proxy can cancel it without
        # asyncio reporting the server callback's task as cancelled.
        task = asyncio.create_task(self._connection(reader, writer))
        self._connections.add(task)
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
        finally:
            self._connections.discard(task)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    method, target, headers, body = await _read_request(reader)
                except _Closed:
                    return
                keep_alive = headers.get("connection", "").lower() != "close"
                if not await self._handle(method, target, headers, body, reader, writer):
                    return
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            _abort(writer)
            raise
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer one request (or apply its fault). Returns whether the connection stays usable."""
        raw_path, _, query = target.partition("?")
        relative = raw_path
        if self._base_path and (raw_path == self._base_path or raw_path.startswith(self._base_path + "/")):
            relative = raw_path[len(self._base_path) :]
        request = RecordedRequest(method, relative.strip("/"), query, body)
        fault = self._decide(request)

        if isinstance(fault, Respond):
            extra = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "transient", "diagnostics": fault.diagnostics}],
            }
            request.status = fault.status
            await _write_response(
                writer, fault.status, {"Content-Type": "application/fhir+json", **extra}, json.dumps(outcome)
            )
            return True
        if isinstance(fault, Reset) and not fault.forward:
            _abort(writer)
            return False
        if isinstance(fault, Hang) and not fault.forward:
            await _wait_for_close(reader)
            return False

        if isinstance(fault, Delay):
            await asyncio.sleep(fault.seconds)
        try:
            status, reason, out_headers, content = await self._forward(method, target, headers, body)
        except httpx.HTTPError as exc:
            request.status = 502
            await _write_response(writer, 502, {"Content-Type": "text/plain"}, f"upstream failed: {exc!r}")
            return True
        request.forwarded = True

        if isinstance(fault, Hang):
            await _wait_for_close(reader)
            return False
        if isinstance(fault, Reset):
            request.status = status
            head = _head(status, reason, out_headers, len(content), keep_alive=True)
            writer.write(head + (content[: len(content) // 2] if fault.partial else b""))
            await writer.drain()
            await _flushed(writer)
            _abort(writer)
            return False
        if isinstance(fault, Truncate):
            request.status = status
            head = _head(status, reason, out_headers, None, keep_alive=False)
            writer.write(head + content[: len(content) // 2])
            await writer.drain()
            return False
        if isinstance(fault, Rewrite):
            content = fault.edit(content)
        request.status = status
        writer.write(_head(status, reason, out_headers, len(content), keep_alive=True) + content)
        await writer.drain()
        return True

    async def _forward(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        assert self._http is not None
        send = {k: v for k, v in headers.items() if k not in HOP_BY_HOP}
        response = await self._http.request(
            method, self._upstream_origin + target, content=body or None, headers=send
        )
        content = response.content.replace(self._upstream_origin.encode(), self.origin.encode())
        out = []
        for key, value in response.headers.multi_items():
            if key.lower() in HOP_BY_HOP:
                continue
            if key.lower() in ("location", "content-location"):
                value = value.replace(self._upstream_origin, self.origin)
            out.append((key, value))
        return response.status_code, response.reason_phrase, out, content


# --- wire helpers ---------------------------------------------------------------------------------------


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    line = await reader.readline()
    if not line:
        raise _Closed
    try:
        method, target, _version = line.decode("latin-1").split()
    except ValueError:
        raise _Closed from None
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            chunks.append(await reader.readexactly(size))
            await reader.readline()
        body = b"".join(chunks)
    else:
        body = await reader.readexactly(int(headers.get("content-length") or 0))
    return method.upper(), target, headers, body


def _head(
    status: int, reason: str, headers: list[tuple[str, str]], length: int | None, *, keep_alive: bool
) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason or 'Unknown'}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines.append(f"Connection: {'keep-alive' if keep_alive else 'close'}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _write_response(
    writer: asyncio.StreamWriter, status: int, headers: dict[str, str], text: str
) -> None:
    content = text.encode()
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Injected"
    writer.write(_head(status, reason, list(headers.items()), len(content), keep_alive=True) + content)
    await writer.drain()


async def _flushed(writer: asyncio.StreamWriter, limit: float = 2.0) -> None:
    """Wait until the transport handed everything written to the kernel."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while writer.transport.get_write_buffer_size() and loop.time() < deadline:
        await asyncio.sleep(0.005)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), not an orderly FIN."""
    sock = writer.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _wait_for_close(reader: asyncio.StreamReader) -> None:
    """Hold the connection open, answering nothing, until the client closes it (or we are cancelled)."""
    while await reader.read(65536):
        pass
