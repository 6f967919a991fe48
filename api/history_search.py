"""Text search over a source's retained history, done inside Redis.

The stock redis-server has no search module, so the history stream is the index: its ids are
millisecond timestamps, which makes `since`/`until` an XREVRANGE range, and one Lua script
walks that range newest first in batches, keeping the entries whose text or question holds
every word of `q`. Only the matches cross the network. One request scans at most
SCAN_MAX entries (twice the default HISTORY_MAXLEN): when it stops short, the reply's
`next_before` says where to go on. Lua's string.lower folds ASCII letters only, so
the match ignores case for A-Z and is exact for other letters.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from api.errors import FieldError

# Entries one request may scan: the script blocks Redis while it runs (Lua is atomic), about
# 12-40 ms per 1000 entries (docs/benchmarks.md), so a longer history is searched page by page.
SCAN_MAX = 2_000
BATCH = 250  # entries per XREVRANGE inside the script
MAX_QUERY_CHARS = 200
MAX_TERMS = 8
LATEST_S = 1e11  # epoch seconds in the year 5138: anything later is a mistake
STREAM_ID_RE = re.compile(r"^\d{1,20}-\d{1,20}$")
_NUMBER_RE = re.compile(r"^\d{1,12}(\.\d{1,9})?$")

# KEYS: history. ARGV: top, bottom (XREVRANGE bounds), limit, scan max, batch, terms...
# Returns {matches, next}: next is the last id scanned when the scan stopped before the
# range's end (page on with before=next), else "".
_SEARCH = """
local top, bottom = ARGV[1], ARGV[2]
local limit, scan_max, batch = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local found, scanned, last, more = {}, 0, '', false
while true do
  local entries = redis.call('XREVRANGE', KEYS[1], top, bottom, 'COUNT', batch)
  for _, entry in ipairs(entries) do
    scanned = scanned + 1
    last = entry[1]
    local fields, text, question = entry[2], '', ''
    for i = 1, #fields, 2 do
      if fields[i] == 'text' then
        text = string.lower(fields[i + 1])
      elseif fields[i] == 'question' then
        question = string.lower(fields[i + 1])
      end
    end
    local all = true
    for t = 6, #ARGV do
      local term = ARGV[t]
      if not string.find(text, term, 1, true) and not string.find(question, term, 1, true) then
        all = false
        break
      end
    end
    if all then
      found[#found + 1] = entry
    end
    if #found >= limit or scanned >= scan_max then
      more = true
      break
    end
  end
  if more or #entries < batch then
    break
  end
  top = '(' .. last
end
if more then
  local rest = redis.call('XREVRANGE', KEYS[1], '(' .. last, bottom, 'COUNT', 1)
  if #rest == 0 then
    last = ''
  end
else
  last = ''
end
return {found, last}
"""


def fold(text: str) -> str:
    """Lower-case ASCII letters only, as Lua's string.lower does inside Redis."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def query_terms(q: str) -> list[str]:
    """The words of `q` (all must match); FieldError when blank, too long or too many."""
    if len(q) > MAX_QUERY_CHARS:
        raise FieldError("q", f"{len(q)} characters, at most {MAX_QUERY_CHARS} allowed")
    terms = list(dict.fromkeys(fold(q).split()))
    if not terms:
        raise FieldError("q", "must hold at least one word")
    if len(terms) > MAX_TERMS:
        raise FieldError("q", f"{len(terms)} words, at most {MAX_TERMS} allowed")
    return terms


def parse_instant(name: str, value: str) -> float:
    """Epoch seconds from `value`: a number of seconds, or an ISO 8601 time (UTC if it names
    no zone). FieldError naming `name` otherwise."""
    text = value.strip()
    if _NUMBER_RE.fullmatch(text):
        seconds = float(text)
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise FieldError(
                name, "expected epoch seconds or an ISO 8601 time like 2026-11-27T09:00:00Z"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp()
    if not math.isfinite(seconds) or not 0 <= seconds <= LATEST_S:
        raise FieldError(name, f"must be between 0 and {LATEST_S:.0f} epoch seconds")
    return seconds


@dataclass(frozen=True)
class Range:
    """XREVRANGE bounds over history ids: `top` (newest, maybe exclusive) down to `bottom`."""

    top: str = "+"
    bottom: str = "-"

    @classmethod
    def of(cls, before: str | None, since: str | None, until: str | None) -> Range:
        """Bounds from the request's `before` (an id, exclusive), `since` and `until`
        (inclusive times); FieldError for a bad value or an empty range."""
        if before is not None and not is_history_id(before):
            raise FieldError("before", "expected a history id like 1700000000000-0")
        low = None if since is None else parse_instant("since", since)
        high = None if until is None else parse_instant("until", until)
        if low is not None and high is not None and low > high:
            raise FieldError("since", "must not be later than until")
        top = "+" if high is None else str(math.floor(high * 1000))  # ms-only: its last seq
        if before is not None and (high is None or _id_key(before) <= (int(top), 2**64)):
            top = f"({before}"
        bottom = "-" if low is None else str(math.ceil(low * 1000))  # ms-only: its seq 0
        return cls(top, bottom)


def _id_key(stream_id: str) -> tuple[int, int]:
    ms, seq = stream_id.split("-")
    return int(ms), int(seq)


def is_history_id(text: str) -> bool:
    """True for a stream id Redis accepts: `MS-SEQ`, both parts 64-bit unsigned."""
    return bool(STREAM_ID_RE.fullmatch(text)) and max(_id_key(text)) < 2**64


class HistorySearch:
    """Runs the search script on one Redis."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._script = redis.register_script(_SEARCH)

    async def run(
        self, key: str, bounds: Range, terms: list[str], limit: int
    ) -> tuple[list[tuple[bytes, dict[bytes, bytes]]], str | None]:
        """Matching entries newest first, and the id to page on from (None: range done)."""
        args: list[str | int] = [bounds.top, bounds.bottom, limit, SCAN_MAX, BATCH, *terms]
        found, last = await self._script(keys=[key], args=args)
        entries = [(entry_id, _pairs(fields)) for entry_id, fields in found]
        more = last.decode() if isinstance(last, bytes) else str(last)
        return entries, more or None


def _pairs(flat: list[Any]) -> dict[bytes, bytes]:
    """A Lua-returned flat [name, value, ...] list as the map XRANGE gives."""
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}
