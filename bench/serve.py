"""Start a fresh HAPI, load a synthetic hospital into it, and keep it up for ``bench.run --attach``.

    python -m bench.serve --patients 10000 --info /tmp/hapi10k.json      # Ctrl-C or touch /tmp/hapi10k.stop

Loading 10k patients (~450k resources) takes ~7 minutes on 2 cores, so a server can be loaded
once and measured several times. Writes ``--info`` (url, start-up and load statistics) when loaded;
stops HAPI on Ctrl-C/SIGTERM, when ``<info>.stop`` appears, or after ``--max-minutes`` (always, in finally).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from datetime import date
from pathlib import Path

from bench import synth
from bench.load import load_directory
from bench.pg import PostgresCluster, hapi_pg_args
from bench.run import REPO, dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, required=True)
    parser.add_argument("--info", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--as-of", type=date.fromisoformat, default=synth.AS_OF)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/trial-adapter-bench"))
    parser.add_argument("--db", choices=["h2", "postgres"], default="h2", help="see bench.run --db")
    parser.add_argument("--heap", default=None, help="HAPI -Xmx (default 10g on H2, 4g on PostgreSQL)")
    parser.add_argument("--max-minutes", type=float, default=90)
    args = parser.parse_args(argv)
    from tests.support.hapi import BULK_LOAD_APP_ARGS, THROUGHPUT_JVM_FLAGS, build_jar, start_hapi

    def _stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)  # also when started in the background (SIGINT ignored)
    data = dataset(args.patients, args.seed, args.as_of, args.data_dir)
    stop = args.info.with_suffix(".stop")
    stop.unlink(missing_ok=True)
    heap = args.heap or ("4g" if args.db == "postgres" else "10g")
    stack = contextlib.ExitStack()
    try:
        db_args = (
            hapi_pg_args(stack.enter_context(PostgresCluster(args.data_dir))) if args.db == "postgres" else ()
        )
        server = start_hapi(
            build_jar(REPO),
            jvm_flags=(*THROUGHPUT_JVM_FLAGS, f"-Xmx{heap}"),
            app_args=(*BULK_LOAD_APP_ARGS, *db_args),  # no subscriptions, no DELETE: only searched
            timeout=600,
        )
        stack.callback(server.stop)
    except BaseException:
        stack.close()
        raise
    try:
        print(f"HAPI {server.base_url} up in {server.startup_seconds:.0f}s; loading {data}", flush=True)
        stats = asyncio.run(
            load_directory(server.base_url, data, bundle_size=1000, concurrency=2, progress=True)
        )
        info = {
            "url": server.base_url,
            "patients": args.patients,
            "startup_seconds": server.startup_seconds,
            "load": stats.as_dict(),
        }
        args.info.write_text(json.dumps(info, indent=2) + "\n")
        print(json.dumps(info), flush=True)
        t0 = time.monotonic()
        while not stop.exists() and time.monotonic() - t0 < args.max_minutes * 60 and server.is_running():
            time.sleep(2)
    except KeyboardInterrupt:
        pass
    finally:
        stack.close()  # HAPI first, then PostgreSQL (its directory deleted)
        print("HAPI stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
