"""Commentary engines behind one interface (`base.Engine`); `build_engine` picks by ENGINE."""

from __future__ import annotations

from shared.settings import Settings
from worker.engines.base import Engine, EngineError


def build_engine(settings: Settings) -> Engine:
    """The engine named by ENGINE, not yet loaded. GPU engines are imported only when chosen."""
    if settings.engine == "cpu":
        from worker.engines.cpu import CpuEngine

        return CpuEngine(settings)
    if settings.engine == "minicpmo":
        from worker.engines.minicpmo import MiniCPMoEngine

        return MiniCPMoEngine(settings)
    if settings.engine == "transformers":
        from worker.engines.transformers_engine import TransformersEngine

        return TransformersEngine(settings)
    if settings.engine == "openai":
        from worker.engines.openai_engine import OpenAIEngine

        return OpenAIEngine(settings)
    raise EngineError(f"unknown ENGINE {settings.engine!r}")
