"""A streaming response that writes straight to the ASGI `send`, for the live streams.

Litestar's `Stream` pulls one chunk at a time from an async iterator inside an anyio task
group; at thousands of viewers that machinery was a large share of the cost of a message.
A `LiveStream` is still a Litestar response (the handler, its guards, auth and OpenAPI
entry stay as they are), but its body is a `LiveBody`: a coroutine that gets `send` and
writes whatever it has pending in one `http.response.body` event, while this module
watches for the client's disconnect and cancels it.

The response start goes through every middleware (metrics, error handling see it); the body
events of a server wrapped in `expose_send` go to the server's own `send`, skipping three
wrapper coroutines per write that only watch for the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from litestar.enums import ScopeType
from litestar.response import Stream
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import ASGIApp, Receive, Scope, Send
from litestar.utils.helpers import get_enum_string_value

if TYPE_CHECKING:
    from litestar import Litestar, Request

Write = Callable[[bytes], Awaitable[None]]
SERVER_SEND = "lookout.server_send"  # scope key of the server's own send


def expose_send(app: ASGIApp) -> ASGIApp:
    """`app`, with the server's `send` in each HTTP scope for live stream bodies."""

    async def exposed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            scope[SERVER_SEND] = send  # type: ignore[literal-required]
        await app(scope, receive, send)

    return exposed


class LiveBody:
    """The body of a live stream: `run(write)` writes until it returns or is cancelled."""

    def __init__(self, run: Callable[[Write], Awaitable[None]]) -> None:
        self.run = run

    def __aiter__(self) -> AsyncIterator[bytes]:  # Litestar checks for an async iterable
        raise TypeError("a LiveBody is written by LiveStream, not iterated")


class LiveStream(Stream):
    """A Litestar `Stream` whose body writes to `send` itself (see the module docstring)."""

    def __init__(self, body: LiveBody, **kwargs: Any) -> None:
        super().__init__(body, **kwargs)

    def to_asgi_response(
        self,
        app: Litestar | None,
        request: Request[Any, Any, Any],
        *,
        cookies: Iterable[Any] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: Any = None,
        status_code: int | None = None,
        **_: Any,
    ) -> ASGIResponse:
        merged = {**headers, **self.headers} if headers is not None else self.headers
        all_cookies = self.cookies if cookies is None else itertools.chain(self.cookies, cookies)
        return LiveASGIResponse(
            background=self.background,
            cookies=all_cookies,
            encoding=self.encoding,
            headers=merged,
            is_head_response=is_head_response,
            iterator=self.iterator,  # type: ignore[arg-type]
            media_type=get_enum_string_value(self.media_type or media_type),
            status_code=self.status_code or status_code,
        )


class LiveASGIResponse(ASGIStreamingResponse):
    __slots__ = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.start_response(send=send)
        if self.is_head_response:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            body_send = cast(Send, scope.get(SERVER_SEND, send))
            await self.send_body(send=body_send, receive=receive)
        await self.after_response()

    async def send_body(self, send: Send, receive: Receive) -> None:
        body = self.iterator
        assert isinstance(body, LiveBody)

        async def write(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        writer = asyncio.ensure_future(body.run(write))
        listener = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((writer, listener), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone = listener.done() and not listener.cancelled()
            for task in (writer, listener):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            try:
                await writer
            except asyncio.CancelledError:
                if not gone:
                    raise  # cancelled from outside (shutdown), not by the client leaving
        if not gone:  # a finite body ended: close the response properly
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
