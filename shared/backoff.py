"""Exponential retry delays, one implementation for every reconnect loop in Lookout."""

from __future__ import annotations


class Backoff:
    """Delays of `first`, 2×`first`, … capped at `most`; `reset()` after a success.

    `attempt` counts the delays handed out since the last reset (a producer shows it in its
    status). Not thread-safe: one loop owns one Backoff.
    """

    def __init__(self, first: float, most: float) -> None:
        if first <= 0 or most < first:
            raise ValueError(f"Backoff needs 0 < first <= most, got first={first}, most={most}")
        self.first, self.most = first, most
        self.attempt = 0
        self._delay = first

    def next(self) -> float:
        """The delay to wait now; the following one doubles, up to `most`."""
        delay = self._delay
        self.attempt += 1
        self._delay = min(self._delay * 2, self.most)
        return delay

    def reset(self) -> None:
        """Start over at `first` (the operation worked)."""
        self.attempt, self._delay = 0, self.first
