"""The worker process: leases, frames, steering, the commentary loop and asks, on one loop.

`run_worker(settings, engine, stop=...)` runs it in-process (tests inject a scripted engine);
`lookout worker` runs it as a process with the engine named by ENGINE. Concurrent tasks:
lease keeping, heartbeat, frame reading, the control subscription, arq's ask worker and the
commentary loop. Only the last two call the engine, through one FIFO lock (runner.py); the
commentary loop (serving.py) runs one due source at a time, or, where the engine batches,
adds due sources to the running batch as slots free up (serving_batch.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from shared.backoff import Backoff
from shared.bus import REDIS_ERRORS, Subscription, connect_redis
from shared.keys import Keys
from shared.messages import InstructionChanged
from shared.models import required_models
from shared.settings import Settings
from shared.source_subscriptions import SourceSubscriptions
from shared.sources import SourceRegistry
from worker import status
from worker.asks import AskHandler, run_ask_worker
from worker.cycle import CycleRunner
from worker.engines.base import Engine, WindowFrame
from worker.frames import StreamFrames, current_buffer
from worker.instructions import InstructionKeeper
from worker.leases import Leases
from worker.model_switch import ModelSwitcher, SpeedMeter, served_model
from worker.rules import RuleWatch
from worker.runner import EngineRunner
from worker.scheduler import Scheduler, SourceSlot
from worker.serving import SourceServer, wait_for
from worker.sharing import LeaseKeeper

log = logging.getLogger(__name__)


class CommentaryWorker:
    """One worker: the sources it leases, its engine, and the loops around them."""

    def __init__(self, settings: Settings, engine: Engine, worker_id: str) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.keys = Keys(settings.key_prefix)
        self.redis = connect_redis(settings.redis_url, cluster=settings.redis_cluster)
        self.scheduler = Scheduler(settings)
        self.runner = EngineRunner(engine)
        self.cycles = CycleRunner(self.redis, self.keys, settings, self.runner, worker_id)
        self.registry = SourceRegistry(self.redis, self.keys, settings.default_instruction)
        self.instructions = InstructionKeeper(self.redis, self.keys)
        self.leases = Leases(self.redis, self.keys, worker_id, settings.lease_ttl)
        self.keeper = LeaseKeeper(self, self.leases, settings.max_sources_per_worker)
        self.frames = StreamFrames(self.redis, self.keys, settings, self.scheduler)
        self.asks = AskHandler(self.cycles, self.window_for, settings)
        self.rules = RuleWatch(self.redis, self.keys, settings, self.runner, worker_id)
        self.started_at = time.time()
        self.server = SourceServer(self)
        self.model_id = served_model(settings)
        self.speed = SpeedMeter()
        self.switcher = ModelSwitcher(self)

    @property
    def serving(self) -> list[SourceSlot]:
        """The sources whose cycles run now (one, or those in the running batch)."""
        return self.server.serving

    # --- what the lease keeper calls ---
    async def required_models(self) -> dict[str, str]:
        return await required_models(self.redis, self.keys)

    def gain(self, source: str) -> None:
        log.info("%s: now commenting on %s", self.worker_id, source)
        self.scheduler.add(source)

    def lose(self, source: str, reason: str) -> None:
        log.info("%s: stopped commenting on %s (%s)", self.worker_id, source, reason)
        self.scheduler.remove(source, reason)

    async def window_for(self, source: str) -> Sequence[WindowFrame]:
        """The current window of `source`: ours if we hold it, else from its frames stream."""
        slot = self.scheduler.slots.get(source)
        window = slot.buffer.window() if slot is not None else []
        if not window:
            window = (await current_buffer(self.redis, self.keys, self.settings, source)).window()
        return [s.frame for s in window]

    # --- steering ---
    def on_instruction(
        self, channel: str, message: InstructionChanged, authoritative: bool = False
    ) -> None:
        """Apply a new instruction at once; a running commentary of that source is cut off."""
        source = self.keys.source_from_channel(channel)
        if message.source != source:
            log.warning("ignored an instruction for %r on %s", message.source, channel)
            return
        slot = self.scheduler.slots.get(source)
        if slot is None or not slot.apply_instruction(
            message.instruction, message.rev, authoritative
        ):
            return
        if slot.cancel is not None:
            slot.cancel_reason = "instruction changed"
            slot.cancel.set()
        self.scheduler.wake.set()

    async def _resync_instructions(self) -> None:
        # Pub/sub lost what was published during an outage; the state hash has it.
        for name, slot in list(self.scheduler.slots.items()):
            state = await self.registry.state(name)
            if state is not None and not await self.instructions.restored(slot, state):
                self.on_instruction(
                    self.keys.control_channel(name),
                    InstructionChanged(
                        source=name, instruction=state.instruction, rev=state.instruction_rev
                    ),
                    authoritative=True,
                )
            elif state is None and slot.cancel is not None:
                slot.cancel.set()

    async def _held(self) -> list[str]:
        return list(self.scheduler.slots)

    async def _control_loop(self) -> None:
        sub: Subscription | SourceSubscriptions = Subscription(
            self.settings.redis_url,
            patterns=[self.keys.control_pattern],
            on_reconnect=self._resync_instructions,
        )
        if self.settings.redis_cluster:  # no pattern in sharded pub/sub: the held sources'
            sub = SourceSubscriptions(
                self.settings.redis_url,
                lambda source: [self.keys.control_channel(source)],
                self._held,
                on_reconnect=self._resync_instructions,
            )
        async for channel, message in sub.messages():
            if isinstance(message, InstructionChanged):
                self.on_instruction(channel, message)
            else:
                log.warning("ignored a %s message on %s", type(message).__name__, channel)

    # --- the commentary loop ---
    async def _commentary_loop(self, stop: asyncio.Event) -> None:
        backoff = Backoff(0.2, 5.0)
        try:
            while not stop.is_set():
                self.scheduler.wake.clear()
                slots = await self.server.choose()
                if not slots:
                    await wait_for(self.scheduler.wake, self.server.next_wait())
                    continue
                try:
                    await self.server.serve(slots)
                    backoff.reset()
                except REDIS_ERRORS as exc:
                    delay = backoff.next()
                    names = ", ".join(slot.name for slot in slots)
                    log.warning("cycle of %s lost Redis (%s); retrying in %.1fs", names, exc, delay)
                    await wait_for(stop, delay)
        except asyncio.CancelledError:
            self.server.batched.cancel()  # an abrupt stop: the batch's cycles are abandoned
            raise
        await self.server.batched.drain()  # stopping: the cycles in the batch end first

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        period = min(self.settings.heartbeat_ttl, self.settings.lease_ttl) / 3
        while not stop.is_set():
            try:
                await self.beat()
            except REDIS_ERRORS as exc:
                log.warning("heartbeat failed: %s", exc)
            await wait_for(stop, period)

    async def beat(self) -> None:
        await status.beat(
            self.redis,
            self.keys,
            self.worker_id,
            self.runner.engine_info(),
            self.scheduler.slots,
            self.server.cycle_count,
            self.started_at,
            self.settings.heartbeat_ttl,
            model=self.model_id,
            tokens_per_s=self.speed.rate,
        )

    # --- lifetime ---
    async def run(self, stop: asyncio.Event, grace: float) -> None:
        """Load the engine, serve until `stop`, then shut down within about `grace` s."""
        await self.runner.load()
        with contextlib.suppress(*REDIS_ERRORS):
            await self.beat()  # before taking leases, so other workers count us at once
        loop_task = asyncio.create_task(self._commentary_loop(stop))
        helpers = [
            asyncio.create_task(self._control_loop()),
            asyncio.create_task(self.frames.run(stop)),
            asyncio.create_task(self.keeper.run(stop)),
            asyncio.create_task(self._heartbeat_loop(stop)),
            asyncio.create_task(self.switcher.run(stop)),
        ]
        asks = asyncio.create_task(run_ask_worker(self.settings, self.asks, stop, grace))
        try:
            await stop.wait()
        except asyncio.CancelledError:
            # An abrupt stop, like a crash: no lease is released, they expire by LEASE_TTL.
            for task in [loop_task, asks, *helpers]:
                task.cancel()
            await asyncio.gather(loop_task, asks, *helpers, return_exceptions=True)
            await self.redis.aclose()
            self.runner.close()
            raise
        await self._shutdown(loop_task, helpers, asks, grace)

    async def _shutdown(
        self,
        loop_task: asyncio.Task[None],
        helpers: list[asyncio.Task[None]],
        asks: asyncio.Task[None],
        grace: float,
    ) -> None:
        self.scheduler.wake.set()  # an idle commentary loop sees `stop` at once
        await asyncio.wait({loop_task}, timeout=grace)
        running = [slot for slot in self.serving if slot.cancel is not None]
        if not loop_task.done() and running:
            for slot in running:
                slot.cancel_reason = "worker stopping"
                slot.cancel.set()  # type: ignore[union-attr]  # publishes it as interrupted
            await asyncio.wait({loop_task}, timeout=2.0)
        await asyncio.wait({asks}, timeout=grace + 1)
        for task in [loop_task, asks, *helpers]:
            task.cancel()
        await asyncio.gather(loop_task, asks, *helpers, return_exceptions=True)
        with contextlib.suppress(*REDIS_ERRORS):
            await self.keeper.release_all()
            await status.remove_heartbeat(self.redis, self.keys, self.worker_id)
        with contextlib.suppress(*REDIS_ERRORS):
            await self.redis.aclose()
        self.runner.close()


async def run_worker(
    settings: Settings,
    engine: Engine,
    *,
    stop: asyncio.Event,
    worker_id: str | None = None,
    grace: float = 5.0,
) -> None:
    """Comment on sources with `engine` until `stop` is set (then release leases and exit)."""
    wid = worker_id or settings.worker_id or status.default_worker_id()
    await CommentaryWorker(settings, engine, wid).run(stop, grace)
