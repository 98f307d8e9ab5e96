"""Structured logging: JSON lines (production) or a readable console format.

Secrets never reach a log line: the formatter redacts values that look like AWS credentials or
bearer tokens, whatever code produced the message (defence in depth; nothing should log them).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_SECRET_PATTERNS = (
    # key=value, key: value, "key": "value", and botocore's header dicts ('Key': b'value')
    re.compile(
        r"(?i)(aws_secret_access_key|secret[_-]?key|password|x-amz-security-token|token|"
        r"authorization)(['\"]?\s*[=:]\s*b?['\"]?)([^\s'\",}]+)"
    ),
    re.compile(r"\b(A(?:KIA|SIA)[A-Z0-9]{16})\b"),
    re.compile(r"(?i)(bearer\s+)([A-Za-z0-9._~+/=-]{8,})"),
    # the signature inside a SigV4 Authorization header
    re.compile(r"(?i)(Signature=)([0-9a-f]{16,})"),
)


def redact(text: str) -> str:
    text = _SECRET_PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    text = _SECRET_PATTERNS[1].sub("AKIA****************", text)
    text = _SECRET_PATTERNS[2].sub(lambda m: f"{m.group(1)}***", text)
    return _SECRET_PATTERNS[3].sub(lambda m: f"{m.group(1)}***", text)


_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, default=str))


class ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # botocore logs request details at DEBUG; keep it at WARNING unless asked.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("aiobotocore").setLevel(logging.WARNING)
    # apscheduler warns on every skipped overlapping run; the tick loop reports that itself.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
