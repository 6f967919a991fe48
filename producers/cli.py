"""`lookout producer`: capture one source (`--source NAME --url URL`) or supervise many.

Exit codes: 0 stopped by a signal or a file played once (`--once`) ended; 1 the source cannot
be captured (e.g. an unreadable file); 2 a bad name or URL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from shared.settings import Settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", metavar="NAME", help="source name (letters, digits, - and _)")
    parser.add_argument(
        "--url",
        metavar="URL",
        help="video file path, rtsp://..., http://... (MJPEG), /dev/videoN or a device index",
    )
    parser.add_argument(
        "--once", action="store_true", help="play a video file once and exit (no looping)"
    )
    parser.add_argument(
        "--supervise",
        action="store_true",
        help="run as a supervisor: capture the sources started through the API",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the arguments, then run the capture or the supervisor until stopped."""
    if args.supervise:
        if args.source or args.url:
            print("lookout producer: --supervise takes no --source/--url", file=sys.stderr)
            return 2
        if settings.redis_cluster:
            from shared.cluster import ClusterUnsupported

            print(f"lookout producer: {ClusterUnsupported('--supervise')}", file=sys.stderr)
            return 2
        return _with_metrics(settings, lambda: asyncio.run(_supervise(settings)))
    if not args.source or not args.url:
        print("lookout producer: give --source NAME and --url URL, or --supervise", file=sys.stderr)
        return 2
    from shared.keys import SourceNameError, validate_source_name
    from shared.source_urls import SourceUrlError, parse_source_url

    try:
        validate_source_name(args.source)
        parse_source_url(args.url)
    except (SourceNameError, SourceUrlError) as exc:
        print(f"lookout producer: {exc}", file=sys.stderr)
        return 2
    source, url = args.source, args.url
    return _with_metrics(
        settings, lambda: asyncio.run(_capture(settings, source, url, once=args.once))
    )


def _with_metrics(settings: Settings, main: Callable[[], int]) -> int:
    """Run `main` with /metrics served on PRODUCER_METRICS_PORT (when set); a taken port
    stops the producer before anything starts (exit 2)."""
    if not settings.producer_metrics_port:
        return main()
    from producers.metrics import serve

    where = f"PRODUCER_METRICS_PORT {settings.producer_metrics_port} on {settings.server_host}"
    try:
        server = serve(settings)
    except OSError as exc:
        log.error("%s: %s", where, exc)
        return 2
    log.info("metrics on http://%s:%d/metrics", settings.server_host, server.port)
    try:
        return main()
    finally:
        server.close()


async def _capture(settings: Settings, name: str, url: str, *, once: bool) -> int:
    from producers.capture import Capture, CaptureFailed
    from shared.bus import connect_redis
    from shared.source_urls import SourceOptions

    redis = connect_redis(settings.redis_url, cluster=settings.redis_cluster)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    options = SourceOptions(loop=False) if once else None
    # The operator's own command line: no source policy (it guards URLs from API clients).
    capture = Capture(redis, settings, name, url, options, stop=stop, policy=None)
    try:
        ended = await capture.run()
    except CaptureFailed as exc:
        print(f"lookout producer: {exc}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()
    log.info("%s: %s after %d frames", name, ended, capture.publisher.last_seq)
    return 0


async def _supervise(settings: Settings) -> int:
    from producers.supervisor import Supervisor
    from shared.bus import connect_redis
    from shared.source_control import arq_client

    redis = connect_redis(settings.redis_url, cluster=settings.redis_cluster)
    arq_redis = arq_client(redis, settings)  # ClusterUnsupported on a cluster
    try:
        await Supervisor(arq_redis, settings).run()
    finally:
        await arq_redis.aclose()
        await redis.aclose()
    return 0


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
