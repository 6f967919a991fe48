"""Every setting Lookout reads, from the environment and an optional `.env` file.

One frozen `Settings` object is built once at process start by `load_settings()`
(`shared/settings_env.py`, which also reads `.env` files). Its fields are declared by area in
`shared/settings_groups/`; each carries its environment variable name, its allowed range and
a one-line doc in `metadata`, so validation, `.env.example` and `docs/configuration.md` all
come from this single table. A bad value stops the process with the variable's name and what
is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings_groups.alerts import AlertSettings
from shared.settings_groups.bus import BusSettings
from shared.settings_groups.capture import CaptureSettings
from shared.settings_groups.inference import InferenceSettings
from shared.settings_groups.livekit import LivekitSettings
from shared.settings_groups.page import PageSettings
from shared.settings_groups.process import ProcessSettings
from shared.settings_groups.server import ServerSettings
from shared.settings_groups.speech import SpeechSettings

AUTO_MIN_INGEST_PIXELS = 4096 * 2160  # a 4K camera frame, decoded: 26.5 MB of BGR


class SettingsError(ValueError):
    """A variable has a value outside what Lookout accepts; the message names it."""


# A dataclass takes its bases' fields last base first, so the groups are listed here from the
# last docs section (LiveKit) to the first (Redis bus): the fields, `.env.example` and
# docs/configuration.md keep the order redis, server, capture, inference, speech, page,
# process, alerts, livekit.
@dataclass(frozen=True)
class Settings(
    LivekitSettings,
    AlertSettings,
    ProcessSettings,
    PageSettings,
    SpeechSettings,
    InferenceSettings,
    CaptureSettings,
    ServerSettings,
    BusSettings,
):
    """All configuration. Field names are the lower-case environment variable names."""

    @property
    def ingest_pixel_limit(self) -> int:
        """MAX_INGEST_PIXELS, or its automatic value: frames are never bigger than the longest
        edge squared, and cameras send up to 4K whatever the edge frames are shrunk to."""
        if self.max_ingest_pixels:
            return self.max_ingest_pixels
        return max(self.max_frame_edge**2, AUTO_MIN_INGEST_PIXELS)
