"""Logging: one line per event, as ``key=value`` text or JSON (``server.log_format``).

``event(logger, name, **fields)`` is how every package reports a message event
(received, delivered, deferred, bounced, expired) and protocol trouble; the fields
become keys of the line.  Secrets are never passed here.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

__all__ = ["configure_logging", "event"]


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": {"event": name, **fields}})


_NEEDS_QUOTES = re.compile(r'[ "=\n\t]')


def _text_value(value: Any) -> str:
    s = str(value)
    if s == "" or _NEEDS_QUOTES.search(s):
        return json.dumps(s, ensure_ascii=False)
    return s


class TextFormatter(logging.Formatter):
    _second = -1
    _prefix = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # strftime once a second, not once a line
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        stamp = f"{self._prefix}.{int(record.msecs):03d}Z"
        fields = getattr(record, "fields", None)
        if fields is not None:
            body = " ".join(f"{k}={_text_value(v)}" for k, v in fields.items() if v is not None)
        else:
            body = record.getMessage()
        line = f"{stamp} {record.levelname.lower()} {record.name} {body}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if fields is not None:
            out.update({k: v for k, v in fields.items() if v is not None})
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(fmt: str = "text", level: str = "info", stream: Any = None) -> None:
    # Neither formatter prints the caller's file and line, the thread or the process:
    # a record need not find them (the logging HOWTO's "Optimization"), a few times per
    # message on a busy listener.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    # aiosmtpd logs every command at INFO; its view is ours to give.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
