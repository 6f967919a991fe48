"""ENGINE=openai against a server that rate-limits: 429s are waited out, then named.

A stand-in rate-limiting gateway (tests/rate_limit_gateway.py, a real HTTP process) sits in
front of the real `transformers serve` and refuses the first chat requests with 429, as
hosted APIs and gateways in front of vLLM do. What is checked is what the engine does with
that: how often it asks again, how long it waits (Retry-After, else its own backoff), and
what it says when the server never lets it through.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.openai_server import ServeProcess
from tests.rate_limit_gateway import RateLimitGateway
from tests.test_openai_engine import ask, engine_settings, loaded_engine
from worker.engines.base import Chunk, EngineError

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def gateway_for(
    openai_server: ServeProcess, tmp_path: Path
) -> Iterator[Callable[..., RateLimitGateway]]:
    started: list[RateLimitGateway] = []

    def start(refuse: int, retry_after: str = "-") -> RateLimitGateway:
        log = tmp_path / f"gateway-{len(started)}.jsonl"
        started.append(RateLimitGateway(openai_server.base_url, log, refuse, retry_after))
        return started[-1]

    yield start
    for gateway in started:
        gateway.stop()


def answer_through(
    server: ServeProcess, gateway: RateLimitGateway, tokens: int, **env: str
) -> list[Chunk]:
    """One commentary of `tokens` tokens by an openai engine that talks to `gateway`."""
    settings = engine_settings(server, OPENAI_BASE_URL=gateway.base_url, **env)
    with loaded_engine(settings) as (engine, _):
        return list(engine.stream(ask(tokens), threading.Event()))


def test_a_429_with_retry_after_is_waited_out_then_answered(
    openai_server: ServeProcess, gateway_for: Callable[..., RateLimitGateway]
) -> None:
    gateway = gateway_for(2, "2")
    chunks = answer_through(openai_server, gateway, 8)
    assert sum(c.tokens for c in chunks) == 8  # the answer came through in the end
    tries = gateway.requests()
    assert [t["status"] for t in tries] == [429, 429, 200]
    gaps = [b["t"] - a["t"] for a, b in zip(tries, tries[1:], strict=False)]
    # Retry-After: 2 was honoured, not the engine's own backoff (0.5 s, then 1 s).
    assert all(gap >= 1.9 for gap in gaps), gaps


def test_without_retry_after_the_engine_backs_off_on_its_own(
    openai_server: ServeProcess, gateway_for: Callable[..., RateLimitGateway]
) -> None:
    gateway = gateway_for(2)
    chunks = answer_through(openai_server, gateway, 4)
    assert sum(c.tokens for c in chunks) == 4
    tries = gateway.requests()
    assert [t["status"] for t in tries] == [429, 429, 200]
    first_gap, second_gap = (b["t"] - a["t"] for a, b in zip(tries, tries[1:], strict=False))
    assert first_gap >= 0.45 and second_gap >= 0.95, (first_gap, second_gap)  # 0.5 s doubling


def test_a_server_that_always_refuses_fails_after_openai_retries_tries(
    openai_server: ServeProcess, gateway_for: Callable[..., RateLimitGateway]
) -> None:
    gateway = gateway_for(1000, "0")
    with pytest.raises(EngineError, match="429") as raised:
        answer_through(openai_server, gateway, 4, OPENAI_RETRIES="3")
    assert [t["status"] for t in gateway.requests()] == [429, 429, 429]
    message = str(raised.value)
    assert "OPENAI_RETRIES" in message and "Rate limit reached" in message, message
