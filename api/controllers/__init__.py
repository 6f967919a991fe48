"""One controller per resource; handlers are thin and call `api.services` or `api.streams`."""

from __future__ import annotations

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import SecurityRequirement

from api.schemas import ErrorOut

SECURED: list[SecurityRequirement] = [{"bearer": []}]
# Media routes also take a `?token=` minted for their source (api/tokens.py).
MEDIA_SECURED: list[SecurityRequirement] = [{"bearer": []}, {"media_token": []}]
# What a route that changes state may also answer (api/boundary.py).
CHANGES = (403, 415)

_TEXT = {
    400: "Host not allowed (ALLOWED_HOSTS), or not applicable (the message says why)",
    401: "Missing or invalid API key or token",
    403: "Not allowed: a view key, a token for another source or scope, or a foreign Origin",
    404: "Unknown source or job",
    409: "Already exists, or captured by a producer",
    413: "Request body too large",
    415: "The body must be sent as Content-Type: application/json",
    422: "Invalid field (the message names it)",
    429: "Too many requests queued (see Retry-After)",
    503: "Not available right now",
}


def errors(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the JSON error responses a route may give (400 for a bad Host on all)."""
    return {
        code: ResponseSpec(ErrorOut, description=_TEXT.get(code, "Error"), generate_examples=False)
        for code in sorted({400, *codes})
    }
