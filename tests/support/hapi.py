"""Build and run the project's lean HAPI FHIR R4 server (docker/hapi) for tests and benchmarks.

Typical pytest use::

    @pytest.fixture(scope="session")
    def hapi():
        jar = build_jar(REPO_ROOT)
        with start_hapi(jar) as server:
            yield server            # server.base_url == "http://127.0.0.1:PORT/fhir"

Developers: ``python -m tests.support.hapi`` builds the jar, starts a server and waits for Ctrl-C.

Standard library only. Linux/macOS (uses fcntl for the build lock).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[2]
HAPI_DIR = Path("docker") / "hapi"
JAR_NAME = "hapi-server.jar"

# -XX:TieredStopAtLevel=1 (C1 JIT only) starts ~15% faster and uses ~85 MB less RSS on 2 cores,
# at the cost of lower peak throughput. Good for functional tests; benchmarks should pass
# THROUGHPUT_JVM_FLAGS.
BASE_JVM_FLAGS: tuple[str, ...] = ("-Xmx1g", "-XX:+UseSerialGC")
FAST_START_JVM_FLAGS: tuple[str, ...] = (*BASE_JVM_FLAGS, "-XX:TieredStopAtLevel=1")
# ParallelGC: in-memory H2 keeps the whole database on the heap, and with 2 cores two GC threads
# halve the (frequent, multi-GB) full collections of a loading server; same CPU cost as SerialGC.
THROUGHPUT_JVM_FLAGS: tuple[str, ...] = ("-Xmx1g", "-XX:+UseParallelGC")

# Spring properties for a server that is bulk loaded (bench), measured on the 1k synthetic hospital
# (bench/README.md, "Sizes"). They change what the server does, so the test-suite never uses them:
# no subscription matching (a write no longer stores a "resource modified" row for a poller), DELETE
# refused (lets HAPI trust its id cache for reference targets), mass-ingestion mode, and JDBC
# batches of 500 ordered inserts (HAPI writes ~20 index rows per resource) instead of 20.
BULK_LOAD_APP_ARGS: tuple[str, ...] = (
    "--hapi.subscription.enabled=false",
    "--hapi.delete-enabled=false",
    "--hapi.mass-ingestion-mode=true",
    "--spring.jpa.properties.hibernate.jdbc.batch_size=500",
    "--spring.jpa.properties.hibernate.order_inserts=true",
    "--spring.jpa.properties.hibernate.order_updates=true",
)

_LOG_TAIL_LINES = 40
# readiness probes go straight to 127.0.0.1, never through an http_proxy from the environment
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------


def _newest_source_mtime(hapi_dir: Path) -> float:
    newest = (hapi_dir / "pom.xml").stat().st_mtime
    for path in (hapi_dir / "src").rglob("*"):
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
    return newest


def _jar_is_fresh(hapi_dir: Path, jar: Path) -> bool:
    return jar.is_file() and jar.stat().st_mtime >= _newest_source_mtime(hapi_dir)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise builds across processes (e.g. pytest-xdist workers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_jar(repo_root: Path = REPO_ROOT, *, offline: bool | None = None, timeout: float = 1800) -> Path:
    """Return docker/hapi/target/hapi-server.jar, running ``mvn package`` first if the jar is
    missing or older than pom.xml / any file under docker/hapi/src.

    ``offline`` adds ``-o`` (default: env HAPI_MVN_OFFLINE=1). Raises RuntimeError with the
    tail of Maven's output if the build fails.
    """
    hapi_dir = Path(repo_root) / HAPI_DIR
    jar = hapi_dir / "target" / JAR_NAME
    if not (hapi_dir / "pom.xml").is_file():
        raise RuntimeError(f"no HAPI server project at {hapi_dir}")
    if _jar_is_fresh(hapi_dir, jar):
        return jar

    with _file_lock(Path(repo_root) / ".hapi" / "build.lock"):
        if _jar_is_fresh(hapi_dir, jar):  # another process built it while we waited
            return jar
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("Maven ('mvn') is not on PATH; it is needed to build the HAPI server jar")
        if offline is None:
            offline = os.environ.get("HAPI_MVN_OFFLINE") == "1"
        cmd = [
            mvn,
            "-B",
            "-q",
            *(["-o"] if offline else []),
            "-f",
            str(hapi_dir / "pom.xml"),
            "package",
            "-DskipTests",
        ]
        try:
            proc = subprocess.run(
                cmd,
                cwd=hapi_dir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else (exc.output or "")
            raise RuntimeError(
                f"Maven build timed out after {timeout:.0f}s: {' '.join(cmd)}\n" + _tail_text(out, 60)
            ) from None
        if proc.returncode != 0 or not jar.is_file():
            raise RuntimeError(
                f"Maven build failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                + _tail_text(proc.stdout, 60)
            )
        # mvn may skip repackaging when nothing changed; make freshness checks stable anyway
        jar.touch()
        return jar


def _tail_text(text: str, n: int) -> str:
    return "\n".join(text.splitlines()[-n:])


# --------------------------------------------------------------------------------------------
# Run
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _java_binary() -> str:
    explicit = os.environ.get("HAPI_JAVA")
    if explicit:
        return explicit
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise RuntimeError("no 'java' on PATH (set JAVA_HOME or HAPI_JAVA); Java 17+ is required")
    return found


class HapiServer:
    """One HAPI FHIR server JVM on 127.0.0.1. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        jar: Path,
        *,
        port: int | None = None,
        log_dir: Path | None = None,
        jvm_flags: Sequence[str] = FAST_START_JVM_FLAGS,
        app_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.jar = Path(jar).resolve()
        self.port = port or _free_port()
        self.log_dir = Path(log_dir) if log_dir else REPO_ROOT / ".hapi"
        self.jvm_flags = tuple(jvm_flags)
        self.app_args = tuple(app_args)  # e.g. ("--hapi.max-page-size=2000",)
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._log_fh: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"hapi-{self.port}.log"

    def command(self) -> list[str]:
        return [
            _java_binary(),
            *self.jvm_flags,
            "-jar",
            str(self.jar),
            f"--server.port={self.port}",
            "--server.address=127.0.0.1",
            *self.app_args,
        ]

    def log_tail(self, n: int = _LOG_TAIL_LINES) -> str:
        try:
            with self.log_path.open("r", errors="replace") as fh:
                return "".join(deque(fh, maxlen=n))
        except OSError:
            return "(no log)"

    def start(self, timeout: float = 240) -> HapiServer:
        if self.process is not None:
            raise RuntimeError("HAPI server already started")
        if not self.jar.is_file():
            raise RuntimeError(f"HAPI server jar not found: {self.jar} (call build_jar first)")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log_fh = self.log_path.open("wb")
        t0 = time.monotonic()
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.log_dir,  # keeps Spring from picking up a stray ./config/ or ./application.yaml
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(self.env or {})},
            start_new_session=True,  # a terminal Ctrl-C reaches us, and we stop the JVM cleanly
        )
        atexit.register(self.stop)
        try:
            self._wait_ready(t0, timeout)
        except BaseException:
            self.stop(grace=5)  # a JVM still inside Spring's refresh may ignore SIGTERM for a while
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, t0: float, timeout: float) -> None:
        assert self.process is not None
        url = f"{self.base_url}/metadata"
        while True:
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"HAPI server exited with code {code} during start-up (log: {self.log_path}); "
                    f"last {_LOG_TAIL_LINES} log lines:\n{self.log_tail()}"
                )
            try:
                with _DIRECT.open(url, timeout=10) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # not listening yet / context still starting
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(
                    f"HAPI server did not answer 200 on {url} within {timeout:.0f}s "
                    f"(log: {self.log_path}); last {_LOG_TAIL_LINES} log lines:\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 20) -> None:
        """SIGTERM (Spring shuts down gracefully), SIGKILL after ``grace`` seconds; always reaps."""
        proc, self.process = self.process, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            else:
                proc.wait()
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        atexit.unregister(self.stop)

    def __enter__(self) -> HapiServer:
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"HapiServer({self.base_url}, {state})"


def start_hapi(jar: Path, *, timeout: float = 240, **kwargs: object) -> HapiServer:
    """Start a server on a free port and wait until /fhir/metadata answers 200.

    Keyword arguments go to HapiServer (port, log_dir, jvm_flags, app_args, env). Retries with
    a new port if the chosen one was taken in the meantime.
    """
    for attempt in range(3):
        server = HapiServer(jar, **kwargs)  # type: ignore[arg-type]
        try:
            return server.start(timeout=timeout)
        except RuntimeError:
            port_race = "already in use" in server.log_tail(200) and kwargs.get("port") is None
            if not port_race or attempt == 2:
                raise
    raise AssertionError("unreachable")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.hapi",
        description="Build and run the lean HAPI FHIR R4 server until Ctrl-C. "
        "Unrecognised --options are passed to the server (e.g. --hapi.db.file=/tmp/hapi).",
    )
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--timeout", type=float, default=240)
    parser.add_argument(
        "--throughput",
        action="store_true",
        help="full C2 JIT (slower start, faster steady state) instead of C1-only",
    )
    parser.add_argument(
        "--bulk-load",
        action="store_true",
        help="BULK_LOAD_APP_ARGS: fast loading, but no subscriptions and no DELETE",
    )
    # anything else (e.g. --hapi.db.file=/tmp/hapi --hapi.request-logging=true) goes to Spring
    args, app_args = parser.parse_known_args(argv)
    if args.bulk_load:
        app_args = [*BULK_LOAD_APP_ARGS, *app_args]  # later arguments win in Spring

    def _interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM/SIGHUP: stop the JVM via the finally below

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # started in the background by a shell
        signal.signal(signal.SIGINT, _interrupt)

    jar = build_jar(REPO_ROOT)
    server = start_hapi(
        jar,
        timeout=args.timeout,
        port=args.port,
        app_args=app_args,
        jvm_flags=THROUGHPUT_JVM_FLAGS if args.throughput else FAST_START_JVM_FLAGS,
    )
    print(f"HAPI FHIR R4 server ready in {server.startup_seconds:.1f}s: {server.base_url}", flush=True)
    print(f"log: {server.log_path}   (Ctrl-C to stop)", flush=True)
    try:
        while server.is_running():
            time.sleep(1)
        print(f"HAPI server exited unexpectedly; last lines:\n{server.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
