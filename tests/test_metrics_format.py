"""/metrics of a real API process: one Content-Type, exactly prometheus_client's, and a body
that Prometheus' own parser (prometheus_client.parser) reads."""

from __future__ import annotations

import httpx
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import LookoutProcess, free_port, wait_for_port


def content_type_parameters(value: str) -> list[str]:
    return [part.split("=", 1)[0].strip().lower() for part in value.split(";")[1:]]


def test_metrics_have_one_correct_content_type_and_parse(test_env: dict[str, str]) -> None:
    port = free_port()
    api = LookoutProcess(["api"], {**test_env, "SERVER_PORT": str(port)}, "api-metrics")
    try:
        wait_for_port(port, timeout=30)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
        response = httpx.get(f"{base}/metrics", timeout=10)
    finally:
        api.stop()
    assert response.status_code == 200
    types = response.headers.get_list("content-type")
    assert types == [CONTENT_TYPE_LATEST], types
    params = content_type_parameters(types[0])
    assert len(params) == len(set(params)) and "charset" in params  # no duplicate parameter
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    latency = families["lookout_api_request_seconds"]
    assert latency.type == "histogram"
    health = [s for s in latency.samples if s.labels.get("route") == "/health"]
    assert any(s.name.endswith("_count") and s.value >= 1 for s in health), health
    assert families["lookout_api_viewers"].type == "gauge"
