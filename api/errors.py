"""Every error leaves the API as JSON: `{"error": message, "status": code, "field": name?}`.

Validation errors become 422 with the offending field in the message, so a client sees
which field to fix; unexpected exceptions become a 500 without internals.
"""

from __future__ import annotations

import logging
import re
import time
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
    HTTP_501_NOT_IMPLEMENTED,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.cluster import CLUSTER_ERRORS

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


# What a route answers 503 for (OSError is left to the 500 handler: it is not always Redis).
REDIS_FAILURES: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    *CLUSTER_ERRORS,
)
RETRY_AFTER_S = 2
OUTAGE_QUIET_S = 30.0  # errors closer together than this are one outage: logged once


class RedisOutageLog:
    """Logs the first Redis error of an outage and counts the rest, instead of a traceback
    per request. An outage ends when no error was seen for OUTAGE_QUIET_S."""

    def __init__(self) -> None:
        self.last_error = -OUTAGE_QUIET_S
        self.errors = 0

    def record(self, request: Request[Any, Any, Any], exc: Exception) -> None:
        now = time.monotonic()
        if now - self.last_error > OUTAGE_QUIET_S:
            log.error(
                "Redis unavailable (%s on %s %s); answering 503 until it is back",
                exc.__class__.__name__,
                request.method,
                request.url.path,
            )
            self.errors = 0
        self.last_error = now
        self.errors += 1


OUTAGES = RedisOutageLog()


def redis_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """503 with Retry-After when Redis is unreachable or frozen; one log line per outage."""
    OUTAGES.record(request, exc)
    status = HTTP_503_SERVICE_UNAVAILABLE
    return Response(
        _body("Redis unavailable; retry shortly", status),
        status_code=status,
        media_type=MediaType.JSON,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def cluster_unsupported_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """501: the route needs arq's job queue, which a Redis Cluster cannot run (the message
    says so and what to use instead)."""
    status = HTTP_501_NOT_IMPLEMENTED
    return Response(_body(str(exc), status), status_code=status, media_type=MediaType.JSON)


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """500 with a short message; the traceback goes to the log, not to the client."""
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    status = HTTP_500_INTERNAL_SERVER_ERROR
    return Response(_body("internal error", status), status_code=status, media_type=MediaType.JSON)
