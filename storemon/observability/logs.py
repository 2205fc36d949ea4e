"""Logs of every storemon service as one JSON object per line, on standard error.

Each object has `ts` (ISO-8601, UTC, milliseconds), `level`, `logger` and
`message`, then whatever context the call passed with `extra=` (`report_id`,
`store_id`, ...), and `exc_info` (the formatted traceback) when an exception is
logged. A log shipper can then index every field without parsing rules, and a
traceback stays inside its record instead of spilling over several lines.
asyncpg's pool logs its exceptions as `error` ("Type: message") instead: it warns
each time it fails to reconnect while the database is down, and the traceback of
a refused connection says no more than its error.

The level comes from `--loglevel`, whose default is `STOREMON_LOG_LEVEL` (Settings.log_level).
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from storemon.config import LOG_LEVELS

if TYPE_CHECKING:
    import faust

#: Attributes every LogRecord has; any other attribute was given with `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def log_level(name: str) -> str:
    """`name` as a level name in lower case; ValueError unless it is one of LOG_LEVELS."""
    if name.lower() not in LOG_LEVELS:
        raise ValueError(f"unknown log level {name!r}: use {', '.join(LOG_LEVELS)}")
    return name.lower()


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON: fixed fields first, then the call's context."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            # setdefault: context named like a fixed field cannot hide that field.
            if name not in _RECORD_ATTRIBUTES:
                entry.setdefault(name, value)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        # json.dumps escapes newlines inside strings, so a traceback stays on the line;
        # default=str: context values need not be JSON types (datetimes, paths, ...).
        return json.dumps(entry, default=str)


class ErrorWithoutTraceback(logging.Filter):
    """Records of the `name` logger and its children keep their exception as `error`
    ("Type: message"), without the traceback; every record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and super().filter(record):
            text = str(error)
            record.error = f"{type(error).__name__}: {text}" if text else type(error).__name__
            record.exc_info = None
            record.exc_text = None
        return True


def logging_config(level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` sending records at `level` and above to stderr as JSON."""
    return {
        "version": 1,
        # Module loggers are created at import, before this runs: keep them.
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "filters": {"asyncpg_pool": {"()": ErrorWithoutTraceback, "name": "asyncpg.pool"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["asyncpg_pool"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": log_level(level).upper(), "handlers": ["stderr"]},
    }


def configure_logging(level: str) -> None:
    """Make this process log JSON lines at `level` (a name such as info or WARNING)."""
    logging.config.dictConfig(logging_config(level))


def faust_worker(app: faust.App, level: str) -> faust.Worker:
    """A `faust.Worker` running `app` that logs JSON lines like the other services.

    mode's Worker (faust.Worker's base) configures logging when it starts: with
    `logging_config` when given, instead of its coloured console handler. `quiet`
    silences the banner and status text it prints outside logging.
    """
    import faust  # here, so that the other services never import Faust

    worker = faust.Worker(app, loglevel=level, logging_config=logging_config(level), quiet=True)
    # At warning and above Faust draws a progress spinner: terminal escapes on stdout
    # even when that is no terminal, and the root logger set to DEBUG to drive it.
    worker.spinner = None
    return worker
