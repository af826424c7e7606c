"""Logging for every service: readable text by default or JSON lines, with the request id
(which follows one create from the api through the conductor to compute) and, on build lines,
the instance uuid."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from services.common.context import current_instance_uuid, current_request_id


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        instance = getattr(record, "instance_uuid", "") or current_instance_uuid()
        record.instance_uuid = instance
        record.instance_tag = f" [instance: {instance}]" if instance else ""
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        instance = getattr(record, "instance_uuid", "")
        if instance:
            entry["instance_uuid"] = instance
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO", log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Context())
    if log_format == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(
            logging.Formatter(
                f"%(asctime)s %(levelname)s {service} [%(request_id)s]%(instance_tag)s "
                "%(name)s: %(message)s"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
