"""One logging setup for every Lookout process."""

from __future__ import annotations

import logging


def setup_logging(level: str = "INFO", role: str = "lookout") -> None:
    """Log lines as `time level role: message` to stderr."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s {role}: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
