"""`lookout api`: serve the HTTP API and the page with uvicorn.

Safe by default (api/boundary.py): with no API keys it says loudly that the API is open, and
it refuses a non-loopback address unless ALLOW_OPEN=true.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from shared.logs import setup_logging
from shared.settings import Settings, SettingsError

log = logging.getLogger("api")

OPEN_BANNER = (
    "THE API IS OPEN: no API keys are configured (API_KEYS, API_KEYS_FILE). Anyone who can "
    "reach http://%s:%d may watch every source, add and remove sources and send frames."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to bind (default SERVER_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (default SERVER_PORT)")
    parser.add_argument(
        "--workers",
        type=int,
        help="processes sharing the port, one per core is typical (default API_WORKERS)",
    )
    # Set by the supervisor for each of its workers: bind with SO_REUSEPORT.
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)


def open_refusal(host: str) -> str:
    """Why the API will not listen on `host` without keys."""
    return (
        f"lookout api: refusing to listen on {host} with no API keys: anyone on the network could "
        "control Lookout. Set API_KEYS (or API_KEYS_FILE), or listen on loopback "
        "(SERVER_HOST=127.0.0.1), or set ALLOW_OPEN=true to accept an open API."
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Start uvicorn on `api.app:create_app(settings)` until interrupted."""
    import uvicorn

    from api.app import create_app
    from api.auth import load_keys
    from api.boundary import is_loopback
    from api.gctune import tune_gc
    from api.live import expose_send
    from api.redact import RedactKeys
    from api.workers import LISTEN_BACKLOG, reuse_port_socket

    host = args.host or settings.server_host
    port = args.port or settings.server_port
    # The bind address is one of the default ALLOWED_HOSTS.
    settings = dataclasses.replace(settings, server_host=host, server_port=port)
    try:
        open_api = not load_keys(settings)
    except SettingsError as exc:
        print(f"lookout api: {exc}", file=sys.stderr)
        return 2
    if open_api and not is_loopback(host) and not settings.allow_open:
        print(open_refusal(host), file=sys.stderr)
        return 2
    workers = args.workers or settings.api_workers
    if workers < 1:
        print("lookout api: --workers must be at least 1", file=sys.stderr)
        return 2
    if workers > 1:
        return supervise(args, host, port, workers)
    app = create_app(settings)
    config = uvicorn.Config(
        expose_send(app),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        # Frames above MAX_FRAME_BYTES still arrive, to be answered with a clear error.
        ws_max_size=max(16 * 1024 * 1024, 2 * settings.max_frame_bytes),
        timeout_graceful_shutdown=3,
        backlog=LISTEN_BACKLOG,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)  # configures logging: add the filter after it
    setup_logging(settings.log_level, "api", settings.log_format)  # Litestar replaced ours
    for name in ("uvicorn.access", "uvicorn.error", "litestar"):
        logging.getLogger(name).addFilter(RedactKeys())
    if open_api:
        log.warning(OPEN_BANNER, host, port)
    log.info("serving on http://%s:%d", host, port)
    sockets = [reuse_port_socket(host, port)] if args.reuse_port else None
    tune_gc(app.state.lookout.metrics)
    server.run(sockets=sockets)
    return 0


def supervise(args: argparse.Namespace, host: str, port: int, workers: int) -> int:
    """Run `workers` API processes on (host, port) until interrupted."""
    from api.workers import Supervisor, port_in_use, worker_command

    if port_in_use(host, port):
        print(f"lookout api: {host}:{port} is already in use", file=sys.stderr)
        return 2
    log.info("serving on http://%s:%d with %d worker processes", host, port, workers)
    return Supervisor(worker_command(args.env_file, host, port), workers).run()
