"""Status of everything, the page's configuration, metrics and health."""

from __future__ import annotations

import asyncio

from litestar import Controller, MediaType, Response, get
from litestar.openapi.datastructures import ResponseSpec

from api import routes
from api.auth import require_scope
from api.controllers import SECURED, errors
from api.overview import StatusService
from api.schemas import ConfigOut, HealthOut, StatusOut
from api.state import AppState
from shared.bus import REDIS_ERRORS
from shared.messages import PCM_RATE

HEALTH_TIMEOUT_S = 0.8  # /health answers within 1 s whatever Redis does


class StatusController(Controller):
    tags = ["status"]
    guards = [require_scope]
    security = SECURED

    @get(routes.STATUS, name="status:all", operation_id="getStatus", responses=errors(401))
    async def status(self, statuses: StatusService) -> StatusOut:
        """Per source: producer state and fps, worker and engine, speech, last commentary
        time, viewers on this replica; and every live worker."""
        return await statuses.status()

    @get(
        routes.METRICS,
        name="status:metrics",
        operation_id="getMetrics",
        media_type="text/plain",
        responses=errors(401),
    )
    async def metrics(self, lookout: AppState) -> Response[bytes]:
        """Prometheus metrics of this replica."""
        body, content_type = lookout.metrics.exposition()
        # Not media_type=: Litestar would add a second charset, which Prometheus 3 refuses.
        return Response(body, headers={"Content-Type": content_type})


class PublicController(Controller):
    """Routes open without a key: health and what the page needs before it has one."""

    tags = ["public"]

    @get(
        routes.HEALTH,
        name="public:health",
        operation_id="getHealth",
        opt={"any_host": True},  # probes address the replica by IP; health tells nothing
        responses={
            **errors(),
            503: ResponseSpec(HealthOut, description="Redis unreachable", generate_examples=False),
        },
    )
    async def health(self, lookout: AppState) -> Response[HealthOut]:
        """200 when this replica reaches Redis within HEALTH_TIMEOUT_S, else 503."""
        try:  # a frozen Redis must not hold a probe past its own timeout
            ok = bool(await asyncio.wait_for(lookout.redis.ping(), HEALTH_TIMEOUT_S))
        except (*REDIS_ERRORS, TimeoutError):
            ok = False
        body = HealthOut("ok" if ok else "redis unavailable", ok)
        return Response(body, status_code=200 if ok else 503, media_type=MediaType.JSON)

    @get(routes.CONFIG, name="public:config", operation_id="getConfig", responses=errors())
    async def config(self, lookout: AppState) -> ConfigOut:
        """Settings the page needs (video delay, whether a key is required, limits)."""
        s = lookout.settings
        return ConfigOut(
            stream_delay_init=s.stream_delay_init,
            display_fps=s.display_fps,
            auth_required=lookout.keyring.enabled,
            instruction_max_chars=s.instruction_max_chars,
            max_frame_bytes=s.max_frame_bytes,
            sample_rate=PCM_RATE,
        )

    @get(
        routes.PAGE,
        name="public:page",
        operation_id="getPage",
        media_type=MediaType.HTML,
        include_in_schema=False,
    )
    async def page(self, lookout: AppState) -> Response[bytes]:
        """The viewer page."""
        return Response(lookout.page_html, media_type=MediaType.HTML)
