"""The viewer page."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings_groups import var


@dataclass(frozen=True)
class PageSettings:
    """The `page` group of `Settings`, its variables in the order the docs list them."""

    stream_delay_init: float = var(
        5.0,
        "Video delay (s) the page starts with until it has measured the source's latency (0: live)",
        "page",
        lo=0,
        hi=60,
    )
