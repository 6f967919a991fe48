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

    def _per_source(self, source: str, what: str) -> str:
        """`PREFIX:src:{SOURCE}:WHAT`: the braces are a Redis Cluster hash tag, so every key
        and channel of one source hashes to one slot (one shard), and multi-key commands and
        transactions on one source work in a cluster. Standalone Redis ignores them."""
        return f"{self.prefix}:src:{{{source}}}:{what}"

    # --- Registry and state ---
    @property
    def sources(self) -> str:
        """SET of registered source names. No TTL: a source stays until deleted."""
        return f"{self.prefix}:sources"

    def source_state(self, source: str) -> str:
        """HASH per source: url, instruction, instruction_rev, created_at. No TTL."""
        return self._per_source(source, "state")

    def producer_status(self, source: str) -> str:
        """HASH written by the producer capturing this source. TTL HEARTBEAT_TTL, renewed each beat."""
        return self._per_source(source, "producer")

    def producer_claim(self, source: str) -> str:
        """STRING: `supervisor-id job-id` capturing this source. TTL CLAIM_TTL, renewed by its owner."""
        return self._per_source(source, "claim")

    @property
    def producer_desired(self) -> str:
        """HASH source -> JSON spec (url, options, job id) of sources supervisors keep running. No TTL."""
        return f"{self.prefix}:producers:desired"

    def lease(self, source: str) -> str:
        """STRING: id of the worker commenting on this source. TTL LEASE_TTL, renewed by its owner."""
        return self._per_source(source, "lease")

    def removed(self, source: str) -> str:
        """STRING, TTL REMOVED_TTL_S: the source was deleted through the API. Frame publishers
        (producers, ingest sockets) check it when they (re-)register and stop feeding."""
        return self._per_source(source, "removed")

    def open_cycle(self, source: str) -> str:
        """HASH: the commentary cycle running on the source (a `CommentaryRecord`, status
        `open`, text so far). Deleted when the cycle ends; TTL 24 h. One a dead worker left
        is closed as `lost` by the next cycle on the source (worker/open_cycles.py)."""
        return self._per_source(source, "cycle")

    def worker_stats(self, source: str) -> str:
        """HASH of per-source cycle statistics kept by the worker holding the lease. No TTL."""
        return self._per_source(source, "stats")

    # --- Streams ---
    def frames(self, source: str) -> str:
        """STREAM of JPEG frames (fields: seq, ts, w, h, jpeg). Trimmed to ~FRAMES_MAXLEN."""
        return self._per_source(source, "frames")

    def history(self, source: str) -> str:
        """STREAM of finished and interrupted commentaries. Trimmed to ~HISTORY_MAXLEN."""
        return self._per_source(source, "history")

    def snapshots(self, source: str) -> str:
        """STREAM of snapshots (field: jpeg), each under the id of its history entry, trimmed
        to the history's oldest id whenever the worker appends to the history."""
        return self._per_source(source, "snapshots")

    # --- Pub/sub channels (payloads: msgpack maps from shared.messages) ---
    def text_channel(self, source: str) -> str:
        """Text chunks as they are generated (TextChunk)."""
        return self._per_source(source, "text")

    def audio_channel(self, source: str) -> str:
        """48 kHz mono s16le PCM chunks (AudioChunk)."""
        return self._per_source(source, "audio")

    def events_channel(self, source: str) -> str:
        """Cycle events (CycleEvent) and source notices (SourceNotice)."""
        return self._per_source(source, "events")

    def control_channel(self, source: str) -> str:
        """Commands to the worker for this source (InstructionChanged)."""
        return self._per_source(source, "control")

    @property
    def control_pattern(self) -> str:
        """Pattern matching every source's control channel (workers PSUBSCRIBE to it; `*`
        matches the braces of the hash tag too)."""
        return f"{self.prefix}:src:*:control"

    def source_from_channel(self, channel: str) -> str:
        """The source name inside a per-source channel or key name."""
        head = f"{self.prefix}:src:{{"
        tagged = channel[len(head) :].rsplit(":", 1)[0] if channel.startswith(head) else ""
        if not tagged.endswith("}"):
            raise ValueError(f"{channel!r} is not a per-source name under {self.prefix!r}")
        return tagged[:-1]

    # --- Processes ---
    def worker_status(self, worker_id: str) -> str:
        """HASH heartbeat of one worker (engine, dtype, VRAM, sources). TTL HEARTBEAT_TTL."""
        return f"{self.prefix}:worker:{worker_id}"

    @property
    def worker_pattern(self) -> str:
        return f"{self.prefix}:worker:*"

    def livekit_bridge(self, bridge_id: str) -> str:
        """HASH heartbeat of one LiveKit bridge (rooms it serves). TTL HEARTBEAT_TTL."""
        return f"{self.prefix}:livekit:{bridge_id}"

    def livekit_claim(self, source: str) -> str:
        """STRING: id of the LiveKit bridge serving this source's room. TTL CLAIM_TTL, renewed
        by its owner (the bridge's counterpart of `producer_claim`)."""
        return self._per_source(source, "livekit")

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

    # --- Watch rules and alerts (shared/rules.py, alerts/) ---
    def rules(self, source: str) -> str:
        """HASH rule id -> JSON `Rule` of this source's watch rules. No TTL."""
        return self._per_source(source, "rules")

    def rule_states(self, source: str) -> str:
        """HASH rule id -> JSON `RuleState` (debounce runs, last fired), kept by the worker."""
        return self._per_source(source, "rulestate")

    def alert_snapshot(self, source: str, alert_id: str) -> str:
        """STRING: the JPEG of the window an alert fired or cleared on. TTL ALERT_SNAPSHOT_TTL."""
        return self._per_source(source, f"alertjpeg:{alert_id}")

    @property
    def alerts(self) -> str:
        """STREAM of every source's alerts (`AlertRecord`). Trimmed to ~ALERTS_MAXLEN."""
        return f"{self.prefix}:alerts"

    @property
    def webhook_due(self) -> str:
        """ZSET webhook job id -> epoch seconds when it is next due (or its claim expires)."""
        return f"{self.prefix}:alerts:webhooks:due"

    @property
    def webhook_jobs(self) -> str:
        """HASH webhook job id -> JSON `WebhookJob` (the alert, URL, attempts, last error)."""
        return f"{self.prefix}:alerts:webhooks:jobs"

    @property
    def webhook_dead(self) -> str:
        """HASH webhook job id -> JSON `WebhookJob` that failed for WEBHOOK_RETRY_FOR s."""
        return f"{self.prefix}:alerts:webhooks:dead"

    def delivery_status(self, delivery_id: str) -> str:
        """HASH heartbeat of one `lookout alerts` process. TTL HEARTBEAT_TTL."""
        return f"{self.prefix}:alerts:delivery:{delivery_id}"

    @property
    def delivery_pattern(self) -> str:
        return f"{self.prefix}:alerts:delivery:*"

    @property
    def events_pattern(self) -> str:
        """Pattern matching every source's events channel (`lookout alerts` PSUBSCRIBEs)."""
        return f"{self.prefix}:src:*:events"
