"""Reading the flat fields of Redis stream entries and hashes, for the record types.

XRANGE/XREAD and HGETALL return bytes keys and values (str with `decode_responses`); these
read one field as text or as numbers and raise RecordError naming a missing or bad field.
The record types are in shared/records.py (stream entries, job results) and
shared/status_records.py (status hashes and heartbeats).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

Fields = Mapping[bytes, bytes] | Mapping[str, Any]


class RecordError(ValueError):
    """A stream entry with a missing or malformed field."""


def as_text(value: bytes | str | Any) -> str:
    """A Redis reply value as text: bytes decoded as UTF-8 (bad bytes replaced), else str()."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def decode_hash(raw: Mapping[Any, Any]) -> dict[str, str]:
    """An HGETALL reply (bytes or str keys and values) as a str -> str map."""
    return {as_text(k): as_text(v) for k, v in raw.items()}


def field_value(fields: Fields, name: str) -> bytes | str | None:
    """The raw value of field `name` (bytes as stored, other values as text); None if missing."""
    raw: Mapping[Any, Any] = fields
    value = raw.get(name.encode(), raw.get(name))
    return value if value is None or isinstance(value, bytes) else str(value)


def text_field(fields: Fields, name: str, default: str | None = None) -> str:
    """Field `name` as text; `default` when missing, RecordError when missing without one."""
    value = field_value(fields, name)
    if value is None:
        if default is None:
            raise RecordError(f"missing field {name!r}")
        return default
    return as_text(value)


def number_field(
    fields: Fields, name: str, kind: type[int] | type[float], default: float | None = None
) -> Any:
    """Field `name` as an int or float (`kind`); RecordError naming it when it is not one."""
    raw = text_field(fields, name, None if default is None else str(default))
    try:
        return kind(raw)
    except ValueError:
        raise RecordError(f"field {name!r}={raw!r} is not a {kind.__name__}") from None


def number_list(fields: Fields, name: str, kind: type[int] | type[float]) -> list[Any]:
    """A comma-separated list field (empty or missing: no numbers)."""
    raw = text_field(fields, name, "")
    try:
        numbers = [kind(part) for part in raw.split(",") if part]
    except ValueError:
        raise RecordError(f"field {name!r}={raw!r} is not a list of {kind.__name__}s") from None
    if kind is float and not all(math.isfinite(n) for n in numbers):
        raise RecordError(f"field {name!r}={raw!r} holds a number that is not finite")
    return numbers
