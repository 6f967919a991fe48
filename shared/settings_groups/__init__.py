"""The groups of the settings table, one dataclass per area, which `Settings` inherits.

Each field carries its environment variable name (the field name, upper-cased), its allowed
range or choices and a one-line doc in `metadata` (see `var`), so validation
(shared/settings_env.py), `.env.example` and `docs/configuration.md` (lookout/settings_docs.py)
all come from this one table. A new setting goes at the end of its group's class.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any


def var(
    default: Any,
    doc: str,
    group: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] | None = None,
    secret: bool = False,
) -> Any:
    """A setting: its default, its doc line, its group (a docs section) and what is allowed."""
    return field(
        default=default,
        repr=not secret,  # a logged or printed Settings never shows a key
        metadata={
            "doc": doc,
            "group": group,
            "lo": lo,
            "hi": hi,
            "choices": choices,
            "secret": secret,
        },
    )
