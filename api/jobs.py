"""One-off questions: queue one about a source, read its job back (client: `shared.asks`)."""

from __future__ import annotations

import msgspec

from api.errors import NotFound, TooManyRequests
from api.schemas import JobOut
from api.services import Service, bounded_text
from shared import asks


class JobService(Service):
    """Questions and their jobs, for one request."""

    async def ask(self, name: str, question: str) -> str:
        """Queue a one-off question about `name`; returns the job id (429 when full)."""
        await self.require(name)
        text = bounded_text("question", question, self.settings.instruction_max_chars)
        try:
            return str(await asks.enqueue_ask(self.redis, self.settings, name, text))
        except asks.AskQueueFull as exc:
            retry = max(1, int(round(exc.retry_after)))
            raise TooManyRequests(
                detail=f"too many questions queued; retry in {retry} s",
                headers={"Retry-After": str(retry)},
            ) from None

    async def job(self, job_id: str) -> JobOut:
        result = await asks.ask_status(self.redis, self.settings, job_id)
        if result is None:
            raise NotFound(detail=f"unknown job {job_id!r}")
        fields = msgspec.structs.asdict(result) if isinstance(result, msgspec.Struct) else result
        return msgspec.convert(fields, JobOut)
