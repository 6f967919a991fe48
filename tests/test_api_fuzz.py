"""Fuzzing the API from its own schema (issue 12): schemathesis reads /schema/openapi.json from
a real `lookout api` process (real uvicorn, real Redis) and sends generated requests, valid
and invalid, to every operation.

Each response must be no 5xx, a status the schema documents for that operation, the documented
content type and a body of the documented shape: the errors are `ErrorOut` (api/errors.py,
api/schemas.py) wherever they come from. The endless streams (events, MJPEG, audio) are left
out: a generated request would never finish reading them; tests/test_api.py covers them.

Each operation gets EXAMPLES schema-valid and EXAMPLES schema-invalid requests through
Hypothesis directly (`operation.as_strategy`): schemathesis's lazy pytest fixture mode reads a
pytest internal (`Function._nodeid`) that pytest 9 no longer has.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.keys import Keys
from shared.sources import SourceRegistry
from tests.helpers import RedisServer
from tests.test_api_support import ApiServer, add_frame, add_history, make_jpeg

KEY = "fuzz-control-key"
PREFIX = f"fuzz{os.getpid()}"
ENDLESS = ("streamEvents", "streamMjpeg", "streamAudio")
# Bounded so the whole run stays well under a minute on two cores.
EXAMPLES = 50
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


async def _seed(url: str) -> None:
    """A source with a frame and a history entry, so reads of `cam1` succeed too."""
    redis = aioredis.Redis.from_url(url)
    keys = Keys(PREFIX)
    await SourceRegistry(redis, keys, "describe").register("cam1", "clip.mp4")
    await add_frame(redis, keys, "cam1", 1, make_jpeg(1))
    await add_history(redis, keys, "cam1", "A car passes.")
    await redis.aclose()


@pytest.fixture(scope="module")
def fuzzed_api(redis_server: RedisServer) -> Iterator[ApiServer]:
    env = {
        "REDIS_URL": redis_server.url,
        "KEY_PREFIX": PREFIX,
        "API_KEYS": f"{KEY}:control",
        "ASK_QUEUE_MAX": "5",
        "LOG_LEVEL": "INFO",
    }
    asyncio.run(_seed(redis_server.url))
    api = ApiServer(env, "api-fuzz")
    yield api
    api.stop()


def fuzz(operation: Any, mode: GenerationMode) -> None:
    """Up to EXAMPLES generated requests to `operation`; raises on the first bad response."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, checks=CHECKS)

    run()


def test_every_response_is_documented_and_no_request_breaks_the_api(
    fuzzed_api: ApiServer,
) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed_api.url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    fuzzed = [op for op in operations if op.definition.raw.get("operationId") not in ENDLESS]
    assert len(fuzzed) >= 12, [op.label for op in operations]
    failures: list[str] = []
    for operation in fuzzed:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz(operation, mode)
            except Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE and not operation.definition.raw.get(
                    "parameters"
                ), operation.label  # nothing to get wrong in a request without inputs
            except (Exception, FailureGroup) as exc:  # report every operation's failures
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)


def test_every_error_response_in_the_schema_is_lookouts_error_body(fuzzed_api: ApiServer) -> None:
    spec = httpx.get(f"{fuzzed_api.url}/schema/openapi.json", timeout=10).json()
    documented: dict[str, set[str]] = {}
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            for code, response in operation.get("responses", {}).items():
                if int(code) < 400:
                    continue
                ref = str(response["content"]["application/json"]["schema"].get("$ref", ""))
                documented.setdefault(ref.rsplit("/", 1)[-1], set()).add(f"{method} {path} {code}")
    # Litestar's own error shape ({"status_code", "detail"}) must appear nowhere.
    assert set(documented) <= {"ErrorOut", "HealthOut"}, documented
    assert documented["HealthOut"] == {"get /health 503"}
    assert "post /api/sources 415" in documented["ErrorOut"]
    assert "put /api/sources/{name}/instruction 403" in documented["ErrorOut"]
