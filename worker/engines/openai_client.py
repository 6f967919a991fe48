"""An async client for one OpenAI-compatible server: `/models` and streamed `/chat/completions`.

Requests that fail before the first streamed piece (429, 5xx, connection refused or lost,
timeouts) are tried again OPENAI_RETRIES times in all, with exponential backoff (a server's
Retry-After is honoured up to MAX_RETRY_AFTER). Once text has streamed, a broken stream is an
error: the text already published cannot be taken back, so the cycle fails and the next one
starts afresh. The API key is only ever put in the request headers: it is not in this
object's repr, in errors or in logs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from shared.backoff import Backoff
from shared.source_urls import redact_url
from worker.engines.base import EngineError
from worker.engines.openai_sse import RETRYABLE, Delta, deltas, describe, error_message

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 30.0  # seconds; a longer Retry-After is cut to this
CONNECT_TIMEOUT = 10.0


class ServerAnswer(EngineError):
    """The server answered with an error status (the message says what it means)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class OpenAIClient:
    """Talks to `base_url` (e.g. `http://vllm:8000/v1`) with an optional bearer key."""

    def __init__(self, base_url: str, api_key: str, timeout: float, retries: int) -> None:
        self.base_url = base_url.rstrip("/")
        self.shown_url = redact_url(self.base_url)  # what logs and errors name
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._retries = retries
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
            follow_redirects=False,  # a redirect would carry the key elsewhere
        )

    def __repr__(self) -> str:
        return f"OpenAIClient({self.shown_url!r})"

    async def close(self) -> None:
        await self._client.aclose()

    async def models(self) -> list[str] | None:
        """The model ids `GET /models` lists; None when the server has no such route."""
        url = f"{self.base_url}/models"
        backoff = Backoff(0.5, 8.0)
        for attempt in range(1, self._retries + 1):
            try:
                response = await self._client.get(url, headers=self._headers)
            except httpx.TransportError as exc:
                if attempt == self._retries:
                    raise EngineError(f"cannot reach {self.shown_url}: {_why(exc)}") from None
                await asyncio.sleep(backoff.next())
                continue
            if response.status_code in (404, 405, 501):
                return None  # some servers (and proxies) have no /models: not an error
            if response.status_code in RETRYABLE and attempt < self._retries:
                await asyncio.sleep(_delay(response, backoff))
                continue
            if response.status_code != 200:
                text = response.text
                raise ServerAnswer(
                    describe(response.status_code, text, "", self.shown_url), response.status_code
                )
            return _model_ids(response)
        return None  # not reached: the last attempt returns or raises

    async def stream_chat(self, body: dict[str, Any]) -> AsyncGenerator[Delta, None]:
        """The deltas of one streamed chat completion (`body` gets `stream: true`)."""
        url = f"{self.base_url}/chat/completions"
        model = str(body.get("model", ""))
        backoff = Backoff(0.5, 8.0)
        streamed = False
        for attempt in range(1, self._retries + 1):
            try:
                async with self._client.stream(
                    "POST", url, json={**body, "stream": True}, headers=self._headers
                ) as response:
                    if response.status_code != 200:
                        text = (await response.aread()).decode("utf-8", "replace")
                        if response.status_code in RETRYABLE and attempt < self._retries:
                            delay = _delay(response, backoff)
                            log.warning(
                                "%s answered %d (%s); trying again in %.1f s",
                                self.shown_url,
                                response.status_code,
                                error_message(text),
                                delay,
                            )
                            await asyncio.sleep(delay)
                            continue
                        message = describe(response.status_code, text, model, self.shown_url)
                        raise ServerAnswer(message, response.status_code)
                    async for delta in deltas(response.aiter_lines()):
                        streamed = True
                        yield delta
                    return
            except httpx.TransportError as exc:
                if streamed:
                    raise EngineError(
                        f"the stream from {self.shown_url} broke mid-answer: {_why(exc)}"
                    ) from None
                if attempt == self._retries:
                    raise EngineError(
                        f"cannot reach {self.shown_url} after {attempt} tries: {_why(exc)}"
                    ) from None
                delay = backoff.next()
                log.warning("%s: %s; trying again in %.1f s", self.shown_url, _why(exc), delay)
                await asyncio.sleep(delay)


def _why(exc: httpx.TransportError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _delay(response: httpx.Response, backoff: Backoff) -> float:
    """The server's Retry-After (seconds, capped) if it sent one, else the next backoff."""
    delay = backoff.next()
    try:
        asked = float(response.headers.get("retry-after", ""))
    except ValueError:
        return delay
    return min(max(asked, 0.0), MAX_RETRY_AFTER)


def _model_ids(response: httpx.Response) -> list[str]:
    try:
        data = response.json().get("data", [])
        return [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]
    except (ValueError, AttributeError) as exc:
        raise EngineError(f"GET /models did not answer a model list: {exc}") from None
