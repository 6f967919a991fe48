"""Every error leaves the API as JSON: `{"error": message, "status": code, "field": name?}`.

Validation errors become 422 with the offending field in the message, so a client sees
which field to fix; unexpected exceptions become a 500 without internals.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import (
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

log = logging.getLogger(__name__)

_NAMED_FIELD = re.compile(r"field `([^`]+)`")


class FieldError(HTTPException):
    """A request field with a bad value (422); `field` names it."""

    status_code = HTTP_422_UNPROCESSABLE_ENTITY

    def __init__(self, field: str, message: str) -> None:
        super().__init__(detail=f"{field}: {message}", extra={"field": field})


class UnknownSourceError(HTTPException):
    status_code = HTTP_404_NOT_FOUND

    def __init__(self, name: str) -> None:
        super().__init__(detail=f"unknown source {name!r}")


class ServiceUnavailable(HTTPException):
    status_code = HTTP_503_SERVICE_UNAVAILABLE


class Conflict(HTTPException):
    status_code = HTTP_409_CONFLICT


class TooManyRequests(HTTPException):
    status_code = HTTP_429_TOO_MANY_REQUESTS


class NotFound(HTTPException):
    status_code = HTTP_404_NOT_FOUND


class UnsupportedMediaType(HTTPException):
    status_code = HTTP_415_UNSUPPORTED_MEDIA_TYPE


def _body(message: str, status: int, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message, "status": status}
    if field:
        body["field"] = field
    return body


def _validation_message(exc: ValidationException) -> tuple[str, str | None]:
    """Turn Litestar's list of per-key errors into one message that names the field."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    parts: list[str] = []
    field: str | None = None
    for item in extra:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid value"))
        named = _NAMED_FIELD.search(message)
        key = named.group(1) if named else item.get("key")
        if key == "data":
            key = None  # the body as a whole; msgspec's message says which field
        parts.append(f"{key}: {message}" if key and not named else message)
        field = field or (str(key) if key else None)
    return ("; ".join(parts) or exc.detail or "invalid request"), field


def http_exception_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """JSON body for every HTTPException; validation errors become 422 naming the field."""
    status = exc.status_code
    field: str | None = None
    message = exc.detail
    if isinstance(exc, ValidationException):
        status = HTTP_422_UNPROCESSABLE_ENTITY
        message, field = _validation_message(exc)
    elif isinstance(exc.extra, dict):
        field = exc.extra.get("field")
    return Response(
        _body(message, status, field),
        status_code=status,
        media_type=MediaType.JSON,
        headers=exc.headers,
    )


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """500 with a short message; the traceback goes to the log, not to the client."""
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    status = HTTP_500_INTERNAL_SERVER_ERROR
    return Response(_body("internal error", status), status_code=status, media_type=MediaType.JSON)
