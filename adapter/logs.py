"""Structured JSON logs on stderr. Log ids and counts only: never names, birth dates or values.

When ``TRIAL_ADAPTER_LOG_FILE`` names a file, every record (DEBUG and up) is also appended to it as a
JSON line, from this process and from any subprocess that inherits the variable (the test suite uses
this to check the whole session's logs for patient data).
"""

from __future__ import annotations

import json
import logging
import sys
import time

from adapter.settings import LOG_FILE_ENV  # noqa: F401  (tests name it as logs.LOG_FILE_ENV)
from adapter.settings import current as environment

NOISY_LOGGERS = ("httpx", "httpcore")  # they log full URLs, whose queries can hold patient data

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# uvicorn adds its message again with ANSI colour codes: not for JSON logs.
_DROPPED = _STANDARD | {"color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        payload.update({k: v for k, v in vars(record).items() if k not in _DROPPED})
        if record.exc_info and record.exc_info[0] is not None:
            payload["error"] = record.exc_info[0].__name__  # the type only: messages can carry data
        return json.dumps(payload, default=str)


class _LogFileHandler(logging.FileHandler):
    """Appends JSON lines; O_APPEND and a flush per record keep lines of several processes whole."""


def file_handler(path: str) -> logging.Handler:
    handler = _LogFileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    return handler


def quiet_noisy_loggers() -> None:
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def configure(level: str = "info", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level.upper())
    handlers: list[logging.Handler] = [handler]
    log_file = environment().log_file
    if log_file:
        handlers.append(file_handler(log_file))
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, _LogFileHandler):
            old.close()
    root.handlers[:] = handlers
    root.setLevel(logging.DEBUG if log_file else level.upper())
    quiet_noisy_loggers()
