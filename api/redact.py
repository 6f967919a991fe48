"""Credentials never reach a log: query parameters that look like keys or tokens are masked.

uvicorn's access log writes the query string as the client sent it, so the check runs on each
parameter fully decoded (percent-encoding, `+`, and encodings of encodings): `?%6Bey=K` and
`?key%3DK` are masked like `?key=K`. Any parameter whose decoded name contains `key` or `token`
is masked; a harmless one that happens to match loses only its value in the log.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

SECRET_NAMES = ("key", "token")
MASK = "***"
_SEPARATOR = re.compile(r"([&;])")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-\[\]]")
_MAX_DECODES = 8  # %2525… cannot hide a name for long; stop after this many layers


def fully_decoded(text: str) -> str:
    """`text` percent- and plus-decoded until it no longer changes."""
    for _ in range(_MAX_DECODES):
        decoded = unquote_plus(text)
        if decoded == text:
            break
        text = decoded
    return text


def _name(pair: str) -> str:
    """The decoded name of a `name=value` pair, shown safely (no control characters)."""
    return _UNSAFE.sub("?", fully_decoded(pair).split("=", 1)[0])[:40]


def _is_secret(pair: str) -> bool:
    name = _name(pair).lower()
    return any(secret in name for secret in SECRET_NAMES)


def redact_query(query: str) -> str:
    """`query` with the value of every key- or token-like parameter replaced by ***."""
    pieces = _SEPARATOR.split(query)
    for i in range(0, len(pieces), 2):  # odd indexes are the separators
        if _is_secret(pieces[i]):
            pieces[i] = f"{_name(pieces[i])}={MASK}"
    return "".join(pieces)


def redact(text: str) -> str:
    """`text` (a URL, a request line or a log message) with its query string redacted."""
    path, sep, rest = text.partition("?")
    if not sep:
        return text
    query, space, tail = rest.partition(" ")  # "GET /x?a=1 HTTP/1.1"
    return f"{path}?{redact_query(query)}{space}{redact(tail) if tail else ''}"


class RedactKeys(logging.Filter):
    """Masks key- and token-like query parameters in every argument of a log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        record.msg = redact(str(record.msg))
        return True
