"""LOG_FORMAT=json: every log line of a real process, uvicorn's included, is one JSON object."""

from __future__ import annotations

import json

import httpx

from tests.helpers import LookoutProcess, free_port, wait_for_port


def test_api_logs_are_json_lines_with_uvicorn_access_lines(test_env: dict[str, str]) -> None:
    port = free_port()
    env = {**test_env, "SERVER_PORT": str(port), "LOG_FORMAT": "json"}
    api = LookoutProcess(["api"], env, "api-json")
    try:
        wait_for_port(port, timeout=30)
        health = httpx.get(f"http://127.0.0.1:{port}/health?api_key=hunter2", timeout=10)
        assert health.status_code == 200
    finally:
        api.stop()
    lines = [line for line in api.log().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    assert all(set(e) >= {"ts", "level", "role", "logger", "message"} for e in entries)
    assert all(e["role"] == "api" and e["ts"].endswith("+00:00") for e in entries)
    assert any(e["logger"] == "api" and "serving on" in e["message"] for e in entries)
    access = [e for e in entries if e["logger"] == "uvicorn.access"]
    assert any("GET /health" in e["message"] and "200" in e["message"] for e in access), lines
    assert "hunter2" not in api.log()  # keys in URLs stay masked in JSON too


def test_text_is_the_default(test_env: dict[str, str]) -> None:
    port = free_port()
    api = LookoutProcess(["api"], {**test_env, "SERVER_PORT": str(port)}, "api-text")
    try:
        wait_for_port(port, timeout=30)
    finally:
        api.stop()
    assert " INFO api: serving on http://127.0.0.1:" in api.log()
    assert not api.log().lstrip().startswith("{")
