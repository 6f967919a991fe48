"""The embedded default engine (`ENGINE=cpu`): OpenCV measurements in words, no model download.

Per window it measures motion, scene change, light, colours, people and faces
(`cpu_analysis`), writes up to 4 short sentences led by what the instruction asks about
(`cpu_words`), and yields one chunk per sentence, spoken by espeak-ng when asked (`cpu_speech`).
It remembers what it said to each source (`cpu_memory`), so unchanged observations are said once;
a commentary cycle with nothing new raises `NothingNew`, which the worker records as a skip.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence

import cv2

from shared.rule_vocabulary import ConditionError, parse_condition
from shared.settings import Settings
from worker.engines.base import (
    Chunk,
    Engine,
    EngineError,
    EngineInfo,
    EngineRequest,
    NothingNew,
    WindowFrame,
)
from worker.engines.cpu_analysis import Detectors, Measures, analyse
from worker.engines.cpu_memory import NOTHING_NEW, Memory
from worker.engines.cpu_rules import decide
from worker.engines.cpu_speech import find_espeak, speak
from worker.engines.cpu_words import compose

log = logging.getLogger(__name__)

NOTHING_SAID = ("nothing", NOTHING_NEW)  # what `compose` gives when every sentence repeats
# The skip reason of a cycle that would only repeat the last commentary (its leading words
# are the metrics label).
UNCHANGED = (
    "nothing new since the last comment: an unchanged observation is said once (an "
    "instruction with 'always' or 'every time' asks for repeats)"
)


class CpuEngine(Engine):
    """Honest frame analysis with OpenCV; speech through espeak-ng when ENABLE_TTS is on."""

    name = "cpu"
    judges_by_prompt = False  # rules are decided from the window's measurements, no prompt

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._detectors: Detectors | None = None
        self._espeak: str | None = None
        self._info = EngineInfo(engine=self.name, device="cpu")
        self._memory = Memory()
        # The measures of the last window commented on: the rules pass that follows it on the
        # same frames reuses them instead of measuring again.
        # Same frame objects (not equal seqs: tests reuse seqs for other pictures).
        self._last: tuple[list[WindowFrame], Measures] | None = None

    def load(self) -> EngineInfo:
        """Load the face cascade and HOG detector; with TTS on, check espeak-ng and the voice."""
        started = time.perf_counter()
        if self.settings.enable_tts:
            self._espeak = find_espeak()
            # Speak one word now, so a bad ESPEAK_VOICE stops the worker at start, not later.
            speak("ready", self.settings.espeak_voice, self._espeak)
        if self._detectors is None:
            self._detectors = Detectors()
        self._info = EngineInfo(
            engine=self.name,
            checkpoint=f"opencv {cv2.__version__}",
            device="cpu",
            load_seconds=time.perf_counter() - started,
            # "tts" is on/off like the other engines' (the API reads it); the voice apart.
            extra={
                "tts": "on" if self._espeak else "off",
                "tts_voice": f"espeak-ng:{self.settings.espeak_voice}" if self._espeak else "",
            },
        )
        log.info("CPU engine ready (tts %s)", self._info.extra["tts"])
        return self._info

    def info(self) -> EngineInfo:
        return self._info

    def measure(self, request: EngineRequest) -> Measures:
        """The measurements behind a commentary, for callers that want numbers, not words."""
        if self._detectors is None:
            raise EngineError("the CPU engine is not loaded; call load() first")
        window = list(request.frames)
        if self._last is not None and _same_frames(self._last[0], window):
            return self._last[1]
        measures = analyse([frame.image for frame in window], self._detectors)
        self._last = (window, measures)
        return measures

    def judge(self, request: EngineRequest, conditions: Sequence[str]) -> list[bool | None]:
        """Each condition decided from the window's measurements (shared/rule_vocabulary.py);
        None for one outside the vocabulary (made while another engine served the source)."""
        if not conditions:
            return []
        measures = self.measure(request)
        verdicts: list[bool | None] = []
        for text in conditions:
            try:
                verdicts.append(decide(parse_condition(text), measures))
            except ConditionError:
                verdicts.append(None)
        return verdicts

    def stream(self, request: EngineRequest, cancel: threading.Event) -> Iterator[Chunk]:
        """One chunk per sentence; stops between sentences once `cancel` is set."""
        if cancel.is_set():
            return
        measures = self.measure(request)
        # Questions are answered in full and do not count as said to the running commentary.
        said = None
        if request.kind != "answer":
            said = self._memory.for_source(request.source, request.instruction, request.context)
        sentences = compose(
            measures,
            request.instruction,
            request.context,
            request.kind,
            request.max_new_tokens,
            said,
        )
        if said is not None and sentences == [NOTHING_SAID]:
            raise NothingNew(UNCHANGED)
        executable = self._speech_executable() if request.speak else None
        for n, (topic, sentence) in enumerate(sentences):
            if cancel.is_set():
                return
            if said is not None:
                said.record(topic, sentence)  # before the yield: a consumer may stop after it
            pcm = speak(sentence, self.settings.espeak_voice, executable) if executable else None
            # A space between sentences, so the chunks join into the whole commentary.
            text = sentence if n == len(sentences) - 1 else sentence + " "
            yield Chunk(text=text, pcm=pcm)

    def _speech_executable(self) -> str:
        # A worker loaded with TTS off may still get a spoken request: check espeak-ng then.
        if self._espeak is None:
            self._espeak = find_espeak()
        return self._espeak


def _same_frames(a: list[WindowFrame], b: list[WindowFrame]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))
