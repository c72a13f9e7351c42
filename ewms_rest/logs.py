"""Structured logs: one JSON object per line (or plain text for a terminal).

Fields: `ts`, `level`, `logger`, `msg`, and `exc` for tracebacks. Nothing secret is ever
passed to a log call; URLs are masked before they get here.
"""

import json
import logging
import sys
import time


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup(level: str, fmt: str) -> None:
    """Send every log record to stderr in `fmt` ("json" or "text") from `level` up."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pika").setLevel(max(logging.WARNING, root.level))


# loggers that write secrets at DEBUG (rest_tools: each bearer token; pymongo: whole documents, with
# credentials in them): kept above DEBUG whatever the log level
SECRET_LEAKING_LOGGERS = ("rest_tools.server.handler", "pymongo")


def keep_secrets_out_of_logs() -> None:
    for name in SECRET_LEAKING_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
