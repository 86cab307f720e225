"""A throw-away PostgreSQL cluster for the benchmarks' production-shaped HAPI (issue 18, item 5).

    with PostgresCluster() as pg:                       # initdb + pg_ctl start in a temp directory
        server = start_hapi(jar, app_args=(*BULK_LOAD_APP_ARGS, *hapi_pg_args(pg)), ...)

Uses the Debian ``postgresql`` package (``make postgres`` installs it when missing). The cluster lives
under ``$BENCH_DATA`` (default /tmp/trial-adapter-bench), listens on 127.0.0.1 and a Unix socket in its
own directory only, and is always stopped and deleted (``finally``, also on Ctrl-C/SIGTERM through
the callers' handlers). PostgreSQL refuses to run as root, so as root every server command runs as the
``postgres`` user (``runuser``), which owns the directory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

HAPI_PG_DIALECT = "ca.uhn.fhir.jpa.model.dialect.HapiFhirPostgresDialect"
DB_USER = "hapi"
DB_NAME = "hapi"

# Server settings of a dedicated bulk-loaded database on this 2-core, 23 GB machine. fsync and full
# page writes stay on (a production server keeps them); synchronous_commit=off lets a commit return
# before its WAL is flushed (a crash loses the last few loader bundles, never corrupts; the loader
# resends idempotent PUTs), and rare checkpoints keep WAL I/O from throttling the load.
SERVER_SETTINGS: tuple[tuple[str, str], ...] = (
    ("shared_buffers", "1GB"),
    ("work_mem", "32MB"),
    ("maintenance_work_mem", "256MB"),
    ("effective_cache_size", "4GB"),
    ("synchronous_commit", "off"),
    ("max_wal_size", "8GB"),
    ("checkpoint_timeout", "30min"),
    ("wal_compression", "on"),
    ("max_connections", "40"),
    ("random_page_cost", "1.1"),
)


def _bin_dir() -> Path:
    """Directory of initdb/pg_ctl: PG_BINDIR, else the newest /usr/lib/postgresql/*/bin (Debian)."""
    explicit = os.environ.get("PG_BINDIR")
    if explicit:
        return Path(explicit)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found: run `make postgres` (Debian) or set PG_BINDIR")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _du_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # a WAL segment recycled while we walk
                total += (Path(root) / name).lstat().st_blocks * 512
    return total


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):  # the task ended
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _pss_kb(pid: int) -> int:
    """Proportional set size: shared buffers counted once across PostgreSQL's processes."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int, *, with_exited_children: bool = False) -> float:
    """User + system CPU of a process (all its threads), from /proc/PID/stat; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_exited_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def process_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of one process, in MB (e.g. the HAPI JVM)."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key.lower() + "_mb"] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    return out


class PostgresCluster:
    """initdb + pg_ctl start on a free loopback port; stop() stops it and deletes its directory."""

    def __init__(self, parent: Path | None = None, *, port: int | None = None) -> None:
        base = parent or Path(os.environ.get("BENCH_DATA", "/tmp/trial-adapter-bench"))
        base.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="pg-", dir=base))
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.log_path = self.root / "postgres.log"
        self.port = port or _free_port()
        self.bin = _bin_dir()
        self._as_user: list[str] = []
        self.running = False

    @property
    def jdbc_url(self) -> str:
        # reWriteBatchedInserts: the driver sends a JDBC batch as multi-row INSERTs (HAPI writes ~20 index
        # rows per resource in batches of 500 under BULK_LOAD_APP_ARGS)
        return f"jdbc:postgresql://127.0.0.1:{self.port}/{DB_NAME}?reWriteBatchedInserts=true"

    def _run(self, *cmd: str, timeout: float = 120) -> str:
        proc = subprocess.run(
            [*self._as_user, *cmd], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{Path(cmd[0]).name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}"
            )
        return proc.stdout

    def start(self) -> PostgresCluster:
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            user = pwd.getpwnam(os.environ.get("PG_OS_USER", "postgres"))
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", user.pw_name, "--"]
        self.socket_dir.mkdir()
        if self._as_user:
            os.chown(self.socket_dir, pwd.getpwnam(self._as_user[2]).pw_uid, -1)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            DB_USER,
            "--auth=trust",  # loopback and our own socket only; the cluster lives for one run
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",  # a throw-away cluster
        )
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.socket_dir}",
                *(f"-c {k}={v}" for k, v in SERVER_SETTINGS),
            ]
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "start",
        )
        self.running = True
        self.sql(f"CREATE DATABASE {DB_NAME}", database="postgres")
        return self

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def memory_mb(self) -> float:
        """PSS of the postmaster and its backends (shared buffers counted once)."""
        pid = self.postmaster_pid()
        if pid is None:
            return 0.0
        return round(sum(_pss_kb(p) for p in [pid, *_children(pid)]) / 1024, 1)

    def cpu_s(self) -> float:
        """CPU of the postmaster, its live backends and those that exited (server CPU, no client)."""
        pid = self.postmaster_pid()
        if pid is None:
            return 0.0
        own = cpu_seconds(pid, with_exited_children=True)
        return round(own + sum(cpu_seconds(c) for c in _children(pid)), 2)

    def disk_mb(self) -> dict[str, float]:
        """du of the data directory (tables, indexes and WAL), of its WAL alone, and the database's own
        size (pg_database_size: tables + indexes). WAL is kept up to max_wal_size between checkpoints."""
        out = {
            "du_mb": round(_du_bytes(self.data) / 1e6, 1),
            "wal_mb": round(_du_bytes(self.data / "pg_wal") / 1e6, 1),
        }
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired, ValueError):
            out["database_mb"] = round(int(self.sql(f"SELECT pg_database_size('{DB_NAME}')")) / 1e6, 1)
        return out

    def sql(self, query: str, database: str = DB_NAME) -> str:
        """One query through psql on the cluster's own socket; its output, unaligned."""
        return self._run(
            str(self.bin / "psql"),
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            DB_USER,
            "-d",
            database,
            "-Atq",
            "-c",
            query,
        ).strip()

    def stop(self) -> None:
        try:
            if self.running:
                self.running = False
                try:
                    self._run(
                        str(self.bin / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-m",
                        "fast",
                        "-w",
                        "stop",
                        timeout=120,
                    )
                except (RuntimeError, subprocess.TimeoutExpired):
                    pid = self.postmaster_pid()
                    if pid is not None:
                        with_timeout_kill(pid)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start() if not self.running else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def with_timeout_kill(pid: int, grace: float = 10) -> None:
    """SIGQUIT (immediate shutdown) to a postmaster that ignored pg_ctl; waits up to ``grace`` s."""
    try:
        os.kill(pid, 3)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)


def hapi_pg_args(pg: PostgresCluster) -> tuple[str, ...]:
    """Spring arguments pointing the project's HAPI jar at ``pg`` (later arguments win in Spring)."""
    return (
        f"--spring.datasource.url={pg.jdbc_url}",
        f"--spring.datasource.username={DB_USER}",
        "--spring.datasource.password=",
        "--spring.datasource.driver-class-name=org.postgresql.Driver",
        f"--spring.jpa.properties.hibernate.dialect={HAPI_PG_DIALECT}",
        # SplitIdLookups works around H2's table scan of "(type, id) OR ..."; PostgreSQL answers that
        # query with index scans, so HAPI's own lookup is kept
        "--hapi.db.split-id-lookups=false",
    )
