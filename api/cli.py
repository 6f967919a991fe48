"""`lookout api`: serve the HTTP API and the page with uvicorn."""

from __future__ import annotations

import argparse
import logging
import re

from shared.settings import Settings

KEY_IN_QUERY = re.compile(r"([?&](?:key|token)=)[^&\s]*")


class RedactKeys(logging.Filter):
    """Removes `key=...` and `token=...` from access log lines: credentials never reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                KEY_IN_QUERY.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        record.msg = KEY_IN_QUERY.sub(r"\1***", str(record.msg))
        return True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to bind (default SERVER_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (default SERVER_PORT)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Start uvicorn on `api.app:create_app(settings)` until interrupted."""
    import uvicorn

    from api.app import create_app

    host = args.host or settings.server_host
    port = args.port or settings.server_port
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        # Frames above MAX_FRAME_BYTES still arrive, to be answered with a clear error.
        ws_max_size=max(16 * 1024 * 1024, 2 * settings.max_frame_bytes),
        timeout_graceful_shutdown=3,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)  # configures logging: add the filter after it
    for name in ("uvicorn.access", "uvicorn.error", "litestar"):
        logging.getLogger(name).addFilter(RedactKeys())
    logging.getLogger("api").info("serving on http://%s:%d", host, port)
    server.run()
    return 0
