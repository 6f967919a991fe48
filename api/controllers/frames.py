"""Past frames of a source by sequence number (the frames a commentary described)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get
from litestar.params import Parameter

from api import routes
from api.auth import require_scope
from api.controllers import MEDIA_SECURED, errors
from api.state import AppState
from api.tokens import MEDIA
from api.window_frames import WindowFrames

CaptureTs = Annotated[
    float | None,
    Parameter(
        required=False,
        description="The frame's capture time (epoch seconds, from frame_ts): a fast lookup",
    ),
]


class WindowFramesController(Controller):
    tags = ["streams"]
    guards = [require_scope]
    security = MEDIA_SECURED

    @get(
        routes.FRAME_BY_SEQ,
        name="frames:by-seq",
        operation_id="getFrameBySeq",
        opt={"token": MEDIA},
        media_type="image/jpeg",
        responses=errors(401, 403, 404, 422),
    )
    async def frame_by_seq(
        self, name: str, seq: int, lookout: AppState, ts: CaptureTs = None
    ) -> Response[bytes]:
        """The JPEG of frame `seq`, while the frames stream still holds it (404 after)."""
        frame = await WindowFrames(lookout).frame(name, seq, ts)
        headers = {"Cache-Control": "private, max-age=60", "X-Frame-Ts": f"{frame.ts:.3f}"}
        return Response(frame.jpeg, media_type="image/jpeg", headers=headers)
