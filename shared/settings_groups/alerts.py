"""Watch rules and alerts: the alerts stream, webhooks, MQTT."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings_groups import var


@dataclass(frozen=True)
class AlertSettings:
    """The `alerts` group of `Settings`, its variables in the order the docs list them."""

    alerts_maxlen: int = var(
        10_000,
        "Approximate MAXLEN of the alerts stream (all sources)",
        "alerts",
        lo=10,
        hi=1_000_000,
    )
    alert_snapshot_ttl: float = var(
        604_800.0, "How long an alert's snapshot JPEG is kept (s)", "alerts", lo=60, hi=31_536_000
    )
    public_url: str = var(
        "",
        "Base URL of the API as receivers reach it (e.g. https://lookout.example): webhooks and "
        "MQTT then carry absolute snapshot URLs (empty: paths)",
        "alerts",
    )
    webhook_secret: str = var(
        "",
        "Key of the HMAC-SHA256 signature of every webhook (X-Lookout-Signature); empty: "
        "webhooks are not sent but dead-lettered",
        "alerts",
        secret=True,
    )
    webhook_timeout: float = var(
        10.0, "Seconds a webhook endpoint has to answer one delivery", "alerts", lo=0.5, hi=120
    )
    webhook_retry_for: float = var(
        3600.0,
        "Seconds a webhook is retried (backoff with jitter) before it is dead-lettered",
        "alerts",
        lo=1,
        hi=604_800,
    )
    webhook_backoff_max: float = var(
        300.0, "Longest wait between two tries of one webhook (s)", "alerts", lo=0.1, hi=3600
    )
    webhook_concurrency: int = var(
        32, "Webhook deliveries in flight at once (per alerts process)", "alerts", lo=1, hi=1024
    )
    webhook_per_host: int = var(
        4,
        "Deliveries in flight to one host, so a slow endpoint holds only these",
        "alerts",
        lo=1,
        hi=256,
    )
    webhook_allow_private: bool = var(True, "Webhooks may go to private (LAN) addresses", "alerts")
    webhook_allow_loopback: bool = var(
        False, "Webhooks may go to this host's loopback (where Redis and the API listen)", "alerts"
    )
    mqtt_url: str = var(
        "",
        "MQTT broker of `lookout alerts`, mqtt://[user:password@]host[:port] (empty: no MQTT)",
        "alerts",
        secret=True,
    )
    mqtt_prefix: str = var("lookout", "Prefix of every MQTT topic Lookout publishes", "alerts")
    mqtt_discovery_prefix: str = var(
        "homeassistant",
        "Home Assistant's MQTT discovery prefix (empty: no discovery configs)",
        "alerts",
    )
