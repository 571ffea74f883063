"""UTC timestamps, one format everywhere (ISO 8601, seconds, a trailing ``Z``)."""

from __future__ import annotations

import datetime as _dt


def utcnow() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
