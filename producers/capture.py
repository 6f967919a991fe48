"""The capture loop of one source: open, read, publish at DISPLAY_FPS, and stay alive.

Blocking OpenCV and socket reads run in a thread of this capture's own (one per source, so a
hung camera never starves another). Too many failed reads in a row, a closed stream, or no
frame for STALL_TIMEOUT makes it reconnect with exponential backoff (RECONNECT_DELAY doubling
to MAX_RECONNECT_DELAY, reset by the first good frame). A read stuck in C code cannot be
interrupted, so its thread is abandoned and the reader closed once that read returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import redis.asyncio as aioredis

from producers.metrics import METRICS
from producers.readers import EndOfStream, FrameReader, ReaderConfig, SourceOpenError, open_reader
from producers.status import State, StatusWriter
from shared.backoff import Backoff
from shared.bus import REDIS_ERRORS
from shared.publisher import FramePublisher, SourceRemoved, encode_frame
from shared.settings import Settings
from shared.source_urls import SourceOptions, parse_source_url, redact_url
from shared.urlpolicy import SourcePolicy

log = logging.getLogger(__name__)

T = TypeVar("T")
Encoded = tuple[bytes, int, int, float]
SKIPPED = "skipped"  # a live frame read but not due for publishing
THREAD_GRACE_S = 2.0  # on top of the reader's own timeouts before a read counts as hung


class CaptureFailed(Exception):
    """The source cannot be captured and retrying will not help (e.g. an unreadable file)."""


class Stopped(Exception):
    """The capture was asked to stop while waiting."""


class Capture:
    """Captures one source into Redis until `stop` is set (or a file played once ends)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: Settings,
        name: str,
        url: str,
        options: SourceOptions | None = None,
        *,
        stop: asyncio.Event | None = None,
        policy: SourcePolicy | None,
    ) -> None:
        """`policy`: the source URL policy the reader checks before opening (the supervisor);
        None opens whatever `url` says (`lookout producer --url`, run by the operator)."""
        opts = options or SourceOptions()
        self.name = name
        self.source = parse_source_url(url)
        self.settings = settings
        self.stop = stop or asyncio.Event()
        self.loop_file = settings.loop_files if opts.loop is None else opts.loop
        self.fps = opts.fps or settings.display_fps
        self.config = ReaderConfig(
            fps=self.fps,
            rtsp_transport=opts.rtsp_transport or settings.rtsp_transport,
            open_timeout=settings.open_timeout,
            read_timeout=settings.stall_timeout,
            max_bytes=settings.max_frame_bytes,
            max_pixels=settings.ingest_pixel_limit,
            policy=policy,
        )
        self.publisher = FramePublisher(
            redis, settings, name, url=url, max_edge=opts.max_edge, quality=opts.jpeg_quality
        )
        self.status = StatusWriter(redis, settings, name, str(self.source.kind), redact_url(url))
        self._executor = self._new_executor()
        self._abandoned: list[ThreadPoolExecutor] = []
        self._last_error = ""

    async def run(self) -> str:
        """Capture until stopped; returns why it ended ("stopped" or "finished").

        Raises CaptureFailed for a source that cannot work (the status says stopped with the
        error). Network sources never fail this way: they reconnect until stopped.
        """
        beat_stop = asyncio.Event()
        beat = asyncio.create_task(self.status.heartbeat(beat_stop))
        try:
            return await self._run()
        except CaptureFailed as exc:
            self._last_error = str(exc)
            raise
        finally:
            beat_stop.set()
            await beat
            await self.status.set_state("stopped", error=self._last_error)
            for executor in [self._executor, *self._abandoned]:
                executor.shutdown(wait=False)

    async def _run(self) -> str:
        backoff = Backoff(self.settings.reconnect_delay, self.settings.max_reconnect_delay)
        quiet_reopen = False
        while not self.stop.is_set():
            if not quiet_reopen:
                state: State = "connecting" if backoff.attempt == 0 else "reconnecting"
                await self.status.set_state(state, attempt=backoff.attempt, error=self._last_error)
            quiet_reopen = False
            try:
                reader = await self._in_thread(
                    open_reader,
                    self.source,
                    self.config,
                    limit=self.config.open_timeout + self.config.read_timeout,
                )
            except SourceOpenError as exc:
                if exc.permanent:
                    raise CaptureFailed(str(exc)) from None
                await self._back_off(backoff, str(exc))
                continue
            except TimeoutError:
                self._drop_abandoned()  # a late reader is closed by _close_late_result
                await self._back_off(backoff, "opening the source timed out")
                continue
            except Stopped:
                break
            try:
                reason = await self._pump(reader, backoff)
            finally:
                self._close_reader(reader)
            if reason == "eof":
                if not self.loop_file:
                    return "finished"
                quiet_reopen = True  # looping a file is not a reconnect
            elif reason != "stopped":
                await self._back_off(backoff, reason)
        return "stopped"

    async def _back_off(self, backoff: Backoff, error: str) -> None:
        self._last_error = error
        delay = backoff.next()
        METRICS.reconnects.labels(self.name).inc()
        log.warning("%s: %s; reconnecting in %.1fs", self.name, error, delay)
        await self.status.set_state("reconnecting", attempt=backoff.attempt, error=error)
        try:
            await asyncio.wait_for(self.stop.wait(), delay)
        except TimeoutError:
            pass

    async def _pump(self, reader: FrameReader, backoff: Backoff) -> str:
        """Read and publish until the stream ends or fails; returns the reason."""
        failures = 0
        last_frame = next_due = time.monotonic()
        read_limit = self.config.read_timeout
        while not self.stop.is_set():
            try:
                result = await self._in_thread(self._read_one, reader, next_due, limit=read_limit)
            except EndOfStream as exc:
                return "eof" if reader.eof else str(exc)
            except Stopped:
                return "stopped"
            except TimeoutError:
                return f"no frame for {read_limit:.0f}s (stalled)"
            except Exception as exc:  # OpenCV raises cv2.error on broken input
                return f"read error: {exc}"
            now = time.monotonic()
            if result is None:
                METRICS.read_failures.labels(self.name).inc()
                failures += 1
                if failures >= self.settings.max_read_failures:
                    return f"{failures} consecutive failed reads"
                if now - last_frame > self.settings.stall_timeout:
                    return f"no frame for {self.settings.stall_timeout:.0f}s (stalled)"
                continue
            failures, last_frame = 0, now
            METRICS.frames_read.labels(self.name).inc()
            if result == SKIPPED:
                METRICS.frames_dropped.labels(self.name, "not_due").inc()
                continue
            assert not isinstance(result, str)
            try:
                await self._publish(result, backoff)
            except SourceRemoved as exc:
                log.info("%s: %s; stopping", self.name, exc)
                self._last_error = "removed through the API"
                self.stop.set()
                return "stopped"
            except REDIS_ERRORS as exc:
                METRICS.frames_dropped.labels(self.name, "redis").inc()
                self.publisher.reregister()  # Redis may come back empty
                return f"Redis unavailable: {exc}"
            next_due = await self._pace(reader, next_due)
        return "stopped"

    async def _publish(self, frame: Encoded, backoff: Backoff) -> None:
        record = await self.publisher.publish_encoded(*frame)
        METRICS.frames_published.labels(self.name).inc()
        self.status.frame(record.ts)
        if self.status.state != "live":
            backoff.reset()
            self._last_error = ""
            await self.status.set_state("live")

    async def _pace(self, reader: FrameReader, next_due: float) -> float:
        """The time the next frame is due; files are also slept to real-time speed."""
        now = time.monotonic()
        if reader.frame_interval <= 0:
            return max(next_due + 1.0 / self.fps, now)
        next_due = max(next_due + reader.frame_interval, now - 1.0)
        if next_due > now:
            try:
                await asyncio.wait_for(self.stop.wait(), next_due - now)
            except TimeoutError:
                pass
        return next_due

    def _read_one(self, reader: FrameReader, due: float) -> Encoded | str | None:
        # Runs in the capture thread: read, stamp, and encode only frames that are due.
        image = reader.read()
        if image is None:
            return None
        ts = time.time()
        if reader.frame_interval <= 0 and time.monotonic() < due:
            return SKIPPED
        height, width = image.shape[:2]
        if reader.last_jpeg is not None and max(height, width) <= self.publisher.max_edge:
            return reader.last_jpeg, int(width), int(height), ts  # already a checked JPEG
        jpeg, width, height = encode_frame(image, self.publisher.max_edge, self.publisher.quality)
        return jpeg, width, height, ts

    async def _in_thread(self, fn: Callable[..., T], *args: Any, limit: float) -> T:
        """Run `fn` in the capture thread; raise Stopped or TimeoutError, abandoning a hung call."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.run_in_executor(self._executor, fn, *args)
        stopper: asyncio.Future[Any] = asyncio.ensure_future(self.stop.wait())
        try:
            done, _ = await asyncio.wait(
                {future, stopper}, timeout=limit + THREAD_GRACE_S, return_when="FIRST_COMPLETED"
            )
        finally:
            stopper.cancel()
        if future in done:
            return future.result()  # type: ignore[no-any-return]
        # The call is still running in C code; leave it that thread and start a fresh one.
        # Whatever it returns late is closed then (an opened reader must not leak).
        future.add_done_callback(_close_late_result)
        self._abandoned.append(self._executor)
        self._executor = self._new_executor()
        if self.stop.is_set():
            raise Stopped
        raise TimeoutError

    def _close_reader(self, reader: FrameReader) -> None:
        # Cut a read still running short where the reader can (a socket), then close in the
        # thread that last read from it, after that read returned.
        reader.interrupt()
        owner = self._abandoned[-1] if self._abandoned else self._executor
        owner.submit(reader.close)
        self._drop_abandoned()

    def _drop_abandoned(self) -> None:
        # Their threads end when the stuck call returns; nothing else is queued on them.
        for executor in self._abandoned:
            executor.shutdown(wait=False)
        self._abandoned.clear()

    def _new_executor(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(1, thread_name_prefix=f"capture-{self.name}")


def _close_late_result(future: asyncio.Future[Any]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    close = getattr(future.result(), "close", None)
    if callable(close):
        close()
