"""What model a worker serves, how fast, and switching it at runtime (PUT /api/workers/{id}/model).

A switch asked through `shared.models.ask_switch` is picked up here within SWITCH_POLL_S: the
worker stops taking sources, releases its leases (a running cycle is cut off within one chunk
and recorded as interrupted), loads an engine for the new model once that cycle has let go of
the old one, then takes sources again, now those that require the new model. A load that
fails leaves the previous engine serving, and the switch record says why. Only ENGINE=openai
workers switch: loading local weights named by a client would let it run any code on the GPU box.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from shared.bus import REDIS_ERRORS
from shared.models import (
    ModelIdError,
    ModelSwitch,
    allowed_base_urls,
    read_switch,
    validate_model_id,
    write_switch,
)
from shared.settings import Settings
from worker.engines import build_engine

if TYPE_CHECKING:
    from worker.service import CommentaryWorker

log = logging.getLogger(__name__)

SWITCH_POLL_S = 0.5  # how often a worker looks for a switch asked of it
SPEED_WEIGHT = 0.3  # weight of the newest answer in the measured tokens/s


def served_model(settings: Settings) -> str:
    """The model id a worker with these settings advertises (sources may require it)."""
    if settings.engine == "openai":
        return settings.openai_model.strip()
    if settings.engine == "cpu":
        return "cpu"
    return Path(settings.model_path).name


class SpeedMeter:
    """Tokens per second over recent answers (an exponential average)."""

    def __init__(self) -> None:
        self.rate = 0.0

    def add(self, tokens: int, duration_ms: float) -> None:
        if tokens <= 0 or duration_ms <= 0:
            return
        rate = tokens / (duration_ms / 1000)
        self.rate = rate if not self.rate else (1 - SPEED_WEIGHT) * self.rate + SPEED_WEIGHT * rate


class SwitchError(ValueError):
    """A switch that cannot be made (the message says why)."""


class ModelSwitcher:
    """Watches this worker's switch key and carries out what it asks."""

    def __init__(self, worker: CommentaryWorker) -> None:
        self.worker = worker
        s = worker.settings
        self._allowed = allowed_base_urls(s.openai_base_url, s.openai_allowed_base_urls)
        self._handled = ""

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check()
            except REDIS_ERRORS as exc:
                log.warning("model switch check failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SWITCH_POLL_S)

    async def check(self) -> None:
        """Carry out a pending switch, once."""
        w = self.worker
        switch = await read_switch(w.redis, w.keys, w.worker_id)
        if switch is None or switch.state != "pending" or switch.request_id == self._handled:
            return
        self._handled = switch.request_id
        await self.apply(switch)

    def settings_for(self, switch: ModelSwitch) -> Settings:
        """The worker's settings with the new model (and server); SwitchError if not allowed."""
        s = self.worker.settings
        if s.engine != "openai":
            raise SwitchError(
                f"this worker runs ENGINE={s.engine}; only ENGINE=openai workers switch models"
            )
        try:
            model = validate_model_id(switch.model)
        except ModelIdError as exc:
            raise SwitchError(str(exc)) from None
        base_url = switch.base_url.strip().rstrip("/") or s.openai_base_url
        if base_url.rstrip("/") not in self._allowed:
            raise SwitchError("that base URL is not in OPENAI_BASE_URL or OPENAI_ALLOWED_BASE_URLS")
        return dataclasses.replace(s, openai_model=model, openai_base_url=base_url)

    async def apply(self, switch: ModelSwitch) -> None:
        """Drain, release, load the new engine (or keep the old one), take sources again."""
        w = self.worker
        previous = w.model_id
        await self._record(msgspec.structs.replace(switch, state="switching", previous=previous))
        log.info("%s: switching from %s to %s", w.worker_id, previous, switch.model)
        w.keeper.paused = True
        outcome = msgspec.structs.replace(switch, state="done", previous=previous)
        try:
            settings = self.settings_for(switch)
            await w.keeper.release_all("model switch")
            await w.runner.swap(build_engine(settings))
        except Exception as exc:  # whatever stopped it is the answer the client gets
            log.warning("%s: switch to %s failed: %s", w.worker_id, switch.model, exc)
            outcome = msgspec.structs.replace(outcome, state="failed", error=str(exc))
        else:
            w.settings, w.model_id = settings, served_model(settings)
            w.speed = SpeedMeter()
            log.info("%s: now serving %s", w.worker_id, w.model_id)
        finally:
            w.keeper.paused = False
            with contextlib.suppress(*REDIS_ERRORS):
                await w.beat()  # before the outcome: whoever reads it sees the new heartbeat
        await self._record(outcome)

    async def _record(self, switch: ModelSwitch) -> None:
        w = self.worker
        await write_switch(w.redis, w.keys, w.worker_id, switch)
