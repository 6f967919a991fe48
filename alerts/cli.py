"""`lookout alerts`: deliver watch-rule alerts over webhooks and MQTT until stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket

from shared.settings import Settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--delivery-id",
        default="",
        help="name of this process in the consumer group and status (default: host-pid)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.mqtt import parse_mqtt_url
    from alerts.service import Delivery

    if settings.redis_cluster:
        # Its queues span several slots and it pattern-subscribes to every source.
        from shared.cluster import ClusterUnsupported

        log.error("%s", ClusterUnsupported("lookout alerts"))
        return 2
    if settings.mqtt_url:
        try:
            parse_mqtt_url(settings.mqtt_url)
        except ValueError as exc:
            log.error("%s", exc)
            return 2
    if not settings.webhook_secret:
        log.warning("WEBHOOK_SECRET is empty: webhooks go to the dead letters, unsent")
    delivery_id = args.delivery_id or f"{socket.gethostname()}-{os.getpid()}"

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)  # signals only set a flag
        log.info("delivering alerts as %s", delivery_id)
        await Delivery(settings, delivery_id).run(stop)

    asyncio.run(main())
    return 0
