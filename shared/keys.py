"""Every Redis key, stream and channel name Lookout uses. No other module writes a key string.

All names live under one prefix (KEY_PREFIX, default `lookout`) so two deployments can share
one Redis. `docs/architecture.md` lists each with its type, fields and lifetime.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SOURCE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
# arq's abort set (arq.constants.abort_jobs_ss), spelled out so this module imports no arq/redis;
# tests/test_contract_boundary.py checks it still matches arq's.
ABORT_JOBS_SS = "arq:abort"


class SourceNameError(ValueError):
    """A source name outside the safe charset or length."""


def validate_source_name(name: str) -> str:
    """Return `name` if it is a safe source name (letters, digits, `-`, `_`; 1 to 63 chars)."""
    if not SOURCE_NAME_RE.fullmatch(name):
        raise SourceNameError(
            f"invalid source name {name!r}: use 1-63 letters, digits, '-' or '_', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Keys:
    """Builds names under `prefix`. Per-source names take an already validated source name."""

    prefix: str = "lookout"

    # --- Registry and state ---
    @property
    def sources(self) -> str:
        """SET of registered source names. No TTL: a source stays until deleted."""
        return f"{self.prefix}:sources"

    def source_state(self, source: str) -> str:
        """HASH per source: url, instruction, instruction_rev, created_at. No TTL."""
        return f"{self.prefix}:src:{source}:state"

    def producer_status(self, source: str) -> str:
        """HASH written by the producer capturing this source. TTL HEARTBEAT_TTL, renewed each beat."""
        return f"{self.prefix}:src:{source}:producer"

    def producer_claim(self, source: str) -> str:
        """STRING: `supervisor-id job-id` capturing this source. TTL CLAIM_TTL, renewed by its owner."""
        return f"{self.prefix}:src:{source}:claim"

    @property
    def producer_desired(self) -> str:
        """HASH source -> JSON spec (url, options, job id) of sources supervisors keep running. No TTL."""
        return f"{self.prefix}:producers:desired"

    def lease(self, source: str) -> str:
        """STRING: id of the worker commenting on this source. TTL LEASE_TTL, renewed by its owner."""
        return f"{self.prefix}:src:{source}:lease"

    def removed(self, source: str) -> str:
        """STRING, TTL REMOVED_TTL_S: the source was deleted through the API. Frame publishers
        (producers, ingest sockets) check it when they (re-)register and stop feeding."""
        return f"{self.prefix}:src:{source}:removed"

    def open_cycle(self, source: str) -> str:
        """HASH: the commentary cycle running on the source (a `CommentaryRecord`, status
        `open`, text so far). Deleted when the cycle ends; TTL 24 h. One a dead worker left
        is closed as `lost` by the next cycle on the source (worker/open_cycles.py)."""
        return f"{self.prefix}:src:{source}:cycle"

    def worker_stats(self, source: str) -> str:
        """HASH of per-source cycle statistics kept by the worker holding the lease. No TTL."""
        return f"{self.prefix}:src:{source}:stats"

    # --- Streams ---
    def frames(self, source: str) -> str:
        """STREAM of JPEG frames (fields: seq, ts, w, h, jpeg). Trimmed to ~FRAMES_MAXLEN."""
        return f"{self.prefix}:src:{source}:frames"

    def history(self, source: str) -> str:
        """STREAM of finished and interrupted commentaries. Trimmed to ~HISTORY_MAXLEN."""
        return f"{self.prefix}:src:{source}:history"

    # --- Pub/sub channels (payloads: msgpack maps from shared.messages) ---
    def text_channel(self, source: str) -> str:
        """Text chunks as they are generated (TextChunk)."""
        return f"{self.prefix}:src:{source}:text"

    def audio_channel(self, source: str) -> str:
        """48 kHz mono s16le PCM chunks (AudioChunk)."""
        return f"{self.prefix}:src:{source}:audio"

    def events_channel(self, source: str) -> str:
        """Cycle events (CycleEvent) and source notices (SourceNotice)."""
        return f"{self.prefix}:src:{source}:events"

    def control_channel(self, source: str) -> str:
        """Commands to the worker for this source (InstructionChanged)."""
        return f"{self.prefix}:src:{source}:control"

    @property
    def control_pattern(self) -> str:
        """Pattern matching every source's control channel (workers PSUBSCRIBE to it)."""
        return f"{self.prefix}:src:*:control"

    def source_from_channel(self, channel: str) -> str:
        """The source name inside a per-source channel or key name."""
        head = f"{self.prefix}:src:"
        if not channel.startswith(head):
            raise ValueError(f"{channel!r} is not a per-source name under {self.prefix!r}")
        return channel[len(head) :].rsplit(":", 1)[0]

    # --- Processes ---
    def worker_status(self, worker_id: str) -> str:
        """HASH heartbeat of one worker (engine, dtype, VRAM, sources). TTL HEARTBEAT_TTL."""
        return f"{self.prefix}:worker:{worker_id}"

    @property
    def worker_pattern(self) -> str:
        return f"{self.prefix}:worker:*"

    def worker_model(self, worker_id: str) -> str:
        """HASH: the model switch asked of one worker and how it went (`ModelSwitch`). Written by
        the API (state pending), then by the worker (switching, done, failed). No TTL."""
        return f"{self.prefix}:model-switch:{worker_id}"  # not under worker:*, the heartbeats

    @property
    def source_models(self) -> str:
        """HASH source -> model id the source requires (only workers serving it take its
        lease). No TTL; a field goes when the requirement is cleared."""
        return f"{self.prefix}:sources:models"

    @property
    def key_usage(self) -> str:
        """HASH api-key fingerprint -> request count. No TTL."""
        return f"{self.prefix}:api:key_usage"

    # --- arq queues ---
    @property
    def worker_queue(self) -> str:
        """arq queue of one-off jobs for commentary workers (ask)."""
        return f"{self.prefix}:arq:worker"

    @property
    def producer_queue(self) -> str:
        """arq queue of capture jobs for producer supervisors."""
        return f"{self.prefix}:arq:producers"

    def producer_health_check(self, supervisor_id: str) -> str:
        """arq's health-check string of one supervisor (TTL: arq's health_check_interval)."""
        return f"{self.producer_queue}:health-check:{supervisor_id}"

    @property
    def arq_abort(self) -> str:
        """arq's sorted set of job ids to abort. arq 0.28 hard-codes it (`arq:abort`), shared by
        every queue and not under the prefix: an abort is by job id, and Lookout's ids are
        unique (`capture:<source>:<random>`). Entries are removed by the worker that aborts."""
        return ABORT_JOBS_SS
