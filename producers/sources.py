"""Moved to `shared.source_urls` (the API parses source URLs too).

Kept only for producers/readers.py and producers/mjpeg.py, which import it by this name;
import `shared.source_urls` everywhere else.
"""

from shared.source_urls import SourceKind, SourceUrl, redact_url

__all__ = ["SourceKind", "SourceUrl", "redact_url"]
