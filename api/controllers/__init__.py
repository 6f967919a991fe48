"""One controller per resource; handlers are thin and call `api.services` or `api.streams`."""

from __future__ import annotations

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import SecurityRequirement

from api.schemas import ErrorOut

SECURED: list[SecurityRequirement] = [{"bearer": []}, {"query_key": []}]


def errors(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the JSON error responses a route may give."""
    text = {
        400: "Not applicable (the message says why)",
        401: "Missing or invalid API key",
        403: "The API key may view but not control",
        404: "Unknown source or job",
        409: "Already exists",
        413: "Request body too large",
        422: "Invalid field (the message names it)",
        429: "Too many requests queued (see Retry-After)",
        503: "Not available right now",
    }
    return {
        code: ResponseSpec(ErrorOut, description=text.get(code, "Error"), generate_examples=False)
        for code in codes
    }
