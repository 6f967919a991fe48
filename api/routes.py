"""Every URL path the API serves, in one place (controllers and docs refer to these)."""

from __future__ import annotations

SOURCES = "/api/sources"
SOURCE = "/api/sources/{name:str}"
INSTRUCTION = "/api/sources/{name:str}/instruction"
HISTORY = "/api/sources/{name:str}/history"
EVENTS = "/api/sources/{name:str}/events"
MJPEG = "/api/sources/{name:str}/mjpeg"
FRAME = "/api/sources/{name:str}/frame"
AUDIO = "/api/sources/{name:str}/audio"
INGEST = "/api/sources/{name:str}/ingest"
ASK = "/api/sources/{name:str}/ask"
JOB = "/api/jobs/{job_id:str}"
TOKENS = "/api/tokens"
STATUS = "/api/status"
MODELS = "/api/models"
SOURCE_MODEL = "/api/sources/{name:str}/model"
WORKER_MODEL = "/api/workers/{worker:str}/model"
CONFIG = "/api/config"
HEALTH = "/health"
METRICS = "/metrics"
PAGE = "/"
STATIC = "/static"
SCHEMA = "/schema"


def job_link(job_id: str) -> str:
    """The URL a client polls for the result of job `job_id`."""
    return f"/api/jobs/{job_id}"
